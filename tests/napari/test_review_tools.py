"""The review widget's tools for real scans, used through its own buttons and combos:
cancel and close mid-run (1), the head from a click (4), a failed visit named with the
tool offered (5). The radiologist's view (2) and a doubtful registration (3) are in
test_screenshot.py, on its shown viewer."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
from _napari_testing import process_events_for, wait_until

from lesionvol.phantom import VisitSpec, lesion_for_fraction, make_visit


def _dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2.0 * int((x & y).sum()) / max(int(x.sum()) + int(y.sum()), 1)


@pytest.fixture
def slot_errors(monkeypatch):
    """Exceptions raised in Qt slots (PyQt6 would abort the process on them)."""
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc))
    return seen


def _dock(viewer):
    from napari_lesionvol._widget import ReviewWidget

    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    return widget


# -- 1. cancel, close the dock, close the viewer ------------------------------------------------
def _open_images_only(viewer):
    from lesionvol.sample import sample_series_paths
    from napari_lesionvol._reader import read_layers

    for path in sample_series_paths():
        for data, attributes, kind in read_layers(str(path)):
            viewer._add_layer_from_data(data, attributes, kind)


def test_cancel_and_closing_mid_run_stop_the_job_cleanly(make_viewer, slot_errors):
    viewer = make_viewer()
    _open_images_only(viewer)  # no masks: every visit is segmented, a run that takes a while
    widget = _dock(viewer)
    layers_before = [layer.name for layer in viewer.layers]
    assert not widget.cancel_button.isEnabled()

    widget.run_button.click()
    wait_until(lambda: "segmenting" in widget.status.text(), 30, "the run to start segmenting")
    assert widget.cancel_button.isEnabled() and not widget.run_button.isEnabled()
    widget.cancel_button.click()
    assert "Cancelled" in widget.status.text()
    wait_until(lambda: widget.run_button.isEnabled(), 10, "Run to come back")
    process_events_for(0.5)
    assert [layer.name for layer in viewer.layers] == layers_before  # no result layers
    assert widget.session is None and widget.table.rowCount() == 0 and not widget.cancel_button.isEnabled()
    assert "Cancelled" in widget.status.text()

    # close the dock with napari's own close button while a run computes
    widget.run_button.click()
    wait_until(lambda: "segmenting" in widget.status.text(), 30, "the second run")
    worker = widget.worker
    from qtpy.QtWidgets import QDockWidget, QPushButton

    dock = next(d for d in viewer.window._qt_window.findChildren(QDockWidget) if d.widget() is widget)
    dock.findChild(QPushButton, "QTitleBarCloseButton").click()
    wait_until(lambda: not worker.is_running, 30, "the worker to stop")
    process_events_for(0.5)
    assert [layer.name for layer in viewer.layers] == layers_before
    assert not slot_errors, slot_errors

    # close the whole viewer mid-run: no exception, nothing added to it afterwards
    widget = _dock(viewer)
    widget.run_button.click()
    wait_until(lambda: "segmenting" in widget.status.text(), 30, "the third run")
    worker = widget.worker
    added = []
    viewer.layers.events.inserted.connect(lambda event: added.append(event.value.name))
    viewer.close()
    wait_until(lambda: not worker.is_running, 30, "the worker to stop")
    process_events_for(0.5)
    assert added == [] and not slot_errors, (added, slot_errors)


# -- 4 and 5. a visit without a head found; the head from a click ------------------------------
@pytest.fixture(scope="module")
def phantom():
    return make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 18.0),)), seed=5)


def test_failed_visit_is_named_and_head_from_click_segments_it(make_viewer, phantom, slot_errors):
    from napari_lesionvol._reader import image_layer_data
    from napari_lesionvol._widget import ReviewWidget

    viewer = make_viewer()
    blank = sitk.Image(phantom.image.GetSize(), sitk.sitkInt16) + 300
    blank.CopyInformation(phantom.image)
    for image, name in ((phantom.image, "hip"), (blank, "blank")):
        data, attributes, kind = image_layer_data(image, name, extra_meta={"source": name})
        viewer._add_layer_from_data(data, attributes, kind)
    widget = ReviewWidget(viewer)
    assert [row.image.currentText() for row in widget.rows] == ["hip", "blank"]
    widget.register_box.setChecked(False)

    # 5. the follow-up has no femoral head: the status names it and offers the seeded tool
    widget.run_button.click()
    wait_until(lambda: widget.last_error is not None and widget.run_button.isEnabled(), 60, "the failure")
    status = widget.status.text()
    assert status.count("blank") >= 2 and "no femoral head" in status
    assert "click in its head with 'Head from click'" in status and "--" not in status
    assert widget.seed_tool.visit.currentText() == "blank" and widget.table.rowCount() == 0

    # 4. click in the head of the baseline: the core's seeded segmentation fills its mask layers
    widget.series.remove_button.click()
    widget.seed_tool.visit.setCurrentText("hip")
    widget.seed_tool.button.click()
    seed = viewer.layers["seed"]
    assert seed.mode == "add" and viewer.layers.selection.active is seed
    far_from_the_head = np.asarray(phantom.image.TransformIndexToPhysicalPoint((120, 120, 5)))[::-1]
    seed.add(far_from_the_head)  # a click that misses: said plainly, nothing else changes
    wait_until(lambda: widget.last_error is not None and widget.run_button.isEnabled(), 60, "the missed click")
    assert "hip: no femoral head near your click" in widget.status.text() and "--" not in widget.status.text()
    assert "hip head" not in viewer.layers
    widget.seed_tool.button.click()
    centre_lps = np.asarray(phantom.truth.head_centre_mm) + (3.0, -2.0, 4.0)  # a reader's click, off centre
    click_world = centre_lps[::-1]
    hip = viewer.layers["hip"]
    assert hip.world_to_data(click_world) is not None
    seed.add(click_world)  # what a click on the canvas in add mode does
    wait_until(lambda: widget.session is not None and widget.run_button.isEnabled(), 60, "segmentation and the table")
    assert not widget.seed_tool.button.isChecked() and seed.mode == "pan_zoom"
    head_layer, lesion_layer = viewer.layers["hip head"], viewer.layers["hip lesion"]
    assert widget.rows[0].head.currentText() == "hip head" and widget.rows[0].lesion.currentText() == "hip lesion"
    tp = widget.session.timepoints[0]
    head_dice = _dice(tp.head, phantom.head_mask)
    print(f"head from click: Dice {head_dice:.4f}")
    assert head_dice >= 0.95
    assert _dice(tp.lesion, phantom.lesion_enclosed_mask) >= 0.85
    from napari_lesionvol._geometry import mask_from_layer

    shown, _ = mask_from_layer(head_layer.data, head_layer.metadata["lesionvol"], head_layer.scale,
                               head_layer.translate, head_layer.rotate, phantom.image)
    assert _dice(shown, tp.head) == 1.0  # the layer holds the mask the table measures
    shown, _ = mask_from_layer(lesion_layer.data, lesion_layer.metadata["lesionvol"], lesion_layer.scale,
                               lesion_layer.translate, lesion_layer.rotate, phantom.image)
    assert _dice(shown, tp.lesion) == 1.0  # and so does the lesion layer
    rows = widget.table_rows()
    assert len(rows) == 1 and rows[0]["mask_source"] == "segmented (click)"
    assert rows[0]["head_volume_ml"] == pytest.approx(phantom.truth.head_volume_ml, rel=0.05)
    assert widget.table.item(0, 2).text() == f"{rows[0]['head_volume_ml']:.2f}"
    seed_mm = head_layer.metadata["lesionvol"]["seed_mm"]
    np.testing.assert_allclose(seed_mm, centre_lps, atol=1e-6)  # world (z, y, x) -> LPS (x, y, z)

    # undo: the layers made for the click go, the row segments again, the numbers go too
    assert widget.seed_tool.undo_button.isEnabled()
    widget.seed_tool.undo_button.click()
    assert "hip head" not in viewer.layers and "hip lesion" not in viewer.layers
    assert widget.rows[0].head.currentText() == "(segment)" and widget.table.rowCount() == 0
    assert not slot_errors, slot_errors


def test_head_from_click_refuses_a_t2_image_unless_allowed(tmp_path):
    """'Head from click' checks the contrast as the run does: on family B's T2 scan with a 15 % lesion
    (which the segmenter alone reads as a normal head, 0 mL) it stops with what the image looks like
    and how to override; with 'allow non t1' ticked it segments the head."""
    from lesionvol.inputs import AnalysisOptions
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan
    from napari_lesionvol._run import JobError
    from napari_lesionvol._seed import SeededMasks, seeded_job

    hip = Hip("right", head_radius_mm=24.0, lesion=Lesion(pct_of_head=15.0, shape_seed=20))
    image, truth = make_hip_scan(HipScanSpec(right=hip, field="right", contrast="T2", anatomy_seed=20), seed=20)
    path = tmp_path / "t2.nii.gz"
    sitk.WriteImage(image, str(path))
    state = {"name": "t2", "meta": {"source": str(path)}}
    seed = tuple(float(v) for v in truth.hips["right"].centre_mm)

    def run(options):
        job = seeded_job(state, "t2", seed, options)
        while True:
            try:
                next(job)
            except StopIteration as done:
                return done.value

    with pytest.raises(JobError, match="does not look T1-weighted: T2.*allow non t1"):
        run(AnalysisOptions())
    assert isinstance(run(AnalysisOptions(allow_non_t1=True)), SeededMasks)


# -- the oedema next to a segmented lesion, shown for the margin check --------------------------------
def test_oedema_next_to_a_segmented_lesion_is_shown_and_goes_with_a_clean_run(make_viewer, slot_errors):
    """A lesion with a 6 mm marrow-oedema halo (phantom family B) is flagged ``lesion_margin_doubtful``; the
    reader checks its outer margin against the oedema, so the oedema the row counts (``margin_oedema_ml``,
    4.00 mL next to 13.25 mL) is a layer of its own, voxel for voxel.  A run on the same hip without the halo
    has none, and the earlier run's layer goes (it would outline a margin no longer measured)."""
    from lesionvol.measure import mask_volume_ml
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan
    from napari_lesionvol._geometry import mask_from_layer
    from napari_lesionvol._reader import image_layer_data
    from napari_lesionvol._results import oedema_name

    def hip_scan(halo_mm: float) -> sitk.Image:
        hip = Hip("left", head_radius_mm=26.0, lesion=Lesion(pct_of_head=18.0, oedema_halo_mm=halo_mm, shape_seed=9),
                  neck_shaft_deg=130.0, anteversion_deg=13.0)
        return make_hip_scan(HipScanSpec(left=hip, field="left", anatomy_seed=9), seed=9)[0]

    viewer = make_viewer()
    halo = hip_scan(6.0)
    data, attributes, kind = image_layer_data(halo, "hip", extra_meta={"source": "hip"})
    viewer._add_layer_from_data(data, attributes, kind)
    widget = _dock(viewer)
    widget.register_box.setChecked(False)
    widget.run_button.click()
    wait_until(lambda: widget.session is not None and widget.run_button.isEnabled(), 60, "the run")
    row, tp = widget.table_rows()[0], widget.session.timepoints[0]
    assert row["lesion_margin_doubtful"] is True and row["margin_oedema_ml"] > 0.2 * row["lesion_volume_ml"]
    layer = viewer.layers[oedema_name("hip")]
    assert layer.visible
    shown, _ = mask_from_layer(layer.data, layer.metadata["lesionvol"], layer.scale, layer.translate, layer.rotate,
                               halo)
    assert _dice(shown, tp.oedema) == 1.0
    assert mask_volume_ml(shown) == pytest.approx(row["margin_oedema_ml"], abs=1e-6)
    assert not (sitk.GetArrayViewFromImage(shown) & sitk.GetArrayViewFromImage(tp.lesion)).any()

    viewer.layers["hip"].data = image_layer_data(hip_scan(0.0), "hip")[0]  # same grid, no halo
    widget.set_series(["hip"], [None], [None])  # segment again, not measure the masks shown
    widget.run_button.click()
    wait_until(lambda: widget.session is not None and widget.session.timepoints[0] is not tp
               and widget.run_button.isEnabled(), 60, f"the second run ({widget.status.text()})")
    assert widget.table_rows()[0]["margin_oedema_ml"] == 0.0
    assert oedema_name("hip") not in viewer.layers
    assert not slot_errors, slot_errors
