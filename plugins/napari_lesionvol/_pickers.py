"""The visit rows of the review widget: which image and mask layers make up the series.

One row per visit (oldest first): the image layer, and the lesion and head Labels layers
if masks exist (``(segment)`` otherwise), or one Labels layer holding both as a label map
(values: the options' ``head_label`` and ``lesion_label``; the head is head + lesion, as in the
core's :func:`lesionvol.inputs.split_label_map`). Derived layers (a follow-up in baseline space, a
change overlay) are never offered. :attr:`SeriesPicker.changed` fires whenever the chosen
layers change (a pick, a row added or removed, a chosen layer removed or renamed), so the
widget can drop numbers that no longer belong to its inputs.
"""

from __future__ import annotations

from contextlib import contextmanager

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_lesionvol._geometry import META_KEY
from napari_lesionvol._reader import role_of
from napari_lesionvol._review import MASK_KINDS

SEGMENT = "(segment)"
NONE = "(none)"


class VisitRow:
    """One visit's four pickers: image, lesion mask, head mask, or a label map holding both."""

    def __init__(self, title: str):
        self.title = QLabel(title)
        self.image = QComboBox()
        self.lesion = QComboBox()
        self.head = QComboBox()
        self.label_map = QComboBox()
        for combo, tip in ((self.image, "image layer of this visit"),
                           (self.lesion, "lesion Labels layer, or (segment)"),
                           (self.head, "femoral head Labels layer, or (segment)"),
                           (self.label_map, "one Labels layer holding head and lesion (values: the options' head "
                                            "label and lesion label; the head is head + lesion), instead of the "
                                            "lesion and head layers")):
            combo.setToolTip(tip)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)

    def widgets(self):
        return (self.title, self.image, self.lesion, self.head, self.label_map)

    def masks(self) -> dict[str, str]:
        """The chosen mask layer of each kind (kinds left to segment are absent); a chosen label
        map stands for both masks: ``{"label_map": name}``."""
        if self.label_map.currentText() not in ("", NONE):
            return {"label_map": self.label_map.currentText()}
        return {kind: combo.currentText() for kind, combo in (("lesion", self.lesion), ("head", self.head))
                if combo.currentText() != SEGMENT}

    def show_label_map_choice(self, *args):
        """A chosen label map replaces the lesion and head pickers: they are greyed out."""
        separate = self.label_map.currentText() in ("", NONE)
        self.lesion.setEnabled(separate)
        self.head.setEnabled(separate)


def input_layers(viewer, kind: str):
    """The viewer's 3D layers of a type (``Image`` or ``Labels``) a reader may pick as input."""
    import napari.layers

    layer_type = getattr(napari.layers, kind)
    return [layer for layer in viewer.layers if isinstance(layer, layer_type) and layer.ndim == 3
            and not layer.metadata.get(META_KEY, {}).get("derived")]


