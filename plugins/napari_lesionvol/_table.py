"""The volumes table of the review widget: the core's main columns, formatted as the CLI does.

The columns and the cell format are :data:`lesionvol.study.MAIN_COLUMNS` and
:func:`lesionvol.study.format_cell`, so the widget and ``lesionvol analyze`` show the same
numbers the same way. A follow-up whose registration is doubtful is marked in its row: a
warning sign before the visit, the row tinted, the core's reason as the tooltip.
"""

from __future__ import annotations

from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from lesionvol.study import MAIN_COLUMNS, format_cell

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
            for c, (key, _, decimals) in enumerate(MAIN_COLUMNS):
                item = QTableWidgetItem(format_cell(row.get(key), decimals))
                if key == "threshold_flag" and row.get(key) == "at_or_above":
                    item.setToolTip(f"LF ≥ {row['threshold_pct']:g} %")
                if row.get("registration_doubtful"):
                    reason = row.get("registration_doubtful_reason") or "registration doubtful"
                    item.setBackground(QBrush(QColor(WARNING_COLOR).darker(250)))
                    item.setToolTip(f"registration doubtful: {reason}")
                    if key == "timepoint":
                        item.setText(f"{WARNING_SIGN} {item.text()}")
                        item.setForeground(QBrush(QColor(WARNING_COLOR)))
                self.setItem(r, c, item)
