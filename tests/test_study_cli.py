"""One hip end to end, through the library and the command line, on the bundled sample series."""

import csv
import json
import os

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from lesionvol.cli import build_parser, main, options_from_args
from lesionvol.errors import InputError
from lesionvol.inputs import AnalysisOptions, Visit
from lesionvol.io import read_mask, sha256_of
from lesionvol.sample import sample_mask_paths, sample_series_paths, sample_truth
from lesionvol.study import analyze, analyze_scans

IMAGES = [str(p) for p in sample_series_paths()]
LESIONS = [str(p) for p in sample_mask_paths("lesion")]
HEADS = [str(p) for p in sample_mask_paths("head")]


def analyze_cli(out, *extra):
    return main(["analyze", *IMAGES, "--lesion", *LESIONS, "--head", *HEADS, "--out", str(out),
                 "--days", "0", "91", "365", "--no-register", "--quiet", *extra])


@pytest.fixture(scope="module")
def result():
    return analyze(IMAGES, AnalysisOptions(register=False), lesion_masks=LESIONS, head_masks=HEADS)


def test_reference_masks_measure_the_true_volumes(result):
    truth = sample_truth()
    rows = result.rows()
    for row, head_ml, lesion_ml, lf in zip(
        rows, truth["head_volume_ml"], truth["lesion_volume_ml"], truth["lesion_pct_head"]
    ):
        # voxel-centre masks of analytic shapes: within the voxelisation error
        assert row["head_volume_ml"] == pytest.approx(head_ml, rel=0.02)
        assert row["lesion_volume_ml"] == pytest.approx(lesion_ml, rel=0.05)
        assert row["lesion_pct_head"] == pytest.approx(lf, abs=0.5)
    assert rows[0]["residual_pct_baseline"] == pytest.approx(100.0)
    for row, rf in zip(rows[1:], truth["residual_pct_baseline"][1:]):
        assert row["residual_pct_baseline"] == pytest.approx(rf, abs=3.0)
    assert [row["threshold_flag"] for row in rows] == ["at_or_above", "at_or_above", "below"]


