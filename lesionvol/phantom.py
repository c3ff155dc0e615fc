"""Synthetic serial T1 hip MRI with exactly known ground truth.

The phantom is a hip drawn as implicit shapes in an *object frame* (millimetres, axes parallel to
ITK/LPS at the neutral pose: x = +Left, y = +Posterior, z = +Superior), posed into the scanner by
one rigid transform per visit, and sampled on a per-visit grid with partial volume, a smooth
multiplicative bias field and Rician noise.

Anatomy (per hip, origin at the head centre for a single hip)
-------------------------------------------------------------
* femur = head ball (radius ``R``) ∪ neck capsule (radius 0.62 R, 130° neck–shaft angle,
  12° anteversion) ∪ trochanter ball ∪ shaft (radius 0.6 R, going inferiorly); a 2 mm
  low-signal cortex lines every femoral surface (the subchondral plate on the head);
* acetabulum = hemispherical cup (inner radius R + 2.5 mm, wall 8 mm, 1.2 mm cortices, marrow
  between), pole towards supero-medial-posterior so the opening faces infero-lateral-anterior;
* joint space (cartilage + fluid) between head and cup; muscle; a 12 mm subcutaneous fat layer
  of an elliptic-cylinder body; air outside.
* T1 intensities: fat/marrow 1.0, muscle 0.35, cortex 0.05, cartilage 0.45, necrosis 0.12,
  demarcating band 0.05, air 0.0, times a random global factor (``VisitSpec.intensity_scale``).

Ground truth definitions
------------------------
* **anatomical head** (``head_volume_ml``): the head ball cut by the head–neck junction plane,
  perpendicular to the neck axis where the neck (radius 0.62 R) leaves the ball, at ``junction_mm``
  = sqrt(1 − 0.62²) R ≈ 0.785 R from the centre (design.md's definition; before generator
  version 2 the cut was at 0.55 R):
  ball − spherical cap, exact.  ``head_sphere_volume_ml`` is the full ball.
* **lesion** k: anatomical head ∩ lesion ellipsoid (a ball when ``axis_scale`` is 1,1,1).
  Its *band* is the part outside the inner ellipsoid whose semi-axes are shorter by ``band_mm``
  (for a ball: distance from the centre > r − b).  ``lesion_enclosed_ml`` = union of all lesion
  components (everything inside the band's outer margin); ``lesion_dark_ml`` = union of the
  low-signal parts (the whole component if its centre is dark, its band only if
  ``bright_centre``).  The 2 mm subchondral plate is drawn at cortex intensity over the lesion;
  the truth follows the geometric definition above (the plate inside the lens is counted).
* Volumes are analytic (ball, cap, sphere–sphere lens) whenever every component is a ball that
  stays clear of the junction plane; otherwise they come from an exact-per-column integration
  (each column's intersection with the convex shapes is an interval computed in closed form; the
  columns are summed with a 0.05 mm midpoint rule).  The relative error of that integration,
  estimated against a half-resolution run, is reported in ``volume_rel_error``; it is below
  2e-4 (0.02 %, well inside the 0.2 % we promise) and is tested against the analytic lens and
  the ellipsoid volume (measured errors 1e-6 to 4e-5 for lesions of 0.4–20 mL).
* Truth masks (uint8, same grid as the image) sample the shapes at voxel centres; truth volumes
  never come from counting voxels.
* ``regenerated_ml`` = |L(baseline) \\ L(t)|, ``new_ml`` = |L(t) \\ L(baseline)| (enclosed lesion,
  object frame, so independent of pose); exact when the follow-up balls are nested in the
  baseline balls.

Poses and grids
---------------
A visit's pose maps object points to scanner points: ``p = R · q + T`` (rotation about the object
origin).  ``Series.transforms[i]`` is an :class:`SimpleITK.Euler3DTransform` in ITK convention,
mapping a point of the baseline (fixed) physical space to the same anatomical point in follow-up
``i + 1`` (moving) physical space; its centre is the baseline head centre.  The grid (scanner
frame, fixed between visits except when the visit asks for another grid) is centred on the hip's
region of interest at the neutral pose; ``plane`` picks the direction cosines (``coronal``: rows
+x, columns −z, slices +y; ``axial``: identity; ``sagittal``: rows +y, columns −z, slices −x),
``oblique_deg`` tilts them.

Public API (names are stable; other modules code against them)
---------------------------------------------------------------
``LesionSpec``, ``VisitSpec``, ``PhantomTruth``, ``ChangeTruth``, ``PhantomScan``, ``Series``,
``make_visit(spec, *, seed, side="right", head_radius_mm=23.0, junction_fraction=JUNCTION_FRACTION)``,
``make_series(seed, n_followups=2, **options)``, ``random_series(seed, n_followups=2, ...)``,
``lesion_for_fraction(head_radius_mm, lesion_pct_head, side=...)``, ``nested_followup(...)``,
``series_transform(base_truth, follow_truth)``,
``ball_volume_mm3``, ``cap_volume_mm3``, ``lens_volume_mm3``, ``head_volume_mm3``.

Per visit, ``PhantomScan.truth`` (``truths[side]`` for each hip) gives the head centre, lesion
centroid, neck axis (unit, from the head centre towards the neck), acetabular axis (unit, towards
the cup's pole) and the lateral acetabular edge (outer corner of the rim on the coronal plane
through the head centre), all in physical LPS mm; ``PhantomScan.head_points_mm()`` gives
corresponding points across the head for target registration error.

Image formation: shapes are evaluated at voxel centres; voxels within half a voxel diagonal of
any tissue boundary (every boundary function is 1-Lipschitz, so this test misses none) are
supersampled 2 × 2 in-plane × 3–5 along the slice axis and averaged; hip shapes are evaluated
only near the hip.  Then the bias field, Rician noise (sigma = marrow / SNR, before the global
intensity factor) and the global factor.  Same seed → identical image.

Example
-------
>>> from lesionvol.phantom import make_series
>>> series = make_series(seed=1, n_followups=1, shape=(64, 64, 20), spacing_mm=(2, 2, 6))
>>> round(series.scans[0].truth.head_volume_ml, 1)  # exact, whatever the grid
49.3
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from scipy.optimize import brentq
from scipy.spatial.transform import Rotation

__all__ = [
    "LesionSpec",
    "VisitSpec",
    "PhantomTruth",
    "ChangeTruth",
    "PhantomScan",
    "Series",
    "make_visit",
    "make_series",
    "random_series",
    "lesion_for_fraction",
    "nested_followup",
    "ball_volume_mm3",
    "cap_volume_mm3",
    "lens_volume_mm3",
    "head_volume_mm3",
    "series_transform",
]

GENERATOR_VERSION = "2"

# T1 intensities relative to fatty marrow
T1_FAT = 1.0
T1_MUSCLE = 0.35
T1_CORTEX = 0.05
T1_CARTILAGE = 0.45
T1_NECROSIS = 0.12
T1_BAND = 0.05
T1_AIR = 0.0

CORTEX_MM = 2.0            # femoral cortex / subchondral plate
JOINT_SPACE_MM = 2.5
CUP_WALL_MM = 8.0          # the roof is thick bone: the acetabulum check needs marrow above the head
CUP_CORTEX_MM = 1.2
#: The lateral acetabular edge (JIC): on the rim plane, this far outside the cup's inner surface
#: (the rim's bony corner; generator version 1 had a 4 mm wall and its outer corner there).
RIM_EDGE_MM = 4.0
FAT_LAYER_MM = 12.0
NECK_SHAFT_DEG = 130.0
#: Neck radius as a fraction of the head radius; the head is cut where this neck leaves the ball.
NECK_RADIUS_FRACTION = 0.62
JUNCTION_FRACTION = math.sqrt(1.0 - NECK_RADIUS_FRACTION**2)
ANTEVERSION_DEG = 12.0
CUP_INCLINATION_DEG = 45.0
CUP_ANTEVERSION_DEG = 20.0
HIP_HALF_SEPARATION_MM = 88.0   # head centre to pelvic midline
BODY_SEMI_AXES_MM = (160.0, 115.0)
BODY_CENTRE_Y_MM = 15.0
INTEGRATION_STEP_MM = 0.05

_PLANES = {
    "axial": np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], float).T,
    "coronal": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float).T,
    "sagittal": np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], float).T,
}


# ----------------------------------------------------------------------------- specifications
@dataclass(frozen=True)
class LesionSpec:
    """One necrotic lesion component.

    Parameters
    ----------
    centre_offset_mm : tuple of float
        Lesion-ball centre relative to its head centre, object frame (LPS axes), mm.
    radius_mm : float
        Ball radius (mm); semi-axes are ``radius_mm * axis_scale``.
    band_mm : float
        Thickness of the low-signal demarcating band (mm).
    bright_centre : bool
        Centre keeps fat signal (only the band is dark), as in 71 % of early lesions.
    axis_scale : tuple of float
        Per-axis (object x, y, z) scale of the radius; not (1, 1, 1) makes an ellipsoid.

    Example
    -------
    >>> LesionSpec((-4.0, -10.0, 18.0), 12.0).radius_mm
    12.0
    """

    centre_offset_mm: tuple[float, float, float]
    radius_mm: float
    band_mm: float = 2.0
    bright_centre: bool = False
    axis_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def is_ball(self) -> bool:
        """True when the lesion is a ball (analytic volumes apply)."""
        return all(s == 1.0 for s in self.axis_scale)


@dataclass(frozen=True)
class VisitSpec:
    """Everything that defines one visit (scan) of the phantom.

    ``lesions`` belong to the hip of ``side`` (the right hip when ``side="both"``);
    ``lesions_left`` to the left hip when ``side="both"``.  ``shape`` and ``spacing_mm`` are in
    index order (columns, rows, slices).

    Example
    -------
    >>> VisitSpec(lesions=()).shape
    (128, 128, 40)
    """

    lesions: tuple[LesionSpec, ...] = ()
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shape: tuple[int, int, int] = (128, 128, 40)
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 3.0)
    plane: str = "coronal"
    oblique_deg: float = 0.0
    snr: float = 25.0
    bias_amplitude: float = 0.15
    days: float | None = None
    lesions_left: tuple[LesionSpec, ...] = ()
    intensity_scale: float | None = None


@dataclass
class PhantomTruth:
    """Analytic truth of one hip in one visit (volumes in mL, points in physical LPS mm).

    Example
    -------
    >>> t = make_visit(VisitSpec(shape=(64, 64, 20), spacing_mm=(2, 2, 6)), seed=0).truth
    >>> t.lesion_enclosed_ml
    0.0
    """

    side: str
    head_radius_mm: float
    junction_mm: float
    head_volume_ml: float
    head_sphere_volume_ml: float
    lesion_enclosed_ml: float
    lesion_dark_ml: float
    lesion_pct_head: float
    volume_method: str
    volume_rel_error: float
    head_centre_mm: np.ndarray
    lesion_centroid_mm: np.ndarray | None
    neck_axis: np.ndarray
    acetabular_axis: np.ndarray
    acetabular_edge_mm: np.ndarray
    pose_matrix: np.ndarray = field(repr=False)
    pose_translation_mm: np.ndarray = field(repr=False)


@dataclass
class ChangeTruth:
    """Truth of change between baseline and one follow-up, for one hip (enclosed lesion).

    Example
    -------
    >>> ChangeTruth(regenerated_ml=2.0, new_ml=0.0, residual_pct_baseline=60.0).new_ml
    0.0
    """

    regenerated_ml: float
    new_ml: float
    residual_pct_baseline: float


@dataclass
class PhantomScan:
    """One synthetic scan with its truth masks (uint8, same grid) and truths per side.

    Example
    -------
    >>> s = make_visit(VisitSpec(shape=(64, 64, 20), spacing_mm=(2, 2, 6)), seed=0)
    >>> s.head_mask.GetPixelID() == sitk.sitkUInt8
    True
    """

    image: sitk.Image
    head_mask: sitk.Image
    lesion_enclosed_mask: sitk.Image
    lesion_dark_mask: sitk.Image
    truth: PhantomTruth
    visit: VisitSpec
    truths: dict[str, PhantomTruth] = field(default_factory=dict)

    def head_points_mm(self, side: str | None = None, step_mm: float = 5.0) -> np.ndarray:
        """Points on a fixed object-frame lattice inside the anatomical head, physical mm.

        The lattice is the same for every visit, so row ``i`` of two visits is the same
        anatomical point (use it for target registration error).

        Example
        -------
        >>> s = make_visit(VisitSpec(shape=(64, 64, 20), spacing_mm=(2, 2, 6)), seed=0)
        >>> s.head_points_mm().shape[1]
        3
        """
        t = self.truths[side] if side else self.truth
        q = _head_lattice(t.head_radius_mm, t.junction_mm, t.side, step_mm)
        return _to_physical(q + _hip_origin(t.side, len(self.truths) > 1), t)


@dataclass
class Series:
    """Serial scans of one phantom, oldest first, with the truth of pose and change.

    ``transforms[i]`` maps baseline physical points to follow-up ``i + 1`` physical points
    (ITK fixed→moving convention).  ``changes[i][side]`` is the change truth of follow-up ``i+1``.

    Example
    -------
    >>> s = make_series(seed=3, n_followups=1, shape=(64, 64, 20), spacing_mm=(2, 2, 6))
    >>> len(s.scans), len(s.transforms)
    (2, 1)
    """

    scans: list[PhantomScan]
    transforms: list[sitk.Euler3DTransform]
    changes: list[dict[str, ChangeTruth]]
    days: list[float | None]
    seed: int
    options: dict = field(default_factory=dict)

    @property
    def regenerated_ml(self) -> list[float]:
        """Regenerated volume per follow-up (primary side), mL."""
        side = self.scans[0].truth.side
        return [c[side].regenerated_ml for c in self.changes]

    @property
    def new_ml(self) -> list[float]:
        """New-lesion volume per follow-up (primary side), mL."""
        side = self.scans[0].truth.side
        return [c[side].new_ml for c in self.changes]

    def head_points_mm(self, visit: int, side: str | None = None, step_mm: float = 5.0) -> np.ndarray:
        """Corresponding head points of ``visit`` (physical mm); see PhantomScan.head_points_mm.

        Example
        -------
        >>> s = make_series(seed=3, n_followups=1, shape=(64, 64, 20), spacing_mm=(2, 2, 6))
        >>> p0, p1 = s.head_points_mm(0), s.head_points_mm(1)
        >>> bool(np.allclose([s.transforms[0].TransformPoint(p) for p in p0], p1, atol=1e-6))
        True
        """
        return self.scans[visit].head_points_mm(side, step_mm)


# ----------------------------------------------------------------------------- exact formulas
def ball_volume_mm3(radius_mm: float) -> float:
    """Volume of a ball, 4/3 π r³ (mm³).

    Example
    -------
    >>> round(ball_volume_mm3(1.0), 4)
    4.1888
    """
    return 4.0 / 3.0 * math.pi * radius_mm**3


def cap_volume_mm3(radius_mm: float, height_mm: float) -> float:
    """Volume of a spherical cap of height h, π h² (3R − h) / 3 (mm³).

    Example
    -------
    >>> round(cap_volume_mm3(1.0, 2.0) / ball_volume_mm3(1.0), 6)
    1.0
    """
    h = min(max(height_mm, 0.0), 2 * radius_mm)
    return math.pi * h * h * (3 * radius_mm - h) / 3.0


def head_volume_mm3(radius_mm: float, junction_mm: float) -> float:
    """Anatomical head: ball cut by a plane at ``junction_mm`` from the centre (mm³).

    Example
    -------
    >>> round(head_volume_mm3(23.0, 0.55 * 23.0) / 1000, 3)
    44.386
    """
    return ball_volume_mm3(radius_mm) - cap_volume_mm3(radius_mm, radius_mm - junction_mm)


def lens_volume_mm3(r1_mm: float, r2_mm: float, distance_mm: float) -> float:
    """Volume of the intersection of two balls (sphere–sphere lens), mm³.

    Example
    -------
    >>> round(lens_volume_mm3(1.0, 1.0, 0.0) / ball_volume_mm3(1.0), 6)
    1.0
    """
    R, r, d = float(r1_mm), float(r2_mm), float(distance_mm)
    if r <= 0 or R <= 0 or d >= R + r:
        return 0.0
    if d <= abs(R - r):
        return ball_volume_mm3(min(R, r))
    return math.pi * (R + r - d) ** 2 * (d * d + 2 * d * r - 3 * r * r + 2 * d * R + 6 * r * R - 3 * R * R) / (12 * d)


# ----------------------------------------------------------------------------- hip geometry
def _unit(v: Sequence[float]) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class _HipGeometry:
    """Right-hip canonical geometry, local frame centred on the head (lateral is −x)."""

    R: float
    junction_mm: float

    @property
    def neck_axis(self) -> np.ndarray:
        a = math.radians(180.0 - NECK_SHAFT_DEG)
        v = math.radians(ANTEVERSION_DEG)
        # from the head centre towards the trochanter: lateral, inferior, a little posterior
        return _unit([-math.sin(a) * math.cos(v), math.sin(a) * math.sin(v), -math.cos(a)])

    @property
    def cup_axis(self) -> np.ndarray:
        i, v = math.radians(CUP_INCLINATION_DEG), math.radians(CUP_ANTEVERSION_DEG)
        opening = _unit([-math.sin(i) * math.cos(v), -math.sin(v), -math.cos(i) * math.cos(v)])
        return -opening   # pole: supero-medial-posterior

    @property
    def neck_length_mm(self) -> float:
        return 2.2 * self.R

    @property
    def trochanter_centre(self) -> np.ndarray:
        return self.neck_length_mm * self.neck_axis

    @property
    def cup_inner_mm(self) -> float:
        return self.R + JOINT_SPACE_MM

    @property
    def cup_outer_mm(self) -> float:
        return self.cup_inner_mm + CUP_WALL_MM

    def acetabular_edge(self) -> np.ndarray:
        """Lateral rim point of the cup on the coronal plane through the head centre (RIM_EDGE_MM
        outside the inner surface)."""
        w = _unit(np.cross(self.cup_axis, [0.0, 1.0, 0.0]))
        if w[0] > 0:
            w = -w
        return (self.cup_inner_mm + RIM_EDGE_MM) * w


def _hip_origin(side: str, both: bool) -> np.ndarray:
    """Head centre of ``side`` in the object frame."""
    if not both:
        return np.zeros(3)
    return np.array([-HIP_HALF_SEPARATION_MM if side == "right" else HIP_HALF_SEPARATION_MM, 0, 0])


def _mirror(side: str) -> np.ndarray:
    return np.array([1.0, 1.0, 1.0]) if side == "right" else np.array([-1.0, 1.0, 1.0])


def _to_physical(q_obj: np.ndarray, t: PhantomTruth) -> np.ndarray:
    return q_obj @ t.pose_matrix.T + t.pose_translation_mm


def _head_lattice(R: float, junction_mm: float, side: str, step_mm: float) -> np.ndarray:
    """Lattice points inside the anatomical head, relative to the head centre (object frame)."""
    g = np.arange(-R, R + 1e-9, step_mm)
    q = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    u = _HipGeometry(R, junction_mm).neck_axis * _mirror(side)
    keep = (np.linalg.norm(q, axis=1) <= R - 1.0) & (q @ u <= junction_mm - 1.0)
    return q[keep]


# ----------------------------------------------------------------------------- column integration
def _ball_interval(x, y, c, semi):
    """z-interval of an axis-aligned ellipsoid at columns (x, y); empty as lo > hi."""
    disc = 1.0 - ((x - c[0]) / semi[0]) ** 2 - ((y - c[1]) / semi[1]) ** 2
    half = semi[2] * np.sqrt(np.clip(disc, 0.0, None))
    lo = np.where(disc > 0, c[2] - half, np.inf)
    hi = np.where(disc > 0, c[2] + half, -np.inf)
    return lo, hi


def _head_interval(x, y, geo: _HipGeometry):
    lo, hi = _ball_interval(x, y, (0.0, 0.0, 0.0), (geo.R,) * 3)
    u = geo.neck_axis
    bound = (geo.junction_mm - u[0] * x - u[1] * y) / u[2]  # u_z < 0: z >= bound
    return np.maximum(lo, bound), hi


def _union_measure(intervals, x, y):
    """Total length and first moments (x, y, z) of the union of intervals per column."""
    if not intervals:
        return 0.0, np.zeros(3)
    lo = np.stack([i[0] for i in intervals], -1)
    hi = np.stack([i[1] for i in intervals], -1)
    empty = ~(hi > lo)
    lo = np.where(empty, np.inf, lo)
    hi = np.where(empty, -np.inf, hi)
    order = np.argsort(lo, axis=-1)
    lo = np.take_along_axis(lo, order, -1)
    hi = np.take_along_axis(hi, order, -1)
    cur = np.full(x.shape, -np.inf)
    length = np.zeros(x.shape)
    zmom = np.zeros(x.shape)
    for j in range(lo.shape[-1]):
        s = np.maximum(lo[..., j], cur)
        e = hi[..., j]
        ok = e > s
        seg = np.where(ok, e - s, 0.0)
        length += seg
        zmom += 0.5 * (np.where(ok, e, 0.0) ** 2 - np.where(ok, s, 0.0) ** 2)
        cur = np.maximum(cur, e)
    return float(length.sum()), np.array([(length * x).sum(), (length * y).sum(), zmom.sum()])


def _lesion_pieces(x, y, geo, lesions_local):
    """Enclosed and dark interval lists for lesions given in local (right-canonical) frame."""
    h_lo, h_hi = _head_interval(x, y, geo)
    enclosed, dark = [], []
    for c, semi, band, bright in lesions_local:
        lo, hi = _ball_interval(x, y, c, semi)
        e = (np.maximum(lo, h_lo), np.minimum(hi, h_hi))
        enclosed.append(e)
        inner = np.asarray(semi) - band
        if bright and np.all(inner > 0):
            ilo, ihi = _ball_interval(x, y, c, inner)
            ilo, ihi = np.maximum(ilo, e[0]), np.minimum(ihi, e[1])
            has = ihi > ilo
            dark.append((e[0], np.where(has, ilo, e[1])))
            dark.append((np.where(has, ihi, e[1]), e[1]))
        elif not bright:
            dark.append(e)
    return enclosed, dark


def _integrate(geo, lesion_sets, step_mm, lesions_local):
    """Integrate unions of interval sets over columns (mm³ and first moments).

    Columns cover the lesions' (x, y) bounding box inside the head with a midpoint rule of
    about ``step_mm``; each column's length is exact.
    """
    R = geo.R
    lo = np.full(2, -R)
    hi = np.full(2, R)
    if lesions_local:
        lo = np.maximum(lo, np.min([c[:2] - semi[:2] for c, semi, _, _ in lesions_local], 0))
        hi = np.minimum(hi, np.max([c[:2] + semi[:2] for c, semi, _, _ in lesions_local], 0))
    if np.any(hi <= lo):
        return [(0.0, np.zeros(3)) for _ in lesion_sets]
    n = np.maximum(np.ceil((hi - lo) / step_mm).astype(int), 1)
    h = (hi - lo) / n
    gx = lo[0] + (np.arange(n[0]) + 0.5) * h[0]
    gy = lo[1] + (np.arange(n[1]) + 0.5) * h[1]
    out = []
    rows = max(1, 400_000 // n[1])
    for sets in lesion_sets:
        total, mom = 0.0, np.zeros(3)
        for i0 in range(0, n[0], rows):
            x, y = np.meshgrid(gx[i0:i0 + rows], gy, indexing="ij")
            length, m = _union_measure(sets(x, y), x, y)
            total += length
            mom += m
        out.append((total * h[0] * h[1], mom * h[0] * h[1]))
    return out


def _local_lesions(lesions: Sequence[LesionSpec], side: str):
    m = _mirror(side)
    return [
        (np.asarray(l.centre_offset_mm, float) * m, np.asarray(l.axis_scale, float) * l.radius_mm,
         l.band_mm, l.bright_centre)
        for l in lesions
    ]


def _analytic_ok(geo: _HipGeometry, lesions: Sequence[LesionSpec], side: str) -> bool:
    if len(lesions) != 1 or not lesions[0].is_ball:
        return False
    c = np.asarray(lesions[0].centre_offset_mm) * _mirror(side)
    return float(c @ geo.neck_axis) + lesions[0].radius_mm <= geo.junction_mm


def _lens_centroid(R: float, r: float, c: np.ndarray) -> np.ndarray:
    """Centroid of ball(0, R) ∩ ball(c, r): two spherical caps either side of the radical plane."""
    d = float(np.linalg.norm(c))
    if d <= abs(R - r):
        return np.zeros(3) if R < r else np.asarray(c, float).copy()
    n = c / d
    x0 = (d * d + R * R - r * r) / (2 * d)          # radical plane, from the head centre along n
    h1, h2 = R - x0, r - (d - x0)                   # cap heights of the head ball and the lesion ball

    def offset(a: float, h: float) -> float:        # cap centroid distance from its sphere centre
        return 3 * (2 * a - h) ** 2 / (4 * (3 * a - h))

    v1, v2 = cap_volume_mm3(R, h1), cap_volume_mm3(r, h2)
    return n * (v1 * offset(R, h1) + v2 * (d - offset(r, h2))) / (v1 + v2)


def _lesion_volumes(geo, lesions, side, step_mm=INTEGRATION_STEP_MM):
    """(enclosed mm³, dark mm³, centroid local or None, method, rel error)."""
    if not lesions:
        return 0.0, 0.0, None, "analytic", 0.0
    if _analytic_ok(geo, lesions, side):
        les = lesions[0]
        c = np.asarray(les.centre_offset_mm, float) * _mirror(side)
        d = float(np.linalg.norm(c))
        v_enc = lens_volume_mm3(geo.R, les.radius_mm, d)
        v_dark = v_enc
        if les.bright_centre:
            v_dark = v_enc - lens_volume_mm3(geo.R, max(les.radius_mm - les.band_mm, 0.0), d)
        centroid = None if v_enc == 0 else _lens_centroid(geo.R, les.radius_mm, c)
        return v_enc, v_dark, centroid, "analytic", 0.0
    loc = _local_lesions(lesions, side)

    def enc(x, y):
        return _lesion_pieces(x, y, geo, loc)[0]

    def drk(x, y):
        return _lesion_pieces(x, y, geo, loc)[1]

    (ve, me), (vd, _) = _integrate(geo, [enc, drk], step_mm, loc)
    (ve2, _), (vd2, _) = _integrate(geo, [enc, drk], 2 * step_mm, loc)
    centroid = me / ve if ve > 0 else None
    err = max(abs(ve - ve2) / ve if ve else 0.0, abs(vd - vd2) / vd if vd else 0.0)
    return ve, vd, centroid, "numerical", err


def _change(geo, base: Sequence[LesionSpec], follow: Sequence[LesionSpec], side: str,
            v0: float, v1: float) -> ChangeTruth:
    """Regenerated/new volumes; v0, v1 are the enclosed volumes (mm³) of base and follow."""
    nested = all(
        f.is_ball and any(
            b.is_ball and np.linalg.norm(np.subtract(f.centre_offset_mm, b.centre_offset_mm)) + f.radius_mm
            <= b.radius_mm + 1e-12 for b in base)
        for f in follow)
    if nested:
        regen, new = v0 - v1, 0.0
    else:
        lb, lf = _local_lesions(base, side), _local_lesions(follow, side)
        (vu, _), = _integrate(geo, [lambda x, y: _lesion_pieces(x, y, geo, lb + lf)[0]], INTEGRATION_STEP_MM,
                             lb + lf)
        regen, new = vu - v1, vu - v0
    rf = 100.0 * v1 / v0 if v0 > 0 else float("nan")
    return ChangeTruth(max(regen, 0.0) / 1000, max(new, 0.0) / 1000, rf)


# ----------------------------------------------------------------------------- scene evaluation
class _Scene:
    """Implicit shapes of one visit in the object frame; evaluates intensity and truth."""

    def __init__(self, spec: VisitSpec, side: str, R: float, junction_fraction: float):
        self.geo = _HipGeometry(R, junction_fraction * R)
        self.side = side
        self.sides = ["right", "left"] if side == "both" else [side]
        both = side == "both"
        self.origins = {s: _hip_origin(s, both) for s in self.sides}
        if both:
            self.lesions = {"right": _local_lesions(spec.lesions, "right"),
                            "left": _local_lesions(spec.lesions_left, "left")}
            self.midline_x = 0.0
        else:
            self.lesions = {side: _local_lesions(spec.lesions, side)}
            self.midline_x = HIP_HALF_SEPARATION_MM if side == "right" else -HIP_HALF_SEPARATION_MM

    def body(self, p):
        """Outer and inner (fat/muscle) boundary functions; Lipschitz-1, negative inside."""
        ax, ay = BODY_SEMI_AXES_MM
        dx, dy = p[:, 0] - self.midline_x, p[:, 1] - BODY_CENTRE_Y_MM
        outer = (np.hypot(dx / ax, dy / ay) - 1.0) * min(ax, ay)
        bx, by = ax - FAT_LAYER_MM, ay - FAT_LAYER_MM
        inner = (np.hypot(dx / bx, dy / by) - 1.0) * min(bx, by)
        return outer, inner

    def hip(self, q, lesions):
        """Boundary functions of one hip at local (right-canonical) points q."""
        geo = self.geo
        R = geo.R
        rho = np.linalg.norm(q, axis=1)
        u, L = geo.neck_axis, geo.neck_length_mm
        t = np.clip(q @ u, 0.0, L)
        neck = np.linalg.norm(q - t[:, None] * u, axis=1) - NECK_RADIUS_FRACTION * R
        J = geo.trochanter_centre
        qj = q - J
        troch = np.linalg.norm(qj, axis=1) - 0.8 * R
        down = np.clip(-qj[:, 2], 0.0, None)
        shaft = np.sqrt(qj[:, 0] ** 2 + qj[:, 1] ** 2 + (qj[:, 2] + down) ** 2) - 0.6 * R
        femur = np.minimum(np.minimum(rho - R, neck), np.minimum(troch, shaft))
        a = geo.cup_axis
        qa = q @ a
        ri, ro = geo.cup_inner_mm, geo.cup_outer_mm
        cup = np.maximum(np.maximum(rho - ro, ri - rho), -qa)
        cup_marrow = np.maximum(np.maximum(rho - (ro - CUP_CORTEX_MM), (ri + CUP_CORTEX_MM) - rho),
                                CUP_CORTEX_MM - qa)
        joint = np.maximum(np.maximum(rho - ri, R - rho), -qa - 0.35 * ri)
        head = np.maximum(rho - R, q @ u - geo.junction_mm)
        enc, inner = [], []
        for c, semi, band, bright in lesions:
            d = q - c
            e = (np.linalg.norm(d / semi, axis=1) - 1.0) * semi.min()
            enc.append(np.maximum(head, e))
            isemi = semi - band
            if np.all(isemi > 0):
                i = (np.linalg.norm(d / isemi, axis=1) - 1.0) * isemi.min()
                inner.append(np.maximum(head, i))
            else:
                inner.append(np.full(len(q), np.inf))
        return dict(femur=femur, cup=cup, cup_marrow=cup_marrow, joint=joint, head=head,
                    enc=enc, inner=inner)

    def near_hip(self, q, margin_mm: float):
        """Cheap bound: points farther than ``margin_mm`` from every hip structure are False."""
        geo = self.geo
        # head, joint, cup and lesions lie within the cup's outer sphere; neck and trochanter
        # within 0.8 R of the neck segment; the shaft within 0.8 R of its axis below the trochanter
        qq = np.einsum("ij,ij->i", q, q)
        near = qq < (geo.cup_outer_mm + margin_mm) ** 2
        t = np.clip(q @ geo.neck_axis, 0.0, geo.neck_length_mm)
        width = 0.8 * geo.R + margin_mm
        near |= qq - 2 * t * (q @ geo.neck_axis) + t * t < width * width
        qj = q - geo.trochanter_centre
        near |= (qj[:, 0] ** 2 + qj[:, 1] ** 2 < width * width) & (qj[:, 2] < width)
        return near

    def evaluate(self, p, with_truth: bool, margin_mm: float = 0.0):
        """Intensity (and truth masks, boundary distance) at object-frame points p (N, 3).

        With ``with_truth``, hip shapes are evaluated only near the hip (within ``margin_mm``);
        elsewhere the boundary distance stays at the body's value, which is correct as long as
        ``margin_mm`` is at least the distance the caller compares it with.
        """
        n = len(p)
        val = np.full(n, T1_MUSCLE, np.float32)
        outer, inner = self.body(p)
        val[inner > 0] = T1_FAT
        val[outer > 0] = T1_AIR
        bd = np.minimum(np.abs(outer), np.abs(inner)) if with_truth else None
        truth = {k: np.zeros(n, bool) for k in ("head", "enc", "dark")} if with_truth else None
        for s in self.sides:
            if len(self.sides) == 1:
                sel = np.ones(n, bool)
            else:
                sel = p[:, 0] < 0 if s == "right" else p[:, 0] >= 0
            q = (p[sel] - self.origins[s]) * _mirror(s)
            near = self.near_hip(q, margin_mm if with_truth else 0.0)
            sel = np.flatnonzero(sel)[near]
            q = q[near]
            f = self.hip(q, self.lesions[s])
            v = val[sel]
            v[f["joint"] <= 0] = T1_CARTILAGE
            v[f["cup"] <= 0] = T1_CORTEX
            v[f["cup_marrow"] <= 0] = T1_FAT
            v[f["femur"] <= 0] = T1_CORTEX
            marrow = f["femur"] <= -CORTEX_MM
            v[marrow] = T1_FAT
            les = self.lesions[s]
            any_enc = np.zeros(len(q), bool)
            any_dark = np.zeros(len(q), bool)
            for (c, semi, band, bright), e, i in zip(les, f["enc"], f["inner"]):
                ein, iin = e <= 0, i <= 0
                any_enc |= ein
                if not bright:
                    v[marrow & iin] = T1_NECROSIS
                any_dark |= ein & ~(iin & bright)
            for e, i in zip(f["enc"], f["inner"]):
                v[marrow & (e <= 0) & (i > 0)] = T1_BAND
            val[sel] = v
            if with_truth:
                truth["head"][sel] = f["head"] <= 0
                truth["enc"][sel] = any_enc
                truth["dark"][sel] = any_dark
                funcs = [f["femur"], f["femur"] + CORTEX_MM, f["cup"], f["cup_marrow"], f["joint"]]
                funcs += f["enc"] + [i for i in f["inner"]]
                b = bd[sel]
                for g in funcs:
                    b = np.minimum(b, np.abs(g))
                bd[sel] = b
        return val, truth, bd


# ----------------------------------------------------------------------------- image formation
def _grid_direction(plane: str, oblique_deg: float) -> np.ndarray:
    if plane not in _PLANES:
        raise ValueError(f"plane must be one of {sorted(_PLANES)}, got {plane!r}")
    D = _PLANES[plane]
    if oblique_deg:
        axis = _unit(D[:, 0] + 0.5 * D[:, 1])
        D = Rotation.from_rotvec(math.radians(oblique_deg) * axis).as_matrix() @ D
    return D


def _pose(spec: VisitSpec, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Rotation matrix and translation (mm) mapping object points to scanner points."""
    Rm = Rotation.from_euler("xyz", spec.rotation_deg, degrees=True).as_matrix()
    base = {"right": (-HIP_HALF_SEPARATION_MM, 15.0, -70.0), "left": (HIP_HALF_SEPARATION_MM, 15.0, -70.0),
            "both": (0.0, 15.0, -70.0)}[side]
    return Rm, np.asarray(base) + np.asarray(spec.translation_mm, float)


