"""'Head from click' and 'Lesion from click': the reader clicks, the core segments around the click.

The tool's button arms a Points layer named ``seed`` in add mode; the reader's click adds
a point there (napari world coordinates, z, y, x). The point is turned into an LPS point
through the chosen visit's image layer (its data index, then its true grid from the layer
metadata, see :func:`napari_lesionvol._geometry.layer_point_to_lps`) and
:func:`lesionvol.segment.segment_hip` runs with ``seed_mm`` at that point, off the GUI
thread (:func:`seeded_job`). The widget then puts the head and lesion masks into the
visit's Labels layers; :class:`MaskUndo` keeps what they held before, for the Undo button.

'Lesion from click' works the same way on its own Points layer (``lesion seed``): the click is
grown into a lesion inside the visit's current head mask by
:func:`lesionvol.segment.lesion_seed.grow_lesion_from_seed` (:func:`lesion_seed_job`), following
the ``lesion_definition`` option, and replaces the lesion components it touches.
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
LESION_SEED_LAYER = "lesion seed"
LESION_SEED_COLOR = "#ff5a5a"


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
    from lesionvol.sequence import NotT1Error, check_t1
    from napari_lesionvol._run import JobError, _scan_from_state, plain_reason

    yield Progress(0, 2, f"{label}: reading")
    try:
        scan = _scan_from_state(image_state)
        check_t1(scan.image, options.allow_non_t1, scan.dicom_tags)
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
    except NotT1Error as exc:
        raise JobError(f"{label}: {plain_reason(str(exc))}; tick 'allow non t1' in the options to segment it "
                       "anyway") from exc
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


class ClickTool(QGroupBox):
    """A visit to click in, a checkable button that arms a Points layer, and an Undo.

    :attr:`clicked` carries (image layer name, world point z, y, x) once the reader clicked.
    Each tool has its own Points layer (``layer_name``), so two tools never take each other's click.
    """

    clicked = Signal(str, object)

    def __init__(self, viewer, title: str, layer_name: str, target: str, tooltip: str, undo_tooltip: str,
                 color: str = SEED_COLOR, parent=None):
        super().__init__(title, parent)
        self.viewer = viewer
        self.armed = False
        self.layer_name, self.target, self.color = layer_name, target, color
        self.visit = QComboBox()
        self.visit.setToolTip(f"the visit whose {target} you will click in")
        self.button = QPushButton(title)
        self.button.setCheckable(True)
        self.button.setToolTip(tooltip)
        self.button.toggled.connect(self._toggled)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip(undo_tooltip)
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
        if self.layer_name in self.viewer.layers:
            layer = self.viewer.layers[self.layer_name]
        else:
            layer = self.viewer.add_points(np.empty((0, 3)), ndim=3, name=self.layer_name, size=5,
                                           face_color=self.color, border_color="black")
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
        self.hint.setText(f"Click in the {self.target} of {image}.")

    def _on_point(self, event=None):
        action = str(getattr(getattr(event, "action", None), "value", getattr(event, "action", "added")))
        layer = self.viewer.layers[self.layer_name] if self.layer_name in self.viewer.layers else None
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


class HeadFromClick(ClickTool):
    """'Head from click': the head and its lesion segmented around the click."""

    def __init__(self, viewer, parent=None):
        super().__init__(viewer, "Head from click", SEED_LAYER, "femoral head",
                         "then click in the femoral head of the chosen visit's image: the head and its lesion are "
                         "segmented around that point and put in the visit's mask layers",
                         "put back the masks the last 'Head from click' replaced", parent=parent)


class LesionFromClick(ClickTool):
    """'Lesion from click': the lesion clicked in, grown inside the visit's head mask."""

    def __init__(self, viewer, parent=None):
        super().__init__(viewer, "Lesion from click", LESION_SEED_LAYER, "lesion",
                         "then click inside a lesion of the chosen visit's image: it is grown from that point "
                         "inside the visit's head mask, bounded by the band (the 'lesion_definition' option: "
                         "enclosed or dark), and replaces that lesion in the visit's lesion layer",
                         "put back the lesion mask the last 'Lesion from click' replaced", color=LESION_SEED_COLOR,
                         parent=parent)


@dataclass
class GrownLesion:
    """What a click in a lesion gave: the visit, the point, the new lesion mask on the scan's grid."""

    image_name: str
    label: str
    seed_mm: tuple[float, float, float]
    scan: object  # lesionvol.io.Scan
    lesion: sitk.Image  # the visit's lesion with the grown one in place of what it touched
    grown_ml: float
    definition: str


def lesion_seed_job(image_state: dict, label: str, seed_mm, head, lesion, definition: str,
                    cancel: threading.Event | None = None):
    """Worker body: grow the lesion clicked in (:func:`lesionvol.segment.lesion_seed.grow_lesion_from_seed`).

    ``head`` and ``lesion`` are the visit's current masks, as SimpleITK images on the scan's grid
    or as layer states (:func:`napari_lesionvol._run.layer_state`); ``lesion`` may be None.
    Returns a :class:`GrownLesion`: the visit's lesion with the grown one in place of the
    components it touches (:func:`lesionvol.segment.lesion_seed.merge_grown_lesion`).
    """
    from lesionvol.errors import InputError
    from lesionvol.measure import mask_volume_ml
    from lesionvol.segment.lesion_seed import grow_lesion_from_seed, merge_grown_lesion
    from napari_lesionvol._geometry import mask_from_layer
    from napari_lesionvol._run import JobError, _scan_from_state

    def native(mask, scan):
        if mask is None or isinstance(mask, sitk.Image):
            return mask
        image, _ = mask_from_layer(mask["data"], mask["meta"] or None, mask["scale"], mask["translate"],
                                   mask["rotate"], scan.image)
        return image

    yield Progress(0, 2, f"{label}: reading")
    try:
        scan = _scan_from_state(image_state)
        head, lesion = native(head, scan), native(lesion, scan)
        yield Progress(1, 2, f"{label}: growing the lesion from your click")
        grown = None
        for item in in_thread(lambda progress: grow_lesion_from_seed(scan.image, head, seed_mm, definition),
                              cancel=cancel, name="lesionvol-lesion-seed"):
            if isinstance(item, Progress):
                yield item
            else:
                grown = item
    except InputError as exc:
        raise JobError(f"{label}: {exc}") from exc
    except RuntimeError as exc:  # superqt drops a RuntimeError silently
        raise JobError(f"{type(exc).__name__}: {exc}") from exc
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")
    return GrownLesion(image_state["name"], label, tuple(seed_mm), scan, merge_grown_lesion(lesion, grown),
                       mask_volume_ml(grown), definition)
