"""Segmentation of the femoral head and the necrotic lesion, against the phantom's analytic truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.measure import mask_volume_ml
from lesionvol.phantom import LesionSpec, VisitSpec, lesion_for_fraction, make_visit
from lesionvol.segment import (ClassicalSegmenter, HipSegmentation, MaskSegmenter, NoFemoralHeadError,
                               OnnxSegmenter, Segmenter, segment_hip, segment_hips)


def dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2.0 * int((x & y).sum()) / max(int(x.sum()) + int(y.sum()), 1)


def visit(seed: int, *, pct: float | None = 18.0, bright: bool = False, R: float = 23.0, side: str = "right",
          lesions=None, **grid):
    if lesions is None:
        lesions = () if pct is None else (lesion_for_fraction(R, pct, side=side, bright_centre=bright),)
    return make_visit(VisitSpec(lesions=lesions, **grid), seed=seed, side=side, head_radius_mm=R)


@pytest.fixture(scope="module")
def dark_scan():
    return visit(3, pct=18.0, shape=(140, 140, 40), spacing_mm=(0.9, 0.9, 3.0), oblique_deg=10.0,
                 rotation_deg=(5.0, -4.0, 7.0), snr=15.0, bias_amplitude=0.25)


@pytest.fixture(scope="module")
def bright_scan():
    return visit(4, pct=22.0, bright=True, side="left", shape=(200, 200, 30), spacing_mm=(0.6, 0.6, 4.0),
                 snr=10.0, bias_amplitude=0.2, plane="coronal", oblique_deg=6.0)


def test_accuracy_dark_lesion_oblique_low_snr(dark_scan):
    seg = segment_hip(dark_scan.image)
    t = dark_scan.truth
    assert isinstance(seg, HipSegmentation)
    assert seg.side == "right" and seg.head_definition == "anatomical" and seg.lesion_definition == "enclosed"
    for m in (seg.head, seg.lesion):
        assert m.GetPixelID() == sitk.sitkUInt8 and m.GetSize() == dark_scan.image.GetSize()
        assert np.allclose(m.GetDirection(), dark_scan.image.GetDirection())
        assert set(np.unique(sitk.GetArrayViewFromImage(m))) <= {0, 1}
    assert dice(seg.head, dark_scan.head_mask) >= 0.97
    assert dice(seg.lesion, dark_scan.lesion_enclosed_mask) >= 0.93
    assert mask_volume_ml(seg.head) == pytest.approx(t.head_volume_ml, rel=0.02)
    assert mask_volume_ml(seg.lesion) == pytest.approx(t.lesion_enclosed_ml, rel=0.06)
    lf = 100 * mask_volume_ml(seg.lesion) / mask_volume_ml(seg.head)
    assert abs(lf - t.lesion_pct_head) <= 1.0
    assert np.linalg.norm(seg.centre_mm - t.head_centre_mm) < 0.5


def test_accuracy_fat_bright_centre_both_definitions(bright_scan):
    """Band-only lesion on 4 mm slices, SNR 10: 'enclosed' includes the bright centre, 'dark' does not."""
    t = bright_scan.truth
    enc = segment_hip(bright_scan.image, side="left")
    assert enc.side == "left"
    assert dice(enc.lesion, bright_scan.lesion_enclosed_mask) >= 0.92
    assert mask_volume_ml(enc.lesion) == pytest.approx(t.lesion_enclosed_ml, rel=0.08)
    dark = segment_hip(bright_scan.image, lesion_definition="dark")
    assert dark.lesion_definition == "dark"
    assert mask_volume_ml(dark.lesion) == pytest.approx(t.lesion_dark_ml, rel=0.2)
    assert mask_volume_ml(dark.lesion) < 0.5 * mask_volume_ml(enc.lesion)


def test_sphere_head_definition(dark_scan):
    seg = segment_hip(dark_scan.image, head_definition="sphere")
    assert seg.head_definition == "sphere"
    assert mask_volume_ml(seg.head) == pytest.approx(dark_scan.truth.head_sphere_volume_ml, rel=0.02)


def test_intensity_scale_does_not_matter(dark_scan):
    scaled = sitk.Cast(dark_scan.image, sitk.sitkFloat32) * 0.013 + 0.0
    a = sitk.GetArrayFromImage(segment_hip(dark_scan.image).lesion)
    b = sitk.GetArrayFromImage(segment_hip(scaled).lesion)
    assert np.mean(a != b) < 1e-4


def test_healed_head_reads_zero():
    scan = visit(5, pct=None, shape=(150, 150, 34), spacing_mm=(0.85, 0.85, 3.5), snr=10.0, bias_amplitude=0.25,
                 plane="axial", oblique_deg=12.0)
    seg = segment_hip(scan.image)
    assert mask_volume_ml(seg.lesion) == 0.0
    assert mask_volume_ml(segment_hip(scan.image, lesion_definition="dark").lesion) == 0.0
    assert dice(seg.head, scan.head_mask) >= 0.97


def test_tiny_lesion():
    scan = visit(6, pct=1.0, shape=(150, 150, 75), spacing_mm=(0.8, 0.8, 1.6), snr=20.0)
    assert 0.4 < scan.truth.lesion_enclosed_ml < 0.5
    seg = segment_hip(scan.image)
    assert mask_volume_ml(seg.lesion) == pytest.approx(scan.truth.lesion_enclosed_ml, rel=0.15)
    assert dice(seg.lesion, scan.lesion_enclosed_mask) >= 0.85


def test_whole_head_lesion():
    """A lesion ball containing the whole head: no marrow inside, as in any round dark structure (the
    rectum of a T2 prostate scan read 0.19 of the fat, this head 0.15), so it is refused unless a
    reader's seed point vouches for it; from the seed the lesion is the head."""
    scan = visit(7, lesions=(LesionSpec((0.0, 0.0, 0.0), 30.0),), shape=(140, 140, 40),
                 spacing_mm=(0.9, 0.9, 3.0))
    t = scan.truth
    assert t.lesion_enclosed_ml == pytest.approx(t.head_volume_ml, rel=1e-4)
    with pytest.raises(NoFemoralHeadError, match="no marrow inside"):
        segment_hip(scan.image)
    seg = segment_hip(scan.image, seed_mm=tuple(t.head_centre_mm + 4.0))
    assert mask_volume_ml(seg.lesion) == pytest.approx(t.lesion_enclosed_ml, rel=0.04)
    assert 100 * mask_volume_ml(seg.lesion) / mask_volume_ml(seg.head) > 97


def test_two_components():
    scan = visit(8, lesions=(lesion_for_fraction(23.0, 9.0), LesionSpec((8.0, 12.0, 17.0), 7.0)),
                 shape=(140, 140, 48), spacing_mm=(0.9, 0.9, 2.5))
    seg = segment_hip(scan.image)
    assert mask_volume_ml(seg.lesion) == pytest.approx(scan.truth.lesion_enclosed_ml, rel=0.06)
    assert dice(seg.lesion, scan.lesion_enclosed_mask) >= 0.93


@pytest.fixture(scope="module")
def both_scan():
    spec = VisitSpec(lesions=(lesion_for_fraction(23.0, 15.0),),
                     lesions_left=(lesion_for_fraction(23.0, 6.0, side="left"),),
                     shape=(300, 160, 40), spacing_mm=(0.9, 0.9, 3.0))
    return make_visit(spec, seed=9, side="both")


def test_both_hips_need_a_side(both_scan):
    with pytest.raises(InputError, match="--side left|right"):
        segment_hip(both_scan.image)
    for side in ("left", "right"):
        seg = segment_hip(both_scan.image, side=side)
        t = both_scan.truths[side]
        assert seg.side == side
        assert np.linalg.norm(seg.centre_mm - t.head_centre_mm) < 0.5
        assert mask_volume_ml(seg.lesion) == pytest.approx(t.lesion_enclosed_ml, rel=0.08)
    hips = segment_hips(both_scan.image)
    assert sorted(hips) == ["left", "right"]
    assert mask_volume_ml(hips["left"].lesion) < mask_volume_ml(hips["right"].lesion)


def test_a_head_the_whole_fields_vote_misses_is_found_in_a_field_of_its_own(monkeypatch):
    """In a field showing both hips, a head whose vote peaks all fail (a real pelvis with a 25 % lesion at 0.45 of
    marrow written into its left head: missed in the field, found in a one-hip crop 0.2 mm from its centre) is looked
    for once more in a one-hip field where the other hip would be, with that field's own vote, and failing that fitted
    to its acetabular roof from the vote's peaks where it would lie."""
    from lesionvol.segment import head

    scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    left = scan.truths["left"]
    vote = head._candidates

    def no_peak_at_the_left_head_in_the_field(image, fat, seed_mm=None, n=head.N_CANDIDATES):
        peaks = vote(image, fat, seed_mm, n)
        if head.field_width_mm(image) < head.BOTH_HIPS_FIELD_MM:     # the one-hip field votes as it does
            return peaks
        return [(p, f) for p, f in peaks if np.linalg.norm(p - left.head_centre_mm) > 40.0]

    monkeypatch.setattr(head, "_candidates", no_peak_at_the_left_head_in_the_field)
    fits = {f.side: f for f in head.find_heads(scan.image)}
    assert sorted(fits) == ["left", "right"]
    assert np.linalg.norm(fits["left"].centre_mm - left.head_centre_mm) < 0.5
    assert fits["left"].radius_mm == pytest.approx(left.head_radius_mm, abs=0.3)
    assert fits["left"].quality["radius_minus_other_side_mm"] == pytest.approx(0.0, abs=0.3)
    monkeypatch.setattr(head, "_head_in_mirror_field", lambda *args: None)
    # failing that too, the head fitted to its acetabular roof from where it would lie, at the right head's roof gap
    fits = {f.side: f for f in head.find_heads(scan.image)}
    assert fits["left"].quality["fitted_to_roof"]
    assert np.linalg.norm(fits["left"].centre_mm - left.head_centre_mm) < 0.5                  # measured 0.05 mm
    assert fits["left"].radius_mm == pytest.approx(left.head_radius_mm, abs=0.3)               # measured 0.002 mm
    monkeypatch.setattr(head, "_missed_head_under_roof", lambda *args: None)     # the search before
    assert [f.side for f in head.find_heads(scan.image)] == ["right"]


def test_seed_point_picks_the_hip(both_scan):
    left = both_scan.truths["left"].head_centre_mm
    seg = segment_hip(both_scan.image, side="auto", seed_mm=tuple(left + 8.0))
    assert seg.side == "left"


def test_a_head_is_returned_only_within_the_seed_search_radius_of_the_seed():
    """A seed point 28 mm from the head centre (inside or just outside a 23 mm head) finds it; at 33 mm the
    head found lies beyond SEED_SEARCH_RADIUS_MM (30 mm) of the point the reader gave, so it is refused (on
    a real 7 mm-slice localizer a seed in the left head once drifted to a 16 mm round structure 32 mm
    lateral to it and came back as that head, with a 1.6 mL "lesion")."""
    scan = make_visit(VisitSpec(), seed=0)
    centre = scan.truth.head_centre_mm
    up = np.array([0.0, 0.0, 1.0])
    assert segment_hip(scan.image, seed_mm=tuple(centre + 28.0 * up)).head_fit.centre_mm == pytest.approx(centre, abs=1.0)
    with pytest.raises(NoFemoralHeadError, match="lies 33 mm from it"):
        segment_hip(scan.image, seed_mm=tuple(centre + 33.0 * up))


def test_single_hip_wrong_side_is_refused(dark_scan):
    with pytest.raises(NoFemoralHeadError, match="no left femoral head"):
        segment_hip(dark_scan.image, side="left")


def test_brain_t1_is_refused():
    from nibabel.testing import data_path

    brain = sitk.ReadImage(str(data_path) + "/anatomical.nii")
    with pytest.raises(NoFemoralHeadError, match="no femoral head"):
        segment_hip(brain)
    assert issubclass(NoFemoralHeadError, InputError)


def test_constant_and_2d_images_are_refused():
    with pytest.raises(NoFemoralHeadError):
        segment_hip(sitk.Image(40, 40, 20, sitk.sitkFloat32))
    with pytest.raises(InputError):
        segment_hip(sitk.Image(40, 40, sitk.sitkFloat32))


def test_bad_definitions_are_refused(dark_scan):
    with pytest.raises(InputError, match="lesion definition"):
        segment_hip(dark_scan.image, lesion_definition="total")
    with pytest.raises(InputError, match="head definition"):
        segment_hip(dark_scan.image, head_definition="cut")
    with pytest.raises(InputError, match="segment_hips"):
        segment_hip(dark_scan.image, side="both")