def _grid_centre(side: str) -> np.ndarray:
    """Scanner point the grid is centred on: the hip's region of interest at the neutral pose."""
    base = _pose(VisitSpec(), side)[1]
    roi = {"right": (-18.0, 0.0, -10.0), "left": (18.0, 0.0, -10.0), "both": (0.0, 0.0, -10.0)}[side]
    return base + np.asarray(roi)


def _bias_field(amplitude: float, fov_mm: float, rng: np.random.Generator):
    """Smooth multiplicative field in [1 − a, 1 + a]: two random cosines of wavelength 2·FOV.

    Returns a function of physical offsets from the grid centre (N, 3) → float32 factors.
    """
    k = rng.normal(size=(2, 3))
    k = k / np.linalg.norm(k, axis=1, keepdims=True) * (2 * math.pi / (2.0 * fov_mm))
    phase = rng.uniform(0, 2 * math.pi, 2)

    def field_at(d: np.ndarray) -> np.ndarray:
        g = 0.5 * (np.cos(d @ k[0] + phase[0]) + np.cos(d @ k[1] + phase[1]))
        return (1.0 + amplitude * g).astype(np.float32)

    return field_at


def make_visit(spec: VisitSpec, *, seed: int, side: str = "right", head_radius_mm: float = 23.0,
               junction_fraction: float = JUNCTION_FRACTION) -> PhantomScan:
    """Synthesise one T1 scan of the hip phantom and its exact truth.

    Parameters
    ----------
    spec : VisitSpec
        Lesions, pose, grid and image-quality settings of the visit.
    seed : int
        Seeds ``numpy.random.default_rng`` (noise, bias field, intensity scale).
    side : {"right", "left", "both"}
        Which hip; ``"both"`` is a pelvis field of view with two mirrored hips.
    head_radius_mm : float
        Femoral head radius R (mm).
    junction_fraction : float
        Head–neck junction plane distance from the head centre, as a fraction of R.

    Returns
    -------
    PhantomScan

    Example
    -------
    >>> scan = make_visit(VisitSpec(lesions=(LesionSpec((-3.0, -9.0, 17.0), 10.0),),
    ...                             shape=(64, 64, 20), spacing_mm=(2, 2, 6)), seed=0)
    >>> round(scan.truth.lesion_enclosed_ml, 3)
    2.849
    """
    if side not in ("right", "left", "both"):
        raise ValueError(f"side must be 'right', 'left' or 'both', got {side!r}")
    rng = np.random.default_rng(seed)
    scene = _Scene(spec, side, head_radius_mm, junction_fraction)
    Rm, T = _pose(spec, side)
    shape = np.asarray(spec.shape, int)
    spacing = np.asarray(spec.spacing_mm, float)
    D = _grid_direction(spec.plane, spec.oblique_deg)
    origin = _grid_centre(side) - D @ (spacing * (shape - 1) / 2.0)
    # object point = A · index + b
    A = Rm.T @ D @ np.diag(spacing)
    b = Rm.T @ (origin - T)
    nx, ny, nz = shape
    half_diag = 0.5 * float(np.linalg.norm(spacing)) + 1e-6
    n_slice = int(np.clip(math.ceil(spacing[2] / min(spacing[0], spacing[1])), 3, 5))
    sub = np.stack(np.meshgrid((np.arange(2) + 0.5) / 2 - 0.5, (np.arange(2) + 0.5) / 2 - 0.5,
                               (np.arange(n_slice) + 0.5) / n_slice - 0.5, indexing="ij"), -1).reshape(-1, 3)
    image = np.empty((nz, ny, nx), np.float32)
    masks = {k: np.empty((nz, ny, nx), np.uint8) for k in ("head", "enc", "dark")}
    scale = spec.intensity_scale if spec.intensity_scale is not None else float(np.exp(rng.uniform(np.log(200), np.log(2000))))
    bias = _bias_field(spec.bias_amplitude, float(np.max(shape * spacing)), rng)
    centre = _grid_centre(side)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="xy")   # (ny, nx)
    plane_idx = np.stack([ii.ravel(), jj.ravel()], -1).astype(float)
    to_phys = D @ np.diag(spacing)

    def points(M: np.ndarray, offset: np.ndarray, ks: np.ndarray) -> np.ndarray:
        """Points M · (i, j, k) + offset of whole slices ks, in array order (k, j, i)."""
        in_plane = plane_idx @ M[:, :2].T
        return (in_plane[None] + (ks[:, None] * M[:, 2] + offset)[:, None, :]).reshape(-1, 3)

    block = max(1, 1_500_000 // (nx * ny))
    for k0 in range(0, nz, block):
        ks = np.arange(k0, min(nz, k0 + block), dtype=float)
        p = points(A, b, ks)
        val, truth, bd = scene.evaluate(p, with_truth=True, margin_mm=half_diag + 1.0)
        mixed = np.flatnonzero(bd < half_diag)
        if len(mixed):
            idx = np.column_stack([mixed % nx, (mixed // nx) % ny, k0 + mixed // (nx * ny)]).astype(float)
            ps = (idx[:, None, :] + sub[None]).reshape(-1, 3) @ A.T + b
            vs, _, _ = scene.evaluate(ps, with_truth=False)
            val[mixed] = vs.reshape(len(mixed), len(sub)).mean(axis=1)
        if spec.bias_amplitude:
            val *= bias(points(to_phys, origin - centre, ks))
        sl = slice(k0, k0 + len(ks))
        image[sl] = val.reshape(len(ks), ny, nx)
        for key in masks:
            masks[key][sl] = truth[key].reshape(len(ks), ny, nx)

    sigma = T1_FAT / spec.snr
    # Rician magnitude: |signal + complex Gaussian noise|; SNR = marrow (1.0) / sigma
    image += sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image **= 2
    image += (sigma * rng.standard_normal(image.shape, dtype=np.float32)) ** 2
    np.sqrt(image, out=image)
    image *= np.float32(scale)

    def to_sitk(a: np.ndarray) -> sitk.Image:
        im = sitk.GetImageFromArray(a)
        im.SetSpacing(tuple(float(s) for s in spacing))
        im.SetOrigin(tuple(float(o) for o in origin))
        im.SetDirection(tuple(float(x) for x in D.ravel()))
        return im

    truths = {}
    for s in scene.sides:
        lesions = spec.lesions_left if (side == "both" and s == "left") else spec.lesions
        truths[s] = _truth(scene.geo, s, side == "both", lesions, Rm, T)
    primary = "right" if side == "both" else side
    return PhantomScan(
        image=to_sitk(image), head_mask=to_sitk(masks["head"]),
        lesion_enclosed_mask=to_sitk(masks["enc"]), lesion_dark_mask=to_sitk(masks["dark"]),
        truth=truths[primary], visit=spec, truths=truths)


def _truth(geo: _HipGeometry, side: str, both: bool, lesions, Rm, T) -> PhantomTruth:
    origin = _hip_origin(side, both)
    m = _mirror(side)
    v_enc, v_dark, centroid, method, err = _lesion_volumes(geo, lesions, side)
    head = head_volume_mm3(geo.R, geo.junction_mm)
    to_phys = lambda q: Rm @ (np.asarray(q) * m + origin) + T  # noqa: E731  (local → physical)
    return PhantomTruth(
        side=side, head_radius_mm=geo.R, junction_mm=geo.junction_mm,
        head_volume_ml=head / 1000, head_sphere_volume_ml=ball_volume_mm3(geo.R) / 1000,
        lesion_enclosed_ml=v_enc / 1000, lesion_dark_ml=v_dark / 1000,
        lesion_pct_head=100.0 * v_enc / head, volume_method=method, volume_rel_error=err,
        head_centre_mm=to_phys(np.zeros(3)),
        lesion_centroid_mm=None if centroid is None else to_phys(centroid),
        neck_axis=Rm @ (geo.neck_axis * m), acetabular_axis=Rm @ (geo.cup_axis * m),
        acetabular_edge_mm=to_phys(geo.acetabular_edge()),
        pose_matrix=Rm, pose_translation_mm=np.asarray(T, float))


# ----------------------------------------------------------------------------- series
def _default_direction(side: str) -> np.ndarray:
    """Antero-superior (slightly lateral) direction from the head centre, object frame."""
    lat = -1.0 if side == "right" else 1.0
    return _unit([0.25 * lat, -0.45, 0.86])


def lesion_for_fraction(head_radius_mm: float, lesion_pct_head: float, *, side: str = "right",
                        direction: Sequence[float] | None = None, depth_factor: float = 0.35,
                        band_mm: float = 2.0, bright_centre: bool = False,
                        junction_fraction: float = JUNCTION_FRACTION) -> LesionSpec:
    """Ball lesion touching the subchondral plate whose enclosed volume is a given % of the head.

    The centre lies along ``direction`` at ``R − depth_factor · r``, so the lens always reaches
    the head surface.  The target is met exactly while the lens stays clear of the head–neck
    junction plane (up to about 40 % of the head); beyond, the truth of a visit is still exact
    but differs slightly from the target (45 % asked → 44.9 %).

    Example
    -------
    >>> les = lesion_for_fraction(23.0, 18.0)
    >>> geo = _HipGeometry(23.0, JUNCTION_FRACTION * 23.0)
    >>> round(100 * _lesion_volumes(geo, [les], "right")[0] / head_volume_mm3(23.0, JUNCTION_FRACTION * 23.0), 6)
    18.0
    """
    R = head_radius_mm
    n = _unit(direction) if direction is not None else _default_direction(side)
    target = lesion_pct_head / 100 * head_volume_mm3(R, junction_fraction * R)

    def spec(r: float) -> LesionSpec:
        return LesionSpec(tuple(float(v) for v in (R - depth_factor * r) * n), r, band_mm, bright_centre)

    r = brentq(lambda r: lens_volume_mm3(R, r, R - depth_factor * r) - target, 1e-3, 2 * R, xtol=1e-12)
    return spec(r)


def nested_followup(base: LesionSpec, residual_fraction: float, head_radius_mm: float, *,
                    shift_fraction: float = 0.5) -> LesionSpec | None:
    """Follow-up lesion ball nested inside ``base`` whose lens is a fraction of the base lens.

    The centre moves towards the head surface by ``shift_fraction · (r0 − r1)``, so the follow-up
    ball stays inside the baseline ball: regenerated = baseline − follow-up and new = 0 exactly.

    Example
    -------
    >>> b = lesion_for_fraction(23.0, 18.0)
    >>> f = nested_followup(b, 0.5, 23.0)
    >>> v = lambda l: lens_volume_mm3(23.0, l.radius_mm, np.linalg.norm(l.centre_offset_mm))
    >>> round(v(f) / v(b), 9)
    0.5
    """
    if residual_fraction <= 0:
        return None
    R, c0, r0 = head_radius_mm, np.asarray(base.centre_offset_mm, float), base.radius_mm
    n = _unit(c0)
    v0 = lens_volume_mm3(R, r0, np.linalg.norm(c0))

    def centre(r: float) -> np.ndarray:
        return c0 + shift_fraction * (r0 - r) * n

    r = brentq(lambda r: lens_volume_mm3(R, r, np.linalg.norm(centre(r))) - residual_fraction * v0,
               1e-6, r0, xtol=1e-12)
    return replace(base, centre_offset_mm=tuple(float(v) for v in centre(r)), radius_mm=r)


def _random_pose(rng: np.random.Generator, max_rotation_deg: float, max_translation_mm: float):
    rot = tuple(float(v) for v in rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    tra = tuple(float(v) for v in rng.uniform(-max_translation_mm, max_translation_mm, 3))
    return rot, tra


def series_transform(base: PhantomTruth, follow: PhantomTruth) -> sitk.Euler3DTransform:
    """ITK transform mapping baseline physical points to follow-up physical points.

    Example
    -------
    >>> s = make_series(seed=3, n_followups=1, shape=(64, 64, 20), spacing_mm=(2, 2, 6))
    >>> t = series_transform(s.scans[0].truth, s.scans[1].truth)
    >>> bool(np.allclose(t.TransformPoint(s.scans[0].truth.head_centre_mm), s.scans[1].truth.head_centre_mm))
    True
    """
    M = follow.pose_matrix @ base.pose_matrix.T
    c = np.asarray(base.head_centre_mm, float)
    mapped = M @ (c - base.pose_translation_mm) + follow.pose_translation_mm
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(v) for v in c))
    t.SetMatrix(tuple(float(v) for v in M.ravel()), 1e-9)
    t.SetTranslation(tuple(float(v) for v in mapped - c))
    return t


def make_series(seed: int, n_followups: int = 2, *, side: str = "right", head_radius_mm: float = 23.0,
                baseline_lesion: LesionSpec | None = None, lesion_pct_head: float = 18.0,
                residual_fractions: Sequence[float] | None = None, bright_centre: bool = False,
                new_lesion: LesionSpec | None = None, left_lesion_pct_head: float | None = 12.0,
                max_rotation_deg: float = 10.0, max_translation_mm: float = 15.0,
                shape: tuple[int, int, int] | None = None,
                spacing_mm: tuple[float, float, float] = (1.0, 1.0, 3.0), plane: str = "coronal",
                followup_grids: Sequence[dict] | None = None, snr: float = 25.0,
                bias_amplitude: float = 0.15, days: Sequence[float] | None = None,
                intensity_scale: float | None = None) -> Series:
    """Baseline plus follow-ups of one phantom hip (or both hips) with a regenerating lesion.

    Parameters
    ----------
    seed : int
        Seeds poses and every visit's noise; same seed → identical series.
    n_followups : int
        Number of follow-up visits.
    side : {"right", "left", "both"}
    baseline_lesion : LesionSpec, optional
        Baseline lesion; by default a ball lesion of ``lesion_pct_head`` % of the head.
    residual_fractions : sequence of float, optional
        Enclosed follow-up lesion as a fraction of baseline, per follow-up (0 = healed);
        default evenly decreasing to 0.2.  Follow-up balls are nested in the baseline ball.
    new_lesion : LesionSpec, optional
        Extra component that appears at the last follow-up (then ``new_ml`` > 0).
    left_lesion_pct_head : float or None
        Left-hip lesion when ``side="both"`` (None: no left lesion).
    shape, spacing_mm, plane :
        Grid of every visit (shape defaults to (128, 128, 40), or (224, 128, 40) for both hips
        at 1.5 mm in x); ``followup_grids[i]`` (dict of VisitSpec fields) overrides follow-up i.
    snr, bias_amplitude, intensity_scale :
        Image quality, see :class:`VisitSpec`.
    days : sequence of float, optional
        Days since baseline per visit (baseline included); default 0, 91, 365, ...

    Example
    -------
    >>> s = make_series(seed=0, n_followups=2, shape=(64, 64, 20), spacing_mm=(2, 2, 6))
    >>> [round(c["right"].residual_pct_baseline, 6) for c in s.changes]
    [60.0, 20.0]
    """
    rng = np.random.default_rng(seed)
    R = head_radius_mm
    hip_side = "right" if side == "both" else side
    base = baseline_lesion or lesion_for_fraction(R, lesion_pct_head, side=hip_side, bright_centre=bright_centre)
    if residual_fractions is None:
        residual_fractions = list(np.linspace(1.0, 0.2, n_followups + 1)[1:]) if n_followups > 1 else [0.6]
    if len(residual_fractions) != n_followups:
        raise ValueError("residual_fractions needs one value per follow-up")
    left_base: tuple[LesionSpec, ...] = ()
    if side == "both" and left_lesion_pct_head:
        left_base = (lesion_for_fraction(R, left_lesion_pct_head, side="left", bright_centre=bright_centre),)
    if shape is None:
        shape = (224, 128, 40) if side == "both" else (128, 128, 40)
        if side == "both" and spacing_mm == (1.0, 1.0, 3.0):
            spacing_mm = (1.5, 1.0, 3.0)
    if days is None:
        days = [0.0, 91.0, 365.0] + [365.0 * (i - 1) for i in range(3, n_followups + 1)]
    days = list(days)[: n_followups + 1]

    lesions_per_visit = [(base,)]
    left_per_visit = [left_base]
    for i, frac in enumerate(residual_fractions):
        f = nested_followup(base, frac, R)
        les = () if f is None else (f,)
        if new_lesion is not None and i == n_followups - 1:
            les = les + (new_lesion,)
        lesions_per_visit.append(les)
        lf = tuple(x for x in (nested_followup(l, frac, R) for l in left_base) if x is not None)
        left_per_visit.append(lf)

    scans = []
    for v in range(n_followups + 1):
        rot, tra = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)) if v == 0 else _random_pose(rng, max_rotation_deg, max_translation_mm)
        spec = VisitSpec(lesions=lesions_per_visit[v], rotation_deg=rot, translation_mm=tra,
                         shape=tuple(shape), spacing_mm=tuple(spacing_mm), plane=plane, snr=snr,
                         bias_amplitude=bias_amplitude, days=days[v] if v < len(days) else None,
                         lesions_left=left_per_visit[v], intensity_scale=intensity_scale)
        if v > 0 and followup_grids is not None and followup_grids[v - 1]:
            spec = replace(spec, **followup_grids[v - 1])
        scans.append(make_visit(spec, seed=int(rng.integers(2**31)), side=side, head_radius_mm=R))

    geo = _HipGeometry(R, JUNCTION_FRACTION * R)
    transforms, changes = [], []
    for v in range(1, n_followups + 1):
        transforms.append(series_transform(scans[0].truth, scans[v].truth))
        ch = {}
        for s in scans[0].truths:
            b_les = scans[0].visit.lesions_left if (side == "both" and s == "left") else scans[0].visit.lesions
            f_les = scans[v].visit.lesions_left if (side == "both" and s == "left") else scans[v].visit.lesions
            ch[s] = _change(geo, b_les, f_les, s, 1000 * scans[0].truths[s].lesion_enclosed_ml,
                            1000 * scans[v].truths[s].lesion_enclosed_ml)
        changes.append(ch)
    opts = dict(side=side, head_radius_mm=R, n_followups=n_followups)
    return Series(scans=scans, transforms=transforms, changes=changes,
                  days=[s.visit.days for s in scans], seed=seed, options=opts)


def random_series(seed: int, n_followups: int = 2, *, side: str = "right",
                  max_rotation_deg: float = 10.0, max_translation_mm: float = 15.0,
                  healed_probability: float = 0.2, shape: tuple[int, int, int] | None = None,
                  max_voxels: int = 4_000_000) -> Series:
    """Draw a realistic case: head diameter 38–54 mm, lesion 0.4–42 mL (≤ 45 % of the head),
    bright centre with probability 0.71, regeneration per follow-up, random grids (in-plane
    0.4–1.0 mm, slices 0.8–4 mm, any plane, oblique up to 15°) over a 128 × 128 × 120 mm field of
    view; a grid with more than ``max_voxels`` voxels gets coarser in-plane spacing instead.

    Example
    -------
    >>> s = random_series(5, n_followups=1, shape=(48, 48, 16))
    >>> 38 <= 2 * s.scans[0].truth.head_radius_mm <= 54
    True
    """
    rng = np.random.default_rng(seed)
    R = float(rng.uniform(19.0, 27.0))
    head = head_volume_mm3(R, JUNCTION_FRACTION * R)
    hi = min(42_000.0, 0.45 * head)
    vol = float(np.exp(rng.uniform(np.log(400.0), np.log(hi))))
    hip_side = "right" if side == "both" else side
    d = _default_direction(hip_side) + rng.normal(0, 0.15, 3)
    les = lesion_for_fraction(R, 100 * vol / head, side=hip_side, direction=d,
                              bright_centre=bool(rng.random() < 0.71))
    fr = np.sort(rng.uniform(0.1, 0.95, n_followups))[::-1]
    if n_followups and rng.random() < healed_probability:
        fr[-1] = 0.0
    fov = np.array([128.0, 128.0, 120.0])

    def draw_grid() -> tuple[tuple[float, float, float], tuple[int, int, int]]:
        inplane, thick = float(rng.uniform(0.4, 1.0)), float(rng.uniform(0.8, 4.0))
        n_full = np.prod(np.ceil(fov / (inplane, inplane, thick)))
        if n_full > max_voxels:
            inplane *= math.sqrt(n_full / max_voxels)
        sp = (inplane, inplane, thick)
        return sp, shape or tuple(int(v) for v in np.ceil(fov / sp))

    grids = []
    spacing, base_shape = draw_grid()
    for _ in range(n_followups):
        sp, sh = draw_grid()
        grids.append(dict(spacing_mm=sp, shape=sh,
                          plane=str(rng.choice(["coronal", "coronal", "axial", "sagittal"])),
                          oblique_deg=float(rng.uniform(0, 15))))
    return make_series(int(rng.integers(2**31)), n_followups, side=side, head_radius_mm=R,
                       baseline_lesion=les, residual_fractions=list(fr),
                       max_rotation_deg=max_rotation_deg, max_translation_mm=max_translation_mm,
                       shape=base_shape, spacing_mm=spacing, followup_grids=grids,
                       snr=float(rng.uniform(10, 40)), bias_amplitude=float(rng.uniform(0, 0.25)))
