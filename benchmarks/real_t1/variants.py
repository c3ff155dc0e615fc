"""lesionvol's segmenter on derived copies of the real development scans: one-hip crops and moved copies.

Run:  python benchmarks/real_t1/variants.py [--cases 1 2 ...] > out.txt

The 15 development scans (``pelvic_project.py``, images_01–15; never 16–23) show both hips on one
coronal field.  Users also send fields holding one hip, and scans on other grids; the detector must
find each visible head there too and return nothing else.  Copies per scan:

* ``crop-right`` / ``crop-left``: a 180 mm wide field (left–right) centred on one labelled head,
  all slices kept: one hip in view, the other femur out of it.  Expected: exactly that head, on
  its labelled femur, with the right side; no second "head".
* ``field-right`` / ``field-left`` (copy ``hipfield``): a dedicated one-hip field, as a hip protocol
  images it: square in plane, 130–220 mm (left–right × foot–head), its centre up to 25 mm off the
  labelled head (keeping 12 mm beyond a 24 mm head inside), and 25–50 mm of slices in front of and
  behind the head; drawn at random per case and side (``--seed``).  Expected: that head only.
* ``moved-field-right`` / ``moved-field-left`` (copy ``movedfield``): the same on a follow-up copy: the scan moved
  by a random rigid motion onto another grid (``registration_stress.moved_real_copy``, seeded ``--seed`` + 40000
  + case: 4-12 deg, 4-6.5 mm slices, noise, intensity x3 on odd cases), then cut to one-hip fields of 100-160 mm
  (the label moved with it).  Expected: that head only, with its side.
* ``moved``: the whole scan resampled (linear; the label nearest-neighbour) through a known rigid
  motion (rotations 8°, −6°, 10° about the field centre, shift 6, −8, 4 mm) onto a coronal grid
  tilted by that motion, 1.0 × 1.0 mm in plane and 4.0 mm slices at other positions.  Expected:
  both heads.
* ``shaded``: the scan times a smooth receive-coil shading field, brighter towards the patient's
  right and darker towards the centre of the body (0.6–1.4 × over the field).  Expected: both heads.
* ``noisy``: Rician noise added, sigma 6 % of the scan's fat level.  Expected: both heads.
* ``coarse``: resampled (linear) to 1.5 × 1.5 mm in plane, slices kept.  Expected: both heads.
* ``contrast``: the signal raised to the power 1.4 relative to the scan's fat level (fat stays,
  muscle 0.35 -> 0.23, marrow 0.85 -> 0.80): a more heavily T1-weighted protocol.  Expected: both
  heads, no lesion.

These copies were written after the segmenter was tuned and are scored to show where it breaks,
not to tune it.

Scores are those of ``evaluate.py`` (found on the labelled femur of its side, centre distance,
Dice and volume against the label near the head, lesion volume on these normal heads), and the
contrast the image alone reads (``lesionvol.sequence.classify_contrast`` without DICOM tags, as for a
NIfTI; ``analyze`` refuses a copy read T2 or fat-suppressed).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent))
from evaluate import head_scores, label_heads  # noqa: E402
from pelvic_project import DEV_CASES, load_case  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from registration_stress import moved_real_copy  # noqa: E402

from lesionvol.measure import mask_volume_ml  # noqa: E402
from lesionvol.segment import segment_hips  # noqa: E402
from lesionvol.segment.head import fat_level, fit_size_doubt  # noqa: E402
from lesionvol.segment.lesion import SET_ASIDE_DOUBT_ML  # noqa: E402
from lesionvol.sequence import classify_contrast  # noqa: E402

CROP_WIDTH_MM = 180.0
MOVE_ANGLES_DEG = (8.0, -6.0, 10.0)
MOVE_SHIFT_MM = (6.0, -8.0, 4.0)
MOVED_SPACING_MM = (1.0, 1.0, 4.0)
SHADE_LR = 0.25                # shading exp(-SHADE_LR u + SHADE_CENTRE (1 - u² - v²)): u left-right, v foot-head, in half-fields
SHADE_CENTRE = -0.25
NOISE_OF_FAT = 0.06
COARSE_IN_PLANE_MM = 1.5
CONTRAST_POWER = 1.4
HIPFIELD_MM = (130.0, 220.0)        # square in-plane field (left-right x foot-head)
HIPFIELD_OFFSET_MM = 25.0           # its centre off the head, at most ...
HIPFIELD_KEEP_MM = 36.0             # ... keeping this much (a 24 mm head and 12 mm) inside it
HIPFIELD_SLAB_MM = (25.0, 50.0)     # slices kept in front of and behind the head
MOVEDFIELD_MM = (100.0, 160.0)      # the one-hip fields of a follow-up copy (tighter)
MOVEDFIELD_SEED = 40000             # added to --seed for the follow-up copy's motion and grid
#: The labelled head's centre for placing a field: the largest ball within this of the femur's top (within
#: LABEL_HEAD_DEPTH_MM it lies in the trochanter on one development femur).
HIPFIELD_LABEL_DEPTH_MM = 35.0
COPIES = ("crop", "hipfield", "movedfield", "moved", "shaded", "noisy", "coarse", "contrast")


def crop_around(image: sitk.Image, x_mm: float, width_mm: float = CROP_WIDTH_MM) -> sitk.Image:
    """The image cut to ``width_mm`` along the patient's left-right axis, centred on ``x_mm``."""
    return cut_box(image, np.array([x_mm, 0.0, 0.0]), np.array([width_mm / 2, 1e9, 1e9]))


