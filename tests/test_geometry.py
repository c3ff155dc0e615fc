"""Physical geometry helpers: the one sphere fit and the one index <-> physical mapping."""

from __future__ import annotations

import numpy as np
import pytest

from lesionvol.geometry import fit_sphere


def _sphere_points(centre, radius, n=400, seed=0, noise_mm=0.0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.asarray(centre) + (radius + noise_mm * rng.normal(size=n))[:, None] * d


def test_fit_sphere_exact_points():
    centre, radius = fit_sphere(_sphere_points((-88.0, 15.0, -70.0), 23.0))
    assert centre == pytest.approx([-88.0, 15.0, -70.0], abs=1e-9)
    assert radius == pytest.approx(23.0, abs=1e-9)
    assert isinstance(radius, float)


def test_fit_sphere_noisy_cap():
    """Only the upper half of the sphere is seen (a head cut at its neck), with 0.3 mm noise."""
    pts = _sphere_points((5.0, -3.0, 40.0), 21.0, n=3000, seed=1, noise_mm=0.3)
    pts = pts[pts[:, 2] > 40.0]
    centre, radius = fit_sphere(pts)
    assert np.linalg.norm(centre - [5.0, -3.0, 40.0]) < 0.1
    assert radius == pytest.approx(21.0, abs=0.1)


def test_segmenter_robust_fit_is_the_plain_fit_on_its_inliers():
    """Once its trimming has converged, the segmenter's fit is fit_sphere on the inliers, to the bit."""
    from lesionvol.segment.head import _fit_sphere

    pts = _sphere_points((1.0, 2.0, 3.0), 20.0, n=500, seed=2, noise_mm=0.2)
    c, r, keep = _fit_sphere(pts)
    c_all, r_all = fit_sphere(pts[keep])
    assert np.array_equal(c, c_all) and r == r_all


def test_grid_round_trip_oblique_anisotropic():
    import SimpleITK as sitk

    from lesionvol.geometry import Grid, index_to_physical_affine, physical_points

    img = sitk.Image([30, 20, 10], sitk.sitkUInt8)
    img.SetSpacing((0.7, 0.7, 4.0))
    img.SetOrigin((-120.0, 35.5, 12.0))
    c, s = np.cos(np.radians(12.0)), np.sin(np.radians(12.0))
    img.SetDirection((c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c))
    grid = Grid.of(img)
    ijk = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 5.0], [29.0, 19.0, 9.0]])
    points = grid.to_physical(ijk)
    # SimpleITK is the reference for the LPS convention
    reference = np.array([img.TransformContinuousIndexToPhysicalPoint(tuple(p)) for p in ijk.tolist()])
    assert points == pytest.approx(reference, abs=1e-9)
    assert grid.to_index(points) == pytest.approx(ijk, abs=1e-9)
    # the shortcuts go through the same mapping: (z, y, x) indices and the 4x4 affine
    assert np.array_equal(physical_points(img, ijk[:, ::-1]), points)
    assert (np.c_[ijk, np.ones(3)] @ index_to_physical_affine(img).T)[:, :3] == pytest.approx(points, abs=1e-9)
    roi = grid.roi_points(np.array([3, 4, 5]), np.array([4, 5, 6]))
    assert roi.shape == (1, 1, 1, 3) and roi[0, 0, 0] == pytest.approx(points[1], abs=1e-4)
    assert grid.box_around(points[1], 1.0) is not None
    assert grid.box_around(points[1] + 500.0, 1.0) is None
