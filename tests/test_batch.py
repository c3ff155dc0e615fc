"""The batch runner on a real Dask LocalCluster of 2 workers, with tiny synthetic studies.

Studies are small balls (head) with a smaller ball inside (lesion) on a 1 mm grid, masks
given in the manifest and ``register=False``, so nothing here depends on the segmenter or
the registration; the numbers asserted are the voxel-counted volumes the core reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lesionvol.batch import run_batch
from lesionvol.cli import main
from lesionvol.errors import InputError
from lesionvol.inputs import AnalysisOptions
from lesionvol.manifest import read_folder, read_manifest

SIZE = 32
NO_REGISTER = AnalysisOptions(register=False)


def _ball(radius_mm: float, centre=(SIZE / 2,) * 3) -> np.ndarray:
    z, y, x = np.indices((SIZE,) * 3)
    return ((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2) <= radius_mm**2


def _write(array: np.ndarray, path: Path, dtype=np.uint8) -> str:
    image = sitk.GetImageFromArray(array.astype(dtype))
    image.SetSpacing((1.0, 1.0, 1.0))
    image.SetOrigin((-10.0, 5.0, 3.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return str(path)


def make_scan(folder: Path, lesion_radius_mm: float, seed: int) -> tuple[str, str, str]:
    """An image with its lesion and head masks; returns the three paths."""
    head, lesion = _ball(11.0), _ball(lesion_radius_mm)
    rng = np.random.default_rng(seed)
    image = 100.0 * head - 70.0 * lesion + rng.normal(0, 3, head.shape)
    return (_write(image, folder / "image.nii.gz", np.float32), _write(lesion, folder / "lesion.nii.gz"),
            _write(head, folder / "head.nii.gz"))


RADII = {"baseline": 6.0, "3mo": 5.0, "1y": 3.0}
DAYS = {"baseline": 0, "3mo": 91, "1y": 365}


def make_cohort(root: Path, subjects=("S01", "S02", "S03", "S04"), corrupt: str | None = None,
                missing: str | None = None) -> Path:
    """A manifest of one right hip per subject, three visits each (rows deliberately unordered)."""
    lines = ["subject,side,timepoint,days,image,lesion_mask,head_mask"]
    for i, subject in enumerate(subjects):
        for label in ("3mo", "baseline", "1y"):
            paths = make_scan(root / subject / label, RADII[label] - 0.3 * i, seed=i)
            rel = [os.path.relpath(p, root) for p in paths]
            lines.append(f"{subject},right,{label},{DAYS[label]},{rel[0]},{rel[1]},{rel[2]}")
    if corrupt:
        Path(root / corrupt / "3mo" / "image.nii.gz").write_bytes(b"this is not a NIfTI file" * 10)
    if missing:
        Path(root / missing / "1y" / "head.nii.gz").unlink()
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture(scope="module")
def cluster():
    """One real LocalCluster of 2 worker processes shared by the tests (reached by address)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c.scheduler_address


