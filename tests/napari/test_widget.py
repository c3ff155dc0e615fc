"""The review widget on the bundled sample series, as a reader would use it."""

from __future__ import annotations

import csv
import dataclasses
import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from _napari_testing import open_sample, process_events_for, true_sample_transforms, wait_for_worker, wait_until

from lesionvol.change import change_maps
from lesionvol.geometry import voxel_volume_mm3
from lesionvol.io import read_mask, read_scan
from lesionvol.location import describe_location
from lesionvol.measure import measure_volumes, residual_pct_baseline, steinberg_extent, threshold_flag
from lesionvol.sample import SAMPLE_VISITS, sample_mask_paths, sample_series_paths


def _review_sample(viewer):
    """The sample series with its reference masks, analysed by the widget with the true
    transforms (registration has its own tests; here it would only cost time).

    Returns the widget and how often a 20 ms GUI timer ticked while the worker ran.
    """
    from qtpy.QtCore import QTimer

    from napari_lesionvol._widget import ReviewWidget

    open_sample(viewer)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    process_events_for(0.3)  # a drawn viewer, as the user has it
    ticks, yields = [], []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    started = time.monotonic()
    worker = widget.run(transforms=true_sample_transforms())
    returned_after_s = time.monotonic() - started
    done_at_return = widget.session is not None
    worker.yielded.connect(lambda progress: yields.append(time.monotonic()))
    wait_for_worker(widget)
    timer.stop()
    # gaps in the GUI event loop while the worker computed (adding the result's layers to
    # the viewer afterwards is napari's own work on the GUI thread, about 0.3 s a layer)
    computing = [t for t in ticks if t <= yields[-1]]
    gui = {"returned_after_s": returned_after_s, "done_at_return": done_at_return, "ticks": len(computing),
           "computing_s": yields[-1] - started,
           "longest_gap_s": float(np.max(np.diff([started, *computing, yields[-1]])))}
    return widget, gui


@pytest.fixture(scope="module")
def reviewed():
    """One analysed sample for the tests that only look (module scope: a viewer costs seconds)."""
    import napari

    viewer = napari.Viewer(show=False)
    widget, gui = _review_sample(viewer)
    yield viewer, widget, gui
    viewer.close()


@pytest.fixture
def reviewed_for_editing(make_viewer):
    viewer = make_viewer()
    widget, _ = _review_sample(viewer)
    return viewer, widget


def _expected_rows(transforms):
    scans = [read_scan(p) for p in sample_series_paths()]
    lesions = [read_mask(p, s.image) for p, s in zip(sample_mask_paths("lesion"), scans)]
    heads = [read_mask(p, s.image) for p, s in zip(sample_mask_paths("head"), scans)]
    volumes = [measure_volumes(lesion, head) for lesion, head in zip(lesions, heads)]
    changes = [None] + [change_maps(lesions[0], lesion, t) for lesion, t in zip(lesions[1:], transforms)]
    return volumes, changes


def test_widget_picks_the_series_and_masks_by_name(reviewed):
    viewer, widget, _ = reviewed
    assert [r.image.currentText() for r in widget.rows] == list(SAMPLE_VISITS)
    assert [r.lesion.currentText() for r in widget.rows] == [f"{v}_lesion" for v in SAMPLE_VISITS]
    assert [r.head.currentText() for r in widget.rows] == [f"{v}_head" for v in SAMPLE_VISITS]
    # derived layers are not offered as inputs
    choices = [widget.rows[0].image.itemText(i) for i in range(widget.rows[0].image.count())]
    assert "month03 in baseline space" in viewer.layers and "month03 in baseline space" not in choices


def test_analysis_runs_off_the_gui_thread(reviewed):
    _, widget, gui = reviewed
    assert gui["returned_after_s"] < 0.5 and not gui["done_at_return"]  # run() does not block
    assert gui["longest_gap_s"] < 0.5, gui  # the event loop kept turning while the worker computed
    assert widget.progress.value() == widget.progress.maximum() > 0


