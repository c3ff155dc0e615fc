"""Run lesionvol's segmenter on real public MRI other than the development scans (issue #11).

For every scan of the sources in this folder (``prostatex.py``, ``slicetracker.py``,
``totalsegmentator.py``): read it; classify its contrast as ``lesionvol analyze`` would
(``lesionvol.sequence.check_t1``); run ``lesionvol segment IMAGE --side both`` as a user would
(exit code, stderr, time); then in-process ``segment_hips``, ``segment_hip(side=left|right)`` and,
for the scans in ``SEEDS``, ``--seed-mm`` runs.  Per head: centre (LPS mm), fitted radius, head and
lesion volume (voxel count), and an overlay PNG (head blue, lesion red) through the fitted centre,
in the acquired plane and across it.

    python benchmarks/real_other/run.py [NAME ...] > /tmp/real_other.log

To measure a committed version rather than a working tree that is being edited, export it and put
it first on the path (the ``lesionvol`` command run in a subprocess inherits it)::

    mkdir /tmp/lv && git archive <commit> lesionvol | tar -x -C /tmp/lv
    PYTHONPATH=/tmp/lv python benchmarks/real_other/run.py

Writes ``/work/cache/real_other/out/<name>/`` (masks, ``result.json``) and
``/work/cache/real_other/png/``; the table in ``benchmarks/results/real_other.txt`` is written by
hand from these (with what the PNGs show).  Scans stay outside the repository.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))

import prostatex  # noqa: E402
import slicetracker  # noqa: E402
import totalsegmentator  # noqa: E402
from lesionvol.errors import InputError  # noqa: E402
from lesionvol.io import read_scan  # noqa: E402
from lesionvol.segment import NoFemoralHeadError, segment_hip, segment_hips  # noqa: E402
from lesionvol.sequence import check_t1  # noqa: E402

CACHE = Path(os.environ.get("LESIONVOL_REAL_OTHER", "/work/cache/real_other"))

#: seed points (LPS mm) placed by eye inside visible femoral heads, for ``--seed-mm`` runs (read off
#: the acquired slices: ``/work/cache/real_other/png/px0218_vibe_fa20_heads_zoom.png`` and the
#: coronal localizer); the VIBE and DCE series of ProstateX-0218 share one grid.
_VIBE_SEEDS = {"right": (-107.0, -1.0, 1.0), "left": (77.0, -1.0, 1.0)}
SEEDS = {
    "px0218_vibe_fa20": _VIBE_SEEDS, "px0218_vibe_fa10": _VIBE_SEEDS, "px0218_vibe_fa2": _VIBE_SEEDS,
    "px0218_dce_t08": _VIBE_SEEDS,
    "px0218_loc_cor": {"right": (-107.8, -15.0, -22.7), "left": (64.1, -15.0, -22.7)},
    "st_loc_cor": {"left": (100.8, -14.4, 71.1)},
    "st_t2_ax_guidance": {"right": (-87.5, -22.8, 67.7), "left": (100.0, -22.8, 67.7)},
}
OUT, PNG = CACHE / "out", CACHE / "png"


def all_scans() -> dict[str, Path]:
    scans = {}
    scans.update(totalsegmentator.scans())
    scans.update(prostatex.scans())
    scans.update(slicetracker.scans())
    return scans


def mask_stats(image: sitk.Image, head: sitk.Image, lesion: sitk.Image) -> dict:
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    h = sitk.GetArrayFromImage(head) > 0
    les = sitk.GetArrayFromImage(lesion) > 0
    out = {"head_ml": round(h.sum() * voxel_ml, 2), "lesion_ml": round(les.sum() * voxel_ml, 2)}
    if h.any():
        zyx = np.argwhere(h).mean(axis=0)
        out["head_centroid_mm"] = [round(v, 1) for v in image.TransformContinuousIndexToPhysicalPoint(
            [float(zyx[2]), float(zyx[1]), float(zyx[0])])]
        edges = {"x": (0, h.shape[2] - 1), "y": (0, h.shape[1] - 1), "z": (0, h.shape[0] - 1)}
        touch = []
        for ax, name in ((2, "x"), (1, "y"), (0, "z")):
            idx = np.nonzero(h.any(axis=tuple(a for a in range(3) if a != ax)))[0]
            if idx.min() == edges[name][0] or idx.max() == edges[name][1]:
                touch.append(name)
        out["head_touches_edge"] = "".join(touch)
    return out


def overlay_png(image: sitk.Image, hip, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = sitk.GetArrayFromImage(image).astype(float)
    h = sitk.GetArrayFromImage(hip.head) > 0
    les = sitk.GetArrayFromImage(hip.lesion) > 0
    centre = hip.centre_mm if hip.centre_mm is not None else None
    if centre is not None:
        i, j, k = image.TransformPhysicalPointToIndex([float(c) for c in centre])
    else:
        k, j, i = np.round(np.argwhere(h).mean(axis=0)).astype(int)
    k = int(np.clip(k, 0, a.shape[0] - 1)); j = int(np.clip(j, 0, a.shape[1] - 1)); i = int(np.clip(i, 0, a.shape[2] - 1))
    sx, sy, sz = image.GetSpacing()
    lo, hi = np.percentile(a, [1, 99.5])
    fig, axs = plt.subplots(1, 3, figsize=(18, 6))
    panels = [(a[k], h[k], les[k], sx / sy, f"acquired slice k={k}"),
              (a[:, j, :], h[:, j, :], les[:, j, :], sx / sz, f"across, row j={j}"),
              (a[:, :, i], h[:, :, i], les[:, :, i], sy / sz, f"across, column i={i}")]
    for ax, (img, hm, lm, aspect, sub) in zip(axs, panels):
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=1.0 / aspect, interpolation="nearest")
        if hm.any():
            ax.contour(hm, levels=[0.5], colors="deepskyblue", linewidths=1.0)
        if lm.any():
            ax.contour(lm, levels=[0.5], colors="red", linewidths=1.0)
        ax.set_title(sub, fontsize=9); ax.axis("off")
    fig.suptitle(title, fontsize=10)
    plt.tight_layout(); plt.savefig(path, dpi=60); plt.close(fig)


def hip_record(image, hip) -> dict:
    rec = {"side": hip.side, "method": hip.method}
    fit = hip.head_fit
    if fit is not None:
        rec["centre_mm"] = [round(float(c), 1) for c in fit.centre_mm]
        rec["radius_mm"] = round(float(fit.radius_mm), 1)
        rec["inner_radius_mm"] = round(float(fit.inner_radius_mm), 1)
        rec["quality"] = {k: (round(float(v), 3) if isinstance(v, (int, float, np.floating)) else str(v))
                          for k, v in fit.quality.items()}
    rec.update(mask_stats(image, hip.head, hip.lesion))
    return rec


def run_one(name: str, path: Path) -> dict:
    out_dir = OUT / name
    out_dir.mkdir(parents=True, exist_ok=True)
    PNG.mkdir(parents=True, exist_ok=True)
    import lesionvol
    res: dict = {"name": name, "path": str(path), "lesionvol": lesionvol.__file__}
    scan = read_scan(path)
    img = scan.image
    res["grid"] = {"size": list(img.GetSize()), "spacing": [round(s, 3) for s in img.GetSpacing()],
                   "direction": [round(d, 3) for d in img.GetDirection()]}
    res["tags"] = {k: str(v) for k, v in scan.dicom_tags.items()
                   if k in ("SeriesDescription", "ScanningSequence", "SequenceVariant", "ScanOptions", "RepetitionTime",
                            "EchoTime", "InversionTime", "FlipAngle", "MagneticFieldStrength")}
    try:
        res["contrast"] = list(check_t1(img, False, scan.dicom_tags))
        res["sequence_check"] = "passes"
    except InputError as exc:
        res["contrast"] = None
        res["sequence_check"] = f"refused: {exc}"

    # the command a user runs
    cmd = ["lesionvol", "segment", str(path), "--side", "both", "--out-lesion", str(out_dir / "lesion.nii.gz"),
           "--out-head", str(out_dir / "head.nii.gz")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    res["cli"] = {"exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 2),
                  "stderr": proc.stderr.strip()[-600:], "written": sorted(p.name for p in out_dir.glob("*.nii.gz"))}

    # in process: both, then each side alone
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hips = segment_hips(img)
            res["both"] = {side: hip_record(img, hip) for side, hip in hips.items()}
            for side, hip in hips.items():
                overlay_png(img, hip, PNG / f"{name}_both_{side}.png",
                            f"{name} segment_hips -> {side}: R {res['both'][side].get('radius_mm')} mm, "
                            f"head {res['both'][side]['head_ml']} mL, lesion {res['both'][side]['lesion_ml']} mL")
        except (NoFemoralHeadError, InputError) as exc:
            res["both"] = {"refused": str(exc)}
    res["both_seconds"] = round(time.perf_counter() - t0, 2)
    res["both_warnings"] = [str(w.message) for w in caught]
    for side in ("left", "right"):
        try:
            hip = segment_hip(img, side=side)
            res[side] = hip_record(img, hip)
            overlay_png(img, hip, PNG / f"{name}_{side}.png",
                        f"{name} segment_hip(side={side}) -> {hip.side}: R {res[side].get('radius_mm')} mm, "
                        f"head {res[side]['head_ml']} mL, lesion {res[side]['lesion_ml']} mL")
        except (NoFemoralHeadError, InputError) as exc:
            res[side] = {"refused": str(exc)}
    for side, seed in SEEDS.get(name, {}).items():
        cmd = ["lesionvol", "segment", str(path), "--side", side, "--seed-mm", *map(str, seed),
               "--out-lesion", str(out_dir / f"seeded_lesion_{side}.nii.gz"),
               "--out-head", str(out_dir / f"seeded_head_{side}.nii.gz")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        rec = {"seed_mm": list(seed), "exit": proc.returncode, "seconds": round(time.perf_counter() - t0, 2),
               "stderr": proc.stderr.strip()[-400:]}
        try:
            hip = segment_hip(img, side=side, seed_mm=seed)
            rec.update(hip_record(img, hip))
            overlay_png(img, hip, PNG / f"{name}_seeded_{side}.png",
                        f"{name} seed {seed} -> {hip.side}: R {rec.get('radius_mm')} mm, head {rec['head_ml']} mL, "
                        f"lesion {rec['lesion_ml']} mL")
        except (NoFemoralHeadError, InputError) as exc:
            rec["refused"] = str(exc)
        res[f"seeded_{side}"] = rec
    (out_dir / "result.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str]) -> None:
    scans = all_scans()
    names = argv or list(scans)
    for name in names:
        res = run_one(name, scans[name])
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
