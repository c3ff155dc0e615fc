"""Phantom family B: hip MRI with cartilage, joint fluid, fovea, pulvinar, texture and three contrasts.

A second synthetic family, written independently of :mod:`lesionvol.phantom`, so that accuracy
measured on it is not measured on the shapes the segmenter was tuned on.  What it adds: both
hips always present in the body (the field may show one or both), a proximal femur (head, neck
with anteversion and neck-shaft angle, greater trochanter, shaft), a pelvis (acetabular shell,
ilium, pubic ramus, ischium), cartilage on the head and in the acetabulum, a joint-fluid layer, the
fovea capitis with the ligamentum teres, pulvinar fat in the acetabular fossa, a labrum, a bladder,
muscle and subcutaneous fat; trabecular texture in the marrow; a necrotic lesion whose outer
margin is serpentine, with a two-layer demarcating band (outer sclerotic, inner granulation tissue:
the double-line sign on T2) around a fat-like or oedematous centre, optionally a marrow-oedema halo;
T1, T2 and STIR contrasts; partial volume by supersampling; Rician noise and a bias field.

Frame: physical LPS millimetres (x = +Left, y = +Posterior, z = +Superior).  The right head is
at x < 0, the left at x > 0.

Truth, following ``/work/shared/design.md`` ("The quantities", "One surface for both"):

* **head** = bone up to the articular surface (the outer surface of the subchondral plate, a sphere
  of radius R; cartilage and joint out), minus the fovea pit, cut by the plane perpendicular to the
  neck axis where the neck leaves the ball: the neck is a cylinder of radius ``r_n`` about the neck
  axis, so the junction plane lies at ``d = sqrt(R² - r_n²)`` from the centre.  Its volume is
  analytic: ball - cap(R - d) - lens(ball, fovea pit).
* **lesion** (``enclosed``) = every head point inside the outer margin of the band: a star-shaped
  region about a point ``depth_mm`` under the articular surface, radius ``ρ(u)`` (an ellipsoid with
  a smooth serpentine ripple), clipped by the same head.  Its volume is an exact ray integral from
  that point: along each ray the head is an interval (ball, junction plane) minus another (fovea
  pit), so the radial integral ∫t²dt is closed-form; the directions are integrated with a
  Gauss-Legendre × uniform product rule (relative error < 1e-4, see the tests).
* **dark** lesion = the band (+ the centre when it is oedematous), same integral.
* image-resolution masks: each voxel's head and lesion fraction from the supersampled label field
  (``*_fraction`` images, float32) and the masks ``fraction >= 0.5`` (uint8).

Partial volume: the label field (tissue, head and lesion membership) is evaluated at every voxel
centre; a voxel whose key differs from a 6-neighbour's, and the voxels next to it, is re-evaluated
on a regular sub-voxel lattice and its signal and fractions averaged: every ``supersample_mm``
(at least 3 sub-samples per axis) within ``NEAR_HEAD_MM`` of a head surface, every 1.2 mm (at
least 2) for the far boundaries (skin, muscle, distant bone).  The trabecular texture is a sum of
plane waves, averaged over each voxel box exactly (a sinc per axis).

Example
-------
>>> spec = HipScanSpec(right=Hip("right", lesion=Lesion(pct_of_head=15.0)), field="right",
...                    spacing_mm=(2.0, 2.0, 4.0), fov_mm=(120.0, 120.0, 80.0))
>>> image, truth = make_hip_scan(spec, seed=0)
>>> t = truth.hips["right"]
>>> round(t.lesion_pct_head, 1), t.side
(15.0, 'right')
>>> abs(truth.mask_volume_ml("right", "head") / t.head_volume_ml - 1) < 0.05
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

__all__ = ["Lesion", "Hip", "HipScanSpec", "HipTruth", "ScanTruth", "make_hip_scan", "head_volume_ml",
           "lesion_volumes_ml", "hip_frame", "TISSUES", "SIGNAL", "CONTRASTS", "tissue_labels"]

CONTRASTS = ("T1", "T2", "STIR")

#: Tissue codes of the label field.
TISSUES = {"air": 0, "subcutaneous_fat": 1, "muscle": 2, "cortex": 3, "femoral_marrow": 4, "pelvic_marrow": 5,
           "cartilage": 6, "joint_fluid": 7, "pulvinar_fat": 8, "fibrous": 9, "lesion_centre_fat": 10,
           "lesion_centre_oedema": 11, "band_sclerotic": 12, "band_granulation": 13, "marrow_oedema": 14,
           "urine": 15}
_T = TISSUES

#: Relative signal of every tissue (fat = 1 on T1).  T1: fat and marrow bright, muscle intermediate,
#: fluid dark, cortex dark.  T2 (fast spin echo): fluid brightest, fat still fairly bright.  STIR: fat
#: suppressed, fluid and oedema bright.  Cortex, subchondral plate, fibrous tissue and the sclerotic
#: band are dark on all three; the granulation layer is dark on T1 and bright on T2/STIR.
SIGNAL = {
    #        air  subc  musc  cort  fmar  pmar  cart  flui  pulv  fibr  cfat  cede  bscl  bgra  moed  urin
    "T1":   (0.0, 1.00, 0.35, 0.04, 0.93, 0.78, 0.45, 0.14, 0.95, 0.07, 0.90, 0.32, 0.06, 0.20, 0.50, 0.12),
    "T2":   (0.0, 0.70, 0.24, 0.03, 0.62, 0.52, 0.38, 1.00, 0.68, 0.05, 0.60, 0.85, 0.06, 0.88, 0.78, 1.00),
    "STIR": (0.0, 0.05, 0.30, 0.02, 0.07, 0.16, 0.45, 1.00, 0.05, 0.04, 0.07, 0.90, 0.05, 0.82, 0.72, 1.00),
}
#: Tissues that carry the trabecular texture.
_TEXTURED = (_T["femoral_marrow"], _T["pelvic_marrow"], _T["lesion_centre_fat"], _T["lesion_centre_oedema"],
             _T["marrow_oedema"])
#: Half distance between the two head centres (mm), and the body outline (elliptic cylinder, mm).
HIP_HALF_DISTANCE_MM = 90.0
BODY_SEMI_AXES_MM = (190.0, 125.0)
BODY_CENTRE_Y_MM = 10.0
SUBCUTANEOUS_FAT_MM = 22.0
#: Boundary voxels closer than this to a head's sphere (mm) are supersampled finely (``supersample_mm``);
#: the body's other boundaries (skin, muscle, far bone) every 1.2 mm, at least 2 per axis.
NEAR_HEAD_MM = 14.0
#: Quadrature of the lesion ray integral: Gauss-Legendre nodes in cos θ × uniform azimuths.
RAYS = (240, 480)


# ----------------------------------------------------------------------------- specification
@dataclass(frozen=True)
class Lesion:
    """A necrotic lesion: a serpentine star-shaped region under the articular surface.

    Parameters
    ----------
    radius_mm : float
        Base radius of the region about its centre point (ignored when ``pct_of_head`` is given).
    pct_of_head : float, optional
        Wanted LF (lesion % of head); the radius is solved for it (exact to 0.01 points).
    direction : (anterior, superior, lateral)
        Where the lesion lies from the head centre, in anatomical components (normalised);
        anterosuperior by default.
    depth_mm : float
        Depth of the region's centre point under the articular surface.
    elongation : (a, b)
        Semi-axis ratios across the lesion direction (anteroposterior-ish, mediolateral-ish).
    band_mm : float
        Radial thickness of the demarcating band (outer 45 % sclerotic, inner 55 % granulation).
    centre : {"fat", "oedema"}
        Signal of the enclosed centre: fat-like (early stages) or oedematous.
    ripple : float
        Relative amplitude of the serpentine ripple of the outer margin.
    oedema_halo_mm : float
        Marrow oedema this far outside the band (not lesion; a confounder).
    shape_seed : int
        Seed of the ripple (the same lesion on every contrast and grid).

    Example
    -------
    >>> Lesion(pct_of_head=20.0).centre
    'fat'
    """

    radius_mm: float = 14.0
    pct_of_head: float | None = None
    direction: tuple[float, float, float] = (0.45, 0.85, 0.25)
    depth_mm: float = 5.0
    elongation: tuple[float, float] = (1.15, 0.9)
    band_mm: float = 2.4
    centre: str = "fat"
    ripple: float = 0.10
    oedema_halo_mm: float = 0.0
    shape_seed: int = 0


@dataclass(frozen=True)
class Hip:
    """Anatomy of one hip (lengths in mm, angles in degrees).

    The neck is a cylinder of radius ``neck_radius_fraction · R`` where it leaves the head; the
    head-neck junction plane is where that cylinder meets the ball.

    Example
    -------
    >>> h = Hip("left", head_radius_mm=25.0)
    >>> round(h.junction_mm, 2)
    17.35
    """

    side: str = "right"
    head_radius_mm: float = 24.0
    neck_shaft_deg: float = 130.0
    anteversion_deg: float = 12.0
    neck_radius_fraction: float = 0.72
    plate_mm: float = 1.5
    femoral_cartilage_mm: float = 2.0
    acetabular_cartilage_mm: float = 1.8
    fluid_mm: float = 0.7
    fovea_radius_mm: float = 6.0
    fovea_depth_mm: float = 2.5
    fossa_depth_mm: float = 5.0
    lesion: Lesion | None = None

    def __post_init__(self):
        if self.side not in ("left", "right"):
            raise ValueError(f"side must be 'left' or 'right', got {self.side!r}")
        if not 15.0 <= self.head_radius_mm <= 35.0:
            raise ValueError("head radius must be 15-35 mm")
        if not 0.5 <= self.neck_radius_fraction <= 0.9:
            raise ValueError("neck_radius_fraction must be 0.5-0.9")

    @property
    def junction_mm(self) -> float:
        """Distance of the head-neck junction plane from the head centre (mm)."""
        R = self.head_radius_mm
        return math.sqrt(R * R - (self.neck_radius_fraction * R) ** 2)


@dataclass(frozen=True)
class HipScanSpec:
    """One scan: the two hips of the body, which of them the field shows, contrast and grid.

    Parameters
    ----------
    right, left : Hip
        The two hips (both always exist in the body; a normal head has ``lesion=None``).
    field : {"right", "left", "both"}
        What the field of view is centred on (one hip, or the pelvis with both).
    contrast : {"T1", "T2", "STIR"}
    plane : {"coronal", "axial", "sagittal"}
        Slice plane; index axes (i, j) lie in it and k is the slice axis.
    spacing_mm : (si, sj, sk)
        Voxel spacing along the index axes (in-plane, in-plane, slice).
    fov_mm : (fi, fj, fk), optional
        Extent along the index axes; by default 180×180×100 for one hip, 380×220×100 for both.
    oblique_deg : (rx, ry, rz)
        Rotation of the grid about the L, P, S axes (degrees), applied after the plane.
    field_centre_mm : (x, y, z), optional
        Physical centre of the field (LPS mm); by default on the hip(s) shown.
    origin_shift_mm : (x, y, z)
        Translation of the whole patient (anatomy and field move together).
    snr : float
        Signal (fat on T1, fluid otherwise) over the noise σ; Rician magnitude noise.
    bias : float
        Peak relative amplitude of the smooth multiplicative bias field.
    texture : float
        Relative amplitude (standard deviation) of the trabecular texture in marrow.
    supersample_mm : float
        Sub-sample spacing of partial volume (at least 3 sub-samples per axis).
    anatomy_seed : int
        Seed of the texture (the anatomy is otherwise fully given by the spec).

    Example
    -------
    >>> HipScanSpec(field="both").fov()
    (380.0, 220.0, 100.0)
    """

    right: Hip = Hip("right")
    left: Hip = Hip("left")
    field: str = "right"
    contrast: str = "T1"
    plane: str = "coronal"
    spacing_mm: tuple[float, float, float] = (0.9, 0.9, 4.0)
    fov_mm: tuple[float, float, float] | None = None
    oblique_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    field_centre_mm: tuple[float, float, float] | None = None
    origin_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    snr: float = 25.0
    bias: float = 0.15
    texture: float = 0.10
    supersample_mm: float = 0.45
    anatomy_seed: int = 0

    def __post_init__(self):
        if self.right.side != "right" or self.left.side != "left":
            raise ValueError("HipScanSpec.right must be a right Hip and .left a left Hip")
        if self.field not in ("right", "left", "both"):
            raise ValueError(f"field must be 'right', 'left' or 'both', got {self.field!r}")
        if self.contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {self.contrast!r}")
        if self.plane not in ("coronal", "axial", "sagittal"):
            raise ValueError(f"plane must be coronal, axial or sagittal, got {self.plane!r}")

    def fov(self) -> tuple[float, float, float]:
        """Field of view along the index axes (mm)."""
        if self.fov_mm is not None:
            return tuple(float(v) for v in self.fov_mm)
        return (380.0, 220.0, 100.0) if self.field == "both" else (180.0, 180.0, 100.0)

    def hip(self, side: str) -> Hip:
        """The hip of one side."""
        return self.right if side == "right" else self.left


# ----------------------------------------------------------------------------- geometry
def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class _Frame:
    """Anatomical unit vectors of one hip (LPS) and its head centre."""

    centre: np.ndarray
    medial: np.ndarray
    anterior: np.ndarray
    superior: np.ndarray

    def vec(self, medial: float, anterior: float, superior: float) -> np.ndarray:
        return medial * self.medial + anterior * self.anterior + superior * self.superior


def hip_frame(side: str, origin_shift_mm=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Head centre (LPS mm) and the unit vector pointing medially, for one side.

    Example
    -------
    >>> c, m = hip_frame("right")
    >>> c.tolist(), m.tolist()
    ([-90.0, 0.0, 0.0], [1.0, 0.0, 0.0])
    """
    sign = 1.0 if side == "right" else -1.0
    return (np.array([-sign * HIP_HALF_DISTANCE_MM, 0.0, 0.0]) + np.asarray(origin_shift_mm, float),
            np.array([sign, 0.0, 0.0]))


