"""The docked review widget: serial lesion volumes, corrected by hand, numbers live.

1. Pick the baseline and follow-up image layers (oldest first) and, for each, the lesion
   and head Labels layers if masks exist ("segment" otherwise).
2. Run: ``lesionvol.study.analyze_scans`` (segmentation where masks are missing,
   registration, measurement) runs in a napari ``thread_worker`` that reports its
   progress; the GUI stays responsive.
3. The result: follow-ups resampled into baseline space, a change overlay (residual
   yellow, regenerated green, new magenta) on the baseline grid, lesion masks in red,
   and the table of volumes, LF, RF, threshold flag and Steinberg extent per visit. A
   follow-up that is neither registered nor on the baseline's grid gets no change maps
   (the core does not assume the hip did not move); the status line says so.
4. Paint or erase in any lesion/head Labels layer: the table and the change overlays
   update on the spot; the provenance records which masks were edited.
5. Export the table (CSV), the corrected masks and the provenance (``summary.json``).
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import partial

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from lesionvol.geometry import same_grid
from lesionvol.inputs import AnalysisOptions, Visit
from napari_lesionvol._geometry import (
    META_KEY,
    apply_display_edit,
    display_meta,
    layer_image,
    layer_transform,
    mask_from_layer,
    reference_image,
    to_display,
    to_native,
)
from napari_lesionvol._reader import labels_colormap, role_of
from napari_lesionvol._review import (
    CHANGE_COLORS,
    MASK_KINDS,
    Progress,
    ReviewSession,
    analyze_visits,
    change_label_image,
    followup_in_baseline,
)

SEGMENT = "(segment)"
NONE = "(none)"
#: Table columns: (header, row key, format)
COLUMNS = (
    ("visit", "timepoint", "{}"),
    ("days", "days", "{:g}"),
    ("head mL", "head_volume_ml", "{:.2f}"),
    ("lesion mL", "lesion_volume_ml", "{:.3f}"),
    ("LF %", "lesion_pct_head", "{:.1f}"),
    ("RF %", "residual_pct_baseline", "{:.1f}"),
    ("regen. mL", "regenerated_ml", "{:.3f}"),
    ("new mL", "new_lesion_ml", "{:.3f}"),
    ("flag", "threshold_flag", "{}"),
    ("Steinberg", "steinberg_extent", "{}"),
    ("masks", "mask_source", "{}"),
)
EDIT_DELAY_MS = 150


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8).data, digest_size=16).hexdigest()


class _VisitRow:
    """One visit's three pickers: image, lesion mask, head mask."""

    def __init__(self, title: str):
        self.title = QLabel(title)
        self.image = QComboBox()
        self.lesion = QComboBox()
        self.head = QComboBox()
        for combo, tip in ((self.image, "image layer of this visit"),
                           (self.lesion, "lesion Labels layer, or (segment)"),
                           (self.head, "femoral head Labels layer, or (segment)")):
            combo.setToolTip(tip)
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)

    def widgets(self):
        return (self.title, self.image, self.lesion, self.head)


