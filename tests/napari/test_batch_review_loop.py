"""The review loop over a batch output, through the widget's own buttons: `lesionvol batch` on a
manifest made from the bundled sample, 'Open result folder…', a lesion corrected, 'Save
corrections to result folder', `lesionvol batch` again, and the cohort table follows. Then
'Export table and corrected masks…' into a folder holding other files refuses, and into a folder
lesionvol wrote asks before replacing. (The file dialogs are answered by the test.)"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _napari_testing import process_events_for, wait_for_worker

from lesionvol.sample import SAMPLE_VISITS, sample_mask_paths, sample_series_paths, sample_truth


def _lesionvol(*args: str) -> None:
    exe = Path(sys.executable).parent / "lesionvol"
    command = [str(exe)] if exe.exists() else [sys.executable, "-c", "from lesionvol.cli import main; main()"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, encoding="utf-8", errors="replace",
                          timeout=300)
    assert done.returncode == 0, done.stderr


def _batch_of_the_sample(root: Path) -> tuple[Path, Path, Path]:
    """A one-study manifest of the sample with its reference masks, and `lesionvol batch` on it."""
    scans = root / "in" / "S01"
    scans.mkdir(parents=True)
    lines = ["subject,side,timepoint,days,image,lesion_mask,head_mask"]
    for visit, day, image, lesion, head in zip(SAMPLE_VISITS, sample_truth()["days"], sample_series_paths(),
                                               sample_mask_paths("lesion"), sample_mask_paths("head")):
        for path in (image, lesion, head):
            shutil.copy(path, scans / path.name)
        lines.append(f"S01,right,{visit},{day:g},S01/{image.name},S01/{lesion.name},S01/{head.name}")
    manifest = root / "in" / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = root / "out"
    _lesionvol("batch", str(manifest), "--out", str(out), "--workers", "1", "--no-register", "--quiet")
    return manifest, out, scans


def _cohort(out: Path) -> dict[str, dict]:
    with (out / "cohort_volumes.csv").open(newline="", encoding="utf-8") as handle:
        return {row["timepoint"]: row for row in csv.DictReader(handle) if row["subject"] == "S01"}


def _answer_folder_dialogs(monkeypatch, *answers):
    """QFileDialog.getExistingDirectory returns these folders, one per call."""
    from qtpy.QtWidgets import QFileDialog

    queue = [str(a) for a in answers]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *args, **kwargs: queue.pop(0)))
    return queue


def test_batch_study_corrected_in_the_widget_is_used_by_the_next_batch_run(make_viewer, tmp_path, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    from napari_lesionvol._widget import ReviewWidget

    manifest, out, scans = _batch_of_the_sample(tmp_path)
    study = out / "S01_right"
    first = _cohort(out)
    assert first["month03"]["mask_source"] == "user"

    viewer = make_viewer()
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    _answer_folder_dialogs(monkeypatch, study, scans)
    widget.open_study_button.click()
    assert widget.opened_study is not None, widget.last_error
    assert [image for image, _ in widget.series.chosen()] == list(SAMPLE_VISITS)
    assert widget.table.rowCount() == 3 and widget.save_corrections_button.isEnabled()

    # the reader erases the upper half of the 3-month lesion (its own grid) and saves
    layer = viewer.layers["month03_lesion"]
    data = np.array(layer.data, copy=True)
    zs = np.nonzero(data.any(axis=(1, 2)))[0]
    erased = int(np.count_nonzero(data[zs[len(zs) // 2]:]))
    data[zs[len(zs) // 2]:] = 0
    layer.data = data
    widget.save_corrections_button.click()
    record = json.loads((study / "corrections" / "corrections.json").read_text(encoding="utf-8"))
    entry = record["month03"]["lesion"]
    assert entry["voxels_changed"] == erased > 0
    assert entry["volume_before_ml"] == pytest.approx(float(first["month03"]["lesion_volume_ml"]), abs=1e-6)
    assert "month03 lesion" in widget.status.text()

    # batch again over the same output: the corrected study is measured with the correction
    _lesionvol("batch", str(manifest), "--out", str(out), "--workers", "1", "--no-register", "--quiet")
    second = _cohort(out)
    assert float(second["month03"]["lesion_volume_ml"]) == pytest.approx(entry["volume_ml"], abs=1e-6)
    assert float(second["month03"]["lesion_volume_ml"]) < float(first["month03"]["lesion_volume_ml"])
    assert second["month03"]["mask_source"] == "corrected by a reader: lesion"
    assert [second[v]["mask_source"] for v in ("baseline", "month12")] == ["user", "user"]
    assert second["baseline"]["lesion_volume_ml"] == first["baseline"]["lesion_volume_ml"]
    # RF of the 3-month visit follows the corrected lesion
    assert float(second["month03"]["residual_pct_baseline"]) == pytest.approx(
        100 * entry["volume_ml"] / float(second["baseline"]["lesion_volume_ml"]), abs=1e-3)

    # Run in the widget, then Export: a folder holding other files is refused, its files kept
    widget.register_box.setChecked(False)
    widget.run_button.click()
    wait_for_worker(widget)
    assert widget.export_button.isEnabled()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("reader's notes", encoding="utf-8")
    (other / "IM0001.dcm").write_bytes(b"\0" * 256)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: asked.append(a) or
                                                              QMessageBox.StandardButton.Yes))
    _answer_folder_dialogs(monkeypatch, other)
    widget.export_button.click()
    assert "Not exported" in widget.status.text() and "holds no lesionvol results" in widget.status.text()
    assert sorted(p.name for p in other.iterdir()) == ["IM0001.dcm", "notes.txt"] and asked == []
    assert (other / "notes.txt").read_text(encoding="utf-8") == "reader's notes"
    # an empty folder is written; exporting there again asks, and replaces only after Yes
    target = tmp_path / "export"
    target.mkdir()
    _answer_folder_dialogs(monkeypatch, target, target)
    widget.export_button.click()
    assert (target / "volumes.csv").is_file() and asked == []
    widget.export_button.click()
    assert len(asked) == 1 and widget.status.text().startswith("Exported to")
    with (target / "volumes.csv").open(newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    assert float(exported[1]["lesion_volume_ml"]) == pytest.approx(entry["volume_ml"], abs=1e-5)
    process_events_for(0.1)


CLOSE_MID_RUN = r"""
import sys, time
import napari
from qtpy.QtWidgets import QApplication
from lesionvol.sample import sample_series_paths
from napari_lesionvol._reader import read_layers
from napari_lesionvol._widget import ReviewWidget

