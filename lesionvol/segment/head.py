"""Find and fit the femoral head on a T1 image: a sphere, its neck axis and head–neck junction.

How (classical, intensity-scale free: every level is relative to the marrow/fat signal):

1. **Candidates.** The image is binned to about 2 mm, normalised to its fat level (upper class
   of a three-class Otsu split) and every strong edge votes along its gradient line, on both
   sides, at 14–34 mm.  The marrow/plate and plate/joint surfaces and the concentric acetabular
   cortices all vote for the head centre; the peaks of the smoothed vote map are the
   candidates.
2. **Sphere fit.** Around a candidate, in-plane rays are cast in every native slice from the
   foot of the centre (no interpolation across slices, so 4 mm slices do not blur the edges).
   On each ray, the *outer* head surface is the rise from the dark subchondral plate to the joint
   space/muscle, the *inner* (marrow) surface the fall from marrow to the plate.  Robust
   (trimmed) sphere fits give the centre (from the inner surface when enough of it is visible,
   else the outer) and the head radius (outer surface), re-sampled three times.
3. **Neck axis.** 3D rays beyond the acetabulum find the bright marrow tube leaving the head
   inferiorly; the anatomical head is the ball cut by the plane perpendicular to that axis at
   ``junction_fraction · R`` from the centre (0.55 by default, the lesionvol convention).
4. **Checks.** A fit is a femoral head only if the surface is found on most rays, the radius
   is 15–33 mm, the plate is 0.5–5 mm thick, the inside is mostly marrow or lesion and a neck
   leaves it; otherwise :class:`NoFemoralHeadError`.

Example
-------
>>> from lesionvol.phantom import VisitSpec, make_visit
>>> scan = make_visit(VisitSpec(), seed=0)
>>> fit = find_heads(scan.image)[0]
>>> fit.side, abs(fit.radius_mm - 23.0) < 0.5
('right', True)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionvol.errors import InputError
from lesionvol.segment.grid import Grid

__all__ = ["HeadFit", "NoFemoralHeadError", "find_heads", "fit_head", "fat_level"]

VOTE_STEP_MM = 2.0
VOTE_RADII_MM = (14.0, 34.0)
RADIUS_RANGE_MM = (15.0, 33.0)
JUNCTION_FRACTION = 0.55
OUTER_LEVEL = 0.22     # half-way between plate (~0.05) and joint space / muscle (~0.35–0.45), × fat
INNER_LEVEL = 0.5      # half-way between marrow (1) and plate, × fat
RAY_STEP_MM = 0.25


class NoFemoralHeadError(InputError):
    """No femoral head was found in the image (wrong body part, or the hip is outside the view)."""


@dataclass
class HeadFit:
    """A fitted femoral head, physical LPS millimetres.

    ``radius_mm`` is the outer head surface (sphere-equivalent head), ``inner_radius_mm`` the
    marrow surface under the subchondral plate, ``neck_axis`` the unit vector from the centre
    into the neck, ``junction_mm`` the distance of the head–neck cut plane from the centre.
    ``marrow_level`` is the fat/marrow signal near the head (image units).

    Example
    -------
    >>> f = HeadFit(np.zeros(3), 23.0, 21.0, np.array([-0.7, 0.1, -0.7]), 12.65, "right", 1.0)
    >>> round(f.sphere_volume_ml, 2)
    50.97
    """

    centre_mm: np.ndarray
    radius_mm: float
    inner_radius_mm: float
    neck_axis: np.ndarray
    junction_mm: float
    side: str
    marrow_level: float
    quality: dict = field(default_factory=dict)

    @property
    def sphere_volume_ml(self) -> float:
        """Volume of the sphere-equivalent head (mL)."""
        return 4.0 / 3.0 * math.pi * self.radius_mm**3 / 1000.0


# ----------------------------------------------------------------------------- intensity level
def fat_level(values: np.ndarray) -> float:
    """Fat/marrow signal of an image: median of the upper class of a three-class Otsu split.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> v = np.r_[rng.normal(0, 2, 5000), rng.normal(35, 2, 3000), rng.normal(100, 2, 2000)]
    >>> round(fat_level(v))
    100
    """
    from skimage.filters import threshold_multiotsu

    v = np.asarray(values, np.float32).ravel()
    v = v[np.isfinite(v)]
    if v.size > 400_000:
        v = v[:: v.size // 400_000]
    if v.size == 0 or float(v.max()) <= float(v.min()):
        raise NoFemoralHeadError("the image is constant: no femoral head can be found")
    t = threshold_multiotsu(v, classes=3)[-1]
    return float(np.median(v[v > t]))


# ----------------------------------------------------------------------------- candidates
def _binned(image: sitk.Image) -> sitk.Image:
    """The image averaged to about 2 mm per voxel, then resampled to exactly 2 mm (own frame)."""
    spacing = np.asarray(image.GetSpacing())
    factors = [max(1, int(round(VOTE_STEP_MM / s))) for s in spacing]
    img = sitk.Cast(image, sitk.sitkFloat32)
    if any(f > 1 for f in factors):
        img = sitk.BinShrink(img, factors)
    size = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing()) / VOTE_STEP_MM
    ref = sitk.Image([max(2, int(math.ceil(s))) for s in size], sitk.sitkFloat32)
    ref.SetSpacing([VOTE_STEP_MM] * 3)
    ref.SetDirection(img.GetDirection())
    # keep the first voxel's outer corner where it was
    half = 0.5 * (np.asarray(img.GetSpacing()) - VOTE_STEP_MM)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    ref.SetOrigin(tuple(np.asarray(img.GetOrigin()) - d @ half))
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0)


def _vote_map(image: sitk.Image, fat: float) -> tuple[np.ndarray, Grid]:
    """Smoothed sphere-centre vote map on a 2 mm grid, and that grid."""
    coarse = _binned(image)
    a = sitk.GetArrayFromImage(coarse) / fat
    a = ndimage.gaussian_filter(a, 1.0)
    grads = np.gradient(a, VOTE_STEP_MM)
    g = np.sqrt(sum(x * x for x in grads))
    edge = g > 0.04
    if not edge.any():
        return np.zeros(a.shape, np.float32), Grid.of(coarse)
    z, y, x = np.nonzero(edge)
    w = np.minimum(g[edge], 0.4)
    u = np.stack([gr[edge] for gr in grads], -1) / g[edge][:, None]   # (z, y, x) unit, to the bright side
    pos = np.stack([z, y, x], -1).astype(np.float32)
    shape = np.asarray(a.shape)
    acc = np.zeros(a.size, np.float32)
    # concentric surfaces of the hip (marrow/plate, plate/joint, acetabular cortices) have edges
    # facing both ways, so each edge votes on both sides (a fully necrotic head is dark inside)
    for r in np.arange(VOTE_RADII_MM[0], VOTE_RADII_MM[1] + 1e-6, VOTE_STEP_MM):
        for sign in (1.0, -1.0):
            q = np.rint(pos + sign * u * (r / VOTE_STEP_MM)).astype(np.int64)
            ok = np.all((q >= 0) & (q < shape), axis=1)
            flat = np.ravel_multi_index(q[ok].T, a.shape)
            acc += np.bincount(flat, weights=w[ok], minlength=a.size).astype(np.float32)
    return ndimage.gaussian_filter(acc.reshape(a.shape), 1.0), Grid.of(coarse)


def _candidates(image: sitk.Image, fat: float, seed_mm=None, n: int = 6) -> list[np.ndarray]:
    """Physical points where edges vote most for a sphere centre (best first)."""
    from skimage.feature import peak_local_max

    acc, grid = _vote_map(image, fat)
    shape = np.asarray(acc.shape)
    if seed_mm is not None:
        idx = grid.to_index(np.asarray(seed_mm, float)[None])[0][::-1]
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        far = ((zz - idx[0]) ** 2 + (yy - idx[1]) ** 2 + (xx - idx[2]) ** 2) > (30.0 / VOTE_STEP_MM) ** 2
        acc[far] = 0
    peaks = peak_local_max(acc, min_distance=int(20 / VOTE_STEP_MM), num_peaks=n, threshold_rel=0.2,
                           exclude_border=False)
    return [grid.to_physical(p[::-1][None].astype(float))[0] for p in peaks]


# ----------------------------------------------------------------------------- ray profiles
class _Rays:
    """In-plane ray profiles of a region of interest, from the foot of a centre in each slice."""

    def __init__(self, image: sitk.Image, centre_mm: np.ndarray, half_mm: float, fat: float):
        grid = Grid.of(image)
        box = grid.box_around(centre_mm, half_mm)
        if box is None:
            raise NoFemoralHeadError("the candidate head lies outside the image")
        self.lo, self.hi = box
        sl = tuple(slice(a, b) for a, b in zip(self.lo[::-1], self.hi[::-1]))
        roi = sitk.GetArrayViewFromImage(image)[sl].astype(np.float32) / np.float32(fat)
        sigma = [max(0.0, 0.5 / s) if s < 1.5 else 0.0 for s in grid.spacing_mm[::-1]]
        self.array = ndimage.gaussian_filter(roi, sigma) if any(sigma) else roi
        self.grid = grid
        self.angles = np.linspace(0, 2 * np.pi, 144, endpoint=False)
        self.rho = np.arange(0.0, half_mm, RAY_STEP_MM)

    def profiles(self, centre_mm: np.ndarray, max_h_mm: float):
        """Profiles (n_slices, n_angles, n_rho), signed slice offsets h (mm) and slice indices."""
        g = self.grid
        c = g.to_index(centre_mm[None])[0]
        ks = np.arange(self.lo[2], self.hi[2])
        h = (ks - c[2]) * g.spacing_mm[2]
        ks, h = ks[np.abs(h) <= max_h_mm], h[np.abs(h) <= max_h_mm]
        ci = c[0] + np.outer(np.cos(self.angles), self.rho) / g.spacing_mm[0]
        cj = c[1] + np.outer(np.sin(self.angles), self.rho) / g.spacing_mm[1]
        n = len(ks)
        coords = np.empty((3, n) + ci.shape, np.float32)
        coords[0] = (ks - self.lo[2])[:, None, None]
        coords[1] = cj[None] - self.lo[1]
        coords[2] = ci[None] - self.lo[0]
        prof = ndimage.map_coordinates(self.array, coords.reshape(3, -1), order=1, mode="nearest")
        inside = ((coords[1] >= 0) & (coords[1] <= self.array.shape[1] - 1)
                  & (coords[2] >= 0) & (coords[2] <= self.array.shape[2] - 1))
        prof = np.where(inside.reshape(-1), prof, np.nan).reshape(coords.shape[1:])
        return prof, h, ks

    def points(self, centre_mm: np.ndarray, ks: np.ndarray, angle_idx: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """Physical points of in-plane ray positions."""
        g = self.grid
        c = g.to_index(centre_mm[None])[0]
        idx = np.stack([c[0] + np.cos(self.angles[angle_idx]) * rho / g.spacing_mm[0],
                        c[1] + np.sin(self.angles[angle_idx]) * rho / g.spacing_mm[1],
                        ks.astype(float)], -1)
        return g.to_physical(idx)


def _crossings(prof: np.ndarray, level: float, rising: bool, expect: np.ndarray, window_mm: tuple[float, float],
               before_mm: float, after_mm: float, before_test, after_test):
    """Sub-sample crossing of ``level`` on each profile nearest to ``expect`` (mm) within a window.

    Returns rho (nan where none) per profile.  ``before_test``/``after_test`` check the mean of
    the profile over ``before_mm`` inside / ``after_mm`` outside of the crossing.
    """
    n, m = prof.shape
    step = RAY_STEP_MM
    above = prof >= level
    cross = (above[:, 1:] & ~above[:, :-1]) if rising else (~above[:, 1:] & above[:, :-1])
    idx = np.arange(m - 1)
    rho = idx * step
    ok = cross & (rho[None] >= (expect[:, None] + window_mm[0])) & (rho[None] <= (expect[:, None] + window_mm[1]))
    nb, na = max(1, int(round(before_mm / step))), max(1, int(round(after_mm / step)))
    csum = np.concatenate([np.zeros((n, 1)), np.nancumsum(np.nan_to_num(prof, nan=0.0), axis=1)], axis=1)
    lo_b = np.clip(idx - nb + 1, 0, m)
    mean_before = (csum[:, idx + 1] - csum[:, lo_b]) / (idx + 1 - lo_b)
    hi_a = np.clip(idx + 1 + na, 0, m)
    mean_after = (csum[:, hi_a] - csum[:, idx + 1]) / np.maximum(hi_a - idx - 1, 1)
    ok &= before_test(mean_before) & after_test(mean_after)
    dist = np.where(ok, np.abs(rho[None] - expect[:, None]), np.inf)
    best = np.argmin(dist, axis=1)
    found = np.isfinite(dist[np.arange(n), best])
    a, b = prof[np.arange(n), best], prof[np.arange(n), best + 1]
    frac = np.clip((level - a) / np.where(b != a, b - a, 1.0), 0, 1)
    out = (best + frac) * step
    return np.where(found, out, np.nan)


def _fit_sphere(points: np.ndarray, weights: np.ndarray | None = None, trim_iter: int = 4):
    """Robust algebraic sphere fit: centre, radius, inlier mask (MAD trimming)."""
    p = np.asarray(points, float)
    keep = np.ones(len(p), bool)
    c, r = p.mean(0), 0.0
    for _ in range(trim_iter + 1):
        if keep.sum() < 10:
            return None
        q = p[keep]
        A = np.c_[2 * q, np.ones(len(q))]
        b = (q * q).sum(1)
        sol, *_ = np.linalg.lstsq(A, b, rcond=None)
        c = sol[:3]
        r = math.sqrt(max(sol[3] + c @ c, 1e-9))
        res = np.linalg.norm(p - c, axis=1) - r
        mad = 1.4826 * np.median(np.abs(res[keep] - np.median(res[keep])))
        keep = np.abs(res) < max(2.5 * mad, 0.6)
    return c, r, keep


def _outer_level(prof: np.ndarray, R: float) -> float:
    """Half-way between the plate (just inside R) and the joint space/muscle (just outside R)."""
    rho = np.arange(prof.shape[-1]) * RAY_STEP_MM
    flat = prof.reshape(-1, prof.shape[-1])
    with warnings.catch_warnings():     # rays leaving the image are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        plate = np.nanmedian(flat[:, (rho > R - 1.4) & (rho < R - 0.6)])
        joint = np.nanmedian(flat[:, (rho > R + 0.6) & (rho < R + 1.4)])
    level = plate + 0.4 * (joint - plate)
    return float(np.clip(level, OUTER_LEVEL - 0.08, OUTER_LEVEL + 0.12)) if np.isfinite(level) else OUTER_LEVEL


def _edges(rays: _Rays, centre: np.ndarray, R: float, r_in: float | None):
    """Outer and inner surface points (physical) seen from ``centre`` for a head of radius R."""
    max_h = 0.85 * R
    prof, h, ks = rays.profiles(centre, max_h)
    level = _outer_level(prof[np.abs(h) <= max(3.0, np.min(np.abs(h)) + 1e-6)], R)
    n_s, n_a, _ = prof.shape
    flat = prof.reshape(n_s * n_a, -1)
    hh = np.repeat(h, n_a)
    kk = np.repeat(ks, n_a)
    aa = np.tile(np.arange(n_a), n_s)
    exp_out = np.sqrt(np.maximum(R * R - hh * hh, 1.0))
    rho_out = _crossings(flat, level, True, exp_out, (-4.0, 3.0), 1.0, 1.25,
                         lambda m: m < level, lambda m: m > level + 0.05)
    ri = r_in if r_in is not None else R - 2.0
    exp_in = np.sqrt(np.maximum(ri * ri - hh * hh, 1.0))
    rho_in = _crossings(flat, INNER_LEVEL, False, exp_in, (-3.0, 2.5), 1.5, 1.0,
                        lambda m: m > 0.7, lambda m: m < 0.35)
    out_ok, in_ok = np.isfinite(rho_out), np.isfinite(rho_in)
    p_out = rays.points(centre, kk[out_ok], aa[out_ok], rho_out[out_ok])
    p_in = rays.points(centre, kk[in_ok], aa[in_ok], rho_in[in_ok])
    return p_out, p_in, len(flat), prof, h


def _median_profile_radius(prof: np.ndarray, h: np.ndarray) -> tuple[float, float] | None:
    """Outer and inner head radius: medians over the rays of the central slices.

    On each ray the plate is the first dark stretch beyond 8 mm; the outer surface is where the
    profile rises out of it, the inner surface where it last was marrow-bright before it.
    """
    central = np.abs(h) <= max(3.0, np.min(np.abs(h)) + 1e-6)
    rays = np.nan_to_num(prof[central].reshape(-1, prof.shape[-1]), nan=0.0)
    rays = ndimage.uniform_filter1d(rays, 3, axis=1)
    start = int(8.0 / RAY_STEP_MM)
    n = rays.shape[1]
    idx = np.arange(n)
    dark = (rays < OUTER_LEVEL + 0.05) & (idx >= start)
    has_dark = dark.any(1)
    i0 = np.where(has_dark, np.argmax(dark, 1), n - 1)
    rise = (rays >= OUTER_LEVEL + 0.05) & (idx[None] > i0[:, None])
    has_rise = rise.any(1) & has_dark
    if has_rise.mean() < 0.3:
        return None
    outer = np.argmax(rise, 1)[has_rise] * RAY_STEP_MM
    bright = (rays >= INNER_LEVEL) & (idx[None] < i0[:, None])
    inner = (n - 1 - np.argmax(bright[:, ::-1], 1)) * RAY_STEP_MM
    ok_in = bright.any(1) & has_rise
    o = float(np.median(outer))
    i = float(np.median(inner[ok_in])) if ok_in.mean() > 0.3 else o - 2.0
    return o, i


def _neck_axis(image: sitk.Image, fat: float, centre: np.ndarray, R: float):
    """Unit vector from the head centre into the neck, and the bright fraction along it."""
    from scipy.ndimage import map_coordinates

    grid = Grid.of(image)
    n = 600
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)
    radii = np.linspace(R + 7.0, max(1.7 * R, R + 12.0), 12)
    pts = centre + dirs[:, None, :] * radii[None, :, None]
    idx = grid.to_index(pts.reshape(-1, 3))
    arr = sitk.GetArrayViewFromImage(image)
    vals = map_coordinates(arr, idx[:, ::-1].T, order=1, mode="constant", cval=np.nan).reshape(n, -1) / fat
    frac = np.nanmean(vals > 0.6, axis=1)
    frac = np.nan_to_num(frac)
    inferior = dirs[:, 2] < -0.2           # LPS +z is superior; the neck runs inferiorly
    w = np.where(inferior, np.clip(frac - 0.5, 0, None), 0.0) ** 2
    if w.sum() <= 0:
        return None, 0.0
    axis = (w[:, None] * dirs).sum(0)
    axis /= np.linalg.norm(axis)
    near = dirs @ axis > math.cos(math.radians(15))
    return axis, float(frac[near].mean())


def fit_head(image: sitk.Image, candidate_mm: np.ndarray, *, fat: float | None = None,
             junction_fraction: float = JUNCTION_FRACTION) -> HeadFit:
    """Fit the femoral head around a candidate centre (physical mm); raises NoFemoralHeadError.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> fit = fit_head(scan.image, scan.truth.head_centre_mm + 3.0)
    >>> float(np.linalg.norm(fit.centre_mm - scan.truth.head_centre_mm)) < 0.5
    True
    """
    if fat is None:
        fat = fat_level(sitk.GetArrayViewFromImage(image))
    centre = np.asarray(candidate_mm, float)
    half = RADIUS_RANGE_MM[1] + 12.0
    rays = _Rays(image, centre, half, fat)
    # local fat level: bright part of the ball around the candidate
    prof, h, _ = rays.profiles(centre, 3.0)
    inner_vals = prof[..., : int(14.0 / RAY_STEP_MM)]
    inner_vals = inner_vals[np.isfinite(inner_vals)]
    if inner_vals.size == 0:
        raise NoFemoralHeadError("the candidate head lies outside the image")
    local = float(np.percentile(inner_vals, 80))
    if local > 0.5:      # rescale so that the local marrow reads 1 (bias field, fat vs marrow)
        rays.array /= np.float32(local)
        fat *= local
    prof, h, _ = rays.profiles(centre, 3.0)
    radii = _median_profile_radius(prof, h)
    if radii is None or not (RADIUS_RANGE_MM[0] - 3 <= radii[0] <= RADIUS_RANGE_MM[1] + 3):
        raise NoFemoralHeadError("no spherical bone surface (femoral head) was found in the image")
    R, r_in = radii
    n_out = n_in = n_rays = 0
    for _ in range(4):
        p_out, p_in, n_rays, prof, h = _edges(rays, centre, R, r_in)
        fit_in = _fit_sphere(p_in) if len(p_in) >= 30 else None
        fit_out = _fit_sphere(p_out) if len(p_out) >= 30 else None
        if fit_out is None:
            raise NoFemoralHeadError("no spherical bone surface (femoral head) was found in the image")
        n_out = int(fit_out[2].sum())
        n_in = int(fit_in[2].sum()) if fit_in is not None else 0
        use_inner = fit_in is not None and n_in >= 0.3 * n_rays and abs(fit_in[1] - fit_out[1]) < 6
        new_centre = fit_in[0] if use_inner else fit_out[0]
        # head radius: outer surface points, distance from the chosen centre (robust median)
        d_out = np.linalg.norm(p_out - new_centre, axis=1)
        good = np.abs(d_out - fit_out[1]) < 2.0
        R_new = float(np.median(d_out[good])) if good.any() else fit_out[1]
        r_in = float(np.median(np.linalg.norm(p_in[fit_in[2]] - new_centre, axis=1))) if use_inner else R_new - 2.0
        moved = float(np.linalg.norm(new_centre - centre))
        centre, R = new_centre, R_new
        if moved < 0.05:
            break
    quality = {"outer_fraction": n_out / max(n_rays, 1), "inner_fraction": n_in / max(n_rays, 1),
               "radius_mm": R, "plate_mm": R - r_in}
    if not (RADIUS_RANGE_MM[0] <= R <= RADIUS_RANGE_MM[1]):
        raise NoFemoralHeadError(f"the best spherical surface has radius {R:.1f} mm, outside the "
                                 f"femoral-head range {RADIUS_RANGE_MM[0]:.0f}–{RADIUS_RANGE_MM[1]:.0f} mm")
    if quality["outer_fraction"] < 0.4 or not (0.3 <= R - r_in <= 5.0):
        raise NoFemoralHeadError("no femoral head: no spherical bone surface with a subchondral plate "
                                 f"(surface found on {100 * quality['outer_fraction']:.0f} % of rays)")
    axis, neck_frac = _neck_axis(image, fat, centre, R)
    quality["neck_bright_fraction"] = neck_frac
    if axis is None or neck_frac < 0.5:
        raise NoFemoralHeadError("no femoral head: a spherical surface was found but no femoral neck leaves it")
    side = "right" if axis[0] < 0 else "left"     # the neck runs laterally; LPS +x is patient left
    return HeadFit(centre, R, r_in, axis, junction_fraction * R, side, fat, quality)


def find_heads(image: sitk.Image, *, seed_mm=None, junction_fraction: float = JUNCTION_FRACTION) -> list[HeadFit]:
    """Every femoral head in the image (at most one per side), best first.

    Raises :class:`NoFemoralHeadError` when there is none.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    >>> sorted(f.side for f in find_heads(scan.image))
    ['left', 'right']
    """
    if image.GetDimension() != 3:
        raise InputError(f"segmentation needs a 3D image, got {image.GetDimension()}D")
    fat = fat_level(sitk.GetArrayViewFromImage(image))
    fits: list[HeadFit] = []
    reasons = []
    for cand in _candidates(image, fat, seed_mm):
        if any(np.linalg.norm(cand - f.centre_mm) < 40 for f in fits):
            continue
        try:
            fit = fit_head(image, cand, fat=fat, junction_fraction=junction_fraction)
        except NoFemoralHeadError as exc:
            reasons.append(str(exc))
            continue
        if any(np.linalg.norm(fit.centre_mm - f.centre_mm) < 40 for f in fits):
            continue
        fits.append(fit)
    best: dict[str, HeadFit] = {}
    for f in fits:   # candidates come best first
        best.setdefault(f.side, f)
    if not best:
        why = reasons[0] if reasons else "no bright spherical structure"
        raise NoFemoralHeadError(f"no femoral head found in the image ({why}); is this a hip MRI? "
                                 "Give --seed-mm at the head centre if the hip is there")
    return sorted(best.values(), key=lambda f: -f.quality["outer_fraction"])
