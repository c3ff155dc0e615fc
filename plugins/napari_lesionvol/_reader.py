"""Reader: NIfTI, NRRD, MetaImage and DICOM series as layers at their physical position.

Everything is read by :func:`lesionvol.io.read_scan` (so the same checks as the command
line apply), converted to a display image napari can slice (see ``_geometry``), and
returned with ``scale``/``translate``/``rotate`` in LPS millimetres. Masks (integer images
holding only 0 and 1, or files named ``*_lesion``, ``*_head``, ``*_mask``, ``*_seg``) open as
Labels layers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionvol.io import IMAGE_SUFFIXES, read_scan, split_suffix
from napari_lesionvol._geometry import META_KEY, display_meta, layer_transform, to_display

_MASK_HINTS = ("lesion", "head", "oedema", "mask", "seg", "label")
LESION_COLOR = (1.0, 0.1, 0.1, 1.0)
HEAD_COLOR = (0.2, 0.6, 1.0, 1.0)
#: The marrow oedema next to a segmented lesion (``margin_oedema_ml``, ``masks/<tp>_oedema.nii.gz``): shown, not
#: measured.
OEDEMA_COLOR = (0.0, 0.85, 0.85, 1.0)


def _readable(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return any(p.is_file() for p in path.iterdir())
    return split_suffix(path)[1].lower() in IMAGE_SUFFIXES


def napari_get_reader(path):
    """npe2 reader hook: a reading function for ``path`` (file, folder or list), or None."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_readable(p) for p in paths):
        return None
    return read_layers


def role_of(name: str) -> str | None:
    """``'oedema'``, ``'lesion'``, ``'head'`` or None, from a layer or file name.

    Example
    -------
    >>> role_of("t0_oedema"), role_of("baseline lesion"), role_of("t1_head"), role_of("scan")
    ('oedema', 'lesion', 'head', None)
    """
    lowered = name.lower()
    if "oedema" in lowered:
        return "oedema"
    if "lesion" in lowered:
        return "lesion"
    if "head" in lowered:
        return "head"
    return None


def _looks_like_mask(image: sitk.Image, name: str) -> bool:
    if image.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                  sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64):
        return False
    lowered = name.lower()
    if any(lowered.endswith(f"_{hint}") or lowered.endswith(f"-{hint}") for hint in _MASK_HINTS):
        return True
    values = np.unique(sitk.GetArrayViewFromImage(image))
    return bool(np.isin(values, (0, 1)).all())


def labels_colormap(role: str | None) -> dict:
    """Colour of label 1 for a lesion (red), oedema (cyan) or head (blue) mask."""
    color = {"lesion": LESION_COLOR, "oedema": OEDEMA_COLOR}.get(role, HEAD_COLOR)
    return {None: (0.0, 0.0, 0.0, 0.0), 1: color}


def image_layer_data(image: sitk.Image, name: str, *, is_label: bool = False, extra_meta: dict | None = None,
                     role: str | None = None) -> tuple:
    """A napari LayerData tuple for ``image`` placed at its physical position."""
    display, kind = to_display(image, is_label=is_label)
    array = sitk.GetArrayFromImage(display)
    meta = display_meta(image, display, kind, **(extra_meta or {}))
    attributes = {"name": name, "metadata": {META_KEY: meta}, **layer_transform(display)}
    if is_label:
        attributes["opacity"] = 0.6 if role == "lesion" else 0.35
        if role in ("lesion", "head", "oedema"):
            attributes["colormap"] = labels_colormap(role)
        return array.astype(np.uint8) if array.max(initial=0) <= 255 else array, attributes, "labels"
    values = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
    attributes.update(colormap="gray", contrast_limits=(float(lo), float(hi) if hi > lo else float(lo) + 1.0))
    return array, attributes, "image"


def read_layers(path) -> list[tuple]:
    """Read one image (or several) into napari LayerData tuples."""
    paths = path if isinstance(path, list) else [path]
    layers = []
    for p in paths:
        scan = read_scan(p)
        name = split_suffix(p)[0] if Path(p).is_file() else Path(os.path.abspath(p)).name
        is_label = _looks_like_mask(scan.image, name)
        extra = {
            "source": str(scan.source),
            "sha256": scan.sha256,
            "study_date": scan.study_date.isoformat() if scan.study_date else None,
        }
        role = role_of(name) if is_label else None
        if role:
            extra["role"] = role
        layers.append(image_layer_data(scan.image, name, is_label=is_label, extra_meta=extra, role=role))
    return layers
