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
