"""The bundled sample series: a right hip at baseline, 3 and 12 months (synthetic, exact truth).

Made by ``sample_data/make_sample_data.py`` with :mod:`lesionvol.phantom`; see
``sample_data/README.md`` for its true volumes. In a wheel the files live in
``lesionvol/sample_data``; in a source checkout, in ``sample_data/`` at the top.
"""

from __future__ import annotations

import json
from pathlib import Path

SAMPLE_VISITS = ("baseline", "month03", "month12")


def sample_data_dir() -> Path:
    """Folder holding the bundled sample series.

    Example
    -------
    >>> (sample_data_dir() / "truth.json").exists()
    True
    """
    here = Path(__file__).resolve().parent
    for folder in (here / "sample_data", here.parent / "sample_data"):
        if (folder / "truth.json").exists():
            return folder
    raise FileNotFoundError("lesionvol's sample data is missing from this installation")


def sample_series_paths() -> list[Path]:
    """Image paths of the sample series, oldest first.

    Example
    -------
    >>> [p.name for p in sample_series_paths()]
    ['baseline.nii.gz', 'month03.nii.gz', 'month12.nii.gz']
    """
    return [sample_data_dir() / f"{visit}.nii.gz" for visit in SAMPLE_VISITS]


def sample_mask_paths(kind: str) -> list[Path]:
    """Reference mask paths (``kind`` is ``'lesion'`` or ``'head'``), oldest first.

    Example
    -------
    >>> [p.name for p in sample_mask_paths("head")][0]
    'baseline_head.nii.gz'
    """
    if kind not in ("lesion", "head"):
        raise ValueError("kind must be 'lesion' or 'head'")
    return [sample_data_dir() / f"{visit}_{kind}.nii.gz" for visit in SAMPLE_VISITS]


def sample_truth() -> dict:
    """The analytic truth of the sample series (volumes in mL, LF and RF in %, days).

    Example
    -------
    >>> sorted(sample_truth())[:2] != []
    True
    """
    return json.loads((sample_data_dir() / "truth.json").read_text())
