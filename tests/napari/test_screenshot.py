"""What the reader sees, on one shown viewer: the sample opened from the File menu, the
widget from the Plugins menu. The overlays are rendered where the lesion is; the scans open
and show results in the radiologist's view with T1 windows (2); a doubtful registration is
marked in the status line and the table (3)."""

from __future__ import annotations

import types

import numpy as np
import pytest
from _napari_testing import (
    canvas_pixels,
    process_events_for,
    show_coronal_through_lesion,
    true_sample_transforms,
    wait_for_worker,
)
from scipy import ndimage


def _view_state(viewer) -> dict:
    return {"order": tuple(viewer.dims.order), "ndisplay": viewer.dims.ndisplay,
            "axis_labels": tuple(viewer.dims.axis_labels),
            "letters": {edge: viewer.canvas.overlays[f"lesionvol_{edge}"].text
                        for edge in ("top", "bottom", "left", "right")}}


@pytest.fixture(scope="module")
def shown():
    """A shown viewer with the sample reviewed (reference masks, true transforms), and the
    view it opened in (module scope: a shown viewer costs seconds)."""
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 800)
    viewer.open_sample("lesionvol", "onfh_series")  # File > Open Sample > lesionvol
    _, widget = viewer.window.add_plugin_dock_widget("lesionvol", "Lesion review")  # Plugins > lesionvol
    process_events_for(0.3)
    opened = _view_state(viewer)
    widget.run(transforms=true_sample_transforms())
    wait_for_worker(widget)
    process_events_for(0.3)
    opened["results_point"] = tuple(viewer.dims.point)
    yield viewer, widget, opened
    viewer.close()


def _slice_voxels_world(layer, world_y):
    """World points of the layer's non-zero voxels in the coronal plane shown, eroded by one voxel."""
    index = int(round(layer.world_to_data([0.0, world_y, 0.0])[1]))
    plane = np.zeros_like(layer.data, dtype=bool)
    plane[:, index, :] = ndimage.binary_erosion(layer.data[:, index, :] != 0, iterations=1)
    return np.array([layer.data_to_world(p) for p in np.argwhere(plane)]), plane


def test_screenshot_shows_lesion_and_change_colours_where_they_are(shown):
    viewer, widget, _ = shown
    show_coronal_through_lesion(viewer, {"baseline", "baseline_lesion"})
    lesion = viewer.layers["baseline_lesion"]
    lesion.opacity = 1.0
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    assert rgb.std() > 20 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50, "blank screenshot"

    world_y = viewer.dims.point[1]
    points, _ = _slice_voxels_world(lesion, world_y)
    assert len(points) > 50
    rows, cols = canvas_pixels(viewer, shot.shape, points)
    inside = (rows >= 0) & (rows < shot.shape[0]) & (cols >= 0) & (cols < shot.shape[1])
    assert inside.all(), "the lesion is off screen"
    r, g, b = rgb[rows, cols].T
    red = (r > 180) & (g < 80) & (b < 80)
    assert red.mean() > 0.95, f"only {red.mean():.0%} of the lesion is drawn in the lesion colour"
    # and the bone around it is not red
    head_points, _ = _slice_voxels_world(viewer.layers["baseline_head"], world_y)
    lesion_set = {tuple(p) for p in np.round(points, 3)}
    rest = np.array([p for p in head_points if tuple(np.round(p, 3)) not in lesion_set])
    rr, cc = canvas_pixels(viewer, shot.shape, rest)
    r, g, b = rgb[rr, cc].T
    assert ((r > 180) & (g < 80) & (b < 80)).mean() < 0.05

    # the 12-month change overlay: regenerated bone in green where the baseline lesion healed
    show_coronal_through_lesion(viewer, {"baseline", "month12 change"})
    change = viewer.layers["month12 change"]
    change.opacity = 1.0
    shot = viewer.screenshot(canvas_only=True, flash=False)
    regenerated = change.data == 2
    index = int(round(change.world_to_data([0.0, world_y, 0.0])[1]))
    plane = np.zeros_like(regenerated)
    plane[:, index, :] = ndimage.binary_erosion(regenerated[:, index, :], iterations=1)
    points = np.array([change.data_to_world(p) for p in np.argwhere(plane)])
    assert len(points) > 20
    rows, cols = canvas_pixels(viewer, shot.shape, points)
    r, g, b = shot[rows, cols, :3].astype(int).T
    assert ((g > 150) & (r < 100) & (b < 100)).mean() > 0.95


# -- 2. the radiologist's view, T1 windows, layer order -----------------------------------------
def _blob_centre(rgb, colour, tolerance=40):
    near = np.all(np.abs(rgb.astype(int) - np.asarray(colour)) < tolerance, axis=-1)
    assert near.sum() > 10, f"no {colour} marker on the canvas"
    return np.argwhere(near).mean(axis=0)


