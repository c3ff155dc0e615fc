"""SimpleITK grids ↔ napari layers, without Qt or napari.

napari places array index (z, y, x) at ``translate + rotate @ (scale * index)``, the
same rule as ITK (``origin + direction @ (spacing * index)``) with the axes reversed:
``scale = spacing[::-1]``, ``translate = origin[::-1]``, ``rotate = direction[::-1, ::-1]``.

napari slices 2D views along *data* axes, so it only shows an image correctly when its
direction is the identity: with a permuted or oblique direction it warns
"Non-orthogonal slicing ... not fully supported" and shows the wrong plane. So every
image is turned into a *display image* with an identity direction before it becomes a
layer:

* ``native``     direction already the identity: the array as read;
* ``reoriented`` axes along L, P, S up to permutation and flips (coronal, sagittal,
  axial acquisitions): the voxels reordered with ``DICOMOrient`` — lossless, one display
  voxel per native voxel, so painted voxels map back exactly;
* ``resampled``  oblique axes: resampled onto an axis-aligned grid covering the image
  (linear for intensities, nearest neighbour for labels). Masks painted on it are
  resampled back with nearest neighbour.

The true (native) grid travels in the layer's ``metadata["lesionvol"]`` so that
measurements, the writer and the review widget work on the scan's own voxels.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from lesionvol.geometry import grid_difference, is_oblique

META_KEY = "lesionvol"


def grid_dict(image: sitk.Image) -> dict[str, list]:
    """The grid of an image as plain lists (JSON-able): size, spacing, origin, direction."""
    return {
        "size": [int(v) for v in image.GetSize()],
        "spacing": [float(v) for v in image.GetSpacing()],
        "origin": [float(v) for v in image.GetOrigin()],
        "direction": [float(v) for v in image.GetDirection()],
    }


def reference_image(grid: dict, pixel_id: int = sitk.sitkUInt8) -> sitk.Image:
    """An empty image on the grid described by :func:`grid_dict`."""
    image = sitk.Image([int(v) for v in grid["size"]], pixel_id)
    image.SetSpacing([float(v) for v in grid["spacing"]])
    image.SetOrigin([float(v) for v in grid["origin"]])
    image.SetDirection([float(v) for v in grid["direction"]])
    return image


def layer_transform(image: sitk.Image) -> dict[str, Any]:
    """napari ``scale``, ``translate`` and ``rotate`` that place ``image``'s voxels in LPS mm.

    Example
    -------
    >>> img = sitk.Image([4, 3, 2], sitk.sitkUInt8); img.SetSpacing((1.0, 2.0, 3.0))
    >>> layer_transform(img)["scale"]
    (3.0, 2.0, 1.0)
    """
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    return {
        "scale": tuple(float(v) for v in image.GetSpacing()[::-1]),
        "translate": tuple(float(v) for v in image.GetOrigin()[::-1]),
        "rotate": direction[::-1, ::-1].copy(),
    }


def _is_identity(image: sitk.Image) -> bool:
    return bool(np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6))


def axis_aligned_grid(image: sitk.Image) -> sitk.Image:
    """Identity-direction grid covering every voxel of an oblique ``image``.

    The spacing is that of the nearest axis-aligned orientation of the image, so the
    display keeps the acquisition's in-plane resolution and slice spacing.
    """
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    nearest_axis = np.argmax(np.abs(direction), axis=1)  # image axis closest to each LPS axis
    spacing = np.asarray(image.GetSpacing(), dtype=float)[nearest_axis]
    size = np.asarray(image.GetSize(), dtype=float)
    corners_index = np.array([[cx, cy, cz] for cx in (-0.5, size[0] - 0.5)
                              for cy in (-0.5, size[1] - 0.5) for cz in (-0.5, size[2] - 0.5)])
    affine_dir = direction * np.asarray(image.GetSpacing())
    corners = corners_index @ affine_dir.T + np.asarray(image.GetOrigin())
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    new_size = [max(1, int(math.ceil((h - l) / s - 1e-6))) for l, h, s in zip(lo, hi, spacing)]
    reference = sitk.Image(new_size, sitk.sitkUInt8)
    reference.SetSpacing(spacing.tolist())
    reference.SetOrigin((lo + spacing / 2).tolist())
    return reference


def to_display(image: sitk.Image, is_label: bool = False) -> tuple[sitk.Image, str]:
    """The image napari can slice (identity direction) and how it was made.

    Returns ``(display_image, kind)`` with ``kind`` one of ``'native'``, ``'reoriented'``
    or ``'resampled'`` (see the module docstring).

    Example
    -------
    >>> img = sitk.Image([4, 5, 6], sitk.sitkUInt8); img.SetDirection((1, 0, 0, 0, 0, -1, 0, 1, 0))
    >>> display, kind = to_display(img)
    >>> kind, display.GetSize()
    ('reoriented', (4, 6, 5))
    """
    if _is_identity(image):
        return image, "native"
    if not is_oblique(image):
        display = sitk.DICOMOrient(image, "LPS")
        display.SetDirection(np.eye(3).ravel().tolist())  # exact, not 1e-17 off
        return display, "reoriented"
    reference = axis_aligned_grid(image)
    if is_label:
        out = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID())
    else:
        out = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return out, "resampled"


def display_meta(native: sitk.Image, display: sitk.Image, kind: str, **extra: Any) -> dict:
    """``metadata["lesionvol"]`` of a layer: native grid, display grid and provenance."""
    return {"native_grid": grid_dict(native), "display_grid": grid_dict(display), "display": kind, **extra}


def layer_image(data: np.ndarray, scale, translate, rotate=None) -> sitk.Image:
    """A SimpleITK image from a napari layer's array and transform (inverse of :func:`layer_transform`)."""
    image = sitk.GetImageFromArray(np.asarray(data))
    image.SetSpacing([float(v) for v in np.asarray(scale, dtype=float)[::-1]])
    image.SetOrigin([float(v) for v in np.asarray(translate, dtype=float)[::-1]])
    if rotate is not None:
        rot = np.asarray(rotate, dtype=float)
        if rot.shape == (3, 3):
            image.SetDirection(rot[::-1, ::-1].ravel().tolist())
    return image


