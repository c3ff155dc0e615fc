"""'Propagate from baseline': the baseline's mask carried to a follow-up as a starting mask.

The core does it (:func:`lesionvol.propagate.propagate_mask`: through the run's baseline →
follow-up transform, nearest neighbour, on the follow-up's own grid); this group holds the
follow-up and mask choices, the button and its Undo. The widget puts the mask into the
follow-up's Labels layer, so the table follows as after any correction.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_lesionvol._review import MASK_KINDS


class PropagateTool(QGroupBox):
    """Which follow-up, which mask, the 'Propagate from baseline' button and its Undo."""

    def __init__(self, parent=None):
        super().__init__("Propagate from baseline", parent)
        self.followup = QComboBox()
        self.followup.setToolTip("the follow-up whose mask is replaced by the baseline's, carried through the "
                                 "registration")
        self.kind = QComboBox()
        self.kind.addItems(list(MASK_KINDS))
        self.button = QPushButton("Propagate")
        self.button.setToolTip("carry the baseline's mask to the chosen follow-up through the registration (on the "
                               "follow-up's own grid) as a starting mask to correct; the table follows")
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip("put back the follow-up mask the last 'Propagate' replaced")
        self.undo_button.setEnabled(False)
        self.hint = QLabel("Run first: the registration carries the mask.")
        self.hint.setWordWrap(True)
        line = QHBoxLayout()
        line.addWidget(QLabel("to"))
        line.addWidget(self.followup, 2)
        line.addWidget(self.kind, 1)
        line.addWidget(self.button, 2)
        line.addWidget(self.undo_button, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(line)
        layout.addWidget(self.hint)
        self.set_followups([])

    def set_followups(self, labels: list[str]):
        """The follow-ups of the run on show (none: the button is off)."""
        current = self.followup.currentText()
        self.followup.clear()
        self.followup.addItems(labels)
        if current in labels:
            self.followup.setCurrentText(current)
        self.button.setEnabled(bool(labels))
        self.hint.setText("" if labels else "Run first: the registration carries the mask.")
