"""The run of the review widget: the layers copied on the GUI thread, the analysis in a
napari worker, and the controls that show how it goes (Run button, progress, status line).

The worker body, :func:`analysis_job`, builds one :class:`~lesionvol.inputs.Visit` per row
and runs :func:`napari_lesionvol._review.analyze_visits` (the core's ``analyze_scans``);
it returns a :class:`RunOutcome` that also says which layer held each given mask, so the
widget finds those layers again by name, not by reading its own provenance text.

Every job (an analysis, a head from a click) can be cancelled: Cancel sets the job's
``threading.Event`` (the core stops at its next step, the worker at once) and asks the
napari worker to quit. Closing the dock or the viewer does the same through
:meth:`RunControls.shutdown`; from then on no signal of the job touches a widget or the
viewer, so a run that ends after the dock is gone adds no layer and cannot take a deleted
Qt object down with it. At interpreter exit the jobs still running are cancelled and waited
for (:func:`stop_jobs_at_exit`): Python must not finalize while a worker thread is inside
compiled code, or the process aborts when that thread next asks for the interpreter.
"""

from __future__ import annotations

import atexit
import html
import os
import re
import threading
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from lesionvol.errors import InputError, LesionvolError
from lesionvol.geometry import grid_difference
from lesionvol.inputs import AnalysisOptions, Visit, safe_name, split_label_map
from napari_lesionvol._geometry import META_KEY, labels_to_native, layer_image, mask_from_layer, to_native
from napari_lesionvol._review import Cancelled, Progress, ReviewSession, analyze_visits, followup_in_baseline

#: What the status line offers when a visit's head cannot be found.
SEEDED_HINT = "click in its head with 'Head from click'"


class JobError(LesionvolError):
    """A job's unexpected error, passed on as text (napari's worker drops RuntimeErrors silently)."""


class VisitNotSegmented(LesionvolError):
    """The core found no femoral head (or two) in one visit; the message names it and the seeded tool."""

    def __init__(self, label: str, reason: str):
        self.label = label
        super().__init__(f"{label}: {plain_reason(reason)}. In {label}, {SEEDED_HINT} (or draw its masks).")


def plain_reason(message: str) -> str:
    """The core's reason without the command-line advice in it (``--seed-mm``, ``--side``).

    Example
    -------
    >>> plain_reason("no femoral head found in the image (x); is this a hip MRI? Give --seed-mm at the head")
    'no femoral head found in the image (x)'
    >>> plain_reason("the image shows both hips; choose one with --side left|right (or call segment_hips for both)")
    'the image shows both hips'
    """
    parts = [p.strip() for p in re.split(r";", message)]
    kept = [p for p in parts if "--" not in p and "segment_hips" not in p and not p.endswith("?")]
    return "; ".join(kept or parts[:1]).rstrip(" .")


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


def _mask_source(states: dict) -> str | None:
    """``mask_source`` of a visit whose two masks came from 'Head from click' (None otherwise)."""
    seeds = [state["meta"].get("seed_mm") for state in states.values()]
    return "segmented (click)" if len(seeds) == 2 and all(seeds) else None


def label_map_masks(state: dict, reference: sitk.Image, options: AnalysisOptions) -> tuple[sitk.Image, sitk.Image, str]:
    """Head and lesion masks on ``reference``'s grid from a label map layer, and how they got there.

    The labels are brought onto the scan's grid as a mask layer is (exactly for an unedited layer
    of a file, else nearest neighbour, which keeps the values), then split by the core's
    convention (:func:`lesionvol.inputs.split_label_map`: head = head + lesion labels, with the
    options' ``head_label`` and ``lesion_label``; other labels ignored).
    """
    data, meta = np.asarray(state["data"]), state["meta"] or None
    if meta and "native_grid" in meta:
        native = labels_to_native(data, meta)
    else:
        native = layer_image(data, state["scale"], state["translate"], state["rotate"])
    how = "same grid"
    if grid_difference(native, reference) is None:
        native.CopyInformation(reference)
    else:
        native = sitk.Resample(native, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, native.GetPixelID())
        how = "resampled to the image grid (nearest neighbour)"
    head, lesion = split_label_map(native, reference, options.head_label, options.lesion_label,
                                   name=f"the label map layer '{state['name']}'")
    return head, lesion, how


