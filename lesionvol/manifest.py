"""What a batch runs on: studies (one hip of one subject, its scans oldest first).

Two ways to describe a cohort, both read by :func:`read_studies`.

**A manifest CSV**, one row per scan::

    subject,side,timepoint,days,image,lesion_mask,head_mask
    P001,right,baseline,0,P001/base.nii.gz,P001/base_lesion.nii.gz,P001/base_head.nii.gz
    P001,right,3mo,91,P001/m3.nii.gz,P001/m3_lesion.nii.gz,P001/m3_head.nii.gz
    P002,left,baseline,0,/data/P002/t0.nrrd,,
    P002,left,1y,365,/data/P002/dicom_1y,,

* ``subject``: a pseudonymous ID, used as given (never read from DICOM headers); it names the
  output folder ``<subject>_<side>``, so it is ASCII letters, digits and ``. _ + -``, starting
  with a letter or digit, at most 64 characters (:func:`lesionvol.inputs.check_name`).
* ``side``: ``left`` or ``right`` (``L``/``R`` accepted).  A study is one subject + side.
* ``timepoint``: the visit's label, unique within a study; it names files, so the same rule applies.
* ``days``: days since treatment or baseline (may be empty; then taken from DICOM study dates).
  A study's scans are ordered by ``days`` (manifest order when a study has empty days);
  two scans of a study on the same day are refused.
* ``image``, ``lesion_mask``, ``head_mask``: paths, relative to the manifest's folder or
  absolute; a DICOM series is its folder.  The mask columns are optional; an empty mask cell
  means "segment this scan" (give both masks of a scan or neither).
* Optional columns: ``label_map`` (one label image holding head and lesion, instead of the two
  masks; label values from the batch options ``--head-label``/``--lesion-label``), ``seed_mm``
  (``"x y z"``, a point in this scan's femoral head, LPS mm), ``transform`` (a known
  baseline → this scan ``.tfm``; the scan is then not registered) and ``series`` (for a DICOM
  folder holding several series: its number, UID or description).

**A folder** laid out per subject and session::

    cohort/
      P001/
        side                  # optional text file: "left" or "right"
        baseline/             # one folder per session; its name is the timepoint label
          image.nii.gz        # or image.nii / .nrrd / .mha / .mhd, or a DICOM folder "image/"
          lesion.nii.gz       # optional, with head.nii.gz: masks drawn by a reader
          head.nii.gz
          days                # optional text file, e.g. "0"
        3mo/
          image.nii.gz
          days                # "91"
      P002/                   # both hips of a subject: one folder per side
        left/
          d0/image.nii.gz     # days from the session name when there is no days file:
          d365/image.nii.gz   # "d365", "day365" or "365"
        right/
          d0/image.nii.gz

The side comes from a ``left``/``right`` folder, else the ``side`` file, else the batch's
``side`` option (``lesionvol batch cohort/ --side right``).  Sessions are ordered by days;
when a session's days are unknown, by what the names say (``baseline``/``pre``/``t0`` first,
then ``6w``, ``3mo``, ``m6``, ``1y``, ``d365``, or dates ``2024-03-01``; see :func:`order_key`).
A study whose order cannot be told is refused, asking for ``days`` files: the baseline must
never be taken for a follow-up.

Bad manifests are refused with one line naming every problem (missing columns, duplicate
timepoints, unknown sides); missing files do not stop the batch: the study is reported in
``errors.csv`` with every missing path, and the other studies run.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lesionvol.errors import InputError
from lesionvol.inputs import Visit, check_name
from lesionvol.io import IMAGE_SUFFIXES

REQUIRED_COLUMNS = ("subject", "side", "timepoint", "days", "image")
#: Optional columns and the :class:`~lesionvol.inputs.Visit` field each fills (paths, but ``seed_mm``).
OPTIONAL_COLUMNS = {"lesion_mask": "lesion", "head_mask": "head", "label_map": "label_map",
                    "transform": "transform", "seed_mm": "seed_mm", "series": "series"}
_NOT_PATHS = ("seed_mm", "series")
SIDES = {"left": "left", "l": "left", "right": "right", "r": "right"}


@dataclass
class StudySpec:
    """One hip of one subject: its visits (paths resolved), oldest first, and what is missing.

    ``problems`` lists missing files; such a study is not run but reported as failed.
    """

    subject: str
    side: str
    visits: list[Visit]
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Name of the study's output folder, ``<subject>_<side>``."""
        return f"{self.subject}_{self.side}"


