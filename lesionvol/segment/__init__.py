"""Segmentation of the femoral head and the necrotic lesion on T1 MRI.

Entry points: :func:`segment_hip` (one hip) and :func:`segment_hips` (every hip in view).
The default method is :class:`ClassicalSegmenter` (sphere fit of the head, marrow-relative
lesion, no absolute intensity threshold); any object following :class:`Segmenter` can replace it
(:class:`MaskSegmenter` for masks from another tool, :class:`OnnxSegmenter` for a trained model).

Example
-------
>>> from lesionvol.phantom import VisitSpec, make_visit, lesion_for_fraction
>>> scan = make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 20.0),)), seed=1)
>>> seg = segment_hip(scan.image)
>>> seg.side, seg.head_definition, seg.lesion_definition
('right', 'anatomical', 'enclosed')
"""

from __future__ import annotations

import warnings

import SimpleITK as sitk

from lesionvol.segment.backends import (
    ClassicalSegmenter,
    HipSegmentation,
    MaskSegmenter,
    OnnxSegmenter,
    Segmenter,
    _check,
)
from lesionvol.segment.head import BOTH_HIPS_FIELD_MM, HeadFit, NoFemoralHeadError, field_width_mm, find_heads

__all__ = ["segment_hip", "segment_hips", "MissingHipWarning", "HipSegmentation", "HeadFit", "Segmenter", "ClassicalSegmenter",
           "MaskSegmenter", "OnnxSegmenter", "NoFemoralHeadError", "find_heads"]



class MissingHipWarning(UserWarning):
    """A field wide enough for both hips gave only one femoral head."""


def segment_hip(image: sitk.Image, *, side: str = "auto", lesion_definition: str = "enclosed",
                head_definition: str = "anatomical", seed_mm: tuple[float, float, float] | None = None,
                segmenter: Segmenter | None = None) -> HipSegmentation:
    """Segment the femoral head and the necrotic lesion of one hip.

    Parameters
    ----------
    image : SimpleITK.Image
        3D T1 image, any intensity scale, any grid (oblique, anisotropic).
    side : {"auto", "left", "right"}
        Which hip.  "auto" takes the only hip in view; with both hips in view it raises
        :class:`lesionvol.errors.InputError` (use :func:`segment_hips` or choose a side).
    lesion_definition : {"enclosed", "dark"}
        Everything enclosed by the low-signal band (incl. a fat-bright centre), or low signal only.
    head_definition : {"anatomical", "sphere"}
        Ball cut at the head–neck junction, or the sphere-equivalent head.
    seed_mm : (x, y, z), optional
        A physical point (LPS mm) in or near the head, e.g. a reader's click; the head is looked
        for within 30 mm of it.
    segmenter : Segmenter, optional
        Method to use; the built-in :class:`ClassicalSegmenter` by default.

    Returns
    -------
    HipSegmentation
        uint8 0/1 head and lesion masks on the image grid, with the side and definitions.

    Raises
    ------
    NoFemoralHeadError
        No femoral head in the image (a subclass of InputError).

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=2)           # a healed head
    >>> from lesionvol.measure import mask_volume_ml
    >>> mask_volume_ml(segment_hip(scan.image).lesion)
    0.0
    """
    _check(side, head_definition, lesion_definition)
    segmenter = segmenter or ClassicalSegmenter()
    return segmenter.segment(image, side=side, head_definition=head_definition,
                             lesion_definition=lesion_definition, seed_mm=seed_mm)


def segment_hips(image: sitk.Image, *, lesion_definition: str = "enclosed", head_definition: str = "anatomical",
                 segmenter: ClassicalSegmenter | None = None) -> dict[str, HipSegmentation]:
    """Segment every hip in view (one or both), keyed by side.

    Raises :class:`NoFemoralHeadError` when no head is found; when a field wide enough for both
    hips (``BOTH_HIPS_FIELD_MM``) gives only one, warns with :class:`MissingHipWarning` naming
    the missing side.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    >>> sorted(segment_hips(scan.image))
    ['left', 'right']
    """
    _check("auto", head_definition, lesion_definition)
    segmenter = segmenter or ClassicalSegmenter()
    out = {fit.side: segmenter.from_fit(image, fit, head_definition, lesion_definition)
           for fit in segmenter.heads(image)}
    width_mm = field_width_mm(image)
    if len(out) == 1 and width_mm >= BOTH_HIPS_FIELD_MM:
        missing = "left" if "right" in out else "right"
        warnings.warn(f"no {missing} femoral head was found in a field {width_mm:.0f} mm wide that should show "
                      f"both hips; only the {next(iter(out))} hip is returned (give segment_hip a seed_mm "
                      f"near the {missing} head to look there)", MissingHipWarning, stacklevel=2)
    return out
