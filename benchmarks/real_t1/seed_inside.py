"""A reader's seed point anywhere inside a real femoral head: does lesionvol find that head from it?

Run:  python benchmarks/real_t1/seed_inside.py [--per-head 3] [--rng 44] [--implant-seed S --lf-pct 30 50] > out.txt

Issue #11: "a seed point inside a visible head must find it".  A reader clicks somewhere in the head, rarely at
its centre.  For each head of the development scans (cases 1-15; never 16-23), the reference is the head
lesionvol finds there without a seed; ``--per-head`` seed points are drawn inside it, in a uniformly random
direction from its centre at 0.2-0.75 of its radius (``--rng``), and ``find_heads(image, seed_mm=point)`` is run
from each.  A seed finds the head when the head returned nearest the point is on the same side, its centre within
3 mm of the reference's and its radius within 1 mm.

With ``--implant-seed S`` the heads first get the lesions ``implant.py --seed S --lf-pct LO HI`` writes into them
(the same draw), and the reference stays the head found on the scan without them; ``unseeded`` then says whether
the head is found without a seed on the implanted scan (``ok``: within the same limits; ``off``: found elsewhere
or another size; ``missed``).  The seed points are drawn after the lesions, so the lesions do not depend on them.
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
from implant import implant_heads  # noqa: E402
from pelvic_project import DEV_CASES, load_case  # noqa: E402

from lesionvol.segment import ClassicalSegmenter  # noqa: E402
from lesionvol.segment.head import HeadFit, NoFemoralHeadError, find_heads  # noqa: E402

#: A head found from a seed is the reference head when its centre and radius lie this close (mm).
SAME_CENTRE_MM = 3.0
SAME_RADIUS_MM = 1.0
#: Seed points lie at this fraction of the radius from the centre.
SEED_DEPTH = (0.2, 0.75)


def same_head(fit: HeadFit | None, ref: HeadFit) -> bool:
    """Whether ``fit`` is ``ref``'s head: same side, centre within SAME_CENTRE_MM, radius within SAME_RADIUS_MM."""
    return (fit is not None and fit.side == ref.side
            and float(np.linalg.norm(fit.centre_mm - ref.centre_mm)) < SAME_CENTRE_MM
            and abs(fit.radius_mm - ref.radius_mm) < SAME_RADIUS_MM)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="*", default=list(DEV_CASES))
    ap.add_argument("--per-head", type=int, default=3, help="seed points per head (default 3)")
    ap.add_argument("--rng", type=int, default=44, help="seed of the seed points' draw (default 44)")
    ap.add_argument("--implant-seed", type=int, default=None, help="write implant.py's lesions of this seed first")
    ap.add_argument("--lf-pct", type=float, nargs=2, default=(4.0, 35.0), metavar=("LO", "HI"))
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    warnings.simplefilter("ignore")
    seg = ClassicalSegmenter()
    points = np.random.default_rng(args.rng)
    print(f"seed points: {args.per_head} per head at {SEED_DEPTH[0]:g}-{SEED_DEPTH[1]:g} R, draw {args.rng}"
          + (f"; lesions of implant.py --seed {args.implant_seed} --lf-pct {args.lf_pct[0]:g} {args.lf_pct[1]:g}"
             if args.implant_seed is not None else "; normal heads"))
    print(f"{'case':>4} {'side':5} {'LF%':>5} {'csig':>4} {'unseeded':>8}  per seed point: depth (R) -> found? "
          "centre off (mm) / radius off (mm)")
    found = tried = 0
    by_unseeded: dict[str, list[int]] = {}
    seconds = []
    for case in args.cases:
        image = sitk.Cast(load_case(case)[0], sitk.sitkFloat32)
        refs = {f.side: f for f in seg.heads(image)}
        plan: dict = {}
        if args.implant_seed is not None:
            rng = np.random.default_rng(args.implant_seed + case)
            halo_rng = np.random.default_rng([args.implant_seed + case, 1])
            heads = {side: seg.from_fit(image, f).head for side, f in refs.items()}
            image, plan = implant_heads(image, refs, heads, rng, halo_rng, args.lf_pct)
        try:
            unseeded = {f.side: f for f in find_heads(image)}
        except NoFemoralHeadError:
            unseeded = {}
        for side, ref in sorted(refs.items()):
            u0 = unseeded.get(side)
            state = "missed" if u0 is None else "ok" if same_head(u0, ref) else "off"
            cells = []
            for _ in range(args.per_head):
                u = points.normal(size=3)
                depth = float(points.uniform(*SEED_DEPTH))
                seed = ref.centre_mm + depth * ref.radius_mm * u / np.linalg.norm(u)
                t = time.perf_counter()
                try:
                    got = find_heads(image, seed_mm=seed)
                    fit = min(got, key=lambda g: float(np.linalg.norm(g.centre_mm - seed)))
                except NoFemoralHeadError:
                    fit = None
                seconds.append(time.perf_counter() - t)
                ok = same_head(fit, ref)
                found += ok
                tried += 1
                by_unseeded.setdefault(state, []).append(int(ok))
                cells.append(f"{depth:.2f} -> " + ("refused" if fit is None else
                             f"{'yes' if ok else 'NO '} {np.linalg.norm(fit.centre_mm - ref.centre_mm):4.1f} / "
                             f"{fit.radius_mm - ref.radius_mm:+5.2f}" + ("" if fit.side == side else f" ({fit.side})")))
            lf, csig = (f"{plan[side][0]:5.1f}", f"{plan[side][3]:4.2f}") if side in plan else ("    -", "   -")
            print(f"{case:4d} {side:5} {lf} {csig} {state:>8}  " + " | ".join(cells), flush=True)
    print()
    print(f"seed points that found their head: {found}/{tried}; "
          + ", ".join(f"heads {k} without a seed: {sum(v)}/{len(v)}" for k, v in sorted(by_unseeded.items())))
    print(f"find_heads with a seed point: median {np.median(seconds):.1f} s, max {max(seconds):.1f} s (2 ITK threads)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