def test_table_on_the_sample_equals_the_core_measurements(reviewed, sample_transforms, sample_truth_json):
    viewer, widget, _ = reviewed
    volumes, changes = _expected_rows(sample_transforms)
    rows = widget.table_rows()
    assert [r["timepoint"] for r in rows] == list(SAMPLE_VISITS)
    for row, v, change in zip(rows, volumes, changes):
        assert row["head_volume_ml"] == pytest.approx(v.head_volume_ml, rel=1e-12)
        assert row["lesion_volume_ml"] == pytest.approx(v.lesion_volume_ml, rel=1e-12)
        assert row["lesion_pct_head"] == pytest.approx(v.lesion_pct_head, rel=1e-12)
        assert row["residual_pct_baseline"] == pytest.approx(
            residual_pct_baseline(v.lesion_volume_ml, volumes[0].lesion_volume_ml), rel=1e-12)
        assert row["threshold_flag"] == threshold_flag(v.lesion_pct_head)
        assert row["steinberg_extent"] == steinberg_extent(v.lesion_pct_head)
        assert row["mask_source"] == "user"
        if change is None:
            assert row["regenerated_ml"] is None
        else:
            assert row["regenerated_ml"] == pytest.approx(change.regenerated_ml, rel=1e-12)
            assert row["new_lesion_ml"] == pytest.approx(change.new_lesion_ml, rel=1e-12)
    # the sample's story: 18 % -> 11 % -> 4 % of the head, flags and stages follow
    assert [r["threshold_flag"] for r in rows] == ["at_or_above", "at_or_above", "below"]
    assert [r["steinberg_extent"] for r in rows] == ["B", "A", "A"]
    truth = sample_truth_json
    for row, lf in zip(rows, truth["lesion_pct_head"]):
        assert row["lesion_pct_head"] == pytest.approx(lf, abs=1.0)
    for row, regenerated in zip(rows[1:], truth["regenerated_ml"][1:]):
        assert row["regenerated_ml"] == pytest.approx(regenerated, rel=0.1)
    # what the reader sees in the table
    table = widget.table
    assert table.rowCount() == 3
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert table.item(0, headers.index("lesion mL")).text() == f"{volumes[0].lesion_volume_ml:.3f}"
    assert table.item(2, headers.index("flag")).text() == "below"


def test_derived_layers_carry_the_baseline_geometry(reviewed):
    viewer, widget, _ = reviewed
    base = viewer.layers["baseline"]
    for name in ("month03 in baseline space", "month03 change", "month12 in baseline space", "month12 change"):
        layer = viewer.layers[name]
        assert layer.data.shape == base.data.shape, name
        np.testing.assert_allclose(layer.scale, base.scale)
        np.testing.assert_allclose(layer.translate, base.translate)
        np.testing.assert_allclose(layer.rotate, base.rotate)
    change = viewer.layers["month12 change"].data
    regenerated_ml = np.count_nonzero(change == 2) * np.prod(base.scale) / 1000
    assert regenerated_ml == pytest.approx(widget.table_rows()[2]["regenerated_ml"], rel=1e-12)