def to_native(data: np.ndarray, meta: dict, is_label: bool = True) -> sitk.Image:
    """Bring a display array (a layer's data) back onto its native grid.

    For a ``reoriented`` layer this is the exact inverse permutation; for a ``resampled``
    one a nearest-neighbour (labels) or linear (intensities) resampling.
    """
    display = layer_image(np.asarray(data), [1, 1, 1], [0, 0, 0])
    display.CopyInformation(reference_image(meta["display_grid"]))
    native_ref = reference_image(meta["native_grid"])
    kind = meta.get("display", "resampled")
    if kind == "native":
        display.CopyInformation(native_ref)
        return display
    if kind == "reoriented":
        code = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(native_ref.GetDirection())
        out = sitk.DICOMOrient(display, code)
        if grid_difference(out, native_ref) is None:
            out.CopyInformation(native_ref)
            return out
    interpolator = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    pixel = display.GetPixelID() if is_label else sitk.sitkFloat32
    return sitk.Resample(display, native_ref, sitk.Transform(), interpolator, 0, pixel)


def labels_to_native(data: np.ndarray, meta: dict) -> sitk.Image:
    """A Labels layer's data on its native grid, exactly whenever possible.

    A mask shown resampled (oblique scan) cannot be brought back voxel for voxel. When the
    layer still shows what its source file holds, the file's own mask is returned; when
    it was edited, the nearest-neighbour resampling is the best there is (use
    :func:`apply_display_edit` to carry edits over onto a known native mask instead).
    """
    data = np.asarray(data)
    if meta.get("display") == "resampled" and meta.get("source") and Path(meta["source"]).is_file():
        from lesionvol.io import sha256_of

        if not meta.get("sha256") or sha256_of(meta["source"]) == meta["sha256"]:
            native = sitk.ReadImage(meta["source"])
            if grid_difference(native, reference_image(meta["native_grid"])) is None:
                display, _ = to_display(native, is_label=True)
                if np.array_equal(sitk.GetArrayViewFromImage(display), data):
                    return native
    return to_native(data, meta, is_label=True)


