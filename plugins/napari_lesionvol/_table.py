"""The volumes table of the review widget: the core's main columns, formatted as the CLI does.

The columns and the cell format are :data:`lesionvol.study.MAIN_COLUMNS` and
:func:`lesionvol.study.format_cell`, so the widget and ``lesionvol analyze`` show the same
numbers the same way.
"""

from __future__ import annotations

from qtpy.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from lesionvol.study import MAIN_COLUMNS, format_cell


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
                self.setItem(r, c, item)
