"""Edits survive Run again: edit a mask, type the days, press Run, and summary.json still says the
mask was edited by hand, with the volume before the edit (the file's or the segmenter's), not the
edited one. Through the widget's own controls (Run button, days field, register box)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _napari_testing import open_sample, wait_for_worker

from lesionvol.io import read_mask, read_scan
from lesionvol.measure import mask_volume_ml
from lesionvol.sample import sample_mask_paths, sample_series_paths


def _dock(viewer):
    from napari_lesionvol._widget import ReviewWidget

    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    return widget


def _press_run(widget):
    widget.run_button.click()
    assert widget.last_error is None, widget.last_error
    wait_for_worker(widget)


def _erase_top(layer, n_slices: int = 2) -> int:
    """Erase the lesion's first ``n_slices`` displayed slices, as the eraser would; voxels erased."""
    data = np.array(layer.data, copy=True)
    zs = np.nonzero(data.any(axis=(1, 2)))[0][:n_slices]
    erased = int(np.count_nonzero(data[zs]))
    data[zs] = 0
    layer.data = data
    return erased


def _summary_after_export(widget, folder):
    out = widget.export(folder)
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_edited_file_mask_stays_edited_after_typing_days_and_running_again(make_viewer, tmp_path):
    viewer = make_viewer()
    open_sample(viewer)
    widget = _dock(viewer)
    widget.register_box.setChecked(False)  # month03 on the baseline grid, month12 not compared: fast
    _press_run(widget)
    scan = read_scan(sample_series_paths()[0])
    file_ml = mask_volume_ml(read_mask(sample_mask_paths("lesion")[0], scan.image))
    voxel_ml = float(np.prod(scan.image.GetSpacing())) / 1000
    original = np.array(viewer.layers["baseline_lesion"].data, copy=True)
    erased = _erase_top(viewer.layers["baseline_lesion"])
    assert widget.apply_edits() and erased > 0
    edited_ml = widget.table_rows()[0]["lesion_volume_ml"]
    assert edited_ml == pytest.approx(file_ml - erased * voxel_ml, rel=1e-9)
    # days not typed: the sample's (truth.json: 0, 91, 365), shown in the empty days field
    assert [r["days"] for r in widget.table_rows()] == [0, 91, 365]
    assert widget.days.text() == "" and widget.days.placeholderText() == "0, 91, 365 (from the sample)"

    widget.days.setText("0, 92, 366")  # typed days win
    _press_run(widget)
    rows = widget.table_rows()
    assert [r["days"] for r in rows] == [0, 92, 366]
    assert rows[0]["lesion_volume_ml"] == pytest.approx(edited_ml, rel=1e-12)  # the edit measured, not the file
    assert rows[0]["mask_source"] == "user+edited"
    assert [r["mask_source"] for r in rows[1:]] == ["user", "user"]
    summary = _summary_after_export(widget, tmp_path / "review")
    edits = summary["review"]["mask_edits"]
    assert edits["baseline"]["lesion"]["edited_by_hand"] is True
    assert edits["baseline"]["lesion"]["voxels_changed"] == erased
    assert edits["baseline"]["lesion"]["volume_before_edit_ml"] == pytest.approx(file_ml, rel=1e-9)
    assert edits["baseline"]["lesion"]["volume_ml"] == pytest.approx(edited_ml, rel=1e-9)
    assert "baseline_lesion.nii.gz" in edits["baseline"]["lesion"]["from"]
    # nothing else edited, the oblique 12-month masks included (no display round trip)
    assert [(tp, kind) for tp, kinds in edits.items() for kind, e in kinds.items() if e["edited_by_hand"]] \
        == [("baseline", "lesion")]

    # a third run, the erased voxels painted back in between (the file's mask again): not edited
    viewer.layers["baseline_lesion"].data = original
    _press_run(widget)
    edits = _summary_after_export(widget, tmp_path / "review2")["review"]["mask_edits"]
    assert edits["baseline"]["lesion"]["edited_by_hand"] is False
    assert edits["baseline"]["lesion"]["volume_ml"] == pytest.approx(file_ml, rel=1e-9)
    assert widget.table_rows()[0]["mask_source"] == "user"


def test_edited_segmentation_is_kept_and_recorded_when_running_again(make_viewer, tmp_path):
    from napari_lesionvol._reader import read_layers

    viewer = make_viewer()
    for path in sample_series_paths():  # images only: every visit is segmented
        for data, attributes, kind in read_layers(str(path)):
            viewer._add_layer_from_data(data, attributes, kind)
    widget = _dock(viewer)
    assert [row.lesion.currentText() for row in widget.rows] == ["(segment)"] * 3
    widget.register_box.setChecked(False)
    _press_run(widget)
    rows = widget.table_rows()
    assert [r["mask_source"] for r in rows] == ["segmented"] * 3
    segmented_ml = [r["lesion_volume_ml"] for r in rows]
    segmented_head_ml = [r["head_volume_ml"] for r in rows]
    assert segmented_ml[0] > 1.0, segmented_ml  # a lesion was found to edit
    # the rows now name the layers holding the run's masks
    assert [(row.lesion.currentText(), row.head.currentText()) for row in widget.rows] == \
        [(f"{v} lesion", f"{v} head") for v in ("baseline", "month03", "month12")]
    assert "choose (segment) in its row to segment it anew" in widget.status.text()
    voxel_ml = float(np.prod(widget.session.timepoints[0].scan.image.GetSpacing())) / 1000
    erased = _erase_top(viewer.layers["baseline lesion"], 3)
    assert widget.apply_edits() and erased > 0

    widget.days.setText("0 91 365")
    _press_run(widget)
    rows = widget.table_rows()
    assert [r["days"] for r in rows] == [0, 91, 365]
    assert rows[0]["lesion_volume_ml"] == pytest.approx(segmented_ml[0] - erased * voxel_ml, rel=1e-9)
    assert [r["lesion_volume_ml"] for r in rows[1:]] == pytest.approx(segmented_ml[1:], rel=1e-12)
    assert [r["head_volume_ml"] for r in rows] == pytest.approx(segmented_head_ml, rel=1e-12)
    assert [r["mask_source"] for r in rows] == ["segmented+edited", "segmented", "segmented"]
    summary = _summary_after_export(widget, tmp_path / "review")
    edits = summary["review"]["mask_edits"]
    lesion = edits["baseline"]["lesion"]
    assert lesion["edited_by_hand"] is True and lesion["voxels_changed"] == erased
    assert lesion["volume_before_edit_ml"] == pytest.approx(segmented_ml[0], rel=1e-9)  # the segmenter's
    assert lesion["volume_ml"] == pytest.approx(segmented_ml[0] - erased * voxel_ml, rel=1e-9)
    assert lesion["from"].startswith("segmented")
    assert [(tp, kind) for tp, kinds in edits.items() for kind, e in kinds.items() if e["edited_by_hand"]] \
        == [("baseline", "lesion")]
    assert [tp["mask_source"] for tp in summary["timepoints"]] == ["segmented+edited", "segmented", "segmented"]
    assert not any(tp["lesion_definition"] == "as drawn by the user" for tp in summary["timepoints"])