def test_csv_json_masks_and_qc_pictures_are_written(tmp_path):
    out = tmp_path / "hip"
    assert analyze_cli(out) == 0
    with open(out / "volumes.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["timepoint"] for r in rows] == ["t0", "t1", "t2"]
    assert [float(r["days"]) for r in rows] == [0, 91, 365]
    for column in ("head_volume_ml", "lesion_volume_ml", "lesion_pct_head", "residual_pct_baseline",
                   "regenerated_ml", "new_lesion_ml", "threshold_flag", "steinberg_extent"):
        assert column in rows[0]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["threshold"]["lesion_pct_head_threshold_pct"] == 10.0
    assert "Gomez-Barrena" in summary["threshold"]["source"]
    assert [i["sha256"] for i in summary["inputs"]] == [sha256_of(p) for p in IMAGES]
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(
        [f"t{i}_{k}.nii.gz" for i in range(3) for k in ("head", "lesion")] + [f"t{i}.seg.nrrd" for i in range(3)])
    assert all((out / "qc" / f"t{i}.png").stat().st_size > 5000 for i in range(3))


def test_existing_results_are_refused_then_replaced_with_overwrite(tmp_path, capsys):
    out = tmp_path / "hip"
    assert analyze_cli(out) == 0
    before = (out / "volumes.csv").stat().st_mtime_ns
    capsys.readouterr()
    assert analyze_cli(out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already holds results" in err and "--overwrite" in err
    assert (out / "volumes.csv").stat().st_mtime_ns == before
    assert analyze_cli(out, "--overwrite") == 0
    assert (out / "volumes.csv").stat().st_mtime_ns != before


def test_interrupted_run_leaves_nothing_half_written(tmp_path, monkeypatch, capsys):
    import lesionvol.report as report

    calls = []

    def interrupted(tp, path):
        calls.append(tp.label)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(report, "qc_picture", interrupted)
    assert analyze_cli(tmp_path / "hip") == 130
    assert list(tmp_path.iterdir()) == []  # no result folder and no temporary folder


def test_inputs_are_never_modified(tmp_path):
    before = [sha256_of(p) for p in IMAGES + LESIONS + HEADS]
    assert analyze_cli(tmp_path / "hip") == 0
    assert [sha256_of(p) for p in IMAGES + LESIONS + HEADS] == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing image", "does not exist"),
        ("mask from another visit", "not on its image's grid"),
        ("two masks for three images", "2 lesion masks for 3 images"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    images, lesions = list(IMAGES), list(LESIONS)
    if case == "missing image":
        images[1] = str(tmp_path / "gone.nii.gz")
    elif case == "mask from another visit":
        lesions[0] = LESIONS[2]
    else:
        lesions = lesions[:2]
    code = main(["analyze", *images, "--lesion", *lesions, "--head", *HEADS, "--out", str(tmp_path / "o"),
                 "--no-register", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err
    assert not (tmp_path / "o").exists()


def test_measure_command_json(capsys):
    assert main(["measure", IMAGES[0], "--lesion", LESIONS[0], "--head", HEADS[0], "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    truth = sample_truth()
    assert measured["lesion_volume_ml"] == pytest.approx(truth["lesion_volume_ml"][0], rel=0.05)
    assert measured["threshold_flag"] == "at_or_above"
    assert measured["steinberg_extent"] == "B"


def test_empty_lesion_mask_is_a_valid_zero(tmp_path, capsys):
    import SimpleITK as sitk

    empty = sitk.Image(sitk.ReadImage(LESIONS[0]))
    empty *= 0
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    assert main(["measure", IMAGES[0], "--lesion", str(tmp_path / "empty.nii.gz"), "--head", HEADS[0], "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["lesion_volume_ml"] == 0.0 and measured["steinberg_extent"] == "none"


def test_location_columns_match_the_sample_geometry(result):
    truth = sample_truth()["landmarks_mm"]
    for row, marks in zip(result.rows(), truth):
        assert row["location_side"] == "right"  # inferred from the head mask's neck cut
        offset = [a - b for a, b in zip(marks["lesion_centroid"], marks["head_centre"])]
        # LPS: anterior is -y, superior +z, lateral of a right hip is -x
        assert row["lesion_centroid_anterior_mm"] == pytest.approx(-offset[1], abs=1.0)
        assert row["lesion_centroid_superior_mm"] == pytest.approx(offset[2], abs=1.0)
        assert row["lesion_centroid_lateral_mm"] == pytest.approx(-offset[0], abs=1.0)
        assert row["lesion_centroid_direction"] == "anterior-superior"


def test_register_command_writes_a_transform_that_maps_baseline_to_followup(tmp_path, capsys):
    import SimpleITK as sitk

    out = tmp_path / "month12.tfm"
    assert main(["register", IMAGES[0], IMAGES[2], "--out", str(out)]) == 0  # heads segmented
    assert "head_dice_registered" in capsys.readouterr().out
    transform = sitk.ReadTransform(str(out))
    marks = sample_truth()["landmarks_mm"]
    for name in ("head_centre", "acetabular_edge"):
        mapped = transform.TransformPoint(tuple(marks[0][name]))
        assert sum((a - b) ** 2 for a, b in zip(mapped, marks[2][name])) ** 0.5 < 1.0  # mm
    assert [p.name for p in tmp_path.iterdir()] == ["month12.tfm"]


def test_a_corrected_mask_is_measured_again_with_its_change_maps():
    import SimpleITK as sitk

    result = analyze(IMAGES[:2], AnalysisOptions(register=False), lesion_masks=LESIONS[:2], head_masks=HEADS[:2])
    before = result.rows()
    lesion = sitk.Image(result.timepoints[0].lesion)
    array = sitk.GetArrayFromImage(lesion)
    painted = int(array.sum())
    lesion *= 0  # the reader erases the whole baseline lesion
    assert result.update_mask(0, "lesion", lesion) == [1]  # month 3 shares the grid: its change maps are redone
    after = result.rows()
    voxel_ml = float(np.prod(result.timepoints[0].scan.image.GetSpacing())) / 1000
    assert before[0]["lesion_volume_ml"] == pytest.approx(painted * voxel_ml)
    assert after[0]["lesion_volume_ml"] == 0.0 and after[0]["steinberg_extent"] == "none"
    assert after[1]["regenerated_ml"] == 0.0  # nothing left at baseline to regenerate
    assert after[1]["new_lesion_ml"] == pytest.approx(after[1]["lesion_volume_ml"])


def test_segment_both_hips_of_a_pelvis_field(tmp_path, capsys):
    import SimpleITK as sitk

    from lesionvol.io import read_mask
    from lesionvol.measure import mask_volume_ml
    from lesionvol.phantom import VisitSpec, make_visit

    scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    sitk.WriteImage(scan.image, str(tmp_path / "pelvis.nii.gz"))
    assert main(["segment", str(tmp_path / "pelvis.nii.gz"), "--side", "both",
                 "--out-lesion", str(tmp_path / "lesion.nii.gz"), "--out-head", str(tmp_path / "head.nii.gz")]) == 0
    for side in ("left", "right"):
        head = read_mask(tmp_path / f"head_{side}.nii.gz", scan.image)
        assert mask_volume_ml(head) == pytest.approx(scan.truths[side].head_volume_ml, rel=0.04)
        assert mask_volume_ml(read_mask(tmp_path / f"lesion_{side}.nii.gz", scan.image)) == 0.0  # healthy heads


def test_segment_both_names_the_hip_it_could_not_find(tmp_path, capsys):
    """A pelvis field whose left hip is hidden: the right hip's masks are written, the left hip is
    named on stderr, and the exit code (3) tells a pipeline the field was not fully segmented."""
    from lesionvol.cli import SEGMENT_HIP_MISSING
    from lesionvol.geometry import Grid
    from lesionvol.measure import mask_volume_ml
    from lesionvol.phantom import VisitSpec, make_visit

    scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    grid = Grid.of(scan.image)
    array = sitk.GetArrayFromImage(scan.image)
    near_left = np.linalg.norm(grid.roi_points(np.zeros(3, int), np.asarray(scan.image.GetSize()))
                               - scan.truths["left"].head_centre_mm, axis=-1) < 45.0
    array[near_left] = np.percentile(array[array > 0], 30)   # the left hip replaced by muscle-like soft tissue
    hidden = sitk.GetImageFromArray(array)
    hidden.CopyInformation(scan.image)
    sitk.WriteImage(hidden, str(tmp_path / "pelvis.nii.gz"))
    code = main(["segment", str(tmp_path / "pelvis.nii.gz"), "--side", "both",
                 "--out-lesion", str(tmp_path / "lesion.nii.gz"), "--out-head", str(tmp_path / "head.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == SEGMENT_HIP_MISSING == 3
    assert len(err) == 1 and "no left femoral head" in err[0]
    head = read_mask(tmp_path / "head_right.nii.gz", scan.image)
    assert mask_volume_ml(head) == pytest.approx(scan.truths["right"].head_volume_ml, rel=0.04)
    assert not (tmp_path / "head_left.nii.gz").exists()


def test_every_analysis_option_has_a_flag_in_analyze_and_batch():
    """Options are declared once (AnalysisOptions); analyze and batch offer every one of them."""
    names = {f.name for f in dataclasses.fields(AnalysisOptions)}
    for command in (["analyze", "a.nii", "--out", "o"], ["batch", "m.csv", "--out", "o"]):
        args = build_parser().parse_args(command)
        assert names <= set(vars(args)), names - set(vars(args))
        assert options_from_args(args) == AnalysisOptions()  # the flags' defaults are the options' defaults
    args = build_parser().parse_args(["analyze", "a.nii", "--out", "o", "--head-definition", "sphere",
                                      "--threshold-pct", "15", "--no-register", "--acetabular-edge-mm", "1", "2", "3"])
    assert options_from_args(args) == AnalysisOptions(head_definition="sphere", threshold_pct=15.0, register=False,
                                                      acetabular_edge_mm=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("bad", ["nan", "inf", "0", "-5", "101"])
def test_a_threshold_that_is_not_a_percentage_is_refused(tmp_path, capsys, bad):
    assert analyze_cli(tmp_path / "o", f"--threshold-pct={bad}") == 2
    assert "threshold_pct must be a number above 0 and at most 100" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_label_map_gives_the_volumes_of_the_separate_masks(tmp_path):
    """ITK-SNAP / nnU-Net style: one file, head 1 and lesion 2 (head = head + lesion labels)."""
    maps = []
    for i, (image, lesion, head) in enumerate(zip(IMAGES, LESIONS, HEADS)):
        les, hd = read_mask(lesion), read_mask(head)
        labels = sitk.Cast(hd * 3, sitk.sitkUInt8)  # head as 3 ...
        labels = sitk.Mask(labels, sitk.Not(les), outsideValue=7)  # ... lesion as 7: labels set by the options
        (tmp_path / "maps").mkdir(exist_ok=True)
        path = tmp_path / "maps" / f"labels{i}.nii.gz"
        sitk.WriteImage(labels, str(path))
        maps.append(str(path))
    out = tmp_path / "o"
    assert main(["analyze", *IMAGES, "--label-map", *maps, "--head-label", "3", "--lesion-label", "7",
                 "--no-register", "--quiet", "--out", str(out)]) == 0
    with open(out / "volumes.csv", encoding="utf-8") as handle:
        from_maps = list(csv.DictReader(handle))
    separate = analyze(IMAGES, AnalysisOptions(register=False), lesion_masks=LESIONS, head_masks=HEADS).rows()
    for a, b in zip(from_maps, separate):
        assert float(a["head_volume_ml"]) == pytest.approx(b["head_volume_ml"], rel=1e-5)  # CSV keeps 6 digits
        assert float(a["lesion_volume_ml"]) == pytest.approx(b["lesion_volume_ml"], rel=1e-5)
        assert a["mask_source"] == "user"
    with pytest.raises(InputError, match="neither the head label 1 nor the lesion label 2"):
        analyze_scans([Visit(IMAGES[0], label_map=maps[0])])


def test_known_transforms_are_used_and_recorded(tmp_path):
    """A visit with a given transform is not registered; the summary says which were given."""
    identity = sitk.Euler3DTransform()
    result = analyze_scans([Visit(IMAGES[0], lesion=LESIONS[0], head=HEADS[0]),
                            Visit(IMAGES[1], lesion=LESIONS[1], head=HEADS[1], transform=identity)])
    follow = result.timepoints[1]
    assert follow.transform_source == "given" and follow.registration_qc == {}
    assert result.rows()[1]["change_method"] == "transform given"
    assert [i["transform"] for i in result.summary()["inputs"]] == ["baseline", "given"]


def test_a_slicer_segmentation_gives_the_volumes_of_the_separate_masks(tmp_path):
    """3D Slicer: one .seg.nrrd per scan with segments named as the options say; results write one back."""
    from lesionvol.slicer_seg import read_segments, write_segments

    (tmp_path / "seg").mkdir()
    segs = []
    for i, (lesion, head) in enumerate(zip(LESIONS, HEADS)):
        path = tmp_path / "seg" / f"t{i}.seg.nrrd"
        write_segments(path, {"Femoral head": read_mask(head), "Necrosis": read_mask(lesion)})
        segs.append(str(path))
    out = tmp_path / "o"
    assert main(["analyze", *IMAGES, "--label-map", *segs, "--head-segment", "femoral head",
                 "--lesion-segment", "necrosis", "--no-register", "--quiet", "--out", str(out)]) == 0
    with open(out / "volumes.csv", encoding="utf-8") as handle:
        from_segs = list(csv.DictReader(handle))
    separate = analyze(IMAGES, AnalysisOptions(register=False), lesion_masks=LESIONS, head_masks=HEADS).rows()
    for a, b in zip(from_segs, separate):
        assert float(a["head_volume_ml"]) == pytest.approx(b["head_volume_ml"], rel=1e-5)
        assert float(a["lesion_volume_ml"]) == pytest.approx(b["lesion_volume_ml"], rel=1e-5)
    written = read_segments(out / "masks" / "t1.seg.nrrd")
    assert sorted(written) == ["head", "lesion"]
    assert (sitk.GetArrayViewFromImage(written["lesion"]) == sitk.GetArrayFromImage(read_mask(LESIONS[1]))).all()


def test_a_t2_image_is_refused_unless_allowed_and_the_override_is_recorded(tmp_path, capsys):
    """Lesion volumetry is defined on T1: a T2 scan (phantom family B, written independently) is
    refused in one line; with --allow-non-t1 it is measured and the table says the override was used."""
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    spec = HipScanSpec(right=Hip("right", lesion=Lesion(pct_of_head=15.0)), field="right", contrast="T2",
                       spacing_mm=(2.0, 2.0, 4.0), fov_mm=(120.0, 120.0, 80.0))
    image, truth = make_hip_scan(spec, seed=0)
    (tmp_path / "in").mkdir()
    paths = {name: str(tmp_path / "in" / f"{name}.nii.gz") for name in ("t2", "head", "lesion")}
    sitk.WriteImage(image, paths["t2"])
    sitk.WriteImage(truth.head_mask["right"], paths["head"])
    sitk.WriteImage(truth.lesion_mask["right"], paths["lesion"])
    args = ["analyze", paths["t2"], "--head", paths["head"], "--lesion", paths["lesion"], "--quiet"]
    assert main([*args, "--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "does not look T1-weighted: T2" in err and err.count("\n") == 1
    assert not (tmp_path / "refused").exists()
    assert main([*args, "--allow-non-t1", "--out", str(tmp_path / "o")]) == 0
    with open(tmp_path / "o" / "volumes.csv", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["image_contrast"], row["non_t1_allowed"]) == ("T2", "True")
    assert json.loads((tmp_path / "o" / "summary.json").read_text(encoding="utf-8"))["options"]["allow_non_t1"] is True


def test_segment_refuses_a_t2_image_unless_allowed(tmp_path, capsys):
    """`segment` applies the same sequence check as `analyze`: on T2 a round bright structure with a dark
    wall (the bladder, a head in T2) is not segmented as a T1 head; --allow-non-t1 segments and says so."""
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan

    spec = HipScanSpec(right=Hip("right"), field="right", contrast="T2", spacing_mm=(2.0, 2.0, 4.0),
                       fov_mm=(120.0, 120.0, 80.0))
    image, _ = make_hip_scan(spec, seed=0)
    path = str(tmp_path / "t2.nii.gz")
    sitk.WriteImage(image, path)
    out = ["--out-lesion", str(tmp_path / "l.nii.gz"), "--out-head", str(tmp_path / "h.nii.gz")]
    assert main(["segment", path, *out]) == 2
    err = capsys.readouterr().err
    assert "does not look T1-weighted: T2" in err and err.count("\n") == 1
    assert not (tmp_path / "l.nii.gz").exists() and not (tmp_path / "h.nii.gz").exists()
    assert main(["segment", path, *out, "--allow-non-t1"]) == 0
    assert "looks T2" in capsys.readouterr().err
    assert read_mask(str(tmp_path / "h.nii.gz")) is not None


def test_register_two_t2_scans_registers_the_whole_field(tmp_path, capsys):
    """Registration needs no T1 contrast, head segmentation does: two T2 scans (phantom family B, the
    patient moved by 5, -4, 3 mm) are registered over the whole field, stderr says why, and the
    transform recovers the shift (maps baseline points to follow-up points)."""
    from lesionvol.phantom_b import Hip, HipScanSpec, make_hip_scan

    shift = (5.0, -4.0, 3.0)
    paths = []
    for name, origin_shift in (("fixed", (0.0, 0.0, 0.0)), ("moving", shift)):
        spec = HipScanSpec(right=Hip("right"), field="right", contrast="T2", spacing_mm=(1.5, 1.5, 4.0),
                           fov_mm=(150.0, 150.0, 100.0), origin_shift_mm=origin_shift)
        image, _ = make_hip_scan(spec, seed=len(paths))
        paths.append(str(tmp_path / f"{name}.nii.gz"))
        sitk.WriteImage(image, paths[-1])
    code = main(["register", *paths, "--out", str(tmp_path / "t.tfm")])
    captured = capsys.readouterr()
    assert code in (0, 3), captured.err
    assert "no femoral head segmented in the fixed image (the image does not look T1-weighted: T2" in captured.err
    assert "whole" in captured.out.split("registration_method")[1].splitlines()[0]
    moved = sitk.ReadTransform(str(tmp_path / "t.tfm")).TransformPoint((-90.0, 0.0, 0.0))
    assert np.allclose(np.subtract(moved, (-90.0, 0.0, 0.0)), shift, atol=1.0)


def test_register_two_scans_without_a_femoral_head_registers_the_whole_field(tmp_path, capsys):
    """nibabel's real brain T1 and the same anatomy moved by a known rigid transform: no femoral head
    to find, so the whole field is registered, and the QC says which method was used."""
    from nibabel.testing import data_path

    fixed, moving = (os.path.join(data_path, name) for name in ("anatomical.nii", "reoriented_anat_moved.nii"))
    code = main(["register", fixed, moving, "--out", str(tmp_path / "t.tfm")])
    captured = capsys.readouterr()
    assert code in (0, 3), captured.err  # 3: registered but flagged doubtful
    assert "no femoral head segmented in the fixed image" in captured.err
    assert "whole" in captured.out.split("registration_method")[1].splitlines()[0]
    assert (tmp_path / "t.tfm").is_file()


def test_analyze_names_what_to_check_under_its_table(tmp_path, capsys):
    """A lesion next to marrow oedema (family B's 6 mm halo, one hip, no DICOM tags) is measured, not
    refused as T2, and the line under the table says to check its margin."""
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    hip = Hip("left", head_radius_mm=26.0, lesion=Lesion(pct_of_head=18.0, oedema_halo_mm=6.0, shape_seed=9),
              neck_shaft_deg=125.0 + 27 % 11, anteversion_deg=10.0 + 9 % 6)
    image, _ = make_hip_scan(HipScanSpec(left=hip, field="left", anatomy_seed=9), seed=9)
    (tmp_path / "in").mkdir()
    sitk.WriteImage(image, str(tmp_path / "in" / "halo.nii.gz"))
    assert main(["analyze", str(tmp_path / "in" / "halo.nii.gz"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "mL of marrow oedema next to the" in capsys.readouterr().out
