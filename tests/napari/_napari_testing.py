"""Helpers for the napari tests: run the Qt event loop until something happens."""

from __future__ import annotations

import time


def _process_events():
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()


def wait_until(condition, timeout_s: float = 60.0, what: str = "condition"):
    """Run the Qt event loop until ``condition()`` is true (what pytest-qt's waitUntil does)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        _process_events()
        time.sleep(0.01)
    _process_events()


def wait_for_worker(widget, timeout_s: float = 120.0):
    # run() disables the button at once and the worker's finished signal enables it again; a
    # worker that has not started yet is not "running" either, so that alone would not do
    wait_until(lambda: widget.worker is not None and not widget.worker.is_running and widget.run_button.isEnabled()
               and (widget.session is not None or widget.last_error is not None), timeout_s, "the analysis worker")
    if widget.last_error:
        raise AssertionError(widget.last_error)


def _camera(viewer):
    """The camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def true_sample_transforms():
    """The sample series' true baseline→follow-up transforms (ITK convention), from truth.json."""
    import SimpleITK as sitk

    from lesionvol.sample import sample_truth

    transforms = []
    for t in sample_truth()["transforms"]:
        euler = sitk.Euler3DTransform()
        euler.SetCenter(t["center_mm"])
        euler.SetComputeZYX(bool(t.get("compute_zyx", False)))
        euler.SetParameters(t["parameters"])
        transforms.append(euler)
    return transforms


def open_sample(viewer):
    """File ▸ Open Sample ▸ lesionvol, without going through the menu."""
    from napari_lesionvol._sample_data import make_sample_data

    for data, attributes, kind in make_sample_data():
        viewer._add_layer_from_data(data, attributes, kind)


def show_coronal_through_lesion(viewer, layers_shown, lesion_name="baseline_lesion"):
    """Coronal slice (superior up, patient's right on the left) through the lesion's centre."""
    import numpy as np

    for layer in viewer.layers:
        layer.visible = layer.name in layers_shown
    lesion = viewer.layers[lesion_name]
    viewer.layers.move(viewer.layers.index(lesion), len(viewer.layers))  # drawn on top
    centre_index = np.round(np.argwhere(lesion.data).mean(axis=0))  # a voxel centre, not between two slices
    centre = lesion.data_to_world(centre_index)
    viewer.dims.ndisplay = 2
    viewer.dims.order = (1, 0, 2)  # slice along P; rows S, columns L (world axes z, y, x)
    viewer.dims.set_point(1, float(centre[1]))
    _camera(viewer).orientation2d = ("up", "right")
    viewer.layers.selection.active = lesion
    viewer.reset_view()
    _process_events()


def canvas_pixels(viewer, shot_shape, world_points):
    """(row, col) in a canvas screenshot of world points (N, 3) on the displayed 2D plane."""
    import numpy as np

    d_row, d_col = viewer.dims.displayed
    centre = np.asarray(_camera(viewer).center)[-2:]
    zoom = _camera(viewer).zoom
    flip = -1.0 if str(getattr(_camera(viewer).orientation2d[0], "value", _camera(viewer).orientation2d[0])) == "up" else 1.0
    rows = flip * (world_points[:, d_row] - centre[0]) * zoom + shot_shape[0] / 2
    cols = (world_points[:, d_col] - centre[1]) * zoom + shot_shape[1] / 2
    return np.round(rows - 0.5).astype(int), np.round(cols - 0.5).astype(int)


def process_events_for(seconds: float):
    """Let the Qt event loop run for a while (draws, queued signals)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _process_events()
        time.sleep(0.01)