viewer = napari.Viewer(show=True)
for path in sample_series_paths():
    for data, attributes, kind in read_layers(str(path)):
        viewer._add_layer_from_data(data, attributes, kind)
widget = ReviewWidget(viewer)
viewer.window.add_dock_widget(widget, name="Lesion review")
widget.run_button.click()
deadline = time.monotonic() + 150  # a loaded 2-core machine can take a minute to start the first job
while not (widget.worker is not None and widget.worker.is_running and "segmenting" in widget.status.text()):
    QApplication.processEvents(); time.sleep(0.01)
    assert time.monotonic() < deadline, widget.status.text()
worker = widget.worker
viewer.window._qt_window.close()  # the window's close button
deadline = time.monotonic() + 30
while worker.is_running and time.monotonic() < deadline:
    QApplication.processEvents(); time.sleep(0.01)
for _ in range(50):
    QApplication.processEvents(); time.sleep(0.01)
print("closed; worker running:", worker.is_running, flush=True)
"""


def test_closing_the_window_mid_run_exits_cleanly(tmp_path):
    """The process that closed its window mid-run exits with 0 (PyQt6 aborts, exit 134, on an
    exception in a slot or a deleted widget touched by the job)."""
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs the virtual display pytest-xvfb starts")
    script = tmp_path / "close_mid_run.py"
    script.write_text(CLOSE_MID_RUN, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=240,
                          env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert "closed; worker running: False" in done.stdout
    assert "Traceback" not in done.stderr and "RuntimeWarning: lesionvol review widget" not in done.stderr, \
        done.stderr[-3000:]


EXIT_MID_JOB = r"""
import sys, threading, time
import numpy as np
import SimpleITK as sitk
from qtpy.QtWidgets import QApplication
from napari_lesionvol._run import RunControls

app = QApplication([])
inside = threading.Event()

def job(cancel):
    yield from ()
    image = sitk.GetImageFromArray(np.random.default_rng(0).random((160, 256, 256), dtype=np.float32))
    for step in range(20):
        inside.set()
        sitk.SmoothingRecursiveGaussian(image, 3.0)  # compiled code, interpreter released
        if cancel.is_set():
            print("job cancelled after step", step, flush=True)
            return
    print("job ran to its end", flush=True)

RunControls().start(job, on_result=lambda result: None, on_error=lambda message: None)
while not inside.is_set():
    app.processEvents(); time.sleep(0.01)
print("script ends", flush=True)
"""


def test_a_script_that_ends_mid_job_cancels_it_and_exits_cleanly(tmp_path):
    """A script (or kernel) that ends while a job runs in compiled code: the job is cancelled at
    its next step and the process exits 0 (without the exit hook Python finalizes under the
    worker thread and the process aborts, exit 134)."""
    script = tmp_path / "exit_mid_job.py"
    script.write_text(EXIT_MID_JOB, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=240,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"})
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert done.stdout.splitlines()[0] == "script ends"
    assert done.stdout.splitlines()[1].startswith("job cancelled after step"), done.stdout
