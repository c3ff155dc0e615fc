"""Export from the review widget: ask for a folder, and before replacing anything in it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtWidgets import QFileDialog, QMessageBox, QWidget

from lesionvol.errors import OutputExistsError
from lesionvol.outdir import has_results


def export_dialog(parent: QWidget, export: Callable[..., Path]) -> Path | None:
    """Ask for a folder and call ``export(folder, overwrite=...)``; None if nothing was written.

    Only a folder holding lesionvol results is offered for replacement (after the reader says
    so); any other non-empty folder is refused, since replacing it would delete its files.
    """
    folder = QFileDialog.getExistingDirectory(parent, "Export into a new or empty folder")
    if not folder:
        return None
    try:
        return export(folder)
    except OutputExistsError:
        if not has_results(folder):
            raise OutputExistsError(f"'{folder}' is not empty and holds no lesionvol results: "
                                    "choose a new or empty folder") from None
        answer = QMessageBox.question(parent, "Replace?", f"'{folder}' holds lesionvol results. Replace them?")
        if answer != QMessageBox.StandardButton.Yes:
            return None
        return export(folder, overwrite=True)