def _frame(side: str, shift) -> _Frame:
    c, m = hip_frame(side, shift)
    return _Frame(c, m, np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0]))


def _neck_axis(hip: Hip, fr: _Frame) -> np.ndarray:
    """Unit vector from the head centre into the neck: lateral, inferior, posterior by anteversion.

    The shaft runs distally, 7° off vertical towards the knee (medially); the neck makes
    ``neck_shaft_deg`` with it (measured between head-pointing neck and distal shaft), and its
    horizontal part is turned by the anteversion so that the head lies anterior to the neck base.
    """
    el = math.radians(180.0 - hip.neck_shaft_deg - 7.0)   # angle of the neck axis from the downward vertical
    horiz = math.sin(el)
    av = math.radians(hip.anteversion_deg)
    return _unit(fr.vec(-horiz * math.cos(av), -horiz * math.sin(av), -math.cos(el)))


def _shaft_axis(fr: _Frame) -> np.ndarray:
    return _unit(fr.vec(math.sin(math.radians(7.0)), 0.0, -math.cos(math.radians(7.0))))


@dataclass(frozen=True, eq=False)
class _HipGeom:
    """Every derived point and axis of one hip (LPS mm)."""

    hip: Hip
    fr: _Frame
    n: np.ndarray           # neck axis
    d: float                # junction distance
    a: np.ndarray           # acetabular opening axis
    f: np.ndarray           # fossa axis
    fovea_c: np.ndarray     # centre of the fovea pit (relative to the head centre)
    lesion_c: np.ndarray | None   # lesion centre point (relative to the head centre)
    lesion_frame: np.ndarray | None   # rows: lesion axis, two perpendiculars
    lesion_scale: float
    ripple: tuple           # (vectors (k,3), freqs, phases, amps)


