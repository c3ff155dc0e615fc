"""Lesions implanted in real femoral heads: lesionvol's lesion volume and LF on real marrow, bone and grids.

Run:  python benchmarks/real_t1/implant.py [--cases 1 2 ...] [--seed 500] > out.txt

The development scans (cases 1-15; never 16-23) hold normal heads only, so every lesion figure
elsewhere comes from phantoms.  Here a necrotic lesion is written into each real head, with its
real trabecular texture, noise, partial volume and 5.2 mm slices kept:

* where: a ball of radius ``r`` centred on the head's surface in a random direction around the
  weight-bearing dome (anterosuperior and a little lateral, +-20 deg), so that it reaches the
  articular surface as ONFH does; ``r`` is solved for a random LF of 4-35 % (``--lf-pct LO HI``) on the fitted sphere;
* what: inside the head, a demarcating band (1.5-3.5 mm inside the ball's margin) at 0.12-0.25 of
  the marrow signal, and a centre that keeps its fat signal (Mitchell class A) or drops to
  0.35-0.6 of it (intermediate); each voxel's share of band and centre is integrated on a 3 x 3 x 7
  sub-grid (partial volume), the texture is scaled with the signal and the noise lost to the
  scaling is added back (its level estimated from the head's own voxel-to-voxel differences);
* with ``--moved SEED``: the scan is first moved by a random rigid motion onto a follow-up grid
  (``registration_stress.moved_real_copy``, seeded ``SEED + case``: 4-12 deg, shifts up to 15 mm, 1.1 x the
  pixel size, 0.8-1.25 x the slice thickness at other positions, field cropped to 85 %, 2 % Rician noise), and
  everything below happens on that copy: the lesion is written on the follow-up grid, as a follow-up visit
  would image it.  With ``--moved-after`` too, the lesion is written on the scan's own grid and the implanted
  scan is moved instead: the lesion is then interpolated between the 5.2 mm slices, blurred twice across them
  (harsher than an acquisition on that grid); the truth (mL) is physical and unchanged, ``head%`` then holds
  the grid's own effect too (normal heads: median 1.8 %, ``repeat.py``);
* with ``--halo-mm W``: marrow oedema around it, W mm outside the ball within the head, at 0.45-0.65 of
  the marrow signal (drawn from a generator of its own, so a seed draws the same lesions with and without);
* truth: the lesion is the ball inside the head, up to its surface (issue #11's definition), the
  head being lesionvol's head on the scan without the lesion (Dice 0.936 against the hand labels,
  ``evaluate.py``): truth = sum of each head voxel's share of the ball x voxel volume.  The
  lesion's band and centre are not lesionvol's code: they are written here, blind to it.

Per hip: the head found on the implanted scan (or not), its volume against the scan without the
lesion, the lesion volume against truth (%), LF against truth LF (points), and the flags ``analyze``
would raise (``lesion_margin_doubtful``: ``margin oedema`` for the oedema trimmed next to the lesion, ``margin``
for a margin that reads like oedema, its band some mm inside it; ``lesion_on_thick_slices``, ``lesion_fill_doubtful``,
``lesion_band_continued``, ``lesion_extent_doubtful``, ``lesion_band_unread``, ``lesion_set_aside_doubtful``, and ``head_size_doubtful`` from the head's dome marrow
fraction, also shown, and the two heads' radii; the summary gives that fraction for the same heads without the
lesion).  Seed ``--seed + case``
draws each scan's lesions: pick one no run has used for figures the method was not tuned on, at least 15 away
from every seed used (seeds 1-24 were used one apart, so neighbouring seeds share lesion draws shifted by one case:
seed 24 case 7 drew seed 23 case 8's lesion, into another head).  ``--lf-pct`` changes only each LF, not the rest.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from pelvic_project import DEV_CASES, load_case  # noqa: E402
from registration_stress import moved_real_copy  # noqa: E402

from lesionvol.measure import mask_volume_ml  # noqa: E402
from lesionvol.segment import ClassicalSegmenter  # noqa: E402

#: Sub-samples per voxel along (x, y, z) for partial volume; z is the 5.2 mm slice axis.
SUBSAMPLES = (3, 3, 7)
#: Weight-bearing dome, in (anterior, superior, lateral) components, and the spread of directions (deg).
DOME = (0.45, 0.85, 0.25)
SPREAD_DEG = 20.0
#: Marrow oedema around the lesion (``--halo-mm``), x marrow: intermediate T1 signal.
HALO_SIGNAL = (0.45, 0.65)


def lens_fraction(r: float, R: float) -> float:
    """Volume of a ball of radius r centred on a sphere of radius R's surface, inside it, over the sphere's."""
    d = R   # distance between the centres
    v = math.pi * (R + r - d) ** 2 * (d * d + 2 * d * r - 3 * r * r + 2 * d * R + 6 * r * R - 3 * R * R) / (12 * d)
    return v / (4 / 3 * math.pi * R**3)


def radius_for(lf_pct: float, R: float) -> float:
    lo, hi = 0.1, 2 * R
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if lens_fraction(mid, R) < lf_pct / 100 else (lo, mid)
    return (lo + hi) / 2


def dome_direction(side: str, rng: np.random.Generator) -> np.ndarray:
    """A unit vector (LPS) around the weight-bearing dome of the ``side`` hip."""
    anterior, superior = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    lateral = np.array([-1.0, 0.0, 0.0]) if side == "right" else np.array([1.0, 0.0, 0.0])
    u = DOME[0] * anterior + DOME[1] * superior + DOME[2] * lateral
    u /= np.linalg.norm(u)
    while True:
        v = u + np.tan(np.radians(SPREAD_DEG)) * rng.uniform(-1, 1, 3)
        v /= np.linalg.norm(v)
        if np.degrees(np.arccos(np.clip(v @ u, -1, 1))) <= SPREAD_DEG:
            return v


def noise_sigma(values: np.ndarray, head: np.ndarray) -> float:
    """Noise level from in-plane neighbour differences inside the head (robust: MAD)."""
    d = (values[:, :, 1:] - values[:, :, :-1])[head[:, :, 1:] & head[:, :, :-1]]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def implant(image: sitk.Image, head: sitk.Image, centre: np.ndarray, radius: float, direction: np.ndarray,
            lf_pct: float, band_mm: float, band_signal: float, centre_signal: float,
            rng: np.random.Generator, halo_mm: float = 0.0, halo_signal: float = 1.0) -> tuple[sitk.Image, float]:
    """Write the lesion into ``image`` inside ``head``, with marrow oedema (``halo_signal`` x marrow) up to
    ``halo_mm`` outside it; return the new image and the true lesion volume (mL)."""
    r_ball = radius_for(lf_pct, radius)
    p = centre + radius * direction
    arr = sitk.GetArrayFromImage(image).astype(np.float64)          # z, y, x
    h = sitk.GetArrayViewFromImage(head) > 0
    sigma = noise_sigma(arr, h)
    zz, yy, xx = np.nonzero(h)
    idx = np.stack([xx, yy, zz], 1).astype(np.float64)
    sub = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in SUBSAMPLES], indexing="ij"), -1).reshape(-1, 3)
    D = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    origin = np.asarray(image.GetOrigin())
    in_ball = np.zeros(len(idx))
    in_band = np.zeros(len(idx))
    in_halo = np.zeros(len(idx))
    for s in sub:                                                    # one sub-sample offset at a time
        pts = origin + (idx + s) @ D.T
        depth = r_ball - np.linalg.norm(pts - p, axis=1)             # > 0 inside the ball
        in_ball += depth > 0
        in_band += (depth > 0) & (depth <= band_mm)
        in_halo += (depth <= 0) & (depth > -halo_mm)
    f_ball, f_band, f_halo = in_ball / len(sub), in_band / len(sub), in_halo / len(sub)
    f_centre = f_ball - f_band
    scale = 1.0 - f_band * (1.0 - band_signal) - f_centre * (1.0 - centre_signal) - f_halo * (1.0 - halo_signal)
    v = arr[zz, yy, xx]
    arr[zz, yy, xx] = v * scale + rng.normal(0.0, 1.0, len(v)) * sigma * np.sqrt(np.clip(1 - scale**2, 0, None))
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(image)
    return out, float(f_ball.sum() * np.prod(image.GetSpacing()) / 1000.0)


def implant_heads(image: sitk.Image, fits: dict, heads: dict, rng: np.random.Generator,
                  halo_rng: np.random.Generator, lf_pct: tuple[float, float],
                  halo_mm: float = 0.0) -> tuple[sitk.Image, dict]:
    """Draw a lesion for each fitted head (``fits``/``heads``: HeadFit and head mask per side, both from the scan
    without lesions) and write them all in, sides in alphabetical order; return the implanted image and, per side,
    (LF %, band mm, band signal, centre signal, true lesion mL, head mL)."""
    implanted, plan = image, {}
    for side in sorted(fits):
        f = fits[side]
        lf = float(rng.uniform(*lf_pct))
        band = float(rng.uniform(1.5, 3.5))
        bsig = float(rng.uniform(0.12, 0.25))
        csig = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.35, 0.6))
        u = dome_direction(side, rng)
        hsig = float(halo_rng.uniform(*HALO_SIGNAL)) if halo_mm else 1.0
        implanted, truth = implant(implanted, heads[side], np.asarray(f.centre_mm), f.radius_mm, u, lf,
                                   band, bsig, csig, rng, halo_mm, hsig)
        plan[side] = (lf, band, bsig, csig, truth, mask_volume_ml(heads[side]))
    return implanted, plan


def case_rngs(seed: int, case: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The generators that draw a case's lesions and, apart, its halo's signal (the same lesions with and without)."""
    return np.random.default_rng(seed + case), np.random.default_rng([seed + case, 1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="*", default=list(DEV_CASES))
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--lf-pct", type=float, nargs=2, default=(4.0, 35.0), metavar=("LO", "HI"),
                    help="draw each lesion's LF (%% of the head) uniformly in [LO, HI] (default 4 35)")
    ap.add_argument("--halo-mm", type=float, default=0.0,
                    help="marrow oedema this thick around each lesion, in the head (0.45-0.65 of marrow)")
    ap.add_argument("--moved", type=int, default=None, metavar="SEED",
                    help="move each scan onto a follow-up grid (seeded SEED + case) and write the lesion there")
    ap.add_argument("--moved-after", action="store_true",
                    help="with --moved: write the lesion on the scan's own grid, then move the implanted scan")
    args = ap.parse_args(argv)
    from lesionvol.segment.lesion import LESION_FILL_MIN, SET_ASIDE_DOUBT_ML, lesion_fill_ratio
    from lesionvol.segment.head import DOME_MARROW_MIN, HEAD_PAIR_RADIUS_MAX_MM, fit_size_doubt, head_size_doubt
    from lesionvol.study import (MAX_BAND_CONTINUED_FRACTION, MAX_BAND_SPHERE_MARROW_FRACTION, MAX_BAND_UNREAD_FRACTION,
                                 MAX_MARGIN_OEDEMA_FRACTION, thick_slice_reason)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    warnings.simplefilter("ignore")
    seg = ClassicalSegmenter()
    print(f"seed {args.seed}, cases {args.cases}, LF {args.lf_pct[0]:g}-{args.lf_pct[1]:g} %"
          + (f", oedema halo {args.halo_mm:g} mm" if args.halo_mm else "")
          + (f", on copies moved onto a follow-up grid (seed {args.moved} + case)" if args.moved is not None else "")
          + (", the lesion written before the move" if args.moved is not None and args.moved_after else ""))
    print(f"{'case':>4} {'side':5} {'LF%':>5} {'band':>4} {'bsig':>4} {'csig':>4} {'truth':>6} {'got':>6} {'err%':>6} "
          f"{'LFtrue':>6} {'LFgot':>6} {'dLF':>5} {'head%':>6} {'fill':>4} {'dome':>4}  flags")
    errs, dlfs, heads, missed, flagged_big, heads_flagged, normal_domes, normal_doubts = [], [], [], 0, [], [], [], []
    t0 = time.perf_counter()
    for case in args.cases:
        rng, halo_rng = case_rngs(args.seed, case)
        image = sitk.Cast(load_case(case)[0], sitk.sitkFloat32)
        if args.moved is not None and not args.moved_after:
            image = moved_real_copy(image, args.moved + case, triple=False)[0]
        fits = {f.side: f for f in seg.heads(image)}
        base = {side: seg.from_fit(image, f) for side, f in fits.items()}
        normal_domes += [f.quality["dome_marrow_fraction"] for f in fits.values()]
        normal_doubts += [bool(fit_size_doubt(f)) for f in fits.values()]
        implanted, plan = implant_heads(image, fits, {side: s.head for side, s in base.items()}, rng, halo_rng,
                                        args.lf_pct, args.halo_mm)
        if args.moved is not None and args.moved_after:
            implanted = moved_real_copy(implanted, args.moved + case, triple=False)[0]
        try:
            got = {f.side: (f, seg.from_fit(implanted, f)) for f in seg.heads(implanted)}
        except Exception as exc:  # noqa: BLE001 - a refusal is a result here
            got, refusal = {}, str(exc)
        else:
            refusal = ""
        for side, (lf, band, bsig, csig, truth, head0) in sorted(plan.items()):
            head_true = head0
            lf_true = 100 * truth / head_true
            if side not in got:
                missed += 1
                print(f"{case:4d} {side:5} {lf:5.1f} {band:4.1f} {bsig:4.2f} {csig:4.2f} {truth:6.2f}  head missed "
                      f"{refusal[:80]}")
                continue
            f1, s1 = got[side]
            les, head1 = mask_volume_ml(s1.lesion), mask_volume_ml(s1.head)
            err = 100 * (les / truth - 1)
            lf_got = 100 * les / head1
            oedema = mask_volume_ml(s1.masks["oedema"]) if "oedema" in s1.masks else 0.0
            fill = lesion_fill_ratio(s1.lesion, f1)
            continued = mask_volume_ml(s1.masks["band_continued"])
            left_out = mask_volume_ml(s1.masks["band_sphere_marrow"])
            aside = mask_volume_ml(s1.masks["set_aside"])
            unread = mask_volume_ml(s1.masks["band_unread"])
            dome = f1.quality["dome_marrow_fraction"]
            size_doubt = bool(fit_size_doubt(f1))
            margin = s1.lesion_margin
            flags = [r for r in (f"margin oedema {oedema:.1f} mL" if oedema > MAX_MARGIN_OEDEMA_FRACTION * les else "",
                                 f"margin {margin.signal:.2f}, band "
                                 + ("none near" if margin.band_gap_mm is None else f"{margin.band_gap_mm:.1f} mm in")
                                 if margin is not None and margin.holds_oedema(
                                     bool(thick_slice_reason(implanted)) or continued > MAX_BAND_CONTINUED_FRACTION * les)
                                 else "",
                                 thick_slice_reason(implanted),
                                 f"fills {fill:.2f}" if fill is not None and fill < LESION_FILL_MIN else "",
                                 f"continued {continued:.1f} mL" if continued > MAX_BAND_CONTINUED_FRACTION * les
                                 else "",
                                 f"left out {left_out:.1f} mL" if left_out > MAX_BAND_SPHERE_MARROW_FRACTION * les
                                 else "",
                                 f"set aside {aside:.1f} mL" if aside > SET_ASIDE_DOUBT_ML else "",
                                 f"band unread {unread:.1f} mL" if unread > MAX_BAND_UNREAD_FRACTION * les else "",
                                 ("head size" if head_size_doubt(dome, f1.quality.get("radius_minus_other_side_mm"),
                                                                 f1.radius_mm, outer_fraction=f1.quality["outer_fraction"])
                                  else "head size: fitted to the acetabular roof" if f1.quality.get("fitted_to_roof")
                                  else f"head size: moves with its start ({f1.quality['refit_radius_shift_mm']:+.2f} mm, "
                                  f"{f1.quality['refit_failed_starts']} failed)")
                                 if size_doubt else "") if r]
            errs.append(err)
            dlfs.append(lf_got - lf_true)
            heads.append(100 * (head1 / head0 - 1))
            heads_flagged.append(size_doubt)
            if abs(err) > 10:
                flagged_big.append(bool(flags))
            print(f"{case:4d} {side:5} {lf:5.1f} {band:4.1f} {bsig:4.2f} {csig:4.2f} {truth:6.2f} {les:6.2f} "
                  f"{err:+6.1f} {lf_true:6.1f} {lf_got:6.1f} {lf_got - lf_true:+5.1f} {heads[-1]:+6.1f} "
                  f"{'-' if fill is None else f'{fill:.2f}':>4} {dome:4.2f}  "
                  f"{'; '.join(flags)}")
        sys.stdout.flush()
    a, d = np.abs(errs), np.abs(dlfs)
    print()
    print(f"hips: {len(errs) + missed}, head missed on the implanted scan: {missed}; {time.perf_counter() - t0:.0f} s")
    if errs:
        print(f"  lesion volume error |%|: median {np.median(a):.1f}, 90th percentile {np.percentile(a, 90):.1f}, "
              f"max {a.max():.1f}; signed median {np.median(errs):+.1f}; over 10 %: {(a > 10).sum()} "
              f"(flagged {sum(flagged_big)})")
        print(f"  LF error |points|: median {np.median(d):.2f}, max {d.max():.2f}; over 1 point: {(d > 1).sum()}")
        print(f"  head volume change with the lesion in it: median {np.median(heads):+.1f} %, "
              f"range {min(heads):+.1f} to {max(heads):+.1f} %")
        print(f"  the same heads without the lesion: dome marrow fraction median {np.nanmedian(normal_domes):.2f}, "
              f"min {np.nanmin(normal_domes):.2f}; flagged {(np.asarray(normal_domes) < DOME_MARROW_MIN).sum()} "
              f"of {len(normal_domes)}; head size flagged (any reason) {sum(normal_doubts)}")
        hd, fl = np.abs(heads), np.asarray(heads_flagged)
        print(f"  head size flag (dome marrow fraction < {DOME_MARROW_MIN:g}, the two heads' radii more than "
              f"{HEAD_PAIR_RADIUS_MAX_MM:g} mm apart, a radius outside an adult's, a fit that moves with its start, "
              "or a bone surface seen on too few rays): "
              f"{fl.sum()} heads; head change over 5 %: "
              f"{(hd > 5).sum()} (flagged {(fl & (hd > 5)).sum()}), over 10 %: {(hd > 10).sum()} "
              f"(flagged {(fl & (hd > 10)).sum()}); flagged heads within 5 %: {(fl & (hd <= 5)).sum()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
