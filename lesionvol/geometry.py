"""Physical geometry of SimpleITK images: voxel volumes, affines, grid comparison, sphere fit.

Everything here is in millimetres of the scanner's physical space in the ITK/LPS
convention: ``point = origin + direction @ (spacing * index)`` with ``index``
ordered (i, j, k) = (x, y, z), while numpy arrays from SimpleITK are (z, y, x).
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

#: Largest difference in origin (mm), spacing (relative) or direction cosine for two
#: grids to count as the same. Headers written by different tools round differently.
GRID_TOLERANCE = 1e-4


def voxel_volume_mm3(image: sitk.Image) -> float:
    """Volume of one voxel in mm³.

    The direction matrix is orthonormal, so the volume is the product of the spacing.

    Example
    -------
    >>> img = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    >>> img.SetSpacing((0.5, 0.5, 3.0))
    >>> voxel_volume_mm3(img)
    0.75
    """
    return float(np.prod(image.GetSpacing()))


def index_to_physical_affine(image: sitk.Image) -> np.ndarray:
    """4×4 matrix mapping a homogeneous (i, j, k, 1) index to an LPS point in mm.

    Example
    -------
    >>> img = sitk.Image([2, 2, 2], sitk.sitkUInt8)
    >>> img.SetSpacing((2.0, 2.0, 4.0)); img.SetOrigin((10.0, 0.0, 0.0))
    >>> index_to_physical_affine(img) @ [1, 0, 1, 1]
    array([12.,  0.,  4.,  1.])
    """
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(dim, dim)
    affine = np.eye(dim + 1)
    affine[:dim, :dim] = direction * np.asarray(image.GetSpacing(), dtype=float)
    affine[:dim, dim] = image.GetOrigin()
    return affine


def physical_points(image: sitk.Image, zyx_indices: np.ndarray) -> np.ndarray:
    """LPS points (N, 3) in mm of voxels given as numpy (z, y, x) indices (N, 3).

    Example
    -------
    >>> img = sitk.Image([3, 3, 3], sitk.sitkUInt8)
    >>> img.SetSpacing((1.0, 1.0, 3.0))
    >>> physical_points(img, np.array([[1, 0, 2]]))
    array([[2., 0., 3.]])
    """
    ijk = np.asarray(zyx_indices, dtype=float)[:, ::-1]
    affine = index_to_physical_affine(image)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def fit_sphere(points_mm: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points: centre (mm) and radius (mm).

    The algebraic fit: ``|p|² = 2 p·c + (r² − |c|²)`` is linear in the centre ``c`` and
    ``r² − |c|²``, so one linear least-squares solve gives both.  No outlier handling: callers
    trim their points (a MAD band, or the flat cut of a head mask) and fit again.

    Parameters
    ----------
    points_mm : (N, 3) array_like
        Points in mm, N >= 4 and not coplanar.

    Returns
    -------
    centre_mm : (3,) ndarray
        Sphere centre, mm.
    radius_mm : float
        Sphere radius, mm.

    Example
    -------
    >>> d = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    >>> centre, radius = fit_sphere(np.array([10.0, 20.0, 30.0]) + 5.0 * d)
    >>> np.round(centre, 6).tolist(), round(radius, 6)
    ([10.0, 20.0, 30.0], 5.0)
    """
    p = np.asarray(points_mm, dtype=float)
    a = np.column_stack([2 * p, np.ones(len(p))])
    b = (p * p).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    # r² = sol[3] + |c|² is >= 0 for any real sphere; the floor only guards degenerate input
    radius = math.sqrt(max(sol[3] + centre @ centre, 1e-9))
    return centre, radius


def grid_difference(a: sitk.Image, b: sitk.Image) -> str | None:
    """Describe how the voxel grids of two images differ, or ``None`` if they match.

    Example
    -------
    >>> a = sitk.Image([4, 4, 4], sitk.sitkUInt8); b = sitk.Image([4, 4, 5], sitk.sitkUInt8)
    >>> grid_difference(a, b)
    'size (4, 4, 4) vs (4, 4, 5)'
    """
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    spacing_a, spacing_b = np.asarray(a.GetSpacing()), np.asarray(b.GetSpacing())
    if not np.allclose(spacing_a, spacing_b, rtol=GRID_TOLERANCE, atol=0):
        return f"spacing {tuple(spacing_a.round(5))} vs {tuple(spacing_b.round(5))} mm"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=GRID_TOLERANCE * max(spacing_a)):
        return f"origin {tuple(np.round(a.GetOrigin(), 4))} vs {tuple(np.round(b.GetOrigin(), 4))} mm"
    if not np.allclose(a.GetDirection(), b.GetDirection(), atol=GRID_TOLERANCE):
        return "direction cosines differ"
    return None


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True when two images share size, spacing, origin and direction (within tolerance).

    Example
    -------
    >>> a = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    >>> same_grid(a, sitk.Image(a))
    True
    """
    return grid_difference(a, b) is None


def is_oblique(image: sitk.Image, tolerance: float = 1e-3) -> bool:
    """True when the image axes are not aligned with the LPS axes (up to permutation/flips).

    Example
    -------
    >>> is_oblique(sitk.Image([2, 2, 2], sitk.sitkUInt8))
    False
    """
    direction = np.abs(np.asarray(image.GetDirection()).reshape(3, 3))
    return not np.allclose(np.sort(direction, axis=None)[-3:], 1.0, atol=tolerance)