def _visit_masks(states: dict, reference: sitk.Image, options: AnalysisOptions) -> tuple[dict, dict]:
    """A visit's chosen mask layers (``lesion``, ``head`` or a ``label_map`` holding both) as masks
    on the scan's grid, and where each came from (provenance words)."""
    masks, origin = {}, {}
    for kind, state in states.items():
        if kind == "label_map":
            masks["head"], masks["lesion"], how = label_map_masks(state, reference, options)
            origin["head"] = _mask_origin(state, how) + f", label map value {options.head_label} + {options.lesion_label}"
            origin["lesion"] = _mask_origin(state, how) + f", label map value {options.lesion_label}"
            continue
        native = state.get("native")  # the widget's own measured mask of this layer (see _memory)
        if native is not None and grid_difference(native, reference) is None:
            masks[kind] = sitk.Image(native)
            masks[kind].CopyInformation(reference)
            origin[kind] = _mask_origin(state, "same grid")
            continue
        masks[kind], how = mask_from_layer(state["data"], state["meta"] or None, state["scale"],
                                           state["translate"], state["rotate"], reference)
        origin[kind] = _mask_origin(state, how)
    return masks, origin


def analysis_job(snapshot: list[dict], days, transforms, options: AnalysisOptions, seed_mm=None,
                 cancel: threading.Event | None = None):
    """Worker body (runs off the GUI thread): yields Progress, returns a :class:`RunOutcome`.

    ``seed_mm`` goes to the visits that get segmented (those missing a mask). A visit whose
    head cannot be found raises :class:`VisitNotSegmented` (naming it); setting ``cancel``
    raises :class:`~napari_lesionvol._review.Cancelled`.
    """
    try:
        return (yield from _analysis(snapshot, days, transforms, options, seed_mm, cancel))
    except RuntimeError as exc:  # superqt would drop it without a word (and without 'finished')
        raise JobError(f"{type(exc).__name__}: {exc}") from exc


def _analysis(snapshot, days, transforms, options, seed_mm, cancel):
    from lesionvol.segment import NoFemoralHeadError

    visits, origins, layers = [], {}, {}
    days = days or [None] * len(snapshot)
    transforms = [None, *transforms] if transforms is not None else [None] * len(snapshot)
    for item, day, transform in zip(snapshot, days, transforms):
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        yield Progress(0, 1, f"{item['label']}: reading")
        scan = _scan_from_state(item["image"])
        masks, origin = _visit_masks(item["masks"], scan.image, options)
        segmented = len(masks) < 2
        visits.append(Visit(scan, label=item["label"], lesion=masks.get("lesion"), head=masks.get("head"), days=day,
                            transform=transform, seed_mm=seed_mm if segmented else None,
                            mask_source=None if segmented else _mask_source(item["masks"])))
        origins[item["label"]] = origin
        layers[item["label"]] = {"image": item["image"]["name"],
                                 **{kind: state["name"] for kind, state in item["masks"].items()}}
    session, current = None, None
    try:
        for item in analyze_visits(visits, options, origins, cancel=cancel):
            if isinstance(item, ReviewSession):
                session = item
            else:
                current = item.message.partition(":")[0] if "segmenting" in item.message else None
                yield item
    except (NoFemoralHeadError, InputError) as exc:
        if current is not None and (isinstance(exc, NoFemoralHeadError) or "both hips" in str(exc)):
            raise VisitNotSegmented(current, str(exc)) from exc
        raise
    reference = session.timepoints[0].scan.image
    # a follow-up the core did not compare (not registered, other grid) has no place in baseline space
    followups = [followup_in_baseline(tp.scan.image, reference, tp.transform)
                 if tp.transform is not None or tp.change is not None else None
                 for tp in session.timepoints[1:]]
    return RunOutcome(session, followups, layers)


#: How long the interpreter's exit waits for cancelled jobs to reach their next step, in ms.
EXIT_WAIT_MS = 60_000


