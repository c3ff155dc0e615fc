"""Attacks on a user's data, each as a hostile but realistic user would try it: names that
would become paths, folders that are not ours, values that are not numbers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lesionvol.cli import main
from lesionvol.errors import InputError
from lesionvol.inputs import Visit
from lesionvol.manifest import read_manifest
from lesionvol.sample import sample_mask_paths, sample_series_paths

IMAGES = [str(p) for p in sample_series_paths()[:2]]
MASKS = ["--lesion", *map(str, sample_mask_paths("lesion")[:2]), "--head", *map(str, sample_mask_paths("head")[:2])]
BAD_NAMES = ["..", "../../x", "a/b", "a\\b", "x\0y", "line\nbreak", "y" * 300, ".hidden", "=1+1",
             "=HYPERLINK(\"http://x\")", "@SUM(A1)", "+2-3", " base", ""]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_timepoint_label_never_becomes_a_path(tmp_path, capsys, bad):
    work = tmp_path / "work"
    work.mkdir()
    before = _files(tmp_path)
    code = main(["analyze", *IMAGES, *MASKS, "--labels", "base", bad, "--no-register", "--quiet",
                 "--out", str(work / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot name a file" in err and err.count("\n") == 1
    assert _files(tmp_path) == before  # nothing written anywhere


@pytest.mark.parametrize("bad", ["../../../data/P2/base", "=HYPERLINK(\"x\")", "a b"])
def test_a_manifest_timepoint_or_subject_never_becomes_a_path(tmp_path, bad):
    (tmp_path / "m.csv").write_text(f"subject,side,timepoint,days,image\nP1,R,{bad},0,a.nii\n"
                                    f"{bad},R,t0,0,a.nii\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_manifest(tmp_path / "m.csv")
    assert "line 2: timepoint" in str(caught.value) and "line 3: subject" in str(caught.value)


def test_a_visit_refuses_a_bad_label_in_the_library_too():
    for bad in ("../escape", "-2+3"):
        with pytest.raises(InputError, match="cannot name a file"):
            Visit("a.nii.gz", label=bad)
    assert Visit("a.nii.gz", label="3mo_v2.1+").label == "3mo_v2.1+"
    assert os.path.basename(Visit("a.nii.gz").files()[0]) == "a.nii.gz"


# ----------------------------------------------------------------------------- output folders
def _patient_folder(tmp_path: Path) -> Path:
    """A reader's folder: two scans with their masks, and notes that are not ours."""
    folder = tmp_path / "pA"
    folder.mkdir()
    for kind, paths in (("", sample_series_paths()[:2]), ("_lesion", sample_mask_paths("lesion")[:2]),
                        ("_head", sample_mask_paths("head")[:2])):
        for i, path in enumerate(paths):
            (folder / f"t{i}{kind}.nii.gz").write_bytes(Path(path).read_bytes())
    (folder / "notes.txt").write_text("reader's notes")
    return folder


def _analyze(folder: Path, out: Path, *extra: str) -> int:
    return main(["analyze", str(folder / "t0.nii.gz"), str(folder / "t1.nii.gz"),
                 "--lesion", str(folder / "t0_lesion.nii.gz"), str(folder / "t1_lesion.nii.gz"),
                 "--head", str(folder / "t0_head.nii.gz"), str(folder / "t1_head.nii.gz"),
                 "--no-register", "--quiet", "--out", str(out), *extra])