def cut_box(image: sitk.Image, centre_mm: np.ndarray, half_mm: np.ndarray) -> sitk.Image:
    """The image cut to ``centre_mm`` ± ``half_mm`` along each LPS axis (a grid along the LPS axes)."""
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    size, spacing = np.asarray(image.GetSize()), np.asarray(image.GetSpacing())
    lo, hi = [0, 0, 0], [int(n) for n in size]
    for axis in range(3):
        k = int(np.argmax(np.abs(d[axis])))          # index axis running along this LPS axis
        step = spacing[k] * d[axis, k]
        ends = sorted((centre_mm[axis] + sign * half_mm[axis] - image.GetOrigin()[axis]) / step for sign in (-1, 1))
        lo[k], hi[k] = max(0, int(np.floor(ends[0]))), min(int(size[k]), int(np.ceil(ends[1])) + 1)
    return sitk.RegionOfInterest(image, [b - a for a, b in zip(lo, hi)], lo)


def hip_fields(image: sitk.Image, label: sitk.Image, seed: int, width_mm: tuple[float, float] = HIPFIELD_MM):
    """Dedicated one-hip fields cut from a pelvis scan: (side, image, label) for the right then the left hip."""
    heads = label_heads(label, HIPFIELD_LABEL_DEPTH_MM)
    rng = np.random.default_rng(seed)
    for side in ("right", "left"):
        width = rng.uniform(*width_mm)
        off = max(0.0, min(HIPFIELD_OFFSET_MM, width / 2 - HIPFIELD_KEEP_MM))
        ox, oz = rng.uniform(-off, off, 2)
        front, back = rng.uniform(*HIPFIELD_SLAB_MM, 2)
        centre = heads[side][:3] + np.array([ox, (back - front) / 2, oz])   # LPS +y is posterior
        half = np.array([width / 2, (front + back) / 2, width / 2])
        yield side, cut_box(image, centre, half), cut_box(label, centre, half)