def _mtimes(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/volumes.csv")}


def _no_partials(out: Path) -> None:
    leftovers = [p.name for p in out.rglob("*") if ".partial" in p.name or ".old-" in p.name]
    assert leftovers == []


# ----------------------------------------------------------------------------- manifest

def test_manifest_orders_by_days_and_resolves_relative_paths(tmp_path):
    studies = read_manifest(make_cohort(tmp_path, subjects=("S01",)))
    [study] = studies
    assert study.key == "S01_right"
    assert [v.label for v in study.visits] == ["baseline", "3mo", "1y"]
    assert [v.days for v in study.visits] == [0, 91, 365]
    assert study.visits[0].image == str(tmp_path / "S01" / "baseline" / "image.nii.gz")
    assert study.problems == []


@pytest.mark.parametrize("text, message", [
    ("subject,side,days,image\nS1,right,0,a.nii\n", "lacks column(s) timepoint"),
    ("subject,side,timepoint,days,image\nS1,right,t0,0,a.nii\nS1,right,t0,5,b.nii\n", "duplicate timepoint 't0'"),
    ("subject,side,timepoint,days,image\nS1,up,t0,0,a.nii\n", "side 'up' is not left or right"),
    ("subject,side,timepoint,days,image\nS1,left,t0,soon,a.nii\n", "days 'soon' is not a number"),
    ("subject,side,timepoint,days,image\n../x,left,t0,0,a.nii\n", "cannot name a file"),
])
def test_bad_manifest_is_one_clear_line(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        read_manifest(tmp_path / "m.csv")
    assert "\n" not in str(info.value)


def test_missing_files_are_listed_per_study(tmp_path):
    manifest = make_cohort(tmp_path, subjects=("S01", "S02"), missing="S02")
    s1, s2 = read_manifest(manifest)
    assert s1.problems == []
    assert s2.problems == [f"1y head_mask '{tmp_path / 'S02' / '1y' / 'head.nii.gz'}'"]


def test_folder_layout(tmp_path):
    for label in RADII:
        make_scan(tmp_path / "S01" / label, RADII[label], 0)
        (tmp_path / "S01" / label / "days").write_text(f"{DAYS[label]}\n")
    (tmp_path / "S01" / "side").write_text("left")
    make_scan(tmp_path / "S02" / "right" / "d0", 6, 1)
    make_scan(tmp_path / "S02" / "right" / "d100", 4, 1)
    s1, s2 = read_folder(tmp_path)
    assert (s1.key, [v.label for v in s1.visits]) == ("S01_left", ["baseline", "3mo", "1y"])
    assert s1.visits[1].lesion.endswith("3mo/lesion.nii.gz")
    assert (s2.key, [v.days for v in s2.visits]) == ("S02_right", [0.0, 100.0])


# ----------------------------------------------------------------------------- the batch

def test_folder_cohort_through_the_cli(tmp_path, cluster, capsys):
    for subject in ("S01", "S02"):
        for label in ("d0", "d91"):
            _, _, head = make_scan(tmp_path / "in" / subject / label, RADII["baseline" if label == "d0" else "3mo"], 0)
    _write(_ball(11.0, centre=(SIZE / 2, SIZE / 2, 10)), Path(head))    # S02 d91: a head cut by the field's edge
    out = tmp_path / "out"
    code = main(["batch", str(tmp_path / "in"), "--out", str(out), "--scheduler", cluster, "--side", "left",
                 "--no-register", "--quiet"])
    printed = capsys.readouterr()
    assert code == 0, printed
    assert "1 of the 4 visits have something to check" in printed.out
    assert '<span class="tag">1</span> hip(s) with visits to check' in (out / "index.html").read_text(encoding="utf-8")
    table = pd.read_csv(out / "cohort_volumes.csv")
    assert list(zip(table["subject"], table["side"], table["timepoint"], table["days"])) == [
        ("S01", "left", "d0", 0), ("S01", "left", "d91", 91), ("S02", "left", "d0", 0), ("S02", "left", "d91", 91)]
    assert table["residual_pct_baseline"].iloc[1] == pytest.approx(100 * _ball(5.0).sum() / _ball(6.0).sum(), rel=1e-4)


def test_end_to_end_cli_on_embedded_cluster(tmp_path, capsys):
    """`lesionvol batch` with its own 2-worker LocalCluster: tables equal the studies' volumes.csv."""
    manifest = make_cohort(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["batch", str(manifest), "--out", str(out), "--workers", "2", "--no-register", "--quiet"])
    assert code == 0
    assert "done 4, skipped (already current) 0, failed 0" in capsys.readouterr().out

    table = pd.read_csv(out / "cohort_volumes.csv", dtype={"timepoint": str})
    parquet = pd.read_parquet(out / "cohort_volumes.parquet")
    assert len(table) == len(parquet) == 12
    assert list(table.columns[:4]) == ["subject", "side", "timepoint", "days"]
    for subject in ("S01", "S02", "S03", "S04"):
        study = pd.read_csv(out / f"{subject}_right" / "volumes.csv", dtype={"timepoint": str})
        for frame in (table, parquet):
            rows = frame[frame["subject"] == subject].drop(columns=["subject", "side"]).reset_index(drop=True)
            pd.testing.assert_frame_equal(rows[study.columns], study, check_dtype=False, rtol=1e-5)
        assert list(study["timepoint"]) == ["baseline", "3mo", "1y"]
        assert list(study["days"]) == [0, 91, 365]
    # the numbers: voxel-counted balls, LF and RF from them
    s1 = table[table["subject"] == "S01"]
    head_ml, lesion_ml = _ball(11.0).sum() / 1000, _ball(6.0).sum() / 1000
    assert s1["head_volume_ml"].iloc[0] == pytest.approx(head_ml, rel=1e-5)
    assert s1["lesion_volume_ml"].iloc[0] == pytest.approx(lesion_ml, rel=1e-5)
    assert s1["lesion_pct_head"].iloc[0] == pytest.approx(100 * lesion_ml / head_ml, rel=1e-4)
    assert s1["residual_pct_baseline"].iloc[2] == pytest.approx(100 * _ball(3.0).sum() / _ball(6.0).sum(), rel=1e-4)
    # same grid, no registration: change maps are still computed
    assert s1["regenerated_ml"].iloc[2] == pytest.approx((_ball(6.0) & ~_ball(3.0)).sum() / 1000, rel=1e-5)

    assert (out / "errors.csv").read_text(encoding="utf-8") == "subject,side,error\n"
    summary = json.loads((out / "batch_summary.json").read_text(encoding="utf-8"))
    assert (summary["n_studies"], summary["n_done"], summary["n_failed"]) == (4, 4, 0)
    assert summary["n_rows_to_check"] == 0     # drawn masks inside the field: nothing to check
    assert summary["lesionvol_version"] and summary["studies_per_minute"] > 0
    assert len(summary["peak_rss_mb_per_worker"]) == 2  # both workers did work
    for name in ("lf_trajectories.png", "rf_by_followup.png"):
        import matplotlib.image

        picture = matplotlib.image.imread(out / name)
        assert picture.shape[0] > 300 and picture.shape[1] > 500
        assert picture[..., :3].std() > 0.05  # not blank
        colours = {tuple(c) for c in (picture[::7, ::7, :3] * 20).astype(int).reshape(-1, 3)}
        assert len(colours) > 10  # lines in several colours, not a white page
    _no_partials(out)


def test_itk_threads_are_pinned_in_workers(tmp_path, cluster):
    from distributed import Client

    run_batch(make_cohort(tmp_path / "in", subjects=("S01",)), tmp_path / "out", scheduler=cluster,
              options=NO_REGISTER, show_progress=False)
    with Client(cluster) as client:
        threads = client.run(lambda: __import__("SimpleITK").ProcessObject.GetGlobalDefaultNumberOfThreads())
    assert set(threads.values()) == {1}


def test_resume_skips_finished_studies_and_redoes_changed_inputs(tmp_path, cluster):
    manifest = make_cohort(tmp_path / "in", subjects=("S01", "S02", "S03"))
    out = tmp_path / "out"
    first = run_batch(manifest, out, scheduler=cluster, options=NO_REGISTER, show_progress=False)
    assert (first.n_done, first.n_skipped, first.n_failed) == (3, 0, 0)
    before = _mtimes(out)
    cohort_before = (out / "cohort_volumes.csv").read_text(encoding="utf-8")

    second = run_batch(manifest, out, scheduler=cluster, options=NO_REGISTER, show_progress=False)
    assert (second.n_done, second.n_skipped) == (0, 3)
    assert _mtimes(out) == before  # nothing rewritten
    assert (out / "cohort_volumes.csv").read_text(encoding="utf-8") == cohort_before  # the cohort still lists every study

    make_scan(tmp_path / "in" / "S02" / "1y", 4.0, seed=99)  # new scan data for one study
    third = run_batch(manifest, out, scheduler=cluster, options=NO_REGISTER, show_progress=False)
    assert (third.n_done, third.n_skipped) == (1, 2)
    after = _mtimes(out)
    assert after["S02_right"] != before["S02_right"]
    assert {k: v for k, v in after.items() if k != "S02_right"} == {k: v for k, v in before.items() if k != "S02_right"}

    other = AnalysisOptions(register=False, threshold_pct=15)
    fourth = run_batch(manifest, out, other, scheduler=cluster, show_progress=False)
    assert fourth.n_done == 3  # other options -> other results
    fifth = run_batch(manifest, out, other, scheduler=cluster, show_progress=False, overwrite=True)
    assert (fifth.n_done, fifth.n_skipped) == (3, 0)
    assert all(_mtimes(out)[k] != after[k] for k in after)
    _no_partials(out)


def test_bad_studies_are_reported_and_the_rest_finish(tmp_path, cluster, capsys):
    manifest = make_cohort(tmp_path / "in", subjects=("S01", "S02", "S03", "S04"), corrupt="S02", missing="S04")
    out = tmp_path / "out"
    code = main(["batch", str(manifest), "--out", str(out), "--scheduler", cluster, "--no-register", "--quiet"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "done 2, skipped (already current) 0, failed 2" in printed

    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["subject"]) == ["S02", "S04"]
    assert list(errors["side"]) == ["right", "right"]
    assert "image.nii.gz" in errors["error"][0] and "S02/3mo" in errors["error"][0]
    assert errors["error"][1].startswith("missing file(s): 1y head_mask")
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["S01_right", "S03_right"]
    table = pd.read_csv(out / "cohort_volumes.csv")
    assert sorted(set(table["subject"])) == ["S01", "S03"] and len(table) == 6
    summary = json.loads((out / "batch_summary.json").read_text(encoding="utf-8"))
    assert summary["n_failed"] == 2 and {s["status"] for s in summary["studies"]} == {"done", "failed"}
    _no_partials(out)


def test_bad_manifest_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "m.csv").write_text("subject,side,image\nS1,right,a.nii\n")
    assert main(["batch", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "lacks column(s) timepoint, days" in err


SLOW_WRITES = textwrap.dedent("""
    # imported by every Python process of the test run (driver and Dask workers):
    # slow each QC picture down so an interrupt lands while study folders are being written
    import time
    import lesionvol.report as report

    _qc = report.qc_picture

    def qc_picture(*args, **kwargs):
        time.sleep(0.3)
        return _qc(*args, **kwargs)

    report.qc_picture = qc_picture
""")


def _as_from_a_shell() -> None:
    """Start the run as a shell would: Ctrl-C neither blocked nor ignored (a child inherits both from its
    parent).  In the full suite the run sometimes never saw the SIGINT and ended with exit 0 (CI, three times in
    one day, never when this file ran alone); a signal the test process holds back is one way that happens."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_interrupted_run_leaves_no_half_written_files(tmp_path, cluster, how):
    """Interrupt `lesionvol batch` while study folders are being written, then resume. Six studies: with four,
    the two studies in flight at the interrupt were sometimes the last two (a study takes about 3 s in a
    worker), and all four ended written."""
    n = 6
    manifest = make_cohort(tmp_path / "in", subjects=[f"S{i:02d}" for i in range(n)])
    out = tmp_path / "out"
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(SLOW_WRITES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "patch"), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "lesionvol.cli", "batch", str(manifest), "--out", str(out), "--workers", "2",
         "--no-register", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        preexec_fn=_as_from_a_shell)
    deadline = time.monotonic() + 60
    # wait for a moment when one study is complete and another is half-written, with two or more still to end (so
    # the run cannot end before the interrupt lands: it once finished its last study first and exited 0)
    while not (0 < len(list(out.glob("S*_right/summary.json"))) <= n - 2
               and list(out.glob(".S*_right.partial-*/qc/*.png"))):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.02)
    # Ctrl-C in a terminal reaches the whole process group; kill -9 (or the OOM killer) hits everything at once
    os.killpg(process.pid, signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    if how == "ctrl-c":
        assert process.returncode == 130, err.decode()
        assert err.decode().strip().splitlines()[-1] == "lesionvol: interrupted; no partial results were left"
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".lesionvol"]  # the marker only
    else:
        time.sleep(1.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    done = sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert 1 <= len(done) < n, done  # interrupted part way through
    for name in done:  # every study folder present is complete
        assert {"volumes.csv", "summary.json"} <= {p.name for p in (out / name).iterdir()}
        assert len(list((out / name / "qc").iterdir())) == 3
    assert not (out / "cohort_volumes.csv").exists()
    # a killed run may leave hidden temporary folders; the next run removes them and resumes
    summary = run_batch(manifest, out, scheduler=cluster, options=NO_REGISTER, show_progress=False)
    assert (summary.n_skipped, summary.n_done, summary.n_failed) == (len(done), n - len(done), 0)
    _no_partials(out)


def test_a_readers_correction_is_used_by_the_next_batch_run(tmp_path, cluster):
    """Review loop: correct one lesion in a batch result, rerun batch, the cohort table follows."""
    from lesionvol.corrections import read_corrections, save_correction
    from lesionvol.io import read_mask

    manifest = make_cohort(tmp_path / "in", subjects=("S01", "S02"))
    out = tmp_path / "out"
    first = run_batch(manifest, out, NO_REGISTER, scheduler=cluster, show_progress=False)
    assert first.n_done == 2
    study = out / "S02_right"
    lesion = read_mask(study / "masks" / "3mo_lesion.nii.gz")
    array = sitk.GetArrayFromImage(lesion)
    before_voxels = int(array.sum())
    array[: SIZE // 2] = 0  # the reader erases the lower half of the lesion
    corrected = sitk.GetImageFromArray(array)
    corrected.CopyInformation(lesion)
    entry = save_correction(study, "3mo", "lesion", corrected)
    assert entry["voxels_changed"] == before_voxels - int(array.sum()) > 0
    assert (study / "masks" / "3mo_lesion.nii.gz").is_file()  # the segmenter's mask is kept

    second = run_batch(manifest, out, NO_REGISTER, scheduler=cluster, show_progress=False)
    assert (second.n_done, second.n_skipped) == (1, 1)  # only the corrected study is redone
    table = pd.read_csv(out / "cohort_volumes.csv")
    row = table[(table.subject == "S02") & (table.timepoint == "3mo")].iloc[0]
    assert row["lesion_volume_ml"] == pytest.approx(int(array.sum()) / 1000.0, rel=1e-5)  # 1 mm voxels
    assert row["mask_source"] == "corrected by a reader: lesion"
    other = table[(table.subject == "S02") & (table.timepoint == "baseline")].iloc[0]
    assert other["mask_source"] == "user"
    assert set(read_corrections(study)) == {"3mo"}  # the corrections survived the rewrite

    third = run_batch(manifest, out, NO_REGISTER, scheduler=cluster, show_progress=False)
    assert (third.n_done, third.n_skipped) == (0, 2)


def test_local_workers_keep_glibcs_own_memory_thresholds():
    """Dask's default MALLOC_TRIM_THRESHOLD_ for new workers fixes glibc's mmap threshold: every numpy
    temporary over 128 kB is then mapped anew, and a study took 10.7 s in a worker against 4.6 s in one
    process. The local workers lesionvol starts must not carry it; the thread pins stay."""
    from lesionvol.batch import _dask_client

    with _dask_client(workers=1, scheduler=None, itk_threads=1, dashboard=None) as client:
        environ = client.run(lambda: {k: __import__("os").environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")})
    assert list(environ.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}]
