"""Accuracy of lesionvol's built-in segmentation on a seeded phantom suite, against analytic truth.

Run:  python benchmarks/segmentation_accuracy.py [--quick] > benchmarks/results/segmentation_accuracy.txt

Cases (all from :mod:`lesionvol.phantom`, seeded, so every run is identical):

* random realistic series (``random_series``): head Ø 38–54 mm, lesion 0.4–42 mL, fat-bright
  centre in 71 %, in-plane 0.4–1.0 mm, slices 0.8–4 mm, coronal/axial/sagittal, oblique ≤ 15°,
  SNR 10–40, bias ≤ 25 %, healed follow-ups; baseline and one follow-up each;
* both-hip pelvis fields (each hip scored), band-only (fat-bright centre) lesions at SNR 10 with
  ±25 % bias and 4 mm oblique slices, healed heads, a tiny and a very large lesion.

Per case: head Dice (anatomical head vs the voxel-centre truth mask) and volume error against the
analytic head volume; enclosed-lesion Dice and volume error against the analytic lesion volume;
LF (lesion % of head) error in percentage points; the dark (low-signal) lesion as well.
Finally nibabel's real brain T1 (no femoral head) must be refused.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from lesionvol.measure import mask_volume_ml
from lesionvol.phantom import (LesionSpec, VisitSpec, lesion_for_fraction, make_series, make_visit,
                               random_series)
from lesionvol.segment import NoFemoralHeadError, segment_hip, segment_hips


@dataclass
class Case:
    name: str
    scan: object          # PhantomScan
    side: str             # hip to score


def _visit(name, seed, *, R=23.0, pct=None, bright=False, side="right", lesions=None, **grid):
    if lesions is None:
        lesions = () if pct is None else (lesion_for_fraction(R, pct, side="right" if side == "both" else side,
                                                              bright_centre=bright),)
    spec = VisitSpec(lesions=lesions, **grid)
    return make_visit(spec, seed=seed, side=side, head_radius_mm=R)


def cases(quick: bool = False):
    """Yield the suite's cases (lazily: each phantom is made when needed)."""
    n_random = 3 if quick else 7
    for seed in range(n_random):
        s = random_series(100 + seed, n_followups=1)
        for i, scan in enumerate(s.scans):
            yield Case(f"random{100 + seed}-{'base' if i == 0 else 'fu'}", scan, scan.truth.side)
    both = make_series(7, n_followups=1, side="both", bright_centre=False, residual_fractions=[0.4],
                       shape=(300, 160, 40), spacing_mm=(0.9, 0.9, 3.0))
    for i, scan in enumerate(both.scans):
        for side in ("right", "left"):
            yield Case(f"both-hips-{'base' if i == 0 else 'fu'}-{side}", scan, side)
    band = dict(shape=(256, 256, 30), spacing_mm=(0.5, 0.5, 4.0), snr=10.0, bias_amplitude=0.25,
                oblique_deg=12.0)
    yield Case("band-only-25%-snr10-4mm", _visit("b1", 11, pct=25.0, bright=True, **band), "right")
    yield Case("band-only-8%-snr10-4mm-R20", _visit("b2", 12, R=20.0, pct=8.0, bright=True, side="left",
                                                    rotation_deg=(6.0, -8.0, 5.0), **band), "left")
    yield Case("healed-snr10-bias25", _visit("h1", 13, snr=10.0, bias_amplitude=0.25, spacing_mm=(0.7, 0.7, 3.0),
                                             shape=(183, 183, 40), plane="axial", oblique_deg=10.0), "right")
    yield Case("tiny-0.5mL-0.8mm-iso", _visit("t1", 14, pct=1.1, shape=(150, 150, 150), spacing_mm=(0.8, 0.8, 0.8),
                                              snr=20.0), "right")
    yield Case("large-40%-sagittal", _visit("l1", 15, R=26.0, pct=40.0, plane="sagittal", shape=(160, 160, 40),
                                            spacing_mm=(0.8, 0.8, 3.0), snr=15.0, bias_amplitude=0.2), "right")
    yield Case("two-components", _visit("c2", 16, lesions=(lesion_for_fraction(23.0, 9.0),
                                                          LesionSpec((8.0, 12.0, 17.0), 7.0)),
                                        shape=(160, 160, 48), spacing_mm=(0.8, 0.8, 2.5)), "right")


def dice(a: sitk.Image, b: sitk.Image) -> float:
    x, y = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    total = int(x.sum()) + int(y.sum())
    return 2.0 * int((x & y).sum()) / total if total else 1.0


def side_mask(mask: sitk.Image, scan, side: str) -> sitk.Image:
    """The truth mask restricted to one hip of a both-hips field (voxels nearer its head centre)."""
    if len(scan.truths) == 1:
        return mask
    other = [s for s in scan.truths if s != side][0]
    c, o = scan.truths[side].head_centre_mm, scan.truths[other].head_centre_mm
    arr = sitk.GetArrayFromImage(mask)
    idx = np.argwhere(arr > 0)
    if len(idx):
        m = np.asarray(mask.GetDirection()).reshape(3, 3) @ np.diag(mask.GetSpacing())
        pts = idx[:, ::-1] @ m.T + np.asarray(mask.GetOrigin())
        far = np.linalg.norm(pts - c, axis=1) > np.linalg.norm(pts - o, axis=1)
        arr[tuple(idx[far].T)] = 0
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(mask)
    return out


