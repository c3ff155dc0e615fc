"""Days of the visits when the reader has not typed them: from the DICOM dates, or the sample's.

The image layers the plugin's reader opens carry their file (``source``) and, for DICOM, the
study date (study, else series, else acquisition date, as :func:`lesionvol.io.read_scan`
reads it) in ``metadata["lesionvol"]``. When every chosen visit has a date, its days are the
days since the first visit's date (the baseline); when every chosen visit is a file of the
bundled sample, its days are the sample's (``truth.json``), counted from the first chosen.
Otherwise nothing is known and the days stay empty.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _sample_days(sources: list[str | None]) -> list[float] | None:
    from lesionvol.sample import sample_series_paths, sample_truth

    try:
        paths = sample_series_paths()
        days = sample_truth()["days"]
    except (FileNotFoundError, KeyError, ValueError):
        return None
    found = []
    for source in sources:
        index = next((i for i, path in enumerate(paths) if source and _same_file(source, path)), None)
        if index is None:
            return None
        found.append(float(days[index]))
    return [d - found[0] for d in found]


def known_days(metas: list[dict]) -> tuple[list[float] | None, str]:
    """The visits' days (baseline first) from their layers' metadata, and where they came from
    (``"DICOM dates"``, ``"the sample"``); ``(None, "")`` when they are not known for every visit.

    Example
    -------
    >>> known_days([{"study_date": "2026-03-01"}, {"study_date": "2026-05-31"}])
    ([0.0, 91.0], 'DICOM dates')
    >>> known_days([{"study_date": "2026-03-01"}, {}])
    (None, '')
    """
    if not metas:
        return None, ""
    dates = [meta.get("study_date") for meta in metas]
    if all(dates):
        try:
            parsed = [dt.date.fromisoformat(str(d)) for d in dates]
        except ValueError:
            parsed = None
        if parsed:
            return [float((d - parsed[0]).days) for d in parsed], "DICOM dates"
    sample = _sample_days([meta.get("source") for meta in metas])
    if sample is not None:
        return sample, "the sample"
    return None, ""


def format_days(days: list[float]) -> str:
    """Days as the days field takes them.

    >>> format_days([0.0, 91.0, 365.5])
    '0, 91, 365.5'
    """
    return ", ".join(f"{d:g}" for d in days)