class JobGuard:
    """Whether a job's signals may still reach the widgets (a plain object: it outlives them)."""

    live: weakref.WeakSet[JobGuard] = weakref.WeakSet()

    def __init__(self):
        self.alive = True
        self.cancel: threading.Event | None = None
        self.worker = None
        JobGuard.live.add(self)

    def shutdown(self, *args):
        """The dock or the viewer is closing: stop the job; nothing of it reaches a widget."""
        self.alive = False
        if self.cancel is not None:
            self.cancel.set()
        if self.worker is not None:
            try:
                self.worker.quit()
            except RuntimeError:  # the worker's Qt object is gone already
                pass


@atexit.register
def stop_jobs_at_exit(wait_ms: int = EXIT_WAIT_MS) -> bool:
    """Cancel every job still running and wait up to ``wait_ms`` for the worker threads to end.

    Runs at interpreter exit (a script that closed its viewer without ``napari.run``, or a
    kernel shut down mid-run): the core stops at its next step, and Python finalizes only
    once no worker thread is left in compiled code. True if every thread ended in time.
    """
    for guard in list(JobGuard.live):
        guard.shutdown()
    return QThreadPool.globalInstance().waitForDone(wait_ms)


class RunControls(QWidget):
    """The Run and Cancel buttons, the progress bar and the status line; starts the jobs.

    One job at a time. A job's signals reach the widget only while the job is the current,
    uncancelled one and the controls are alive (:meth:`shutdown` not called).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.guard = JobGuard()
        self._then = None
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop the running job; nothing of it is shown")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("Choose the images, then Run.")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 3)
        buttons.addWidget(self.cancel_button, 1)
        layout.addLayout(buttons)
        for widget in (self.progress, self.status):
            layout.addWidget(widget)

    @property
    def worker(self):
        return self.guard.worker

    @property
    def alive(self) -> bool:
        return self.guard.alive

    @property
    def running(self) -> bool:
        worker, cancel = self.guard.worker, self.guard.cancel
        return worker is not None and worker.is_running and not cancel.is_set()

    def start(self, job, *args, on_result, on_error, starting: str = "Reading the scans…"):
        """Run the generator ``job(*args, cancel=event)`` in a napari worker; its progress is
        shown here, its result goes to ``on_result``, its errors to ``on_error(message)``."""
        from napari.qt.threading import create_worker

        cancel = self.guard.cancel = threading.Event()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first report
        self.status.setText(starting)
        worker = self.guard.worker = create_worker(job, *args, cancel=cancel, _ignore_errors=True)
        worker.yielded.connect(self._slot(cancel, self.show_progress))
        worker.returned.connect(self._slot(cancel, on_result))
        worker.errored.connect(self._slot(cancel, lambda exc: on_error(
            str(exc) if isinstance(exc, (VisitNotSegmented, JobError)) else f"{type(exc).__name__}: {exc}")))
        worker.finished.connect(self._slot(None, self._finished))
        worker.start()
        return worker

    def _slot(self, cancel: threading.Event | None, handler):
        """``handler`` guarded: dropped once the job is cancelled or the controls are gone, and
        never raising into Qt (PyQt6 aborts the process on an exception in a slot)."""
        guard = self.guard

        def slot(*args):
            if not guard.alive or (cancel is not None and cancel.is_set()):
                return
            try:
                handler(*args)
            except Exception as exc:  # a bug or a deleted widget: say so, do not take napari down
                warnings.warn(f"lesionvol review widget: {type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=1)
                if guard.alive and not isinstance(exc, RuntimeError):
                    try:
                        self.show_error(f"{type(exc).__name__}: {exc}")
                    except RuntimeError:
                        guard.alive = False
        return slot

    def _finished(self):
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        then, self._then = self._then, None
        if then is not None and not self.guard.cancel.is_set():
            then()

    def then(self, callback):
        """Call ``callback()`` when the running job's worker has ended (not if it is cancelled)."""
        self._then = callback

    def cancel(self, message: str = "Cancelled: nothing of that job is shown.") -> bool:
        """Stop the running job (True if there was one); Run comes back when its worker ends."""
        if not self.running:
            return False
        self.guard.cancel.set()
        self.guard.worker.quit()
        if self.alive:
            self.cancel_button.setEnabled(False)
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.status.setText(message)
        return True

    def shutdown(self):
        """The dock or the viewer is closing: stop the job, and let nothing of it reach a widget."""
        self.guard.shutdown()

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
        self.cancel_button.setEnabled(False)
