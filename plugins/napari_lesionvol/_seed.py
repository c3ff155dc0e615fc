"""'Head from click': the reader clicks in a femoral head, the core segments that head.

The tool's button arms a Points layer named ``seed`` in add mode; the reader's click adds
a point there (napari world coordinates, z, y, x). The point is turned into an LPS point
through the chosen visit's image layer (its data index, then its true grid from the layer
metadata, see :func:`napari_lesionvol._geometry.layer_point_to_lps`) and
:func:`lesionvol.segment.segment_hip` runs with ``seed_mm`` at that point, off the GUI
thread (:func:`seeded_job`). The widget then puts the head and lesion masks into the
visit's Labels layers; :class:`MaskUndo` keeps what they held before, for the Undo button.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from lesionvol.inputs import AnalysisOptions
from napari_lesionvol._geometry import META_KEY, layer_point_to_lps, point_in_grid
from napari_lesionvol._review import Cancelled, Progress, in_thread

SEED_LAYER = "seed"
SEED_COLOR = "#ffd24a"


@dataclass
class SeededMasks:
    """What a click gave: the visit, the point and the core's segmentation on the scan's grid."""

    image_name: str
    label: str
    seed_mm: tuple[float, float, float]
    scan: object  # lesionvol.io.Scan
    head: sitk.Image
    lesion: sitk.Image
    side: str


def click_to_lps(layer, world_zyx) -> tuple[float, float, float]:
    """A napari world point (z, y, x) clicked over an image layer, as an LPS point (x, y, z mm)."""
    index = np.asarray(layer.world_to_data(np.asarray(world_zyx, dtype=float)), dtype=float)[-3:]
    return layer_point_to_lps(index, layer.metadata.get(META_KEY), layer.scale, layer.translate, layer.rotate)


def seeded_job(image_state: dict, label: str, seed_mm, options: AnalysisOptions,
               cancel: threading.Event | None = None):
    """Worker body: the core's segmentation of one visit around ``seed_mm`` (a :class:`SeededMasks`)."""
    from lesionvol.errors import InputError
    from lesionvol.segment import segment_hip
    from napari_lesionvol._run import JobError, _scan_from_state, plain_reason

    yield Progress(0, 2, f"{label}: reading")
    try:
        scan = _scan_from_state(image_state)
        segmenter = options.make_segmenter()
        yield Progress(1, 2, f"{label}: segmenting the head around your click")
        seg = None
        for item in in_thread(lambda progress: segment_hip(
                scan.image, side=options.side, seed_mm=seed_mm, head_definition=options.head_definition,
                lesion_definition=options.lesion_definition, segmenter=segmenter), cancel=cancel,
                name="lesionvol-seeded"):
            if isinstance(item, Progress):
                yield item
            else:
                seg = item
    except InputError as exc:  # NoFemoralHeadError included
        raise JobError(f"{label}: no femoral head near your click ({plain_reason(str(exc))}). Click nearer the "
                       "head's centre, or choose the side in the options.") from exc
    except RuntimeError as exc:  # superqt drops a RuntimeError silently
        raise JobError(f"{type(exc).__name__}: {exc}") from exc
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
    return SeededMasks(image_state["name"], label, tuple(seed_mm), scan, seg.head, seg.lesion, seg.side)


@dataclass
class MaskUndo:
    """What one 'Head from click' changed, to put it back."""

    row_masks: tuple[str, str]  # the row's lesion and head picks before
    image_name: str
    #: (layer name, data before or None if the layer was made for the click, metadata before)
    layers: list[tuple[str, np.ndarray | None, dict | None]] = field(default_factory=list)


class HeadFromClick(QGroupBox):
    """The visit to click in, the 'Head from click' button and its Undo.

    :attr:`clicked` carries (image layer name, world point z, y, x) once the reader clicked.
    """

    clicked = Signal(str, object)

    def __init__(self, viewer, parent=None):
        super().__init__("Head from click", parent)
        self.viewer = viewer
        self.armed = False
        self.visit = QComboBox()
        self.visit.setToolTip("the visit whose femoral head you will click in")
        self.button = QPushButton("Head from click")
        self.button.setCheckable(True)
        self.button.setToolTip("then click in the femoral head of the chosen visit's image: the head and its "
                               "lesion are segmented around that point and put in the visit's mask layers")
        self.button.toggled.connect(self._toggled)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("put back the masks the last 'Head from click' replaced")
        self.undo_button.setEnabled(False)
        self.hint = QLabel("")
        self.hint.setWordWrap(True)
        line = QHBoxLayout()
        line.addWidget(QLabel("visit"))
        line.addWidget(self.visit, 2)
        line.addWidget(self.button, 2)
        line.addWidget(self.undo_button, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(line)
        layout.addWidget(self.hint)

    def set_visits(self, image_names: list[str]):
        current = self.visit.currentText()
        self.visit.blockSignals(True)
        self.visit.clear()
        self.visit.addItems(image_names)
        if current in image_names:
            self.visit.setCurrentText(current)
        self.visit.blockSignals(False)

    # -- the click ---------------------------------------------------------------------------
    def seed_layer(self):
        """The Points layer the click goes into (made on first use, kept above the images)."""
        if SEED_LAYER in self.viewer.layers:
            layer = self.viewer.layers[SEED_LAYER]
        else:
            layer = self.viewer.add_points(np.empty((0, 3)), ndim=3, name=SEED_LAYER, size=5, face_color=SEED_COLOR,
                                           border_color="black")
            layer.events.data.connect(self._on_point)
        return layer

    def _toggled(self, checked: bool):
        if not checked:
            self.armed = False
            return
        image = self.visit.currentText()
        if image not in self.viewer.layers:
            self.hint.setText("Choose a visit with an image first.")
            self.button.setChecked(False)
            return
        self.viewer.layers[image].visible = True
        layer = self.seed_layer()
        layer.visible = True
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.armed = True
        self.hint.setText(f"Click in the femoral head of {image}.")

    def _on_point(self, event=None):
        action = str(getattr(getattr(event, "action", None), "value", getattr(event, "action", "added")))
        layer = self.viewer.layers[SEED_LAYER] if SEED_LAYER in self.viewer.layers else None
        if not self.armed or action != "added" or layer is None or len(layer.data) == 0:
            return
        point = np.asarray(layer.data[-1], dtype=float)
        self.armed = False
        self.button.setChecked(False)
        layer.mode = "pan_zoom"
        if len(layer.data) > 1:  # one seed on show: the last click
            layer.data = point[None]
        self.clicked.emit(self.visit.currentText(), point)

    def check_inside(self, image_layer, seed_mm) -> str | None:
        """Why the point cannot seed this visit (None if it can)."""
        grid = image_layer.metadata.get(META_KEY, {}).get("native_grid")
        if grid is not None and not point_in_grid(seed_mm, grid):
            return f"the click ({', '.join(f'{v:.1f}' for v in seed_mm)} mm) is outside the image of {image_layer.name}"
        return None