def _build(hip: Hip, shift, solve: bool = True) -> _HipGeom:
    fr = _frame(hip.side, shift)
    R = hip.head_radius_mm
    n = _neck_axis(hip, fr)
    # Acetabulum opens laterally, inferiorly (45° inclination) and anteriorly (18° anteversion).
    inc, av = math.radians(45.0), math.radians(18.0)
    a = _unit(fr.vec(-math.cos(inc) * math.cos(av), math.cos(inc) * math.sin(av), -math.sin(inc)))
    f = _unit(fr.vec(1.0, -0.1, -0.35))
    uf = _unit(fr.vec(1.0, -0.2, -0.55))
    fovea_c = uf * (R + hip.fovea_radius_mm - hip.fovea_depth_mm)
    lesion_c = frame = None
    scale = 0.0
    ripple = ()
    if hip.lesion is not None:
        les = hip.lesion
        ant, sup, lat = les.direction
        ul = _unit(fr.vec(-lat, ant, sup))
        lesion_c = ul * (R - les.depth_mm)
        p1 = _unit(np.cross(ul, fr.medial))
        p2 = np.cross(ul, p1)
        frame = np.stack([ul, p1, p2])
        rng = np.random.default_rng(les.shape_seed)
        vecs = rng.normal(size=(5, 3))
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        vecs[:, 0] *= fr.medial[0]          # mirror the ripple with the side: the left hip mirrors the right
        ripple = (vecs, rng.uniform(2.0, 4.5, 5), rng.uniform(0, 2 * np.pi, 5),
                  les.ripple * rng.uniform(0.5, 1.0, 5) / math.sqrt(2.5))
        scale = les.radius_mm
    g = _HipGeom(hip, fr, n, hip.junction_mm, a, f, fovea_c, lesion_c, frame, scale, ripple)
    if solve and hip.lesion is not None and hip.lesion.pct_of_head is not None:
        g = replace(g, lesion_scale=_solve_scale(g, hip.lesion.pct_of_head))
    return g


@lru_cache(maxsize=64)
def _geom(hip: Hip, shift: tuple) -> _HipGeom:
    return _build(hip, shift)


def _rho(g: _HipGeom, u: np.ndarray) -> np.ndarray:
    """Outer-margin radius of the lesion along unit directions u (N, 3) from its centre point."""
    les = g.hip.lesion
    ax, bx = les.elongation
    w = u @ g.lesion_frame.T
    base = 1.0 / np.sqrt(w[:, 0] ** 2 + (w[:, 1] / ax) ** 2 + (w[:, 2] / bx) ** 2)
    vecs, freqs, phases, amps = g.ripple
    wav = np.sin((u @ vecs.T) * freqs + phases) @ amps
    return g.lesion_scale * base * (1.0 + wav)


