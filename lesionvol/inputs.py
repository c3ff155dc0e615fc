"""What an analysis takes: the visits of one hip (:class:`Visit`) and how to analyse them
(:class:`AnalysisOptions`).

Every shell builds these two and calls :func:`lesionvol.study.analyze_scans`: the CLI from its
arguments, the batch runner from a manifest row, the napari widget from its layers. Each option
is declared once, here, with its help text and choices (``dataclasses.fields(AnalysisOptions)``
metadata); the CLI's flags and the widget's controls are made from that declaration, so an option
added here reaches every shell.

Example
-------
>>> options = AnalysisOptions(threshold_pct=15, lesion_definition="dark")
>>> options.as_dict()["threshold_pct"], options.option_help("lesion_definition")[:24]
(15.0, 'segmented lesion: enclos')
>>> Visit("sample.nii.gz", label="baseline", days=0).label
'baseline'
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.io import Scan, as_binary_mask, read_image, read_mask, read_scan
from lesionvol.measure import THRESHOLD_PCT
from lesionvol.slicer_seg import head_and_lesion, is_slicer_segmentation

PathLike = str | os.PathLike
ImageOrPath = sitk.Image | PathLike

SIDES = ("auto", "left", "right")
#: Names that become file or folder names (timepoints, subjects): ASCII letters and digits first,
#: then also ``. _ + -``; at most 64 characters. No path separators, "..", spaces, control
#: characters or spreadsheet formula starts (``= + - @``) can get through.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
HEAD_DEFINITIONS = ("anatomical", "sphere")
LESION_DEFINITIONS = ("enclosed", "dark")


def _option(default: Any, help: str, choices: Sequence[str] | None = None, flag: str | None = None) -> Any:
    """A field of :class:`AnalysisOptions` with what the shells need to offer it."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices or ()), "flag": flag})


