"""lesionvol's segmenter on real 1.5 T coronal T1 pelvis scans (development cases 1–15, 30 hips).

Run:  python benchmarks/real_t1/evaluate.py [--cases 1 2 ...] [--no-single] > out.txt
(the scans are extracted to a cache outside the repository by ``pelvic_project.py``).

None of these hips has osteonecrosis, so every head should be found, lie on the labelled femur,
have an adult volume (about 35–70 mL) and read no lesion (≤ 0.1 mL).

Per hip:

* ``found`` — ``segment_hips`` returned a head for that side (a head returned on the other
  side's femur, or on no bone, is counted as a false head, not as found);
* ``inLab`` — the fitted centre lies inside the hand-labelled femur (label dilated by one pixel);
  a head counts as found when its centre is inside its own side's labelled femur and at most
  40 mm below the top of that femur (a head centre lies one radius, 19–27 mm, below it);
* ``dC`` — distance (mm) from the fitted centre to the label's own head centre: the centre of
  the largest ball inscribed in the labelled femur within 60 mm of its top (physical distances,
  so 5.2 mm slices count as 5.2 mm).  Informative only: checked visually on all 30 hips, it is
  the head centre except on case 14 left, where the coronal slices cut the head in only five
  slices and the largest ball lies in the intertrochanteric region;
* ``Dice`` — head mask vs the labelled femur, both restricted to the found head's region (its
  ball grown by 5 mm, on the head side of its head–neck cut): this scores where the head's
  surface lies, not where the neck is cut (the labels run down the shaft, they mark no cut);
* ``vol%`` — found head volume vs the labelled femur in that same region (negative: the head
  surface lies inside the labelled bone surface);
* head and lesion volume (mL, voxel count), wall time and peak memory of the call.

``single`` also runs ``segment_hip(side=left|right)`` and reports whether each side is found
(and on the labelled femur).  Memory is the rise of the process's resident set during the call,
sampled every 5 ms.  2 ITK threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).parent))
from pelvic_project import DEV_CASES, load_case  # noqa: E402

from lesionvol.errors import InputError  # noqa: E402
from lesionvol.geometry import Grid  # noqa: E402
from lesionvol.measure import mask_volume_ml  # noqa: E402
from lesionvol.segment import segment_hip, segment_hips  # noqa: E402

LABEL_HEAD_DEPTH_MM = 60.0
REGION_MARGIN_MM = 5.0
#: A head centre lies about one radius (19–27 mm) below the top of its femur.
ON_HEAD_BELOW_TOP_MM = 40.0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(fn, *args, **kw):
    """(result or exception, seconds, peak RSS rise in MB)."""
    base = _rss_mb()
    peak = [base]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn(*args, **kw)
    except InputError as exc:
        out = exc
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    peak[0] = max(peak[0], _rss_mb())
    return out, dt, peak[0] - base


def label_heads(label: sitk.Image, depth_mm: float = LABEL_HEAD_DEPTH_MM) -> dict[str, np.ndarray]:
    """Label's head centre per side (LPS mm) and the height (z, mm) of the femur's top: the
    centre is that of the largest ball inscribed in the femur within ``depth_mm`` of its top.

    The sides are split at the middle of the image's x range (the pelvis is centred in these
    fields): a femur's label can fall into several pieces, so pieces are not counted."""
    grid = Grid.of(label)
    arr = sitk.GetArrayViewFromImage(label) > 0
    idx = np.argwhere(arr)
    pts = grid.to_physical(idx[:, ::-1].astype(float))
    mid = grid.to_physical(np.array([[(arr.shape[2] - 1) / 2, (arr.shape[1] - 1) / 2, (arr.shape[0] - 1) / 2]]))[0]
    out = {}
    for side, sel in (("right", pts[:, 0] < mid[0]), ("left", pts[:, 0] >= mid[0])):   # LPS +x: patient left
        if not sel.any():
            continue
        m = np.zeros_like(arr)
        m[tuple(idx[sel].T)] = True
        lab, n = ndimage.label(m)                              # drop stray specks (< 5 % of the femur)
        sizes = ndimage.sum_labels(m, lab, np.arange(1, n + 1))
        m = np.isin(lab, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
        sel = sel & m[tuple(idx.T)]
        top = pts[sel, 2].max()                                # LPS +z is superior
        edt = ndimage.distance_transform_edt(m, sampling=grid.spacing_mm[::-1])
        near_top = sel & (pts[:, 2] > top - depth_mm)
        best = np.argmax(np.where(near_top, edt[tuple(idx.T)], -1))
        out[side] = np.r_[pts[best], top]
    return out


def head_scores(seg, label: sitk.Image, ref: dict[str, np.ndarray]) -> dict:
    fit = seg.head_fit
    grid = Grid.of(label)
    lab = sitk.GetArrayViewFromImage(label) > 0
    c = np.asarray(seg.centre_mm, float)
    ci = np.round(grid.to_index(c[None])[0]).astype(int)
    inside = all(0 <= ci[a] < lab.shape[2 - a] for a in range(3))
    dil = ndimage.binary_dilation(lab, ndimage.generate_binary_structure(3, 1)) if inside else None
    in_label = bool(inside and dil[ci[2], ci[1], ci[0]])
    d_ref = {s: float(np.linalg.norm(c - p[:3])) for s, p in ref.items()}
    # on the head: in the labelled femur of its side, and not far below the femur's top
    on_head = {s: in_label and p[3] - ON_HEAD_BELOW_TOP_MM <= c[2] <= p[3]
               and (c[0] < 0.5 * (ref["right"][0] + ref["left"][0])) == (s == "right")
               for s, p in ref.items()} if len(ref) == 2 else {}
    box = grid.box_around(c, fit.radius_mm + REGION_MARGIN_MM)
    lo, hi = box
    sl = tuple(slice(a, b) for a, b in zip(lo[::-1], hi[::-1]))
    p = grid.roi_points(lo, hi)
    d = p - c
    region = (np.linalg.norm(d, axis=-1) <= fit.radius_mm + REGION_MARGIN_MM) & (d @ fit.neck_axis <= fit.junction_mm)
    h = (sitk.GetArrayViewFromImage(seg.head)[sl] > 0) & region
    ll = lab[sl] & region
    dice = 2 * (h & ll).sum() / max(h.sum() + ll.sum(), 1)
    return dict(in_label=in_label, on_head=on_head, d_ref=d_ref, dice=float(dice),
                vol_pct=100.0 * (h.sum() / max(ll.sum(), 1) - 1.0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="*", default=list(DEV_CASES))
    ap.add_argument("--no-single", action="store_true", help="skip segment_hip(side=left/right)")
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    hdr = (f"{'case':>4} {'side':5} {'found':>5} {'inLab':>5} {'dC mm':>6} {'Dice':>5} {'vol%':>6} "
           f"{'head mL':>7} {'les mL':>6} {'single':>6}  {'s':>5} {'MB':>5}  note")
    print(hdr)
    print("-" * len(hdr))
    tot = dict(found=0, on_femur=0, false=0, single=0, plausible=0, clean=0)
    heads_ml, lesions_ml, dices, vols, times, mems, dcs = [], [], [], [], [], [], []
    for case in args.cases:
        image, label, _ = load_case(case)
        ref = label_heads(label)
        res, dt, mem = timed(segment_hips, image)
        times.append(dt)
        mems.append(mem)
        note = "" if isinstance(res, dict) else f"refused: {res}"
        segs = res if isinstance(res, dict) else {}
        single = {}
        if not args.no_single:
            for side in ("right", "left"):
                r, _, _ = timed(segment_hip, image, side=side)
                single[side] = r
        for side in ("right", "left"):
            seg = segs.get(side)
            row = f"{case:4d} {side:5}"
            s1 = single.get(side)
            s1_txt = "-" if not single else ("no" if isinstance(s1, Exception) else
                                             "yes" if head_scores(s1, label, ref)["on_head"].get(side) else "WRONG")
            tot["single"] += s1_txt == "yes"
            if seg is None:
                print(f"{row} {'no':>5} {'':>5} {'':>6} {'':>5} {'':>6} {'':>7} {'':>6} {s1_txt:>6}  "
                      f"{dt:5.2f} {mem:5.0f}  {note[:150]}")
                continue
            sc = head_scores(seg, label, ref)
            own = sc["d_ref"].get(side, np.inf)
            on = sc["on_head"].get(side, False)
            hv, lv = mask_volume_ml(seg.head), mask_volume_ml(seg.lesion)
            tot["found"] += on
            tot["false"] += not on
            tot["on_femur"] += sc["in_label"]
            if on:
                tot["plausible"] += 35 <= hv <= 70
                tot["clean"] += lv <= 0.1
                heads_ml.append(hv)
                lesions_ml.append(lv)
                dices.append(sc["dice"])
                vols.append(sc["vol_pct"])
                dcs.append(own)
            print(f"{row} {'yes' if on else 'FALSE':>5} {'yes' if sc['in_label'] else 'no':>5} {own:6.1f} "
                  f"{sc['dice']:5.3f} {sc['vol_pct']:+6.1f} {hv:7.1f} {lv:6.2f} {s1_txt:>6}  {dt:5.2f} {mem:5.0f}  "
                  f"R {seg.head_fit.radius_mm:.1f} mm")
        sys.stdout.flush()
    n = 2 * len(args.cases)
    print()
    print(f"hips: {n}")
    print(f"  heads found on their labelled femur (segment_hips): {tot['found']}/{n}; "
          f"false heads (off the labelled femur, or > 40 mm below its top): {tot['false']}")
    if not args.no_single:
        print(f"  segment_hip(side=...) found the right head: {tot['single']}/{n}")
    if heads_ml:
        print(f"  found heads with a plausible volume (35-70 mL): {tot['plausible']}/{len(heads_ml)}; "
              f"head volume median {np.median(heads_ml):.1f} mL (range {min(heads_ml):.1f}-{max(heads_ml):.1f})")
        print(f"  centre to labelled head centre: median {np.median(dcs):.1f} mm, max {max(dcs):.1f} mm")
        print(f"  head vs label near the head: Dice median {np.median(dices):.3f} (min {min(dices):.3f}); "
              f"volume vs label median {np.median(vols):+.1f} %")
        print(f"  lesion on these normal heads: <= 0.1 mL in {tot['clean']}/{len(lesions_ml)}; "
              f"median {np.median(lesions_ml):.2f} mL, max {max(lesions_ml):.2f} mL")
    print(f"  segment_hips time per scan: median {np.median(times):.2f} s, max {max(times):.2f} s; "
          f"memory rise median {np.median(mems):.0f} MB, max {max(mems):.0f} MB (2 ITK threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
