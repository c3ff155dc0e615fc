"""The run of the review widget: the layers copied on the GUI thread, the analysis in a
napari worker, and the controls that show how it goes (Run button, progress, status line).

The worker body, :func:`analysis_job`, builds one :class:`~lesionvol.inputs.Visit` per row
and runs :func:`napari_lesionvol._review.analyze_visits` (the core's ``analyze_scans``);
it returns a :class:`RunOutcome` that also says which layer held each given mask, so the
widget finds those layers again by name, not by reading its own provenance text.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from lesionvol.inputs import AnalysisOptions, Visit, safe_name
from napari_lesionvol._geometry import META_KEY, layer_image, mask_from_layer, to_native
from napari_lesionvol._review import Progress, ReviewSession, analyze_visits, followup_in_baseline


@dataclass
class RunOutcome:
    """What a run hands back to the GUI thread."""

    session: ReviewSession
    #: each follow-up resampled into baseline space (None: the core did not compare it)
    followups_in_baseline: list[sitk.Image | None]
    #: ``{visit label: {"image" or kind: layer name}}``: the image layer and the Labels layers a visit came from
    mask_layers: dict[str, dict[str, str]] = field(default_factory=dict)


def layer_state(layer, copy: bool = False) -> dict:
    """What the worker needs of a layer, taken on the GUI thread (masks copied: they may be painted)."""
    data = np.array(layer.data, copy=True) if copy else np.asarray(layer.data)
    return {"name": layer.name, "data": data, "meta": dict(layer.metadata.get(META_KEY, {})),
            "scale": np.asarray(layer.scale), "translate": np.asarray(layer.translate),
            "rotate": np.asarray(layer.rotate)}


def snapshot(viewer, chosen: list[tuple[str, dict[str, str]]]) -> list[dict]:
    """The chosen layers (``(image name, {kind: mask name})`` per visit) as the worker reads them."""
    # the visit's label names files: a layer name such as "T1 cor (3 mo)" becomes T1_cor_3_mo
    return [{"label": safe_name(image, fallback=f"t{i}"), "image": layer_state(viewer.layers[image]),
             "masks": {kind: layer_state(viewer.layers[name], copy=True) for kind, name in masks.items()}}
            for i, (image, masks) in enumerate(chosen)]


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


def _mask_origin(state: dict, how: str) -> str:
    """Where a given mask came from, in words, for the provenance in ``summary.json``."""
    source = state["meta"].get("source")
    return (f"layer '{state['name']}'" + (f" ({os.path.basename(source)})" if source else "")
            + (f", {how}" if how != "same grid" else ""))


def analysis_job(snapshot: list[dict], days, transforms, options: AnalysisOptions, seed_mm=None):
    """Worker body (runs off the GUI thread): yields Progress, returns a :class:`RunOutcome`.

    ``seed_mm`` goes to the visits that get segmented (those missing a mask).
    """
    visits, origins, layers = [], {}, {}
    days = days or [None] * len(snapshot)
    transforms = [None, *transforms] if transforms is not None else [None] * len(snapshot)
    for item, day, transform in zip(snapshot, days, transforms):
        yield Progress(0, 1, f"{item['label']}: reading")
        scan = _scan_from_state(item["image"])
        masks, origin = {}, {}
        for kind, state in item["masks"].items():
            masks[kind], how = mask_from_layer(state["data"], state["meta"] or None, state["scale"],
                                               state["translate"], state["rotate"], scan.image)
            origin[kind] = _mask_origin(state, how)
        segmented = len(masks) < 2
        visits.append(Visit(scan, label=item["label"], lesion=masks.get("lesion"), head=masks.get("head"), days=day,
                            transform=transform, seed_mm=seed_mm if segmented else None))
        origins[item["label"]] = origin
        layers[item["label"]] = {"image": item["image"]["name"],
                                 **{kind: state["name"] for kind, state in item["masks"].items()}}
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
    return RunOutcome(session, followups, layers)


class RunControls(QWidget):
    """The Run button, the progress bar and the status line; starts the worker."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.worker = None
        self.run_button = QPushButton("Run")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Choose the images, then Run.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.run_button, self.progress, self.status):
            layout.addWidget(widget)

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.is_running

    def start(self, job, *args, on_result, on_error):
        """Run ``job(*args)`` in a napari worker; its progress is shown here, its errors go to
        ``on_error(message)`` (not re-raised into Qt)."""
        from napari.qt.threading import create_worker

        self.run_button.setEnabled(False)
        self.progress.setRange(0, 0)  # busy until the first report
        self.status.setText("Reading the scans…")
        self.worker = create_worker(job, *args, _ignore_errors=True)
        self.worker.yielded.connect(self.show_progress)
        self.worker.returned.connect(on_result)
        self.worker.errored.connect(lambda exc: on_error(f"{type(exc).__name__}: {exc}"))
        self.worker.finished.connect(lambda: self.run_button.setEnabled(True))
        self.worker.start()
        return self.worker

    def show_progress(self, progress: Progress):
        self.progress.setRange(0, progress.total)
        self.progress.setValue(progress.step)
        self.status.setText(progress.message)

    def show_done(self, message: str):
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.status.setText(message)

    def show_error(self, message: str):
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"<span style='color:#e04040'>{html.escape(message, quote=False)}</span>")
        self.run_button.setEnabled(True)
