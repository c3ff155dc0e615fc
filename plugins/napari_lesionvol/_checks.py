"""Warnings the widget shows before a run: layers without physical geometry, non-T1 images.

A DICOM folder or a NIfTI opened with napari's built-in reader arrives as a bare array: scale 1
on every axis and none of the grid metadata lesionvol's reader keeps (spacing, origin,
direction). Volumes measured on it would be in voxels, not millilitres, and the head finder
would look for a head of the wrong size. Such layers are named, with the way to reopen them.
"""

from __future__ import annotations

import html

import numpy as np

from napari_lesionvol._geometry import META_KEY

#: Metadata keys through which other readers pass a physical grid (ITK-based napari readers).
GEOMETRY_KEYS = (META_KEY, "itk", "spacing", "direction", "origin")


def lacks_geometry(layer) -> bool:
    """True for a layer with no physical geometry: scale 1 on every axis and no grid metadata.

    Example
    -------
    >>> class Layer: scale, metadata = np.ones(3), {}
    >>> lacks_geometry(Layer())
    True
    >>> Layer.scale = np.array([3.0, 0.7, 0.7]); lacks_geometry(Layer())
    False
    """
    meta = getattr(layer, "metadata", None) or {}
    if any(key in meta for key in GEOMETRY_KEYS):
        return False
    return bool(np.allclose(np.asarray(layer.scale, dtype=float)[-3:], 1.0))


def geometry_warning(layer_names: list[str]) -> str:
    """The warning for layers without geometry ("" for none)."""
    if not layer_names:
        return ""
    names = ", ".join(f"'{html.escape(name)}'" for name in layer_names)
    one = len(layer_names) == 1
    return (f"&#9888; {names} {'has' if one else 'have'} no physical geometry (1 mm voxels, no scanner "
            f"position): opened with napari's built-in reader? Volumes would be wrong. Close "
            f"{'it' if one else 'them'} and open the file or DICOM folder again with the reader "
            f"'lesionvol ONFH lesion review' (napari asks which reader when several can open it).")


def contrast_warning(rows: list[dict]) -> str:
    """The status-line warning for visits that do not read as T1 ("" when all do)."""
    odd = [f"{row['timepoint']} reads as {row['image_contrast']}"
           + (f" ({row['image_contrast_reason']})" if row.get("image_contrast_reason") else "")
           for row in rows if row.get("image_contrast") not in (None, "", "T1", "unknown")]
    if not odd:
        return ""
    return "Not T1: " + "; ".join(odd) + ". Lesion volumes are defined on T1 images; check before use."
