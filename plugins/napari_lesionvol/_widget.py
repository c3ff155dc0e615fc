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

Around these: Cancel stops a running job (closing the dock or the viewer does too, and
nothing of it is shown afterwards); 'Head from click' segments the head a reader clicks
in (:mod:`._seed`), which is also what the status line offers when a visit's head cannot
be found; 'Lesion from click' grows the lesion clicked in inside the visit's head mask
(:mod:`._seed`, the core's :mod:`lesionvol.segment.lesion_seed`); 'Propagate' carries the
baseline's mask to a follow-up through the run's registration as a starting mask
(:mod:`._propagate`); every one of them is undoable and the table follows. Chosen image
layers without physical geometry are named above the options, and visits that do not read
as T1 in the status line (:mod:`._checks`); the viewer shows each scan as a radiologist reads it (acquisition plane,
superior up, the patient's right on the left, edge letters) with T1 window presets, and
keeps the masks being edited above the derived overlays (:mod:`._view`).

The table and Export only ever show the last successful run of the layers now chosen: a
failed run, or another choice of layers, clears them until a run succeeds.
"""

from __future__ import annotations

import html
import os
from contextlib import nullcontext
from operator import attrgetter

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from lesionvol.errors import LesionvolError
from lesionvol.inputs import safe_name
from napari_lesionvol import _view
from napari_lesionvol._export import export_dialog
from napari_lesionvol._geometry import META_KEY, display_meta, layer_transform, to_display
from napari_lesionvol._options_panel import OptionsPanel
from napari_lesionvol._days import format_days, known_days
from napari_lesionvol._memory import MaskMemory
from napari_lesionvol._pickers import NONE, SEGMENT, SeriesPicker, input_layers
from napari_lesionvol._reader import labels_colormap
from napari_lesionvol._results import ResultLayers, legend
from napari_lesionvol._review import MASK_KINDS
from napari_lesionvol._run import SEEDED_HINT, RunControls, RunOutcome, analysis_job, snapshot
from napari_lesionvol._checks import contrast_warning, geometry_warning, lacks_geometry
from napari_lesionvol._propagate import PropagateTool
from napari_lesionvol._seed import (
    GrownLesion,
    HeadFromClick,
    LesionFromClick,
    MaskUndo,
    SeededMasks,
    click_to_lps,
    lesion_seed_job,
    seeded_job,
)
from napari_lesionvol._study_folder import OpenedStudy, describe_saved, open_study, save_corrections
from napari_lesionvol._table import WARNING_COLOR, VolumesTable, visits_to_check


def _part(path: str) -> property:
    """A read-only attribute that is one of the widget's parts (``"run_controls.status"``)."""
    return property(attrgetter(path), doc=f"``{path}``")


class ReviewWidget(QWidget):
    """Review and correct serial lesion measurements of one hip (docked in napari)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.last_error: str | None = None
        self.undo_record: MaskUndo | None = None
        self.series = SeriesPicker(napari_viewer)
        self.options_panel = OptionsPanel()
        self.seed_tool = HeadFromClick(napari_viewer)
        self.lesion_tool = LesionFromClick(napari_viewer)
        self.lesion_undo_record: MaskUndo | None = None
        self.propagate_tool = PropagateTool()
        self.propagate_undo_record: MaskUndo | None = None
        self.geometry_warning = QLabel("")
        self.geometry_warning.setWordWrap(True)
        self.geometry_warning.setVisible(False)
        self.run_controls = RunControls()
        self.table = VolumesTable()
        self.results = ResultLayers(napari_viewer, self.apply_edits, parent=self)
        self.memory = MaskMemory()  # the mask layers of earlier runs: edits survive Run again
        self._days_placeholder = self.options_panel.days.placeholderText()
        self.window_combo = QComboBox()
        self.window_combo.addItems(list(_view.WINDOW_PRESETS))
        self.window_combo.setCurrentText(_view.DEFAULT_WINDOW)
        self.window_combo.setToolTip("T1 window of the image layers (percentiles of each image's intensities)")
        self.window_combo.currentTextChanged.connect(self.set_window)
        self.view_button = QPushButton("Radiological view")
        self.view_button.setToolTip("the baseline's acquisition plane, superior up, the patient's right on the left")
        self.view_button.clicked.connect(lambda: self.show_radiological_view())
        self.export_button = QPushButton("Export table and corrected masks…")
        self.export_button.clicked.connect(self._export_dialog)
        self.export_button.setEnabled(False)
        self.opened_study: OpenedStudy | None = None
        self.open_study_button = QPushButton("Open result folder…")
        self.open_study_button.setToolTip("a study folder of 'lesionvol analyze' or of a batch output: its masks, "
                                          "its table, and the images (found by name and SHA-256 in a folder you pick)")
        self.open_study_button.clicked.connect(self._open_study_dialog)
        self.save_corrections_button = QPushButton("Save corrections to result folder")
        self.save_corrections_button.setToolTip("the masks edited since opening, into corrections/ of the result "
                                                "folder (masks/ is never overwritten); a batch rerun uses them")
        self.save_corrections_button.clicked.connect(lambda: self.save_corrections())
        self.save_corrections_button.setEnabled(False)
        self.run_button.clicked.connect(lambda: self.run())
        self.series.changed.connect(self._forget_result)
        self.series.changed.connect(self._offer_visits)
        self.seed_tool.clicked.connect(self.head_from_click)
        self.seed_tool.undo_button.clicked.connect(lambda: self.undo_head_from_click())
        self.lesion_tool.clicked.connect(self.lesion_from_click)
        self.lesion_tool.undo_button.clicked.connect(lambda: self.undo_lesion_from_click())
        self.propagate_tool.button.clicked.connect(
            lambda: self.propagate(self.propagate_tool.followup.currentText(), self.propagate_tool.kind.currentText()))
        self.propagate_tool.undo_button.clicked.connect(lambda: self.undo_propagate())
        self._offer_visits()

        view = QHBoxLayout()
        view.addWidget(QLabel("window"))
        view.addWidget(self.window_combo, 2)
        view.addWidget(self.view_button, 1)
        study = QHBoxLayout()
        study.addWidget(self.open_study_button)
        study.addWidget(self.save_corrections_button)
        layout = QVBoxLayout(self)
        layout.addLayout(study)
        for widget in (self.series, self.geometry_warning, self.options_panel, self.seed_tool, self.run_controls,
                       self.table, legend(), self.lesion_tool, self.propagate_tool):
            layout.addWidget(widget)
        layout.addLayout(view)
        layout.addWidget(self.export_button)
        layout.addStretch(1)

        # the radiologist's view as soon as scans are in (now, or when the first one arrives)
        self._docked = False
        self._had_images = bool(input_layers(napari_viewer, "Image"))
        napari_viewer.layers.events.inserted.connect(self._on_layer_inserted)
        if self._had_images:
            QTimer.singleShot(0, self._initial_view)
        # closing the dock or the viewer stops a running job (a plain object outlives the widgets)
        self.destroyed.connect(self.run_controls.guard.shutdown)

    # -- the parts, by the names scripts and tests use --------------------------------------
    rows = _part("series.rows")
    days = _part("options_panel.days")
    run_button = _part("run_controls.run_button")
    cancel_button = _part("run_controls.cancel_button")
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

    # -- closing ----------------------------------------------------------------------------
    def event(self, event):
        if event.type() == QEvent.Type.ParentChange:
            if self.parent() is not None:
                self._docked = True
            elif self._docked:  # napari's dock close button takes the widget out of its dock
                self._closed()
        return super().event(event)

    def closeEvent(self, event):
        self._closed()
        super().closeEvent(event)

    def _closed(self):
        """The reader closed the widget: stop the job; its result never reaches the viewer."""
        self.run_controls.shutdown()
        self.results.clear()
        try:
            self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        except (TypeError, ValueError, RuntimeError):
            pass

    # -- the view ---------------------------------------------------------------------------
    def _on_layer_inserted(self, event=None):
        if not self.run_controls.alive:
            return
        if not self._had_images and input_layers(self.viewer, "Image"):
            self._had_images = True
            QTimer.singleShot(0, self._initial_view)  # after the rest of the sample's layers

    def _initial_view(self):
        if self.run_controls.alive and input_layers(self.viewer, "Image"):
            _view.order_layers(self.viewer)
            self.set_window(self.window_combo.currentText())
            self.show_radiological_view()

    def show_radiological_view(self, centre_world=None) -> str | None:
        """The baseline's acquisition plane, superior up, the patient's right on the viewer's left."""
        chosen = self.series.chosen()
        name = chosen[0][0] if chosen else next((l.name for l in input_layers(self.viewer, "Image")), None)
        if name is None or name not in self.viewer.layers:
            return None
        return _view.show_acquisition_plane(self.viewer, self.viewer.layers[name], centre_world)

    def set_window(self, preset: str):
        """Contrast limits of the image layers from a T1 window preset."""
        _view.apply_window(self.viewer, preset)

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
            if days is None:  # not typed: the DICOM dates or the sample's days, when every visit has them
                days = self.known_days()[0]
            if transforms is not None and len(transforms) != len(chosen) - 1:
                raise LesionvolError(f"{len(transforms)} transforms for {len(chosen) - 1} follow-ups")
            overrides = {} if register is None else {"register": register}
            options = self.options_panel.options(**overrides)
            seed_mm = self.options_panel.seed_mm()
        except LesionvolError as exc:
            self._fail(str(exc))
            return None
        self.last_error = None
        states = snapshot(self.viewer, chosen)
        for item, (_, masks) in zip(states, chosen):
            for kind, name in masks.items():  # layers an earlier run measured: its native masks + edits
                native = self.memory.native_now(self.viewer.layers[name]) if kind in MASK_KINDS else None
                if native is not None:
                    item["masks"][kind]["native"] = native
        return self.run_controls.start(analysis_job, states, days, transforms, options,
                                       seed_mm, on_result=self._on_result, on_error=self._fail)

    def cancel(self) -> bool:
        """What the Cancel button does: stop the running job (True if one ran)."""
        return self.run_controls.cancel()

    def _fail(self, message: str):
        self.last_error = message
        self._forget_result()
        self.run_controls.show_error(message)
        if SEEDED_HINT in message:
            self._offer_seed_for(message)

    def _offer_seed_for(self, message: str):
        """A visit's head was not found: choose that visit in 'Head from click'."""
        label = message.partition(":")[0]
        for image, _ in self.series.chosen():
            if safe_name(image, fallback="") == label:
                self.seed_tool.visit.setCurrentText(image)
                self.seed_tool.hint.setText(f"Click 'Head from click', then click in the femoral head of {image}.")

    def _forget_result(self):
        """No numbers on show that the current inputs did not produce."""
        self.results.clear()
        self.table.show_rows([])
        self.export_button.setEnabled(False)
        self.propagate_tool.set_followups([])

    def _on_result(self, outcome: RunOutcome):
        self.results.show(outcome)
        # masks measured again from layers an earlier run showed keep their history (edited by hand,
        # the volume before the edit); the rows then point at the layers holding this run's masks,
        # so Run again measures what the reader sees and corrects, not a fresh segmentation
        given = {label: {k: v for k, v in layers.items() if k in MASK_KINDS}
                 for label, layers in outcome.mask_layers.items()}
        self.memory.carry_into(outcome.session, self.results.layer, given)
        resegment = self._point_rows_at_results(outcome)
        self.memory.remember(outcome.session, self.results.layer)
        _view.order_layers(self.viewer)
        # the layer a reader corrects first is the one selected (its paint brush at hand)
        self.viewer.layers.selection.active = self.results.layer(outcome.session.timepoints[0].label, "lesion")
        self.set_window(self.window_combo.currentText())
        self.show_radiological_view(self._lesion_centre(outcome))
        session = outcome.session
        self.table.show_rows(self.table_rows())
        self.export_button.setEnabled(True)
        self.propagate_tool.set_followups([tp.label for tp in session.timepoints[1:]])
        not_t1 = contrast_warning(self.table_rows())
        doubtful = [f"{tp.label}: {how}" for tp, how in zip(session.timepoints[1:], session.registration)
                    if tp.registration_qc.get("registration_doubtful")]
        apart = [tp.label for tp in session.timepoints[1:] if tp.change is None]
        to_check = visits_to_check(self.table_rows())
        self.run_controls.show_done(
            "Done. Paint or erase in a lesion or head layer: the numbers follow."
            + (f"<br><span style='color:{WARNING_COLOR}'>&#9888; Check the registration of "
               + html.escape("; ".join(doubtful), quote=False) + "</span>" if doubtful else "")
            + (f"<br><span style='color:{WARNING_COLOR}'>&#9888; Check " + html.escape(", ".join(to_check), quote=False)
               + ": the rows marked &#9888; in the table say what (hover them)</span>" if to_check else "")
            + (f"<br><span style='color:{WARNING_COLOR}'>&#9888; " + html.escape(not_t1, quote=False) + "</span>"
               if not_t1 else "")
            + (f"<br>Run again measures these masks, edits included (for {', '.join(resegment)}: choose "
               f"(segment) in its row to segment it anew)." if resegment else "")
            + (f"<br><span style='color:#e0a040'>No regenerated/new volumes nor change overlay for "
               f"{', '.join(apart)}: not registered and not on the baseline's grid (tick 'register')</span>"
               if apart else ""))

    def _point_rows_at_results(self, outcome: RunOutcome) -> list[str]:
        """Rows that said (segment), or held a label map, now name the Labels layers holding the run's
        masks (quietly: the same inputs). Returns the visits whose rows were changed."""
        changed = []
        with self.series.quietly():
            for tp in outcome.session.timepoints:
                row = self.series.row_of(outcome.mask_layers.get(tp.label, {}).get("image", ""))
                layers = {kind: self.results.layer(tp.label, kind) for kind in MASK_KINDS}
                if row is None or any(layer is None or layer not in self.viewer.layers for layer in layers.values()):
                    continue
                label_map = row.label_map.currentText() not in ("", NONE)
                if not label_map and all(getattr(row, kind).currentText() != SEGMENT for kind in MASK_KINDS):
                    continue
                row.label_map.setCurrentText(NONE)
                for kind, layer in layers.items():
                    getattr(row, kind).setCurrentText(layer.name)
                changed.append(tp.label)
        return changed

    def _lesion_centre(self, outcome: RunOutcome):
        """World point (z, y, x) of the baseline lesion's centre (of its head if no lesion)."""
        base = outcome.session.timepoints[0]
        for mask in (base.lesion, base.head):
            index = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0)
            if len(index):
                centre = mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in index.mean(axis=0)[::-1]])
                return np.asarray(centre)[::-1]
        return None

    # -- head from a click --------------------------------------------------------------------
    def _offer_visits(self):
        images = [image for image, _ in self.series.chosen()]
        self.seed_tool.set_visits(images)
        self.lesion_tool.set_visits(images)
        self.check_geometry()
        days, where = self.known_days()
        self.days.setPlaceholderText(f"{format_days(days)} (from {where})" if days else self._days_placeholder)

    def known_days(self) -> tuple[list[float] | None, str]:
        """The chosen visits' days when none are typed: from their DICOM dates or the sample's
        (:mod:`._days`), and where from; ``(None, "")`` when not known for every visit."""
        images = [image for image, _ in self.series.chosen()]
        if not images or any(image not in self.viewer.layers for image in images):
            return None, ""
        return known_days([self.viewer.layers[image].metadata.get(META_KEY) or {} for image in images])

    def check_geometry(self) -> list[str]:
        """Name the chosen image layers without physical geometry (a warning above the options)."""
        bare = [image for image, _ in self.series.chosen()
                if image in self.viewer.layers and lacks_geometry(self.viewer.layers[image])]
        self.geometry_warning.setText(f"<span style='color:{WARNING_COLOR}'>{geometry_warning(bare)}</span>"
                                      if bare else "")
        self.geometry_warning.setVisible(bool(bare))
        return bare

    def head_from_click(self, image_name: str, world_point) -> object | None:
        """Segment the femoral head of a visit around a point clicked in napari (world z, y, x)."""
        clicked = self._clicked(self.seed_tool, image_name, world_point)
        if clicked is None:
            return None
        layer, seed_mm, options = clicked
        from napari_lesionvol._run import layer_state

        label = safe_name(image_name, fallback="t0")
        return self.run_controls.start(seeded_job, layer_state(layer), label, seed_mm, options,
                                       on_result=self._place_seeded, on_error=self._click_failed,
                                       starting=f"{label}: segmenting around your click…")

    def _clicked(self, tool, image_name: str, world_point, refusal: str | None = None):
        """A click of a seeded tool: (image layer, point in LPS mm, options), or None after the
        tool's hint or the status line has said why not (a job running, a point outside the
        image, ``refusal``, options that do not hold)."""
        if self.run_controls.running:
            tool.hint.setText("Wait for the running job to end (or Cancel it), then click again.")
            return None
        layer = self.viewer.layers[image_name]
        seed_mm = click_to_lps(layer, world_point)
        try:
            why = tool.check_inside(layer, seed_mm) or refusal
            if why:
                raise LesionvolError(why)
            options = self.options_panel.options()
        except LesionvolError as exc:
            self._click_failed(str(exc))
            return None
        self.last_error = None
        tool.hint.setText(f"Seed at ({', '.join(f'{v:.1f}' for v in seed_mm)}) mm, LPS.")
        return layer, seed_mm, options

    def _click_failed(self, message: str):
        """A click gave no head: say why; the masks and numbers on show are untouched."""
        self.last_error = message
        self.run_controls.show_error(message)

    def _place_seeded(self, seeded: SeededMasks):
        """Put a click's masks into the visit's Labels layers (undoable) and update the numbers."""
        row = self.series.row_of(seeded.image_name)
        followed = self.session is not None and seeded.label in [tp.label for tp in self.session.timepoints]
        record = MaskUndo((row.lesion.currentText(), row.head.currentText()) if row else (SEGMENT, SEGMENT),
                          seeded.image_name)
        names = {}
        for kind in MASK_KINDS:
            names[kind] = self._put_mask(record, row, kind, seeded.label, getattr(seeded, kind), seeded.scan,
                                         seed_mm=list(seeded.seed_mm))
        self.undo_record = record
        self.seed_tool.undo_button.setEnabled(True)
        _view.order_layers(self.viewer)
        head_ml = float(np.count_nonzero(sitk.GetArrayViewFromImage(seeded.head))
                        * np.prod(seeded.head.GetSpacing()) / 1000)
        said = f"{seeded.label}: {seeded.side} femoral head from your click, {head_ml:.2f} mL."
        if row is not None:
            with self.series.quietly() if followed else nullcontext():
                row.lesion.setCurrentText(names["lesion"])
                row.head.setCurrentText(names["head"])
        if followed:
            self.apply_edits()
            self.run_controls.show_done(said + " The table follows; Undo puts the masks back.")
        else:
            self.run_controls.show_done(said + " Measuring…")
            self.run_controls.then(self.run)  # once this job's worker has ended

    def _mask_target(self, row, kind: str, label: str, meta: dict):
        """The existing Labels layer a click's mask goes into: the one the numbers follow, or the
        row's, or the one a click made before, when it is on the same display grid; else None."""
        candidates = [self.results.layer(label, kind)]
        if row is not None and getattr(row, kind).currentText() != SEGMENT:
            candidates.append(getattr(row, kind).currentText())
        candidates.append(f"{label} {kind}")
        for candidate in candidates:
            layer = self.viewer.layers[candidate] if isinstance(candidate, str) and candidate in self.viewer.layers \
                else candidate
            if layer is not None and layer in self.viewer.layers and \
                    (layer.metadata.get(META_KEY) or {}).get("display_grid") == meta["display_grid"]:
                return layer
        return None

    def undo_head_from_click(self) -> bool:
        """Put back the masks (and the row's picks) the last 'Head from click' replaced."""
        record, self.undo_record = self.undo_record, None
        self.seed_tool.undo_button.setEnabled(False)
        return self._undo(record, "Head from click")

    # -- lesion from a click ------------------------------------------------------------------
    def _visit_masks(self, image_name: str):
        """The visit's current (head, lesion) for a seeded tool: the run's native masks when the
        visit is in it, else the Labels layers chosen in its row (layer states), else None."""
        from napari_lesionvol._run import layer_state

        label = safe_name(image_name, fallback="t0")
        if self.session is not None and label in [tp.label for tp in self.session.timepoints]:
            self.apply_edits()  # brush strokes not yet carried over
            tp = self.session.timepoints[self.session.index_of(label)]
            return tp.head, tp.lesion
        row = self.series.row_of(image_name)
        picks = {kind: getattr(row, kind).currentText() if row is not None else SEGMENT for kind in MASK_KINDS}
        states = {kind: layer_state(self.viewer.layers[name], copy=True) if name in self.viewer.layers else None
                  for kind, name in picks.items()}
        return states["head"], states["lesion"]

    def lesion_from_click(self, image_name: str, world_point) -> object | None:
        """Grow the lesion clicked in (world z, y, x) inside the visit's head mask, as the
        ``lesion_definition`` option says; it replaces the lesion components it touches."""
        head, lesion = self._visit_masks(image_name)
        missing = None if head is not None else (f"{image_name} has no head mask yet: Run, or use 'Head from "
                                                 "click', or choose its head layer, then click in the lesion")
        clicked = self._clicked(self.lesion_tool, image_name, world_point, missing)
        if clicked is None:
            return None
        layer, seed_mm, options = clicked
        from napari_lesionvol._run import layer_state

        label = safe_name(image_name, fallback="t0")
        return self.run_controls.start(lesion_seed_job, layer_state(layer), label, seed_mm, head, lesion,
                                       options.lesion_definition, on_result=self._place_grown,
                                       on_error=self._click_failed, starting=f"{label}: growing the lesion…")

    def _put_mask(self, record: MaskUndo, row, kind: str, label: str, mask: sitk.Image, scan, **extra) -> str:
        """Put a native mask into the visit's Labels layer of ``kind`` (a new one if none fits),
        noting what it held in ``record``; returns the layer's name."""
        display, how = to_display(mask, is_label=True)
        meta = display_meta(mask, display, how, role=kind, source=scan.source, **extra)
        data = sitk.GetArrayFromImage(display).astype(np.uint8)
        layer = self._mask_target(row, kind, label, meta)
        if layer is None:
            name = f"{label} {kind}"
            while name in self.viewer.layers:
                name += "'"
            record.layers.append((name, None, None))
            layer = self.viewer.add_labels(data, name=name, metadata={META_KEY: meta}, colormap=labels_colormap(kind),
                                           opacity=0.6 if kind == "lesion" else 0.3, **layer_transform(display))
        else:
            record.layers.append((layer.name, np.array(layer.data, copy=True), layer.metadata.get(META_KEY)))
            layer.metadata = {**layer.metadata, META_KEY: meta}
            layer.data = data
        layer.visible = True
        return layer.name

    def _place_grown(self, grown: GrownLesion):
        """Put a click's lesion into the visit's lesion layer (undoable) and update the numbers."""
        row = self.series.row_of(grown.image_name)
        followed = self.session is not None and grown.label in [tp.label for tp in self.session.timepoints]
        record = MaskUndo((row.lesion.currentText(), row.head.currentText()) if row else (SEGMENT, SEGMENT),
                          grown.image_name)
        name = self._put_mask(record, row, "lesion", grown.label, grown.lesion, grown.scan)
        self.lesion_undo_record = record
        self.lesion_tool.undo_button.setEnabled(True)
        _view.order_layers(self.viewer)
        self.viewer.layers.selection.active = self.viewer.layers[name]
        said = f"{grown.label}: lesion grown from your click ({grown.definition}), {grown.grown_ml:.2f} mL."
        if row is not None:
            with self.series.quietly() if followed else nullcontext():
                row.lesion.setCurrentText(name)
        if followed:
            self.apply_edits()
            self.run_controls.show_done(said + " The table follows; Undo puts the lesion back.")
        else:
            self.run_controls.show_done(said + " Run to measure.")

    def undo_lesion_from_click(self) -> bool:
        """Put back the lesion mask the last 'Lesion from click' replaced."""
        record, self.lesion_undo_record = self.lesion_undo_record, None
        self.lesion_tool.undo_button.setEnabled(False)
        return self._undo(record, "Lesion from click")

    # -- propagate a baseline mask to a follow-up --------------------------------------------
    def propagate(self, label: str, kind: str = "lesion") -> bool:
        """Replace a follow-up's mask by the baseline's, carried through the run's registration
        (:func:`lesionvol.propagate.propagate_mask`, on the follow-up's grid); undoable."""
        from lesionvol.propagate import propagate_mask

        session = self.session
        if session is None or label not in [tp.label for tp in session.timepoints[1:]]:
            self._click_failed("Propagate: run first, then choose a follow-up")
            return False
        self.apply_edits()
        base, tp = session.timepoints[0], session.timepoints[session.index_of(label)]
        try:
            mask = propagate_mask(getattr(base, kind), tp.scan.image, tp.transform)
        except LesionvolError as exc:
            self._click_failed(f"{label}: {exc}")
            return False
        layer = self.results.layer(label, kind)
        if layer is None or layer not in self.viewer.layers:
            self._click_failed(f"{label}: its {kind} layer is gone; Run again")
            return False
        # the follow-up's own layer (its grid): painted like any correction, so the numbers follow
        record = MaskUndo(("", ""), "")
        record.layers.append((layer.name, np.array(layer.data, copy=True), layer.metadata.get(META_KEY)))
        display, _ = to_display(mask, is_label=True)
        layer.data = sitk.GetArrayFromImage(display).astype(np.uint8)
        layer.visible = True
        self.viewer.layers.selection.active = layer
        self.propagate_undo_record = record
        self.propagate_tool.undo_button.setEnabled(True)
        _view.order_layers(self.viewer)
        self.apply_edits()
        how = tp.change_method or "same grid"
        volume = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask)) * np.prod(mask.GetSpacing()) / 1000)
        self.run_controls.show_done(html.escape(
            f"{label}: the {base.label} {kind} propagated ({how}), {volume:.3f} mL on {label}'s grid: a starting "
            f"mask to correct. The table follows; Undo puts the {kind} back.", quote=False))
        return True

    def undo_propagate(self) -> bool:
        """Put back the follow-up mask the last 'Propagate' replaced."""
        record, self.propagate_undo_record = self.propagate_undo_record, None
        self.propagate_tool.undo_button.setEnabled(False)
        return self._undo(record, "Propagate")

    def _undo(self, record: MaskUndo | None, what: str) -> bool:
        """Put back the layers (and the row's picks) a tool replaced."""
        if record is None:
            return False
        removed = False
        for name, data, meta in record.layers:
            if name not in self.viewer.layers:
                continue
            if data is None:
                self.viewer.layers.remove(name)
                removed = True
            else:
                layer = self.viewer.layers[name]
                layer.metadata = {**layer.metadata, META_KEY: meta}
                layer.data = data
        row = self.series.row_of(record.image_name) if record.image_name else None
        if row is not None:
            with nullcontext() if removed else self.series.quietly():
                row.lesion.setCurrentText(record.row_masks[0])
                row.head.setCurrentText(record.row_masks[1])
        if self.session is not None:
            self.apply_edits()
        self.status.setText(f"{what} undone." + ("" if self.session is not None else " Run to measure."))
        return True

    # -- corrections and the table ----------------------------------------------------------
    def apply_edits(self) -> bool:
        """Re-measure the masks that were painted since the last update. True if anything changed."""
        changed = self.results.apply_edits()
        if changed:
            self.memory.remember(self.session, self.results.layer)
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

    # -- a result folder: reopened for review, corrections saved back -----------------------
    def open_result_folder(self, study_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None):
        """What 'Open result folder…' does once the folders are chosen: open the study's masks and
        images (:func:`._study_folder.open_study`), fill the visit rows (Run re-measures the masks as
        given) and show the study's ``volumes.csv``. Returns the :class:`OpenedStudy` (None if refused)."""
        if self.run_controls.running:
            self.status.setText("Wait for the running job to end (or Cancel it), then open the folder.")
            return None
        try:
            study = open_study(self.viewer, study_dir, images_dir)
        except (LesionvolError, OSError, RuntimeError) as exc:
            self._study_failed(f"Not opened: {exc}")
            return None
        self.opened_study = study
        found = [visit for visit in study.visits if visit.image is not None]
        if found:
            self.set_series([v.image.name for v in found], [v.masks["lesion"].name for v in found],
                            [v.masks["head"].name for v in found])
        self.table.show_rows(study.rows)  # after the rows: a change of inputs clears the table
        self.save_corrections_button.setEnabled(True)
        _view.order_layers(self.viewer)
        self.set_window(self.window_combo.currentText())
        if found:
            self.show_radiological_view()
        self.last_error = None
        text = html.escape(study.status(), quote=False)
        if study.doubtful or study.missing:
            text = f"<span style='color:{WARNING_COLOR}'>{text}</span>"
        self.run_controls.show_done(text)
        return study

    def save_corrections(self) -> list[dict] | None:
        """What 'Save corrections to result folder' does: each lesion or head layer edited since
        the folder was opened, on its scan's own grid, into ``corrections/``. Returns the entries saved."""
        if self.opened_study is None:
            self._study_failed("Open a result folder first.")
            return None
        try:
            saved = save_corrections(self.opened_study, self.viewer)
        except (LesionvolError, OSError) as exc:
            self._study_failed(f"Not saved: {exc}")
            return None
        self.run_controls.show_done(html.escape(describe_saved(self.opened_study.study_dir, saved), quote=False))
        return saved

    def _study_failed(self, message: str):
        self.last_error = message
        self.status.setText(f"<span style='color:#e04040'>{html.escape(message, quote=False)}</span>")

    def _open_study_dialog(self):
        from qtpy.QtWidgets import QFileDialog

        study_dir = QFileDialog.getExistingDirectory(self, "Open a lesionvol result folder (one study)")
        if not study_dir:
            return
        images_dir = QFileDialog.getExistingDirectory(
            self, "Folder holding the study's images (Cancel: only image layers already open)")
        self.open_result_folder(study_dir, images_dir or None)