def pct(a: float, b: float) -> float:
    return 100.0 * (a / b - 1.0) if b else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer random cases")
    args = ap.parse_args(argv)
    rows = []
    hdr = (f"{'case':32} {'grid (mm)':>17} {'pl':>3} {'SNR':>4}  {'headDice':>8} {'head%':>6}  "
           f"{'lesion mL':>9} {'Dice':>6} {'vol%':>6} {'LFpp':>6}  {'dark mL':>7} {'Dice':>6} {'vol%':>6} {'s':>5}")
    print(hdr)
    print("-" * len(hdr))
    for case in cases(args.quick):
        scan, t = case.scan, case.scan.truths[case.side]
        t0 = time.perf_counter()
        if len(scan.truths) > 1:
            seg = segment_hips(scan.image)[case.side]
        else:
            seg = segment_hip(scan.image)
        dt = time.perf_counter() - t0
        dark_seg = seg.masks["lesion_dark"]
        head_v, les_v, dark_v = mask_volume_ml(seg.head), mask_volume_ml(seg.lesion), mask_volume_ml(dark_seg)
        truth_head = side_mask(scan.head_mask, scan, case.side)
        truth_les = side_mask(scan.lesion_enclosed_mask, scan, case.side)
        truth_dark = side_mask(scan.lesion_dark_mask, scan, case.side)
        healed = t.lesion_enclosed_ml == 0
        r = dict(case=case.name, side_ok=seg.side == case.side, head_dice=dice(seg.head, truth_head),
                 head_err=pct(head_v, t.head_volume_ml), les_true=t.lesion_enclosed_ml, les_v=les_v,
                 les_dice=np.nan if healed else dice(seg.lesion, truth_les),
                 les_err=np.nan if healed else pct(les_v, t.lesion_enclosed_ml),
                 lf_err=100 * les_v / head_v - t.lesion_pct_head,
                 dark_true=t.lesion_dark_ml, dark_dice=np.nan if healed else dice(dark_seg, truth_dark),
                 dark_err=np.nan if healed else pct(dark_v, t.lesion_dark_ml), seconds=dt)
        rows.append(r)
        sp = scan.image.GetSpacing()
        les_txt = (f"{les_v:5.2f}/{t.lesion_enclosed_ml:<5.2f}"[:9] if not healed else f"{les_v:5.2f}/0")
        print(f"{case.name + ('' if r['side_ok'] else ' SIDE!'):32} {sp[0]:5.2f}x{sp[1]:4.2f}x{sp[2]:4.2f} "
              f"{scan.visit.plane[:3]:>3} {scan.visit.snr:4.0f}  {r['head_dice']:8.3f} {r['head_err']:+6.1f}  "
              f"{les_txt:>9} {r['les_dice']:6.3f} {r['les_err']:+6.1f} {r['lf_err']:+6.2f}  "
              f"{t.lesion_dark_ml:7.2f} {r['dark_dice']:6.3f} {r['dark_err']:+6.1f} {dt:5.1f}", flush=True)
    a = {k: np.array([r[k] for r in rows], float) for k in rows[0] if k != "case"}
    les = ~np.isnan(a["les_err"])
    healed = ~les
    print()
    print(f"cases: {len(rows)} ({int(les.sum())} with a lesion, {int(healed.sum())} healed); "
          f"side correct in {int(a['side_ok'].sum())}/{len(rows)}")

    def line(name, value, target, ok):
        print(f"  {name:44} {value:>22}   target {target:12} {'reached' if ok else 'NOT reached'}")

    line("head Dice (min / median)", f"{np.min(a['head_dice']):.3f} / {np.median(a['head_dice']):.3f}",
         ">= 0.96", np.min(a["head_dice"]) >= 0.96)
    line("head volume error |%| (median / worst)",
         f"{np.median(np.abs(a['head_err'])):.2f} / {np.max(np.abs(a['head_err'])):.2f}", "(reported)", True)
    line("lesion Dice, enclosed (min / median)", f"{np.min(a['les_dice'][les]):.3f} / {np.median(a['les_dice'][les]):.3f}",
         ">= 0.90", np.min(a["les_dice"][les]) >= 0.90)
    e = np.abs(a["les_err"][les])
    line("lesion volume error |%| (median)", f"{np.median(e):.2f}", "<= 3 %", np.median(e) <= 3)
    line("lesion volume error |%| (worst)", f"{np.max(e):.2f}", "<= 10 %", np.max(e) <= 10)
    line("LF error |pp| (median / worst)", f"{np.median(np.abs(a['lf_err'])):.2f} / {np.max(np.abs(a['lf_err'])):.2f}",
         "<= 1 pp", np.max(np.abs(a["lf_err"])) <= 1)
    line("healed heads: lesion read (max mL)", f"{np.max(a['les_v'][healed]) if healed.any() else 0:.3f}",
         "0 mL", not healed.any() or np.max(a["les_v"][healed]) == 0)
    ed = np.abs(a["dark_err"][les])
    line("dark lesion Dice (min / median)", f"{np.min(a['dark_dice'][les]):.3f} / {np.median(a['dark_dice'][les]):.3f}",
         "(reported)", True)
    line("dark lesion volume error |%| (median / worst)", f"{np.median(ed):.2f} / {np.max(ed):.2f}", "(reported)", True)
    print(f"  segmentation time per scan: median {np.median(a['seconds']):.1f} s, max {np.max(a['seconds']):.1f} s")

    print("\nreal MRI without a femoral head (nibabel tests/data/anatomical.nii, brain T1, 2 mm):")
    from nibabel.testing import data_path
    brain = sitk.ReadImage(str(data_path) + "/anatomical.nii")
    try:
        seg = segment_hip(brain)
        print(f"  NOT refused: returned a {seg.side} head of {mask_volume_ml(seg.head):.1f} mL")
    except NoFemoralHeadError as exc:
        print(f"  refused ({type(exc).__name__}): {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
