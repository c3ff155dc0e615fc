"""One-hip crops of implanted real pelves: does ``find_heads`` return the head, refuse, or return something else?

Run:  python benchmarks/real_t1/implant_crops.py [--seed 2400] [--lf-pct 30 50] [--cases 1 2 ...] > out.txt

Each development scan (cases 1-15) gets the lesions ``implant.py`` draws for the same seed and LF range; then
each hip is cut to a one-hip field (``variants.crop_around``: 180 mm left to right, centred on the head lesionvol
finds without the lesion) and ``find_heads`` runs on it with no side and no seed, as on a dedicated one-hip scan.
Per crop: every head returned, its distance from the true centre (the head found without the lesion) and its
radius; a fit more than HEAD_MM from that centre is reported ``NOT-HEAD`` (a large lesion can hide a head so that
a round bone beside it, such as the greater trochanter, is fitted instead).  The last line counts crops, refusals
and non-heads.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from implant import case_rngs, implant_heads  # noqa: E402
from pelvic_project import DEV_CASES, load_case  # noqa: E402
from variants import crop_around  # noqa: E402

from lesionvol.segment import ClassicalSegmenter, NoFemoralHeadError  # noqa: E402
from lesionvol.segment.head import find_heads  # noqa: E402

#: A head returned within this distance (mm) of the true centre is the head.
HEAD_MM = 6.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, nargs="*", default=list(DEV_CASES))
    ap.add_argument("--seed", type=int, default=2400)
    ap.add_argument("--lf-pct", type=float, nargs=2, default=(30.0, 50.0), metavar=("LO", "HI"))
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    warnings.simplefilter("ignore")
    seg = ClassicalSegmenter()
    crops = refused = others = 0
    print(f"seed {args.seed}, LF {args.lf_pct[0]:g}-{args.lf_pct[1]:g} %, one-hip crops of 180 mm")
    for case in args.cases:
        rng, halo_rng = case_rngs(args.seed, case)
        image = sitk.Cast(load_case(case)[0], sitk.sitkFloat32)
        fits = {f.side: f for f in seg.heads(image)}
        heads = {side: seg.from_fit(image, f).head for side, f in fits.items()}
        implanted, plan = implant_heads(image, fits, heads, rng, halo_rng, tuple(args.lf_pct), 0.0)
        for side, truth in sorted(fits.items()):
            crops += 1
            lf, csig = plan[side][0], plan[side][3]
            try:
                got = find_heads(crop_around(implanted, float(truth.centre_mm[0])))
            except NoFemoralHeadError as exc:
                refused += 1
                print(f"{case:4d} crop-{side:5} LF {lf:4.1f} centre {csig:.2f}  refused: {str(exc)[:90]}", flush=True)
                continue
            for fit in got:
                away_mm = float(np.linalg.norm(np.asarray(fit.centre_mm) - truth.centre_mm))
                others += away_mm >= HEAD_MM
                print(f"{case:4d} crop-{side:5} LF {lf:4.1f} centre {csig:.2f}  -> {fit.side:5} {away_mm:5.1f} mm from "
                      f"the centre, R {fit.radius_mm:5.2f} mm (without the lesion {truth.radius_mm:5.2f})  "
                      + ("head" if away_mm < HEAD_MM else "NOT-HEAD"), flush=True)
    print(f"crops: {crops}, refused: {refused}, structures other than the head returned: {others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
