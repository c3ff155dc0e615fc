"""Voxel-wise change between the baseline lesion and a follow-up lesion, in baseline space.

residual = lesion at both visits; regenerated = baseline lesion only; new = follow-up only.
The follow-up mask is brought onto the baseline grid with nearest-neighbour resampling
through the registration transform (ITK convention: it maps baseline points to follow-up
points). Without a transform, the two masks must already share a grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import grid_difference
from lesionvol.measure import mask_volume_ml


@dataclass(frozen=True)
class ChangeMaps:
    """Masks on the baseline grid and their volumes in mL.

    Example
    -------
    >>> base = sitk.Image([10, 10, 10], sitk.sitkUInt8); base[0:4, 0:5, 0:5] = 1
    >>> follow = sitk.Image(base); follow[0:4, 0:5, 0:5] = 0; follow[0:2, 0:5, 0:5] = 1
    >>> change = change_maps(base, follow)
    >>> change.residual_ml, change.regenerated_ml, change.new_lesion_ml
    (0.05, 0.05, 0.0)
    """

    residual: sitk.Image
    regenerated: sitk.Image
    new_lesion: sitk.Image

    @property
    def residual_ml(self) -> float:
        return mask_volume_ml(self.residual)

    @property
    def regenerated_ml(self) -> float:
        return mask_volume_ml(self.regenerated)

    @property
    def new_lesion_ml(self) -> float:
        return mask_volume_ml(self.new_lesion)


def followup_in_baseline_space(
    baseline_mask: sitk.Image, followup_mask: sitk.Image, transform: sitk.Transform | None = None
) -> sitk.Image:
    """Resample a follow-up mask onto the baseline grid (nearest neighbour).

    Example
    -------
    >>> base = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    >>> follow = sitk.Image([4, 4, 4], sitk.sitkUInt8); follow[1, 1, 1] = 1
    >>> shift = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))  # baseline x → follow-up x + 1
    >>> moved = followup_in_baseline_space(base, follow, shift)
    >>> moved[0, 1, 1], moved[1, 1, 1]
    (1, 0)
    """
    if transform is None:
        difference = grid_difference(baseline_mask, followup_mask)
        if difference is not None:
            raise InputError(f"follow-up mask is on another grid ({difference}); a registration is needed")
        return sitk.Cast(followup_mask != 0, sitk.sitkUInt8)
    return sitk.Resample(
        sitk.Cast(followup_mask != 0, sitk.sitkUInt8), baseline_mask, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
    )


def change_maps(
    baseline_lesion: sitk.Image, followup_lesion: sitk.Image, transform: sitk.Transform | None = None
) -> ChangeMaps:
    """Residual, regenerated and new-lesion masks in baseline space (see module docstring)."""
    base = sitk.Cast(baseline_lesion != 0, sitk.sitkUInt8)
    follow = followup_in_baseline_space(base, followup_lesion, transform)
    return ChangeMaps(
        residual=sitk.And(base, follow),
        regenerated=sitk.And(base, sitk.Not(follow)),
        new_lesion=sitk.And(sitk.Not(base), follow),
    )