@pytest.mark.parametrize("where", [".", "results"])
def test_out_in_the_inputs_folder_is_refused_even_with_overwrite(tmp_path, capsys, where):
    folder = _patient_folder(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert _analyze(folder, folder / where, "--overwrite") == 2
    assert "the input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_bad_out_is_refused_before_any_work(tmp_path, capsys):
    """The output folder is checked before the scans are segmented: no progress line, no wasted minutes."""
    folder = _patient_folder(tmp_path)
    assert main(["analyze", str(folder / "t0.nii.gz"), str(folder / "t1.nii.gz"), "--out", str(folder / "out")]) == 2
    said = capsys.readouterr()
    assert "the input" in said.err
    assert "[1/" not in said.out + said.err


def test_overwrite_replaces_only_a_folder_lesionvol_wrote(tmp_path, capsys):
    folder = _patient_folder(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "draft.docx").write_text("not lesionvol's")
    assert _analyze(folder, mine, "--overwrite") == 2
    assert "did not write" in capsys.readouterr().err and (mine / "draft.docx").exists()
    out = tmp_path / "results"
    assert _analyze(folder, out) == 0
    assert _analyze(folder, out) == 2  # results there: not without --overwrite
    assert _analyze(folder, out, "--overwrite") == 0
    assert (out / ".lesionvol").is_file() and (out / "volumes.csv").is_file()


def test_a_symlinked_out_writes_into_its_target(tmp_path):
    folder = _patient_folder(tmp_path)
    target = tmp_path / "big_disk" / "hip"
    target.parent.mkdir()
    link = tmp_path / "hip"
    link.symlink_to(target, target_is_directory=True)
    assert _analyze(folder, link) == 0
    assert link.is_symlink() and (target / "volumes.csv").is_file()


def test_a_second_run_into_the_same_out_is_refused_while_one_runs(tmp_path, capsys):
    from lesionvol.outdir import locked, resolve_out

    folder = _patient_folder(tmp_path)
    out = tmp_path / "hip"
    with locked(resolve_out(out)):
        assert _analyze(folder, out) == 2
    assert "another lesionvol run is writing to" in capsys.readouterr().err
    assert _analyze(folder, out) == 0  # the lock went with the first run
    assert not (tmp_path / ".hip.lock").exists()


def test_leftovers_of_a_killed_run_are_removed_and_the_umask_is_kept(tmp_path):
    folder = _patient_folder(tmp_path)
    stale = tmp_path / ".hip.partial-dead1234"
    (stale / "masks").mkdir(parents=True)
    previous = os.umask(0o022)
    try:
        assert _analyze(folder, tmp_path / "hip") == 0
    finally:
        os.umask(previous)
    assert not stale.exists()
    assert (tmp_path / "hip" / "volumes.csv").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "hip" / "masks" / "t0_lesion.nii.gz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "hip").stat().st_mode & 0o777 == 0o755


def test_batch_refuses_an_out_that_holds_its_inputs(tmp_path, capsys):
    folder = _patient_folder(tmp_path)
    (tmp_path / "m.csv").write_text("subject,side,timepoint,days,image,lesion_mask,head_mask\n"
                                    "P1,R,t0,0,pA/t0.nii.gz,pA/t0_lesion.nii.gz,pA/t0_head.nii.gz\n")
    assert main(["batch", str(tmp_path / "m.csv"), "--out", str(tmp_path), "--no-register", "--quiet"]) == 2
    assert "holds the input" in capsys.readouterr().err
    assert (folder / "notes.txt").exists()


# ----------------------------------------------------------------------------- batch inputs
def _session(root: Path, name: str, days: str | None = None) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "image.nii.gz").write_bytes(b"")
    if days is not None:
        (root / name / "days").write_text(days)


def test_folder_sessions_are_ordered_by_what_their_names_say(tmp_path):
    """README's cohort layout without days files: the baseline must come first, not after 3mo."""
    from lesionvol.manifest import read_folder

    for name in ("3mo", "12mo", "baseline"):
        _session(tmp_path / "P1", name)
    for name in ("2024-09-01", "2024-03-01"):
        _session(tmp_path / "P2", name)
    for name in ("1y", "6w", "pre"):
        _session(tmp_path / "P3", name)
    studies = {s.subject: [v.label for v in s.visits] for s in read_folder(tmp_path, side="right")}
    assert studies == {"P1": ["baseline", "3mo", "12mo"], "P2": ["2024-03-01", "2024-09-01"],
                       "P3": ["pre", "6w", "1y"]}


def test_folder_sessions_whose_order_cannot_be_told_are_refused(tmp_path):
    from lesionvol.manifest import read_folder

    for name in ("first", "followup"):
        _session(tmp_path / "P1", name)
    with pytest.raises(InputError, match="cannot tell when first, followup was; add a 'days' file"):
        read_folder(tmp_path, side="left")
    _session(tmp_path / "P1", "x", days="0")  # days files for some only do not help the others
    with pytest.raises(InputError, match="cannot tell when"):
        read_folder(tmp_path, side="left")


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "utf-8-sig"])
def test_manifests_saved_by_spreadsheets_are_read(tmp_path, encoding):
    text = "subject,side,timepoint,days,image\nPatiënt1,R,base,0,tête.nii.gz\n".replace("Patiënt1", "P1")
    (tmp_path / "m.csv").write_bytes(text.encode(encoding))
    [study] = read_manifest(tmp_path / "m.csv")
    assert study.visits[0].image == str(tmp_path / "tête.nii.gz")


def test_a_manifest_that_is_not_text_is_refused_in_one_line(tmp_path):
    (tmp_path / "m.csv").write_bytes("subject,side\n".encode("utf-16-le"))  # no byte-order mark
    with pytest.raises(InputError, match="NUL bytes"):
        read_manifest(tmp_path / "m.csv")


