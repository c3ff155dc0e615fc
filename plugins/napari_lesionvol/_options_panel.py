"""The options panel of the review widget, made from the declaration of ``AnalysisOptions``.

One control per field of :class:`lesionvol.inputs.AnalysisOptions`, chosen by its type and
metadata (choices: a combo box; float, int, bool: spin boxes and a check box; free text and
points: a line edit), with the field's help as tooltip. An option added to the core appears
here without a change to this file. :meth:`OptionsPanel.options` reads the panel into an
``AnalysisOptions``; its validation is the core's (an ``InputError`` the widget shows).

Below the options, what belongs to one run rather than to the analysis: the days of the
visits and a seed point for the visits that get segmented.
"""

from __future__ import annotations

import dataclasses
import re
import typing

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QGroupBox, QLabel, QLineEdit, QSpinBox

from lesionvol.errors import InputError
from lesionvol.inputs import AnalysisOptions, point_mm

#: Hints shown in empty line edits, for fields whose help is too long for a placeholder.
PLACEHOLDERS = {"segmenter": "classical, or onnx:MODEL.onnx"}
POINT_PLACEHOLDER = "x, y, z (LPS mm)"
#: A spin box's special value standing for None (an optional int: "not given").
UNSET_INT = -1
COLUMNS = 2  # label + control pairs per line


def split_values(text: str) -> list[str]:
    """The comma-, semicolon- or space-separated values of a line edit."""
    return [v for v in re.split(r"[,;\s]+", text.strip()) if v]


def _value_type(hint) -> tuple[type, bool]:
    """The value type of a field (``int`` for ``int | None``) and whether it may be None."""
    args = typing.get_args(hint)
    if type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return typing.get_origin(inner) or inner, True
    return typing.get_origin(hint) or hint, False


class OptionsPanel(QGroupBox):
    """A control per ``AnalysisOptions`` field (``controls[name]``), plus days and seed."""

    def __init__(self, parent=None):
        super().__init__("Options", parent)
        self.controls: dict = {}
        self._readers: dict[str, typing.Callable[[], object]] = {}
        hints = typing.get_type_hints(AnalysisOptions)
        grid = QGridLayout(self)
        for i, f in enumerate(dataclasses.fields(AnalysisOptions)):
            control, read = self._control(f, *_value_type(hints[f.name]))
            control.setToolTip(AnalysisOptions.option_help(f.name))
            self.controls[f.name] = control
            self._readers[f.name] = read
            label = QLabel(f.name.replace("_", " "))
            label.setToolTip(control.toolTip())
            grid.addWidget(label, i // COLUMNS, 2 * (i % COLUMNS))
            grid.addWidget(control, i // COLUMNS, 2 * (i % COLUMNS) + 1)
        line = (len(self.controls) + COLUMNS - 1) // COLUMNS
        self.days = QLineEdit()
        self.days.setPlaceholderText("e.g. 0, 91, 365 (else DICOM dates)")
        self.days.setToolTip("days since baseline of each visit, oldest first")
        self.seed = QLineEdit()
        self.seed.setPlaceholderText(POINT_PLACEHOLDER)
        self.seed.setToolTip("a point in the femoral head, LPS mm, to guide segmentation of the visits without "
                             "masks (napari shows world coordinates as z, y, x)")
        for col, (text, edit) in enumerate((("days", self.days), ("seed", self.seed))):
            grid.addWidget(QLabel(text), line, 2 * col)
            grid.addWidget(edit, line, 2 * col + 1)

    def _control(self, f: dataclasses.Field, kind: type, optional: bool):
        """A control for one field, set to its default, and the function that reads it back."""
        choices = AnalysisOptions.option_choices(f.name)
        if choices:
            control = QComboBox()
            control.addItems(choices)
            control.setCurrentText(f.default)
            return control, control.currentText
        if kind is bool:
            control = QCheckBox()
            control.setChecked(f.default)
            return control, control.isChecked
        if kind is float and not optional:
            control = QDoubleSpinBox()
            control.setRange(-1e6, 1e6)  # what is allowed is the core's to say (AnalysisOptions validates)
            control.setValue(f.default)
            control.setSuffix(" %" if f.name.endswith("_pct") else "")
            return control, control.value
        if kind is int:
            control = QSpinBox()
            control.setRange(UNSET_INT if optional else -10**6, 10**6)
            if optional:
                control.setSpecialValueText("none")  # shown at the minimum: the value is None
            control.setValue(UNSET_INT if f.default is None else f.default)
            return control, lambda: None if optional and control.value() == UNSET_INT else control.value()
        if kind is tuple:
            control = QLineEdit()
            control.setPlaceholderText(POINT_PLACEHOLDER)
            return control, lambda: split_values(control.text()) or None  # the core checks the point
        if kind is str:
            control = QLineEdit(f.default)
            control.setPlaceholderText(PLACEHOLDERS.get(f.name, str(f.default)))
            return control, lambda: control.text().strip() or f.default
        raise TypeError(f"no control for the option {f.name} of type {f.type}")

    # -- reading the panel ----------------------------------------------------------------
    def values(self) -> dict:
        """What the controls say, one value per option (not validated)."""
        return {name: read() for name, read in self._readers.items()}

    def options(self, **overrides) -> AnalysisOptions:
        """The panel as ``AnalysisOptions`` (``overrides`` win); raises the core's ``InputError``."""
        return AnalysisOptions(**{**self.values(), **overrides})

    def day_values(self, n: int) -> list[float] | None:
        """The days of ``n`` visits, or None when the field is empty (DICOM dates then)."""
        values = split_values(self.days.text())
        if not values:
            return None
        if len(values) != n:
            raise InputError(f"{len(values)} days given for {n} visits")
        try:
            return [float(v) for v in values]
        except ValueError:
            raise InputError(f"days must be numbers, not {self.days.text()!r}") from None

    def seed_mm(self) -> tuple[float, float, float] | None:
        """The seed point (LPS mm), or None when not given; raises ``InputError`` if malformed."""
        values = split_values(self.seed.text())
        return point_mm(values, "seed (x, y, z mm)") if values else None
