"""Index ↔ physical mapping of a SimpleITK grid, and regions of interest on it.

Arrays are (z, y, x); index vectors are (i, j, k) = (x, y, z) as in ITK; points are physical
LPS millimetres: ``p = origin + direction · (spacing ∘ index)``.

Example
-------
>>> import SimpleITK as sitk
>>> g = Grid.of(sitk.Image(4, 4, 4, sitk.sitkUInt8))
>>> g.to_physical(np.array([[1.0, 2.0, 3.0]])).tolist()
[[1.0, 2.0, 3.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Grid:
    """Geometry of an image grid (spacing, origin, direction, size in index order)."""

    spacing_mm: np.ndarray
    origin_mm: np.ndarray
    direction: np.ndarray
    size: np.ndarray

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        """Grid of a SimpleITK image (3D).

        Example
        -------
        >>> Grid.of(sitk.Image(2, 3, 4, sitk.sitkUInt8)).size.tolist()
        [2, 3, 4]
        """
        return cls(np.asarray(image.GetSpacing(), float), np.asarray(image.GetOrigin(), float),
                   np.asarray(image.GetDirection(), float).reshape(3, 3), np.asarray(image.GetSize(), int))

    @property
    def index_to_mm(self) -> np.ndarray:
        """3×3 matrix taking an index step to a physical step (direction · diag(spacing))."""
        return self.direction @ np.diag(self.spacing_mm)

    def to_physical(self, index: np.ndarray) -> np.ndarray:
        """Continuous indices (N, 3) in (i, j, k) order → physical points (N, 3), mm."""
        return np.asarray(index, float) @ self.index_to_mm.T + self.origin_mm

    def to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Physical points (N, 3) → continuous indices (N, 3) in (i, j, k) order."""
        return (np.asarray(points_mm, float) - self.origin_mm) @ np.linalg.inv(self.index_to_mm).T

    def box_around(self, centre_mm: np.ndarray, half_mm: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Index bounds [lo, hi) (i, j, k) of the grid part within a cube of half side ``half_mm``.

        Returns None when the cube misses the grid.
        """
        corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
        idx = self.to_index(np.asarray(centre_mm, float) + half_mm * corners)
        lo = np.clip(np.floor(idx.min(0)).astype(int), 0, self.size)
        hi = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, self.size)
        if np.any(hi - lo < 2):
            return None
        return lo, hi

    def roi_points(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Physical points of every voxel centre in [lo, hi), shape (nz, ny, nx, 3)."""
        k, j, i = np.meshgrid(*(np.arange(a, b, dtype=np.float32) for a, b in zip(lo[::-1], hi[::-1])),
                              indexing="ij")
        m = self.index_to_mm.astype(np.float32)
        o = self.origin_mm.astype(np.float32)
        return (i[..., None] * m[:, 0] + j[..., None] * m[:, 1] + k[..., None] * m[:, 2]) + o
