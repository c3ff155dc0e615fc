"""One hip over time: read the scans, get the masks, register, measure, tabulate.

This is the library function behind ``lesionvol analyze`` and ``lesionvol demo``; the
batch runner calls it once per study.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import SimpleITK as sitk

from lesionvol import __version__
from lesionvol.change import ChangeMaps, change_maps
from lesionvol.errors import InputError
from lesionvol.geometry import same_grid
from lesionvol.io import Scan, as_binary_mask, read_mask, read_scan
from lesionvol.location import LOCATION_DEFINITIONS, describe_location, infer_side
from lesionvol.register import REGISTRATION_DEFINITIONS
from lesionvol.measure import (
    STEINBERG_RULE,
    THRESHOLD_PCT,
    THRESHOLD_SOURCE,
    Volumes,
    measure_volumes,
    residual_pct_baseline,
    steinberg_extent,
    threshold_flag,
)

PathLike = str | os.PathLike
Progress = Callable[[int, int, str], None]

DEFINITIONS = {
    "volume": "voxel count x voxel volume on each scan's native grid (mL); *_mesh_volume_ml: marching-cubes surface volume",
    "lesion_pct_head": "LF = 100 * lesion_volume_ml / head_volume_ml, same timepoint",
    "residual_pct_baseline": "RF = 100 * lesion_volume_ml / baseline lesion_volume_ml (native-space volumes)",
    "regenerated_ml": "baseline lesion voxels not lesion at this timepoint, in baseline space (after registration)",
    "new_lesion_ml": "lesion voxels at this timepoint outside the baseline lesion, in baseline space",
    "change_method": "how the follow-up lesion was brought into baseline space for regenerated_ml / new_lesion_ml",
    "steinberg_extent": STEINBERG_RULE,
    "days": "days since the baseline scan (given, or from DICOM study dates); empty if unknown",
    "head_definition": "anatomical: femoral head cut by the plane of the head-neck junction, perpendicular to "
                       "the neck axis; sphere: the sphere fitted to the head; or as drawn by the user",
    "lesion_definition": "enclosed: everything inside the outer margin of the low-signal demarcating band, "
                         "fat-bright centre included; dark: the low-signal region only (Pascart, Bone 2019); "
                         "or as drawn by the user",
}


@dataclass
class Timepoint:
    """Everything known about one visit after analysis."""

    label: str
    scan: Scan
    lesion: sitk.Image
    head: sitk.Image
    mask_source: str
    volumes: Volumes
    days: float | None = None
    transform: sitk.Transform | None = None
    change: ChangeMaps | None = None
    registration_qc: dict = field(default_factory=dict)
    location: dict = field(default_factory=dict)
    head_definition: str = "as drawn by the user"
    lesion_definition: str = "as drawn by the user"


@dataclass
class StudyResult:
    """The analysed series (oldest first), the table rows and the provenance."""

    timepoints: list[Timepoint]
    threshold_pct: float
    parameters: dict

    def rows(self) -> list[dict]:
        """One dict per timepoint with the columns of ``volumes.csv``."""
        baseline_ml = self.timepoints[0].volumes.lesion_volume_ml
        rows = []
        for tp in self.timepoints:
            v = tp.volumes
            lf = v.lesion_pct_head
            spacing = tp.scan.image.GetSpacing()
            row = {
                "timepoint": tp.label,
                "days": tp.days,
                "spacing_x_mm": spacing[0],
                "spacing_y_mm": spacing[1],
                "spacing_z_mm": spacing[2],
                "head_volume_ml": v.head_volume_ml,
                "lesion_volume_ml": v.lesion_volume_ml,
                "lesion_pct_head": lf,
                "residual_pct_baseline": residual_pct_baseline(v.lesion_volume_ml, baseline_ml),
                "regenerated_ml": tp.change.regenerated_ml if tp.change else None,
                "new_lesion_ml": tp.change.new_lesion_ml if tp.change else None,
                "change_method": _change_method(tp),
                "threshold_pct": self.threshold_pct,
                "threshold_flag": threshold_flag(lf, self.threshold_pct),
                "steinberg_extent": steinberg_extent(lf),
                "head_mesh_volume_ml": v.head_mesh_volume_ml,
                "lesion_mesh_volume_ml": v.lesion_mesh_volume_ml,
                "lesion_outside_head_ml": v.lesion_outside_head_ml,
                **tp.registration_qc,
                **tp.location,
                "mask_source": tp.mask_source,
                "head_definition": tp.head_definition,
                "lesion_definition": tp.lesion_definition,
                "image_sha256": tp.scan.sha256,
            }
            rows.append({k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in row.items()})
        return rows

    def update_mask(self, index: int, kind: str, mask: sitk.Image) -> list[int]:
        """Replace one timepoint's ``'lesion'`` or ``'head'`` mask (a reader's correction) and re-measure.

        Volumes and location of that timepoint are measured again; a corrected lesion also
        redoes the change maps it takes part in (all follow-ups for the baseline, else its own).
        Returns the indices of the follow-ups whose change maps were redone.

        Example
        -------
        >>> import SimpleITK as sitk
        >>> from lesionvol.io import Scan
        >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[2:18, 2:18, 2:18] = 1
        >>> lesion = sitk.Image([20, 20, 20], sitk.sitkUInt8); lesion[2:10, 2:10, 2:10] = 1
        >>> result = analyze_scans([Scan(sitk.Image([20, 20, 20], sitk.sitkFloat32))], lesions=[lesion], heads=[head])
        >>> lesion[2:10, 2:10, 2:6] = 0  # the reader erases half of it
        >>> _ = result.update_mask(0, "lesion", lesion)
        >>> result.rows()[0]["lesion_volume_ml"]
        0.256
        """
        if kind not in ("lesion", "head"):
            raise ValueError("kind must be 'lesion' or 'head'")
        tp = self.timepoints[index]
        setattr(tp, kind, as_binary_mask(mask, tp.scan.image, name=f"the corrected {kind} mask of {tp.label}"))
        tp.volumes = measure_volumes(tp.lesion, tp.head)
        edges = _acetabular_edges(self.timepoints, self.parameters.get("acetabular_edge_mm"))
        _locate([tp], tp.location.get("location_side", ""), [edges[index]])
        if kind != "lesion":
            return []
        baseline = self.timepoints[0]
        redo = [i for i in (range(1, len(self.timepoints)) if index == 0 else [index])
                if self.timepoints[i].change is not None]
        for i in redo:
            follow = self.timepoints[i]
            follow.change = change_maps(baseline.lesion, follow.lesion, follow.transform)
        return redo

    def summary(self) -> dict:
        """Provenance and definitions for ``summary.json`` (no patient identifiers)."""
        return {
            "lesionvol_version": __version__,
            "threshold": {
                "lesion_pct_head_threshold_pct": self.threshold_pct,
                "rule": f"threshold_flag = 'below' if lesion_pct_head < {self.threshold_pct:g} else 'at_or_above'",
                "source": THRESHOLD_SOURCE,
            },
            "definitions": {**DEFINITIONS, **REGISTRATION_DEFINITIONS, **LOCATION_DEFINITIONS},
            "parameters": self.parameters,
            "inputs": [
                {"timepoint": tp.label, "file": os.path.basename(tp.scan.source), "sha256": tp.scan.sha256,
                 "mask_source": tp.mask_source}
                for tp in self.timepoints
            ],
            "timepoints": self.rows(),
        }


def _change_method(tp: Timepoint) -> str:
    if tp.change is None:
        return ""
    if tp.transform is None:
        return "same grid, not registered (assumes the hip did not move)"
    if tp.registration_qc.get("registration_doubtful"):
        return "registered to baseline, DOUBTFUL: review before use"
    if not tp.registration_qc:
        return "transform given"
    return "registered to baseline"


def _days_from_dates(scans: Sequence[Scan]) -> list[float | None]:
    base = scans[0].study_date
    return [float((s.study_date - base).days) if base and s.study_date else None for s in scans]


def _acetabular_edges(timepoints: list[Timepoint], baseline_edge_mm: Sequence[float] | None) -> list:
    """The baseline's acetabular edge landmark in each timepoint's space (through its transform)."""
    if baseline_edge_mm is None:
        return [None] * len(timepoints)
    return [tuple(baseline_edge_mm)] + [
        tp.transform.TransformPoint(tuple(baseline_edge_mm)) if tp.transform is not None else None
        for tp in timepoints[1:]
    ]


def _locate(timepoints: list[Timepoint], side: str, edges: Sequence) -> None:
    """Fill each timepoint's location and staging columns (lesionvol.location).

    ``edges`` holds the acetabular edge landmark per timepoint (see :func:`_acetabular_edges`),
    so JIC is read at the same anatomical edge at every visit.
    """
    side = side or infer_side(timepoints[0].head)
    for tp, edge in zip(timepoints, edges):
        if side not in ("left", "right"):
            tp.location = {"location_side": "", "location_reason": "hip side unknown; give --side left|right"}
        else:
            tp.location = describe_location(tp.lesion, tp.head, side=side, acetabular_edge_mm=edge)


def _mask_source(given: list[str]) -> str:
    if len(given) == 2:
        return "user"
    if not given:
        return "segmented"
    return f"user {given[0]}, segmented {'head' if given[0] == 'lesion' else 'lesion'}"


def _check_lengths(n: int, **sequences: Sequence | None) -> None:
    if n == 0:
        raise InputError("no images given")
    for name, seq in sequences.items():
        if seq is not None and len(seq) != n:
            raise InputError(f"{len(seq)} {name.replace('_', ' ')} for {n} images")


def analyze_scans(
    scans: Sequence[Scan],
    *,
    lesions: Sequence[sitk.Image | None] | None = None,
    heads: Sequence[sitk.Image | None] | None = None,
    labels: Sequence[str] | None = None,
    days: Sequence[float | None] | None = None,
    transforms: Sequence[sitk.Transform | None] | None = None,
    threshold_pct: float = THRESHOLD_PCT,
    side: str = "auto",
    lesion_definition: str = "enclosed",
    register: bool = True,
    acetabular_edge_mm: Sequence[float] | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Analyse one hip's scans already in memory, oldest first (the core of :func:`analyze`).

    Parameters
    ----------
    scans : sequence of Scan
        Baseline first.
    lesions, heads : sequence of SimpleITK.Image or None, optional
        Masks per scan on its grid; a missing one is segmented.
    labels, days : optional
        Timepoint names (``t0, t1, …`` by default) and days since baseline (from DICOM
        study dates when not given).
    transforms : sequence of SimpleITK.Transform or None, optional
        Known baseline→follow-up transforms, one per follow-up; those given are not registered.
    threshold_pct, side, lesion_definition, register, acetabular_edge_mm
        As for :func:`analyze`.
    progress : callable, optional
        ``progress(step, total, message)`` before each step.

    Example
    -------
    >>> import SimpleITK as sitk
    >>> from lesionvol.io import Scan
    >>> image = sitk.Image([20, 20, 20], sitk.sitkFloat32)
    >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[2:18, 2:18, 2:18] = 1
    >>> lesion = sitk.Image([20, 20, 20], sitk.sitkUInt8); lesion[2:10, 2:10, 2:10] = 1
    >>> result = analyze_scans([Scan(image)], lesions=[lesion], heads=[head])
    >>> result.rows()[0]["lesion_pct_head"], result.rows()[0]["steinberg_extent"]
    (12.5, 'A')
    """
    n = len(scans)
    _check_lengths(n, lesion_masks=lesions, head_masks=heads, labels=labels, days=days)
    if transforms is not None and len(transforms) != n - 1:
        raise InputError(f"{len(transforms)} transforms for {n - 1} follow-ups")
    labels = list(labels) if labels is not None else [f"t{i}" for i in range(n)]
    if len(set(labels)) != n:
        raise InputError(f"timepoint labels must be unique: {labels}")
    lesions = list(lesions) if lesions is not None else [None] * n
    heads = list(heads) if heads is not None else [None] * n
    transforms = list(transforms) if transforms is not None else [None] * (n - 1)
    days = list(days) if days is not None else _days_from_dates(scans)
    n_segment = sum(1 for lesion, head in zip(lesions, heads) if lesion is None or head is None)
    n_register = sum(1 for t in transforms if t is None) if register else 0
    total, step = n_segment + n_register + 1, 0

    def say(message: str) -> None:
        nonlocal step
        if progress is not None:
            progress(step, total, message)
        step += 1

    timepoints: list[Timepoint] = []
    hip_side = side if side in ("left", "right") else ""
    for scan, label, lesion, head, day in zip(scans, labels, lesions, heads, days):
        given = [name for name, mask in (("lesion", lesion), ("head", head)) if mask is not None]
        if len(given) < 2:
            say(f"{label}: segmenting the femoral head and the lesion")
            from lesionvol.segment import segment_hip

            seg = segment_hip(scan.image, side=hip_side or side, lesion_definition=lesion_definition)
            hip_side = hip_side or seg.side
            lesion = seg.lesion if lesion is None else lesion
            head = seg.head if head is None else head
        lesion = as_binary_mask(lesion, scan.image, name=f"the lesion mask of {label}")
        head = as_binary_mask(head, scan.image, name=f"the head mask of {label}")
        source = _mask_source(given)
        tp = Timepoint(label, scan, lesion, head, source, measure_volumes(lesion, head), day)
        if "head" not in given:
            tp.head_definition = seg.head_definition
        if "lesion" not in given:
            tp.lesion_definition = seg.lesion_definition
        timepoints.append(tp)

    baseline = timepoints[0]
    for tp, transform in zip(timepoints[1:], transforms):
        if transform is not None:
            tp.transform = transform
        elif register:
            say(f"{tp.label}: registering to {baseline.label}")
            from lesionvol.register import register_followup

            registration = register_followup(
                baseline.scan.image, tp.scan.image, fixed_head=baseline.head, moving_head=tp.head
            )
            tp.transform = registration.transform
            tp.registration_qc = dict(registration.qc)
        if tp.transform is not None:
            tp.change = change_maps(baseline.lesion, tp.lesion, tp.transform)
        elif same_grid(baseline.scan.image, tp.scan.image):
            tp.change = change_maps(baseline.lesion, tp.lesion)
    _locate(timepoints, hip_side, _acetabular_edges(timepoints, acetabular_edge_mm))
    say("measured")

    parameters = {"threshold_pct": threshold_pct, "side": side, "lesion_definition": lesion_definition,
                  "register": register, "labels": labels, "acetabular_edge_mm": acetabular_edge_mm,
                  "transforms": ["given" if t is not None else ("registered" if register else "none") for t in transforms]}
    return StudyResult(timepoints, threshold_pct, parameters)