class ReviewWidget(QWidget):
    """Review and correct serial lesion measurements of one hip (docked in napari)."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: ReviewSession | None = None
        self.worker = None
        self.last_error: str | None = None
        self._mask_layers: dict[tuple[str, str], object] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._shown: dict[tuple[str, str], np.ndarray] = {}  # mask as displayed at the last update
        self._dirty: set[tuple[str, str]] = set()
        self._connections: list[tuple[object, object]] = []
        self._edit_timer = QTimer(self)
        self._edit_timer.setSingleShot(True)
        self._edit_timer.setInterval(EDIT_DELAY_MS)
        self._edit_timer.timeout.connect(self.apply_edits)

        layout = QVBoxLayout(self)
        series = QGroupBox("Series (oldest first)")
        self._grid = QGridLayout(series)
        for col, text in enumerate(("", "image", "lesion", "head")):
            self._grid.addWidget(QLabel(f"<b>{text}</b>"), 0, col)
        self.rows: list[_VisitRow] = []
        buttons = QHBoxLayout()
        self.add_button = QPushButton("+ follow-up")
        self.add_button.clicked.connect(lambda: self._add_row())
        self.remove_button = QPushButton("− follow-up")
        self.remove_button.clicked.connect(self._remove_row)
        self.fill_button = QPushButton("Fill from layers")
        self.fill_button.setToolTip("One row per image layer, in layer-list order; masks matched by name")
        self.fill_button.clicked.connect(self.fill_from_layers)
        for b in (self.add_button, self.remove_button, self.fill_button):
            buttons.addWidget(b)
        layout.addWidget(series)
        layout.addLayout(buttons)

        options = QGroupBox("Options")
        form = QGridLayout(options)
        self.register_box = QCheckBox("register follow-ups to baseline (rigid, in the head)")
        self.register_box.setChecked(True)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.1, 100.0)
        self.threshold.setValue(10.0)
        self.threshold.setSuffix(" % of head")
        self.threshold.setToolTip("LF threshold for the flag (10 %: Gomez-Barrena 2022, exploratory)")
        self.side = QComboBox()
        self.side.addItems(["auto", "right", "left"])
        self.definition = QComboBox()
        self.definition.addItems(["enclosed", "dark"])
        self.definition.setToolTip("lesion definition used when segmenting")
        self.days = QLineEdit()
        self.days.setPlaceholderText("e.g. 0, 91, 365 (else DICOM dates)")
        form.addWidget(self.register_box, 0, 0, 1, 4)
        form.addWidget(QLabel("threshold"), 1, 0)
        form.addWidget(self.threshold, 1, 1)
        form.addWidget(QLabel("side"), 1, 2)
        form.addWidget(self.side, 1, 3)
        form.addWidget(QLabel("lesion"), 2, 0)
        form.addWidget(self.definition, 2, 1)
        form.addWidget(QLabel("days"), 2, 2)
        form.addWidget(self.days, 2, 3)
        layout.addWidget(options)

        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Choose the images, then Run.")
        self.status.setWordWrap(True)
        layout.addWidget(self.run_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)
        layout.addWidget(self.table)
        self.legend = QLabel(
            "<span style='color:#ff1a1a'>■</span> lesion &nbsp; "
            "<span style='color:#ffd900'>■</span> residual &nbsp; "
            "<span style='color:#1ae633'>■</span> regenerated &nbsp; "
            "<span style='color:#ff00ff'>■</span> new (baseline space)")
        layout.addWidget(self.legend)
        self.export_button = QPushButton("Export table and corrected masks…")
        self.export_button.clicked.connect(self._export_dialog)
        self.export_button.setEnabled(False)
        layout.addWidget(self.export_button)
        layout.addStretch(1)

        self._add_row()
        self._add_row()
        self._layer_events = (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                              self.viewer.layers.events.moved)
        for event in self._layer_events:
            event.connect(self._refresh_choices)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_choices)
        self._refresh_choices()
        self.fill_from_layers()

    # -- layer pickers ----------------------------------------------------------------------
    def _image_layers(self):
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim == 3
                and not layer.metadata.get(META_KEY, {}).get("derived")]

    def _labels_layers(self):
        from napari.layers import Labels

        return [layer for layer in self.viewer.layers if isinstance(layer, Labels) and layer.ndim == 3
                and not layer.metadata.get(META_KEY, {}).get("derived")]

    def _add_row(self):
        row = _VisitRow("baseline" if not self.rows else f"follow-up {len(self.rows)}")
        self.rows.append(row)
        for col, widget in enumerate(row.widgets()):
            self._grid.addWidget(widget, len(self.rows), col)
        self._refresh_choices()
        return row

    def _remove_row(self):
        if len(self.rows) <= 1:
            return
        row = self.rows.pop()
        for widget in row.widgets():
            self._grid.removeWidget(widget)
            widget.deleteLater()

    def _refresh_choices(self, event=None):
        if event is not None and getattr(event, "type", "") == "inserted":
            event.value.events.name.connect(self._refresh_choices)
        try:
            self._fill_choices()
        except RuntimeError:  # the dock was closed and its Qt widgets deleted: stop listening
            for emitter in self._layer_events:
                emitter.disconnect(self._refresh_choices)

    def _fill_choices(self):
        images = [layer.name for layer in self._image_layers()]
        masks = [layer.name for layer in self._labels_layers()]
        for row in self.rows:
            for combo, names, first in ((row.image, images, NONE), (row.lesion, masks, SEGMENT),
                                        (row.head, masks, SEGMENT)):
                current = combo.currentText()
                combo.blockSignals(True)
                combo.clear()
                combo.addItems([first, *names])
                combo.setCurrentText(current if current in names else first)
                combo.blockSignals(False)

    def _mask_for(self, image_name: str, kind: str) -> str:
        """The Labels layer that belongs to an image by name (``<image>_lesion`` etc.)."""
        candidates = [layer.name for layer in self._labels_layers() if role_of(layer.name) == kind]
        stem = image_name.lower()
        for name in candidates:
            if name.lower().startswith(stem) and name.lower()[len(stem):].strip(" _-") in (kind, f"{kind} mask"):
                return name
        return SEGMENT

    def fill_from_layers(self):
        """One row per image layer (layer-list order), masks matched by name."""
        images = [layer.name for layer in self._image_layers()]
        if not images:
            return
        while len(self.rows) < len(images):
            self._add_row()
        while len(self.rows) > max(len(images), 1):
            self._remove_row()
        for row, name in zip(self.rows, images):
            row.image.setCurrentText(name)
            row.lesion.setCurrentText(self._mask_for(name, "lesion"))
            row.head.setCurrentText(self._mask_for(name, "head"))

    def set_series(self, images, lesions=None, heads=None):
        """Choose the visits programmatically (layers or layer names; None = segment)."""
        def name(x):
            return x if isinstance(x, str) or x is None else x.name

        n = len(images)
        lesions = lesions or [None] * n
        heads = heads or [None] * n
        while len(self.rows) < n:
            self._add_row()
        while len(self.rows) > n:
            self._remove_row()
        for row, image, lesion, head in zip(self.rows, images, lesions, heads):
            row.image.setCurrentText(name(image))
            row.lesion.setCurrentText(name(lesion) or SEGMENT)
            row.head.setCurrentText(name(head) or SEGMENT)

    # -- running ----------------------------------------------------------------------------
    def _parse_days(self, n: int):
        text = self.days.text().strip()
        if not text:
            return None
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
        if len(values) != n:
            raise ValueError(f"{len(values)} days given for {n} visits")
        return values

    def _snapshot(self) -> list[dict]:
        """What the worker needs from the layers, copied on the GUI thread."""
        snapshot = []
        for row in self.rows:
            if row.image.currentText() == NONE:
                continue
            image = self.viewer.layers[row.image.currentText()]
            item = {"label": image.name, "image": self._layer_state(image), "masks": {}}
            for kind, combo in (("lesion", row.lesion), ("head", row.head)):
                if combo.currentText() != SEGMENT:
                    item["masks"][kind] = self._layer_state(self.viewer.layers[combo.currentText()], copy=True)
            snapshot.append(item)
        return snapshot

    @staticmethod
    def _layer_state(layer, copy: bool = False) -> dict:
        data = np.array(layer.data, copy=True) if copy else np.asarray(layer.data)
        return {"name": layer.name, "data": data, "meta": dict(layer.metadata.get(META_KEY, {})),
                "scale": np.asarray(layer.scale), "translate": np.asarray(layer.translate),
                "rotate": np.asarray(layer.rotate)}

    def run(self, transforms=None, register: bool | None = None):
        """Start the analysis in a background thread; returns the napari worker."""
        from napari.qt.threading import create_worker

        if self.worker is not None and self.worker.is_running:
            return self.worker
        snapshot = self._snapshot()
        if not snapshot:
            self._fail("choose a baseline image layer")
            return None
        try:
            days = self._parse_days(len(snapshot))
        except ValueError as exc:
            self._fail(str(exc))
            return None
        if transforms is not None and len(transforms) != len(snapshot) - 1:
            self._fail(f"{len(transforms)} transforms for {len(snapshot) - 1} follow-ups")
            return None
        options = AnalysisOptions(
            register=self.register_box.isChecked() if register is None else register,
            threshold_pct=float(self.threshold.value()), side=self.side.currentText(),
            lesion_definition=self.definition.currentText())
        self.last_error = None
        self.run_button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy until the first report
        self.status.setText("Reading the scans…")
        # errors are shown in the status line (and napari's notifications), not re-raised into Qt
        self.worker = create_worker(_analysis_job, snapshot, days, transforms, options, _ignore_errors=True)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_result)
        self.worker.errored.connect(lambda exc: self._fail(f"{type(exc).__name__}: {exc}"))
        self.worker.finished.connect(lambda: self.run_button.setEnabled(True))
        self.worker.start()
        return self.worker

    def _on_progress(self, progress: Progress):
        self.progress.setRange(0, progress.total)
        self.progress.setValue(progress.step)
        self.status.setText(progress.message)

    def _fail(self, message: str):
        self.last_error = message
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"<span style='color:#e04040'>{message}</span>")
        self.run_button.setEnabled(True)

    def _on_result(self, outcome):
        session, display = outcome
        self._disconnect_all()
        self.session = session
        base = session.timepoints[0]
        for tp in session.timepoints:
            for kind in MASK_KINDS:
                layer = self._mask_layer(tp, kind)
                self._mask_layers[(tp.label, kind)] = layer
                self._digests[(tp.label, kind)] = _digest(np.asarray(layer.data))
                self._shown[(tp.label, kind)] = np.asarray(layer.data) != 0
                for emitter in (layer.events.paint, layer.events.data, layer.events.set_data):
                    callback = partial(self._on_edit, tp.label, kind)
                    emitter.connect(callback)
                    self._connections.append((emitter, callback))
        for tp, in_base in zip(session.timepoints[1:], display["followups"]):
            derived = {f"{tp.label} in {base.label} space": ("image", in_base),
                       f"{tp.label} change": ("labels", change_label_image(tp) if tp.change is not None else None)}
            for name, (kind, image) in derived.items():
                if image is not None:
                    self._derived_layer(name, kind, image, base)
                elif name in self.viewer.layers:  # left from an earlier run: it would show stale numbers
                    self.viewer.layers.remove(name)
            # follow-ups are reviewed in baseline space; their native layers stay one click away
            if tp.label in self.viewer.layers:
                self.viewer.layers[tp.label].visible = False
            for kind in MASK_KINDS:
                self._mask_layers[(tp.label, kind)].visible = False
        self._mask_layers[(base.label, "lesion")].visible = True
        self.update_table()
        self.export_button.setEnabled(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        doubtful = [f"{tp.label}: {how}" for tp, how in zip(session.timepoints[1:], session.registration)
                    if tp.registration_qc.get("registration_doubtful")]
        apart = [tp.label for tp in session.timepoints[1:] if tp.change is None]
        self.status.setText(
            "Done. Paint or erase in a lesion or head layer: the numbers follow."
            + ("<br><span style='color:#e0a040'>Check the registration of " + "; ".join(doubtful) + "</span>"
               if doubtful else "")
            + (f"<br><span style='color:#e0a040'>No regenerated/new volumes nor change overlay for "
               f"{', '.join(apart)}: not registered and not on the baseline's grid (tick 'register')</span>"
               if apart else ""))

    # -- layers -----------------------------------------------------------------------------
    def _mask_layer(self, tp, kind: str):
        """The Labels layer holding a visit's mask: the one chosen, or a new one."""
        origin = self.session.mask_origin.get(tp.label, {}).get(kind, "")
        if origin.startswith("layer '"):
            name = origin[len("layer '"):].split("'")[0]
            if name in self.viewer.layers:
                return self.viewer.layers[name]
        name = f"{tp.label} {kind}"
        mask = getattr(tp, kind)
        display, how = to_display(mask, is_label=True)
        meta = display_meta(mask, display, how, role=kind, source=tp.scan.source)
        data = sitk.GetArrayFromImage(display).astype(np.uint8)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.metadata = {**layer.metadata, META_KEY: meta}
            return layer
        return self.viewer.add_labels(data, name=name, metadata={META_KEY: meta}, colormap=labels_colormap(kind),
                                      opacity=0.6 if kind == "lesion" else 0.3, **layer_transform(display))

    def _derived_layer(self, name: str, kind: str, image: sitk.Image, base):
        """A layer on the baseline's display grid (derived layers keep their source's geometry)."""
        display, how = to_display(image, is_label=(kind == "labels"))
        meta = display_meta(base.scan.image, display, how, derived=True, source=base.scan.source)
        data = sitk.GetArrayFromImage(display)
        geometry = layer_transform(display)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            return layer
        if kind == "labels":
            return self.viewer.add_labels(data.astype(np.uint8), name=name, metadata={META_KEY: meta},
                                          colormap=CHANGE_COLORS, opacity=0.55, **geometry)
        finite = data[np.isfinite(data)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        return self.viewer.add_image(data, name=name, metadata={META_KEY: meta}, colormap="gray",
                                     contrast_limits=(float(lo), float(max(hi, lo + 1))), visible=False, **geometry)

    # -- corrections ------------------------------------------------------------------------
    def _on_edit(self, label: str, kind: str, event=None):
        self._dirty.add((label, kind))
        self._edit_timer.start()

    def apply_edits(self) -> bool:
        """Re-measure the masks that were painted since the last update. True if anything changed."""
        self._edit_timer.stop()
        if self.session is None:
            return False
        dirty, self._dirty = self._dirty, set()
        changed_any = False
        base_label = self.session.timepoints[0].label
        for label, kind in sorted(dirty):
            layer = self._mask_layers.get((label, kind))
            if layer is None or layer not in self.viewer.layers:
                continue
            digest = _digest(np.asarray(layer.data))
            if digest == self._digests.get((label, kind)):
                continue
            self._digests[(label, kind)] = digest
            index = self.session.index_of(label)
            tp = self.session.timepoints[index]
            shown = np.asarray(layer.data) != 0
            meta = layer.metadata.get(META_KEY) or {}
            if "native_grid" in meta and same_grid(reference_image(meta["native_grid"]), tp.scan.image):
                # carry the painted voxels over; untouched voxels keep their native values
                mask = apply_display_edit(getattr(tp, kind), self._shown[(label, kind)], shown, meta)
            else:
                mask, _ = mask_from_layer(shown, meta or None, layer.scale, layer.translate, layer.rotate,
                                          tp.scan.image)
            self._shown[(label, kind)] = shown
            for i in self.session.update_mask(index, kind, mask):
                follow = self.session.timepoints[i]
                name = f"{follow.label} change"
                if name in self.viewer.layers:
                    display, _ = to_display(change_label_image(follow), is_label=True)
                    self.viewer.layers[name].data = sitk.GetArrayFromImage(display).astype(np.uint8)
            changed_any = True
        if changed_any:
            self.update_table()
            self.status.setText(f"Updated after corrections ({base_label} is the baseline).")
        return changed_any

    def table_rows(self) -> list[dict]:
        """The rows currently shown (the columns of ``volumes.csv``)."""
        return self.session.rows() if self.session else []

    def update_table(self):
        rows = self.table_rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (_, key, fmt) in enumerate(COLUMNS):
                value = row.get(key)
                text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)
                item = QTableWidgetItem(text)
                if key == "threshold_flag" and value == "at_or_above":
                    item.setToolTip(f"LF ≥ {row['threshold_pct']:g} %")
                self.table.setItem(r, c, item)

    # -- export -----------------------------------------------------------------------------
    def export(self, folder: str | os.PathLike, overwrite: bool = False):
        """Write volumes.csv, summary.json (with the edit provenance), corrected masks, transforms."""
        self.apply_edits()
        if self.session is None:
            raise RuntimeError("nothing to export: run the analysis first")
        return self.session.export(folder, overwrite=overwrite)

    def _export_dialog(self):
        from lesionvol.errors import OutputExistsError

        folder = QFileDialog.getExistingDirectory(self, "Export into a new or empty folder")
        if not folder:
            return
        try:
            out = self.export(folder)
        except OutputExistsError:
            answer = QMessageBox.question(self, "Replace?", f"'{folder}' is not empty. Replace its whole content?")
            if answer != QMessageBox.StandardButton.Yes:
                return
            out = self.export(folder, overwrite=True)
        self.status.setText(f"Exported to {out}")

    def _disconnect_all(self):
        for emitter, callback in self._connections:
            try:
                emitter.disconnect(callback)
            except Exception:  # the layer may be gone already
                pass
        self._connections.clear()
        self._mask_layers.clear()
        self._digests.clear()
        self._shown.clear()


