"""The review session behind the widget, without Qt or napari.

A session holds one hip's visits (baseline first) on their native grids, their masks,
the follow-up → baseline transforms and the change maps, and rebuilds the volumes table
with :class:`lesionvol.study.StudyResult` — the same rows and provenance as
``lesionvol analyze`` — whenever a mask is corrected. Long steps (segmentation,
registration) live in :func:`analyze_visits`, a generator that yields progress so a
napari ``thread_worker`` can run it off the GUI thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionvol.change import change_maps
from lesionvol.errors import InputError
from lesionvol.geometry import same_grid
from lesionvol.io import Scan
from lesionvol.measure import THRESHOLD_PCT, measure_volumes
from lesionvol.study import StudyResult, Timepoint

#: Values of the change overlay (baseline space).
RESIDUAL, REGENERATED, NEW = 1, 2, 3
CHANGE_COLORS = {None: (0.0, 0.0, 0.0, 0.0), RESIDUAL: (1.0, 0.85, 0.0, 1.0),
                 REGENERATED: (0.1, 0.9, 0.2, 1.0), NEW: (1.0, 0.0, 1.0, 1.0)}
MASK_KINDS = ("lesion", "head")


@dataclass
class VisitInput:
    """One visit as the widget hands it over: its scan and any masks already drawn."""

    label: str
    scan: Scan
    lesion: sitk.Image | None = None
    head: sitk.Image | None = None
    mask_origin: dict = field(default_factory=dict)  # kind -> where the mask came from
    days: float | None = None


@dataclass
class Progress:
    """A step of the analysis, for a progress bar."""

    step: int
    total: int
    message: str


class ReviewSession:
    """Visits with masks, transforms and change maps; recomputes rows after each correction."""

    def __init__(self, timepoints: list[Timepoint], threshold_pct: float, parameters: dict,
                 mask_origin: dict[str, dict], registration: list[str]):
        self.timepoints = timepoints
        self.threshold_pct = threshold_pct
        self.parameters = parameters
        self.mask_origin = mask_origin
        self.registration = registration  # per follow-up: how its transform was obtained
        self._initial = {(tp.label, kind): sitk.GetArrayFromImage(getattr(tp, kind)).astype(bool)
                         for tp in timepoints for kind in MASK_KINDS}
        self._base_source = {tp.label: tp.mask_source for tp in timepoints}
        self.edit_events = {(tp.label, kind): 0 for tp in timepoints for kind in MASK_KINDS}

    # -- the numbers --------------------------------------------------------------------
    def result(self) -> StudyResult:
        return StudyResult(self.timepoints, self.threshold_pct, self.parameters)

    def rows(self) -> list[dict]:
        """The volumes table, one row per visit (the columns of ``volumes.csv``)."""
        return self.result().rows()

    def index_of(self, label: str) -> int:
        return [tp.label for tp in self.timepoints].index(label)

    def update_mask(self, index: int, kind: str, mask: sitk.Image) -> list[int]:
        """Replace a visit's lesion or head mask (native grid) after a correction.

        Returns the indices of the follow-ups whose change maps were recomputed.
        """
        if kind not in MASK_KINDS:
            raise ValueError(f"kind must be one of {MASK_KINDS}")
        tp = self.timepoints[index]
        reference = tp.scan.image
        if not same_grid(mask, reference):
            raise InputError(f"the corrected {kind} mask of {tp.label} is not on its scan's grid")
        mask = sitk.Cast(mask != 0, sitk.sitkUInt8)
        mask.CopyInformation(reference)
        setattr(tp, kind, mask)
        self.edit_events[(tp.label, kind)] += 1
        tp.volumes = measure_volumes(tp.lesion, tp.head)
        tp.mask_source = self._base_source[tp.label] + ("+edited" if self.edited(tp.label) else "")
        if kind != "lesion":
            return []
        changed = range(1, len(self.timepoints)) if index == 0 else [index]
        base = self.timepoints[0]
        for i in changed:
            follow = self.timepoints[i]
            if follow.change is not None:
                follow.change = change_maps(base.lesion, follow.lesion, follow.transform)
        return [i for i in changed if self.timepoints[i].change is not None]

    # -- provenance ---------------------------------------------------------------------
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
        return {"review": {"tool": "napari-lesionvol review widget", "mask_edits": edits,
                           "registration": dict(zip([tp.label for tp in self.timepoints[1:]], self.registration))}}

    # -- files --------------------------------------------------------------------------
    def export(self, out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write ``volumes.csv``, ``summary.json`` (with the edit provenance), the masks as
        corrected (native grids), transforms and change maps, atomically into ``out_dir``."""
        from lesionvol.io import write_image
        from lesionvol.report import atomic_folder, write_json, write_rows_csv

        result = self.result()
        with atomic_folder(out_dir, overwrite) as tmp:
            for name in ("masks", "transforms", "change"):
                (tmp / name).mkdir()
            for tp in self.timepoints:
                write_image(tp.lesion, tmp / "masks" / f"{tp.label}_lesion.nii.gz")
                write_image(tp.head, tmp / "masks" / f"{tp.label}_head.nii.gz")
                if tp.transform is not None:
                    sitk.WriteTransform(tp.transform, str(tmp / "transforms" / f"{tp.label}.tfm"))
                if tp.change is not None:
                    write_image(tp.change.regenerated, tmp / "change" / f"{tp.label}_regenerated.nii.gz")
                    write_image(tp.change.new_lesion, tmp / "change" / f"{tp.label}_new.nii.gz")
            write_rows_csv(result.rows(), tmp / "volumes.csv")
            write_json({**result.summary(), **self.provenance()}, tmp / "summary.json")
        return Path(out_dir)