def analyze(
    images: Sequence[PathLike],
    *,
    lesion_masks: Sequence[PathLike | None] | None = None,
    head_masks: Sequence[PathLike | None] | None = None,
    labels: Sequence[str] | None = None,
    days: Sequence[float | None] | None = None,
    threshold_pct: float = THRESHOLD_PCT,
    side: str = "auto",
    lesion_definition: str = "enclosed",
    register: bool = True,
    acetabular_edge_mm: Sequence[float] | None = None,
    volume_index: int | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Analyse one hip's serial scans from files, oldest first.

    Parameters
    ----------
    images : sequence of path-like
        Baseline first, then follow-ups (NIfTI, NRRD, MHA or DICOM series folders).
    lesion_masks, head_masks : sequence of path-like or None, optional
        Masks drawn by a reader, one per image (``None`` entries are segmented).
    labels : sequence of str, optional
        Timepoint names; ``t0, t1, …`` by default.
    days : sequence of float, optional
        Days since baseline; taken from DICOM study dates when not given.
    threshold_pct : float
        LF threshold for ``threshold_flag`` (10 % by default, see ``THRESHOLD_SOURCE``).
    side, lesion_definition : str
        Passed to the segmenter when masks are missing.
    register : bool
        Register each follow-up to the baseline for the change maps. When ``False``,
        change maps are computed only for scans on the baseline's grid.
    acetabular_edge_mm : sequence of 3 float, optional
        The lateral acetabular edge on the baseline's mid-coronal section (LPS mm), as a reader
        would click it; needed for the JIC type (carried to follow-ups by their transforms).
    volume_index : int, optional
        Which volume to take from 4D images.
    progress : callable, optional
        ``progress(step, total, message)`` before each step.

    Returns
    -------
    StudyResult

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths, sample_mask_paths
    >>> result = analyze(sample_series_paths(), lesion_masks=sample_mask_paths("lesion"),
    ...                  head_masks=sample_mask_paths("head"), register=False)
    >>> [row["timepoint"] for row in result.rows()]
    ['t0', 't1', 't2']
    """
    n = len(images)
    _check_lengths(n, lesion_masks=lesion_masks, head_masks=head_masks, labels=labels, days=days)
    scans = [read_scan(path, volume_index) for path in images]
    lesions = [read_mask(p, s.image) if p is not None else None for p, s in zip(lesion_masks or [None] * n, scans)]
    heads = [read_mask(p, s.image) if p is not None else None for p, s in zip(head_masks or [None] * n, scans)]
    return analyze_scans(scans, lesions=lesions, heads=heads, labels=labels, days=days, threshold_pct=threshold_pct,
                         side=side, lesion_definition=lesion_definition, register=register,
                         acetabular_edge_mm=acetabular_edge_mm, progress=progress)
