"""A result folder reopened for review, and a reader's corrections saved back into it.

A study folder (``lesionvol analyze --out``, or one ``<subject>_<side>/`` folder of a batch
output) holds ``volumes.csv``, ``summary.json`` and ``masks/<tp>_{lesion,head}.nii.gz``.
A segmented lesion's ``masks/<tp>_oedema.nii.gz`` (the marrow oedema next to it) opens too, to
check its margin by; it is not a mask that is measured or corrected.
``summary.json`` names each input image by file name and SHA-256 only (no paths, by design),
so :func:`open_study` finds each image either among the image layers already open (same
``sha256`` in their metadata) or by name in a folder the reader picks (searched recursively,
the SHA-256 checked; a DICOM series is found by its folder's name). The masks open through the
plugin's reader, with their geometry.

:func:`save_corrections` writes each mask layer edited since opening back onto its scan's
own grid (the edit carried over as the review loop does, :func:`~._geometry.apply_display_edit`)
with :func:`lesionvol.corrections.save_correction`: into ``corrections/``, never over
``masks/``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionvol.corrections import measured_mask_path, save_correction
from lesionvol.errors import InputError
from lesionvol.io import read_mask, sha256_of
from lesionvol.study import is_set
from napari_lesionvol._geometry import META_KEY, apply_display_edit
from napari_lesionvol._reader import read_layers

KINDS = ("lesion", "head")


def _digest(data) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(data) != 0).tobytes()).hexdigest()


@dataclass
class StudyVisit:
    """One timepoint of an opened study: its image layer (None if not found) and mask layers."""

    label: str
    file: str
    sha256: str
    image: object | None = None
    masks: dict[str, object] = field(default_factory=dict)
    #: each mask layer's data as opened (what "edited since opening" compares with)
    opened: dict[str, np.ndarray] = field(default_factory=dict)
    oedema: object | None = None  # the layer of masks/<tp>_oedema.nii.gz, where the study has one


@dataclass
class OpenedStudy:
    """What :func:`open_study` opened: the visits, the study's table, and what is missing."""

    study_dir: Path
    visits: list[StudyVisit]
    rows: list[dict]
    missing: list[str]
    doubtful: list[str]

    def status(self) -> str:
        """The status line: doubtful registrations first, then what was opened, then what is missing."""
        parts = []
        if self.doubtful:
            parts.append("\u26a0 Check the registration of " + "; ".join(self.doubtful) + ".")
        found = [v.label for v in self.visits if v.image is not None]
        parts.append(f"Opened {self.study_dir.name}: {len(self.visits)} visits ({', '.join(found) or 'no image'} "
                     "with images). Paint or erase, then Run to re-measure or save the corrections.")
        if self.missing:
            parts.append("Image not found: " + "; ".join(self.missing)
                         + " (pick the folder holding it, or open it first).")
        return " ".join(parts)


def _csv_value(text: str):
    if text == "":
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return float(text)
    except ValueError:
        return text


def read_volumes(study_dir: Path) -> list[dict]:
    """The rows of a study's ``volumes.csv`` with numbers as numbers, flags as booleans."""
    path = study_dir / "volumes.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k: (v if k == "timepoint" else _csv_value(v)) for k, v in row.items()}
                for row in csv.DictReader(handle)]


