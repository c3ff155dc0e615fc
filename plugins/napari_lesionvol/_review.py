"""The review session behind the widget, without Qt or napari.

The analysis itself is :func:`lesionvol.study.analyze_scans`, the core that ``lesionvol
analyze`` and the batch runner use; :func:`analyze_visits` only runs it in a thread and
turns its ``progress(step, total, message)`` callbacks into items a napari
``thread_worker`` can yield. A :class:`ReviewSession` keeps the core's
:class:`~lesionvol.study.StudyResult` and records where each mask came from and which
ones were corrected by hand; after a correction it re-measures with the core's
functions, so the table is always ``StudyResult.rows()``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionvol.inputs import AnalysisOptions, Visit
from lesionvol.study import StudyResult, Timepoint, analyze_scans

#: Values of the change overlay (baseline space).
RESIDUAL, REGENERATED, NEW = 1, 2, 3
CHANGE_COLORS = {None: (0.0, 0.0, 0.0, 0.0), RESIDUAL: (1.0, 0.85, 0.0, 1.0),
                 REGENERATED: (0.1, 0.9, 0.2, 1.0), NEW: (1.0, 0.0, 1.0, 1.0)}
MASK_KINDS = ("lesion", "head")


class Cancelled(Exception):
    """The reader cancelled the job (or closed the widget); nothing of it is shown."""


@dataclass
class Progress:
    """A step of the analysis, for a progress bar."""

    step: int
    total: int
    message: str


def how_compared(tp: Timepoint) -> str:
    """The core's ``change_method`` of a follow-up, with the reason when its registration is doubtful."""
    reason = tp.registration_qc.get("registration_doubtful_reason", "")
    return tp.change_method + (f" ({reason})" if tp.registration_qc.get("registration_doubtful") else "")