# ----------------------------------------------------------------------------- exact volumes
@lru_cache(maxsize=8)
def _directions(n_theta: int, n_phi: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (N, 3) about the z axis and their quadrature weights (sum 4π)."""
    x, w = np.polynomial.legendre.leggauss(n_theta)
    phi = (np.arange(n_phi) + 0.5) * 2 * np.pi / n_phi
    ct, ph = np.meshgrid(x, phi, indexing="ij")
    st = np.sqrt(1 - ct**2)
    dirs = np.stack([st * np.cos(ph), st * np.sin(ph), ct], -1).reshape(-1, 3)
    weights = np.repeat(w, n_phi) * (2 * np.pi / n_phi)
    return dirs, weights


def _cube_between(lo, hi):
    return np.where(hi > lo, (hi**3 - lo**3) / 3.0, 0.0)


@dataclass(frozen=True)
class _Rays:
    """Rays from a point p inside the head: weights, head exit T, fovea-pit interval (pa, pb)."""

    w: np.ndarray
    T: np.ndarray
    pa: np.ndarray
    pb: np.ndarray
    u: np.ndarray


def _rays_from(g: _HipGeom, p: np.ndarray, u: np.ndarray, w: np.ndarray) -> _Rays:
    """Along p + t u the head is [0, min(ball exit, junction plane)] minus the fovea pit's interval."""
    R = g.hip.head_radius_mm
    pu = u @ p
    t_ball = -pu + np.sqrt(np.maximum(pu**2 - p @ p + R * R, 0.0))
    un = u @ g.n
    with np.errstate(divide="ignore", invalid="ignore"):
        t_plane = np.where(un > 1e-12, (g.d - p @ g.n) / un, np.inf)
    T = np.minimum(t_ball, t_plane)
    q = p - g.fovea_c
    qu = u @ q
    disc = qu**2 - q @ q + g.hip.fovea_radius_mm ** 2
    sq = np.sqrt(np.maximum(disc, 0.0))
    pa = np.where(disc > 0, -qu - sq, 0.0)
    pb = np.where(disc > 0, -qu + sq, 0.0)
    return _Rays(w, T, pa, pb, u)


def _ray_volume(r: _Rays, lo: np.ndarray, hi: np.ndarray) -> float:
    """∫ over directions of ∫ t² dt over [lo, hi] ∩ head (mm³), exact along every ray."""
    a, b = np.maximum(lo, 0.0), np.minimum(hi, r.T)
    total = _cube_between(a, b) - _cube_between(np.maximum(r.pa, a), np.minimum(r.pb, b))
    return float(total @ r.w)


@lru_cache(maxsize=64)
def _lesion_rays(hip: Hip, rays=RAYS) -> tuple[_Rays, np.ndarray]:
    """Rays from the lesion's centre point (polar axis along the lesion axis) and ρ(u) at scale 1.

    Everything here is relative to the head centre, so it depends on the hip alone.
    """
    g = _build(hip, (0.0, 0.0, 0.0), solve=False)
    dirs, w = _directions(*rays)
    u = dirs @ g.lesion_frame[[1, 2, 0]]
    return _rays_from(g, g.lesion_c, u, w), _rho(replace(g, lesion_scale=1.0), u)


def _lesion_ml(g: _HipGeom, rays=RAYS) -> tuple[float, float]:
    """(enclosed, dark) lesion volumes in mL."""
    r, rho1 = _lesion_rays(g.hip, rays)
    rho = g.lesion_scale * rho1
    zero = np.zeros_like(rho)
    enclosed = _ray_volume(r, zero, rho)
    if g.hip.lesion.centre == "oedema":
        return enclosed / 1000.0, enclosed / 1000.0
    core = _ray_volume(r, zero, np.maximum(rho - g.hip.lesion.band_mm, 0.0))
    return enclosed / 1000.0, (enclosed - core) / 1000.0


def _head_ml(hip: Hip) -> float:
    R, d, rf = hip.head_radius_mm, hip.junction_mm, hip.fovea_radius_mm
    h = R - d
    cap = math.pi * h * h * (3 * R - h) / 3.0
    D = R + rf - hip.fovea_depth_mm          # distance between the ball and pit centres
    lens = math.pi * (R + rf - D) ** 2 * (D * D + 2 * D * rf - 3 * rf * rf + 2 * D * R + 6 * rf * R - 3 * R * R) / (12 * D)
    return (4.0 / 3.0 * math.pi * R**3 - cap - lens) / 1000.0


def _solve_scale(g: _HipGeom, pct: float) -> float:
    """Lesion radius scale giving ``pct`` % of the head: secant iterations on the exact ray integral."""
    target = pct * _head_ml(g.hip) / 100.0
    r, rho1 = _lesion_rays(g.hip)
    zero = np.zeros_like(rho1)
    vol = lambda s: _ray_volume(r, zero, s * rho1) / 1000.0  # noqa: E731
    s0, v0 = 10.0, vol(10.0)
    s1 = s0 * (target / max(v0, 1e-9)) ** (1 / 3)
    v1 = vol(s1)
    for _ in range(30):
        if abs(v1 - target) < 1e-7 * target or v1 == v0:
            break
        s0, v0, s1 = s1, v1, max(0.05, s1 + (target - v1) * (s1 - s0) / (v1 - v0))
        v1 = vol(s1)
    if abs(v1 - target) > 1e-4 * target:
        raise ValueError(f"a lesion of {pct} % of the head cannot be placed (reached {100 * v1 / _head_ml(g.hip):.2f} %)")
    return s1


def head_volume_ml(hip: Hip) -> float:
    """Exact anatomical head volume (mL): ball − junction cap − fovea pit.

    Example
    -------
    >>> round(head_volume_ml(Hip(head_radius_mm=24.0)), 2)
    54.17
    """
    return _head_ml(hip)


def lesion_volumes_ml(hip: Hip, origin_shift_mm=(0.0, 0.0, 0.0)) -> tuple[float, float]:
    """Exact (enclosed, dark) lesion volumes of a hip in mL; (0, 0) for a normal head.

    Example
    -------
    >>> enc, dark = lesion_volumes_ml(Hip(lesion=Lesion(pct_of_head=10.0)))
    >>> round(100 * enc / head_volume_ml(Hip()), 2), dark < enc
    (10.0, True)
    """
    if hip.lesion is None:
        return 0.0, 0.0
    return _lesion_ml(_geom(hip, tuple(float(v) for v in origin_shift_mm)))


# ----------------------------------------------------------------------------- label field
_f32 = np.float32


def _dot(x, y, z, vec) -> np.ndarray:
    """x·v0 + y·v1 + z·v2 for coordinate arrays (structure of arrays: much faster than (N, 3) @ v)."""
    return x * _f32(vec[0]) + y * _f32(vec[1]) + z * _f32(vec[2])


def _ellipsoid(x, y, z, centre, axes, semi, shrink: float = 0.0):
    """Inside tests of an ellipsoid and of the same ellipsoid with semi-axes shrunk by ``shrink``.

    Rows of ``axes`` are its unit axes; returns (inside, inside_shrunk).
    """
    xc, yc, zc = x - _f32(centre[0]), y - _f32(centre[1]), z - _f32(centre[2])
    q = [_dot(xc, yc, zc, ax) for ax in axes]
    e = sum((qi / _f32(si)) ** 2 for qi, si in zip(q, semi))
    e_in = sum((qi / _f32(si - shrink)) ** 2 for qi, si in zip(q, semi))
    return e <= 1.0, e_in <= 1.0


def _hip_labels(g: _HipGeom, x, y, z, lab: np.ndarray, head: np.ndarray, lesion: np.ndarray) -> None:
    """Paint one hip's structures into ``lab`` at points (x, y, z) relative to its head centre (float32)."""
    hip, fr = g.hip, g.fr
    R = hip.head_radius_mm
    cf, ca, jf, tp = hip.femoral_cartilage_mm, hip.acetabular_cartilage_mm, hip.fluid_mm, hip.plate_mm
    Rs = R + cf + jf + ca                                 # acetabular bone surface
    r2 = x * x + y * y + z * z
    r = np.sqrt(r2) + _f32(1e-6)
    cos_a = _dot(x, y, z, g.a) / r
    covered = cos_a <= _f32(math.cos(math.radians(86.0)))
    in_fossa = covered & (_dot(x, y, z, g.f) / r >= _f32(math.cos(math.radians(26.0))))
    floor = np.where(in_fossa, _f32(Rs + hip.fossa_depth_mm), _f32(Rs))
    # --- pelvis: acetabular shell, ilium, pubic ramus, ischium; the socket and its opening carved out
    rows = (fr.medial, fr.anterior, fr.superior)
    pub = _unit(fr.vec(1.0, 0.55, -0.25))
    pub_ax = (pub, _unit(np.cross(pub, fr.superior)), fr.superior)
    tc, wall = 1.5, 13.0
    shell = covered & (r > floor) & (r < _f32(Rs + wall))
    shell_in = (cos_a <= _f32(math.cos(math.radians(89.0)))) & (r < _f32(Rs + wall - tc))
    ilium, ilium_in = _ellipsoid(x, y, z, fr.vec(12, -8, 52), rows, (17, 46, 44), tc)
    pubis, pubis_in = _ellipsoid(x, y, z, fr.vec(40, 30, -14), pub_ax, (58, 11, 10), tc)
    isch, isch_in = _ellipsoid(x, y, z, fr.vec(12, -26, -40), rows, (15, 18, 30), tc)
    pelvis = (shell | ilium | pubis | isch) & (r > floor) & ~(~covered & (r < _f32(Rs + 9.0)))
    pelvis_in = ((shell_in | ilium_in | pubis_in | isch_in) & (r > floor + _f32(tp))
                 & ~(~covered & (r < _f32(Rs + 9.0 + tc))))
    lab[pelvis] = _T["cortex"]
    lab[pelvis & pelvis_in] = _T["pelvic_marrow"]
    # --- joint: cartilage, fluid, pulvinar, labrum, ligamentum teres
    t = _dot(x, y, z, g.n)
    near_head = (r <= _f32(R + cf + jf + 1.2)) & (t <= _f32(g.d + 2.0))
    cavity = covered & (r <= floor)
    joint = cavity | near_head
    lab[joint] = _T["joint_fluid"]
    lab[cavity & (r > _f32(Rs - ca)) & ~in_fossa] = _T["cartilage"]
    lab[cavity & in_fossa & (r > _f32(R + cf + jf))] = _T["pulvinar_fat"]
    fx, fy, fz = x - _f32(g.fovea_c[0]), y - _f32(g.fovea_c[1]), z - _f32(g.fovea_c[2])
    fov2 = fx * fx + fy * fy + fz * fz
    rf = hip.fovea_radius_mm
    cart = (r > _f32(R)) & (r <= _f32(R + cf)) & (t <= _f32(g.d - 1.5)) & (fov2 > _f32((rf + 0.8) ** 2))
    lab[cart] = _T["cartilage"]
    labrum = (~covered & (cos_a <= _f32(math.cos(math.radians(72.0)))) & (r > _f32(R + cf + jf))
              & (r <= _f32(Rs + 3.5)))
    lab[labrum] = _T["fibrous"]
    seg = g.f * (Rs + hip.fossa_depth_mm) - g.fovea_c          # ligamentum teres: fovea to fossa
    sl = np.clip(_dot(fx, fy, fz, seg / (seg @ seg)), 0, 1)
    lig = joint & ((fx - sl * _f32(seg[0])) ** 2 + (fy - sl * _f32(seg[1])) ** 2 + (fz - sl * _f32(seg[2])) ** 2
                   <= _f32(2.5**2))
    lab[lig] = _T["fibrous"]
    # --- femur: head (ball minus fovea pit), neck, greater trochanter, shaft
    ball = (r2 <= _f32(R * R)) & (fov2 > _f32(rf * rf))
    ball_in = (r2 <= _f32((R - tp) ** 2)) & (fov2 > _f32((rf + tp) ** 2))
    rn = hip.neck_radius_fraction * R
    L = R + 24.0
    tflare = g.d + 6.0
    rad = _f32(rn) * (1 + _f32(0.4) * np.clip((t - _f32(tflare)) / _f32(L - tflare), 0, None))
    rho2 = r2 - t * t
    neck = (t >= 0) & (t <= _f32(L)) & (rho2 <= rad * rad)
    neck_in = (t >= 0) & (t <= _f32(L - 1.0)) & (rho2 <= (rad - _f32(1.2)) ** 2)
    base = g.n * L
    sh = _shaft_axis(fr)
    gt, gt_in = _ellipsoid(x, y, z, base + fr.vec(-16.0, -2.0, 20.0), rows, (13, 18, 22), 1.5)
    sx, sy, sz = x - _f32(base[0]), y - _f32(base[1]), z - _f32(base[2])
    ts = _dot(sx, sy, sz, sh)
    rs2 = sx * sx + sy * sy + sz * sz - ts * ts
    srad = _f32(15.0) + _f32(6.0) * np.clip(1 - ts / _f32(40.0), 0, 1)
    shaft = (ts >= -12) & (rs2 <= srad * srad)
    shaft_in = (ts >= -10) & (rs2 <= (srad - np.where(ts > 40, _f32(4.5), _f32(2.0))) ** 2)
    femur = ball | neck | gt | shaft
    femur_in = ball_in | neck_in | gt_in | shaft_in
    lab[femur] = _T["cortex"]
    lab[femur & femur_in] = _T["femoral_marrow"]
    hd = ball & (t <= _f32(g.d))
    head |= hd
    # --- lesion
    if g.lesion_c is not None:
        les = hip.lesion
        lc = g.lesion_c
        near = np.flatnonzero(hd | (femur_in & (r2 < _f32((R + 30.0) ** 2))) if les.oedema_halo_mm > 0 else hd)
        wv = np.stack([x[near] - lc[0], y[near] - lc[1], z[near] - lc[2]], 1).astype(np.float64)
        rl = np.sqrt((wv**2).sum(1)) + 1e-9
        rho = _rho(g, wv / rl[:, None])
        inside = (rl <= rho) & hd[near]
        lesion[near[inside]] = True
        code = np.full(near.size, 255, np.uint8)
        code[inside] = _T["lesion_centre_fat"] if les.centre == "fat" else _T["lesion_centre_oedema"]
        code[inside & (rl > rho - les.band_mm)] = _T["band_granulation"]
        code[inside & (rl > rho - 0.45 * les.band_mm)] = _T["band_sclerotic"]
        if les.oedema_halo_mm > 0:     # marrow oedema around the band, in the head and the neck
            code[~inside & (rl <= rho + les.oedema_halo_mm)] = _T["marrow_oedema"]
        paint = (femur_in[near] & femur[near]) & (code != 255)
        lab[near[paint]] = code[paint]


def tissue_labels(spec: HipScanSpec, points_mm: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Tissue code, head membership and lesion membership (per side) at physical points (N, 3).

    Example
    -------
    >>> spec = HipScanSpec()
    >>> lab, head, les = tissue_labels(spec, np.array([[-90.0, 0.0, 0.0], [-90.0, 0.0, 24.6]]))
    >>> [k for k, c in TISSUES.items() if c in lab.tolist()], head["right"].tolist()
    (['femoral_marrow', 'cartilage'], [True, False])
    """
    shift = np.asarray(spec.origin_shift_mm, float)
    pts = np.asarray(points_mm, np.float32)
    x, y, z = (pts[:, i] - _f32(shift[i]) for i in range(3))
    n = x.size
    lab = np.zeros(n, np.uint8)
    ax, ay = BODY_SEMI_AXES_MM
    yb = y - _f32(BODY_CENTRE_Y_MM)
    lab[(x / _f32(ax)) ** 2 + (yb / _f32(ay)) ** 2 <= 1.0] = _T["subcutaneous_fat"]
    axi, ayi = ax - SUBCUTANEOUS_FAT_MM, ay - SUBCUTANEOUS_FAT_MM
    lab[(x / _f32(axi)) ** 2 + (yb / _f32(ayi)) ** 2 <= 1.0] = _T["muscle"]
    lab[(x / _f32(38.0)) ** 2 + ((y + _f32(42.0)) / _f32(28.0)) ** 2 + ((z + _f32(28.0)) / _f32(30.0)) ** 2 <= 1.0] = \
        _T["urine"]
    heads, lesions = {}, {}
    key = tuple(float(v) for v in spec.origin_shift_mm)
    for side in ("right", "left"):
        g = _geom(spec.hip(side), key)
        c = g.fr.centre - shift
        sel = np.flatnonzero((np.abs(x - _f32(c[0])) < 115) & (np.abs(y - _f32(c[1])) < 115)
                             & (np.abs(z - _f32(c[2])) < 125))
        head, les = np.zeros(n, bool), np.zeros(n, bool)
        if sel.size:
            sub_lab = lab[sel]
            sh, sl = np.zeros(sel.size, bool), np.zeros(sel.size, bool)
            _hip_labels(g, x[sel] - _f32(c[0]), y[sel] - _f32(c[1]), z[sel] - _f32(c[2]), sub_lab, sh, sl)
            lab[sel] = sub_lab
            head[sel], les[sel] = sh, sl
        heads[side], lesions[side] = head, les
    return lab, heads, lesions


# ----------------------------------------------------------------------------- grid and image
def _direction(plane: str, oblique_deg) -> np.ndarray:
    cols = {"coronal": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
            "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
            "sagittal": ((0, 1, 0), (0, 0, -1), (-1, 0, 0))}[plane]
    D = np.array(cols, float).T
    rx, ry, rz = (math.radians(a) for a in oblique_deg)
    Rx = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    Ry = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    Rz = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    return Rz @ Ry @ Rx @ D


def _field_centre(spec: HipScanSpec) -> np.ndarray:
    if spec.field_centre_mm is not None:
        return np.asarray(spec.field_centre_mm, float)
    shift = np.asarray(spec.origin_shift_mm, float)
    if spec.field == "both":
        return shift + np.array([0.0, 0.0, -10.0])
    c, m = hip_frame(spec.field, shift)
    return c + 15.0 * m + np.array([0.0, 0.0, -15.0])


def _wave_texture(spec: HipScanSpec, M: np.ndarray, origin: np.ndarray, shape_zyx) -> np.ndarray:
    """Trabecular texture: random plane waves (wavelengths 1.2-3.5 mm), exactly box-averaged over each voxel."""
    rng = np.random.default_rng(10_000 + spec.anatomy_seed)
    nw = 28
    k = rng.normal(size=(nw, 3))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= (2 * np.pi / rng.uniform(1.2, 3.5, nw))[:, None]
    phase = rng.uniform(0, 2 * np.pi, nw)
    kg = k @ M                                  # wave number per index step along i, j, k
    atten = np.prod(np.sinc(kg / (2 * np.pi)), axis=1)   # np.sinc(x) = sin(πx)/(πx): box of one voxel
    kx = kg.astype(np.float32)
    k0 = (k @ origin + phase)
    nz, ny, nx = shape_zyx
    ii, jj, kk = (np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), np.arange(nz, dtype=np.float32))
    tex = np.zeros(shape_zyx, np.float32)
    for w in range(nw):
        # cos(a + b + c) through complex exponentials: separable, cheap
        ex = np.exp(1j * (kx[w, 0] * ii))
        ey = np.exp(1j * (kx[w, 1] * jj))
        ez = np.exp(1j * (kx[w, 2] * kk + k0[w]))
        tex += np.float32(atten[w]) * np.real(ez[:, None, None] * ey[None, :, None] * ex[None, None, :]).astype(np.float32)
    return tex * np.float32(math.sqrt(2.0 / nw))


def _bias(spec: HipScanSpec, pts: np.ndarray, centre: np.ndarray, rng) -> np.ndarray:
    if spec.bias <= 0:
        return np.ones(pts.shape[0], np.float32)
    g = rng.normal(size=3)
    g /= np.linalg.norm(g)
    q = (pts - centre.astype(np.float32)) / np.float32(150.0)
    lin = q @ g.astype(np.float32)
    quad = (q**2).sum(1)
    f = 0.7 * lin - 0.5 * (quad - 0.3)
    return np.exp(np.float32(spec.bias) * f.astype(np.float32))


def _subsample_offsets(spacing, step, least: int = 3) -> np.ndarray:
    """Sub-sample offsets (index units, (n, 3)) of a voxel: a regular lattice, spacing ≤ step, ≥ least per axis."""
    s = [max(least, int(math.ceil(sp / step))) for sp in spacing]
    axes = [(np.arange(n) + 0.5) / n - 0.5 for n in s]
    o = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return o.astype(np.float32)


@dataclass
class HipTruth:
    """Exact truth of one hip in the field (volumes mL, points LPS mm).

    ``head_volume_ml`` and ``lesion_volume_ml`` (enclosed) are exact; ``dark_volume_ml`` is the
    band (+ an oedematous centre).  ``junction_mm`` is the distance of the head-neck cut plane from
    the centre along ``neck_axis`` (unit vector from the centre into the neck).
    """

    side: str
    head_volume_ml: float
    lesion_volume_ml: float
    dark_volume_ml: float
    centre_mm: np.ndarray
    radius_mm: float
    neck_axis: np.ndarray
    junction_mm: float
    fovea_centre_mm: np.ndarray
    lesion_centre_mm: np.ndarray | None
    lesion_kind: str | None

    @property
    def lesion_pct_head(self) -> float:
        """LF = 100 · lesion / head (%)."""
        return 100.0 * self.lesion_volume_ml / self.head_volume_ml


@dataclass
class ScanTruth:
    """Truth of one scan: per side in the field, the exact numbers and the image-resolution masks.

    ``head_fraction[side]`` / ``lesion_fraction[side]`` are float32 images of the supersampled
    fraction of every voxel; ``head_mask`` / ``lesion_mask`` are uint8 ``fraction >= 0.5``;
    ``labels`` is the tissue code at voxel centres.
    """

    spec: HipScanSpec
    hips: dict[str, HipTruth]
    head_fraction: dict[str, sitk.Image] = field(repr=False)
    lesion_fraction: dict[str, sitk.Image] = field(repr=False)
    head_mask: dict[str, sitk.Image] = field(repr=False)
    lesion_mask: dict[str, sitk.Image] = field(repr=False)
    labels: sitk.Image = field(repr=False)

    @property
    def sides(self) -> list[str]:
        """Sides whose head lies in the field."""
        return list(self.hips)

    def mask_volume_ml(self, side: str, what: str = "head") -> float:
        """Volume of the ``fraction >= 0.5`` mask of ``what`` ("head"/"lesion") in mL."""
        img = (self.head_mask if what == "head" else self.lesion_mask)[side]
        return float(sitk.GetArrayViewFromImage(img).sum()) * float(np.prod(img.GetSpacing())) / 1000.0

    def fraction_volume_ml(self, side: str, what: str = "head") -> float:
        """Sum of the supersampled fractions × voxel volume (mL)."""
        img = (self.head_fraction if what == "head" else self.lesion_fraction)[side]
        return float(sitk.GetArrayViewFromImage(img).astype(np.float64).sum()) * float(np.prod(img.GetSpacing())) / 1000.0


def _image(arr: np.ndarray, origin, spacing, D) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetOrigin(tuple(float(v) for v in origin))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetDirection(tuple(float(v) for v in D.ravel()))
    return img


def make_hip_scan(spec: HipScanSpec, seed: int = 0) -> tuple[sitk.Image, ScanTruth]:
    """Generate one scan of family B and its exact truth.

    Parameters
    ----------
    spec : HipScanSpec
        Anatomy of both hips, the field, contrast and grid.
    seed : int
        Seed of the noise and bias field (the anatomy and texture come from ``spec``).

    Returns
    -------
    image : SimpleITK.Image
        float32 magnitude image (fat ≈ 1000 on T1).
    truth : ScanTruth
        Exact volumes, geometry and masks of every hip whose head centre is in the field.

    Example
    -------
    >>> spec = HipScanSpec(field="left", spacing_mm=(2.0, 2.0, 3.0), fov_mm=(100.0, 100.0, 72.0))
    >>> image, truth = make_hip_scan(spec, seed=1)
    >>> image.GetSize(), truth.sides, truth.hips["left"].lesion_volume_ml
    ((50, 50, 24), ['left'], 0.0)
    """
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spec.spacing_mm, float)
    fov = np.asarray(spec.fov(), float)
    size = np.maximum(np.round(fov / spacing).astype(int), 1)
    D = _direction(spec.plane, spec.oblique_deg)
    M = D * spacing
    centre = _field_centre(spec)
    origin = centre - M @ ((size - 1) / 2.0)
    nx, ny, nz = size
    shape = (nz, ny, nx)
    shift = tuple(float(v) for v in spec.origin_shift_mm)

    # 1) labels at voxel centres
    kk, jj, ii = np.meshgrid(np.arange(nz, dtype=np.float32), np.arange(ny, dtype=np.float32),
                             np.arange(nx, dtype=np.float32), indexing="ij")
    idx = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1)
    del ii, jj, kk
    pts = idx @ M.T.astype(np.float32) + origin.astype(np.float32)
    lab, heads, lesions = tissue_labels(spec, pts)
    sides = [s for s in ("right", "left") if heads[s].any()]
    key = lab.astype(np.int32) * 16
    for bit, s in enumerate(sides):
        key += heads[s].astype(np.int32) * (1 << (2 * bit)) + lesions[s].astype(np.int32) * (1 << (2 * bit + 1))
    key = key.reshape(shape)

    # 2) boundary voxels: any 6-neighbour differs, dilated by one voxel
    edge = np.zeros(shape, bool)
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        diff = key[tuple(a)] != key[tuple(b)]
        edge[tuple(a)] |= diff
        edge[tuple(b)] |= diff
    edge = ndimage.binary_dilation(edge, structure=ndimage.generate_binary_structure(3, 1))

    sig = np.asarray(SIGNAL[spec.contrast], np.float32)
    textured = np.zeros(sig.size, np.float32)
    textured[list(_TEXTURED)] = 1.0
    value = sig[lab]
    tex_w = value * textured[lab]
    hf = {s: heads[s].astype(np.float32) for s in sides}
    lf = {s: lesions[s].astype(np.float32) for s in sides}

    # 3) supersample the boundary voxels: finely near the heads (joint, head, lesion), coarser elsewhere
    eidx = np.flatnonzero(edge.ravel())
    dist = np.full(eidx.size, np.inf, np.float32)
    for s in ("right", "left"):
        c = _geom(spec.hip(s), shift).fr.centre.astype(np.float32)
        dist = np.minimum(dist, np.sqrt(((pts[eidx] - c) ** 2).sum(1)))
    Mf = M.T.astype(np.float32)
    for near, step, least in ((True, spec.supersample_mm, 3), (False, max(1.2, 2 * spec.supersample_mm), 2)):
        part = eidx[(dist < NEAR_HEAD_MM + max(spec.right.head_radius_mm, spec.left.head_radius_mm)) == near]
        offs = _subsample_offsets(spacing, step, least) @ Mf       # physical offsets of the sub-samples
        ns = offs.shape[0]
        chunk = max(1, 300_000 // ns)
        for start in range(0, part.size, chunk):
            e = part[start:start + chunk]
            sl, sh, sle = tissue_labels(spec, (pts[e][:, None, :] + offs[None]).reshape(-1, 3))
            sv = sig[sl].reshape(-1, ns)
            value[e] = sv.mean(1)
            tex_w[e] = (sv * textured[sl].reshape(-1, ns)).mean(1)
            for s in sides:
                hf[s][e] = sh[s].reshape(-1, ns).mean(1)
                lf[s][e] = sle[s].reshape(-1, ns).mean(1)

    # 4) texture, bias, noise
    tex = _wave_texture(spec, M, origin, shape).ravel()
    value = value + np.float32(spec.texture) * tex * tex_w
    value *= _bias(spec, pts, centre, rng)
    ref = 1000.0
    value *= np.float32(ref)
    sigma = ref * max(SIGNAL[spec.contrast]) / spec.snr if spec.snr > 0 else 0.0
    if sigma > 0:
        n1 = rng.normal(0.0, sigma, value.size).astype(np.float32)
        n2 = rng.normal(0.0, sigma, value.size).astype(np.float32)
        value = np.sqrt((value + n1) ** 2 + n2**2)
    image = _image(value.reshape(shape).astype(np.float32), origin, spacing, D)

    # 5) truth
    hips, hfi, lfi, hm, lm = {}, {}, {}, {}, {}
    inv = np.linalg.inv(M)
    for s in ("right", "left"):
        g = _geom(spec.hip(s), shift)
        ci = inv @ (g.fr.centre - origin)
        if not np.all((ci >= -0.5) & (ci <= size - 0.5)):
            continue
        hip = spec.hip(s)
        enc, dark = lesion_volumes_ml(hip, shift)
        hips[s] = HipTruth(s, head_volume_ml(hip), enc, dark, g.fr.centre.copy(), hip.head_radius_mm, g.n.copy(), g.d,
                           g.fr.centre + g.fovea_c, None if g.lesion_c is None else g.fr.centre + g.lesion_c,
                           None if hip.lesion is None else hip.lesion.centre)
        h = hf[s] if s in hf else np.zeros(value.size, np.float32)
        le = lf[s] if s in lf else np.zeros(value.size, np.float32)
        hfi[s] = _image(h.reshape(shape), origin, spacing, D)
        lfi[s] = _image(le.reshape(shape), origin, spacing, D)
        hm[s] = _image((h >= 0.5).astype(np.uint8).reshape(shape), origin, spacing, D)
        lm[s] = _image((le >= 0.5).astype(np.uint8).reshape(shape), origin, spacing, D)
    labels = _image(lab.reshape(shape), origin, spacing, D)
    return image, ScanTruth(spec, hips, hfi, lfi, hm, lm, labels)