def _fail(source: str, problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(f"{source}: " + "; ".join(problems[:3]) + more)


def _parse_days(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    days = float(text)
    if not math.isfinite(days):
        raise ValueError(text)
    return days


def _check_subject(subject: str) -> str | None:
    if not subject:
        return "empty subject"
    try:
        check_name(subject, "subject")
    except InputError as exc:
        return str(exc)
    return None


def _order_and_check(studies: dict[tuple[str, str], StudySpec], source: str) -> list[StudySpec]:
    problems = []
    for spec in studies.values():
        labels = [v.label for v in spec.visits]
        dupes = sorted({t for t in labels if labels.count(t) > 1})
        if dupes:
            problems.append(f"{spec.subject} {spec.side}: duplicate timepoint {', '.join(map(repr, dupes))}")
        days = [v.days for v in spec.visits]
        if all(d is not None for d in days):
            same = sorted({d for d in days if days.count(d) > 1})
            if same:
                problems.append(f"{spec.subject} {spec.side}: two scans on day {', '.join(f'{d:g}' for d in same)}")
            spec.visits.sort(key=lambda v: v.days)
    _fail(source, problems)
    return sorted(studies.values(), key=lambda s: (s.subject, s.side))


def _missing(spec: StudySpec) -> None:
    for visit in spec.visits:
        for column, name in (("image", "image"), *OPTIONAL_COLUMNS.items()):
            path = getattr(visit, name)
            if name not in _NOT_PATHS and path is not None and not os.path.exists(path):
                spec.problems.append(f"{visit.label} {column} '{path}'")


def _manifest_text(path: Path) -> str:
    """The manifest's text: UTF-8 (with or without BOM) or UTF-16 with a BOM, else Latin-1 (what
    spreadsheets on Windows save); NUL bytes without a BOM are refused."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise InputError(f"manifest '{path}' is not valid UTF-16; save it as UTF-8 CSV") from None
    if b"\0" in data:
        raise InputError(f"manifest '{path}' holds NUL bytes (UTF-16 without a byte-order mark, or not a "
                         f"text file); save it as UTF-8 CSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_manifest(path: str | os.PathLike) -> list[StudySpec]:
    """Read a manifest CSV into studies (see the module docstring for the format).

    Raises
    ------
    InputError
        The file is missing, has no header or lacks a required column, or a row is bad
        (empty subject, unknown side, days not a number, duplicate timepoint in a study).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "m.csv").write_text("subject,side,timepoint,days,image\\n"
    ...                                   "P1,R,3mo,91,b.nii.gz\\nP1,R,base,0,a.nii.gz\\n")
    >>> [study] = read_manifest(folder / "m.csv")
    >>> study.key, [v.label for v in study.visits], study.problems[0].startswith("base image")
    ('P1_right', ['base', '3mo'], True)
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest '{path}' does not exist")
    base = path.resolve().parent
    reader = csv.DictReader(io.StringIO(_manifest_text(path), newline=""))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise InputError(f"manifest '{path}' lacks column(s) {', '.join(missing)}; the header must be "
                         f"{','.join(REQUIRED_COLUMNS)} and optionally {','.join(OPTIONAL_COLUMNS)}")
    reader.fieldnames = columns
    try:
        raw_rows = list(reader)
    except csv.Error as exc:
        raise InputError(f"manifest '{path}' is not a readable CSV ({exc})") from None
    if not raw_rows:
        raise InputError(f"manifest '{path}' has no rows")

    def resolve(cell: str | None) -> str | None:
        cell = (cell or "").strip()
        if not cell:
            return None
        p = Path(cell).expanduser()
        return str(p if p.is_absolute() else base / p)

    problems: list[str] = []
    studies: dict[tuple[str, str], StudySpec] = {}
    for line, row in enumerate(raw_rows, start=2):
        subject = (row.get("subject") or "").strip()
        side_text = (row.get("side") or "").strip()
        timepoint = (row.get("timepoint") or "").strip()
        if (bad := _check_subject(subject)) is not None:
            problems.append(f"line {line}: {bad}")
            continue
        side = SIDES.get(side_text.lower())
        if side is None:
            problems.append(f"line {line}: side {side_text!r} is not left or right")
            continue
        if not timepoint:
            problems.append(f"line {line}: empty timepoint")
            continue
        try:
            days = _parse_days(row.get("days") or "")
        except ValueError:
            problems.append(f"line {line}: days {row.get('days')!r} is not a number")
            continue
        image = resolve(row.get("image"))
        if image is None:
            problems.append(f"line {line}: empty image")
            continue
        given = {name: resolve(row.get(column)) for column, name in OPTIONAL_COLUMNS.items() if column not in _NOT_PATHS}
        seed = (row.get("seed_mm") or "").replace(",", " ").split() or None
        series = (row.get("series") or "").strip() or None
        try:
            visit = Visit(image, label=timepoint, days=days, seed_mm=seed, series=series, **given)
        except InputError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        studies.setdefault((subject, side), StudySpec(subject, side, [])).visits.append(visit)
    _fail(f"manifest '{path}'", problems)
    ordered = _order_and_check(studies, f"manifest '{path}'")
    for spec in ordered:
        _missing(spec)
    return ordered


def _natural(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    if (folder / stem).is_dir():  # a DICOM series
        return folder / stem
    return None


def _session_days(session: Path) -> float | None:
    days_file = session / "days"
    if days_file.is_file():
        return _parse_days(days_file.read_text())
    match = re.fullmatch(r"(?:d|day)?(\d+(?:\.\d+)?)", session.name, flags=re.IGNORECASE)
    return float(match.group(1)) if match else None


_BASELINE_NAMES = {"baseline", "base", "bl", "pre", "preop", "pre-op", "pre_op", "screening", "t0", "0"}
_UNITS_DAYS = {"d": 1.0, "day": 1.0, "days": 1.0, "w": 7.0, "wk": 7.0, "week": 7.0, "weeks": 7.0,
               "m": 30.4375, "mo": 30.4375, "mon": 30.4375, "month": 30.4375, "months": 30.4375,
               "y": 365.25, "yr": 365.25, "year": 365.25, "years": 365.25}


def order_key(name: str) -> tuple[str, float] | None:
    """Where a session named ``name`` falls in time, read off its name, for ordering only.

    ``("after_baseline", days)`` for baseline names (``baseline``, ``pre``, ``t0``, …: 0) and
    intervals (``3mo``, ``m3``, ``month03``, ``6w``, ``1y``, ``d365``, ``12_months``), ``("date",
    ordinal)`` for dates (``2024-03-01``, ``20240301``), ``None`` when the name says nothing.

    Example
    -------
    >>> [order_key(n) for n in ("baseline", "3mo", "month12", "1y", "d91")]
    [('after_baseline', 0.0), ('after_baseline', 91.3125), ('after_baseline', 365.25), ('after_baseline', 365.25), ('after_baseline', 91.0)]
    >>> order_key("2024-03-01")[0], order_key("followup") is None
    ('date', True)
    """
    text = name.strip().lower()
    if text in _BASELINE_NAMES:
        return ("after_baseline", 0.0)
    for pattern in (r"(\d{4})-(\d{2})-(\d{2})", r"(\d{4})(\d{2})(\d{2})"):
        if (m := re.fullmatch(pattern, text)) is not None:
            try:
                return ("date", float(dt.date(*map(int, m.groups())).toordinal()))
            except ValueError:
                return None
    number, unit = r"(\d+(?:\.\d+)?)", r"([a-z]+)"
    for pattern, order in ((rf"{number}[ _-]?{unit}", (0, 1)), (rf"{unit}[ _-]?{number}", (1, 0))):
        if (m := re.fullmatch(pattern, text)) is not None:
            value, word = m.group(1 + order[0]), m.group(1 + order[1])
            if word in _UNITS_DAYS:
                return ("after_baseline", float(value) * _UNITS_DAYS[word])
    if re.fullmatch(number, text):
        return ("after_baseline", float(text))
    return None


def _order_sessions(spec: StudySpec) -> str | None:
    """Order a folder study's visits by days, else by what their names say; a problem when neither can."""
    if all(v.days is not None for v in spec.visits):
        return None  # ordered by days later
    keys = {v.label: order_key(v.label) for v in spec.visits}
    unknown = [label for label, key in keys.items() if key is None]
    kinds = {key[0] for key in keys.values() if key is not None}
    if unknown or len(kinds) > 1:
        what = f"cannot tell when {', '.join(unknown)} was" if unknown else "session names mix dates and intervals"
        return (f"{spec.subject} {spec.side}: {what}; add a 'days' file to each session folder "
                f"(or name them baseline, 3mo, 12mo, d91, 2024-03-01, …)")
    spec.visits.sort(key=lambda v: keys[v.label][1])
    return None


def read_folder(root: str | os.PathLike, side: str | None = None) -> list[StudySpec]:
    """Read a cohort folder laid out per subject (and side) and session.

    See the module docstring for the layout.  ``side`` is used for subjects without a
    ``left``/``right`` folder or a ``side`` file.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for session in ("d0", "d91"):
    ...     (root / "P1" / session).mkdir(parents=True)
    ...     _ = (root / "P1" / session / "image.nii.gz").write_bytes(b"")
    >>> [study] = read_folder(root, side="left")
    >>> study.key, [(v.label, v.days) for v in study.visits]
    ('P1_left', [('d0', 0.0), ('d91', 91.0)])
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"cohort folder '{root}' does not exist")
    problems: list[str] = []
    studies: dict[tuple[str, str], StudySpec] = {}
    subjects = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: _natural(p.name))
    for subject_dir in subjects:
        subject = subject_dir.name
        if (bad := _check_subject(subject)) is not None:
            problems.append(bad)
            continue
        side_dirs = [subject_dir / s for s in ("left", "right") if (subject_dir / s).is_dir()]
        if side_dirs:
            hips = [(d.name, d) for d in side_dirs]
        else:
            side_file = subject_dir / "side"
            text = side_file.read_text().strip() if side_file.is_file() else (side or "")
            hip_side = SIDES.get(text.lower())
            if hip_side is None:
                problems.append(f"{subject}: no side (add a 'left'/'right' folder or a 'side' file, "
                                f"or give the side option)" if not text else f"{subject}: side {text!r} is not left or right")
                continue
            hips = [(hip_side, subject_dir)]
        for hip_side, hip_dir in hips:
            sessions = [p for p in hip_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
            if not sessions:
                problems.append(f"{subject} {hip_side}: no session folders")
                continue
            spec = StudySpec(subject, hip_side, [])
            for session in sorted(sessions, key=lambda p: _natural(p.name)):
                try:
                    days = _session_days(session)
                except ValueError:
                    problems.append(f"{subject} {hip_side} {session.name}: the days file is not a number")
                    continue
                image = _find_image(session, "image")
                lesion, head = _find_image(session, "lesion"), _find_image(session, "head")
                try:
                    spec.visits.append(Visit(str(image or session / "image.nii.gz"), label=session.name, days=days,
                                             lesion=str(lesion) if lesion else None, head=str(head) if head else None))
                except InputError as exc:
                    problems.append(f"{subject} {hip_side}: {exc}")
            if (problem := _order_sessions(spec)) is not None:
                problems.append(problem)
            studies[(subject, hip_side)] = spec
    _fail(f"cohort folder '{root}'", problems)
    if not studies:
        raise InputError(f"cohort folder '{root}' holds no subject folders")
    ordered = _order_and_check(studies, f"cohort folder '{root}'")
    for spec in ordered:
        _missing(spec)
    return ordered


def read_studies(source: str | os.PathLike, side: str | None = None) -> list[StudySpec]:
    """Studies from a manifest CSV or a cohort folder (whichever ``source`` is)."""
    if Path(source).is_dir():
        return read_folder(source, side=side)
    return read_manifest(source)