def _scan_from_state(state: dict):
    """The native scan of an image layer: re-read from its file when unchanged, else from the layer."""
    from lesionvol.io import Scan, read_scan

    meta = state["meta"]
    source = meta.get("source")
    if source and os.path.exists(source):
        scan = read_scan(source)
        if not meta.get("sha256") or meta["sha256"] == scan.sha256:
            return scan
    if "native_grid" in meta:
        image = to_native(state["data"], meta, is_label=False)
    else:
        image = layer_image(state["data"], state["scale"], state["translate"], state["rotate"])
    return Scan(image=image, source=state["name"])


def _analysis_job(snapshot: list[dict], days, transforms, options: AnalysisOptions):
    """Worker body (runs off the GUI thread): yields Progress, returns (session, display images)."""
    visits, origins = [], {}
    days = days or [None] * len(snapshot)
    transforms = [None, *transforms] if transforms is not None else [None] * len(snapshot)
    for item, day, transform in zip(snapshot, days, transforms):
        yield Progress(0, 1, f"{item['label']}: reading")
        scan = _scan_from_state(item["image"])
        masks, origin = {}, {}
        for kind, state in item["masks"].items():
            masks[kind], how = mask_from_layer(state["data"], state["meta"] or None, state["scale"],
                                               state["translate"], state["rotate"], scan.image)
            origin[kind] = f"layer '{state['name']}'" + (f" ({os.path.basename(state['meta']['source'])})"
                                                        if state["meta"].get("source") else "")
            if how != "same grid":
                origin[kind] += f", {how}"
        visits.append(Visit(scan, label=item["label"], lesion=masks.get("lesion"), head=masks.get("head"), days=day,
                            transform=transform))
        origins[item["label"]] = origin
    session = None
    for item in analyze_visits(visits, options, origins):
        if isinstance(item, ReviewSession):
            session = item
        else:
            yield item
    reference = session.timepoints[0].scan.image
    # a follow-up the core did not compare (not registered, other grid) has no place in baseline space
    followups = [followup_in_baseline(tp.scan.image, reference, tp.transform)
                 if tp.transform is not None or tp.change is not None else None
                 for tp in session.timepoints[1:]]
    return session, {"followups": followups}
