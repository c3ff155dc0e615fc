"""The review widget's lesion tools and warnings (issue 13), used through its own buttons:
the lesion segmented alone inside a given head, 'Lesion from click' (grown, undoable, the table
live), 'Propagate' of a baseline mask to a follow-up, and the warnings shown before and after a
run (a layer without physical geometry; a non-T1 image).

Truth is exact (phantom family A, family B for the T2 scan). Measured when written: lesion alone
in the given head Dice 0.983; lesion from a click at the truth centroid 0.983 (volume +0.1 %);
propagated through the run's registration to a posed follow-up 0.950, centroid 0.13 mm.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import SimpleITK as sitk
from _napari_testing import process_events_for, wait_until

from lesionvol.phantom import VisitSpec, lesion_for_fraction, make_series, make_visit


def _dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2.0 * int((x & y).sum()) / max(int(x.sum()) + int(y.sum()), 1)


def _centroid_mm(mask: sitk.Image) -> np.ndarray:
    index = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0).mean(0)[::-1]
    return np.asarray(mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in index]))


@pytest.fixture
def slot_errors(monkeypatch):
    """Exceptions raised in Qt slots (PyQt6 would abort the process on them)."""
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc))
    return seen


def _add(viewer, image, name, **kwargs):
    from napari_lesionvol._reader import image_layer_data

    data, attributes, kind = image_layer_data(image, name, extra_meta={"source": name}, **kwargs)
    return viewer._add_layer_from_data(data, attributes, kind)[0]


def _settled(widget):
    return widget.run_controls.worker is not None and not widget.run_controls.worker.is_running \
        and widget.run_button.isEnabled()


@pytest.fixture(scope="module")
def phantom():
    return make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 18.0),)), seed=5)


def test_head_given_lesion_alone_then_lesion_from_click_with_undo(make_viewer, phantom, slot_errors):
    from napari_lesionvol._widget import ReviewWidget

    viewer = make_viewer()
    _add(viewer, phantom.image, "hip")
    _add(viewer, phantom.head_mask, "hip head", is_label=True, role="head")
    widget = ReviewWidget(viewer)
    widget.set_series(["hip"], [None], ["hip head"])
    assert widget.rows[0].head.currentText() == "hip head" and widget.rows[0].lesion.currentText() == "(segment)"

    # item 2: the head is given, the lesion is segmented alone inside it
    widget.run_button.click()
    wait_until(lambda: _settled(widget) and (widget.session is not None or widget.last_error), 90, "the run")
    assert widget.last_error is None, widget.last_error
    tp = widget.session.timepoints[0]
    assert widget.table_rows()[0]["mask_source"] == "user head, segmented lesion"
    assert _dice(tp.lesion, phantom.lesion_enclosed_mask) >= 0.97  # measured 0.983

    # the reader erases the lesion: the table says 0 mL
    lesion_layer = widget.results.layer("hip", "lesion")
    lesion_layer.data = np.zeros_like(lesion_layer.data)
    widget.apply_edits()
    assert widget.table_rows()[0]["lesion_volume_ml"] == 0.0

    # 'Lesion from click': a click at the lesion's centre grows it back
    widget.lesion_tool.visit.setCurrentText("hip")
    widget.lesion_tool.button.click()
    seed = viewer.layers["lesion seed"]
    assert seed.mode == "add" and viewer.layers.selection.active is seed
    seed.add(_centroid_mm(phantom.lesion_enclosed_mask)[::-1])  # world (z, y, x)
    wait_until(lambda: _settled(widget) and ("grown" in widget.status.text() or widget.last_error), 60, "the growth")
    assert widget.last_error is None, widget.last_error
    assert not widget.lesion_tool.button.isChecked() and seed.mode == "pan_zoom"
    tp = widget.session.timepoints[0]
    dice = _dice(tp.lesion, phantom.lesion_enclosed_mask)
    print(f"lesion from click: Dice {dice:.4f}, {widget.table_rows()[0]['lesion_volume_ml']:.3f} mL")
    assert dice >= 0.97  # measured 0.983
    row = widget.table_rows()[0]
    assert row["lesion_volume_ml"] == pytest.approx(phantom.truth.lesion_enclosed_ml, rel=0.03)  # measured +0.1 %
    assert widget.table.item(0, 3).text() == f"{row['lesion_volume_ml']:.3f}"  # the table shows it
    assert viewer.layers.selection.active is lesion_layer and lesion_layer.data.any()

    # a click in healthy marrow grows nothing, says why, and leaves the lesion alone
    before = row["lesion_volume_ml"]
    centre = np.asarray(phantom.truth.head_centre_mm)
    away = centre - 12.0 * (_centroid_mm(phantom.lesion_enclosed_mask) - centre) / np.linalg.norm(
        _centroid_mm(phantom.lesion_enclosed_mask) - centre)
    widget.lesion_tool.button.click()
    seed.add(away[::-1])
    wait_until(lambda: _settled(widget) and widget.last_error is not None, 60, "the refused click")
    assert "no lesion at the click" in widget.status.text()
    assert widget.table_rows()[0]["lesion_volume_ml"] == before

    # Undo puts the erased lesion back: 0 mL again
    assert widget.lesion_tool.undo_button.isEnabled()
    widget.lesion_tool.undo_button.click()
    assert widget.table_rows()[0]["lesion_volume_ml"] == 0.0 and not lesion_layer.data.any()
    assert "Lesion from click undone" in widget.status.text()
    assert not slot_errors, slot_errors


@pytest.fixture(scope="module")
def moved_pair():
    return make_series(seed=1, n_followups=1, residual_fractions=[1.0], left_lesion_pct_head=None)


def test_propagate_carries_the_baseline_lesion_to_the_followup(make_viewer, moved_pair, slot_errors):
    from napari_lesionvol._widget import ReviewWidget

    base, follow = moved_pair.scans
    viewer = make_viewer()
    _add(viewer, base.image, "base")
    _add(viewer, base.lesion_enclosed_mask, "base lesion", is_label=True, role="lesion")
    _add(viewer, base.head_mask, "base head", is_label=True, role="head")
    _add(viewer, follow.image, "follow")
    _add(viewer, follow.head_mask, "follow head", is_label=True, role="head")
    empty = sitk.Image(follow.image.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(follow.image)
    _add(viewer, empty, "follow lesion", is_label=True, role="lesion")  # the reader has not drawn it yet
    widget = ReviewWidget(viewer)
    widget.set_series(["base", "follow"], ["base lesion", "follow lesion"], ["base head", "follow head"])
    assert not widget.propagate_tool.button.isEnabled()  # nothing to carry it with before a run
    widget.register_box.setChecked(True)
    widget.run_button.click()
    wait_until(lambda: _settled(widget) and (widget.session is not None or widget.last_error), 120, "the run")
    assert widget.last_error is None, widget.last_error
    assert widget.table_rows()[1]["lesion_volume_ml"] == 0.0
    assert widget.propagate_tool.button.isEnabled() and widget.propagate_tool.followup.currentText() == "follow"

    widget.propagate_tool.kind.setCurrentText("lesion")
    widget.propagate_tool.button.click()
    tp = widget.session.timepoints[1]
    dice = _dice(tp.lesion, follow.lesion_enclosed_mask)
    distance = float(np.linalg.norm(_centroid_mm(tp.lesion) - _centroid_mm(follow.lesion_enclosed_mask)))
    print(f"propagated: Dice {dice:.4f}, centroid {distance:.2f} mm")
    assert dice >= 0.93 and distance < 1.0  # measured 0.950, 0.13 mm
    assert tp.lesion.GetSize() == follow.image.GetSize()  # on the follow-up's own grid
    row = widget.table_rows()[1]
    assert row["lesion_volume_ml"] == pytest.approx(follow.truth.lesion_enclosed_ml, rel=0.05)
    assert widget.table.item(1, 3).text() == f"{row['lesion_volume_ml']:.3f}"
    assert "propagated" in widget.status.text()
    process_events_for(0.3)  # the edit timer finds nothing more to carry
    assert widget.table_rows()[1]["lesion_volume_ml"] == row["lesion_volume_ml"]

    widget.propagate_tool.undo_button.click()
    assert widget.table_rows()[1]["lesion_volume_ml"] == 0.0
    assert not slot_errors, slot_errors


def test_a_layer_without_geometry_is_warned_about_before_running(make_viewer):
    from napari_lesionvol._widget import ReviewWidget

    scan = make_visit(VisitSpec(shape=(64, 64, 20), spacing_mm=(2.0, 2.0, 6.0)), seed=0)
    viewer = make_viewer()
    _add(viewer, scan.image, "lesionvol read")
    viewer.add_image(sitk.GetArrayFromImage(scan.image), name="builtin read")  # what napari's own reader gives
    widget = ReviewWidget(viewer)
    widget.set_series(["lesionvol read"])
    assert widget.geometry_warning.isHidden() and widget.check_geometry() == []
    widget.set_series(["lesionvol read", "builtin read"])
    assert not widget.geometry_warning.isHidden()
    text = widget.geometry_warning.text()
    assert "'builtin read' has no physical geometry" in text and "lesionvol read" not in text
    assert "lesionvol ONFH lesion review" in text  # how to reopen it
    widget.set_series(["lesionvol read"])
    assert widget.geometry_warning.isHidden()


def test_a_non_t1_image_is_named_in_the_status_line(make_viewer, slot_errors):
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan
    from napari_lesionvol._widget import ReviewWidget

    spec = HipScanSpec(right=Hip("right", lesion=Lesion(pct_of_head=15.0)), field="right", contrast="T2",
                       spacing_mm=(2.0, 2.0, 4.0), fov_mm=(120.0, 120.0, 80.0))
    image, truth = make_hip_scan(spec, seed=0)
    viewer = make_viewer()
    _add(viewer, image, "t2")
    _add(viewer, truth.head_mask["right"], "t2 head", is_label=True, role="head")
    _add(viewer, truth.lesion_mask["right"], "t2 lesion", is_label=True, role="lesion")
    widget = ReviewWidget(viewer)
    widget.set_series(["t2"], ["t2 lesion"], ["t2 head"])
    widget.run_button.click()  # refused: lesion volumetry is defined on T1
    wait_until(lambda: _settled(widget) and (widget.session is not None or widget.last_error), 60, "the refusal")
    assert widget.session is None and "T2" in widget.status.text()
    widget.options_panel.controls["allow_non_t1"].setChecked(True)
    widget.run_button.click()
    wait_until(lambda: _settled(widget) and widget.session is not None, 60, "the run with the override")
    status = widget.status.text()
    assert "Not T1: t2 reads as T2" in status and ("&#9888;" in status or "\u26a0" in status)
    assert widget.table_rows()[0]["image_contrast"] == "T2"
    assert not slot_errors, slot_errors