def test_cells_a_spreadsheet_would_run_are_escaped(tmp_path):
    import csv

    from lesionvol.report import write_rows_csv

    write_rows_csv([{"reason": "=HYPERLINK(\"http://x\",\"y\")", "note": "@SUM(1)", "lf_pct": -2.5,
                     "ok": "below"}], tmp_path / "t.csv")
    with open(tmp_path / "t.csv", newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert row == {"reason": "'=HYPERLINK(\"http://x\",\"y\")", "note": "'@SUM(1)", "lf_pct": "-2.5", "ok": "below"}


def test_the_dask_dashboard_listens_on_this_machine_only(tmp_path, capsys):
    from test_batch import make_cohort

    manifest = make_cohort(tmp_path / "in", subjects=("S01",))
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out"), "--workers", "1", "--no-register"]) == 0
    link = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Dask dashboard: ")]
    assert len(link) == 1 and link[0].startswith("Dask dashboard: http://127.0.0.1:"), link


# ----------------------------------------------------------------------------- masks that cannot be measured
def test_a_head_cut_by_the_field_of_view_is_flagged(tmp_path):
    import SimpleITK as sitk

    from lesionvol.io import read_mask, read_scan
    from lesionvol.study import analyze_scans

    scan = read_scan(sample_series_paths()[0])
    head = read_mask(sample_mask_paths("head")[0], scan.image)
    lesion = read_mask(sample_mask_paths("lesion")[0], scan.image)
    z = sitk.GetArrayViewFromImage(head).any(axis=(1, 2)).nonzero()[0]
    cut = int(z[len(z) // 3])  # the field of view starts a third of the way into the head
    size = list(scan.image.GetSize())
    crop = [size[0], size[1], size[2] - cut]
    images = [sitk.RegionOfInterest(im, crop, [0, 0, cut]) for im in (scan.image, head, lesion)]
    whole = analyze_scans([Visit(scan.image, head=head, lesion=lesion)]).rows()[0]
    cropped = analyze_scans([Visit(images[0], head=images[1], lesion=images[2])]).rows()[0]
    assert whole["mask_at_fov_edge"] is False and whole["mask_at_fov_edge_reason"] == ""
    assert cropped["head_volume_ml"] < 0.9 * whole["head_volume_ml"]
    assert cropped["mask_at_fov_edge"] is True
    # the sample is coronal: its slices run anterior -> posterior (direction column (0, 1, 0)), so the
    # cut removes the front of the head and of its anterosuperior lesion
    assert scan.image.GetDirection()[2::3] == (0.0, 1.0, 0.0)
    assert cropped["mask_at_fov_edge_reason"] == ("head touches the anterior edge of the image; lesion touches the "
                                                  "anterior edge of the image: their volumes may be cut short")


def test_a_lesion_outside_its_head_is_refused(tmp_path, capsys):
    import SimpleITK as sitk

    from lesionvol.io import read_mask

    head = read_mask(sample_mask_paths("head")[0])
    outside = sitk.Cast(head == 0, sitk.sitkUInt8)
    outside = sitk.And(outside, sitk.BinaryDilate(head, [6, 6, 2]))  # a shell around the head
    (tmp_path / "in").mkdir()
    sitk.WriteImage(outside, str(tmp_path / "in" / "shell.nii.gz"))
    code = main(["analyze", str(sample_series_paths()[0]), "--lesion", str(tmp_path / "in" / "shell.nii.gz"),
                 "--head", str(sample_mask_paths("head")[0]), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "the lesion of t0 lies outside its head mask" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_json_is_valid_and_keeps_strings_that_contain_nan(tmp_path):
    import json

    import numpy as np

    from lesionvol.report import write_json

    data = {"file": "NaNa_t1.nii.gz", "error": "NaN values in BaNaNa", "lf": float("nan"), "big": float("inf"),
            "small": np.float32(-np.inf), "ok": np.float64(2.5), "rows": [{"x": float("nan")}]}
    write_json(data, tmp_path / "s.json")
    text = (tmp_path / "s.json").read_text(encoding="utf-8")
    assert "Infinity" not in text
    back = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert back == {"file": "NaNa_t1.nii.gz", "error": "NaN values in BaNaNa", "lf": None, "big": None,
                    "small": None, "ok": 2.5, "rows": [{"x": None}]}


def test_a_dicom_series_with_a_missing_slice_is_refused_unless_gaps_are_allowed(tmp_path, capsys):
    import SimpleITK as sitk
    from test_io import write_dicom_series

    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(500, 50, (9, 24, 24)).astype(np.float32))
    image.SetSpacing((1.0, 1.0, 3.5))
    write_dicom_series(image, tmp_path / "series")
    (tmp_path / "series" / "slice004.dcm").unlink()  # one slice lost in transfer
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "series"), "--out", str(out / "a"), "--quiet"]) == 2
    assert "7.00 mm apart where the others are 3.50 mm" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="gaps were allowed"):
        from lesionvol.inputs import AnalysisOptions, load_visit

        loaded = load_visit(Visit(str(tmp_path / "series")), 0, AnalysisOptions(allow_gaps=True))
    assert loaded.scan.image.GetSpacing()[2] == pytest.approx(4.0)  # read on the mean spacing, as asked