def test_pluggable_segmenters(dark_scan):
    assert isinstance(ClassicalSegmenter(), Segmenter)
    given = MaskSegmenter(dark_scan.head_mask, dark_scan.lesion_enclosed_mask, side="right")
    assert isinstance(given, Segmenter)
    seg = segment_hip(dark_scan.image, segmenter=given)
    assert seg.method == "given-masks"
    assert dice(seg.lesion, dark_scan.lesion_enclosed_mask) == 1.0

    class Constant:
        name = "constant"

        def segment(self, image, **kwargs):
            m = sitk.Image(image.GetSize(), sitk.sitkUInt8)
            m.CopyInformation(image)
            return HipSegmentation(m, m, "right", kwargs["head_definition"], kwargs["lesion_definition"], self.name)

    assert segment_hip(dark_scan.image, segmenter=Constant()).method == "constant"


def test_onnx_backend_needs_onnxruntime(dark_scan):
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="onnxruntime"):
            segment_hip(dark_scan.image, segmenter=OnnxSegmenter("missing.onnx"))
    else:
        pytest.skip("onnxruntime is installed: the model path is tested in tests/test_onnx_segmenter.py")


def test_cli_segment(dark_scan, tmp_path, capsys):
    from lesionvol.cli import main

    image = tmp_path / "t1.nii.gz"
    sitk.WriteImage(dark_scan.image, str(image))
    rc = main(["segment", str(image), "--out-lesion", str(tmp_path / "l.nii.gz"),
               "--out-head", str(tmp_path / "h.nii.gz")])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("right hip") and "check" not in out      # a clean segmentation has nothing to check
    lesion = sitk.ReadImage(str(tmp_path / "l.nii.gz"))
    assert mask_volume_ml(lesion) == pytest.approx(dark_scan.truth.lesion_enclosed_ml, rel=0.06)


@pytest.mark.parametrize("side", ["right", "left"])
def test_one_hip_of_a_pelvis_field_gives_that_hip_only(side):
    """Half of a pelvis field (the second phantom family, 4 mm slices) shows one hip: that hip is
    returned with its side read off the neck, nothing else is (the other half holds pelvis, bladder
    and the other femur's shaft edge, none of them a femoral head)."""
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan
    from lesionvol.segment import segment_hips

    spec = HipScanSpec(right=Hip("right", head_radius_mm=24.0), left=Hip("left", head_radius_mm=23.5),
                       field="both", anatomy_seed=14)
    image, truth = make_hip_scan(spec, seed=14)
    size = list(image.GetSize())
    half = size[0] // 2                       # the grid's i axis runs to patient left (+x)
    start = [0, 0, 0] if side == "right" else [half, 0, 0]
    size[0] = half if side == "right" else size[0] - half
    crop = sitk.RegionOfInterest(image, size, start)
    hips = segment_hips(crop)
    assert list(hips) == [side]
    head_truth = sitk.RegionOfInterest(truth.head_mask[side], size, start)
    assert dice(hips[side].head, head_truth) >= 0.94          # measured 0.949 (left), 0.97 (right)
    assert mask_volume_ml(hips[side].lesion) == 0.0           # both heads are normal


def _family_b(seed, side="right", R=24.0, pct=None, halo=0.0, **grid):
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    lesion = Lesion(pct_of_head=pct, oedema_halo_mm=halo, shape_seed=seed)
    hip = Hip(side, head_radius_mm=R, lesion=lesion, neck_shaft_deg=125.0 + (seed * 3) % 11,
              anteversion_deg=10.0 + seed % 6)
    image, truth = make_hip_scan(HipScanSpec(**{side: hip}, field=side, anatomy_seed=seed, **grid), seed=seed)
    return image, truth.hips[side], truth.head_mask[side]


def test_family_b_five_mm_slices():
    """Phantom family B (written separately), 5 mm coronal slices, a 30 % lesion with a fat-bright centre:
    the head is found (it was refused while the cap's smeared rays counted against the surface found),
    and the lesion volume is within 6 % (measured -4.6 %; -7 % while the slab at the lesion's
    through-slice edge, band and bright centre together, read as healthy marrow)."""
    image, truth, head = _family_b(3, R=27.0, pct=30.0, spacing_mm=(0.8, 0.8, 5.0))
    seg = segment_hip(image)
    assert dice(seg.head, head) >= 0.98                                      # measured 0.987
    assert mask_volume_ml(seg.head) == pytest.approx(truth.head_volume_ml, rel=0.03)
    assert mask_volume_ml(seg.lesion) == pytest.approx(truth.lesion_volume_ml, rel=0.06)


def test_family_b_oedema_halo_is_not_lesion():
    """A 6 mm marrow-oedema halo (half the marrow signal on T1) around the band: the lesion is what the
    band encloses.  The halo reached from healthy marrow in the slice plane is not lesion, and neither is the
    rim of it left at the band (the lesion's radial profile reads oedema over the band there).  Measured
    +6.9 %; +37.6 % with the rim, +54 % before either."""
    image, truth, _ = _family_b(9, side="left", R=26.0, pct=18.0, halo=6.0)
    seg = segment_hip(image)
    assert mask_volume_ml(seg.lesion) == pytest.approx(truth.lesion_volume_ml, rel=0.10)


def test_oedema_at_the_lesion_margin_flags_it(tmp_path):
    """The oedema trimmed next to the lesion above is reported (margin_oedema_ml, measured 4.00 mL next to
    13.25 mL), written as a mask beside the lesion's for the reader to check, and above 2 % of the lesion the
    row says its margin is doubtful; next to a lesion without a halo (5 mm slices, 30 %) it is 0.00 mL of 22 mL."""
    from lesionvol.inputs import Visit
    from lesionvol.io import read_mask
    from lesionvol.report import write_study
    from lesionvol.study import analyze_scans

    image, _, _ = _family_b(9, side="left", R=26.0, pct=18.0, halo=6.0)
    result = analyze_scans([Visit(image)])
    row = result.rows()[0]
    assert row["margin_oedema_ml"] > 0.05 * row["lesion_volume_ml"]      # 30 %: flagged at 2 % with room
    assert row["lesion_margin_doubtful"] is True
    write_study(result, tmp_path / "out")
    written = read_mask(tmp_path / "out" / "masks" / "t0_oedema.nii.gz")
    assert mask_volume_ml(written) == pytest.approx(row["margin_oedema_ml"], abs=1e-6)
    clean, _, _ = _family_b(3, R=27.0, pct=30.0, spacing_mm=(0.8, 0.8, 5.0))
    seg = segment_hip(clean)
    assert mask_volume_ml(seg.masks["oedema"]) < 0.02 * mask_volume_ml(seg.lesion)


def test_oedema_taken_into_the_lesion_is_taken_out_and_flagged():
    """Real anatomy (tests/data/README.md): the same 7.16 mL fat-centred lesion written into a real head, with 3 mm
    of marrow oedema around its band and without.  The halo was taken in almost whole (+27.2 %, flagged only by its
    margin's reading); its radial profile (oedema over the band) now takes it out again: measured -2.7 %, with
    1.80 mL of oedema next to the lesion, so the row still says its margin is doubtful.  Without the halo nothing is
    taken out: -1.0 %, no oedema, margin 0.46 with the band 0.9 mm inside (the band's own edge), not flagged."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans, row_checks

    data = Path(__file__).parent / "data"
    rows = {}
    for name in ("oedema_halo", "no_halo"):
        stem = f"real_t1_implanted_left_head_{name}"
        true_ml = json.loads((data / f"{stem}.json").read_text())["lesion_true_ml"]
        rows[name] = analyze_scans([Visit(sitk.ReadImage(str(data / f"{stem}.nii.gz")))]).rows()[0]
        rows[name]["error"] = rows[name]["lesion_volume_ml"] / true_ml - 1
    halo, clean = rows["oedema_halo"], rows["no_halo"]
    assert abs(halo["error"]) < 0.05
    assert halo["margin_oedema_ml"] > 0.2 * halo["lesion_volume_ml"]          # 1.80 of 6.96 mL
    assert halo["lesion_margin_doubtful"] is True
    assert row_checks(halo) == ["1.80 mL of marrow oedema next to the 6.96 mL lesion: its outer margin may hold some "
                                "of it"]
    assert abs(clean["error"]) < 0.03 and clean["margin_oedema_ml"] == 0.0
    assert clean["lesion_margin_signal"] < 0.5 and clean["lesion_margin_band_gap_mm"] < 1.0
    assert clean["lesion_margin_doubtful"] is False


def test_a_wide_oedema_halo_reading_near_marrow_is_taken_out_and_flagged():
    """Real anatomy (tests/data/README.md): a 10.38 mL fat-centred lesion with 8 mm of marrow oedema around its band
    (written at 0.45-0.65 of marrow; with the marrow's texture the lesion's margin reads 0.63).  Read as lesion whole
    and flagged by nothing while oedema had to read below 0.65 all the way to the band; the profile now
    reads it up to 0.8: measured -3.1 % (+51.9 % before, 0.10 mL of oedema), with 3.95 mL of oedema next to the
    lesion, flagged."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    stem = Path(__file__).parent / "data" / "real_t1_implanted_left_head_wide_halo"
    true_ml = json.loads(stem.with_suffix(".json").read_text())["lesion_true_ml"]
    row = analyze_scans([Visit(sitk.ReadImage(f"{stem}.nii.gz"))]).rows()[0]
    assert row["lesion_volume_ml"] == pytest.approx(true_ml, rel=0.10)         # 10.06 of 10.38 mL
    assert row["margin_oedema_ml"] > 0.3 * row["lesion_volume_ml"]             # 3.95 mL
    assert row["lesion_margin_doubtful"] is True


def test_a_wide_oedema_halo_left_in_the_lesion_is_flagged_by_its_margin():
    """Real anatomy (tests/data/README.md): a 7.11 mL fat-centred lesion with 8 mm of marrow oedema around its band,
    whose margin's sphere the profile cannot use: the halo stays in (measured +59.2 %, 0.04 mL of oedema next to it).
    Its margin reads 0.64 of marrow with no band within 5.5 mm inside it, on 5.2 mm slices where the band is seen in
    the plane: flagged and named in the check (flagged by nothing while the band had to lie 1.5-4.5 mm inside).  Its
    margin, halo and all, fits no sphere either (``lesion_band_unread``: 9.47 of the 11.33 mL), the second check."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans, row_checks

    stem = Path(__file__).parent / "data" / "real_t1_implanted_left_head_wide_halo_unread"
    true_ml = json.loads(stem.with_suffix(".json").read_text())["lesion_true_ml"]
    row = analyze_scans([Visit(sitk.ReadImage(f"{stem}.nii.gz"))]).rows()[0]
    assert row["lesion_volume_ml"] > 1.3 * true_ml                              # 11.33 of 7.11 mL: not mended
    assert row["margin_oedema_ml"] < 0.02 * row["lesion_volume_ml"]             # so not flagged by the oedema
    assert row["lesion_margin_band_gap_mm"] is None and 0.6 < row["lesion_margin_signal"] < 0.7
    assert row["lesion_margin_doubtful"] is True
    checks = row_checks(row)
    assert checks[0] == ("the lesion's margin reads 0.64 of marrow with no band within 5.5 mm inside it: it may hold "
                         "marrow oedema taken in with it (too large)")
    assert row["lesion_band_unread"] is True and len(checks) == 2 and "could not be read" in checks[1]


def test_a_fat_centred_lesion_on_5_mm_slices_is_not_read_as_marrow():
    """Family B, a 20 % fat-centred lesion on 5 mm coronal slices: where the band lies within a slice, that
    slice read surely-marrow on 1-3 voxels next to the centre and joined it to the healthy marrow of the next
    slice, and the lesion read 2.5 of 12.25 mL.  Pieces across slices now join only where they overlap on
    a tenth of the smaller: measured -7.0 %."""
    image, truth, _ = _family_b(7, R=25.0, pct=20.0, spacing_mm=(0.8, 0.8, 5.0))
    assert mask_volume_ml(segment_hip(image).lesion) == pytest.approx(truth.lesion_volume_ml, rel=0.10)


def test_a_head_centred_between_7_mm_slices_is_found():
    """On 7 mm slices a head whose centre lies half-way between two slices has no slice within the 3 mm
    central slab: it was refused as lying outside the image (a real head's moved copy on 6.4 mm slices was
    missed so).  The nearest slices are its central ones now."""
    from lesionvol.segment.head import fit_head

    image, truth, head = _family_b(3, R=27.0, spacing_mm=(0.8, 0.8, 7.0))
    k = np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in truth.centre_mm]))
    assert k[2] % 1 == pytest.approx(0.5)                  # the centre lies half-way between two slices
    fit = fit_head(image, np.asarray(truth.centre_mm), side="right")
    assert abs(fit.radius_mm - 27.0) < 0.5                  # measured 27.06
    assert mask_volume_ml(segment_hip(image).head) == pytest.approx(truth.head_volume_ml, rel=0.03)


def test_a_lesion_that_is_its_band_alone_is_flagged():
    """Where what a band encloses reads as healthy marrow, the lesion is its band alone and far too small
    (lesions written into real heads: 31-80 % small, filling 0.15-0.55 of the segment under them; every one
    within 10 % filled 0.72-0.91).  A cap reaching the plate fills it, its 2 mm band alone does not, and the
    row's flag brings a check line."""
    from lesionvol.cli import _checks
    from lesionvol.segment.head import HeadFit
    from lesionvol.segment.lesion import LESION_FILL_MIN, lesion_fill_ratio

    z, y, x = np.mgrid[0:64, 0:64, 0:64].astype(float)
    r = np.sqrt((x - 32) ** 2 + (y - 32) ** 2 + (z - 32) ** 2)
    to_dome = np.sqrt((x - 32) ** 2 + (y - 32) ** 2 + (z - 32 - 22) ** 2)    # from a point on the head's top
    cap = (r <= 22) & (to_dome <= 12)
    fit = HeadFit(np.full(3, 32.0), 22.0, 21.0, np.array([0.0, 0.0, -1.0]), 15.0, "right", 1.0)

    def ratio(mask):
        return lesion_fill_ratio(sitk.GetImageFromArray(mask.astype(np.uint8)), fit)

    assert ratio(cap) > LESION_FILL_MIN                                      # measured 0.92
    assert ratio(cap & (to_dome > 10)) < LESION_FILL_MIN                     # measured 0.29
    assert ratio(np.zeros_like(cap)) is None
    line = _checks([{"timepoint": "t1", "lesion_fill_doubtful": True, "lesion_fill_ratio": 0.2}])
    assert line == ["check t1: the lesion fills 0.20 of the segment under it: it may be its band alone, what the "
                    "band encloses read as marrow (far too small)"]


