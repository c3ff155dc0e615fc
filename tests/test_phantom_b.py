"""Phantom family B (lesionvol.phantom_b): its truth is self-consistent and follows the definitions.

Exact volumes against closed forms, image masks converging to them, the lesion inside the head,
LF = 100 · lesion / head, contrasts ordering tissues as documented, left/right mirror symmetry,
normal heads reading 0 mL, anatomy pointing the way its side implies.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from lesionvol.phantom_b import (SIGNAL, TISSUES, Hip, HipScanSpec, Lesion, _build, _directions, _rays_from,
                                 _ray_volume, head_volume_ml, lesion_volumes_ml, make_hip_scan, tissue_labels)


def _head_crop(side="right", spacing=(1.0, 1.0, 1.0), lesion=None, **kw):
    """A small field around one head (fast): 64 mm cube centred on the head."""
    hip = Hip(side, lesion=lesion)
    c = (-90.0 if side == "right" else 90.0, 0.0, 0.0)
    spec = HipScanSpec(**{side: hip}, field=side, spacing_mm=spacing, fov_mm=(64.0, 64.0, 64.0),
                       field_centre_mm=c, **kw)
    return make_hip_scan(spec, seed=3)


def _lens_ml(R, r, D):
    return math.pi * (R + r - D) ** 2 * (D * D + 2 * D * r - 3 * r * r + 2 * D * R + 6 * r * R - 3 * R * R) / (12 * D) / 1000


def test_head_volume_closed_form_equals_ray_integral():
    for R, frac in [(22.0, 0.65), (24.0, 0.72), (27.0, 0.8)]:
        hip = Hip(head_radius_mm=R, neck_radius_fraction=frac)
        g = _build(hip, (0.0, 0.0, 0.0))
        u, w = _directions(240, 480)
        rays = _rays_from(g, np.zeros(3), u, w)
        by_rays = _ray_volume(rays, np.zeros(len(w)), np.full(len(w), np.inf)) / 1000
        assert by_rays == pytest.approx(head_volume_ml(hip), rel=2e-5)
        # ball − cap − fovea lens, and the head lies in the published range (49 ± 5 mL, Ø 38–54 mm)
        assert 30 < head_volume_ml(hip) < 75


def test_spherical_lesion_equals_lens_volume():
    """With no ripple and no elongation the lesion is ball ∩ ball: a closed-form lens."""
    R, depth, r = 24.0, 5.0, 12.0
    hip = Hip(head_radius_mm=R, lesion=Lesion(radius_mm=r, depth_mm=depth, ripple=0.0, elongation=(1.0, 1.0)))
    enclosed, dark = lesion_volumes_ml(hip)
    assert enclosed == pytest.approx(_lens_ml(R, r, R - depth), rel=2e-4)
    inner = _lens_ml(R, r - hip.lesion.band_mm, R - depth)
    assert dark == pytest.approx(enclosed - inner, rel=2e-3)


@pytest.mark.parametrize("pct", [2.0, 10.0, 25.0, 40.0])
def test_lesion_solved_for_its_pct(pct):
    hip = Hip(lesion=Lesion(pct_of_head=pct, shape_seed=int(pct)))
    enclosed, dark = lesion_volumes_ml(hip)
    assert 100 * enclosed / head_volume_ml(hip) == pytest.approx(pct, abs=0.01)
    assert 0 < dark < enclosed


def test_oedematous_centre_is_dark_throughout():
    hip = Hip(lesion=Lesion(pct_of_head=15.0, centre="oedema"))
    enclosed, dark = lesion_volumes_ml(hip)
    assert dark == enclosed


def test_masks_converge_to_exact_volumes():
    lesion = Lesion(pct_of_head=18.0)
    errors = []
    for sp in (2.0, 1.0, 0.6):
        _, truth = _head_crop(spacing=(sp, sp, sp), lesion=lesion, snr=0)
        t = truth.hips["right"]
        # fractions are exact to the supersampling at every grid ...
        assert truth.fraction_volume_ml("right", "head") == pytest.approx(t.head_volume_ml, rel=2e-3)
        assert truth.fraction_volume_ml("right", "lesion") == pytest.approx(t.lesion_volume_ml, rel=5e-3)
        errors.append((abs(truth.mask_volume_ml("right", "head") / t.head_volume_ml - 1),
                       abs(truth.mask_volume_ml("right", "lesion") / t.lesion_volume_ml - 1)))
    # ... and the fraction >= 0.5 masks converge as the grid is refined
    assert errors[-1][0] < 0.004 and errors[-1][1] < 0.01
    assert errors[-1][0] <= errors[0][0] + 1e-3


def test_thick_oblique_slices_keep_exact_fractions():
    _, truth = _head_crop(spacing=(0.9, 0.9, 4.0), lesion=Lesion(pct_of_head=12.0), oblique_deg=(8.0, -6.0, 5.0))
    t = truth.hips["right"]
    assert truth.fraction_volume_ml("right", "head") == pytest.approx(t.head_volume_ml, rel=3e-3)
    assert truth.fraction_volume_ml("right", "lesion") == pytest.approx(t.lesion_volume_ml, rel=1e-2)
    assert abs(truth.mask_volume_ml("right", "head") / t.head_volume_ml - 1) < 0.03


def test_lesion_inside_head_and_lf_definition():
    image, truth = _head_crop(spacing=(1.5, 1.5, 3.0), lesion=Lesion(pct_of_head=30.0, centre="oedema"))
    h = sitk.GetArrayFromImage(truth.head_fraction["right"])
    le = sitk.GetArrayFromImage(truth.lesion_fraction["right"])
    assert np.all(le <= h + 1e-6)
    hm = sitk.GetArrayFromImage(truth.head_mask["right"])
    lm = sitk.GetArrayFromImage(truth.lesion_mask["right"])
    assert not np.any(lm & ~hm)
    t = truth.hips["right"]
    assert t.lesion_pct_head == pytest.approx(100 * t.lesion_volume_ml / t.head_volume_ml)
    assert t.lesion_pct_head == pytest.approx(30.0, abs=0.01)
    # the lesion's centre point lies in the anterosuperior head
    off = t.lesion_centre_mm - t.centre_mm
    assert off[2] > 0 and off[1] < 0
    # masks share the image grid
    for m in (truth.head_mask["right"], truth.lesion_mask["right"]):
        assert m.GetSize() == image.GetSize() and m.GetDirection() == image.GetDirection()
        assert m.GetOrigin() == image.GetOrigin() and m.GetPixelID() == sitk.sitkUInt8


def test_normal_head_has_no_lesion():
    image, truth = _head_crop(spacing=(2.0, 2.0, 2.0))
    t = truth.hips["right"]
    assert t.lesion_volume_ml == 0.0 and t.lesion_pct_head == 0.0 and t.lesion_kind is None
    assert sitk.GetArrayViewFromImage(truth.lesion_mask["right"]).sum() == 0
    lab = sitk.GetArrayViewFromImage(truth.labels)
    lesion_codes = [TISSUES[k] for k in ("lesion_centre_fat", "lesion_centre_oedema", "band_sclerotic",
                                         "band_granulation")]
    assert not np.isin(lab, lesion_codes).any()


def test_contrast_tables_order_tissues():
    T1, T2, ST = ({k: SIGNAL[c][v] for k, v in TISSUES.items()} for c in ("T1", "T2", "STIR"))
    assert T1["subcutaneous_fat"] > T1["muscle"] > T1["joint_fluid"] > T1["cortex"]
    assert T1["femoral_marrow"] > T1["muscle"] and T1["pulvinar_fat"] > T1["muscle"]
    assert T2["joint_fluid"] > T2["subcutaneous_fat"] > T2["muscle"] > T2["cortex"]
    assert ST["joint_fluid"] > ST["muscle"] > ST["subcutaneous_fat"]
    assert ST["lesion_centre_oedema"] > ST["muscle"] > ST["femoral_marrow"]
    for c in SIGNAL:   # plate/cortex, fibrous tissue and the sclerotic band are dark on every contrast
        s = dict(zip(TISSUES, SIGNAL[c]))
        assert max(s["cortex"], s["fibrous"], s["band_sclerotic"]) < 0.1
    # double-line sign: on T2 the inner (granulation) layer is bright, the outer dark
    assert T2["band_granulation"] > 0.8 > 0.1 > T2["band_sclerotic"]
    assert T1["band_granulation"] < T1["muscle"]


@pytest.mark.parametrize("contrast", ["T1", "T2", "STIR"])
def test_images_order_tissues_as_stated(contrast):
    image, truth = _head_crop(spacing=(1.5, 1.5, 1.5), contrast=contrast, snr=40.0, bias=0.0,
                              lesion=Lesion(pct_of_head=25.0, centre="oedema"))
    a = sitk.GetArrayFromImage(image)
    lab = sitk.GetArrayFromImage(truth.labels)
    level = {k: float(np.median(a[lab == v])) for k, v in TISSUES.items() if (lab == v).sum() > 30}
    if contrast == "T1":
        assert level["femoral_marrow"] > level["muscle"] > level["joint_fluid"] > level["cortex"]
        assert level["femoral_marrow"] > level["lesion_centre_oedema"]
    elif contrast == "T2":
        assert level["joint_fluid"] > level["femoral_marrow"] > level["muscle"]
    else:
        assert level["joint_fluid"] > level["muscle"] > level["femoral_marrow"]
        assert level["lesion_centre_oedema"] > 3 * level["femoral_marrow"]


def test_left_right_mirror():
    les = Lesion(pct_of_head=14.0, shape_seed=5)
    right = HipScanSpec(right=Hip("right", lesion=les))
    left = HipScanSpec(left=Hip("left", lesion=les))
    rng = np.random.default_rng(0)
    p = rng.uniform([-130.0, -40.0, -45.0], [-50.0, 40.0, 40.0], (200_000, 3))
    q = p * np.array([-1.0, 1.0, 1.0])
    lab_r, head_r, les_r = tissue_labels(right, p)
    lab_l, head_l, les_l = tissue_labels(left, q)
    assert np.mean(lab_r == lab_l) > 0.999
    assert np.mean(head_r["right"] == head_l["left"]) > 0.9999
    assert les_r["right"].sum() > 1000 and np.mean(les_r["right"] == les_l["left"]) > 0.9999
    assert lesion_volumes_ml(right.right) == pytest.approx(lesion_volumes_ml(left.left), rel=1e-9)


def test_neck_leaves_the_head_as_its_side_implies():
    for side, lateral in (("right", -1.0), ("left", 1.0)):
        hip = Hip(side, neck_shaft_deg=130.0, anteversion_deg=12.0)
        n = _build(hip, (0.0, 0.0, 0.0)).n
        assert n[0] * lateral > 0.5 and n[2] < -0.5 and n[1] > 0.05   # lateral, inferior, posterior (anteversion)
        # neck-shaft angle in the coronal projection (shaft 7° off vertical)
        angle = math.degrees(math.atan2(abs(n[0]), -n[2])) + 7.0
        assert 180.0 - angle == pytest.approx(130.0, abs=2.0)


def test_fields_show_their_hips():
    spec = HipScanSpec(field="both", spacing_mm=(3.0, 3.0, 6.0))
    image, truth = make_hip_scan(spec, seed=0)
    assert truth.sides == ["right", "left"]
    assert truth.hips["right"].centre_mm[0] < 0 < truth.hips["left"].centre_mm[0]
    both_heads = [sitk.GetArrayViewFromImage(truth.head_mask[s]).sum() for s in truth.sides]
    assert min(both_heads) > 0
    _, crop = make_hip_scan(HipScanSpec(field="left", spacing_mm=(3.0, 3.0, 6.0)), seed=0)
    assert crop.sides == ["left"]


def test_origin_shift_moves_everything():
    les = Lesion(pct_of_head=10.0)
    spec = HipScanSpec(right=Hip(lesion=les), spacing_mm=(2.0, 2.0, 2.0), fov_mm=(64.0, 64.0, 64.0),
                       field_centre_mm=(-90.0, 0.0, 0.0), snr=0)
    shifted = HipScanSpec(right=Hip(lesion=les), spacing_mm=(2.0, 2.0, 2.0), fov_mm=(64.0, 64.0, 64.0),
                          field_centre_mm=(-60.0, 20.0, 1000.0), origin_shift_mm=(30.0, 20.0, 1000.0), snr=0)
    a, ta = make_hip_scan(spec, seed=1)
    b, tb = make_hip_scan(shifted, seed=1)
    assert np.allclose(tb.hips["right"].centre_mm - ta.hips["right"].centre_mm, [30.0, 20.0, 1000.0])
    assert np.array_equal(sitk.GetArrayViewFromImage(ta.head_mask["right"]),
                          sitk.GetArrayViewFromImage(tb.head_mask["right"]))
    assert tb.hips["right"].lesion_volume_ml == ta.hips["right"].lesion_volume_ml


def test_oedema_halo_is_not_lesion():
    les = Lesion(pct_of_head=15.0, oedema_halo_mm=5.0)
    image, truth = _head_crop(spacing=(1.5, 1.5, 1.5), lesion=les, snr=0)
    lab = sitk.GetArrayViewFromImage(truth.labels)
    lf = sitk.GetArrayViewFromImage(truth.lesion_fraction["right"])
    halo = lab == TISSUES["marrow_oedema"]          # voxel centres in the halo
    assert halo.sum() > 100
    assert np.all(lf[halo] < 1.0) and np.mean(lf[halo] == 0.0) > 0.8   # only partial-volume overlap at the margin
    assert truth.hips["right"].lesion_volume_ml == pytest.approx(lesion_volumes_ml(Hip(lesion=Lesion(pct_of_head=15.0)))[0],
                                                                 rel=1e-9)
