"""Writer: a Labels layer to NIfTI on its source scan's grid.

A layer this plugin made knows its native grid (``metadata["lesionvol"]``): the mask is
brought back onto it (the exact inverse reordering, or nearest neighbour for an oblique
scan shown resampled). Any other Labels layer is written on the grid its napari
``scale``/``translate``/``rotate`` describe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from napari_lesionvol._geometry import META_KEY, labels_to_native, layer_image


def labels_to_image(data: np.ndarray, attributes: dict) -> sitk.Image:
    """The Labels layer as a SimpleITK image on its source geometry (uint8, or uint16 if needed)."""
    array = np.asarray(data)
    if array.ndim != 3:
        raise ValueError(f"only 3D labels can be saved as NIfTI (this layer is {array.ndim}D)")
    if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
        raise ValueError("labels must lie in 0..65535 to be saved")
    dtype = np.uint8 if array.max(initial=0) <= 255 else np.uint16
    array = array.astype(dtype)
    meta = (attributes.get("metadata") or {}).get(META_KEY)
    if meta and "native_grid" in meta:
        return sitk.Cast(labels_to_native(array, meta), sitk.sitkUInt8 if dtype == np.uint8 else sitk.sitkUInt16)
    return layer_image(array, attributes.get("scale", (1, 1, 1)), attributes.get("translate", (0, 0, 0)),
                       attributes.get("rotate"))


def write_labels(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer: save Labels to ``path`` (``.nii`` or ``.nii.gz``)."""
    from lesionvol.io import NIFTI_SUFFIXES, split_suffix, write_image

    if split_suffix(path)[1].lower() not in NIFTI_SUFFIXES:
        path = f"{path}.nii.gz"
    write_image(labels_to_image(data, attributes), Path(path))
    return [str(path)]