def test_painting_changes_the_lesion_volume_by_the_painted_amount(reviewed_for_editing, tmp_path):
    viewer, widget = reviewed_for_editing
    lesion_layer = viewer.layers["baseline_lesion"]
    head = viewer.layers["baseline_head"].data
    voxel_ml = voxel_volume_mm3(read_scan(sample_series_paths()[0]).image) / 1000.0
    before = widget.table_rows()
    # paint N voxels of head that are not lesion yet, as the brush would (undoable, paint event)
    candidates = np.argwhere((head == 1) & (lesion_layer.data == 0))
    n_painted = 123
    chosen = candidates[np.linspace(0, len(candidates) - 1, n_painted).astype(int)]
    lesion_layer.data_setitem(tuple(chosen.T), 1)
    wait_until(lambda: widget.table_rows()[0]["lesion_volume_ml"] != before[0]["lesion_volume_ml"], 30,
               "the table to follow the paint event")
    after = widget.table_rows()
    assert after[0]["lesion_volume_ml"] - before[0]["lesion_volume_ml"] == pytest.approx(n_painted * voxel_ml, rel=1e-9)
    assert after[0]["head_volume_ml"] == before[0]["head_volume_ml"]
    assert after[0]["mask_source"] == "user+edited"
    # the location columns follow the corrected mask too (the core's describe_location on it)
    base_tp = widget.session.timepoints[0]
    located = describe_location(base_tp.lesion, base_tp.head, side=before[0]["location_side"])
    assert after[0]["lesion_centroid_distance_mm"] == pytest.approx(located["lesion_centroid_distance_mm"], rel=1e-12)
    assert after[0]["lesion_centroid_distance_mm"] != before[0]["lesion_centroid_distance_mm"]
    assert after[1]["lesion_volume_ml"] == before[1]["lesion_volume_ml"]
    assert after[1]["residual_pct_baseline"] < before[1]["residual_pct_baseline"]  # bigger baseline lesion
    # erase M voxels of the 3-month lesion: its volume drops by M voxels of its own grid
    follow = viewer.layers["month03_lesion"]
    follow.visible = True  # a reader edits the layer they look at (hidden layers are not refreshed)
    lesion_voxels = np.argwhere(follow.data == 1)[:50]
    follow.data_setitem(tuple(lesion_voxels.T), 0)
    assert widget.apply_edits()
    voxel03 = voxel_volume_mm3(read_scan(sample_series_paths()[1]).image) / 1000.0
    assert widget.table_rows()[1]["lesion_volume_ml"] == pytest.approx(before[1]["lesion_volume_ml"] - 50 * voxel03, rel=1e-9)
    # undo restores the 3-month numbers
    follow.undo()
    wait_until(lambda: widget.table_rows()[1]["lesion_volume_ml"] == pytest.approx(before[1]["lesion_volume_ml"]), 30,
               "the table to follow undo")

    out = widget.export(tmp_path / "review")
    with open(out / "volumes.csv", newline="", encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert float(csv_rows[0]["lesion_volume_ml"]) == pytest.approx(after[0]["lesion_volume_ml"], rel=1e-5)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    edits = summary["review"]["mask_edits"]
    assert edits["baseline"]["lesion"]["edited_by_hand"] is True
    assert edits["baseline"]["lesion"]["voxels_changed"] == n_painted
    assert edits["month03"]["lesion"]["edited_by_hand"] is False  # undone
    assert edits["baseline"]["head"]["edited_by_hand"] is False
    assert "baseline_lesion.nii.gz" in edits["baseline"]["lesion"]["from"]
    saved = read_mask(out / "masks" / "baseline_lesion.nii.gz", read_scan(sample_series_paths()[0]).image)
    original = read_mask(sample_mask_paths("lesion")[0])
    assert int(sitk.GetArrayViewFromImage(saved).sum()) == int(sitk.GetArrayViewFromImage(original).sum()) + n_painted
    assert (out / "transforms" / "month03.tfm").exists()


def test_bad_input_is_reported_in_the_widget_not_raised(reviewed_for_editing, monkeypatch):
    viewer, widget = reviewed_for_editing
    assert widget.table.rowCount() == 3 and widget.export_button.isEnabled()
    widget.days.setText("0, 91")  # three visits
    try:
        assert widget.run() is None
        assert "3 visits" in widget.last_error and widget.run_button.isEnabled()
    finally:
        widget.days.setText("")
    # a failure leaves no numbers on show that the current inputs did not produce
    assert widget.session is None and widget.table.rowCount() == 0 and not widget.export_button.isEnabled()
    assert widget.run(transforms=true_sample_transforms()[:1]) is None
    assert "1 transforms for 2 follow-ups" in widget.last_error
    # an error inside the worker (here: the core refusing an input) ends up in the status line too
    from lesionvol.errors import InputError
    from napari_lesionvol import _review

    def refuse(*args, **kwargs):
        raise InputError("the lesion mask of baseline is not on its image's grid")

    monkeypatch.setattr(_review, "analyze_scans", refuse)
    widget.last_error = None
    worker = widget.run(transforms=true_sample_transforms())
    wait_until(lambda: widget.last_error is not None and not worker.is_running, 60, "the worker's error")
    assert "not on its image's grid" in widget.last_error and "not on its image's grid" in widget.status.text()
    assert widget.session is None and widget.run_button.isEnabled() and not widget.export_button.isEnabled()


def test_every_analysis_option_is_in_the_panel_and_reaches_the_core(reviewed_for_editing, monkeypatch):
    from qtpy.QtWidgets import QComboBox

    from lesionvol.errors import InputError
    from lesionvol.inputs import AnalysisOptions
    from napari_lesionvol import _review

    viewer, widget = reviewed_for_editing
    panel = widget.options_panel
    assert set(panel.controls) == {f.name for f in dataclasses.fields(AnalysisOptions)}
    for name, control in panel.controls.items():
        assert control.toolTip() == AnalysisOptions.option_help(name)
        if AnalysisOptions.option_choices(name):
            assert isinstance(control, QComboBox)
            assert [control.itemText(i) for i in range(control.count())] == list(AnalysisOptions.option_choices(name))
    assert panel.options() == AnalysisOptions()  # the panel starts at the core's defaults
    # the core's validation, shown in the status line (no exception into Qt)
    for name, setter, bad, good in (("threshold_pct", "setValue", 0.0, 10.0),
                                    ("segmenter", "setText", "onnx:", "classical"),
                                    ("acetabular_edge_mm", "setText", "1, 2", "")):
        getattr(panel.controls[name], setter)(bad)
        assert widget.run() is None and name in widget.last_error and name in widget.status.text()
        getattr(panel.controls[name], setter)(good)
    assert panel.options() == AnalysisOptions()

    panel.controls["head_definition"].setCurrentText("sphere")
    panel.controls["acetabular_edge_mm"].setText("-60.5, 10, 35")
    widget.run(transforms=true_sample_transforms())
    wait_for_worker(widget)
    options = widget.session.result.options
    assert options.head_definition == "sphere" and options.acetabular_edge_mm == (-60.5, 10.0, 35.0)
    assert widget.table.rowCount() == 3 and widget.export_button.isEnabled()

    # another choice of layers: the table and Export go until a run succeeds
    widget.rows[1].lesion.setCurrentText("(segment)")
    assert widget.session is None and widget.table.rowCount() == 0 and not widget.export_button.isEnabled()
    # the seed goes to the visits that get segmented, and only to them
    seen = {}

    def record(visits, options, progress=None):
        seen.update(visits=list(visits), options=options)
        raise InputError("recorded")

    monkeypatch.setattr(_review, "analyze_scans", record)
    panel.seed.setText("1.5, -2, 30")
    worker = widget.run(transforms=true_sample_transforms())
    wait_until(lambda: widget.last_error is not None and not worker.is_running, 60, "the worker")
    assert [v.seed_mm for v in seen["visits"]] == [None, (1.5, -2.0, 30.0), None]
    assert seen["visits"][1].lesion is None and seen["visits"][1].head is not None
    assert seen["options"].head_definition == "sphere"
    panel.seed.setText("1, 2")
    assert widget.run() is None and "seed" in widget.last_error


def test_unregistered_followup_on_another_grid_gets_no_change_maps(reviewed_for_editing):
    """Registration off: month03 (baseline grid) is compared voxel for voxel, month12 (another,
    oblique grid) is not compared at all - the core does not assume the hip did not move."""
    viewer, widget = reviewed_for_editing
    assert "month12 change" in viewer.layers  # from the registered run
    widget.register_box.setChecked(False)
    widget.run()
    wait_for_worker(widget)
    rows = widget.table_rows()
    scans = [read_scan(p) for p in sample_series_paths()]
    lesions = [read_mask(p, s.image) for p, s in zip(sample_mask_paths("lesion"), scans)]
    same_grid_change = change_maps(lesions[0], lesions[1])
    assert rows[1]["regenerated_ml"] == pytest.approx(same_grid_change.regenerated_ml, rel=1e-12)
    assert rows[1]["new_lesion_ml"] == pytest.approx(same_grid_change.new_lesion_ml, rel=1e-12)
    assert rows[1]["change_method"].startswith("same grid, not registered")
    assert rows[2]["regenerated_ml"] is None and rows[2]["new_lesion_ml"] is None and rows[2]["change_method"].startswith("not compared")
    assert rows[2]["lesion_volume_ml"] == pytest.approx(measure_volumes(lesions[2], lesions[2]).lesion_volume_ml)
    assert "month03 change" in viewer.layers and "month03 in baseline space" in viewer.layers
    assert "month12 change" not in viewer.layers and "month12 in baseline space" not in viewer.layers  # no stale overlay
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert widget.table.item(2, headers.index("regen. mL")).text() == ""
    assert "month12" in widget.status.text() and "not on the baseline's grid" in widget.status.text()
    assert widget.session.registration[1] == "not compared: not registered and not on the baseline's grid"
    # painting the baseline lesion updates month03's change map, month12 stays without one
    lesion_layer, head = viewer.layers["baseline_lesion"], viewer.layers["baseline_head"].data
    spots = np.argwhere((head == 1) & (lesion_layer.data == 0))[:40]
    lesion_layer.data_setitem(tuple(spots.T), 1)
    assert widget.apply_edits()
    after = widget.table_rows()
    painted = widget.session.timepoints[0].lesion
    assert int(sitk.GetArrayViewFromImage(painted).sum()) == int(sitk.GetArrayViewFromImage(lesions[0]).sum()) + 40
    assert after[1]["regenerated_ml"] == pytest.approx(change_maps(painted, lesions[1]).regenerated_ml, rel=1e-12)
    assert after[1]["regenerated_ml"] > rows[1]["regenerated_ml"]
    assert after[2]["regenerated_ml"] is None


@pytest.mark.slow
def test_images_only_are_segmented_registered_and_editable(make_viewer):
    """No masks given: the widget segments every visit and registers the follow-ups."""
    from napari_lesionvol._widget import ReviewWidget

    segment = pytest.importorskip("lesionvol.segment")
    register = pytest.importorskip("lesionvol.register")
    if not (hasattr(segment, "segment_hip") and hasattr(register, "register_followup")):
        pytest.skip("segmentation or registration not available yet")
    viewer = make_viewer()
    for path in sample_series_paths():
        viewer.open(str(path), plugin="lesionvol")
    widget = ReviewWidget(viewer)
    assert [r.lesion.currentText() for r in widget.rows] == ["(segment)"] * 3
    assert widget.register_box.isChecked()
    widget.run()
    wait_for_worker(widget, timeout_s=170)
    rows = widget.table_rows()
    assert [r["mask_source"] for r in rows] == ["segmented"] * 3
    assert all(r.startswith("registered to baseline") for r in widget.session.registration)
    for visit, row, tp in zip(SAMPLE_VISITS, rows, widget.session.timepoints):
        image, lesion = viewer.layers[visit], viewer.layers[f"{visit} lesion"]
        np.testing.assert_allclose(lesion.scale, image.scale)  # a derived layer keeps its source's geometry
        np.testing.assert_allclose(lesion.translate, image.translate)
        assert lesion.data.shape == image.data.shape
        assert row["lesion_volume_ml"] == pytest.approx(measure_volumes(tp.lesion, tp.head).lesion_volume_ml)
        assert row["head_volume_ml"] > 30  # a femoral head was found
    assert all(tp.transform is not None for tp in widget.session.timepoints[1:])
    # corrections work on the layers the widget made, too
    layer, head = viewer.layers["baseline lesion"], viewer.layers["baseline head"].data
    spots = np.argwhere((head == 1) & (layer.data == 0))[:10]
    before = rows[0]["lesion_volume_ml"]
    layer.data_setitem(tuple(spots.T), 1)
    assert widget.apply_edits()
    voxel_ml = voxel_volume_mm3(widget.session.timepoints[0].scan.image) / 1000
    assert widget.table_rows()[0]["lesion_volume_ml"] == pytest.approx(before + 10 * voxel_ml)
    assert widget.table_rows()[0]["mask_source"] == "segmented+edited"


def test_a_visit_with_something_to_check_is_marked_in_the_table(make_viewer):
    """What ``analyze`` prints under its table as ``check ...`` lines is on the visit's row in napari too: the
    real head whose dome a lesion hides (tests/data/README.md; it reads about 15 % small) gets a warning sign, a
    tinted row and the check as the tooltip, and the status line after a run names the visit; once the reader
    corrects the head, the row is plain again."""
    from pathlib import Path

    from napari_lesionvol._table import WARNING_SIGN, VolumesTable, visits_to_check

    from lesionvol.inputs import Visit
    from lesionvol.study import analyze_scans, row_checks

    make_viewer()  # the Qt application napari runs in
    image = sitk.ReadImage(str(Path(__file__).parents[1] / "data" / "real_t1_implanted_right_head_dome_intermediate.nii.gz"))
    result = analyze_scans([Visit(image)])
    table = VolumesTable()
    table.show_rows(result.rows())
    check = row_checks(result.rows()[0])
    assert len(check) == 1 and "marrow surface under the dome" in check[0]
    assert table.item(0, 0).text() == f"{WARNING_SIGN} t0"
    assert table.item(0, 3).toolTip() == f"check: {check[0]}"
    assert visits_to_check(result.rows()) == ["t0"]      # the status line after a run names it
    result.update_mask(0, "head", result.timepoints[0].head)   # the reader's head
    table.show_rows(result.rows())
    assert table.item(0, 0).text() == "t0" and table.item(0, 3).toolTip() == ""
    assert visits_to_check(result.rows()) == []