def test_radiological_view_windows_and_layer_order(shown):
    from napari_lesionvol._view import WINDOW_PRESETS, layer_rank, window_limits

    viewer, widget, opened = shown
    # the sample opened in its acquisition plane (coronal: the slice axis, P, is the one scrolled)
    radiological = {"order": (1, 0, 2), "ndisplay": 2, "axis_labels": ("I-S", "A-P", "R-L"),
                    "letters": {"top": "S", "bottom": "I", "left": "R", "right": "L"}}
    assert {key: opened[key] for key in radiological} == radiological
    # and the results were shown so, on the slice through the baseline lesion's centre
    base = viewer.layers["baseline"]
    lesion = viewer.layers["baseline_lesion"]
    centre = lesion.data_to_world(np.argwhere(lesion.data).mean(axis=0))
    assert abs(opened["results_point"][1] - centre[1]) <= base.scale[1]
    # images below, derived overlays, then the masks being edited on top
    ranks = [layer_rank(layer) for layer in viewer.layers]
    assert ranks == sorted(ranks) and viewer.layers.index("month12 change") < viewer.layers.index("month12_lesion")
    viewer.dims.order = (0, 1, 2)  # the reader looks elsewhere; the button brings the view back
    assert viewer.canvas.overlays["lesionvol_top"].text == "P"  # letters follow any view (y grows up)
    widget.view_button.click()
    assert _view_state(viewer) == radiological
    # T1 windows set the image layers' contrast limits
    assert [widget.window_combo.itemText(i) for i in range(widget.window_combo.count())] == list(WINDOW_PRESETS)
    widget.window_combo.setCurrentText("T1 soft tissue")
    for name in ("baseline", "month03", "month12"):
        assert viewer.layers[name].contrast_limits == pytest.approx(window_limits(viewer.layers[name].data, "T1 soft tissue"))
    widget.window_combo.setCurrentText("auto (1-99.5 %)")
    assert base.contrast_limits == pytest.approx(np.percentile(base.data, [1, 99.5]))

    # on the canvas: a point superior and on the patient's right is drawn up and left of one
    # inferior and on the patient's left (LPS: x grows to the left, z to superior)
    y = viewer.dims.point[1]
    lps = {"superior right": (-140.0, y, -40.0), "inferior left": (-70.0, y, -110.0)}
    for name, (x, yy, z) in lps.items():
        viewer.add_points([[z, yy, x]], name=name, size=6, face_color="#00ffff" if "superior" in name else "#ff8000",
                          border_width=0)
    visible = {layer.name: layer.visible for layer in viewer.layers}
    for layer in viewer.layers:
        layer.visible = layer.name in lps or layer.name == "baseline"
    process_events_for(0.3)
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    assert shot.std() > 10, "blank screenshot"
    cyan, orange = _blob_centre(shot, (0, 255, 255)), _blob_centre(shot, (255, 128, 0))
    assert cyan[0] < orange[0] - 20 and cyan[1] < orange[1] - 20, (cyan, orange)
    for name in lps:
        viewer.layers.remove(name)
    for layer in viewer.layers:
        layer.visible = visible[layer.name]


# -- 3. a doubtful registration is shown --------------------------------------------------------
def test_doubtful_registration_is_marked_in_the_status_and_the_table(shown, monkeypatch):
    import lesionvol.register

    truth = dict(zip(("month03", "month12"), true_sample_transforms()))
    reason = "estimated error at the head 2.4 mm (over 1 mm)"

    def register(fixed, moving, **masks):  # the core's answer, faked
        doubtful = moving.GetSize()[2] == 40  # month03 is on the baseline's 40-slice grid
        qc = {"registration_doubtful": doubtful, "registration_doubtful_reason": reason if doubtful else ""}
        return types.SimpleNamespace(transform=truth["month03" if doubtful else "month12"], qc=qc)

    monkeypatch.setattr(lesionvol.register, "register_followup", register)
    viewer, widget, _ = shown
    widget.run_button.click()  # register is ticked, no transforms given: the (faked) core registers
    wait_for_worker(widget)
    status = widget.status.text()
    assert "Check the registration of month03" in status and "#e0a040" in status and reason in status
    assert "month12" not in status.split("Check the registration")[1]
    table = widget.table
    assert table.item(1, 0).text() == "\u26a0 month03" and table.item(2, 0).text() == "month12"
    assert reason in table.item(1, 0).toolTip() and reason in table.item(1, 3).toolTip()
    assert table.item(1, 0).background().color().name() != table.item(2, 0).background().color().name()
