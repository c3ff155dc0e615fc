"""Repeatability of lesionvol's head on real scans: the same hip segmented on its scan and on moved,
re-gridded copies of it, as a follow-up on another protocol would show it.

Run:  python benchmarks/real_t1/repeat.py [--cases 1 2 ...] [--copies 2] [--seed 10400] > out.txt

LF is lesion over head, so a head whose volume changes with the grid changes LF between visits
by the same factor.  For each development scan (cases 1-15; never 16-23) and each copy, the copy
is the scan moved by a random rigid motion onto a follow-up grid (``registration_stress.
moved_real_copy``: 4-12 deg, shifts up to 15 mm, 1.1 x the pixel size, 0.8-1.25 x the slice
thickness at other slice positions, field cropped to 85 %, 2 % Rician noise, intensity x3 on odd
cases).  Copy k of case c uses seed ``--seed + 100 k + c``: pick a seed no run has used to get
figures the method was not tuned on.

Per hip and copy, against the same hip on the scan itself (both found by ``segment_hips``):

* ``vol%`` — head volume change (copy vs scan);
* ``dC`` — distance between the two head centres, the copy's mapped back through the known motion (mm);
* ``axis`` — angle between the two neck axes, likewise (deg);
* ``Dice`` — the copy's head mask, mapped back through the known motion (nearest neighbour), against
  the scan's head mask on the scan's grid;
* ``les`` — lesion read on the copy (mL; these heads are normal, it should be <= 0.1).
"""

from __future__ import annotations

import argparse
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


def hips(segmenter: ClassicalSegmenter, image: sitk.Image) -> dict:
    """Side -> (fit, segmentation) of every head found (empty when refused)."""
    try:
        fits = segmenter.heads(image)
    except Exception:  # noqa: BLE001 - a refusal is a result here
        return {}
    return {f.side: (f, segmenter.from_fit(image, f)) for f in fits}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="*", default=list(DEV_CASES))
    ap.add_argument("--copies", type=int, default=2, help="moved copies per scan")
    ap.add_argument("--seed", type=int, default=10400)
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    warnings.simplefilter("ignore")
    segmenter = ClassicalSegmenter()
    print(f"seed {args.seed}, {args.copies} copies per scan, cases {args.cases}")
    print(f"{'case':>4} {'copy':>4} {'side':5} {'slices':>14} {'head mL':>13} {'vol%':>6} {'dC mm':>5} {'axis':>5} "
          f"{'Dice':>5} {'les':>5}")
    changes, missing, found, lesions, dices, centres, axes = [], 0, 0, [], [], [], []
    t0 = time.perf_counter()
    for case in args.cases:
        image, _, _ = load_case(case)
        image = sitk.Cast(image, sitk.sitkFloat32)
        ref = hips(segmenter, image)
        for k in range(args.copies):
            copy, truth, _, _ = moved_real_copy(image, args.seed + 100 * k + case, triple=case % 2 == 1)
            back = truth.GetInverse()               # copy points -> scan points
            rot = np.asarray(back.GetMatrix()).reshape(3, 3)
            got = hips(segmenter, copy)
            slices = f"{image.GetSpacing()[2]:.1f} > {copy.GetSpacing()[2]:.1f}"
            for side, (fit0, seg0) in sorted(ref.items()):
                if side not in got:
                    missing += 1
                    print(f"{case:4d} {k:4d} {side:5} {slices:>14} {'missing':>13}")
                    continue
                fit1, seg1 = got[side]
                found += 1
                v0, v1 = mask_volume_ml(seg0.head), mask_volume_ml(seg1.head)
                c1 = np.asarray(back.TransformPoint([float(v) for v in fit1.centre_mm]))
                angle = np.degrees(np.arccos(np.clip(float((rot @ fit1.neck_axis) @ fit0.neck_axis), -1, 1)))
                mapped = sitk.Resample(seg1.head, seg0.head, truth, sitk.sitkNearestNeighbor, 0)
                d = dice(sitk.GetArrayViewFromImage(mapped) > 0, sitk.GetArrayViewFromImage(seg0.head) > 0)
                les = mask_volume_ml(seg1.lesion)
                changes.append(100 * (v1 / v0 - 1))
                centres.append(float(np.linalg.norm(c1 - fit0.centre_mm)))
                axes.append(angle)
                dices.append(d)
                lesions.append(les)
                print(f"{case:4d} {k:4d} {side:5} {slices:>14} {v0:6.1f}>{v1:6.1f} {changes[-1]:+6.1f} "
                      f"{centres[-1]:5.1f} {angle:5.1f} {d:5.3f} {les:5.2f}")
            for side in sorted(set(got) - set(ref)):
                print(f"{case:4d} {k:4d} {side:5} {slices:>14} {'extra head on the copy':>13}")
        sys.stdout.flush()
    a = np.abs(np.asarray(changes))
    print()
    print(f"hips compared: {found} (missing on the copy: {missing}); {time.perf_counter() - t0:.0f} s")
    if found:
        print(f"  head volume change |%|: median {np.median(a):.1f}, 90th percentile {np.percentile(a, 90):.1f}, "
              f"max {a.max():.1f}; over 5 %: {(a > 5).sum()}, over 10 %: {(a > 10).sum()}")
        print(f"  head centres apart: median {np.median(centres):.2f} mm, max {max(centres):.2f} mm; neck axes apart: "
              f"median {np.median(axes):.1f} deg, max {max(axes):.1f} deg")
        print(f"  head Dice copy vs scan: median {np.median(dices):.3f}, min {min(dices):.3f}; lesion on the copies "
              f"<= 0.1 mL: {sum(v <= 0.1 for v in lesions)}/{found} (max {max(lesions):.2f} mL)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
