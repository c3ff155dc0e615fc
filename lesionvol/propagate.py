"""A baseline mask carried to a follow-up through the registration: a starting mask to correct.

Transforms follow the project's ITK convention (``lesionvol.register``): the transform maps a
point of the baseline (fixed) to the same anatomical point of the follow-up (moving).  A mask
on the follow-up's grid asks, for each follow-up voxel, which baseline point it is, so the
baseline mask is resampled through the *inverse* transform, with nearest neighbour (labels are
never interpolated).  The result is on the follow-up's own grid, where its volume is measured.

This is a starting point, not a measurement: the lesion changes between visits (that is what is
being followed), so the propagated mask is meant to be corrected (grown from a click, painted).

Example
-------
>>> import SimpleITK as sitk
>>> base = sitk.Image([20, 20, 20], sitk.sitkUInt8); base[5:10, 5:10, 5:10] = 1
>>> follow = sitk.Image([20, 20, 20], sitk.sitkFloat32)
>>> moved = sitk.TranslationTransform(3, (2.0, 0.0, 0.0))   # the hip sits 2 mm further along x
>>> out = propagate_mask(base, follow, moved)
>>> out.GetPixel(11, 7, 7), out.GetPixel(6, 7, 7)
(1, 0)
"""

from __future__ import annotations

import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import same_grid

__all__ = ["propagate_mask"]


def propagate_mask(mask: sitk.Image, followup_image: sitk.Image, transform: sitk.Transform | None) -> sitk.Image:
    """A baseline mask on a follow-up's grid, through the baseline→follow-up transform.

    Parameters
    ----------
    mask : SimpleITK.Image
        Binary mask on the baseline's grid (any non-zero value is inside).
    followup_image : SimpleITK.Image
        The follow-up scan; the result is on its grid.
    transform : SimpleITK.Transform or None
        Baseline (fixed) → follow-up (moving), ITK convention (a registration's ``transform``,
        a ``.tfm`` file).  None only when both scans share one grid and the hip did not move.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask on the follow-up's grid (nearest neighbour).

    Raises
    ------
    InputError
        No transform and the grids differ, or a transform that cannot be inverted.
    """
    binary = sitk.Cast(mask != 0, sitk.sitkUInt8)
    if transform is None:
        if not same_grid(binary, followup_image):
            raise InputError("the follow-up is on another grid and no transform was given: register it first")
        return binary
    try:
        inverse = transform.GetInverse()
    except RuntimeError as exc:
        raise InputError(f"the transform cannot be inverted ({exc}); a rigid registration can") from None
    # Resample asks, per output (follow-up) point, for the input (baseline) point: follow-up -> baseline
    out = sitk.Resample(binary, followup_image, inverse, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out