def test_a_lesion_on_thick_slices_is_flagged():
    """Thick slices can hide the band within a slice and read the lesion small (family B, 5.9-6.3 mm slices
    of any plane -9 to -89 %, axial 3.9-5 mm -10 to -22 %): the row says so (``lesion_on_thick_slices``)
    and ``analyze`` prints a check line for it; on 5 mm coronal slices it does not, on 4.5 mm axial ones
    it does.  A head that reads no lesion there is flagged too: a 45 % fat-centred lesion written into a real
    head moved onto 5.8 mm slices read 0.00 mL (implant.py --seed 4500 --moved 35500, case 4 left)."""
    from lesionvol.cli import _checks
    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    thick, _, _ = _family_b(7, R=25.0, pct=20.0, spacing_mm=(0.8, 0.8, 6.3))
    row = analyze_scans([Visit(thick)]).rows()[0]
    assert row["lesion_on_thick_slices"] is True
    assert any("6.3 mm slices" in line for line in _checks([row]))
    thin, _, _ = _family_b(7, R=25.0, pct=20.0, spacing_mm=(0.8, 0.8, 5.0))
    row = analyze_scans([Visit(thin)]).rows()[0]
    assert row["lesion_on_thick_slices"] is False
    assert row["lesion_fill_doubtful"] is False and row["lesion_fill_ratio"] > 0.6        # the whole segment
    axial, _, _ = _family_b(7, R=25.0, pct=20.0, plane="axial", spacing_mm=(0.8, 0.8, 4.5), fov_mm=(160.0, 160.0, 110.0))
    row = analyze_scans([Visit(axial)]).rows()[0]
    assert row["lesion_on_thick_slices_reason"] == "4.5 mm axial slices"
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan

    normal, _ = make_hip_scan(HipScanSpec(right=Hip("right", head_radius_mm=25.0), field="right", anatomy_seed=7,
                                          spacing_mm=(0.8, 0.8, 6.3)), seed=7)
    row = analyze_scans([Visit(normal)]).rows()[0]
    assert row["lesion_volume_ml"] == 0.0 and row["lesion_on_thick_slices"] is True
    assert row["lesion_set_aside_doubtful"] is False                     # a normal head sets nothing large aside
    assert row["lesion_band_unread"] is False
    assert any("6.3 mm slices" in line and "or not at all" in line for line in _checks([row]))


def test_fat_field_follows_coil_shading():
    """Receive-coil shading (here a ramp from 1.4 on the patient's right to 0.45 on the left) is
    read off the fat and marrow, so candidates are voted for on the flattened image: the fat field at
    the two head centres has the ramp's ratio within 10 % (measured 1.61 for 1.65), and both heads are
    still found.  (Real development scans times a 0.6-1.4 shading field lost 7 of 30 heads without it.)"""
    from lesionvol.geometry import Grid
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan
    from lesionvol.segment.head import _coarse_and_field, _field_at, fat_level

    spec = HipScanSpec(right=Hip("right", head_radius_mm=24.0), left=Hip("left", head_radius_mm=23.5),
                       field="both", anatomy_seed=14)
    image, truth = make_hip_scan(spec, seed=14)
    a = sitk.GetArrayFromImage(image).astype(np.float32)
    ramp = np.linspace(1.4, 0.45, a.shape[2], dtype=np.float32)          # index i runs to patient left
    shaded = sitk.GetImageFromArray(a * ramp)
    shaded.CopyInformation(image)
    _, field, grid = _coarse_and_field(shaded, fat_level(a * ramp))
    centres = {s: truth.hips[s].centre_mm for s in ("right", "left")}
    i = {s: Grid.of(image).to_index(np.asarray(c)[None])[0][0] for s, c in centres.items()}
    expected = np.interp(i["right"], np.arange(a.shape[2]), ramp) / np.interp(i["left"], np.arange(a.shape[2]), ramp)
    measured = _field_at(field, grid, centres["right"]) / _field_at(field, grid, centres["left"])
    assert measured == pytest.approx(expected, rel=0.10)
    assert sorted(segment_hips(shaded)) == ["left", "right"]


def test_a_start_a_few_mm_off_finds_the_same_head():
    """Family B, 5 mm slices: the fit started 3 mm off the head centre along each axis finds the same
    head (radius within 0.3 mm) from at least 5 of the 6 starts (measured 5; 2 before the marrow surface
    could lead when the outer surface was looked for at the wrong radius, while its centre was right)."""
    from lesionvol.segment.head import NoFemoralHeadError, find_heads, fit_head

    image, truth, _ = _family_b(3, R=27.0, pct=30.0, spacing_mm=(0.8, 0.8, 5.0))
    fit = find_heads(image)[0]
    radii = []
    for offset in np.vstack([np.eye(3), -np.eye(3)]) * 3.0:
        try:
            radii.append(fit_head(image, fit.centre_mm + offset, side=fit.side).radius_mm)
        except NoFemoralHeadError:
            continue
    assert len(radii) >= 5
    assert np.all(np.abs(np.asarray(radii) - fit.radius_mm) <= 0.3)


def test_an_outer_surface_seen_on_few_rays_does_not_set_the_radius():
    """Family B, both hips (the held-out field of seed 5014): from its candidate the left head's outer
    surface was first looked for 1.6 mm too far out, and the points found there (12 % of the rays) set
    the radius, 0.50 mm large (head volume +5.9 %).  Such a surface no longer counts as seen: the
    marrow surface leads and the outer one is found on 66 % of the rays, radius +0.17 mm."""
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan
    from lesionvol.segment.head import find_heads

    spec = HipScanSpec(right=Hip("right", head_radius_mm=24.0, neck_radius_fraction=0.752),
                       left=Hip("left", head_radius_mm=23.5, neck_radius_fraction=0.696),
                       field="both", anatomy_seed=5014)
    image, truth = make_hip_scan(spec, seed=5014)
    fits = {f.side: f for f in find_heads(image)}
    assert fits["left"].quality["outer_fraction"] >= 0.4
    for side in ("left", "right"):
        assert fits[side].radius_mm == pytest.approx(truth.hips[side].radius_mm, abs=0.25)


@pytest.mark.parametrize("seed, kw", [(10, dict(R=22.0, pct=2.0, spacing_mm=(0.7, 0.7, 2.0), fov_mm=(160.0, 160.0, 90.0))),
                                      (12, {})])
def test_family_b_head_radius_is_not_read_large(seed, kw):
    """The outer surface's level is set from the plate's trough: a median over a band inside the
    radius took in the blurred rise into the marrow, and the head radius read 0.27 mm large on both
    of these family-B heads (0.7 mm pixels with 2 mm slices; 0.9 mm with 4 mm slices), head volume
    +3.7 % and +2.7 %.  Measured now: +0.08 / +0.11 mm, +0.3 % / +0.3 %."""
    from lesionvol.segment.head import find_heads

    image, truth, _ = _family_b(seed, **kw)
    assert find_heads(image)[0].radius_mm == pytest.approx(truth.radius_mm, abs=0.15)
    assert mask_volume_ml(segment_hip(image).head) == pytest.approx(truth.head_volume_ml, rel=0.015)


def test_a_large_lesion_band_is_not_taken_for_the_head_surface():
    """Family B (held-out seed 6008): a 40 % lesion with an oedematous centre is the first dark shell
    on half the central rays, so the median first rise out of a dark shell read 14 mm on a 24 mm head,
    the fit locked onto the lesion's band and the head was refused ("no femoral neck").  The fit now
    starts again from the rays' upper quartile (24.2 mm): measured radius 24.06 mm, lesion -0.2 %."""
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    hip = Hip("right", head_radius_mm=24.0, lesion=Lesion(pct_of_head=40.0, centre="oedema", shape_seed=6008),
              neck_shaft_deg=131.0, anteversion_deg=12.0, neck_radius_fraction=0.682)
    image, truth = make_hip_scan(HipScanSpec(right=hip, field="right", anatomy_seed=6008), seed=6008)
    seg = segment_hip(image)
    assert seg.head_fit.radius_mm == pytest.approx(24.0, abs=0.3)
    assert mask_volume_ml(seg.lesion) == pytest.approx(truth.hips["right"].lesion_volume_ml, rel=0.05)


def test_the_marrow_surface_does_not_move_with_the_depth_of_an_unresolved_rim():
    """On real T1 the rim under the marrow (plate, cartilage, joint) is not resolved; how dark it reads,
    and how dark the segmenter estimates it, change with the grid and the slice blur.  The marrow surface
    is each ray's steepest fall, which needs no level: a rim reading 0, 0.15 or 0.3 of the marrow (after
    fit_head's rescaling, which brings the estimated rim to 0.05), blurred over 0.6-1.6 mm, puts it at
    the edge (within 0.03 mm).  (With a crossing at a level set
    from the estimated rim depth, which read 0.27 on a real head and 0.35 on the same head moved onto
    4.7 mm slices, that head lost 0.8 mm of marrow radius and 12 % of its volume.)"""
    from lesionvol.segment.head import (INNER_AFTER_MM, INNER_BEFORE_MM, INNER_MARROW_MIN, INNER_MIN_FALL_PER_MM,
                                        INNER_RIM_MAX, INNER_WINDOW_MM, RAY_STEP_MM, _steepest_falls)

    rho = np.arange(0.0, 30.0, RAY_STEP_MM)
    edge_mm = 20.3
    for rim in (0.0, 0.15, 0.3):
        for blur_mm in (0.6, 1.0, 1.6):
            prof = rim + (1.0 - rim) / (1.0 + np.exp((rho - edge_mm) / (0.55 * blur_mm)))   # marrow 1 into the rim
            found = _steepest_falls(prof[None], np.array([21.5]), INNER_WINDOW_MM, INNER_BEFORE_MM, INNER_AFTER_MM,
                                    lambda m: m > INNER_MARROW_MIN, lambda m: m < INNER_RIM_MAX, INNER_MIN_FALL_PER_MM)
            assert found[0] == pytest.approx(edge_mm, abs=0.03), (rim, blur_mm)


def test_outer_level_with_a_radius_beyond_the_rays_falls_back():
    """A fit whose radius runs past the end of its rays has no plate to read: the outer level falls back
    to OUTER_LEVEL.  (Three real non-hip scans of benchmarks/real_other crashed segment_hips with
    "ValueError: zero-size array" here, with --allow-non-t1 an 'internal error'.)"""
    from lesionvol.segment.head import OUTER_LEVEL, RAY_STEP_MM, _outer_level

    rho = np.arange(int(20.0 / RAY_STEP_MM)) * RAY_STEP_MM                # rays 20 mm long
    prof = np.broadcast_to(np.where(rho <= 10.0, 0.05, 0.45), (3, 8, rho.size)).astype(np.float32)
    assert _outer_level(prof, 30.0) == OUTER_LEVEL
    assert _outer_level(prof, 10.0) == pytest.approx(0.05 + 0.4 * 0.40)   # plate 0.05, joint 0.45


@pytest.mark.parametrize("seed, kw, rel", [(1, dict(pct=15.0), 0.02),
                                           (7, dict(R=25.0, pct=8.0, oblique_deg=(10.0, -8.0, 6.0)), 0.07)])
