"""The radiologist's view of the scans: acquisition plane, orientation, T1 windows, layer order.

Every layer of this plugin has an identity direction (see ``_geometry``), so napari's world
axes (z, y, x) are the LPS axes reversed: values grow towards Superior, Posterior and the
patient's Left. The view a radiologist expects is then a choice of napari's dims order
(the slice axis is the one scrolled) and of the 2D camera's axis directions:

* coronal:  rows S→I (superior up), columns R→L (the patient's right on the viewer's left);
* axial:    rows A→P (anterior up), columns R→L;
* sagittal: rows S→I, columns A→P (anterior on the viewer's left).

The plane is the scan's own acquisition plane, from the native grid in the layer's
metadata (the axis of the largest spacing, else the third index axis). Letters at the
canvas edges (R, L, S, I, A, P) follow the view, whatever the reader does with it.

Window presets: MR intensities have no absolute scale, so a T1 "window" is a pair of
percentiles of each image's own histogram.
"""

from __future__ import annotations

import numpy as np

from napari_lesionvol._geometry import META_KEY

#: napari's dims.axis_labels of the world axes (z, y, x): the LPS axes they run along
AXIS_LABELS = ("I-S", "A-P", "R-L")
_PLUS, _MINUS = ("S", "P", "L"), ("I", "A", "R")  # where world axes z, y, x grow, and the other end
#: plane -> (dims order: slice axis first, then rows, columns; camera orientation2d)
VIEWS = {
    "coronal": ((1, 0, 2), ("up", "right")),
    "axial": ((0, 1, 2), ("down", "right")),
    "sagittal": ((2, 0, 1), ("up", "right")),
}
_PLANE_OF_LPS_AXIS = ("sagittal", "coronal", "axial")  # slice direction along L, P, S
#: T1 windows: (low, high) percentiles of each image's voxels
WINDOW_PRESETS = {
    "T1 bone marrow": (20.0, 99.8),  # fatty marrow just below white: the low-signal band stands out
    "T1 soft tissue": (0.5, 85.0),  # muscle, cartilage and fluid spread out; fat saturates
    "auto (1-99.5 %)": (1.0, 99.5),
}
DEFAULT_WINDOW = "T1 bone marrow"
_LETTER_POSITIONS = {"top": "top_center", "bottom": "bottom_center", "left": "middle_left", "right": "middle_right"}
_OVERLAY_KEY = "lesionvol_{}"


def _camera(viewer):
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def acquisition_plane(layer) -> str:
    """``'coronal'``, ``'axial'`` or ``'sagittal'``: the plane a layer's scan was acquired in.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> coronal = {"spacing": [1, 1, 3], "direction": [1, 0, 0, 0, 0, 1, 0, -1, 0]}
    >>> acquisition_plane(SimpleNamespace(metadata={"lesionvol": {"native_grid": coronal}}))
    'coronal'
    """
    grid = (getattr(layer, "metadata", None) or {}).get(META_KEY, {}).get("native_grid")
    if grid is not None:
        spacing = np.asarray(grid["spacing"], float)
        direction = np.asarray(grid["direction"], float).reshape(3, 3)
    else:  # a layer from another reader: its napari transform says the same in reverse
        spacing = np.asarray(layer.scale, float)[::-1]
        direction = np.asarray(layer.rotate, float)[::-1, ::-1]
    slice_axis = int(np.argmax(spacing)) if spacing.max() > 1.2 * spacing.min() else 2
    return _PLANE_OF_LPS_AXIS[int(np.argmax(np.abs(direction[:, slice_axis])))]


def edge_letters(viewer) -> dict[str, str] | None:
    """The anatomical direction at each canvas edge (``top``, ``bottom``, ``left``, ``right``) in
    the 2D view shown now, or None (3D view, or not three world axes)."""
    if viewer.dims.ndisplay != 2 or viewer.dims.ndim != 3:
        return None
    rows, cols = viewer.dims.displayed[-2:]
    vertical, horizontal = (str(getattr(v, "value", v)) for v in _camera(viewer).orientation2d)
    top = _PLUS[rows] if vertical == "up" else _MINUS[rows]
    right = _PLUS[cols] if horizontal == "right" else _MINUS[cols]
    return {"top": top, "bottom": _opposite(top), "right": right, "left": _opposite(right)}


