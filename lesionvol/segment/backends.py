"""Pluggable segmenters: the interface, the built-in classical method, given masks, ONNX models.

A segmenter is anything with ``name`` and ``segment(image, *, side, head_definition,
lesion_definition, seed_mm) -> HipSegmentation``.  :func:`lesionvol.segment.segment_hip` uses
:class:`ClassicalSegmenter` unless told otherwise.

Example
-------
>>> isinstance(ClassicalSegmenter(), Segmenter)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.segment.head import HeadFit, NoFemoralHeadError, find_heads
from lesionvol.segment.lesion import MarginReading, segment_masks

__all__ = ["HipSegmentation", "Segmenter", "ClassicalSegmenter", "MaskSegmenter", "OnnxSegmenter",
           "SIDES", "HEAD_DEFINITIONS", "LESION_DEFINITIONS"]

SIDES = ("auto", "left", "right")
HEAD_DEFINITIONS = ("anatomical", "sphere")
LESION_DEFINITIONS = ("enclosed", "dark")


@dataclass
class HipSegmentation:
    """Femoral head and necrotic lesion of one hip, uint8 0/1 masks on the image grid.

    ``head_definition``: "anatomical" (ball cut at the head–neck junction) or "sphere"
    (sphere-equivalent head); ``lesion_definition``: "enclosed" (everything inside the
    demarcating band) or "dark" (low-signal only).  ``method`` names the segmenter and version;
    ``head_fit`` holds the fitted sphere (classical method), ``masks`` the other definitions and
    ``lesion_margin`` how an enclosed lesion meets the healthy marrow (classical method).

    Example
    -------
    >>> m = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    >>> HipSegmentation(m, m, "right", "anatomical", "enclosed", "given masks").side
    'right'
    """

    head: sitk.Image
    lesion: sitk.Image
    side: str
    head_definition: str
    lesion_definition: str
    method: str
    head_fit: HeadFit | None = None
    masks: dict[str, sitk.Image] = field(default_factory=dict, repr=False)
    lesion_margin: MarginReading | None = None

    @property
    def centre_mm(self) -> np.ndarray | None:
        """Fitted head centre (physical LPS mm), when the method fits one."""
        return None if self.head_fit is None else self.head_fit.centre_mm


@runtime_checkable
class Segmenter(Protocol):
    """What :func:`lesionvol.segment.segment_hip` needs from a segmentation method."""

    name: str

    def segment(self, image: sitk.Image, *, side: str = "auto", head_definition: str = "anatomical",
                lesion_definition: str = "enclosed", seed_mm=None) -> HipSegmentation:
        """Segment one hip of ``image``."""
        ...


def _check(side: str, head_definition: str, lesion_definition: str) -> None:
    if side == "both":
        raise InputError("segment_hip segments one hip; use segment_hips for both")
    if side not in SIDES:
        raise InputError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if head_definition not in HEAD_DEFINITIONS:
        raise InputError(f"head definition must be one of {', '.join(HEAD_DEFINITIONS)}, got {head_definition!r}")
    if lesion_definition not in LESION_DEFINITIONS:
        raise InputError(f"lesion definition must be one of {', '.join(LESION_DEFINITIONS)}, "
                         f"got {lesion_definition!r}")


def _pick_side(fits: list[HeadFit], side: str) -> HeadFit:
    if side == "auto":
        if len(fits) > 1:
            raise InputError("the image shows both hips; choose one with --side left|right "
                             "(or call segment_hips for both)")
        return fits[0]
    for f in fits:
        if f.side == side:
            return f
    found = ", ".join(f.side for f in fits)
    raise NoFemoralHeadError(f"no {side} femoral head in the image (found: {found})")


class ClassicalSegmenter:
    """Built-in method: sphere + neck-axis head fit, marrow-relative lesion (SimpleITK, SciPy).

    Example
    -------
    >>> ClassicalSegmenter().name
    'classical-1'
    """

    name = "classical-1"

    def heads(self, image: sitk.Image, seed_mm=None) -> list[HeadFit]:
        """Every femoral head found (one per side)."""
        return find_heads(image, seed_mm=seed_mm)

    def from_fit(self, image: sitk.Image, fit: HeadFit, head_definition: str = "anatomical",
                 lesion_definition: str = "enclosed") -> HipSegmentation:
        """Masks for one fitted head."""
        _check(fit.side, head_definition, lesion_definition)
        m = segment_masks(image, fit)
        masks = {"head_anatomical": m.head_anatomical, "head_sphere": m.head_sphere,
                 "lesion_enclosed": m.lesion_enclosed, "lesion_dark": m.lesion_dark, "oedema": m.oedema,
                 "band_continued": m.band_continued, "band_sphere_marrow": m.band_sphere_marrow,
                 "set_aside": m.set_aside, "band_unread": m.band_unread}
        return HipSegmentation(masks[f"head_{head_definition}"], masks[f"lesion_{lesion_definition}"],
                               fit.side, head_definition, lesion_definition, self.name, fit, masks,
                               m.margin if lesion_definition == "enclosed" else None)

    def segment(self, image: sitk.Image, *, side: str = "auto", head_definition: str = "anatomical",
                lesion_definition: str = "enclosed", seed_mm=None) -> HipSegmentation:
        """Segment one hip; see :func:`lesionvol.segment.segment_hip`."""
        _check(side, head_definition, lesion_definition)
        fit = _pick_side(self.heads(image, seed_mm), side)
        return self.from_fit(image, fit, head_definition, lesion_definition)


class MaskSegmenter:
    """Masks drawn or computed elsewhere (napari, ITK-SNAP, Slicer, another tool).

    Parameters
    ----------
    head, lesion : SimpleITK.Image
        Binary masks on the image's grid (any non-zero value is inside).
    side : str
        "left" or "right".

    Example
    -------
    >>> m = sitk.Image(4, 4, 4, sitk.sitkUInt8)
    >>> MaskSegmenter(m, m, side="left").segment(m).side
    'left'
    """

    name = "given-masks"

    def __init__(self, head: sitk.Image, lesion: sitk.Image, *, side: str, head_definition: str = "anatomical",
                 lesion_definition: str = "enclosed"):
        self.head, self.lesion, self.side = head, lesion, side
        self.head_definition, self.lesion_definition = head_definition, lesion_definition

    def segment(self, image: sitk.Image, *, side: str = "auto", head_definition: str = "anatomical",
                lesion_definition: str = "enclosed", seed_mm=None) -> HipSegmentation:
        """Return the given masks (checked against the image grid, as every mask is), as uint8 0/1."""
        from lesionvol.io import as_binary_mask

        return HipSegmentation(as_binary_mask(self.head, image, name="the given head mask"),
                               as_binary_mask(self.lesion, image, name="the given lesion mask"),
                               self.side, self.head_definition, self.lesion_definition, self.name)


class OnnxSegmenter:
    """A trained model run with ONNX Runtime (optional; ``pip install onnxruntime``).

    The model takes one float32 input (1, 1, z, y, x), the image resampled to ``spacing_mm``
    (isotropic, in the image's own directions) and scaled so its fat signal reads 1, and returns
    per-voxel labels (1, z, y, x) or class scores (1, C, z, y, x) with 0 background,
    ``head_label`` head, ``lesion_label`` lesion (lesion voxels are head too).  Masks are
    resampled back with nearest neighbour.  The side is taken from the classical head fit.

    Example
    -------
    >>> OnnxSegmenter("model.onnx").name
    'onnx:model.onnx'
    """

    def __init__(self, model_path: str, *, spacing_mm: float = 1.0, head_label: int = 1, lesion_label: int = 2):
        self.model_path, self.spacing_mm = str(model_path), float(spacing_mm)
        self.head_label, self.lesion_label = head_label, lesion_label
        self.name = f"onnx:{self.model_path}"
        self._session = None

    def _run(self, array: np.ndarray) -> np.ndarray:
        if self._session is None:
            try:
                import onnxruntime
            except ImportError as exc:   # optional dependency
                raise InputError("the ONNX backend needs onnxruntime: pip install onnxruntime") from exc
            self._session = onnxruntime.InferenceSession(self.model_path, providers=["CPUExecutionProvider"])
        name = self._session.get_inputs()[0].name
        out = self._session.run(None, {name: array[None, None].astype(np.float32)})[0]
        return out[0].argmax(0) if out.ndim == 5 else out[0]

    def segment(self, image: sitk.Image, *, side: str = "auto", head_definition: str = "anatomical",
                lesion_definition: str = "enclosed", seed_mm=None) -> HipSegmentation:
        """Run the model on the whole image and return its head and lesion masks."""
        from lesionvol.segment.head import fat_level

        _check(side, head_definition, lesion_definition)
        spacing = np.asarray(image.GetSpacing())
        size = [max(1, int(round(n * s / self.spacing_mm))) for n, s in zip(image.GetSize(), spacing)]
        ref = sitk.Image(size, sitk.sitkFloat32)
        ref.SetSpacing([self.spacing_mm] * 3)
        ref.SetOrigin(image.GetOrigin())
        ref.SetDirection(image.GetDirection())
        work = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear)
        arr = sitk.GetArrayFromImage(work)
        labels = self._run(arr / fat_level(arr)).astype(np.uint8)
        lab = sitk.GetImageFromArray(labels)
        lab.CopyInformation(work)
        lab = sitk.Resample(lab, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        head = sitk.Cast((lab == self.head_label) | (lab == self.lesion_label), sitk.sitkUInt8)
        lesion = sitk.Cast(lab == self.lesion_label, sitk.sitkUInt8)
        if side == "auto":
            side = _pick_side(find_heads(image, seed_mm=seed_mm), "auto").side
        return HipSegmentation(head, lesion, side, head_definition, lesion_definition, self.name)