def moved(image: sitk.Image, label: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Image and label moved by the known rigid motion onto a tilted 1 × 1 × 4 mm grid."""
    size = np.asarray(image.GetSize())
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(((size - 1) / 2).tolist()))
    motion = sitk.Euler3DTransform(centre.tolist(), *np.radians(MOVE_ANGLES_DEG), MOVE_SHIFT_MM)
    rot = np.asarray(motion.GetMatrix()).reshape(3, 3)
    direction = rot.T @ np.asarray(image.GetDirection()).reshape(3, 3)
    extent = size * np.asarray(image.GetSpacing())
    new_size = np.ceil(extent / np.asarray(MOVED_SPACING_MM)).astype(int)
    ref = sitk.Image([int(s) for s in new_size], sitk.sitkFloat32)
    ref.SetSpacing(MOVED_SPACING_MM)
    ref.SetDirection(direction.ravel().tolist())
    half = direction @ ((new_size - 1) / 2 * np.asarray(MOVED_SPACING_MM))
    ref.SetOrigin((centre - half + np.asarray(MOVE_SHIFT_MM) * 0.5).tolist())   # other slice positions
    # output point p shows the anatomy at motion(p)
    img = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), ref, motion, sitk.sitkLinear, 0.0)
    lab = sitk.Resample(label, ref, motion, sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    return img, lab


def _physical_xz(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """LPS x (left-right) and z (foot-head) in mm of every voxel, as numpy (z, y, x) arrays."""
    size = np.asarray(image.GetSize())
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    d = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    pts = idx @ d.T + np.asarray(image.GetOrigin())
    return tuple(pts[:, k].reshape(size).transpose(2, 1, 0) for k in (0, 2))


def shaded(image: sitk.Image) -> sitk.Image:
    """The scan times a smooth coil-shading field (brighter to the patient's right, darker centrally)."""
    x, z = _physical_xz(image)
    half_x = max(np.ptp(x) / 2, 1.0)
    half_z = max(np.ptp(z) / 2, 1.0)
    u, v = (x - x.mean()) / half_x, (z - z.mean()) / half_z
    field = np.exp(-SHADE_LR * u + SHADE_CENTRE * (1 - (u ** 2 + v ** 2)))   # LPS x grows to the left
    arr = sitk.GetArrayFromImage(image).astype(np.float32) * field.astype(np.float32)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(image)
    return out


def noisy(image: sitk.Image, seed: int) -> sitk.Image:
    """Rician noise added: sigma NOISE_OF_FAT × the scan's 95th percentile (about its fat level)."""
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    sigma = NOISE_OF_FAT * float(np.percentile(arr, 95))
    rng = np.random.default_rng(seed)
    out = sitk.GetImageFromArray(np.hypot(arr + rng.normal(0, sigma, arr.shape),
                                          rng.normal(0, sigma, arr.shape)).astype(np.float32))
    out.CopyInformation(image)
    return out


def coarse(image: sitk.Image, label: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Image and label resampled to COARSE_IN_PLANE_MM in plane (the two finest axes), slices kept."""
    spacing = np.asarray(image.GetSpacing())
    size = np.asarray(image.GetSize())
    new_spacing = spacing.copy()
    fine = np.argsort(spacing)[:2]
    new_spacing[fine] = COARSE_IN_PLANE_MM
    new_size = np.maximum(1, np.floor(size * spacing / new_spacing)).astype(int)
    ref = sitk.Image([int(n) for n in new_size], sitk.sitkFloat32)
    ref.SetSpacing(new_spacing.tolist())
    ref.SetDirection(image.GetDirection())
    d = np.asarray(image.GetDirection()).reshape(3, 3)
    # keep the field's centre where it was
    ref.SetOrigin((np.asarray(image.GetOrigin()) + d @ ((new_spacing - spacing) / 2)).tolist())
    img = sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, 0.0)
    lab = sitk.Resample(label, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    return img, lab


def contrast(image: sitk.Image) -> sitk.Image:
    """The signal raised to CONTRAST_POWER relative to the scan's fat level (fat unchanged)."""
    arr = sitk.GetArrayFromImage(image).astype(np.float32)
    fat = fat_level(arr)
    out = sitk.GetImageFromArray((fat * np.clip(arr / fat, 0, None) ** CONTRAST_POWER).astype(np.float32))
    out.CopyInformation(image)
    return out


def copies(image: sitk.Image, label: sitk.Image, ref: dict, kinds, seed: int, field_seed: int):
    """Each copy of one scan of the given kinds: (kind, name, image, label, its label heads, sides expected)."""
    both = ["right", "left"]
    if "crop" in kinds:
        for side in both:
            x = ref[side][0]
            yield "crop", f"crop-{side}", crop_around(image, x), crop_around(label, x), ref, [side]
    if "hipfield" in kinds:
        for side, img, lab in hip_fields(image, label, field_seed):
            yield "hipfield", f"field-{side}", img, lab, ref, [side]
    if "movedfield" in kinds:
        img, truth, _, _ = moved_real_copy(image, MOVEDFIELD_SEED + field_seed, triple=seed % 2 == 1)
        lab = sitk.Resample(label, img, truth.GetInverse(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
        heads = label_heads(lab)
        for side, fimg, flab in hip_fields(img, lab, MOVEDFIELD_SEED + field_seed, MOVEDFIELD_MM):
            yield "movedfield", f"moved-field-{side}", fimg, flab, heads, [side]
    if "moved" in kinds:
        img, lab = moved(image, label)
        yield "moved", "moved", img, lab, label_heads(lab), both
    if "shaded" in kinds:
        yield "shaded", "shaded", shaded(image), label, ref, both
    if "noisy" in kinds:
        yield "noisy", "noisy", noisy(image, seed), label, ref, both
    if "contrast" in kinds:
        yield "contrast", "contrast", contrast(image), label, ref, both
    if "coarse" in kinds:
        img, lab = coarse(image, label)
        yield "coarse", "coarse", img, lab, label_heads(lab), both


def score(name: str, case: int, image: sitk.Image, label: sitk.Image, ref: dict, expect: list[str]) -> dict:
    """Run segment_hips on one copy, print a row per expected side and per false head, with the contrast the
    image alone reads (``analyze`` refuses one read T2 or fat-suppressed)."""
    contrast = classify_contrast(image)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            segs = segment_hips(image)
        except Exception as exc:          # noqa: BLE001 - a refusal is a result here
            segs, why = {}, str(exc)
        else:
            why = ""
    out = dict(expected=len(expect), found=0, false=0, clean=0, dice=[], domes=[], pair_mm=[], doubtful=0, refit=[],
               refit_failed=0, aside=[],
               refused_contrast=contrast in ("T2", "STIR/fat-suppressed"))
    for side in sorted(set(expect) | set(segs)):
        seg = segs.get(side)
        if seg is None:
            print(f"{case:4d} {name:17} {side:5} {'no':>5}  {contrast:7} {why[:100]}")
            continue
        sc = head_scores(seg, label, ref)
        on = sc["on_head"].get(side, False) and side in expect
        lv = mask_volume_ml(seg.lesion)
        out["found"] += on
        out["false"] += not on
        if on:
            out["clean"] += lv <= 0.1
            out["dice"].append(sc["dice"])
            q = seg.head_fit.quality
            out["domes"].append(q["dome_marrow_fraction"])
            out["pair_mm"].append(abs(q.get("radius_minus_other_side_mm", np.nan)))
            out["doubtful"] += bool(fit_size_doubt(seg.head_fit))
            out["refit"].append(abs(q["refit_radius_shift_mm"]))
            out["refit_failed"] += q["refit_failed_starts"]
            out["aside"].append(mask_volume_ml(seg.masks["set_aside"]))
        print(f"{case:4d} {name:17} {side:5} {'yes' if on else 'FALSE':>5} {sc['d_ref'].get(side, np.inf):6.1f} "
              f"{sc['dice']:5.3f} {sc['vol_pct']:+6.1f} {mask_volume_ml(seg.head):7.1f} {lv:6.2f} "
              f"{seg.head_fit.quality['dome_marrow_fraction']:5.2f} "
              f"{seg.head_fit.quality.get('radius_minus_other_side_mm', np.nan):+5.2f} "
              f"{seg.head_fit.quality['refit_radius_shift_mm']:+5.2f}/{seg.head_fit.quality['refit_failed_starts']} "
              f"{contrast}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="*", default=list(DEV_CASES))
    ap.add_argument("--copies", nargs="*", choices=COPIES, default=list(COPIES))
    ap.add_argument("--seed", type=int, default=5000,
                    help="draws the one-hip fields (seed + case) and the follow-up copies of movedfield (seed + "
                         "40000 + case); hipfield 5000 and movedfield 1000 (in part) were looked at while changing the method")
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    print(f"{'case':>4} {'copy':17} {'side':5} {'found':>5} {'dC mm':>6} {'Dice':>5} {'vol%':>6} {'head mL':>7} "
          f"{'les mL':>6} {'dome':>5} {'dR mm':>5} {'refit':>7} contrast")
    totals: dict[str, dict] = {}
    for case in args.cases:
        image, label, _ = load_case(case)
        ref = label_heads(label)
        for kind, name, img, lab, heads, expect in copies(image, label, ref, args.copies, case, args.seed + case):
            totals.setdefault(kind, []).append(score(name, case, img, lab, heads, expect))
        sys.stdout.flush()
    print()
    for name, rows in totals.items():
        n = sum(r["expected"] for r in rows)
        found = sum(r["found"] for r in rows)
        dice = [d for r in rows for d in r["dice"]]
        domes = np.array([d for r in rows for d in r["domes"]])
        pair = np.array([d for r in rows for d in r["pair_mm"]])
        print(f"{name}: {found}/{n} heads found on their labelled femur, {sum(r['false'] for r in rows)} false heads; "
              f"lesion <= 0.1 mL on {sum(r['clean'] for r in rows)}/{found}; "
              f"Dice near the head median {np.median(dice) if dice else float('nan'):.3f}; head_size_doubtful on "
              f"{sum(r['doubtful'] for r in rows)} (dome marrow fraction min {np.nanmin(domes) if len(domes) else np.nan:.2f}, "
              f"the two heads' radii up to {np.nanmax(pair) if np.isfinite(pair).any() else np.nan:.2f} mm apart, "
              f"refit radius shift up to {max((r for x in rows for r in x['refit']), default=np.nan):.2f} mm, "
              f"{sum(x['refit_failed'] for x in rows)} refit starts finding no head); set aside as anatomy up to "
              f"{max((a for x in rows for a in x['aside']), default=np.nan):.2f} mL (lesion_set_aside_doubtful above "
              f"{SET_ASIDE_DOUBT_ML:g} mL: {sum(a > SET_ASIDE_DOUBT_ML for x in rows for a in x['aside'])}); "
              f"read T2 or fat-suppressed from the image alone: {sum(r['refused_contrast'] for r in rows)} of {len(rows)} copies")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