def test_lesions_on_4_mm_slices_are_not_read_low(seed, kw, rel):
    """Family B, 4 mm slices (one grid oblique): a band crossing a thick slab obliquely is smeared, so the
    half-way crossing lies inside it and lesions read low (-2.7 % and -2.1 % here; -1.2 to -11.4 % over the
    family's 3.5-5 mm cases).  The ring next to a lesion in the slice plane below 0.65 of marrow is lesion
    now: measured -1.4 % and +0.3 %; the oblique one +5.2 % since band-capped centres join nothing across
    the slices (``_band_capped``)."""
    image, truth, _ = _family_b(seed, **kw)
    assert mask_volume_ml(segment_hip(image).lesion) == pytest.approx(truth.lesion_volume_ml, rel=rel)


def test_a_fat_centre_capped_by_its_band_is_lesion_whatever_it_touches_across_thick_slices():
    """Family B, a 40 % fat-centred lesion on 6.2 mm axial slices (``benchmarks/phantom_b_thick_slices.py``
    case 218): where the band runs along a slice, that slab reads bright and joined the centre of the next
    slices to the healthy marrow: 3.5 of 31.2 mL (-89 %).  A piece of a slice that a dark band cuts off
    towards the plate joins nothing across the slices now: measured +7.0 %.  The same leak read lesions
    written into real development heads 69-91 % small (``benchmarks/real_t1/implant.py``)."""
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    hip = Hip("left", head_radius_mm=26.88, lesion=Lesion(pct_of_head=40.0, centre="fat", shape_seed=218),
              neck_shaft_deg=126.15, anteversion_deg=8.12, neck_radius_fraction=0.657)
    image, truth = make_hip_scan(HipScanSpec(left=hip, field="left", anatomy_seed=218, plane="axial",
                                             spacing_mm=(0.99, 0.99, 6.2), fov_mm=(180.0, 180.0, 130.0)), seed=218)
    lesion_ml = mask_volume_ml(segment_hip(image).lesion)
    assert lesion_ml == pytest.approx(truth.hips["left"].lesion_volume_ml, rel=0.10)




def test_a_stray_bright_voxel_does_not_make_a_band_cut_off_the_healthy_marrow():
    """Real anatomy (tests/data/README.md): a 20.4 mL fat-centred lesion at the dome (LF 50 %, band 1.5 mm), on
    5.2 mm coronal slices.  On a slice at the head's front, a fragment of the band at its cup's rim had a single
    bright voxel on its head-centre side, and so "cut off" both pieces beyond it, the fat centre and the healthy
    marrow under the band: that slice read whole as lesion, no margin against healthy marrow was left to fit the
    band's sphere to, and the centre of the 4 slices behind it, joined to the healthy marrow across the slices, was
    lost: 13.85 mL (-32 %), with no flag.  A band cuts pieces off only when a piece of at least 5 voxels lies on its
    centre side: measured 20.50 mL (+0.6 %)."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_left_head_stray_piece"
    truth = json.loads((data / f"{name}.json").read_text())
    row = analyze_scans([Visit(sitk.ReadImage(str(data / f"{name}.nii.gz")))]).rows()[0]
    assert abs(row["head_volume_ml"] / truth["head_true_ml"] - 1) < 0.03                  # measured +0.2 %
    assert abs(row["lesion_volume_ml"] / truth["lesion_true_ml"] - 1) < 0.05              # measured +0.6 %


#: Family B case 202 of ``benchmarks/phantom_b_thick_slices.py``: 6.3 mm coronal slices.
THICK_202 = dict(plane="coronal", spacing_mm=(0.785, 0.785, 6.263), fov_mm=(180.0, 130.0, 180.0))


def _case_202(**grid):
    """Family B, the right hip of thick-slice case 202 (a 15 % fat-centred lesion) on ``grid``: image and truth."""
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    hip = Hip("right", head_radius_mm=23.08, lesion=Lesion(pct_of_head=15.0, centre="fat", shape_seed=202),
              neck_shaft_deg=129.04, anteversion_deg=13.45, neck_radius_fraction=0.757)
    image, truth = make_hip_scan(HipScanSpec(right=hip, field="right", anatomy_seed=202, **grid), seed=202)
    return image, truth.hips["right"]


def test_a_fat_centre_the_band_leaves_open_is_lesion_up_to_its_band_continued(monkeypatch):
    """Family B, a 15 % fat-centred lesion on 6.3 mm coronal slices (``benchmarks/phantom_b_thick_slices.py``
    case 202): where the slices cut the band obliquely it leaves a gap, and the centre of whole slices read as
    healthy marrow: 5.95 of 7.09 mL (-16.2 %).  The band's margin seen on the other slices is continued as a
    sphere, and what it encloses beyond the margins seen is lesion: measured 7.24 mL (+2.0 %; 6.74 mL, -5.0 %, before
    the sphere was fitted orthogonally and took in the plate shell at the head's ends; 6.44 mL, -9.2 %, while a
    margin seen where the band runs along the slices stopped it).  Lesions written
    into the real development heads read so 14-63 % small (``benchmarks/real_t1/implant.py`` seeds 1-3)."""
    from lesionvol.segment import lesion as lesion_module

    image, truth = _case_202(**THICK_202)
    true_ml = truth.lesion_volume_ml
    completed = mask_volume_ml(segment_hip(image).lesion)
    monkeypatch.setattr(lesion_module, "BAND_MAX_RMS_MM", -1.0)   # no sphere trusted: the centre is lost again
    band_alone = mask_volume_ml(segment_hip(image).lesion)
    assert completed == pytest.approx(true_ml, rel=0.08)
    assert band_alone < 0.88 * true_ml
    assert completed - band_alone > 0.05 * true_ml


def test_the_part_continued_from_the_band_is_reported_and_flagged_above_a_tenth():
    """The part of a lesion continued from its band's shape is inferred, not seen: the row reports it
    (``lesion_band_continued_ml``) and flags it above a tenth of the lesion, with a check line.  Family B case 202
    (above): 1.27 of 7.24 mL, reported and flagged (0.78 of 6.74 mL before the sphere was fitted orthogonally and
    took in the plate shell at the head's ends; 0.49 of 6.44 mL, not flagged, while a margin seen where the band runs
    along the slices stopped it); a lesion on 1 mm slices: nothing continued (0.00 mL)."""
    from lesionvol.cli import _checks
    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    row = analyze_scans([Visit(_case_202(**THICK_202)[0])]).rows()[0]
    assert 0.10 * row["lesion_volume_ml"] < row["lesion_band_continued_ml"] < 0.2 * row["lesion_volume_ml"]
    assert row["lesion_band_continued"] is True
    thin = analyze_scans([Visit(_case_202(spacing_mm=(1.0, 1.0, 1.0))[0])]).rows()[0]
    assert thin["lesion_volume_ml"] > 0 and thin["lesion_band_continued_ml"] == 0.0
    line = _checks([{"timepoint": "m3", "lesion_band_continued": True, "lesion_band_continued_ml": 8.76,
                     "lesion_volume_ml": 14.39}])
    assert line == ["check m3: 8.76 mL of the 14.39 mL lesion continue its band's shape where thick slices did not "
                    "show it: check its margin"]


def _real_implanted_head(name: str = "real_t1_implanted_left_head"):
    """A real coronal T1 crop (5.2 mm slices) with a lesion written into its head (tests/data/README.md): the image,
    the head fit stored with it (on the scan without the lesion, but for the thin-band crop), and the true lesion
    volume (mL).  By default the left head with a 33 % fat-centred lesion."""
    import json
    from pathlib import Path

    from lesionvol.segment.head import HeadFit

    data = Path(__file__).parent / "data"
    meta = json.loads((data / f"{name}.json").read_text())
    h = meta["head_fit"]
    fit = HeadFit(np.array(h["centre_mm"]), h["radius_mm"], h["inner_radius_mm"], np.array(h["neck_axis"]),
                  h["junction_mm"], h["side"], h["marrow_level"])
    return sitk.ReadImage(str(data / f"{name}.nii.gz")), fit, meta["lesion_true_ml"]


def test_a_lesion_left_short_of_its_band_sphere_is_flagged():
    """Real anatomy (tests/data/README.md): a fat-centred lesion of 8.86 mL on 5.2 mm coronal slices reads 7.93 mL
    (-10.5 %).  At its back the band runs along the slices, a margin seen there keeps it from being continued as its
    band's sphere, and its last slabs read as marrow.  That sphere holds 0.87 mL of marrow next to it (11 % of the
    lesion): the row reports it (``lesion_band_sphere_marrow_ml``, not in the lesion) and flags the lesion
    (``lesion_extent_doubtful``, above 8 %) with a check line.  The other real implanted crops, read within 10 %,
    hold at most 2.9 % (0.0 % where the lesion was continued) and are not flagged."""
    from lesionvol.io import Scan
    from lesionvol.segment import ClassicalSegmenter
    from lesionvol.study import segmentation_checks

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_left_head_fat_short")
    seg = ClassicalSegmenter().from_fit(image, fit)
    lesion_ml, left_out_ml = mask_volume_ml(seg.lesion), mask_volume_ml(seg.masks["band_sphere_marrow"])
    assert 0.85 * true_ml < lesion_ml < 0.95 * true_ml                              # measured -10.5 %
    assert 0.08 * lesion_ml < left_out_ml < 1.5 * (true_ml - lesion_ml)             # measured 0.87 mL
    # its margin also reads 0.53 of marrow with the band 2.9 mm inside, as oedema taken in does: that check is raised
    # too (one of the lesions without oedema the margin rule flags, benchmarks/results/real_t1_implant.txt)
    assert (f"the lesion's band, continued as a sphere, holds {left_out_ml:.2f} mL of marrow next to the {lesion_ml:.2f} "
            "mL lesion that thick slices leave undecided: the lesion may read small; check its margin across the slices"
            in segmentation_checks(Scan(image), seg))
    for other in ("left_head", "left_head_large_fat", "left_head_thin_band", "right_head_marrow_level_low",
                  "right_hip_large_intermediate"):
        image, fit, _ = _real_implanted_head(f"real_t1_implanted_{other}")
        seg = ClassicalSegmenter().from_fit(image, fit)
        assert mask_volume_ml(seg.masks["band_sphere_marrow"]) < 0.03 * mask_volume_ml(seg.lesion), other


def test_a_large_fat_centred_lesion_on_real_5_mm_slices_is_read_whole(monkeypatch):
    """Real anatomy (a development scan's crop, tests/data/README.md): a fat-centred lesion of 15.3 mL on 5.2 mm
    coronal slices.  At the front and back of so large a lesion its band's in-plane centroid lies on the head
    centre's projection, and the healthy marrow below the band was cut off instead of the centre above it; the
    centre then joined the healthy marrow and the lesion read 4.81 mL (-68.5 %).  Where the centroid is that
    close, the band's hollow side (a sphere fitted to its whole 3D band) tells the way to the plate, the band's gap
    where it meets the plate is closed, and the band continued as a sphere takes in the rest: measured 14.46 mL
    (-5.3 %).  Each rule alone is not enough."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head()

    def lesion_ml():
        return mask_volume_ml(lesion_module.segment_masks(image, fit).lesion_enclosed)

    assert lesion_ml() == pytest.approx(true_ml, rel=0.10)
    continued = mask_volume_ml(lesion_module.segment_masks(image, fit).band_continued)
    assert continued > 0.2 * true_ml        # measured 4.14 mL (7.63 before the gap was closed): reported, flagged
    monkeypatch.setattr(lesion_module, "CAPPED_CENTRED_MM", 0.0)            # the band's own centroid, always
    assert lesion_ml() < 0.4 * true_ml
    monkeypatch.setattr(lesion_module, "CAPPED_CENTRED_MM", 5.0)
    monkeypatch.setattr(lesion_module, "BAND_MAX_RMS_MM", -1.0)             # the band not continued
    assert lesion_ml() < 0.7 * true_ml                                       # measured 0.64


def test_the_plate_shell_continues_a_lesion_across_thick_slices_at_the_head_ends(monkeypatch):
    """Real anatomy (tests/data/README.md): a 7.47 mL lesion with a dark centre (0.36 of marrow) on 5.2 mm coronal
    slices, reaching the head's front.  There the radius from the head centre runs across the slices, the plate
    shell is a ring several mm wide within the slice, and its continuation along the radius met only the slice's
    own healthy marrow: the lesion read 7.18 mL (-3.9 %).  Continued across the slices from the next slab where it
    reads dark, it reads 7.42 mL (-0.7 %)."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_right_head_dark_centre")

    def lesion_ml():
        return mask_volume_ml(lesion_module.segment_masks(image, fit).lesion_enclosed)

    assert lesion_ml() == pytest.approx(true_ml, rel=0.02)
    monkeypatch.setattr(lesion_module, "_shell_across_slices", lambda lesion, m, grid: np.zeros_like(lesion))
    assert lesion_ml() < 0.97 * true_ml


def test_an_intermediate_centre_read_as_marrow_or_oedema_is_taken_in_by_the_band_continued(monkeypatch):
    """Real anatomy (tests/data/README.md): a 6.34 mL lesion whose centre reads 0.51 of marrow, on 5.2 mm coronal
    slices.  Where the slices cut its band obliquely, the centre reads partly as healthy marrow, partly as oedema;
    it reads dark on more than half of it, not on most.  The band continued as a sphere takes it in when the centre
    is not dark on most of it (0.8): 6.22 mL (-1.9 %), 0.47 mL of it continued.  When a centre dark on half sufficed
    to stop it, the lesion read 5.45 mL (-14.0 %)."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_right_head_intermediate_centre")
    masks = lesion_module.segment_masks(image, fit)
    assert mask_volume_ml(masks.lesion_enclosed) == pytest.approx(true_ml, rel=0.05)
    assert mask_volume_ml(masks.band_continued) > 0.05 * true_ml
    monkeypatch.setattr(lesion_module, "BAND_DARK_CENTRE_SHARE", 0.5)
    assert mask_volume_ml(lesion_module.segment_masks(image, fit).lesion_enclosed) < 0.9 * true_ml