def mask_from_layer(data: np.ndarray, meta: dict | None, scale, translate, rotate, reference: sitk.Image) -> tuple[sitk.Image, str]:
    """A 0/1 uint8 mask on ``reference``'s grid from a Labels layer, and how it got there.

    Layers made by this plugin carry their native grid; when it is ``reference``'s grid the
    mask is exact (see :func:`labels_to_native` for oblique scans). Any other layer is placed
    by its napari transform and, if its grid differs from ``reference``, resampled with
    nearest neighbour (the returned note says so).
    """
    binary = (np.asarray(data) != 0).astype(np.uint8)
    if meta and "native_grid" in meta:
        native = labels_to_native(binary, meta)
    else:
        native = layer_image(binary, scale, translate, rotate)
    native = sitk.Cast(native != 0, sitk.sitkUInt8)
    if grid_difference(native, reference) is None:
        native.CopyInformation(reference)
        return native, "same grid"
    out = sitk.Resample(native, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return out, "resampled to the image grid (nearest neighbour)"


def apply_display_edit(native: sitk.Image, before: np.ndarray, after: np.ndarray, meta: dict) -> sitk.Image:
    """Carry the voxels painted or erased on a display array over onto the native mask.

    Native voxels whose display voxel did not change keep their value, so an oblique
    scan's mask is not degraded by a round trip through the display grid; painted
    (erased) display voxels set (clear) the native voxels nearest to them. For a
    reoriented display this is the exact voxel-for-voxel edit.
    """
    before = np.asarray(before) != 0
    after = np.asarray(after) != 0
    added = to_native((after & ~before).astype(np.uint8), meta, is_label=True)
    removed = to_native((before & ~after).astype(np.uint8), meta, is_label=True)
    values = sitk.GetArrayFromImage(native) != 0
    values |= sitk.GetArrayViewFromImage(added) != 0
    values &= sitk.GetArrayViewFromImage(removed) == 0
    out = sitk.GetImageFromArray(values.astype(np.uint8))
    out.CopyInformation(native)
    return out


def layer_point_to_lps(index_zyx, meta: dict | None, scale, translate, rotate=None) -> tuple[float, float, float]:
    """The LPS point (x, y, z mm) of a continuous index (z, y, x) of a layer's data.

    The layer's own grid in its metadata says where its voxels are (``display_grid``);
    a layer without it is placed by its napari ``scale``/``translate``/``rotate``. A click
    in napari (world coordinates, z, y, x) becomes an index with ``layer.world_to_data``.

    Example
    -------
    >>> grid = {"size": [4, 4, 4], "spacing": [1.0, 2.0, 3.0], "origin": [10.0, 20.0, 30.0],
    ...         "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
    >>> layer_point_to_lps([1.0, 1.0, 1.0], {"display_grid": grid}, None, None)
    (11.0, 22.0, 33.0)
    """
    index = [float(v) for v in np.asarray(index_zyx, dtype=float)[::-1]]
    if meta and "display_grid" in meta:
        grid = reference_image(meta["display_grid"])
    else:
        grid = layer_image(np.zeros((1, 1, 1), np.uint8), scale, translate, rotate)
    return tuple(float(v) for v in grid.TransformContinuousIndexToPhysicalPoint(index))


def point_in_grid(point_mm, grid: dict) -> bool:
    """Whether an LPS point lies inside the voxels of a grid (:func:`grid_dict`)."""
    index = reference_image(grid).TransformPhysicalPointToContinuousIndex([float(v) for v in point_mm])
    return all(-0.5 <= i <= n - 0.5 for i, n in zip(index, grid["size"]))