class SeriesPicker(QGroupBox):
    """The visit rows, their add/remove/fill buttons, and the viewer's layers they offer."""

    changed = Signal()

    def __init__(self, viewer, parent=None):
        super().__init__("Series (oldest first)", parent)
        self.viewer = viewer
        self.rows: list[VisitRow] = []
        self._picked: tuple = ()
        self._quiet = False
        layout = QVBoxLayout(self)
        self._grid = QGridLayout()
        for col, text in enumerate(("", "image", "lesion", "head", "label map")):
            self._grid.addWidget(QLabel(f"<b>{text}</b>"), 0, col)
        layout.addLayout(self._grid)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("+ follow-up")
        self.add_button.clicked.connect(lambda: self.add_row())
        self.remove_button = QPushButton("− follow-up")
        self.remove_button.clicked.connect(lambda: self.remove_row())
        self.fill_button = QPushButton("Fill from layers")
        self.fill_button.setToolTip("One row per image layer, in layer-list order; masks matched by name")
        self.fill_button.clicked.connect(lambda: self.fill_from_layers())
        for button in (self.add_button, self.remove_button, self.fill_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)

        self.add_row()
        self.add_row()
        self._layer_events = (viewer.layers.events.inserted, viewer.layers.events.removed,
                              viewer.layers.events.moved)
        for event in self._layer_events:
            event.connect(self._refresh_choices)
        for layer in viewer.layers:
            layer.events.name.connect(self._refresh_choices)
        self._refresh_choices()
        self.fill_from_layers()

    # -- what is picked -------------------------------------------------------------------
    def chosen(self) -> list[tuple[str, dict[str, str]]]:
        """``(image layer name, {kind: mask layer name})`` of each row with an image, oldest first
        (kind ``lesion``, ``head``, or ``label_map`` alone)."""
        return [(row.image.currentText(), row.masks()) for row in self.rows if row.image.currentText() != NONE]

    def _check_changed(self, *args):
        picked = tuple((row.image.currentText(), row.lesion.currentText(), row.head.currentText(),
                        row.label_map.currentText()) for row in self.rows)
        if picked != self._picked:
            self._picked = picked
            if not self._quiet:
                self.changed.emit()

    @contextmanager
    def quietly(self):
        """Picks made inside do not count as a change of inputs (the widget's own bookkeeping:
        pointing a row at the layers that already hold what the shown numbers were made from)."""
        self._quiet = True
        try:
            yield
        finally:
            self._check_changed()
            self._quiet = False

    def row_of(self, image_name: str) -> VisitRow | None:
        """The row whose image is this layer (None if no row has it)."""
        return next((row for row in self.rows if row.image.currentText() == image_name), None)

    # -- rows ------------------------------------------------------------------------------
    def add_row(self) -> VisitRow:
        row = VisitRow("baseline" if not self.rows else f"follow-up {len(self.rows)}")
        self.rows.append(row)
        for col, widget in enumerate(row.widgets()):
            self._grid.addWidget(widget, len(self.rows), col)
        for combo in (row.image, row.lesion, row.head, row.label_map):
            combo.currentTextChanged.connect(self._check_changed)
        row.label_map.currentTextChanged.connect(row.show_label_map_choice)
        self._refresh_choices()
        return row

    def remove_row(self):
        if len(self.rows) <= 1:
            return
        row = self.rows.pop()
        for widget in row.widgets():
            self._grid.removeWidget(widget)
            widget.deleteLater()
        self._check_changed()

    def _resize(self, n: int):
        while len(self.rows) < n:
            self.add_row()
        while len(self.rows) > max(n, 1):
            self.remove_row()

    # -- choices from the viewer's layers -------------------------------------------------
    def _refresh_choices(self, event=None):
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._refresh_choices)
        try:
            self._fill_choices()
        except RuntimeError:  # the dock was closed and its Qt widgets deleted: stop listening
            for emitter in self._layer_events:
                emitter.disconnect(self._refresh_choices)
            return
        self._check_changed()  # a chosen layer may be gone or renamed

    def _fill_choices(self):
        images = [layer.name for layer in input_layers(self.viewer, "Image")]
        masks = [layer.name for layer in input_layers(self.viewer, "Labels")]
        for row in self.rows:
            for combo, names, first in ((row.image, images, NONE), (row.lesion, masks, SEGMENT),
                                        (row.head, masks, SEGMENT), (row.label_map, masks, NONE)):
                current = combo.currentText()
                combo.blockSignals(True)
                combo.clear()
                combo.addItems([first, *names])
                combo.setCurrentText(current if current in names else first)
                combo.blockSignals(False)
            row.show_label_map_choice()

    def _mask_for(self, image_name: str, kind: str) -> str:
        """The Labels layer that belongs to an image by name (``<image>_lesion`` etc.)."""
        candidates = [layer.name for layer in input_layers(self.viewer, "Labels") if role_of(layer.name) == kind]
        stem = image_name.lower()
        for name in candidates:
            if name.lower().startswith(stem) and name.lower()[len(stem):].strip(" _-") in (kind, f"{kind} mask"):
                return name
        return SEGMENT

    def fill_from_layers(self):
        """One row per image layer (layer-list order), masks matched by name."""
        images = [layer.name for layer in input_layers(self.viewer, "Image")]
        if images:
            self.set_series(images, *([self._mask_for(name, kind) for name in images] for kind in MASK_KINDS))

    def set_series(self, images, lesions=None, heads=None, label_maps=None):
        """Choose the visits programmatically (layers or layer names; None = segment, or no label map)."""
        def name(x):
            return x if isinstance(x, str) or x is None else x.name

        n = len(images)
        self._resize(n)
        for row, image, lesion, head, label_map in zip(self.rows, images, lesions or [None] * n, heads or [None] * n,
                                                      label_maps or [None] * n):
            row.image.setCurrentText(name(image))
            row.lesion.setCurrentText(name(lesion) or SEGMENT)
            row.head.setCurrentText(name(head) or SEGMENT)
            row.label_map.setCurrentText(name(label_map) or NONE)