def test_a_margin_seen_where_the_band_runs_along_the_slices_does_not_stop_the_band_continued(monkeypatch):
    """Real anatomy (tests/data/README.md): a 3.89 mL lesion with a 1.5 mm band and a fat-bright centre on 5.2 mm
    coronal slices.  Near its back, the band runs along the slab: a slab holding band, centre and healthy marrow
    reads as marrow, and the lesion there seems to meet the healthy marrow inside its true outline.  Such a margin
    stopped the band continued as a sphere, and the lesion read 3.28 mL (-15.6 %); then it did not: 3.67 mL
    (-5.7 %).  Where it still decides whether a lesion is continued at all, family B's standard set is unchanged.
    With the plate shell at the head's front taken in too (below): 3.86 mL (-0.7 %), 3.55 mL (-8.7 %) when such a
    margin stops it."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_left_head_thin_band")

    def lesion_ml():
        return mask_volume_ml(lesion_module.segment_masks(image, fit).lesion_enclosed)

    assert lesion_ml() == pytest.approx(true_ml, rel=0.03)
    monkeypatch.setattr(lesion_module, "SEEN_MARGIN_MAX_ACROSS", 2.0)     # every margin seen counts
    assert lesion_ml() < 0.93 * true_ml


def test_the_band_continued_takes_in_the_plate_shell_at_the_head_ends():
    """Real anatomy (tests/data/README.md): the 3.89 mL thin-band lesion above reaches the head's front across
    5.2 mm coronal slices.  The head's first slab there is nearly all plate shell; the radius continuing the lesion
    into the shell meets it only in the next slab, and its fat-bright centre reads too bright to be continued across
    the slices.  The shell voxels whose slab lies more than half inside the band's sphere are lesion: 0.19 mL, and
    the lesion reads 3.86 mL (-0.7 %) for 3.67 mL (-5.7 %) without them.  They count as continued (inferred); the
    shell the lesion reaches without the sphere does not."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_left_head_thin_band")
    masks = lesion_module.segment_masks(image, fit)
    m = lesion_module.marrow_model(image, fit)
    roi = tuple(slice(a, b) for a, b in zip(m.lo[::-1], m.hi[::-1]))
    lesion = sitk.GetArrayFromImage(masks.lesion_enclosed)[roi] > 0
    continued = sitk.GetArrayFromImage(masks.band_continued)[roi] > 0
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    shell_ml = (continued & m.shell).sum() * voxel_ml
    assert lesion.sum() * voxel_ml == pytest.approx(true_ml, rel=0.02)
    assert 0.1 < shell_ml < 0.3
    assert (lesion & ~(continued & m.shell)).sum() * voxel_ml < 0.96 * true_ml
    assert not (continued & m.shell & ~lesion).any()


def test_a_lesion_hiding_the_outer_surface_leaves_the_articular_surface_a_plate_outside_the_marrow():
    """Real anatomy (tests/data/README.md): a fat-centred lesion (LF 9 %) over the dome on 5.2 mm coronal slices.
    With it, the rise out of the dark rim is seen on 0.37 of the rays only, and the marrow surface leads the fit.
    The points found on those rays lie 3.1 mm beyond the marrow surface, wider than a plate (MAX_RESOLVED_PLATE_MM):
    the rim is unresolved, so the articular surface lies ARTICULAR_PLATE_MM outside the marrow surface, as on the
    same head without the lesion: radius 23.92 mm for 23.96.  Before, only the median profile's rim counted (2.5 mm)
    and a default plate's 2.0 mm was added: 24.92 mm, +13 % of head volume."""
    import json
    from pathlib import Path

    from lesionvol.segment.head import ARTICULAR_PLATE_MM, MIN_OUTER_FRACTION, fit_head

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_left_head_dome_fat"
    meta = json.loads((data / f"{name}.json").read_text())
    fit = fit_head(sitk.ReadImage(str(data / f"{name}.nii.gz")), np.array(meta["head_centre_without_lesion_mm"]),
                   side="left")
    assert fit.quality["outer_fraction"] < MIN_OUTER_FRACTION
    assert fit.radius_mm - fit.inner_radius_mm == pytest.approx(ARTICULAR_PLATE_MM)
    assert fit.radius_mm == pytest.approx(meta["head_radius_without_lesion_mm"], abs=0.2)


def test_a_seed_point_finds_a_head_whose_lesion_misleads_the_vote():
    """Real anatomy (tests/data/README.md): a real scan moved onto a follow-up grid (1.0 mm pixels, 4.3 mm slices)
    with a 26 % lesion of intermediate centre (0.40 of marrow) at the dome.  Without a seed the head is refused
    (safe).  With the reader's seed point at the head, the edges near it voted for spheres from which no head is
    found, and the head was refused too.  The seed point itself is now tried last: head 38.4 mL for the 38.9 mL
    without the lesion, lesion 10.8 mL for 10.7, flagged head_size_doubtful (dome marrow fraction 0.11); from a point
    5 mm off the centre as well (measured 38.7 mL)."""
    import json
    from pathlib import Path

    from lesionvol.segment.head import DOME_MARROW_MIN, NoFemoralHeadError

    data = Path(__file__).parent / "data"
    name = "real_t1_moved_implanted_right_head_seeded"
    meta = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    with pytest.raises(NoFemoralHeadError):
        segment_hip(image, side="right")
    centre = np.array(meta["head_centre_without_lesion_mm"])
    for seed in (centre, centre + (-5.0, 0.0, 0.0)):
        seg = segment_hip(image, side="right", seed_mm=tuple(seed))
        assert mask_volume_ml(seg.head) == pytest.approx(meta["head_without_lesion_ml"], rel=0.03)
        assert mask_volume_ml(seg.lesion) == pytest.approx(meta["lesion_true_ml"], rel=0.05)
        assert seg.head_fit.quality["dome_marrow_fraction"] < DOME_MARROW_MIN


def test_a_head_whose_large_lesion_draws_the_vote_up_is_found_from_below(monkeypatch):
    """Real anatomy (tests/data/README.md): a one-hip crop of a real scan with a 45 % lesion of intermediate centre
    (0.40 of marrow) at the dome, as large as necrosis gets before collapse.  Its band votes for a sphere too and
    draws the vote's peaks up, and from them no head is found: the head was refused.  While a head is missing, each
    candidate is now tried once more from 5 mm below it (RESTART_BELOW_MM): the head is found 2.0 mm from its centre
    without the lesion, and, as the lesion hides its dome, flagged head_size_doubtful (measured 37.4 mL for 34.4;
    lesion 18.6 mL for 16.0).  Since the rim that does not read dark outside the marrow surface is taken as
    unresolved (RESOLVED_PLATE_TROUGH_MAX), the first pass finds it already, 2.0 mm from that centre, its
    articular surface 1 mm outside a marrow surface the lesion pushes out: 40.5 mL (+17.6 %), flagged all the
    same."""
    import json
    from pathlib import Path

    from lesionvol.segment import head as head_module
    from lesionvol.segment.head import DOME_MARROW_MIN, NoFemoralHeadError, find_heads

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_right_hip_large_intermediate"
    meta = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    (fit,) = find_heads(image)
    assert fit.side == "right"
    assert np.linalg.norm(fit.centre_mm - meta["head_fit"]["centre_mm"]) < 3.0
    assert fit.quality["dome_marrow_fraction"] < DOME_MARROW_MIN
    assert mask_volume_ml(segment_hip(image).head) == pytest.approx(meta["head_true_ml"], rel=0.2)   # +17.6 %
    monkeypatch.setattr(head_module, "RESOLVED_PLATE_TROUGH_MAX", np.inf)          # that rim read as before
    (fit,) = find_heads(image)
    assert np.linalg.norm(fit.centre_mm - meta["head_fit"]["centre_mm"]) < 3.0
    assert mask_volume_ml(segment_hip(image).head) == pytest.approx(meta["head_true_ml"], rel=0.12)  # +8.7 %
    monkeypatch.setattr(head_module, "RESTART_BELOW_MM", 0.0)
    with pytest.raises(NoFemoralHeadError):
        find_heads(image)


def test_a_fat_centred_lesion_past_the_head_centre_is_read_whole(monkeypatch):
    """Real anatomy (tests/data/README.md): a fat-centred lesion of 48 % (21.75 mL) on 5.2 mm coronal slices, its
    band passing beyond the head centre.  The band's in-plane centroid then lies on the far side of the centre from
    the plate it caps, so "away from the centre" pointed at the healthy marrow: that was cut off instead, the centre
    joined the healthy marrow through the slab where the band runs along the slices, and the lesion read 0.00 mL,
    unflagged.  Where the band is a cup whose sphere holds the head centre from above (the weight-bearing dome),
    its hollow side decides: measured 21.45 mL, reported as continued by its band (flagged)."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_left_head_large_fat")
    masks = lesion_module.segment_masks(image, fit)
    assert mask_volume_ml(masks.lesion_enclosed) == pytest.approx(true_ml, rel=0.05)
    assert mask_volume_ml(masks.band_continued) > 0.2 * true_ml
    monkeypatch.setattr(lesion_module, "CAPPED_CUP_MIN_UP", np.inf)     # no cup holds the centre
    assert mask_volume_ml(lesion_module.segment_masks(image, fit).lesion_enclosed) < 0.1 * true_ml


def test_a_round_structure_without_a_marrow_surface_is_not_returned_as_a_head(monkeypatch):
    """Real anatomy (tests/data/README.md): a one-hip crop of the same moved scan with the 26 % intermediate-centred
    lesion.  Its head is refused (the lesion hides it), and the next candidate, 44 mm lateral and inferior of it (the
    trochanter region, radius 15.7 mm), passed every check and was returned as the right head (15.1 mL).  Its marrow
    surface is seen on 0.12 of the rays; every head returned on the real implants reads 0.27 or more: it is refused
    now (MIN_MARROW_SURFACE_FRACTION).  A seed point at the head finds the head (measured 38.5 mL for 38.9)."""
    import json
    from pathlib import Path

    from lesionvol.segment import head as head_module
    from lesionvol.segment.head import NoFemoralHeadError

    data = Path(__file__).parent / "data"
    name = "real_t1_moved_implanted_right_hip_crop"
    meta = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    centre = np.array(meta["head_centre_without_lesion_mm"])
    with pytest.raises(NoFemoralHeadError):
        segment_hip(image, side="right")
    with monkeypatch.context() as m:
        m.setattr(head_module, "MIN_MARROW_SURFACE_FRACTION", 0.0)
        [fit] = [seg.head_fit for seg in segment_hips(image).values()]     # its side is read off no true neck
        assert np.linalg.norm(fit.centre_mm - centre) > 30.0 and fit.quality["inner_fraction"] < 0.2
    seeded = segment_hip(image, side="right", seed_mm=tuple(centre))
    assert mask_volume_ml(seeded.head) == pytest.approx(meta["head_without_lesion_ml"], rel=0.03)


def test_a_one_hip_field_with_fat_bright_beside_the_coil_finds_its_head(monkeypatch):
    """Real anatomy (tests/data/README.md): a one-hip field (122 x 154 x 12 voxels) cut from a real coronal T1
    pelvis.  The fat beside the receive coil, 0.7 % of the voxels at 3.5-6.7x the fat elsewhere, was the upper class
    of the image's three-class split: the fat level read 1892 for 542, the marrow then read a third of "fat" and no
    head was found.  Such a sliver is now left out of the split (FAT_MIN_CLASS_FRACTION): the head is found where it
    is found on the whole scan (measured 0.04 mm away, 39.99 mL for 39.97), with no lesion."""
    import json
    from pathlib import Path

    from lesionvol.segment import head as head_module
    from lesionvol.segment.head import fat_level

    data = Path(__file__).parent / "data"
    name = "real_t1_right_hip_field_coil_fat"
    meta = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    assert 500 < fat_level(sitk.GetArrayFromImage(image)) < 800
    segs = segment_hips(image)
    assert list(segs) == ["right"]
    seg = segs["right"]
    assert np.linalg.norm(seg.centre_mm - np.array(meta["head_centre_on_whole_scan_mm"])) < 1.0
    assert mask_volume_ml(seg.head) == pytest.approx(meta["head_on_whole_scan_ml"], rel=0.02)
    assert mask_volume_ml(seg.lesion) <= 0.1
    monkeypatch.setattr(head_module, "FAT_MIN_CLASS_FRACTION", 0.0)       # the sliver kept, as before
    with pytest.raises(NoFemoralHeadError):
        segment_hips(image)


def test_a_one_hip_field_gets_its_side_from_the_neck_not_the_fossa_fat(monkeypatch):
    """Real anatomy (tests/data/README.md): a one-hip field (118 x 118 x 12 voxels) of a real coronal T1 pelvis moved
    onto a follow-up grid (6.5 mm slices).  No midline is in view, so the side is read off the neck.  Medially, the fat
    of the acetabular fossa reads as bright along its narrow channel as the neck does along its axis (1.00 either
    way), and the left head was returned as a right one.  Over the 25 deg around each axis the neck's opening reads
    brighter (NECK_SIDE_TIE).  Before this the field also failed with a numpy ValueError: a candidate's fit had moved
    off the field's slices; that candidate is now refused and the next one tried."""
    import json
    from pathlib import Path

    from lesionvol.segment import head as head_module

    data = Path(__file__).parent / "data"
    name = "real_t1_moved_left_hip_field"
    meta = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    segs = segment_hips(image)
    assert list(segs) == ["left"]
    assert np.linalg.norm(segs["left"].centre_mm - np.array(meta["head_centre_on_whole_moved_scan_mm"])) < 1.0
    assert mask_volume_ml(segs["left"].head) == pytest.approx(meta["head_on_whole_moved_scan_ml"], rel=0.03)
    monkeypatch.setattr(head_module, "NECK_SIDE_TIE", 0.0)         # the brighter axis alone, as before
    assert list(segment_hips(image)) == ["right"]