@dataclass(frozen=True)
class AnalysisOptions:
    """How one hip's series is analysed (frozen: it is recorded with the result).

    Every field is one option; its ``metadata`` holds the help text and choices the CLI and the
    napari widget show. ``as_dict()`` is the JSON written in ``summary.json`` and hashed in the
    batch resume fingerprint.

    Example
    -------
    >>> AnalysisOptions(side="left").side
    'left'
    >>> AnalysisOptions(threshold_pct=float("nan"))
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: threshold_pct must be a number above 0 and at most 100, not nan
    """

    threshold_pct: float = _option(THRESHOLD_PCT, "LF threshold for threshold_flag, in % of the head (default 10)")
    side: str = _option("auto", "hip to analyse when masks are not given", SIDES)
    head_definition: str = _option(
        "anatomical", "segmented head: anatomical (cut at the head-neck junction) or the fitted sphere",
        HEAD_DEFINITIONS)
    lesion_definition: str = _option(
        "enclosed", "segmented lesion: enclosed (everything inside the band) or dark (low signal only)",
        LESION_DEFINITIONS)
    segmenter: str = _option("classical", "segmentation method: classical, or onnx:MODEL.onnx (a trained model "
                                          "run with onnxruntime; labels 1 head, 2 lesion)")
    register: bool = _option(True, "register each follow-up to the baseline (off: change maps only for "
                                   "follow-ups on the baseline's grid)", flag="--no-register")
    acetabular_edge_mm: tuple[float, float, float] | None = _option(
        None, "lateral acetabular edge on the baseline mid-coronal slice, LPS mm (for the JIC type)")
    head_label: int = _option(1, "value of the head in label maps (the head mask is head + lesion labels)")
    lesion_label: int = _option(2, "value of the lesion in label maps")
    head_segment: str = _option("head", "name of the head segment in 3D Slicer segmentations (.seg.nrrd; case ignored)")
    lesion_segment: str = _option("lesion", "name of the lesion segment in 3D Slicer segmentations (.seg.nrrd; "
                                            "case ignored)")
    volume_index: int | None = _option(None, "volume to take from 4D images", flag="--volume")
    allow_gaps: bool = _option(False, "read a DICOM series with a missing slice or uneven slice spacing on its mean "
                                      "spacing (refused by default: volumes would be wrong)")
    allow_non_t1: bool = _option(False, "analyse images that look T2-weighted, STIR or fat-suppressed (lesion "
                                        "volumetry is defined on T1; the override is recorded with the results)")

    def __post_init__(self) -> None:
        try:
            threshold = float(self.threshold_pct)
        except (TypeError, ValueError):
            raise InputError(f"threshold_pct must be a number, not {self.threshold_pct!r}") from None
        if not 0 < threshold <= 100:  # NaN and infinities fail this too
            raise InputError(f"threshold_pct must be a number above 0 and at most 100, not {self.threshold_pct}")
        object.__setattr__(self, "threshold_pct", threshold)
        for name in ("side", "head_definition", "lesion_definition"):
            choices = self.option_choices(name)
            if getattr(self, name) not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}, not {getattr(self, name)!r}")
        if self.segmenter != "classical" and not (self.segmenter.startswith("onnx:") and len(self.segmenter) > 5):
            raise InputError(f"segmenter must be 'classical' or 'onnx:MODEL.onnx', not {self.segmenter!r}")
        if self.acetabular_edge_mm is not None:
            object.__setattr__(self, "acetabular_edge_mm", point_mm(self.acetabular_edge_mm, "acetabular_edge_mm"))
        if self.head_label == self.lesion_label or min(self.head_label, self.lesion_label) < 1:
            raise InputError(f"head_label and lesion_label must be different positive values, "
                             f"not {self.head_label} and {self.lesion_label}")
        if not self.head_segment.strip() or self.head_segment.strip().casefold() == self.lesion_segment.strip().casefold():
            raise InputError(f"head_segment and lesion_segment must be two different names, "
                             f"not {self.head_segment!r} and {self.lesion_segment!r}")
        object.__setattr__(self, "register", bool(self.register))

    @classmethod
    def option_help(cls, name: str) -> str:
        """The help text of one option."""
        return _fields()[name].metadata["help"]

    @classmethod
    def option_choices(cls, name: str) -> tuple[str, ...]:
        """The allowed values of a choice option (empty for free values)."""
        return _fields()[name].metadata["choices"]

    @classmethod
    def option_flag(cls, name: str) -> str:
        """The command-line flag of one option (``--threshold-pct`` for ``threshold_pct``)."""
        return _fields()[name].metadata["flag"] or "--" + name.replace("_", "-")

    def as_dict(self) -> dict:
        """The options as JSON values (tuples as lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> AnalysisOptions:
        """Options from :meth:`as_dict` output; unknown keys are refused."""
        unknown = sorted(set(values) - set(_fields()))
        if unknown:
            raise InputError(f"unknown analysis option(s): {', '.join(unknown)}")
        return cls(**values)

    def make_segmenter(self):
        """The :class:`lesionvol.segment.Segmenter` this options name."""
        from lesionvol.segment import ClassicalSegmenter, OnnxSegmenter

        if self.segmenter == "classical":
            return ClassicalSegmenter()
        model = self.segmenter[len("onnx:"):]
        if not Path(model).is_file():
            raise InputError(f"ONNX model '{model}' does not exist")
        return OnnxSegmenter(model)


def _fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(AnalysisOptions)}


def point_mm(value: Sequence[float], name: str) -> tuple[float, float, float]:
    """A physical point as three finite floats (LPS mm), or an :class:`InputError` naming it.

    Example
    -------
    >>> point_mm(["1", 2, 3.5], "seed_mm")
    (1.0, 2.0, 3.5)
    """
    try:
        point = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three numbers (x, y, z in mm), not {value!r}") from None
    if len(point) != 3 or not all(math.isfinite(v) for v in point):
        raise InputError(f"{name} must be three finite numbers (x, y, z in mm), not {value!r}")
    return point  # type: ignore[return-value]


def check_name(name: str, what: str) -> str:
    """``name`` if it can name a file or folder as it is (see :data:`NAME_PATTERN`), else an
    :class:`InputError` saying what is allowed.

    Example
    -------
    >>> check_name("3mo", "timepoint")
    '3mo'
    >>> check_name("../../x", "timepoint")
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: timepoint '../../x' cannot name a file: use letters, digits, '.', '_', '+' and '-' (starting with a letter or digit, at most 64 characters)
    """
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None or ".." in name:
        shown = repr(name) if len(str(name)) <= 40 else repr(str(name)[:40]) + f"… ({len(str(name))} characters)"
        raise InputError(f"{what} {shown} cannot name a file: use letters, digits, '.', '_', '+' and '-' "
                         f"(starting with a letter or digit, at most 64 characters)")
    return name


def safe_name(text: str, fallback: str = "t") -> str:
    """A name :func:`check_name` accepts, made from any text (e.g. a napari layer name).

    Example
    -------
    >>> safe_name("T1 cor (3 months)"), safe_name("=SUM(A1)"), safe_name("..")
    ('T1_cor_3_months', 'SUM_A1', 't')
    """
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).replace("..", "_")
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:64].rstrip("_")
    return name if name and NAME_PATTERN.fullmatch(name) else fallback


@dataclass(frozen=True)
class Visit:
    """One scan of the hip and what is known about it.

    Parameters
    ----------
    image : Scan, SimpleITK.Image or path-like
        The scan (file or DICOM folder, read when analysed).
    label : str, optional
        Timepoint name (``t0, t1, …`` by position when not given); it names files, so it must
        pass :func:`check_name`.
    lesion, head : SimpleITK.Image or path-like, optional
        Masks a reader drew, on the image's grid; a missing one is segmented.
    label_map : SimpleITK.Image or path-like, optional
        One label image holding head and lesion (values ``AnalysisOptions.head_label`` and
        ``lesion_label``; the head is head + lesion), or a 3D Slicer ``.seg.nrrd`` (segments
        ``AnalysisOptions.head_segment`` and ``lesion_segment``), instead of ``lesion`` and ``head``.
    days : float, optional
        Days since baseline (from DICOM study dates when no visit gives them).
    transform : SimpleITK.Transform or path-like (.tfm), optional
        Known baseline → this scan transform (ITK convention); this visit is then not registered.
    seed_mm : (x, y, z), optional
        A point in this scan's femoral head (LPS mm), e.g. a reader's click, to guide segmentation.
    mask_source : str, optional
        What the ``mask_source`` column says of this visit's masks (by default ``user``,
        ``segmented`` or which one was segmented).
    series : str, optional
        For a DICOM folder holding several series: which one (number, UID or description).

    Example
    -------
    >>> Visit("m3.nii.gz", label="3mo", days=91, seed_mm=(10, 20, 30)).seed_mm
    (10.0, 20.0, 30.0)
    """

    image: Scan | ImageOrPath
    label: str | None = None
    lesion: ImageOrPath | None = None
    head: ImageOrPath | None = None
    label_map: ImageOrPath | None = None
    days: float | None = None
    transform: sitk.Transform | PathLike | None = None
    seed_mm: tuple[float, float, float] | None = None
    mask_source: str | None = None
    series: str | None = None

    def __post_init__(self) -> None:
        if self.label is not None:
            check_name(self.label, "timepoint")
        if self.label_map is not None and (self.lesion is not None or self.head is not None):
            raise InputError(f"visit {self.label or ''}: give a label map or lesion/head masks, not both")
        if self.days is not None:
            days = float(self.days)
            if not math.isfinite(days):
                raise InputError(f"days of visit {self.label!r} must be a finite number, not {self.days!r}")
            object.__setattr__(self, "days", days)
        if self.seed_mm is not None:
            object.__setattr__(self, "seed_mm", point_mm(self.seed_mm, "seed_mm"))

    def files(self) -> list[str]:
        """The paths this visit reads (for checksums and error messages)."""
        return [os.fspath(v) for v in (self.image, self.lesion, self.head, self.label_map, self.transform)
                if isinstance(v, (str, os.PathLike))]


@dataclass
class LoadedVisit:
    """A :class:`Visit` read into memory: the scan and the masks given (``None``: segment)."""

    visit: Visit
    label: str
    scan: Scan
    lesion: sitk.Image | None
    head: sitk.Image | None
    transform: sitk.Transform | None


def _scan(visit: Visit, options: AnalysisOptions) -> Scan:
    if isinstance(visit.image, Scan):
        return visit.image
    if isinstance(visit.image, sitk.Image):
        return Scan(visit.image)
    return read_scan(visit.image, options.volume_index, allow_gaps=options.allow_gaps, series=visit.series)


def _mask(mask: ImageOrPath | None, reference: sitk.Image, name: str) -> sitk.Image | None:
    if mask is None:
        return None
    if isinstance(mask, sitk.Image):
        return as_binary_mask(mask, reference, name=name)
    return read_mask(mask, reference)


def split_label_map(label_map: ImageOrPath, reference: sitk.Image, head_label: int = 1,
                    lesion_label: int = 2, name: str = "label map", head_segment: str = "head",
                    lesion_segment: str = "lesion") -> tuple[sitk.Image, sitk.Image]:
    """Head and lesion masks from one label image (head = head ∪ lesion labels), or from a 3D Slicer
    segmentation (``.seg.nrrd``: the segments named ``head_segment`` and ``lesion_segment``).

    Other labels (e.g. a neck or acetabulum label) are ignored; a map with neither label is refused.

    Example
    -------
    >>> ref = sitk.Image([8, 8, 8], sitk.sitkFloat32)
    >>> labels = sitk.Image([8, 8, 8], sitk.sitkUInt8); labels[1:7, 1:7, 1:7] = 1; labels[2:4, 2:4, 2:4] = 2
    >>> head, lesion = split_label_map(labels, ref)
    >>> int(sitk.GetArrayViewFromImage(head).sum()), int(sitk.GetArrayViewFromImage(lesion).sum())
    (216, 8)
    """
    if not isinstance(label_map, sitk.Image) and is_slicer_segmentation(label_map):
        return head_and_lesion(label_map, reference, head_segment, lesion_segment)
    if not isinstance(label_map, sitk.Image):
        name = f"label map '{label_map}'"
        label_map = read_image(label_map)
    values = sitk.GetArrayFromImage(label_map)
    if values.dtype.kind == "f" and (values != values.round()).any():
        raise InputError(f"{name} has fractional values; a label map holds whole numbers")
    if not (values == head_label).any() and not (values == lesion_label).any():
        shown = ", ".join(str(int(v)) for v in np.unique(values)[:8])
        raise InputError(f"{name} holds neither the head label {head_label} nor the lesion label {lesion_label} "
                         f"(values {shown}); set --head-label/--lesion-label")
    masks = []
    for inside in ((values == head_label) | (values == lesion_label), values == lesion_label):
        mask = sitk.GetImageFromArray(inside.astype("uint8"))
        mask.CopyInformation(label_map)
        masks.append(as_binary_mask(mask, reference, name=name))
    return masks[0], masks[1]


def load_visit(visit: Visit, index: int, options: AnalysisOptions) -> LoadedVisit:
    """Read a visit's files (scan, masks or label map, transform) and check the masks' grids."""
    label = visit.label if visit.label is not None else f"t{index}"
    scan = _scan(visit, options)
    if visit.label_map is not None:
        head, lesion = split_label_map(visit.label_map, scan.image, options.head_label, options.lesion_label,
                                       name=f"the label map of {label}", head_segment=options.head_segment,
                                       lesion_segment=options.lesion_segment)
    else:
        lesion = _mask(visit.lesion, scan.image, f"the lesion mask of {label}")
        head = _mask(visit.head, scan.image, f"the head mask of {label}")
    transform = visit.transform
    if transform is not None and not isinstance(transform, sitk.Transform):
        try:
            transform = sitk.ReadTransform(os.fspath(transform))
        except RuntimeError:
            raise InputError(f"transform '{os.fspath(transform)}' of {label} is not an ITK transform file") from None
    return LoadedVisit(visit, label, scan, lesion, head, transform)


def visits_from_lists(images: Sequence[Scan | ImageOrPath], *, labels: Sequence[str] | None = None,
                      days: Sequence[float | None] | None = None,
                      lesions: Sequence[ImageOrPath | None] | None = None,
                      heads: Sequence[ImageOrPath | None] | None = None,
                      label_maps: Sequence[ImageOrPath | None] | None = None,
                      seeds_mm: Sequence[Sequence[float] | None] | None = None,
                      series: Sequence[str | None] | None = None) -> list[Visit]:
    """Visits from per-image lists (as the command line gives them), checking the lengths.

    Example
    -------
    >>> [v.label for v in visits_from_lists(["a.nii", "b.nii"], labels=["base", "3mo"])]
    ['base', '3mo']
    >>> visits_from_lists(["a.nii", "b.nii"], days=[0])
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: 1 days for 2 images
    """
    n = len(images)
    if n == 0:
        raise InputError("no images given")
    columns = {"labels": labels, "days": days, "lesion masks": lesions, "head masks": heads,
               "label maps": label_maps, "seed points": seeds_mm, "series": series}
    for name, values in columns.items():
        if values is not None and len(values) != n:
            raise InputError(f"{len(values)} {name} for {n} images")

    def at(values, i):
        return None if values is None else values[i]

    return [Visit(images[i], label=at(labels, i), lesion=at(lesions, i), head=at(heads, i),
                  label_map=at(label_maps, i), days=at(days, i), seed_mm=at(seeds_mm, i), series=at(series, i))
            for i in range(n)]