def change_label_image(tp: Timepoint) -> sitk.Image:
    """Residual (1), regenerated (2) and new (3) lesion of a follow-up on the baseline grid."""
    change = tp.change
    return sitk.Cast(change.residual * RESIDUAL + change.regenerated * REGENERATED + change.new_lesion * NEW,
                     sitk.sitkUInt8)


def followup_in_baseline(image: sitk.Image, reference: sitk.Image, transform: sitk.Transform | None) -> sitk.Image:
    """A follow-up image resampled (linear) onto ``reference`` through the baseline→follow-up transform."""
    return sitk.Resample(image, reference, transform or sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def _segment(scan: Scan, options: dict):
    try:
        from lesionvol.segment import segment_hip
    except ImportError:
        raise InputError("automatic segmentation is not available in this lesionvol; "
                         "choose a lesion and a head mask layer for every visit") from None
    return segment_hip(scan.image, side=options["side"], lesion_definition=options["lesion_definition"])


def analyze_visits(
    visits: Sequence[VisitInput],
    *,
    register: bool = True,
    transforms: Sequence[sitk.Transform | None] | None = None,
    threshold_pct: float = THRESHOLD_PCT,
    side: str = "auto",
    lesion_definition: str = "enclosed",
) -> Iterator[Progress | ReviewSession]:
    """Segment what has no mask, register follow-ups, measure; yield progress, then the session.

    Parameters
    ----------
    visits : sequence of VisitInput
        Baseline first.
    register : bool
        Register each follow-up rigidly to the baseline inside the femoral head
        (``lesionvol.register``). When False, follow-ups are compared in scanner space
        (the identity transform), which is right only if the hip did not move.
    transforms : sequence of SimpleITK.Transform, optional
        Known baseline→follow-up transforms (one per follow-up); skips registration.
    """
    if len(visits) < 1:
        raise InputError("choose at least a baseline image")
    labels = [v.label for v in visits]
    if len(set(labels)) != len(labels):
        raise InputError(f"visit names must be unique: {labels}")
    if transforms is not None and len(transforms) != len(visits) - 1:
        raise InputError(f"{len(transforms)} transforms for {len(visits) - 1} follow-ups")
    options = {"side": side, "lesion_definition": lesion_definition}
    n_segment = sum(1 for v in visits if v.lesion is None or v.head is None)
    n_register = (len(visits) - 1) if (register and transforms is None) else 0
    total = 1 + n_segment + n_register + max(len(visits) - 1, 0)
    step = 0

    timepoints, origin = [], {}
    for visit in visits:
        lesion, head = visit.lesion, visit.head
        origin[visit.label] = dict(visit.mask_origin)
        if lesion is None or head is None:
            yield Progress(step, total, f"{visit.label}: segmenting head and lesion")
            step += 1
            seg = _segment(visit.scan, options)
            if lesion is None:
                lesion = seg.lesion
                origin[visit.label]["lesion"] = f"segmented ({lesion_definition})"
            if head is None:
                head = seg.head
                origin[visit.label]["head"] = "segmented"
        given = [k for k in MASK_KINDS if visit.mask_origin.get(k)]
        source = "user" if len(given) == 2 else ("segmented" if not given else f"user {given[0]}, segmented")
        for name, mask in (("lesion", lesion), ("head", head)):
            if not same_grid(mask, visit.scan.image):
                raise InputError(f"the {name} mask of {visit.label} is not on its image's grid")
        lesion = sitk.Cast(lesion != 0, sitk.sitkUInt8)
        head = sitk.Cast(head != 0, sitk.sitkUInt8)
        lesion.CopyInformation(visit.scan.image)
        head.CopyInformation(visit.scan.image)
        timepoints.append(Timepoint(visit.label, visit.scan, lesion, head, source,
                                    measure_volumes(lesion, head), visit.days))

    baseline = timepoints[0]
    how = []
    for i, tp in enumerate(timepoints[1:]):
        if transforms is not None:
            tp.transform = transforms[i]
            how.append("given")
        elif register:
            yield Progress(step, total, f"{tp.label}: registering to {baseline.label}")
            step += 1
            try:
                from lesionvol.register import register_followup
            except ImportError:
                raise InputError("registration is not available in this lesionvol; untick 'register'") from None
            registration = register_followup(baseline.scan.image, tp.scan.image,
                                              fixed_head=baseline.head, moving_head=tp.head)
            tp.transform = registration.transform
            tp.registration_qc = dict(registration.qc)
            how.append("registered (rigid, inside the femoral head)"
                       + (" - doubtful, check the overlay" if getattr(registration, "doubtful", False) else ""))
        else:
            tp.transform = None if same_grid(baseline.scan.image, tp.scan.image) else sitk.Transform()
            how.append("none (scanner space)")
        yield Progress(step, total, f"{tp.label}: change maps in {baseline.label} space")
        step += 1
        tp.change = change_maps(baseline.lesion, tp.lesion, tp.transform)

    parameters = {"threshold_pct": threshold_pct, "side": side, "lesion_definition": lesion_definition,
                  "register": bool(register and transforms is None), "labels": labels,
                  "interface": "napari review widget"}
    yield Progress(total, total, "done")
    yield ReviewSession(timepoints, threshold_pct, parameters, origin, how)


def run_to_end(generator: Iterator) -> ReviewSession:
    """Drive :func:`analyze_visits` synchronously (scripts, tests)."""
    last = None
    for item in generator:
        last = item
    if not isinstance(last, ReviewSession):
        raise RuntimeError("analysis ended without a result")
    return last


__all__ = ["VisitInput", "Progress", "ReviewSession", "analyze_visits", "run_to_end", "change_label_image",
           "followup_in_baseline", "RESIDUAL", "REGENERATED", "NEW", "CHANGE_COLORS"]
