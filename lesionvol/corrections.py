"""A reader's corrections to a study's masks, kept beside the results and used by the next run.

A study folder (written by ``lesionvol analyze`` or one study of ``lesionvol batch``) holds the
masks that were measured in ``masks/<tp>_{lesion,head}.nii.gz``. A correction made in review
(napari) is saved beside them, never over them::

    corrections/<tp>_lesion.nii.gz     the corrected mask, on the scan's own grid
    corrections/corrections.json       per timepoint and mask: which mask it corrects, how many
                                       voxels changed, the volume before and after (no user names)

A rerun of ``lesionvol batch`` over the same ``--out`` measures a corrected study again with the
corrected masks (the other mask of that timepoint is taken from the previous result, so both
belong to the same analysis), says so in ``mask_source``, and rebuilds the cohort tables. Writing a
study's results again keeps its ``corrections/`` folder.

Example
-------
>>> import tempfile, SimpleITK as sitk
>>> study = Path(tempfile.mkdtemp())
>>> (study / "masks").mkdir()
>>> old = sitk.Image([10, 10, 10], sitk.sitkUInt8); old[2:8, 2:8, 2:8] = 1
>>> sitk.WriteImage(old, str(study / "masks" / "t1_lesion.nii.gz"))
>>> new = sitk.Image(old); new[2:8, 2:8, 2:5] = 0
>>> save_correction(study, "t1", "lesion", new)["voxels_changed"]
108
>>> sorted(read_corrections(study)["t1"])
['lesion']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.inputs import check_name
from lesionvol.io import atomic_path, check_same_grid, read_mask, write_image
from lesionvol.measure import mask_volume_ml

FOLDER = "corrections"
RECORD = "corrections.json"
KINDS = ("lesion", "head")


def _record(study_dir: Path) -> dict:
    path = study_dir / FOLDER / RECORD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputError(f"'{path}' is not valid JSON; remove it or fix it") from None


def measured_mask_path(study_dir: str | os.PathLike, label: str, kind: str) -> Path:
    """Where a study folder holds the mask that was measured (``masks/<tp>_<kind>.nii.gz``)."""
    return Path(study_dir) / "masks" / f"{check_name(label, 'timepoint')}_{kind}.nii.gz"


def save_correction(study_dir: str | os.PathLike, label: str, kind: str, mask: sitk.Image) -> dict:
    """Save a corrected ``kind`` mask of timepoint ``label`` beside the study's results.

    The mask must lie on the grid of the mask it corrects. Returns the provenance entry written
    to ``corrections/corrections.json``.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    study_dir = Path(study_dir)
    original_path = measured_mask_path(study_dir, label, kind)
    if not original_path.is_file():
        raise InputError(f"'{study_dir}' holds no measured {kind} mask of {label} ({original_path.name})")
    original = read_mask(original_path)
    check_same_grid(mask, original, f"the corrected {kind} mask of {label}")
    corrected = sitk.Cast(mask != 0, sitk.sitkUInt8)
    corrected.CopyInformation(original)
    before, after = sitk.GetArrayViewFromImage(original) != 0, sitk.GetArrayViewFromImage(corrected) != 0
    entry = {"corrects": f"masks/{original_path.name}", "voxels_changed": int(np.count_nonzero(before != after)),
             "volume_before_ml": mask_volume_ml(original), "volume_ml": mask_volume_ml(corrected)}
    (study_dir / FOLDER).mkdir(exist_ok=True)
    write_image(corrected, study_dir / FOLDER / f"{label}_{kind}.nii.gz")
    record = _record(study_dir)
    record.setdefault(label, {})[kind] = entry
    with atomic_path(study_dir / FOLDER / RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return entry


def read_corrections(study_dir: str | os.PathLike) -> dict[str, dict[str, Path]]:
    """The corrected masks of a study folder: ``{timepoint: {kind: path}}`` (empty when none)."""
    study_dir = Path(study_dir)
    found: dict[str, dict[str, Path]] = {}
    for label, kinds in _record(study_dir).items():
        for kind in kinds:
            path = study_dir / FOLDER / f"{check_name(label, 'timepoint')}_{kind}.nii.gz"
            if kind in KINDS and path.is_file():
                found.setdefault(label, {})[kind] = path
    return found


def corrected_masks(study_dir: str | os.PathLike, label: str,
                    corrections: dict[str, Path]) -> tuple[sitk.Image, sitk.Image, str]:
    """Head and lesion of a corrected timepoint (the corrected ones, the other as measured before)
    and the ``mask_source`` that says so. The analysis checks them against the scan's grid."""
    masks = {}
    for kind in KINDS:
        path = corrections.get(kind) or measured_mask_path(study_dir, label, kind)
        if not path.is_file():
            raise InputError(f"the corrected study '{study_dir}' lacks {path.name}; rerun with --overwrite")
        masks[kind] = read_mask(path)
    return masks["head"], masks["lesion"], "corrected by a reader: " + ", ".join(sorted(corrections))
