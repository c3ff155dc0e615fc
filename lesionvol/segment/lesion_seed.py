"""The necrotic lesion inside a head mask someone gave: segmented alone, or grown from a click.

Two jobs the head-and-lesion segmenter (:mod:`lesionvol.segment.lesion`) cannot do on its own,
because it needs its own fitted head:

* :func:`segment_lesion_in_head` — a reader (or another tool) gave the femoral head mask and
  the lesion is still to be found: the head is modelled from the mask
  (:func:`head_fit_from_mask`), :func:`lesionvol.segment.lesion.segment_masks` runs on that
  model, and the lesion is kept inside the given head.
* :func:`grow_lesion_from_seed` — a reader clicks in a lesion: it is grown from that point
  inside the head mask, bounded by the band.  The marrow model and the two definitions are the
  segmenter's (same levels, imported from :mod:`lesionvol.segment.lesion`): the ``enclosed``
  lesion is the click's connected part of the head's marrow zone that healthy marrow (bright
  marrow connected to the neck) does not reach, continued through the subchondral plate; the
  ``dark`` lesion is its low-signal part.  The click is taken as the reader's word that a lesion
  is there, so the segmenter's size and shape filters (which keep plate rims and vessel channels
  out of an unattended run) are not applied to it.

Example
-------
>>> from lesionvol.phantom import VisitSpec, make_visit, lesion_for_fraction
>>> scan = make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 20.0),)), seed=1)
>>> grown = grow_lesion_from_seed(scan.image, scan.head_mask, scan.truth.lesion_centroid_mm)
>>> from lesionvol.measure import mask_volume_ml
>>> abs(mask_volume_ml(grown) / scan.truth.lesion_enclosed_ml - 1) < 0.05
True
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionvol.errors import InputError
from lesionvol.geometry import Grid
from lesionvol.segment.head import (DEFAULT_PLATE_MM, HeadFit, NoFemoralHeadError, _fit_sphere,
                                   fit_head)
from lesionvol.segment.lesion import DARK_LEVEL, _extend_into_shell, _paste, marrow_model, segment_masks
__all__ = ["head_fit_from_mask", "segment_lesion_in_head", "grow_lesion_from_seed", "merge_grown_lesion",
           "LESION_DEFINITIONS"]

LESION_DEFINITIONS = ("enclosed", "dark")

#: The segmenter's own head fit, started at the mask's sphere, is used when it agrees with the mask
#: within this distance (centre) and radius difference (mm); otherwise the mask's sphere is.
FIT_AGREEMENT_MM = 3.0
#: Marrow level of a head modelled from its mask: this percentile of the image inside the mask.
MASK_MARROW_PERCENTILE = 80
#: A mask whose centroid lies closer than this to its sphere's centre shows no neck cut (mm).
MIN_CUT_OFFSET_MM = 1.0
#: A click that lands in healthy marrow (or on the plate) is moved to the nearest lesion voxel
#: within this distance (mm): a reader aims at a lesion, not at a voxel.
SEED_SNAP_MM = 4.0


def _binary(mask: sitk.Image, image: sitk.Image, name: str) -> np.ndarray:
    from lesionvol.io import as_binary_mask

    arr = sitk.GetArrayFromImage(as_binary_mask(mask, image, name=name)).astype(bool)
    if not arr.any():
        raise InputError(f"{name} is empty")
    return arr


def head_fit_from_mask(image: sitk.Image, head_mask: sitk.Image) -> HeadFit:
    """A femoral head model (:class:`HeadFit`) for a head given as a mask.

    The sphere is fitted to the mask's surface (the flat head–neck cut trimmed away as outliers).
    The segmenter's own fit (:func:`lesionvol.segment.head.fit_head`), started at that sphere,
    is taken when it agrees with it within ``FIT_AGREEMENT_MM``; otherwise the model comes from
    the mask alone: neck axis from the sphere's centre away from the mask's centroid (the cut
    side), cut plane at the mask's farthest voxel along it, marrow surface ``DEFAULT_PLATE_MM``
    inside the sphere, marrow level the 80th percentile of the image in the mask.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> fit = head_fit_from_mask(scan.image, scan.head_mask)
    >>> float(np.linalg.norm(fit.centre_mm - scan.truth.head_centre_mm)) < 1.0, fit.side
    (True, 'right')
    """
    arr = _binary(head_mask, image, "the head mask")
    grid = Grid.of(image)
    surface = arr & ~ndimage.binary_erosion(arr)
    pts = grid.to_physical(np.argwhere(surface)[:, ::-1].astype(float))
    all_pts = grid.to_physical(np.argwhere(arr)[:, ::-1].astype(float))
    centroid = all_pts.mean(0)
    fitted = _fit_sphere(pts)
    if fitted is None:
        volume = arr.sum() * float(np.prod(grid.spacing_mm))
        centre, radius = centroid, float((3 * volume / (4 * np.pi)) ** (1 / 3))
    else:
        # surface voxel centres lie about half a voxel inside the surface they sample
        centre, radius = np.asarray(fitted[0], float), float(fitted[1]) + 0.5 * float(np.median(grid.spacing_mm))
    try:
        fit = fit_head(image, centre, require_marrow=False)     # the reader's mask vouches for the head
        if (np.linalg.norm(fit.centre_mm - centre) <= FIT_AGREEMENT_MM
                and abs(fit.radius_mm - radius) <= FIT_AGREEMENT_MM):
            fit.quality["model"] = "segmenter fit, checked against the mask"
            return fit
    except NoFemoralHeadError:
        pass
    offset = centre - centroid
    if np.linalg.norm(offset) >= MIN_CUT_OFFSET_MM:
        axis = offset / np.linalg.norm(offset)
    else:  # a whole ball: no cut to read; the neck runs inferiorly (LPS +z is superior)
        axis = np.array([0.0, 0.0, -1.0])
    junction = float(((all_pts - centre) @ axis).max()) + 0.5 * float(grid.spacing_mm.max())
    values = sitk.GetArrayViewFromImage(image)[arr]
    marrow = float(np.percentile(values, MASK_MARROW_PERCENTILE))
    side = "right" if axis[0] < 0 else "left"   # the neck runs laterally; LPS +x is the patient's left
    return HeadFit(centre, radius, radius - DEFAULT_PLATE_MM, axis, junction, side, marrow,
                   {"model": "from the mask alone"})


def segment_lesion_in_head(image: sitk.Image, head_mask: sitk.Image, definition: str = "enclosed",
                           fit: HeadFit | None = None) -> sitk.Image:
    """The lesion, segmented automatically inside a given head mask (uint8 0/1, image grid).

    The segmenter's lesion method (:func:`lesionvol.segment.lesion.segment_masks`) on the
    head modelled from the mask (:func:`head_fit_from_mask`), kept inside the mask.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=2)           # a healed head
    >>> from lesionvol.measure import mask_volume_ml
    >>> mask_volume_ml(segment_lesion_in_head(scan.image, scan.head_mask))
    0.0
    """
    _check_definition(definition)
    head = _binary(head_mask, image, "the head mask")
    fit = fit or head_fit_from_mask(image, head_mask)
    masks = segment_masks(image, fit)
    lesion = masks.lesion_enclosed if definition == "enclosed" else masks.lesion_dark
    out = sitk.GetImageFromArray((sitk.GetArrayViewFromImage(lesion).astype(bool) & head).astype(np.uint8))
    out.CopyInformation(image)
    return out


def _check_definition(definition: str) -> None:
    if definition not in LESION_DEFINITIONS:
        raise InputError(f"lesion definition must be one of {', '.join(LESION_DEFINITIONS)}, got {definition!r}")


def grow_lesion_from_seed(image: sitk.Image, head_mask: sitk.Image, seed_mm, definition: str = "enclosed",
                          fit: HeadFit | None = None) -> sitk.Image:
    """Grow the lesion a reader clicked in, inside the head mask, bounded by the band.

    Parameters
    ----------
    image : SimpleITK.Image
        The T1 image (any intensity scale).
    head_mask : SimpleITK.Image
        The femoral head on the image grid (segmented, drawn or corrected).
    seed_mm : (x, y, z)
        The click, a physical LPS point in mm.  A click in healthy marrow or on the plate is moved
        to the nearest lesion voxel within ``SEED_SNAP_MM``.
    definition : {"enclosed", "dark"}
        Everything inside the band's outer margin, or its low-signal part only.
    fit : HeadFit, optional
        The head model; :func:`head_fit_from_mask` by default.

    Returns
    -------
    SimpleITK.Image
        uint8 0/1 mask of that one lesion on the image grid, inside the head mask.

    Raises
    ------
    InputError
        The click is outside the head, or no lesion lies within ``SEED_SNAP_MM`` of it.
    """
    _check_definition(definition)
    head_full = _binary(head_mask, image, "the head mask")
    seed = np.asarray(seed_mm, float).reshape(3)
    grid = Grid.of(image)
    seed_index = np.round(grid.to_index(seed[None])[0]).astype(int)
    if np.any(seed_index < 0) or np.any(seed_index >= grid.size) or not head_full[tuple(seed_index[::-1])]:
        where = ", ".join(f"{v:.1f}" for v in seed)
        raise InputError(f"the click ({where} mm) is not inside the head mask: click inside the lesion")
    fit = fit or head_fit_from_mask(image, head_mask)
    m = marrow_model(image, fit, head_full)
    lo, hi, interior = m.lo, m.hi, m.interior
    candidates = interior & ~m.marrow
    local = seed_index - lo
    if np.any(local < 0) or np.any(local >= hi - lo):
        raise InputError("the click is outside the head's region")
    lab, nlab = ndimage.label(candidates)
    at = lab[tuple(local[::-1])]
    if at == 0 and nlab:
        # the nearest lesion voxel within SEED_SNAP_MM of the click
        dist, nearest = ndimage.distance_transform_edt(lab == 0, sampling=grid.spacing_mm[::-1], return_indices=True)
        z, y, x = local[::-1]
        if dist[z, y, x] <= SEED_SNAP_MM:
            at = lab[tuple(nearest[:, z, y, x])]
    if at == 0:
        raise InputError(f"no lesion at the click: it lies in healthy marrow (bright, connected to the neck) "
                         f"with no lesion within {SEED_SNAP_MM:g} mm")
    core = lab == at
    if definition == "dark":
        core &= interior & (m.n < DARK_LEVEL)
    full = (core | _extend_into_shell(core, interior, m.shell, m.p, fit, m.depth, grid, lo)) & m.head
    shape = tuple(int(v) for v in grid.size[::-1])
    out = _paste(shape, lo, hi, full.astype(np.uint8), image)
    return out


def merge_grown_lesion(lesion: sitk.Image | None, grown: sitk.Image) -> sitk.Image:
    """The lesion mask after a click: the grown lesion replaces the components it touches.

    Components of ``lesion`` that overlap ``grown`` go (the click regrew that lesion); the
    others stay; ``grown`` is added.  ``lesion`` None: ``grown`` alone.

    Example
    -------
    >>> a = sitk.Image([10, 1, 1], sitk.sitkUInt8); a[0:3, 0, 0] = 1; a[6:9, 0, 0] = 1
    >>> g = sitk.Image([10, 1, 1], sitk.sitkUInt8); g[5:7, 0, 0] = 1
    >>> sitk.GetArrayFromImage(merge_grown_lesion(a, g)).ravel().tolist()
    [1, 1, 1, 0, 0, 1, 1, 0, 0, 0]
    """
    new = sitk.GetArrayViewFromImage(grown) != 0
    if lesion is None:
        out = new
    else:
        old = sitk.GetArrayViewFromImage(lesion) != 0
        lab, nlab = ndimage.label(old, ndimage.generate_binary_structure(3, 3))
        touched = np.unique(lab[new & old])
        out = (old & ~np.isin(lab, touched[touched > 0])) | new
    image = sitk.GetImageFromArray(out.astype(np.uint8))
    image.CopyInformation(grown)
    return image
