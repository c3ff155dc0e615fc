"""The docked review widget: serial lesion volumes, corrected by hand, numbers live.

1. Pick the baseline and follow-up image layers (oldest first) and, for each, the lesion
   and head Labels layers if masks exist ("segment" otherwise) (:mod:`._pickers`).
2. Set the options: one control per ``AnalysisOptions`` field, plus days and a seed point
   (:mod:`._options_panel`).
3. Run: ``lesionvol.study.analyze_scans`` (segmentation where masks are missing,
   registration, measurement) runs in a napari ``thread_worker`` that reports its
   progress; the GUI stays responsive (:mod:`._run`).
4. The result: follow-ups resampled into baseline space, a change overlay (residual
   yellow, regenerated green, new magenta) on the baseline grid, lesion masks in red
   (:mod:`._results`), and the table of volumes, LF, RF, threshold flag and Steinberg
   extent per visit (:mod:`._table`). A follow-up that is neither registered nor on the
   baseline's grid gets no change maps (the core does not assume the hip did not move);
   the status line says so.
5. Paint or erase in any lesion/head Labels layer: the table and the change overlays
   update on the spot; the provenance records which masks were edited.
6. Export the table (CSV), the corrected masks and the provenance (``summary.json``)
   (:mod:`._export`).

The table and Export only ever show the last successful run of the layers now chosen: a
failed run, or another choice of layers, clears them until a run succeeds.
"""

from __future__ import annotations

import html
import os
from operator import attrgetter

from qtpy.QtWidgets import QPushButton, QVBoxLayout, QWidget

from lesionvol.errors import LesionvolError
from napari_lesionvol._export import export_dialog
from napari_lesionvol._options_panel import OptionsPanel
from napari_lesionvol._pickers import SeriesPicker
from napari_lesionvol._results import ResultLayers, legend
from napari_lesionvol._run import RunControls, RunOutcome, analysis_job, snapshot
from napari_lesionvol._table import VolumesTable


def _part(path: str) -> property:
    """A read-only attribute that is one of the widget's parts (``"run_controls.status"``)."""
    return property(attrgetter(path), doc=f"``{path}``")


class ReviewWidget(QWidget):
    """Review and correct serial lesion measurements of one hip (docked in napari)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.last_error: str | None = None
        self.series = SeriesPicker(napari_viewer)
        self.options_panel = OptionsPanel()
        self.run_controls = RunControls()
        self.table = VolumesTable()
        self.results = ResultLayers(napari_viewer, self.apply_edits, parent=self)
        self.export_button = QPushButton("Export table and corrected masks…")
        self.export_button.clicked.connect(self._export_dialog)
        self.export_button.setEnabled(False)
        self.run_button.clicked.connect(lambda: self.run())
        self.series.changed.connect(self._forget_result)

        layout = QVBoxLayout(self)
        for widget in (self.series, self.options_panel, self.run_controls, self.table, legend(), self.export_button):
            layout.addWidget(widget)
        layout.addStretch(1)

    # -- the parts, by the names scripts and tests use --------------------------------------
    rows = _part("series.rows")
    days = _part("options_panel.days")
    run_button = _part("run_controls.run_button")
    progress = _part("run_controls.progress")
    status = _part("run_controls.status")
    worker = _part("run_controls.worker")
    session = _part("results.session")

    @property
    def register_box(self):
        return self.options_panel.controls["register"]

    def set_series(self, images, lesions=None, heads=None):
        """Choose the visits programmatically (layers or layer names; None = segment)."""
        self.series.set_series(images, lesions, heads)

    def fill_from_layers(self):
        """One row per image layer (layer-list order), masks matched by name."""
        self.series.fill_from_layers()

    # -- running ----------------------------------------------------------------------------
    def run(self, transforms=None, register: bool | None = None):
        """Start the analysis in a background thread; returns the napari worker (None if the
        inputs are refused: the reason is in the status line and ``last_error``)."""
        if self.run_controls.running:
            return self.worker
        chosen = self.series.chosen()
        try:
            if not chosen:
                raise LesionvolError("choose a baseline image layer")
            days = self.options_panel.day_values(len(chosen))
            if transforms is not None and len(transforms) != len(chosen) - 1:
                raise LesionvolError(f"{len(transforms)} transforms for {len(chosen) - 1} follow-ups")
            overrides = {} if register is None else {"register": register}
            options = self.options_panel.options(**overrides)
            seed_mm = self.options_panel.seed_mm()
        except LesionvolError as exc:
            self._fail(str(exc))
            return None
        self.last_error = None
        return self.run_controls.start(analysis_job, snapshot(self.viewer, chosen), days, transforms, options,
                                       seed_mm, on_result=self._on_result, on_error=self._fail)

    def _fail(self, message: str):
        self.last_error = message
        self._forget_result()
        self.run_controls.show_error(message)

    def _forget_result(self):
        """No numbers on show that the current inputs did not produce."""
        self.results.clear()
        self.table.show_rows([])
        self.export_button.setEnabled(False)

    def _on_result(self, outcome: RunOutcome):
        self.results.show(outcome)
        session = outcome.session
        self.table.show_rows(self.table_rows())
        self.export_button.setEnabled(True)
        doubtful = [f"{tp.label}: {how}" for tp, how in zip(session.timepoints[1:], session.registration)
                    if tp.registration_qc.get("registration_doubtful")]
        apart = [tp.label for tp in session.timepoints[1:] if tp.change is None]
        self.run_controls.show_done(
            "Done. Paint or erase in a lesion or head layer: the numbers follow."
            + ("<br><span style='color:#e0a040'>Check the registration of " + "; ".join(doubtful) + "</span>"
               if doubtful else "")
            + (f"<br><span style='color:#e0a040'>No regenerated/new volumes nor change overlay for "
               f"{', '.join(apart)}: not registered and not on the baseline's grid (tick 'register')</span>"
               if apart else ""))

    # -- corrections and the table ----------------------------------------------------------
    def apply_edits(self) -> bool:
        """Re-measure the masks that were painted since the last update. True if anything changed."""
        changed = self.results.apply_edits()
        if changed:
            self.table.show_rows(self.table_rows())
            self.status.setText(f"Updated after corrections ({self.session.timepoints[0].label} is the baseline).")
        return changed

    def table_rows(self) -> list[dict]:
        """The rows currently shown (the columns of ``volumes.csv``)."""
        return self.session.rows() if self.session else []

    # -- export -----------------------------------------------------------------------------
    def export(self, folder: str | os.PathLike, overwrite: bool = False):
        """Write volumes.csv, summary.json (with the edit provenance), corrected masks, transforms."""
        self.apply_edits()
        if self.session is None:
            raise RuntimeError("nothing to export: run the analysis first")
        return self.session.export(folder, overwrite=overwrite)

    def _export_dialog(self):
        try:
            out = export_dialog(self, self.export)
        except (LesionvolError, OSError) as exc:
            message = html.escape(f"Not exported: {exc}", quote=False)
            self.status.setText(f"<span style='color:#e04040'>{message}</span>")
            return
        if out is not None:
            self.status.setText(f"Exported to {out}")