class ReviewSession:
    """The core's result plus mask provenance; re-measures after each correction."""

    def __init__(self, result: StudyResult, mask_origin: dict[str, dict]):
        self.result = result
        self.mask_origin = mask_origin
        self.registration = [how_compared(tp) for tp in result.timepoints[1:]]
        self._initial = {(tp.label, kind): sitk.GetArrayFromImage(getattr(tp, kind)).astype(bool)
                         for tp in self.timepoints for kind in MASK_KINDS}
        self._base_source = {tp.label: tp.mask_source for tp in self.timepoints}

    @property
    def timepoints(self) -> list[Timepoint]:
        return self.result.timepoints

    # -- the numbers --------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """The volumes table, one row per visit (the columns of ``volumes.csv``)."""
        return self.result.rows()

    def index_of(self, label: str) -> int:
        return [tp.label for tp in self.timepoints].index(label)

    def update_mask(self, index: int, kind: str, mask: sitk.Image) -> list[int]:
        """Replace a visit's lesion or head mask (native grid) after a correction and
        re-measure it with the core (volumes, location, change maps).

        Returns the indices of the follow-ups whose change maps were recomputed (those the
        core gave change maps: a follow-up it could not compare stays without).
        """
        changed = self.result.update_mask(index, kind, mask)
        tp = self.timepoints[index]
        tp.mask_source = self._base_source[tp.label] + ("+edited" if self.edited(tp.label) else "")
        return changed

    # -- provenance ---------------------------------------------------------------------
    def initial_mask(self, label: str, kind: str) -> np.ndarray:
        """A visit's mask (native grid, bool) before any correction of this review."""
        return self._initial[(label, kind)]

    def carry_over(self, label: str, kind: str, initial: np.ndarray, origin: str, definition: str) -> None:
        """Take a mask's history from an earlier run of the same layer (Run pressed again): the
        mask as that run first had it, where it came from and its definition, so the provenance
        still says it was edited by hand and gives the volume before the edit."""
        tp = self.timepoints[self.index_of(label)]
        if initial.shape != self._initial[(label, kind)].shape:
            raise ValueError(f"{label} {kind}: the earlier mask is not on this scan's grid")
        self._initial[(label, kind)] = np.array(initial, dtype=bool, copy=True)
        self.mask_origin.setdefault(label, {})[kind] = origin
        setattr(tp, f"{kind}_definition", definition)
        segmented = [k for k in MASK_KINDS if self.mask_origin[label].get(k, "").startswith("segmented")]
        if len(segmented) == 2:
            self._base_source[label] = "segmented"
        elif segmented:
            drawn = "head" if segmented[0] == "lesion" else "lesion"
            self._base_source[label] = f"user {drawn}, segmented {segmented[0]}"
        tp.mask_source = self._base_source[label] + ("+edited" if self.edited(label) else "")

    def changed_voxels(self, label: str, kind: str) -> int:
        tp = self.timepoints[self.index_of(label)]
        now = sitk.GetArrayViewFromImage(getattr(tp, kind)) != 0
        return int(np.count_nonzero(now != self._initial[(label, kind)]))

    def edited(self, label: str, kind: str | None = None) -> bool:
        kinds = MASK_KINDS if kind is None else (kind,)
        return any(self.changed_voxels(label, k) > 0 for k in kinds)

    def provenance(self) -> dict:
        """Which masks were corrected by hand, by how much, and where each mask came from."""
        edits = {}
        for tp in self.timepoints:
            voxel_ml = float(np.prod(tp.scan.image.GetSpacing())) / 1000.0
            edits[tp.label] = {}
            for kind in MASK_KINDS:
                initial = int(self._initial[(tp.label, kind)].sum())
                now = int(np.count_nonzero(sitk.GetArrayViewFromImage(getattr(tp, kind))))
                edits[tp.label][kind] = {
                    "from": self.mask_origin.get(tp.label, {}).get(kind, ""),
                    "edited_by_hand": self.changed_voxels(tp.label, kind) > 0,
                    "voxels_changed": self.changed_voxels(tp.label, kind),
                    "volume_before_edit_ml": initial * voxel_ml,
                    "volume_ml": now * voxel_ml,
                }
        return {"interface": "napari review widget",
                "review": {"tool": "napari-lesionvol review widget", "mask_edits": edits,
                           "registration": dict(zip([tp.label for tp in self.timepoints[1:]], self.registration))}}

    # -- files --------------------------------------------------------------------------
    def export(self, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write what ``lesionvol analyze`` writes (masks as corrected), plus the edit
        provenance in ``summary.json``, atomically into ``out_dir``."""
        from lesionvol.report import write_study

        return write_study(self.result, out_dir, overwrite=overwrite, extra_summary=self.provenance())


def change_label_image(tp: Timepoint) -> sitk.Image:
    """Residual (1), regenerated (2) and new (3) lesion of a follow-up on the baseline grid."""
    change = tp.change
    return sitk.Cast(change.residual * RESIDUAL + change.regenerated * REGENERATED + change.new_lesion * NEW,
                     sitk.sitkUInt8)


def followup_in_baseline(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None) -> sitk.Image:
    """A follow-up image resampled (linear) onto ``reference`` for display.

    ``transform`` is the baseline→follow-up transform; ``None`` is only right for a
    follow-up the core compared voxel for voxel (same grid, not registered).
    """
    return sitk.Resample(image, reference, transform or sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def in_thread(work, *, cancel: threading.Event | None = None, poll_s: float = 0.05,
              name: str = "lesionvol-job") -> Iterator[Progress | object]:
    """Run ``work(progress)`` in a daemon thread; yield each ``Progress`` it reports, then its result.

    ``work`` calls ``progress(step, total, message)`` between steps. When ``cancel`` is set,
    the next report raises :class:`Cancelled` inside ``work`` (the core stops at its next
    step) and this generator raises :class:`Cancelled` at once, so the caller (a napari
    generator worker) never waits for a long step to finish. Errors of ``work`` are raised here.
    """
    cancel = cancel or threading.Event()
    reports: queue.Queue = queue.Queue()
    outcome: dict = {}

    def progress(step, total, message):
        if cancel.is_set():
            raise Cancelled(message)
        reports.put(Progress(step, total, message))

    def run():
        try:
            outcome["result"] = work(progress)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    while thread.is_alive() or not reports.empty():
        if cancel.is_set():
            raise Cancelled("cancelled")
        try:
            yield reports.get(timeout=poll_s)
        except queue.Empty:
            continue
    thread.join()
    if cancel.is_set():
        raise Cancelled("cancelled")
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["result"]


def analyze_visits(
    visits: Sequence[Visit],
    options: AnalysisOptions,
    mask_origin: dict[str, dict[str, str]] | None = None,
    *,
    poll_s: float = 0.05,
    cancel: threading.Event | None = None,
) -> Iterator[Progress | ReviewSession]:
    """Run :func:`lesionvol.study.analyze_scans` on the visits; yield its progress, then the session.

    The core runs in its own thread and reports through a queue, so the caller (a napari
    generator worker) yields each step as it happens; errors of the core are raised here.
    ``mask_origin`` says where each given mask came from (``{label: {kind: text}}``);
    setting ``cancel`` stops the run (:class:`Cancelled`, see :func:`in_thread`).
    """
    total, result = 1, None
    for item in in_thread(lambda progress: analyze_scans(visits, options, progress=progress), cancel=cancel,
                          poll_s=poll_s, name="lesionvol-analysis"):
        if isinstance(item, Progress):
            total = item.total
            yield item
        else:
            result = item
    origin = {}
    for tp in result.timepoints:
        origin[tp.label] = dict((mask_origin or {}).get(tp.label, {}))
        for kind in MASK_KINDS:
            origin[tp.label].setdefault(kind, f"segmented ({getattr(tp, f'{kind}_definition')})")
    yield Progress(total, total, "done")
    yield ReviewSession(result, origin)


def run_to_end(generator: Iterator) -> ReviewSession:
    """Drive :func:`analyze_visits` synchronously (scripts, tests)."""
    last = None
    for item in generator:
        last = item
    if not isinstance(last, ReviewSession):
        raise RuntimeError("analysis ended without a result")
    return last


__all__ = ["how_compared", "Cancelled", "Progress", "in_thread", "ReviewSession", "analyze_visits", "run_to_end", "change_label_image",
           "followup_in_baseline", "RESIDUAL", "REGENERATED", "NEW", "CHANGE_COLORS"]