def test_a_head_whose_dome_a_lesion_hides_is_flagged(normal_b, tmp_path, capsys):
    """Real anatomy (tests/data/README.md): a 13.6 mL lesion with an intermediate centre (0.45 of marrow) over the
    dome, on 5.2 mm coronal slices.  It hides the marrow surface under the dome (found on 0.01 of the rays to it),
    the sphere is fitted to the head's lower part, and the head reads 43.2 mL for 51.0 mL (-15 %).  The row says
    so (``head_size_doubtful``), ``analyze`` and ``segment`` print a check line and the HTML report a warning.  Lesions that leave the marrow surface seen
    are not flagged: the other real implanted heads (fat, dark and intermediate centres: 0.79, 0.53, 0.30) and a
    normal phantom head (0.97).  A head the reader corrects is no longer the fit's: the flag goes."""
    import json
    from pathlib import Path

    from lesionvol.cli import _checks
    from lesionvol.html_report import study_html
    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_right_head_dome_intermediate"
    result = analyze_scans([Visit(sitk.ReadImage(str(data / f"{name}.nii.gz")))])
    row = result.rows()[0]
    assert row["head_size_doubtful"] is True and row["head_dome_marrow_fraction"] < 0.05
    assert row["head_volume_ml"] < 0.9 * json.loads((data / f"{name}.json").read_text())["head_true_ml"]
    assert _checks([row]) == [f"check t0: the marrow surface under the dome was found on "
                              f"{row['head_dome_marrow_fraction']:.2f} of the rays to it (a lesion there hides it): "
                              "the head may read too small or too large; check the head's outline"]
    assert "the marrow surface under the dome was found on 0.01 of the rays" in study_html(result)
    from lesionvol.cli import main

    assert main(["segment", str(data / f"{name}.nii.gz"), "--out-lesion", str(tmp_path / "l.nii.gz"),
                 "--out-head", str(tmp_path / "h.nii.gz")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [_checks([row])[0].replace("check t0:", "check right hip:")]
    result.update_mask(0, "head", result.timepoints[0].head)
    assert result.rows()[0]["head_size_doubtful"] is None
    for other in ("left_head", "right_head_dark_centre", "right_head_intermediate_centre"):
        row = analyze_scans([Visit(sitk.ReadImage(str(data / f"real_t1_implanted_{other}.nii.gz")))]).rows()[0]
        assert row["head_size_doubtful"] is False, other
    assert segment_hip(normal_b[0]).head_fit.quality["dome_marrow_fraction"] > 0.9


def test_a_sphere_beyond_the_rays_reach_finds_no_surface_and_does_not_fail(normal_b):
    """The fit samples each ray only where it looks for the surfaces.  A fit round whose radius has grown past the
    rays' reach (45 mm) finds no surface points there instead of failing (a real implanted scan, seed 3880 case 1,
    lost both heads to that error while it was being written)."""
    from lesionvol.segment.head import HEAD_RADIUS_RANGE_MM, ROI_MARGIN_MM, _edges, _Rays

    fit = segment_hip(normal_b[0]).head_fit
    rays = _Rays(normal_b[0], fit.centre_mm, HEAD_RADIUS_RANGE_MM[1] + ROI_MARGIN_MM, fit.marrow_level)
    found = {R: len(_edges(rays, fit.centre_mm, R, R - 1.0).outer) for R in (fit.radius_mm, 44.0, 60.0, 80.0)}
    assert found[fit.radius_mm] > 500 and found[80.0] == 0, found      # measured 1283, 130, 3 (far slices), 0


def test_a_head_whose_fit_moves_with_its_start_is_flagged():
    """Real anatomy (tests/data/README.md): a 46 % lesion (3.1 mm band, fat-bright centre) at the dome of a 35.8 mL
    head, on 5.2 mm coronal slices.  The head is fitted 1.6 mm small (R 19.1 mm for 20.6), -22 % of its volume, with
    its dome's marrow surface seen (0.62 of the rays) and no other head to compare it with: nothing else says so.
    Fitted again from 4 starts 3 mm around its centre, the fits' median radius is 1.6 mm larger (normal real heads:
    0.13 mm at most), and the head comes back ``head_size_doubtful``, saying why."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_left_head_refit_moves"
    truth = json.loads((data / f"{name}.json").read_text())
    row = analyze_scans([Visit(sitk.ReadImage(str(data / f"{name}.nii.gz")))]).rows()[0]
    assert row["head_volume_ml"] < 0.9 * truth["head_true_ml"]                       # measured -22 %
    assert row["head_dome_marrow_fraction"] > 0.5 and row["head_radius_minus_other_side_mm"] is None
    assert row["head_refit_radius_shift_mm"] > 1.0 and row["head_refit_failed_starts"] == 0   # measured +1.59 mm
    assert row["head_size_doubtful"] is True
    assert row["head_size_doubtful_reason"] == ("fitted again from 4 starts 3 mm around its centre, the head's "
                                                f"radius moves by {row['head_refit_radius_shift_mm']:+.1f} mm (median)")



def test_one_start_of_four_that_finds_no_head_does_not_make_the_head_size_doubtful():
    """A normal real head moved onto a follow-up grid (images_01 left, ``implant.py --moved 34700``, without the
    lesion): fitted again from the 4 starts around it, 3 find it within 0.02 mm (median) and one finds no head.  That
    one start flagged the head's size; a start that fails says little of the size (the development heads with one
    were flagged for other reasons too).  More than one still flags it, and a median that moves."""
    from lesionvol.segment.head import head_size_doubt

    assert head_size_doubt(0.91, 0.09, 20.67, 0.02, 1) == ""                  # the head's measured figures
    assert head_size_doubt(0.91, 0.09, 20.67, 0.02, 2) == ("fitted again from 4 starts 3 mm around its centre, "
                                                          "2 of them find no head")
    assert "moves by +0.8 mm" in head_size_doubt(0.91, 0.09, 20.67, 0.81, 0)


def test_a_head_fitted_inside_a_large_lesions_band_is_fitted_again_where_its_bone_surface_is_seen():
    """Real anatomy (tests/data/README.md): a 21.2 mL fat-centred lesion (LF 49 %, band 1.8 mm) in a 40.0 mL head, on
    5.2 mm coronal slices.  The head was fitted 2.6 mm small, inside the band: the band read as its marrow surface (the
    dome "showed marrow"), the refits agreed with it, and the fat centre lay outside the sphere, so the row read no
    lesion in a head 33 % small with no flag at all.  Its bone surface was found on 23 % of the rays (normal real
    heads 45-69 %, on follow-up grids 33 % or more).  Such a fit is flagged (``head_size_doubt``), and the head is
    fitted again from starts 5 mm around it; the largest fit whose bone surface is seen on 30 % of the rays or more
    replaces it (from below: 21.9 mm, 58 %): measured head +0.4 %, lesion +1.7 %."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.segment.head import fit_head, fit_size_doubt
    from lesionvol.study import analyze_scans

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_right_head_fitted_in_band"
    truth = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    inside_band = fit_head(image, np.array([-104.9, -6.5, 0.8]), side="right")   # where the first fit converged
    assert inside_band.radius_mm < truth["head_true_radius_mm"] - 2.0                  # measured 19.27 mm
    assert fit_size_doubt(inside_band).startswith("the head's bone surface was found on 23 % of the rays")
    row = analyze_scans([Visit(image)]).rows()[0]
    assert abs(row["head_volume_ml"] / truth["head_true_ml"] - 1) < 0.03                  # measured +0.4 %
    assert abs(row["lesion_volume_ml"] / truth["lesion_true_ml"] - 1) < 0.05              # measured +1.7 %
    assert row["head_outer_surface_fraction"] > 0.5 and row["head_size_doubtful"] is False   # measured 0.58


def _fixture_with_own_fit(name: str):
    """A real-anatomy fixture of tests/data (its truth and crop) and the doubtful whole-scan fit it holds (``own_fit``)."""
    import json
    from pathlib import Path

    from lesionvol.segment.head import HeadFit

    data = Path(__file__).parent / "data"
    truth = json.loads((data / f"{name}.json").read_text())
    o = truth["own_fit"]
    own = HeadFit(np.array(o["centre_mm"]), o["radius_mm"], o["inner_radius_mm"], np.array(o["neck_axis"]),
                  o["junction_mm"], o["side"], o["marrow_level"], dict(o["quality"]))
    return truth, sitk.ReadImage(str(data / f"{name}.nii.gz")), own


def test_a_head_whose_own_fit_is_doubtful_is_fitted_again_at_the_other_heads_radius():
    """Real anatomy (tests/data/README.md): a 23 % lesion with an intermediate centre (0.40 of marrow) at the dome of
    a real left head.  On the whole scan the head was fitted 1.15 mm small and 2.6 mm high, -19.6 % of volume, its
    lesion +12.7 %: the sphere through the marrow surface left under a lesion trades radius against centre.  The
    right head's fit held (nothing doubted it), 1.3 mm larger.  Given that head's radius, the centre is fitted again
    on the marrow surface it shows: the head reads +0.3 %, the lesion -4.6 %, and the size stays flagged, saying so."""
    from lesionvol.segment.head import HeadFit, fit_at_radius_of, fit_size_doubt, own_size_doubt

    truth, image, own = _fixture_with_own_fit("real_t1_implanted_left_head_own_fit_small")
    o = truth["own_fit"]
    other = HeadFit(np.zeros(3), truth["other_head_radius_mm"], truth["other_head_inner_radius_mm"],
                    np.array([-0.7, 0.3, -0.6]), 15.0, "right", 1.0)
    seg = ClassicalSegmenter()
    before = seg.from_fit(image, own)
    assert own_size_doubt(own) and mask_volume_ml(before.head) / truth["head_true_ml"] - 1 < -0.15   # measured -19.6 %
    again = fit_at_radius_of(image, own, other)
    after = seg.from_fit(image, again)
    assert again.radius_mm == truth["other_head_radius_mm"] and again.quality["own_radius_mm"] == o["radius_mm"]
    assert np.linalg.norm(again.centre_mm - truth["head_true_centre_mm"]) < 1.5                 # measured 1.0 mm
    assert abs(mask_volume_ml(after.head) / truth["head_true_ml"] - 1) < 0.03                  # measured +0.3 %
    assert abs(mask_volume_ml(after.lesion) / truth["lesion_true_ml"] - 1) < 0.10              # measured -4.6 %
    assert "given the other head's radius" in fit_size_doubt(again)


def test_refitting_a_head_where_no_dark_rim_reads_keeps_its_own_fit_instead_of_losing_both_heads():
    """On a real scan with lesions written into both heads (implant draw 4500 moved, case 1) both heads were found,
    then fitting the doubtful one again at the other's radius found no dark rim around it and raised: the scan read
    "no femoral head found", its sound right head (+1.1 % of volume) lost with it.  Where no rim reads, the head keeps
    its own fit (None: nothing to replace it with) and its roof gap is unknown (nan)."""
    from lesionvol.segment.head import HeadFit, fit_at_radius_of, roof_gap_mm

    flat = sitk.GetImageFromArray(np.full((40, 100, 100), 100.0, np.float32))
    flat.SetSpacing((1.0, 1.0, 3.0))
    doubtful = HeadFit(np.array([50.0, 50.0, 60.0]), 20.0, 19.0, np.array([-0.7, 0.1, -0.7]), 15.0, "right", 1.0)
    sound = HeadFit(np.array([-130.0, 50.0, 60.0]), 22.0, 21.0, np.array([0.7, 0.1, -0.7]), 15.0, "left", 1.0)
    assert fit_at_radius_of(flat, doubtful, sound, fat=100.0) is None
    assert math.isnan(roof_gap_mm(flat, doubtful, fat=100.0))


def test_a_head_whose_own_fit_is_doubtful_and_small_is_fitted_to_its_acetabular_roof():
    """Real anatomy (tests/data/README.md): a 31 % lesion with an intermediate centre (0.42 of marrow) at the dome of a
    real right head, on 5.2 mm coronal slices.  On the whole scan its own fit was doubtful (the dome's marrow surface
    seen on 0.07 of the rays) and small: head -9.4 % in this crop, the lesion -16.2 %.  The acetabular roof above the
    head is not touched by the lesion and lies a gap beyond its marrow surface, 4.48 mm on the other head of the scan,
    whose fit held.  Fitted to the marrow surface below the dome and to the roof at that gap, the marrow surface lies
    0.78 mm further out, more than the 0.6 mm that lets the roof fit replace the head's own: the head reads +3.6 %, its
    centre 0.36 mm from the true one, the lesion -4.9 %, and the size stays flagged, saying so."""
    from lesionvol.segment.head import ROOF_LARGER_BY_MM, fit_size_doubt, fit_to_roof, own_size_doubt

    truth, image, own = _fixture_with_own_fit("real_t1_implanted_right_head_under_roof")
    seg = ClassicalSegmenter()
    before = seg.from_fit(image, own)
    assert own_size_doubt(own) and mask_volume_ml(before.head) / truth["head_true_ml"] - 1 < -0.07    # measured -9.4 %
    assert mask_volume_ml(before.lesion) / truth["lesion_true_ml"] - 1 < -0.10                         # measured -16.2 %
    roof = fit_to_roof(image, own.centre_mm, own.inner_radius_mm, own.radius_mm - own.inner_radius_mm,
                       truth["other_head_roof_gap_mm"], "right")
    after = seg.from_fit(image, roof)
    assert roof.quality["fitted_to_roof"] and roof.inner_radius_mm - own.inner_radius_mm > ROOF_LARGER_BY_MM
    assert np.linalg.norm(roof.centre_mm - truth["head_true_centre_mm"]) < 1.0                  # measured 0.36 mm
    assert abs(mask_volume_ml(after.head) / truth["head_true_ml"] - 1) < 0.05                   # measured +3.6 %
    assert abs(mask_volume_ml(after.lesion) / truth["lesion_true_ml"] - 1) < 0.08               # measured -4.9 %
    assert "acetabular roof" in fit_size_doubt(roof)


def _missed_beside_fixture(name: str):
    """A fixture of a head missed beside the other head of its scan: its truth, the crop, the other head's fit (with
    its figures where stored), the vote's peaks where the missed head would lie; each peak alone finds no head."""
    import json
    from pathlib import Path

    from lesionvol.segment.head import HeadFit, fit_head

    data = Path(__file__).parent / "data"
    truth = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    o = truth["other_head"]
    quality = {k: math.nan if v is None else v for k, v in o.get("quality", {}).items()}
    other = HeadFit(np.array(o["centre_mm"]), o["radius_mm"], o["inner_radius_mm"], np.array(o["neck_axis"]),
                    o["junction_mm"], o["side"], 1.0, quality)
    peaks = [(np.array(p["centre_mm"]), p["fat"]) for p in truth["vote_peaks"]]
    missing = "left" if other.side == "right" else "right"
    for centre, fat in peaks:                                                   # the search before
        with pytest.raises(NoFemoralHeadError):
            fit_head(image, centre, fat=fat, side=missing)
    return truth, image, other, peaks


def test_a_head_missed_from_the_vote_peaks_beside_a_sound_head_is_found_from_a_grid_of_starts():
    """Real anatomy (tests/data/README.md): a 38 % lesion with an intermediate centre (0.38 of marrow) at the dome of
    a real right head.  The band draws the vote's peaks up and the fits from them find spheres 12-15 mm across, no head;
    the left head's fit held.  From a grid of starts around the first peak, the fit whose radius is nearest the left
    head's lies 0.5 mm from the true centre: the head reads -1.4 %, the lesion -3.6 %, and it is flagged, saying so."""
    from lesionvol.segment.head import _missed_head_from_grid, fit_size_doubt

    truth, image, left, peaks = _missed_beside_fixture("real_t1_implanted_right_head_missed_beside_sound")
    fit = _missed_head_from_grid(image, left, peaks, None)
    seg = ClassicalSegmenter().from_fit(image, fit)
    assert fit.side == "right" and fit.quality["found_from_grid"]
    assert np.linalg.norm(fit.centre_mm - truth["head_true_centre_mm"]) < 1.0                   # measured 0.52 mm
    assert abs(mask_volume_ml(seg.head) / truth["head_true_ml"] - 1) < 0.05                     # measured -1.4 %
    assert abs(mask_volume_ml(seg.lesion) / truth["lesion_true_ml"] - 1) < 0.08                 # measured -3.6 %
    assert "grid of starts" in fit_size_doubt(fit)


def test_a_head_missed_beside_a_doubtful_head_is_found_from_a_grid_of_starts():
    """Real anatomy (tests/data/README.md): a 41 % lesion with an intermediate centre (0.41 of marrow) written into a
    real left head on a follow-up grid (6.2 mm slices).  Every fit from the vote's peaks refuses it, and the right
    head's own fit is doubtful (a lesion hides its dome).  Before, the grid ran only beside a sound head, so the left
    hip was missed.  Beside a doubtful head the grid runs too, against the same 1 mm radius limit: the head is found
    0.40 mm from its true centre, head +3.9 %, lesion +3.1 %, flagged."""
    from lesionvol.segment.head import _missed_head_from_grid, fit_size_doubt, own_size_doubt

    truth, image, right, peaks = _missed_beside_fixture("real_t1_implanted_left_head_missed_beside_doubtful")
    assert "marrow surface under the dome" in own_size_doubt(right)
    fit = _missed_head_from_grid(image, right, peaks, None)
    seg = ClassicalSegmenter().from_fit(image, fit)
    assert fit.side == "left" and fit.quality["found_from_grid"]
    assert np.linalg.norm(fit.centre_mm - truth["head_true_centre_mm"]) < 1.0                   # measured 0.40 mm
    assert abs(mask_volume_ml(seg.head) / truth["head_true_ml"] - 1) < 0.06                     # measured +3.9 %
    assert abs(mask_volume_ml(seg.lesion) / truth["lesion_true_ml"] - 1) < 0.08                 # measured +3.1 %
    assert "grid of starts" in fit_size_doubt(fit)


def test_both_heads_missed_are_found_as_the_pair_of_grid_fits_most_starts_converge_on():
    """Real anatomy (tests/data/README.md): lesions of LF 44 and 49 % with intermediate centres written into both real
    heads of a scan on a follow-up grid; every fit from the vote's peaks missed both, and the scan read "no femoral
    head found".  Fitted from a grid around each side's peak, the right and left fits that lie as one pelvis with radii
    within 1 mm are paired.  The pair of nearest radii puts the right head 0.77 mm large (+10 % of volume), a fit one
    start found; the pair most starts converge on (3 and 6) reads both heads within 2 %: right 0.14 mm from its
    centre, head +1.8 %, lesion +4.8 %; left 1.20 mm, head +1.8 %, lesion +12.9 %; both flagged."""
    import json
    from pathlib import Path

    from lesionvol.segment.head import _both_heads_from_grid, fit_head, fit_size_doubt

    data = Path(__file__).parent / "data"
    truth = json.loads((data / "real_t1_implanted_both_heads_missed.json").read_text())
    image = sitk.ReadImage(str(data / "real_t1_implanted_both_heads_missed.nii.gz"))
    peaks = {side: [(np.array(p["centre_mm"]), p["fat"]) for p in truth[side]["vote_peaks"]]
             for side in ("right", "left")}
    for side in peaks:                                                          # the search before
        for centre, fat in peaks[side]:
            with pytest.raises(NoFemoralHeadError):
                fit_head(image, centre, fat=fat, side=side)
    both = _both_heads_from_grid(image, peaks, None)
    assert sorted(both) == ["left", "right"]
    measured = {"right": (0.5, 0.03, 0.08), "left": (1.5, 0.03, 0.15)}      # centre mm, head, lesion: see above
    for side, fit in both.items():
        t, (centre_mm, head, lesion) = truth[side], measured[side]
        seg = ClassicalSegmenter().from_fit(image, fit)
        assert fit.side == side and fit.quality["found_from_grid"] and "grid of starts" in fit_size_doubt(fit)
        assert np.linalg.norm(fit.centre_mm - t["head_true_centre_mm"]) < centre_mm
        assert abs(mask_volume_ml(seg.head) / t["head_true_ml"] - 1) < head
        assert abs(mask_volume_ml(seg.lesion) / t["lesion_true_ml"] - 1) < lesion


def test_a_large_low_signal_region_set_aside_as_anatomy_is_flagged():
    """Real anatomy (tests/data/README.md): a 46 % lesion with a fat-bright centre and a 2.6 mm band written into a
    real right head.  Its centre reads as marrow and the lesion 0.00 mL (not fixed); the band's deep part, 5.4 mL
    pointing down from the head's centre, is set aside as inferior head.  Normal real heads set aside 1.07 mL at most,
    so the row flags it (``lesion_set_aside_doubtful``) instead of returning 0 mL silently."""
    from lesionvol.segment.lesion import SET_ASIDE_DOUBT_ML
    from lesionvol.study import row_checks

    truth, image, fit = _fixture_with_own_fit("real_t1_implanted_right_head_band_set_aside")
    seg = ClassicalSegmenter().from_fit(image, fit)
    aside_ml = mask_volume_ml(seg.masks["set_aside"])
    assert mask_volume_ml(seg.lesion) < 0.1 * truth["lesion_true_ml"]                          # measured 0.00 mL
    assert aside_ml > SET_ASIDE_DOUBT_ML                                                       # measured 5.40 mL
    checks = row_checks({"lesion_volume_ml": 0.0, "lesion_set_aside_ml": aside_ml, "lesion_set_aside_doubtful": True})
    assert len(checks) == 1 and "set aside as anatomy" in checks[0]


def test_a_lesion_whose_margin_fits_no_sphere_on_thick_slices_is_flagged():
    """Real anatomy (tests/data/README.md): a 50 % lesion with a fat-bright centre written into a real left head, on
    5.2 mm slices.  On three slices its centre reads as marrow and the lesion reads 13.2 of 28.7 mL (not fixed); its
    margin fits no sphere (RMS 1.3 mm), so the band's shape can neither continue it nor say it is short.  That part of
    the lesion is reported (``band_unread``) and the row flags it (``lesion_band_unread``) instead of returning -54 %
    silently."""
    from lesionvol.study import MAX_BAND_UNREAD_FRACTION, row_checks

    truth, image, fit = _fixture_with_own_fit("real_t1_implanted_left_head_band_unread")
    seg = ClassicalSegmenter().from_fit(image, fit)
    lesion_ml, unread_ml = mask_volume_ml(seg.lesion), mask_volume_ml(seg.masks["band_unread"])
    assert lesion_ml / truth["lesion_true_ml"] - 1 < -0.3                                      # measured -54 %
    assert unread_ml > MAX_BAND_UNREAD_FRACTION * lesion_ml                                    # measured 11.05 of 13.23 mL
    assert mask_volume_ml(seg.masks["band_continued"]) == 0.0
    checks = row_checks({"lesion_volume_ml": lesion_ml, "lesion_band_unread_ml": unread_ml, "lesion_band_unread": True})
    assert len(checks) == 1 and "could not be read" in checks[0]


def test_a_lesion_at_the_dome_does_not_make_the_rim_read_as_a_resolved_plate():
    """Real anatomy (tests/data/README.md): a 9.70 mL lesion with an intermediate centre (0.47 of marrow) at the
    dome of a 50.9 mL head, on 5.2 mm coronal slices.  Real T1 at 0.9 mm does not resolve the plate: plate,
    cartilage and joint read as one dark rim, and the articular surface is placed 1 mm outside the marrow surface.
    The lesion's band made the rim read 2.5 mm wide on the median profile, like a resolved plate, and the head was
    fitted on the rise out of it: 1.4 mm large, +19.7 % of volume, the lesion +15.8 %, flagged by nothing (its dome
    fraction 0.42).  Within 2.5 mm outside the marrow surface that rim never reads darker than 0.31 of marrow (a
    resolved plate reads below 0.15): it is taken as unresolved, and the head reads +0.1 %, the lesion +3.7 %."""
    import json
    from pathlib import Path

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans

    data = Path(__file__).parent / "data"
    name = "real_t1_implanted_right_head_dome_rim_thin"
    truth = json.loads((data / f"{name}.json").read_text())
    image = sitk.ReadImage(str(data / f"{name}.nii.gz"))
    fit = segment_hip(image).head_fit
    row = analyze_scans([Visit(image)]).rows()[0]
    assert fit.quality["plate_mm"] == pytest.approx(1.0)
    assert abs(fit.radius_mm - truth["head_true_radius_mm"]) < 0.3                      # measured 0.05 mm
    assert abs(row["head_volume_ml"] / truth["head_true_ml"] - 1) < 0.03               # measured +0.1 %
    assert abs(row["lesion_volume_ml"] / truth["lesion_true_ml"] - 1) < 0.10           # measured +3.7 %


def _darkened(image: sitk.Image, where) -> sitk.Image:
    """The image with the voxels whose physical points satisfy ``where(points_mm)`` set to muscle (0.3 of fat)."""
    from lesionvol.geometry import physical_points
    from lesionvol.segment.head import fat_level

    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    pts = physical_points(image, np.argwhere(np.ones(arr.shape, bool))).reshape(arr.shape + (3,))
    arr[where(pts)] = 0.3 * fat_level(arr)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


@pytest.mark.parametrize("left_radius_mm, flagged", [(23.5, False), (21.5, True)])
def test_two_heads_whose_sizes_disagree_on_one_scan_are_both_flagged(left_radius_mm, flagged):
    """A person's two femoral heads differ by well under 1 mm in radius (``HEAD_PAIR_RADIUS_MAX_MM``).  Where the two
    fitted on one scan differ by more, one of them is off (lesions written into real heads: a large lesion at the dome
    shrank a head by 28 % with its dome's marrow surface still seen; the two radii then read 2.0 mm apart), so both
    come back ``head_size_doubtful``, saying why.  Second phantom family, a pelvis field on 4 mm slices, right head
    24.0 mm: a left head of 23.5 mm reads 0.52 mm smaller, unflagged; one of 21.5 mm (a pair no person has) reads
    2.53 mm smaller, and both are flagged."""
    from lesionvol.io import Scan
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan
    from lesionvol.study import segmentation_checks

    spec = HipScanSpec(right=Hip("right", head_radius_mm=24.0), left=Hip("left", head_radius_mm=left_radius_mm),
                       field="both", anatomy_seed=14)
    image, _ = make_hip_scan(spec, seed=14)
    hips = segment_hips(image)
    differ = hips["left"].head_fit.quality["radius_minus_other_side_mm"]
    assert differ == pytest.approx(left_radius_mm - 24.0, abs=0.1)      # measured -0.52, -2.53
    assert hips["right"].head_fit.quality["radius_minus_other_side_mm"] == -differ
    for side, seg in hips.items():
        assert seg.head_fit.quality["dome_marrow_fraction"] > 0.9           # the dome alone would not flag them
        size = "smaller" if side == "left" else "larger"
        assert segmentation_checks(Scan(image), seg) == ([
            f"the head's radius is {abs(differ):.1f} mm {size} than the other head's on the same scan (a person's two "
            "differ by less than 1 mm): the head may read too small or too large; check the head's outline"]
            if flagged else []), side


@pytest.mark.parametrize("radius_mm, flagged", [(16.5, True), (19.5, False)])
def test_a_head_smaller_than_an_adults_is_flagged(radius_mm, flagged):
    """An adult femoral head is 38-54 mm across (radius 19-27 mm; HEAD_RADIUS_PLAUSIBLE_MM allows 1 mm of fit error).
    A fitted radius outside that makes the head's size doubtful even where no other head was found to compare it
    with: from a seed point at the centre of a real head with a 38 % lesion of intermediate centre (implant.py seed
    2600, case 3 right), a 15.1 mm sphere inside the 21.9 mm head passed every other check and read no lesion.
    Second phantom family, one normal right head: 16.5 mm is found and flagged, saying why (measured 16.6 mm);
    19.5 mm is not flagged."""
    from lesionvol.io import Scan
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan
    from lesionvol.study import segmentation_checks

    spec = HipScanSpec(right=Hip("right", head_radius_mm=radius_mm, lesion=None), field="right", anatomy_seed=2,
                       spacing_mm=(0.9, 0.9, 3.0))
    image, _ = make_hip_scan(spec, seed=2)
    seg = segment_hip(image)
    fitted = seg.head_fit.radius_mm
    assert fitted == pytest.approx(radius_mm, abs=0.3)
    assert segmentation_checks(Scan(image), seg) == ([
        f"the head's fitted radius, {fitted:.1f} mm, lies outside an adult femoral head's (18-28 mm: 38-54 mm across, "
        "with 1 mm of fit error): the head may read too small or too large; check the head's outline"]
        if flagged else [])


@pytest.fixture(scope="module")
def normal_b():
    """Family B, a normal right head (R 24 mm, no lesion) on 0.9 x 0.9 x 3 mm coronal slices."""
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan

    hip = Hip("right", head_radius_mm=24.0, lesion=None, neck_shaft_deg=131.0, anteversion_deg=12.0)
    image, truth = make_hip_scan(HipScanSpec(right=hip, field="right", anatomy_seed=2, spacing_mm=(0.9, 0.9, 3.0)),
                                 seed=2)
    assert truth.hips["right"].lesion_volume_ml == 0.0
    return image, truth.hips["right"]


def test_a_neck_dark_over_its_outer_part_is_no_femoral_neck(normal_b):
    """A femoral neck is marrow all along (development scans and both phantom families: bright on
    97-100 % of the axis).  The bladder's outlet on a coronal T2 prostate scan (bright on 53 %) passed
    the old 50 % limit and the bladder came out a femoral head; 75 % is required now."""
    from lesionvol.segment.head import find_heads

    image, truth = normal_b
    assert find_heads(image)[0].quality["neck_bright_fraction"] > 0.95
    c, a, R = truth.centre_mm, truth.neck_axis, truth.radius_mm

    def outer_neck(p):                  # the neck beyond 1.52 R along its axis: bright on 53-60 % left
        t = (p - c) @ a
        return (t > 1.52 * R) & (np.linalg.norm(p - c - t[..., None] * a, axis=-1) < 0.9 * R)

    with pytest.raises(NoFemoralHeadError, match="no femoral neck"):
        find_heads(_darkened(image, outer_neck))


def test_an_acetabular_roof_over_half_the_head_only_is_no_acetabulum(normal_b):
    """A femoral head sits in an acetabulum: bone above it on 85-100 % of the upward rays on the
    development scans, 87-100 % on the phantom benchmarks of both families.  Midline soft tissue of a prostate VIBE
    (47 %) passed the old 45 % limit; 60 % is required now."""
    from lesionvol.segment.head import find_heads

    image, truth = normal_b
    assert find_heads(image)[0].quality["acetabulum_fraction"] > 0.95
    c, R = truth.centre_mm, truth.radius_mm

    def roof_on_one_side(p):            # above the head, beyond its joint, posterior half only (LPS +y)
        d = p - c
        return (d[..., 2] > 0) & (np.linalg.norm(d, axis=-1) > R + 1.0) & (d[..., 1] > 0)

    with pytest.raises(NoFemoralHeadError, match="sits in no acetabulum"):
        find_heads(_darkened(image, roof_on_one_side))


def test_a_round_bone_whose_bone_runs_straight_down_is_not_returned_as_a_head():
    """A femoral neck leaves its head 40-60 deg from the nearly vertical shaft (development heads: 46-75 deg from
    straight down).  Where a large lesion hid the head itself, the greater trochanter, with only the shaft below it
    (16 deg), was returned as the head in a field showing both hips: lesions of LF 30-50 % written into real heads
    (implant.py seed 2000 cases 6 right and 14 left, seed 2400 case 14 left; lesions read 94, 62 and 63 % small).
    Under 20 deg it is refused now, and the heads were found there (35, 8 and 6 % off).  Family B reads 180 deg
    minus the neck-shaft angle minus the shaft's 7 deg: a valgus 150 deg neck (23 deg) is a head, a 160 deg one
    (15 deg) is not, and the field says which head it could not find."""
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan
    from lesionvol.segment import MissingHipWarning, segment_hips
    from lesionvol.segment.head import fit_head

    spec = HipScanSpec(right=Hip("right", head_radius_mm=24.0, neck_shaft_deg=160.0),
                       left=Hip("left", head_radius_mm=24.0, neck_shaft_deg=150.0), field="both", anatomy_seed=3)
    image, truth = make_hip_scan(spec, seed=3)
    left = fit_head(image, truth.hips["left"].centre_mm, side="left")
    assert math.degrees(math.acos(-left.neck_axis[2])) == pytest.approx(23.0, abs=1.0)
    with pytest.raises(NoFemoralHeadError, match=r"runs 15° from straight down"):
        fit_head(image, truth.hips["right"].centre_mm, side="right")
    with pytest.warns(MissingHipWarning, match="no right femoral head"):
        hips = segment_hips(image)
    assert list(hips) == ["left"]


def test_a_small_dark_spot_near_the_head_neck_junction_is_not_a_lesion(normal_b, monkeypatch):
    """Where the physeal scar meets the plate, superolaterally near the head–neck cut, normal real heads
    show small dark patches: 0.1–0.25 mL components reaching 0.32–0.38 R from the cut on the development
    scans and their derived copies (case 11 left read 0.10 mL, a noisy copy of case 10 0.25 mL), past the
    former 0.35 R junction zone.  A dark 4 mm ball at the plate reaching 0.40 R from the cut read
    0.21 mL with that zone; it is no lesion now."""
    import lesionvol.segment.lesion as lesion_module

    image, truth = normal_b
    c, a, R, cut = truth.centre_mm, truth.neck_axis, truth.radius_mm, truth.junction_mm
    up = np.array([0.0, 0.0, 1.0]) - a[2] * a           # superior, across the neck axis
    up /= np.linalg.norm(up)
    r = R - 1.5                                          # 1.5 mm under the surface ...
    t = cut - 0.40 * R + 4.0                             # ... its deepest point along the axis 0.40 R from the cut
    u = (t / r) * a + np.sqrt(1 - (t / r) ** 2) * up
    spot = _darkened(image, lambda p: np.linalg.norm(p - (c + r * u), axis=-1) < 4.0)
    assert lesion_module.JUNCTION_ZONE_FRACTION > 0.40
    assert mask_volume_ml(segment_hip(spot).lesion) == 0.0
    monkeypatch.setattr(lesion_module, "JUNCTION_ZONE_FRACTION", 0.35)
    assert mask_volume_ml(segment_hip(spot).lesion) > 0.15                    # measured 0.21 mL


def test_a_marrow_level_read_off_a_large_lesion_is_read_again_from_the_marrow_zone(monkeypatch):
    """Real anatomy (tests/data/README.md): a 43 % lesion with an intermediate centre (0.49 of marrow) written into a
    real head, 17.90 mL.  The head found on that scan read its marrow level near where it was first looked for, in
    the lesion: the healthy marrow reads 1.76 times it, above the range the marrow model is fitted in, so the model
    was fitted to the lesion and the lesion read as marrow: 0.11 mL (-99.4 %, flagged only by its fill).  More than
    MARROW_ABOVE_RANGE_MAX of the marrow zone reading above that range re-reads the level there: 16.17 mL (-9.7 %)."""
    from lesionvol.segment import lesion as lesion_module

    image, fit, true_ml = _real_implanted_head("real_t1_implanted_right_head_marrow_level_low")

    def lesion_ml():
        return mask_volume_ml(lesion_module.segment_masks(image, fit).lesion_enclosed)

    assert lesion_ml() == pytest.approx(true_ml, rel=0.12)
    monkeypatch.setattr(lesion_module, "MARROW_ABOVE_RANGE_MAX", 1.0)        # the fit's level, always
    assert lesion_ml() < 0.1 * true_ml
