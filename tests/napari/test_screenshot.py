"""What the reader sees: a shown viewer renders the overlays where the lesion is."""

from __future__ import annotations

import numpy as np
from _napari_testing import canvas_pixels, open_sample, show_coronal_through_lesion, true_sample_transforms, wait_for_worker
from scipy import ndimage


def _slice_voxels_world(layer, world_y):
    """World points of the layer's non-zero voxels in the coronal plane shown, eroded by one voxel."""
    index = int(round(layer.world_to_data([0.0, world_y, 0.0])[1]))
    plane = np.zeros_like(layer.data, dtype=bool)
    plane[:, index, :] = ndimage.binary_erosion(layer.data[:, index, :] != 0, iterations=1)
    return np.array([layer.data_to_world(p) for p in np.argwhere(plane)]), plane


def test_screenshot_shows_lesion_and_change_colours_where_they_are(make_viewer):
    from napari_lesionvol._widget import ReviewWidget

    viewer = make_viewer(show=True)
    open_sample(viewer)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    widget.run(transforms=true_sample_transforms())
    wait_for_worker(widget)

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
