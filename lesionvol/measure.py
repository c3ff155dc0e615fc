"""Volumes and the ratios read off them: LF, RF, the 10 % flag and Steinberg extent.

Two volume estimates are given for every mask:

* **voxel-count volume** (``*_volume_ml``): number of mask voxels × voxel volume. This is
  what manual volumetry in Mimics, 3D Slicer or ITK-SNAP reports, and the one every
  ratio uses.
* **surface-mesh volume** (``*_mesh_volume_ml``): the volume enclosed by the marching-cubes
  surface at level 0.5 (as pyradiomics' ``MeshVolume``). That surface runs half-way
  between inside and outside voxel centres and cuts the corners of the voxel staircase,
  so it is slightly *smaller* than the voxel count — by roughly half a voxel layer times
  the surface area. The gap grows for small, thin or thick-sliced lesions; when the two
  disagree by more than a few percent the mask is coarse relative to the lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from skimage.measure import marching_cubes

from lesionvol.errors import InputError

from lesionvol.geometry import voxel_volume_mm3

#: The default LF threshold and where it comes from; written into every output.
THRESHOLD_PCT = 10.0
THRESHOLD_SOURCE = (
    "Gomez-Barrena et al., Bone Joint Res 2022;11(12):881-889 (REBORNE, 20 hips): a lesion "
    "under mean 10 % (SD 6 %) of the femoral head at 3 months predicted no stage progression "
    "at one year. Exploratory mean, not a validated cut-off."
)
STEINBERG_RULE = "Steinberg extent of lesion / head: A < 15 %, B 15-30 % (inclusive), C > 30 %; none if no lesion"

_ROUND = 9  # compare percentages after rounding so 15.000000000001 is still B


def mask_volume_ml(mask: sitk.Image) -> float:
    """Voxel-count volume of a binary mask in mL (non-zero voxels × voxel volume).

    Example
    -------
    >>> m = sitk.Image([10, 10, 10], sitk.sitkUInt8); m.SetSpacing((1.0, 1.0, 2.0))
    >>> m[0:5, 0:5, 0:4] = 1
    >>> mask_volume_ml(m)  # 100 voxels of 2 mm³
    0.2
    """
    count = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    return count * voxel_volume_mm3(mask) / 1000.0


def mesh_volume_ml(mask: sitk.Image) -> float:
    """Volume in mL enclosed by the marching-cubes surface (level 0.5) of a binary mask.

    The direction cosines are a rotation, so they do not change the volume; the
    spacing does and is applied.

    Example
    -------
    >>> m = sitk.Image([12, 12, 12], sitk.sitkUInt8)
    >>> m[2:10, 2:10, 2:10] = 1  # 512 mm³ by voxel count
    >>> round(mesh_volume_ml(m), 4)  # edges and corners are cut
    0.5007
    """
    array = sitk.GetArrayViewFromImage(mask) != 0
    if not array.any():
        return 0.0
    nonzero = np.nonzero(array)
    lo = [max(int(i.min()) - 1, 0) for i in nonzero]
    hi = [int(i.max()) + 2 for i in nonzero]
    crop = np.pad(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], 1).astype(np.float32)
    spacing_zyx = mask.GetSpacing()[::-1]
    verts, faces, _, _ = marching_cubes(crop, level=0.5, spacing=spacing_zyx)
    triangles = verts[faces]
    signed = np.einsum("ij,ij->i", triangles[:, 0], np.cross(triangles[:, 1], triangles[:, 2]))
    return abs(float(signed.sum())) / 6.0 / 1000.0


def lesion_pct_head(lesion_ml: float, head_ml: float) -> float:
    """LF: lesion as a percentage of the femoral head at the same timepoint.

    Example
    -------
    >>> lesion_pct_head(4.8, 48.0)
    10.0
    """
    if head_ml <= 0:
        return float("nan")
    return 100.0 * lesion_ml / head_ml


def residual_pct_baseline(lesion_ml: float, baseline_lesion_ml: float) -> float:
    """RF: lesion now as a percentage of the baseline lesion (regenerated % = 100 − RF).

    NaN when there was no lesion at baseline.

    Example
    -------
    >>> residual_pct_baseline(3.0, 12.0)
    25.0
    """
    if baseline_lesion_ml <= 0:
        return float("nan")
    return 100.0 * lesion_ml / baseline_lesion_ml


def threshold_flag(lf_pct: float, threshold_pct: float = THRESHOLD_PCT) -> str:
    """``'below'`` or ``'at_or_above'`` the LF threshold; ``''`` when LF is unknown.

    Example
    -------
    >>> threshold_flag(9.99), threshold_flag(10.0), threshold_flag(12.0, threshold_pct=15)
    ('below', 'at_or_above', 'below')
    """
    if not np.isfinite(lf_pct):
        return ""
    return "below" if round(lf_pct, _ROUND) < threshold_pct else "at_or_above"


def steinberg_extent(lf_pct: float) -> str:
    """Steinberg (ARCO 1994) extent from LF: A < 15 %, B 15–30 % inclusive, C > 30 %.

    ``'none'`` when there is no lesion, ``''`` when LF is unknown.

    Example
    -------
    >>> [steinberg_extent(v) for v in (0.0, 14.9, 15.0, 30.0, 30.1)]
    ['none', 'A', 'B', 'B', 'C']
    """
    if not np.isfinite(lf_pct):
        return ""
    lf = round(lf_pct, _ROUND)
    if lf <= 0:
        return "none"
    if lf < 15.0:
        return "A"
    return "B" if lf <= 30.0 else "C"


@dataclass(frozen=True)
class Volumes:
    """Volumes of one timepoint, measured on its own native grid.

    Example
    -------
    >>> v = Volumes(head_volume_ml=48.0, lesion_volume_ml=4.8, head_mesh_volume_ml=47.5,
    ...             lesion_mesh_volume_ml=4.6, lesion_outside_head_ml=0.0)
    >>> v.lesion_pct_head
    10.0
    """

    head_volume_ml: float
    lesion_volume_ml: float
    head_mesh_volume_ml: float
    lesion_mesh_volume_ml: float
    lesion_outside_head_ml: float
    head_fov_edges: tuple[str, ...] = ()
    lesion_fov_edges: tuple[str, ...] = ()

    @property
    def lesion_pct_head(self) -> float:
        return lesion_pct_head(self.lesion_volume_ml, self.head_volume_ml)

    def fov_edge_reason(self) -> str:
        """Why the volumes may be cut by the image's field of view, or ``""``.

        Example
        -------
        >>> Volumes(48.0, 4.8, 47.5, 4.6, 0.0, head_fov_edges=("inferior",)).fov_edge_reason()
        'head touches the inferior edge of the image: its volume may be cut short'
        """
        parts = [f"{name} touches the {' and '.join(edges)} edge{'s' if len(edges) > 1 else ''} of the image"
                 for name, edges in (("head", self.head_fov_edges), ("lesion", self.lesion_fov_edges)) if edges]
        if not parts:
            return ""
        whose = "its volume" if len(parts) == 1 else "their volumes"
        return f"{'; '.join(parts)}: {whose} may be cut short"


#: Anatomical name of the +x, +y, +z directions of LPS space (and of their opposites).
_LPS_NAMES = (("left", "right"), ("posterior", "anterior"), ("superior", "inferior"))


def fov_edges(mask: sitk.Image) -> tuple[str, ...]:
    """The faces of the image a mask touches, named by anatomical direction (``"inferior"``, …).

    A head or lesion touching the edge of the field of view was probably cut by it.

    Example
    -------
    >>> m = sitk.Image([10, 10, 10], sitk.sitkUInt8); m[3:7, 3:7, 0:4] = 1
    >>> fov_edges(m)
    ('inferior',)
    """
    array = sitk.GetArrayViewFromImage(mask) != 0
    if not array.any():
        return ()
    direction = np.asarray(mask.GetDirection()).reshape(3, 3)
    touched = []
    for axis in range(3):  # image axis i is array axis 2 - i
        extent = np.any(array, axis=tuple(a for a in range(3) if a != 2 - axis))
        column = direction[:, axis]
        k = int(np.argmax(np.abs(column)))
        positive, negative = _LPS_NAMES[k] if column[k] > 0 else _LPS_NAMES[k][::-1]
        if extent[0]:
            touched.append(negative)
        if extent[-1]:
            touched.append(positive)
    return tuple(touched)


def measure_volumes(lesion: sitk.Image, head: sitk.Image) -> Volumes:
    """Measure head and lesion on their common native grid.

    The lesion is counted as given; any part drawn outside the head is reported in
    ``lesion_outside_head_ml`` so a reader can see it, not silently cut.

    Example
    -------
    >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[2:18, 2:18, 2:18] = 1
    >>> lesion = sitk.Image(head.GetSize(), sitk.sitkUInt8); lesion[2:10, 2:10, 2:10] = 1
    >>> v = measure_volumes(lesion, head)
    >>> v.head_volume_ml, v.lesion_volume_ml, v.lesion_pct_head
    (4.096, 0.512, 12.5)
    """
    outside = sitk.And(lesion != 0, head == 0)
    return Volumes(
        head_volume_ml=mask_volume_ml(head),
        lesion_volume_ml=mask_volume_ml(lesion),
        head_mesh_volume_ml=mesh_volume_ml(head),
        lesion_mesh_volume_ml=mesh_volume_ml(lesion),
        lesion_outside_head_ml=mask_volume_ml(outside),
        head_fov_edges=fov_edges(head),
        lesion_fov_edges=fov_edges(lesion),
    )


#: A lesion with more than this share of its volume outside the head mask is refused: LF would
#: be a ratio of two unrelated regions. Less is reported in ``lesion_outside_head_ml``.
MAX_LESION_OUTSIDE_FRACTION = 0.05


def check_lesion_in_head(volumes: Volumes, label: str) -> None:
    """Refuse (InputError) a lesion lying (mostly) outside its head mask.

    Example
    -------
    >>> check_lesion_in_head(Volumes(48.0, 4.0, 47.5, 3.9, 0.1), "t0")
    >>> check_lesion_in_head(Volumes(48.0, 4.0, 47.5, 3.9, 4.0), "t0")
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: the lesion of t0 lies outside its head mask (4 of 4 mL outside): check that the masks belong to the same hip and scan
    """
    if volumes.lesion_volume_ml > 0 and (
            volumes.lesion_outside_head_ml > MAX_LESION_OUTSIDE_FRACTION * volumes.lesion_volume_ml):
        raise InputError(f"the lesion of {label} lies outside its head mask ({volumes.lesion_outside_head_ml:.3g} of "
                         f"{volumes.lesion_volume_ml:.3g} mL outside): check that the masks belong to the same hip "
                         f"and scan")
