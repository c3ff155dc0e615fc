"""Side-by-side rigid registration: lesionvol vs ITKElastix vs ANTsPy on phantom hip pairs.

The same baseline/follow-up pairs (known rigid pose, rotations up to 15°, translations up to
25 mm, different slice planes, thicknesses and obliquity) are registered by

* lesionvol  ``register_followup`` (head masks given, as ``analyze`` calls it),
* ITKElastix ``elastix_registration_method`` with its default ``rigid`` parameter map,
* ANTsPy     ``ants.registration(type_of_transform="Rigid")``,

each on the whole images as a user would call them. Only the registration call is timed
(imports, image reading and one warm-up call per tool are not). Target registration error
(TRE) is measured on a 5 mm lattice of points inside the anatomical femoral head: the
distance between T(p_baseline) and the true follow-up point, in mm.

Times depend on what else runs on the machine, and not equally for every tool (elastix
took about 2x as long under a load average of 3 on 2 cores as under 1.7, lesionvol
about 1.3-1.5x): the header line gives the load average at the end of the run; compare
tools within one run.

The peers live in their own virtual environment (they pin numpy/scipy):

    python -m venv benchmarks/.venv-peers
    benchmarks/.venv-peers/bin/pip install itk-elastix antspyx SimpleITK nibabel numpy

Run (from the repository root, in lesionvol's environment):

    python benchmarks/registration_peers.py [--pairs 6] [--peers-python benchmarks/.venv-peers/bin/python]

This file is also the peer runner (``--peer DIR`` in the peers' environment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# (baseline grid, follow-up grid) per pair; cycled when more pairs are asked for.
GRIDS = [
    (dict(shape=(96, 96, 32), spacing_mm=(1.25, 1.25, 4.0), plane="coronal"),
     dict(shape=(100, 100, 36), spacing_mm=(1.2, 1.2, 3.5), plane="axial")),
    (dict(shape=(96, 96, 32), spacing_mm=(1.25, 1.25, 4.0), plane="coronal"),
     dict(shape=(100, 100, 40), spacing_mm=(1.2, 1.2, 3.0), plane="sagittal", oblique_deg=10.0)),
    (dict(shape=(80, 80, 40), spacing_mm=(1.5, 1.5, 3.0), plane="coronal"),
     dict(shape=(80, 80, 40), spacing_mm=(1.5, 1.5, 3.0), plane="coronal")),
    (dict(shape=(96, 96, 32), spacing_mm=(1.25, 1.25, 4.0), plane="coronal"),
     dict(shape=(120, 120, 40), spacing_mm=(1.0, 1.0, 3.0), plane="coronal", oblique_deg=12.0)),
    (dict(shape=(80, 80, 40), spacing_mm=(1.5, 1.5, 3.0), plane="axial"),
     dict(shape=(96, 96, 32), spacing_mm=(1.25, 1.25, 4.0), plane="coronal", oblique_deg=8.0)),
    (dict(shape=(100, 100, 36), spacing_mm=(1.2, 1.2, 3.5), plane="sagittal"),
     dict(shape=(96, 96, 32), spacing_mm=(1.25, 1.25, 4.0), plane="coronal")),
]


def make_pairs(folder: Path, n: int) -> list[dict]:
    """Write n phantom pairs (images, head masks, corresponding head points) into folder."""
    import SimpleITK as sitk

    from lesionvol.phantom import make_series

    pairs = []
    for i in range(n):
        base, follow = GRIDS[i % len(GRIDS)]
        s = make_series(seed=100 + i, n_followups=1, max_rotation_deg=15.0, max_translation_mm=25.0,
                        followup_grids=[follow], **base)
        entry = {"name": f"pair{i}", "grids": f"{base['plane']} {base['spacing_mm']} -> "
                 f"{follow['plane']} {follow['spacing_mm']}" + (f" obl {follow['oblique_deg']:g}" if "oblique_deg" in follow else "")}
        for tag, scan in (("fixed", s.scans[0]), ("moving", s.scans[1])):
            sitk.WriteImage(scan.image, str(folder / f"pair{i}_{tag}.nii.gz"))
            sitk.WriteImage(scan.head_mask, str(folder / f"pair{i}_{tag}_head.nii.gz"))
        np.save(folder / f"pair{i}_p0.npy", s.head_points_mm(0))
        np.save(folder / f"pair{i}_p1.npy", s.head_points_mm(1))
        matrix = np.asarray(s.transforms[0].GetMatrix()).reshape(3, 3)
        entry["true_rotation_deg"] = float(np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1, 1))))
        entry["true_shift_mm"] = float(np.linalg.norm(s.head_points_mm(1).mean(0) - s.head_points_mm(0).mean(0)))
        pairs.append(entry)
    return pairs


def tre_mm(mapped: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    d = np.linalg.norm(np.asarray(mapped) - np.asarray(truth), axis=1)
    return float(d.mean()), float(d.max())


def run_lesionvol(folder: Path, pairs: list[dict]) -> list[dict]:
    import SimpleITK as sitk

    from lesionvol.register import register_followup

    def load(i):
        r = lambda tag: sitk.ReadImage(str(folder / f"pair{i}_{tag}.nii.gz"))  # noqa: E731
        return r("fixed"), r("moving"), r("fixed_head"), r("moving_head")

    out = []
    f, m, fh, mh = load(0)
    register_followup(f, m, fixed_head=fh, moving_head=mh)  # warm-up, not timed
    for i, _ in enumerate(pairs):
        f, m, fh, mh = load(i)
        t0 = time.perf_counter()
        reg = register_followup(f, m, fixed_head=fh, moving_head=mh)
        seconds = time.perf_counter() - t0
        p0 = np.load(folder / f"pair{i}_p0.npy")
        mapped = [reg.transform.TransformPoint([float(v) for v in p]) for p in p0]
        out.append({"tool": "lesionvol", "pair": i, "seconds": seconds,
                    "tre": tre_mm(mapped, np.load(folder / f"pair{i}_p1.npy"))})
    return out


# ----------------------------------------------------------------------------- peers (own venv)
def _elastix(fixed_path: str, moving_path: str):
    import itk
    import SimpleITK as sitk

    fixed = itk.imread(fixed_path, itk.F)
    moving = itk.imread(moving_path, itk.F)
    params = itk.ParameterObject.New()
    params.AddParameterMap(params.GetDefaultParameterMap("rigid"))

    def call():
        _, result = itk.elastix_registration_method(fixed, moving, parameter_object=params, log_to_console=False)
        return result

    def to_transform(result):
        m = result.GetParameterMap(0)
        p = [float(v) for v in m["TransformParameters"]]
        centre = [float(v) for v in m["CenterOfRotationPoint"]]
        t = sitk.Euler3DTransform()
        t.SetCenter(centre)
        if m.get("ComputeZYX", ("false",))[0] == "true":
            t.SetComputeZYX(True)
        t.SetRotation(*p[:3])
        t.SetTranslation(p[3:6])
        return t

    return call, to_transform


def _ants(fixed_path: str, moving_path: str):
    import ants
    import SimpleITK as sitk

    fixed, moving = ants.image_read(fixed_path), ants.image_read(moving_path)

    def call():
        return ants.registration(fixed, moving, type_of_transform="Rigid")

    def to_transform(result):
        # the forward transform resamples the moving image onto the fixed grid, so as an
        # ITK transform it maps fixed points to moving points (same convention as ours)
        return sitk.ReadTransform(result["fwdtransforms"][0])

    return call, to_transform


def peer_main(folder: Path, n: int, tools: list[str]) -> None:
    for tool in tools:
        make = {"elastix": _elastix, "ants": _ants}[tool]
        warm, _ = make(str(folder / "pair0_fixed.nii.gz"), str(folder / "pair0_moving.nii.gz"))
        warm()  # warm-up (library loading, thread pools), not timed
        for i in range(n):
            call, to_transform = make(str(folder / f"pair{i}_fixed.nii.gz"), str(folder / f"pair{i}_moving.nii.gz"))
            t0 = time.perf_counter()
            result = call()
            seconds = time.perf_counter() - t0
            t = to_transform(result)
            p0 = np.load(folder / f"pair{i}_p0.npy")
            mapped = [t.TransformPoint([float(v) for v in p]) for p in p0]
            print(json.dumps({"tool": tool, "pair": i, "seconds": seconds,
                              "tre": tre_mm(mapped, np.load(folder / f"pair{i}_p1.npy"))}), flush=True)


# ----------------------------------------------------------------------------- report
def report(pairs: list[dict], rows: list[dict]) -> str:
    tools = [t for t in ("lesionvol", "elastix", "ants") if any(r["tool"] == t for r in rows)]
    by = {(r["tool"], r["pair"]): r for r in rows}
    lines = [f"{'pair':<6} {'grids':<62} {'rot°':>5} {'shift':>6}  " +
             "  ".join(f"{t + ' s':>11} {'TRE mean/max mm':>16}" for t in tools)]
    for i, p in enumerate(pairs):
        cells = []
        for t in tools:
            r = by.get((t, i))
            cells.append(f"{r['seconds']:>11.2f} {r['tre'][0]:>7.3f} / {r['tre'][1]:<6.3f}" if r else f"{'-':>11} {'-':>16}")
        lines.append(f"{p['name']:<6} {p['grids']:<62} {p['true_rotation_deg']:>5.1f} {p['true_shift_mm']:>6.1f}  " + "  ".join(cells))
    summary = {}
    for t in tools:
        rs = [r for r in rows if r["tool"] == t]
        summary[t] = dict(seconds=float(np.mean([r["seconds"] for r in rs])),
                          tre_mean=float(np.mean([r["tre"][0] for r in rs])),
                          tre_worst=float(np.max([r["tre"][1] for r in rs])))
    lines.append("")
    lines.append(f"{'tool':<10} {'mean s/pair':>12} {'mean TRE mm':>12} {'worst TRE mm':>13}")
    for t, s in summary.items():
        lines.append(f"{t:<10} {s['seconds']:>12.3f} {s['tre_mean']:>12.3f} {s['tre_worst']:>13.3f}")
    if "lesionvol" in summary:
        ours = summary["lesionvol"]
        for t, s in summary.items():
            if t != "lesionvol":
                lines.append(f"{t} / lesionvol: time x{s['seconds'] / ours['seconds']:.2f}, "
                             f"mean TRE x{s['tre_mean'] / ours['tre_mean']:.2f}, worst TRE x{s['tre_worst'] / ours['tre_worst']:.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--peers-python", default=str(HERE / ".venv-peers" / "bin" / "python"))
    parser.add_argument("--tools", default="elastix,ants")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        peer_main(Path(args.peer), args.pairs, args.tools.split(","))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs = make_pairs(folder, args.pairs)
        rows = run_lesionvol(folder, pairs)
        if os.path.exists(args.peers_python):
            done = subprocess.run([args.peers_python, __file__, "--peer", tmp, "--pairs", str(args.pairs),
                                   "--tools", args.tools], capture_output=True, text=True)
            rows += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)
        else:
            print(f"(no peers: {args.peers_python} not found)", file=sys.stderr)
    import platform

    load = ", load average %.1f / %.1f / %.1f (1/5/15 min)" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"rigid registration, {args.pairs} phantom hip pairs, {os.cpu_count()} cores, {platform.python_version()}; "
          f"times are the registration call only (after one warm-up call per tool){load}")
    print(report(pairs, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
