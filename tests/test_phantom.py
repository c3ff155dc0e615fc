"""Tests of the synthetic hip phantom: its truths are numbers checked against independent formulas.

Voxelisation margins used below.  Truth masks sample the shapes at voxel centres, which is
unbiased for a smooth surface at a position unrelated to the grid; the count error comes only
from voxels cut by the surface and stays well below the volume of the boundary layer
(surface area × geometric-mean spacing).  We allow 10 % of that layer:
head (area ≈ 6300 mm², 1.44 mm) → 2 %; enclosed lesion (≈ 1300 mm² for 8 mL) → 3 %;
a bright-centred lesion's dark band (two surfaces, ~3.5 mL) → 8 %.  Observed errors on the grids
below are ≤ 0.9 %, ≤ 0.9 % and ≤ 3.7 %.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import integrate, ndimage

from lesionvol.phantom import (
    JUNCTION_FRACTION,
    LesionSpec,
    VisitSpec,
    ball_volume_mm3,
    cap_volume_mm3,
    head_volume_mm3,
    lens_volume_mm3,
    lesion_for_fraction,
    make_series,
    make_visit,
    nested_followup,
)

SMALL = dict(shape=(64, 64, 24), spacing_mm=(2.0, 2.0, 5.0))
R = 23.0


def _ml(mask: sitk.Image) -> float:
    return float(sitk.GetArrayFromImage(mask).sum()) * float(np.prod(mask.GetSpacing())) / 1000.0


def _voxel_points(image: sitk.Image) -> np.ndarray:
    """Physical coordinates of every voxel centre, shaped like the numpy array (z, y, x, 3)."""
    nx, ny, nz = image.GetSize()
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    idx = np.stack([i, j, k], -1).astype(float)
    D = np.array(image.GetDirection()).reshape(3, 3)
    return idx @ (D @ np.diag(image.GetSpacing())).T + np.array(image.GetOrigin())


# ------------------------------------------------------------------ formulas, independently
def test_ball_cap_head_formulas_match_integration():
    assert ball_volume_mm3(R) == pytest.approx(4 / 3 * math.pi * R**3, rel=1e-12)
    d = 0.55 * R
    cap, _ = integrate.quad(lambda z: math.pi * (R * R - z * z), d, R)
    assert cap_volume_mm3(R, R - d) == pytest.approx(cap, rel=1e-10)
    assert head_volume_mm3(R, d) == pytest.approx(ball_volume_mm3(R) - cap, rel=1e-10)


@pytest.mark.parametrize("r, dist", [(12.0, 18.0), (5.0, 20.0), (30.0, 10.0), (10.0, 5.0), (8.0, 40.0)])
def test_lens_formula_matches_integration(r, dist):
    # both centres on the z axis: each cross-section is the smaller of two concentric discs
    area = lambda z: math.pi * max(0.0, min(R * R - z * z, r * r - (z - dist) ** 2))  # noqa: E731
    exact, _ = integrate.quad(area, -R, R, points=[dist - r, dist + r], limit=200)
    assert lens_volume_mm3(R, r, dist) == pytest.approx(exact, rel=1e-8, abs=1e-9)


# ------------------------------------------------------------------ truths of a visit
def test_visit_truth_volumes_are_analytic():
    les = LesionSpec((-3.0, -9.0, 17.0), 10.0, band_mm=2.0, bright_centre=True)
    scan = make_visit(VisitSpec(lesions=(les,), **SMALL), seed=0)
    t = scan.truth
    dist = float(np.linalg.norm(les.centre_offset_mm))
    cap_mm = (1.0 - JUNCTION_FRACTION) * R        # the cap beyond the head-neck cut
    assert t.head_volume_ml * 1000 == pytest.approx(
        4 / 3 * math.pi * R**3 - math.pi * cap_mm**2 * (3 * R - cap_mm) / 3, rel=1e-12)
    assert t.head_sphere_volume_ml * 1000 == pytest.approx(4 / 3 * math.pi * R**3, rel=1e-12)
    assert t.lesion_enclosed_ml * 1000 == pytest.approx(lens_volume_mm3(R, 10.0, dist), rel=1e-12)
    assert t.lesion_dark_ml * 1000 == pytest.approx(
        lens_volume_mm3(R, 10.0, dist) - lens_volume_mm3(R, 8.0, dist), rel=1e-12)
    assert t.volume_method == "analytic"


def test_numerical_integration_error_below_0p2_percent():
    les = lesion_for_fraction(R, 18.0)
    exact = lens_volume_mm3(R, les.radius_mm, float(np.linalg.norm(les.centre_offset_mm)))
    # two identical components force the numerical path; the union is the same lens
    t = make_visit(VisitSpec(lesions=(les, les), **SMALL), seed=0).truth
    assert t.volume_method == "numerical"
    assert t.lesion_enclosed_ml * 1000 == pytest.approx(exact, rel=1e-4)
    assert t.volume_rel_error < 2e-3
    # a deep ellipsoid (inside the head) has volume 4/3 π abc
    ell = LesionSpec((0.0, 0.0, 5.0), 6.0, axis_scale=(1.0, 1.5, 0.8))
    t = make_visit(VisitSpec(lesions=(ell,), **SMALL), seed=0).truth
    assert t.lesion_enclosed_ml * 1000 == pytest.approx(4 / 3 * math.pi * 6 * 9 * 4.8, rel=2e-4)


def test_lesion_for_fraction_hits_target_and_touches_the_surface():
    les = lesion_for_fraction(R, 18.0)
    dist = float(np.linalg.norm(les.centre_offset_mm))
    assert 100 * lens_volume_mm3(R, les.radius_mm, dist) / head_volume_mm3(R, JUNCTION_FRACTION * R) == pytest.approx(18.0, rel=1e-9)
    assert dist + les.radius_mm > R + 1.0   # the lens reaches the subchondral plate
    scan = make_visit(VisitSpec(lesions=(les,), shape=(100, 100, 40), spacing_mm=(1.2, 1.2, 3.0)), seed=1)
    pts = _voxel_points(scan.image)[sitk.GetArrayFromImage(scan.lesion_enclosed_mask) > 0]
    reach = np.linalg.norm(pts - scan.truth.head_centre_mm, axis=1).max()
    assert reach > R - 0.5 * np.linalg.norm(scan.image.GetSpacing())
    # antero-superior: centroid anterior (−y) and superior (+z) of the head centre
    off = scan.truth.lesion_centroid_mm - scan.truth.head_centre_mm
    assert off[1] < -3 and off[2] > 10


@pytest.mark.parametrize("shape, spacing, plane, oblique, rot", [
    ((128, 128, 40), (1.0, 1.0, 3.0), "coronal", 0.0, (4.0, -6.0, 3.0)),
    ((96, 96, 40), (1.3, 1.3, 3.0), "coronal", 20.0, (-8.0, 5.0, 9.0)),
    ((128, 128, 30), (0.9, 0.9, 4.0), "sagittal", 12.0, (10.0, 2.0, -5.0)),
])
def test_truth_masks_agree_with_analytic_volumes(shape, spacing, plane, oblique, rot):
    les = lesion_for_fraction(R, 18.0, bright_centre=True)
    scan = make_visit(VisitSpec(lesions=(les,), shape=shape, spacing_mm=spacing, plane=plane,
                                oblique_deg=oblique, rotation_deg=rot, translation_mm=(5, -7, 3)), seed=2)
    t = scan.truth
    assert _ml(scan.head_mask) == pytest.approx(t.head_volume_ml, rel=0.02)
    assert _ml(scan.lesion_enclosed_mask) == pytest.approx(t.lesion_enclosed_ml, rel=0.03)
    assert _ml(scan.lesion_dark_mask) == pytest.approx(t.lesion_dark_ml, rel=0.08)
    for m in (scan.head_mask, scan.lesion_enclosed_mask, scan.lesion_dark_mask):
        assert m.GetPixelID() == sitk.sitkUInt8
        assert m.GetSpacing() == scan.image.GetSpacing() and m.GetDirection() == scan.image.GetDirection()
    assert scan.image.GetPixelID() == sitk.sitkFloat32


# ------------------------------------------------------------------ image formation
def test_same_seed_identical_different_seed_differs():
    spec = VisitSpec(lesions=(lesion_for_fraction(R, 10.0),), **SMALL)
    a = sitk.GetArrayFromImage(make_visit(spec, seed=7).image)
    b = sitk.GetArrayFromImage(make_visit(spec, seed=7).image)
    c = sitk.GetArrayFromImage(make_visit(spec, seed=8).image)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("snr, bias", [(25.0, 0.0), (10.0, 0.0), (25.0, 0.15)])
def test_snr_in_marrow(snr, bias):
    scan = make_visit(VisitSpec(shape=(80, 80, 40), spacing_mm=(1.0, 1.0, 1.5), snr=snr,
                                bias_amplitude=bias), seed=3)
    img = sitk.GetArrayFromImage(scan.image)
    # 10 mm ball around the head centre: all fatty marrow when there is no lesion
    near = np.linalg.norm(_voxel_points(scan.image) - scan.truth.head_centre_mm, axis=-1) < 10.0
    vals = img[near]
    assert vals.mean() / vals.std() == pytest.approx(snr, rel=0.2)


def test_healed_visit_has_no_lesion():
    scan = make_visit(VisitSpec(lesions=(), **SMALL), seed=0)
    assert scan.truth.lesion_enclosed_ml == 0.0 and scan.truth.lesion_dark_ml == 0.0
    assert scan.truth.lesion_centroid_mm is None
    assert _ml(scan.lesion_enclosed_mask) == 0.0


def test_both_hips_gives_two_heads_with_their_own_truths():
    right = lesion_for_fraction(R, 15.0, side="right")
    scan = make_visit(VisitSpec(lesions=(right,), shape=(160, 64, 24), spacing_mm=(2.2, 2.0, 5.0)),
                      seed=0, side="both")
    _, n = ndimage.label(sitk.GetArrayFromImage(scan.head_mask))
    assert n == 2
    assert set(scan.truths) == {"right", "left"}
    assert scan.truths["right"].head_centre_mm[0] < scan.truths["left"].head_centre_mm[0]
    assert scan.truths["right"].lesion_pct_head == pytest.approx(15.0, rel=1e-9)
    assert scan.truths["left"].lesion_enclosed_ml == 0.0
    assert _ml(scan.head_mask) == pytest.approx(2 * scan.truth.head_volume_ml, rel=0.03)


# ------------------------------------------------------------------ series, poses, change
def test_series_pose_truth_and_change():
    s = make_series(seed=4, n_followups=2, residual_fractions=(0.6, 0.0), **SMALL)
    base = s.scans[0].truth
    for i, tf in enumerate(s.transforms, start=1):
        t = s.scans[i].truth
        mapped = np.array(tf.TransformPoint(tuple(base.head_centre_mm)))
        assert np.linalg.norm(mapped - t.head_centre_mm) < 1e-6
        p0, p1 = s.head_points_mm(0), s.head_points_mm(i)
        moved = np.array([tf.TransformPoint(tuple(p)) for p in p0])
        assert np.abs(moved - p1).max() < 1e-6
        assert np.linalg.norm(mapped - base.head_centre_mm) > 0.1   # the hip did move
        np.testing.assert_allclose(np.array(tf.GetMatrix()).reshape(3, 3) @ base.neck_axis, t.neck_axis, atol=1e-9)
    v = [sc.truth.lesion_enclosed_ml for sc in s.scans]
    assert s.regenerated_ml == pytest.approx([v[0] - v[1], v[0] - v[2]], abs=1e-12)
    assert s.new_ml == [0.0, 0.0]
    assert v[2] == 0.0 and s.changes[1]["right"].residual_pct_baseline == 0.0
    assert s.changes[0]["right"].residual_pct_baseline == pytest.approx(60.0, rel=1e-9)
    assert s.days == [0.0, 91.0, 365.0]


def test_new_lesion_component_counts_as_new():
    extra = LesionSpec((-8.0, 15.0, 14.0), 6.0)           # posterior, clear of the baseline lesion
    s = make_series(seed=5, n_followups=1, residual_fractions=(0.5,), new_lesion=extra, **SMALL)
    head = s.scans[0].truth.head_radius_mm
    new_exact = lens_volume_mm3(head, 6.0, float(np.linalg.norm(extra.centre_offset_mm))) / 1000
    assert s.new_ml[0] == pytest.approx(new_exact, rel=1e-3)
    v0 = s.scans[0].truth.lesion_enclosed_ml
    assert s.regenerated_ml[0] == pytest.approx(0.5 * v0, rel=1e-3)


def test_nested_followup_is_inside_baseline_ball():
    b = lesion_for_fraction(R, 25.0)
    f = nested_followup(b, 0.3, R)
    gap = np.linalg.norm(np.subtract(f.centre_offset_mm, b.centre_offset_mm)) + f.radius_mm
    assert gap <= b.radius_mm + 1e-9


def test_landmarks_for_staging():
    t = make_visit(VisitSpec(**SMALL), seed=0, side="right").truth
    assert np.linalg.norm(t.neck_axis) == pytest.approx(1.0)
    assert t.neck_axis[0] < -0.5 and t.neck_axis[2] < -0.3       # right hip: lateral (−x), inferior
    edge = t.acetabular_edge_mm - t.head_centre_mm
    assert edge[0] < 0 and edge[2] > 0                            # lateral and superior of the head
    assert abs(edge[1]) < 1e-9                                    # on the mid-coronal plane
    tl = make_visit(VisitSpec(**SMALL), seed=0, side="left").truth
    assert tl.neck_axis[0] > 0.5 and (tl.acetabular_edge_mm - tl.head_centre_mm)[0] > 0
