"""Physical geometry of SimpleITK images: voxel volumes, index ↔ physical mapping, grid
comparison, sphere fit.

Everything here is in millimetres of the scanner's physical space in the ITK/LPS
convention: ``point = origin + direction @ (spacing * index)`` with ``index``
ordered (i, j, k) = (x, y, z), while numpy arrays from SimpleITK are (z, y, x).
:class:`Grid` holds that mapping and is its one implementation; :func:`physical_points` and
:func:`index_to_physical_affine` are shortcuts through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

#: Largest difference in origin (mm), spacing (relative) or direction cosine for two
#: grids to count as the same. Headers written by different tools round differently.
GRID_TOLERANCE = 1e-4
#: Most Gauss-Newton steps of :func:`fit_sphere`'s orthogonal refinement (it converges in 3-5 on a cap).
ORTHOGONAL_STEPS = 20


@dataclass(frozen=True)
class Grid:
    """Geometry of an image grid: spacing (mm), origin (LPS mm), direction cosines, size.

    Vectors are in index order (i, j, k) = (x, y, z), as in ITK; arrays from SimpleITK are
    (z, y, x).  A physical point is ``origin + direction · (spacing ∘ index)``.

    Example
    -------
    >>> img = sitk.Image([4, 4, 4], sitk.sitkUInt8)
    >>> img.SetSpacing((1.0, 1.0, 3.0)); img.SetOrigin((10.0, 0.0, 0.0))
    >>> g = Grid.of(img)
    >>> g.to_physical(np.array([[1.0, 2.0, 3.0]])).tolist()
    [[11.0, 2.0, 9.0]]
    >>> g.to_index(np.array([[11.0, 2.0, 9.0]])).tolist()
    [[1.0, 2.0, 3.0]]
    """

    spacing_mm: np.ndarray
    origin_mm: np.ndarray
    direction: np.ndarray
    size: np.ndarray

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        """Grid of a SimpleITK image.

        Example
        -------
        >>> Grid.of(sitk.Image(2, 3, 4, sitk.sitkUInt8)).size.tolist()
        [2, 3, 4]
        """
        dim = image.GetDimension()
        return cls(np.asarray(image.GetSpacing(), float), np.asarray(image.GetOrigin(), float),
                   np.asarray(image.GetDirection(), float).reshape(dim, dim), np.asarray(image.GetSize(), int))

    @property
    def index_to_mm(self) -> np.ndarray:
        """Matrix taking an index step to a physical step: direction · diag(spacing)."""
        return self.direction * self.spacing_mm

    def to_physical(self, index: np.ndarray) -> np.ndarray:
        """Continuous indices (N, 3) in (i, j, k) order → physical points (N, 3), mm."""
        return np.asarray(index, float) @ self.index_to_mm.T + self.origin_mm

    def to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Physical points (N, 3), mm → continuous indices (N, 3) in (i, j, k) order."""
        return (np.asarray(points_mm, float) - self.origin_mm) @ np.linalg.inv(self.index_to_mm).T

    def box_around(self, centre_mm: np.ndarray, half_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Index bounds [lo, hi) (i, j, k) of the grid part within a cube of half side ``half_mm`` (3D).

        Returns None when the cube misses the grid (less than two voxels along an axis).

        Example
        -------
        >>> Grid.of(sitk.Image(20, 20, 20, sitk.sitkUInt8)).box_around(np.array([5.0, 5.0, 18.0]), 2.0)
        (array([ 3,  3, 16]), array([ 8,  8, 20]))
        """
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        idx = self.to_index(np.asarray(centre_mm, float) + half_mm * corners)
        lo = np.clip(np.floor(idx.min(0)).astype(int), 0, self.size)
        hi = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, self.size)
        if np.any(hi - lo < 2):
            return None
        return lo, hi

    def roi_points(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Physical points (float32) of every voxel centre in [lo, hi), shape (nz, ny, nx, 3) (3D)."""
        k, j, i = np.meshgrid(*(np.arange(a, b, dtype=np.float32) for a, b in zip(lo[::-1], hi[::-1])),
                              indexing="ij")
        m = self.index_to_mm.astype(np.float32)
        o = self.origin_mm.astype(np.float32)
        return (i[..., None] * m[:, 0] + j[..., None] * m[:, 1] + k[..., None] * m[:, 2]) + o


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
    grid = Grid.of(image)
    dim = len(grid.size)
    affine = np.eye(dim + 1)
    affine[:dim, :dim] = grid.index_to_mm
    affine[:dim, dim] = grid.origin_mm
    return affine


def physical_points(image: sitk.Image, zyx_indices: np.ndarray) -> np.ndarray:
    """LPS points (N, 3) in mm of voxels given as numpy (z, y, x) indices (N, 3).

    Example
    -------
    >>> img = sitk.Image([3, 3, 3], sitk.sitkUInt8)
    >>> img.SetSpacing((1.0, 1.0, 3.0))
    >>> physical_points(img, np.array([[1, 0, 2]])).tolist()
    [[2.0, 0.0, 3.0]]
    """
    return Grid.of(image).to_physical(np.asarray(zyx_indices, dtype=float)[:, ::-1])


def fit_sphere(points_mm: np.ndarray, orthogonal: bool = False) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points: centre (mm) and radius (mm).

    The algebraic fit: ``|p|² = 2 p·c + (r² − |c|²)`` is linear in the centre ``c`` and
    ``r² − |c|²``, so one linear least-squares solve gives both.  No outlier handling: callers
    trim their points (a MAD band, or the flat cut of a head mask) and fit again.
    With ``orthogonal`` the algebraic fit is refined by Gauss-Newton steps to the least squares of
    the points' distances to the surface: on noisy points covering only a cap of the sphere the
    algebraic fit reads the radius small, the orthogonal one does not.

    Parameters
    ----------
    points_mm : (N, 3) array_like
        Points in mm, N >= 4 and not coplanar.
    orthogonal : bool
        Refine to the orthogonal (geometric) least-squares fit.

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

    Points within 45° of the top of a 20 mm sphere, 0.5 mm off it (SD):

    >>> rng = np.random.default_rng(0)
    >>> u = rng.normal(size=(2000, 3)); u /= np.linalg.norm(u, axis=1)[:, None]; u = u[u[:, 2] > 0.7]
    >>> cap = 20.0 * u + rng.normal(0, 0.5, u.shape)
    >>> round(fit_sphere(cap)[1], 1), round(fit_sphere(cap, orthogonal=True)[1], 1)
    (18.8, 20.0)
    """
    p = np.asarray(points_mm, dtype=float)
    a = np.column_stack([2 * p, np.ones(len(p))])
    b = (p * p).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    # r² = sol[3] + |c|² is >= 0 for any real sphere; the floor only guards degenerate input
    radius = math.sqrt(max(sol[3] + centre @ centre, 1e-9))
    return _orthogonal_steps(p, centre, radius, fit_radius=True) if orthogonal else (centre, radius)


def _orthogonal_steps(p: np.ndarray, centre: np.ndarray, radius: float, fit_radius: bool,
                      offsets: np.ndarray | float = 0.0) -> tuple[np.ndarray, float]:
    """Gauss-Newton steps from (``centre``, ``radius``) to the least squares of the points' distances to the sphere
    (to the concentric sphere ``offsets`` mm outside it, per point); the radius is kept fixed unless ``fit_radius``."""
    for _ in range(ORTHOGONAL_STEPS):
        v = p - centre
        dist = np.maximum(np.linalg.norm(v, axis=1), 1e-9)
        jac = -v / dist[:, None]                                                    # d(dist - r)/dc
        if fit_radius:
            jac = np.column_stack([jac, -np.ones(len(p))])                          # and d(dist - r)/dr
        step, *_ = np.linalg.lstsq(jac, -(dist - radius - offsets), rcond=None)
        centre = centre + step[:3]
        if fit_radius:
            radius = radius + float(step[3])
        if np.abs(step).max() < 1e-6:
            break
    return centre, radius


def fit_sphere_centre(points_mm: np.ndarray, radius_mm: float, start_mm: np.ndarray) -> np.ndarray:
    """Centre (mm) of the sphere of a given radius nearest to points (orthogonal least squares), by Gauss-Newton
    steps from ``start_mm``.  No outlier handling, as :func:`fit_sphere`.

    Example
    -------
    Points within 45° of the top of a 20 mm sphere: its centre, from a start 3 mm off.

    >>> rng = np.random.default_rng(0)
    >>> u = rng.normal(size=(2000, 3)); u /= np.linalg.norm(u, axis=1)[:, None]; u = u[u[:, 2] > 0.7]
    >>> float(np.linalg.norm(fit_sphere_centre(20.0 * u, 20.0, np.array([2.0, -1.0, 2.0])))) < 1e-6
    True
    """
    return _orthogonal_steps(np.asarray(points_mm, dtype=float), np.asarray(start_mm, dtype=float), radius_mm,
                             fit_radius=False)[0]


def fit_concentric_spheres(points_mm: np.ndarray, offsets_mm: np.ndarray, start_mm: np.ndarray,
                           start_radius_mm: float) -> tuple[np.ndarray, float]:
    """Centre and radius (mm) of the sphere such that each point lies nearest its own concentric sphere,
    ``offsets_mm`` (one per point) outside it: two surfaces a known gap apart, fitted as one (orthogonal least
    squares, Gauss-Newton steps from ``start_mm`` and ``start_radius_mm``).  No outlier handling, as :func:`fit_sphere`.

    Example
    -------
    The bottom of a 20 mm sphere and the top of one 5 mm larger around it, from a start 3 mm off:

    >>> rng = np.random.default_rng(0)
    >>> u = rng.normal(size=(2000, 3)); u /= np.linalg.norm(u, axis=1)[:, None]
    >>> low, top = u[u[:, 2] < -0.3], u[u[:, 2] > 0.7]
    >>> pts = np.vstack([20.0 * low, 25.0 * top]); gap = np.r_[np.zeros(len(low)), np.full(len(top), 5.0)]
    >>> centre, radius = fit_concentric_spheres(pts, gap, np.array([2.0, -1.0, 2.0]), 18.0)
    >>> float(np.linalg.norm(centre)) < 1e-6, round(radius, 6)
    (True, 20.0)
    """
    return _orthogonal_steps(np.asarray(points_mm, dtype=float), np.asarray(start_mm, dtype=float),
                             float(start_radius_mm), fit_radius=True, offsets=np.asarray(offsets_mm, dtype=float))


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
        return f"spacing {tuple(spacing_a.round(5).tolist())} vs {tuple(spacing_b.round(5).tolist())} mm"
    if not np.allclose(a.GetOrigin(), b.GetOrigin(), atol=GRID_TOLERANCE * max(spacing_a)):
        return f"origin {tuple(np.round(a.GetOrigin(), 4).tolist())} vs {tuple(np.round(b.GetOrigin(), 4).tolist())} mm"
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
