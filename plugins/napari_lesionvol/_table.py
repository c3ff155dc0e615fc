"""The volumes table of the review widget: the core's main columns, formatted as the CLI does.

The columns and the cell format are :data:`lesionvol.study.MAIN_COLUMNS` and
:func:`lesionvol.study.format_cell`, so the widget and ``lesionvol analyze`` show the same
numbers the same way. A visit with something to check (:func:`lesionvol.study.row_checks`: a
doubtful registration, a head whose dome a lesion hides, a lesion on thick slices, ...) is marked
in its row: a warning sign before the visit, the row tinted, the core's checks as the tooltip.
"""

from __future__ import annotations

from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from lesionvol.study import MAIN_COLUMNS, format_cell, row_checks

WARNING_SIGN = "\u26a0"
WARNING_COLOR = "#e0a040"


class VolumesTable(QTableWidget):
    """One line per visit; read-only."""

    def __init__(self, parent=None):
        super().__init__(0, len(MAIN_COLUMNS), parent)
        self.setHorizontalHeaderLabels([header for _, header, _ in MAIN_COLUMNS])
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.setMinimumHeight(120)

    def show_rows(self, rows: list[dict]):
        """Show the rows of ``StudyResult.rows()`` (an empty list clears the table)."""
        self.clearContents()
        self.setRowCount(len(rows))
        for r, row in enumerate(rows):
            checks = "\n".join(f"check: {check}" for check in row_checks(row))
            for c, (key, _, decimals) in enumerate(MAIN_COLUMNS):
                item = QTableWidgetItem(format_cell(row.get(key), decimals))
                tips = []
                if key == "threshold_flag" and row.get(key) == "at_or_above":
                    tips.append(f"LF ≥ {row['threshold_pct']:g} %")
                if checks:
                    item.setBackground(QBrush(QColor(WARNING_COLOR).darker(250)))
                    tips.append(checks)
                    if key == "timepoint":
                        item.setText(f"{WARNING_SIGN} {item.text()}")
                        item.setForeground(QBrush(QColor(WARNING_COLOR)))
                if tips:
                    item.setToolTip("\n".join(tips))
                self.setItem(r, c, item)


def visits_to_check(rows: list[dict]) -> list[str]:
    """The visits of ``rows`` with something to check other than their registration (the status line names a
    doubtful registration with its reason), for the status line after a run."""
    return [row["timepoint"] for row in rows if row_checks({**row, "registration_doubtful": False})]
