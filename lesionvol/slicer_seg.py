"""3D Slicer segmentations (``.seg.nrrd``): read segments by name, write head and lesion back.

A Slicer segmentation is one NRRD file: the voxels, and in its header one block of
``SegmentN_*`` fields per segment (ID, name, colour, label value, layer, extent) plus the
``Segmentation_*`` fields of the whole segmentation. Segments that do not overlap share one
3D labelmap *layer*, each with its own label value; overlapping segments (a lesion inside
its head) go to separate layers, stored as a 4D image whose first axis (NRRD kind ``list``)
is the layer. The header is parsed by :mod:`slicerio` (3D Slicer's own Python reader, over
pynrrd); this module turns its arrays into SimpleITK masks and back.

Geometry. NRRD states its physical space in the ``space`` field: Slicer writes
``left-posterior-superior`` (LPS, as ITK and lesionvol), other tools may write
``right-anterior-superior`` (RAS, x and y negated). Either is read into LPS; files are written
in LPS. A mask's grid is ``origin + direction · (spacing ∘ index)`` as in SimpleITK, so the
NRRD ``space directions`` are the columns of ``direction · diag(spacing)``.

Example
-------
>>> import tempfile
>>> head = sitk.Image([6, 6, 6], sitk.sitkUInt8); head[1:5, 1:5, 1:5] = 1
>>> lesion = sitk.Image(head.GetSize(), sitk.sitkUInt8); lesion[2:4, 2:4, 2:4] = 1
>>> path = write_segments(Path(tempfile.mkdtemp()) / "t0.seg.nrrd", {"head": head, "lesion": lesion})
>>> {name: int(sitk.GetArrayViewFromImage(m).sum()) for name, m in read_segments(path).items()}
{'head': 64, 'lesion': 8}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import nrrd
import numpy as np
import SimpleITK as sitk
import slicerio

from lesionvol.errors import InputError
from lesionvol.geometry import GRID_TOLERANCE, index_to_physical_affine
from lesionvol.io import as_binary_mask, atomic_path

#: File name endings of Slicer segmentations (lower case).
SEGMENTATION_SUFFIXES = (".seg.nrrd", ".seg.nhdr")

#: Colours (RGB, 0–1) written for the segments lesionvol names; other segments get
#: :data:`OTHER_COLORS` in turn. Head: Slicer's "bone" colour; lesion: red.
DEFAULT_COLORS = {"head": (0.945, 0.839, 0.569), "lesion": (0.85, 0.15, 0.15)}
OTHER_COLORS = ((0.5, 0.68, 0.5), (0.44, 0.5, 0.84), (0.86, 0.6, 0.2), (0.6, 0.4, 0.7))

_LPS_FROM_SPACE = {"left-posterior-superior": np.diag([1.0, 1.0, 1.0, 1.0]),
                   "right-anterior-superior": np.diag([-1.0, -1.0, 1.0, 1.0])}
_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_slicer_segmentation(path: str | os.PathLike) -> bool:
    """True for a ``.seg.nrrd``/``.seg.nhdr`` file, or a ``.nrrd``/``.nhdr`` whose header has segments.

    Slicer can also save a segmentation under a plain ``.nrrd`` name; only the header tells
    it from a label map then (it is read, not the voxels).

    Example
    -------
    >>> is_slicer_segmentation("t0.seg.nrrd"), is_slicer_segmentation("t0_lesion.nii.gz")
    (True, False)
    """
    name = Path(path).name.lower()
    if name.endswith(SEGMENTATION_SUFFIXES):
        return True
    if not name.endswith((".nrrd", ".nhdr")) or not Path(path).is_file():
        return False
    try:
        header = nrrd.read_header(os.fspath(path))
    except (nrrd.NRRDError, OSError, ValueError):
        return False
    return "Segment0_ID" in header or "Segmentation_MasterRepresentation" in header


def _read(path: Path) -> dict:
    """slicerio's segmentation dict, its errors as one-line :class:`InputError`."""
    if not path.is_file():
        raise InputError(f"segmentation '{path}' does not exist")
    try:
        space = nrrd.read_header(os.fspath(path)).get("space")
    except (nrrd.NRRDError, OSError, ValueError) as exc:
        raise InputError(f"cannot read '{path}' as a NRRD segmentation ({str(exc).strip()[:160]})") from None
    if space is not None and space not in _LPS_FROM_SPACE:
        raise InputError(f"segmentation '{path}' is in space '{space}'; "
                         f"lesionvol reads {' or '.join(_LPS_FROM_SPACE)} segmentations")
    try:
        return slicerio.read_segmentation(os.fspath(path))
    except (nrrd.NRRDError, OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read '{path}' as a 3D Slicer segmentation ({str(exc).strip()[:160]})") from None


def _geometry(ijk_to_lps: np.ndarray, path: Path) -> tuple[tuple, tuple, tuple]:
    """Spacing, origin and direction (SimpleITK order) of a 4×4 voxel → LPS matrix."""
    matrix = np.asarray(ijk_to_lps, dtype=float)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if not np.all(np.isfinite(matrix)) or np.any(spacing == 0):
        raise InputError(f"segmentation '{path}' has no valid 'space directions'")
    direction = matrix / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise InputError(f"segmentation '{path}' has sheared axes (space directions not orthogonal)")
    origin = np.asarray(ijk_to_lps, dtype=float)[:3, 3]
    return tuple(spacing.tolist()), tuple(origin.tolist()), tuple(direction.ravel().tolist())


def read_segments(path: str | os.PathLike) -> dict[str, sitk.Image]:
    """Every segment of a 3D Slicer segmentation, by name, as a binary mask.

    Parameters
    ----------
    path : path-like
        A ``.seg.nrrd`` (or ``.seg.nhdr``, or Slicer's plain ``.nrrd``) file; its segments may
        share one labelmap layer or lie in several (overlapping segments).

    Returns
    -------
    dict of str to SimpleITK.Image
        Segment name → uint8 0/1 mask on the segmentation's grid (LPS, mm), in file order.

    Raises
    ------
    InputError
        Missing or unreadable file, a ``space`` other than LPS/RAS, sheared axes, two segments
        with the same name, or a segment pointing at a layer the file does not have.

    Example
    -------
    >>> import tempfile
    >>> m = sitk.Image([4, 4, 4], sitk.sitkUInt8); m[1, 1, 1] = 1; m.SetSpacing((0.5, 0.5, 3.0))
    >>> path = write_segments(Path(tempfile.mkdtemp()) / "a.seg.nrrd", {"Lesion": m})
    >>> read_segments(path)["Lesion"].GetSpacing()
    (0.5, 0.5, 3.0)
    """
    path = Path(path)
    segmentation = _read(path)
    voxels = segmentation.get("voxels")
    if voxels is None or voxels.ndim not in (3, 4):
        raise InputError(f"segmentation '{path}' is not a 3D labelmap (or a 4D stack of labelmap layers)")
    layers = voxels if voxels.ndim == 4 else voxels[np.newaxis]
    spacing, origin, direction = _geometry(segmentation["ijkToLPS"], path)
    masks: dict[str, sitk.Image] = {}
    for segment in segmentation.get("segments", []):
        name = str(segment.get("name", segment.get("id", "")))
        if name in masks:
            raise InputError(f"segmentation '{path}' has two segments named {name!r}")
        layer = int(segment.get("layer", 0))
        if not 0 <= layer < layers.shape[0]:
            raise InputError(f"segment {name!r} of '{path}' is in layer {layer}, but the file has "
                             f"{layers.shape[0]} layer(s)")
        # slicerio's arrays are (i, j, k); SimpleITK's are (k, j, i)
        inside = (layers[layer] == int(segment.get("labelValue", 1))).transpose(2, 1, 0)
        mask = sitk.GetImageFromArray(np.ascontiguousarray(inside, dtype=np.uint8))
        mask.SetSpacing(spacing)
        mask.SetOrigin(origin)
        mask.SetDirection(direction)
        masks[name] = mask
    return masks


def _onto_reference(mask: sitk.Image, reference: sitk.Image, name: str) -> sitk.Image:
    """The mask on the reference grid when both are one voxel lattice (Slicer's cropped saves).

    Slicer can save a segmentation cropped to its segments' extent: the same voxels, with the
    origin moved by whole voxels. Placing those voxels back is exact (no resampling); any
    other difference is left for :func:`lesionvol.io.check_same_grid` to refuse.
    """
    if tuple(mask.GetSize()) == tuple(reference.GetSize()) and np.allclose(mask.GetOrigin(), reference.GetOrigin()):
        return mask
    same_axes = (np.allclose(mask.GetSpacing(), reference.GetSpacing(), rtol=GRID_TOLERANCE, atol=0)
                 and np.allclose(mask.GetDirection(), reference.GetDirection(), atol=GRID_TOLERANCE))
    if not same_axes:
        return mask
    offset = np.array(reference.TransformPhysicalPointToContinuousIndex(mask.GetOrigin()))
    if not np.allclose(offset, np.round(offset), atol=GRID_TOLERANCE * 10):
        return mask
    offset = np.round(offset).astype(int)
    values = sitk.GetArrayViewFromImage(mask)  # (k, j, i)
    size = np.array(reference.GetSize())
    start, stop = np.maximum(offset, 0), np.minimum(offset + np.array(mask.GetSize()), size)
    if np.any(stop <= start):
        return mask
    kept = tuple(slice(a - o, b - o) for a, b, o in zip(start[::-1], stop[::-1], offset[::-1]))
    if int(np.count_nonzero(values[kept])) != int(np.count_nonzero(values)):
        raise InputError(f"{name} reaches outside its image ({describe_offset(offset, mask)})")
    placed = np.zeros(size[::-1], dtype=np.uint8)
    placed[tuple(slice(a, b) for a, b in zip(start[::-1], stop[::-1]))] = values[kept]
    image = sitk.GetImageFromArray(placed)
    image.CopyInformation(reference)
    return image


def describe_offset(offset: Sequence[int], mask: sitk.Image) -> str:
    """Where a cropped mask lies in its image's voxels, in words (for error messages).

    Example
    -------
    >>> describe_offset([-2, 0, 5], sitk.Image([3, 3, 3], sitk.sitkUInt8))
    'its voxels start at index (-2, 0, 5) of the image, size (3, 3, 3)'
    """
    return (f"its voxels start at index ({', '.join(str(int(v)) for v in offset)}) of the image, "
            f"size {tuple(mask.GetSize())}")


def head_and_lesion(path: str | os.PathLike, reference: sitk.Image | None = None, head_name: str = "head",
                    lesion_name: str = "lesion") -> tuple[sitk.Image, sitk.Image]:
    """Head and lesion masks from a Slicer segmentation (head = head ∪ lesion segments).

    Segment names are matched ignoring case and surrounding spaces; other segments (neck,
    acetabulum…) are ignored. The masks must lie on the reference image's grid: a
    segmentation Slicer saved cropped to its segments (same voxel lattice, origin moved by
    whole voxels) is placed back exactly; any other grid is refused, never resampled (see
    :func:`lesionvol.io.check_same_grid`).

    Parameters
    ----------
    path : path-like
        The segmentation (see :func:`read_segments`).
    reference : SimpleITK.Image, optional
        The scan the segmentation was drawn on.
    head_name, lesion_name : str
        Names of the two segments.

    Returns
    -------
    head, lesion : SimpleITK.Image
        uint8 0/1 masks on the reference grid (on the segmentation's grid without a reference).

    Raises
    ------
    InputError
        A segment missing (the names found are listed) or named twice, or a grid that differs.

    Example
    -------
    >>> import tempfile
    >>> ref = sitk.Image([6, 6, 6], sitk.sitkInt16)
    >>> head = sitk.Image([6, 6, 6], sitk.sitkUInt8); head[1:5, 1:5, 1:5] = 1
    >>> lesion = sitk.Image([6, 6, 6], sitk.sitkUInt8); lesion[4:6, 4:6, 4:6] = 1
    >>> path = write_segments(Path(tempfile.mkdtemp()) / "t.seg.nrrd", {"Head": head, "Lesion": lesion})
    >>> h, l = head_and_lesion(path, ref)
    >>> int(sitk.GetArrayViewFromImage(h).sum()), int(sitk.GetArrayViewFromImage(l).sum())
    (71, 8)
    >>> head_and_lesion(path, ref, lesion_name="necrosis")
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: segmentation '...t.seg.nrrd' has no segment named 'necrosis' (segments: 'Head', 'Lesion'); name the segments or set the segment names
    """
    segments = read_segments(path)
    chosen = []
    for wanted in (head_name, lesion_name):
        found = [name for name in segments if name.strip().casefold() == wanted.strip().casefold()]
        if not found:
            listed = ", ".join(repr(name) for name in segments) or "none"
            raise InputError(f"segmentation '{path}' has no segment named {wanted!r} (segments: {listed}); "
                             f"name the segments or set the segment names")
        if len(found) > 1:
            raise InputError(f"segmentation '{path}' has {len(found)} segments named {wanted!r} "
                             f"({', '.join(repr(n) for n in found)}); keep one")
        chosen.append(segments[found[0]])
    head, lesion = chosen
    head = sitk.Or(head, lesion)
    masks = []
    for what, mask in (("head", head), ("lesion", lesion)):
        name = f"the {what} segment of '{path}'"
        if reference is not None:
            mask = _onto_reference(mask, reference, name)
        masks.append(as_binary_mask(mask, reference, name=name))
    return masks[0], masks[1]


def _color(name: str, colors: Mapping[str, Sequence[float]], index: int) -> list[float]:
    color = colors.get(name, DEFAULT_COLORS.get(name.casefold(), OTHER_COLORS[index % len(OTHER_COLORS)]))
    try:
        rgb = [float(c) for c in color]
    except (TypeError, ValueError):
        raise InputError(f"colour of segment {name!r} must be three numbers 0–1, not {color!r}") from None
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise InputError(f"colour of segment {name!r} must be three numbers 0–1, not {color!r}")
    return rgb


def _geometry_string(affine_lps: np.ndarray, size: Sequence[int]) -> str:
    """Slicer's "Reference image geometry": the IJK → RAS matrix row by row, then the extent."""
    values = [f"{v:.17g}" for v in (_RAS_FROM_LPS @ affine_lps).ravel()]
    values += [str(v) for n in size for v in (0, int(n) - 1)]
    return ";".join(values) + ";"


def write_segments(path: str | os.PathLike, masks: Mapping[str, sitk.Image],
                   colors: Mapping[str, Sequence[float]] | None = None) -> Path:
    """Write binary masks as one 3D Slicer segmentation, one named segment each.

    Segments are packed as Slicer packs them: a segment goes to the first layer it does not
    overlap (with the next label value there), else to a new layer; two or more layers make
    a 4D file with the layers along the first axis. The geometry is the masks' (LPS); the
    file is written atomically (see :func:`lesionvol.io.atomic_path`).

    Parameters
    ----------
    path : path-like
        Output file; its name must end in ``.nrrd`` (``.seg.nrrd`` is Slicer's).
    masks : mapping of str to SimpleITK.Image
        Segment name → binary mask (0/1 or 0/255), all on one grid. Order is kept.
    colors : mapping of str to (r, g, b), optional
        Colours 0–1 by segment name; :data:`DEFAULT_COLORS` otherwise.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        No masks, a blank, repeated (ignoring case) or multi-line name, a non-binary mask,
        masks on different grids, a bad colour, or a name not ending in ``.nrrd``.

    Example
    -------
    >>> import tempfile
    >>> head = sitk.Image([5, 5, 5], sitk.sitkUInt8); head[1:4, 1:4, 1:4] = 1
    >>> lesion = sitk.Image(head.GetSize(), sitk.sitkUInt8); lesion[2, 2, 2] = 1
    >>> path = write_segments(Path(tempfile.mkdtemp()) / "t0.seg.nrrd", {"head": head, "lesion": lesion})
    >>> header = nrrd.read_header(str(path))
    >>> header["sizes"].tolist(), header["Segment1_Name"], header["Segment1_Layer"]
    ([2, 5, 5, 5], 'lesion', '1')
    """
    path = Path(path)
    if not path.name.lower().endswith(".nrrd"):
        raise InputError(f"a Slicer segmentation is written as .seg.nrrd, not '{path.name}'")
    if not masks:
        raise InputError("no masks to write as segments")
    colors = dict(colors or {})
    names = list(masks)
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "\r\n\0"):
            raise InputError(f"segment name {name!r} must be a non-blank, one-line text")
        if name.strip().casefold() in seen:
            raise InputError(f"two segments are named {name!r} (names are compared ignoring case)")
        seen.add(name.strip().casefold())
    first = masks[names[0]]
    binary = [as_binary_mask(masks[name], first, name=f"segment {name!r}") for name in names]

    layers: list[np.ndarray] = []  # (i, j, k) arrays, as slicerio and NRRD order them
    segments = []
    size = tuple(first.GetSize())
    for index, (name, mask) in enumerate(zip(names, binary)):
        inside = sitk.GetArrayViewFromImage(mask).transpose(2, 1, 0) != 0
        layer = next((n for n, values in enumerate(layers) if not values[inside].any() and values.max() < 255), None)
        if layer is None:
            layers.append(np.zeros(size, dtype=np.uint8))
            layer = len(layers) - 1
        label = int(layers[layer].max()) + 1
        layers[layer][inside] = label
        segments.append({
            "id": f"Segment_{index + 1}", "name": name, "nameAutoGenerated": False,
            "color": _color(name, colors, index), "colorAutoGenerated": False,
            "labelValue": label, "layer": layer,
            # the whole grid: Slicer crops a layer to its first segment's extent when reading
            "extent": [v for n in size for v in (0, n - 1)],
        })
    affine = index_to_physical_affine(first)
    segmentation = {
        "voxels": layers[0] if len(layers) == 1 else np.stack(layers),
        "ijkToLPS": affine,
        "encoding": "gzip",
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "referenceImageExtentOffset": [0, 0, 0],
        "conversionParameters": [{
            "name": "Reference image geometry", "value": _geometry_string(affine, size),
            "description": "Image geometry description string determining the geometry of the labelmap "
                           "that is created in course of conversion."}],
        "segments": segments,
    }
    with atomic_path(path) as tmp:
        slicerio.write_segmentation(os.fspath(tmp), segmentation, compression_level=6)
    return path