def _doubtful(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        if is_set(row.get("registration_doubtful")):
            reason = row.get("registration_doubtful_reason")
            out.append(f"{row.get('timepoint')}" + (f" ({reason})" if reason else ""))
    return out


def _open_image_layer(viewer, sha256: str):
    import napari.layers

    for layer in viewer.layers:
        if isinstance(layer, napari.layers.Image) and (layer.metadata.get(META_KEY) or {}).get("sha256") == sha256:
            return layer
    return None


def find_image(images_dir: str | os.PathLike, name: str, sha256: str) -> Path | None:
    """The file (or DICOM folder) named ``name`` under ``images_dir`` whose SHA-256 is ``sha256``."""
    root = Path(images_dir)
    if not name or not root.is_dir():
        return None
    candidates = ([root] if root.name == name else []) + sorted(root.rglob(name))
    for candidate in candidates:
        try:
            if sha256_of(candidate) == sha256:
                return candidate
        except OSError:
            continue
    return None


def _add(viewer, layer_data: tuple, name: str):
    data, attributes, kind = layer_data
    attributes = {**attributes, "name": name}
    return viewer.add_labels(data, **attributes) if kind == "labels" else viewer.add_image(data, **attributes)


def _free_name(viewer, name: str) -> str:
    while name in viewer.layers:
        name += "'"
    return name


def _replace_or_add(viewer, layer_data: tuple, name: str):
    """A study's mask layer: the one of that name opened from the same file before, else a new one."""
    data, attributes, _ = layer_data
    if name in viewer.layers:
        layer = viewer.layers[name]
        old_source = (layer.metadata.get(META_KEY) or {}).get("source")
        if old_source == attributes["metadata"][META_KEY].get("source") and np.shape(layer.data) == np.shape(data):
            layer.data = data
            layer.metadata = {**layer.metadata, **attributes["metadata"]}
            return layer
        name = _free_name(viewer, name)
    return _add(viewer, layer_data, name)


def open_study(viewer, study_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> OpenedStudy:
    """Open a study folder's masks and images in ``viewer`` (see the module docstring).

    Raises :class:`~lesionvol.errors.InputError` when ``study_dir`` is not a study folder.
    """
    study_dir = Path(study_dir)
    summary_path = study_dir / "summary.json"
    if not summary_path.is_file():
        raise InputError(f"'{study_dir}' holds no summary.json: choose a folder written by "
                         "'lesionvol analyze' or one study folder of a batch output")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError:
        raise InputError(f"'{summary_path}' is not valid JSON") from None
    inputs = summary.get("inputs") or []
    if not inputs:
        raise InputError(f"'{summary_path}' names no input images")
    visits, missing = [], []
    for item in inputs:
        label = str(item.get("timepoint"))
        visit = StudyVisit(label, str(item.get("file") or ""), str(item.get("sha256") or ""))
        for kind in KINDS:
            path = measured_mask_path(study_dir, label, kind)
            if not path.is_file():
                raise InputError(f"'{study_dir}' lacks masks/{path.name}")
            layer = _replace_or_add(viewer, read_layers(str(path))[0], f"{label}_{kind}")
            visit.masks[kind] = layer
            visit.opened[kind] = np.array(layer.data, copy=True)
        oedema = measured_mask_path(study_dir, label, "oedema")
        if oedema.is_file():
            visit.oedema = _replace_or_add(viewer, read_layers(str(oedema))[0], f"{label}_oedema")
        image = _open_image_layer(viewer, visit.sha256) if visit.sha256 else None
        if image is None and images_dir is not None:
            found = find_image(images_dir, visit.file, visit.sha256)
            if found is not None:
                image = _add(viewer, read_layers(str(found))[0], _free_name(viewer, label))
        if image is None:
            missing.append(f"{label} ({visit.file})")
        visit.image = image
        visits.append(visit)
    rows = read_volumes(study_dir)
    return OpenedStudy(study_dir, visits, rows, missing, _doubtful(rows))


def edited_masks(study: OpenedStudy, viewer) -> list[tuple[StudyVisit, str, object]]:
    """``(visit, kind, layer)`` of each mask layer whose data changed since the study was opened."""
    out = []
    for visit in study.visits:
        for kind, layer in visit.masks.items():
            if layer in viewer.layers and _digest(layer.data) != _digest(visit.opened[kind]):
                out.append((visit, kind, layer))
    return out


def save_corrections(study: OpenedStudy, viewer) -> list[dict]:
    """Save each mask edited since opening into the study's ``corrections/`` (never ``masks/``).

    Returns one entry per saved mask: the core's provenance entry plus ``timepoint`` and ``kind``.
    """
    saved = []
    for visit, kind, layer in edited_masks(study, viewer):
        native = read_mask(measured_mask_path(study.study_dir, visit.label, kind))
        meta = layer.metadata.get(META_KEY) or {}
        if "native_grid" not in meta or "display_grid" not in meta:
            raise InputError(f"the layer '{layer.name}' lost its geometry; reopen the result folder")
        corrected = apply_display_edit(native, visit.opened[kind], np.asarray(layer.data), meta)
        entry = save_correction(study.study_dir, visit.label, kind, corrected)
        saved.append({"timepoint": visit.label, "kind": kind, **entry})
    return saved


def describe_saved(study_dir: Path, saved: list[dict]) -> str:
    """The status line after saving corrections."""
    if not saved:
        return "No lesion or head layer was edited since the result folder was opened: nothing saved."
    said = "; ".join(f"{e['timepoint']} {e['kind']}: {e['voxels_changed']} voxels changed, "
                     f"{e['volume_before_ml']:.3f} \u2192 {e['volume_ml']:.3f} mL" for e in saved)
    return f"Saved to {Path(study_dir) / 'corrections'}: {said}. A batch rerun over this output uses them."