def _opposite(letter: str) -> str:
    return dict(zip(_PLUS + _MINUS, _MINUS + _PLUS))[letter]


def show_orientation_letters(viewer):
    """Letters at the canvas edges that say where the patient's R, L, S, I (A, P) are."""
    from napari.components.overlays import TextOverlay

    overlays = viewer.canvas.overlays
    if _OVERLAY_KEY.format("top") not in overlays:
        for edge, position in _LETTER_POSITIONS.items():
            overlays[_OVERLAY_KEY.format(edge)] = TextOverlay(position=position, font_size=14, color="#ffd24a")
        for emitter in (viewer.dims.events.order, viewer.dims.events.ndisplay, _camera(viewer).events.orientation):
            emitter.connect(lambda event=None, v=viewer: _update_letters(v))
    _update_letters(viewer)


def _update_letters(viewer):
    letters = edge_letters(viewer)
    for edge in _LETTER_POSITIONS:
        overlay = viewer.canvas.overlays[_OVERLAY_KEY.format(edge)]
        overlay.text = letters[edge] if letters else ""
        overlay.visible = letters is not None


def show_acquisition_plane(viewer, layer, centre_world=None) -> str:
    """Put ``viewer`` in the radiologist's 2D view of ``layer``'s acquisition plane.

    ``centre_world``, a world point (z, y, x), picks the slice shown; otherwise napari's
    middle slice. Returns the plane.
    """
    plane = acquisition_plane(layer)
    order, orientation = VIEWS[plane]
    viewer.dims.ndisplay = 2
    if viewer.dims.ndim == 3:
        viewer.dims.axis_labels = AXIS_LABELS
        viewer.dims.order = order
    _camera(viewer).orientation2d = orientation
    viewer.reset_view()
    if centre_world is not None and viewer.dims.ndim == 3:
        viewer.dims.set_point(order[0], float(centre_world[order[0]]))
    show_orientation_letters(viewer)
    return plane


def image_layers(viewer) -> list:
    import napari.layers

    return [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image) and not layer.rgb]


def window_limits(data, preset: str) -> tuple[float, float]:
    """Contrast limits of ``preset`` for an image array (percentiles of at most ~10^6 voxels)."""
    lo_pct, hi_pct = WINDOW_PRESETS[preset]
    values = np.asarray(data).ravel()
    values = values[:: max(1, values.size // 1_000_000)]
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [lo_pct, hi_pct]))
    return lo, hi if hi > lo else lo + 1.0


def apply_window(viewer, preset: str) -> dict[str, tuple[float, float]]:
    """Set the contrast limits of every image layer to the preset; returns them by layer name."""
    limits = {}
    for layer in image_layers(viewer):
        limits[layer.name] = window_limits(layer.data, preset)
        lo, hi = layer.contrast_limits_range
        layer.contrast_limits_range = (min(lo, limits[layer.name][0]), max(hi, limits[layer.name][1]))
        layer.contrast_limits = limits[layer.name]
    return limits


def layer_rank(layer) -> int:
    """Drawing order: images (0), derived overlays (1), editable masks (2), anything else (3)."""
    import napari.layers

    if isinstance(layer, napari.layers.Image):
        return 0
    if isinstance(layer, napari.layers.Labels):
        return 1 if layer.metadata.get(META_KEY, {}).get("derived") else 2
    return 3


def order_layers(viewer):
    """Images at the bottom, derived overlays above them, the masks a reader edits on top
    (a change overlay never hides the lesion being painted); order within a rank kept."""
    wanted = sorted(viewer.layers, key=layer_rank)  # sorted() is stable
    for i, layer in enumerate(wanted):
        current = viewer.layers.index(layer)
        if current != i:
            viewer.layers.move(current, i)


def radiological_view_later(viewer):
    """Once the layers being added now are in (the next turn of the event loop): the masks
    above the images, the default T1 window, the radiologist's view of the first scan."""
    from qtpy.QtCore import QTimer

    def settle():
        images = [layer for layer in image_layers(viewer) if META_KEY in layer.metadata]
        if images:
            order_layers(viewer)
            apply_window(viewer, DEFAULT_WINDOW)
            show_acquisition_plane(viewer, images[0])

    QTimer.singleShot(0, settle)
