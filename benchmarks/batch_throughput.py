"""Batch throughput on phantom studies: studies per minute and peak memory per worker, 1 vs 2 workers.

Each study is one phantom hip (``lesionvol.phantom.make_series``: baseline + 2 follow-ups,
128 x 128 x 40 voxels of 1 x 1 x 3 mm, moved between visits), written as NIfTI with its truth
head and enclosed-lesion masks.  Pipelines timed, each with 1 and then 2 workers of the embedded
LocalCluster (one thread and one ITK thread per worker), every study redone (``overwrite``):

* ``masks``            masks given, no registration (read, measure, change maps, write, QC);
* ``masks+register``   masks given, follow-ups registered to the baseline (if ``lesionvol.register``);
* ``full``             segmentation and registration (if ``lesionvol.segment`` exists).

Studies per minute count the compute phase (first submit to last result); the wall time with
the cluster's start is reported too.  Peak memory is each worker process's peak RSS.  Each
setting runs ``--repeat`` times and the fastest run is kept (all are listed): the machines
this runs on are shared, and other jobs' load shows as a study's wall time exceeding its CPU
time (``study_s_median`` vs ``study_cpu_s_median``) and in the 1-minute load average.

Run::

    python benchmarks/batch_throughput.py [--studies 16] [--work /tmp/lesionvol-bench]
        [--pipelines masks masks+register full] [--out benchmarks/results/batch_throughput.txt]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk


def make_cohort(work: Path, n: int) -> Path:
    """Write ``n`` phantom studies and their manifest (cached in ``work``).

    ``manifest_<n>.csv`` gives the truth masks; ``manifest_<n>_images.csv`` only the images.
    """
    from lesionvol.phantom import make_series

    manifest = work / f"manifest_{n}.csv"
    if manifest.exists():
        _images_only(manifest)
        return manifest
    lines = ["subject,side,timepoint,days,image,lesion_mask,head_mask"]
    truth = []
    for i in range(n):
        subject = f"PH{i:03d}"
        series = make_series(seed=1000 + i, n_followups=2, lesion_pct_head=8 + 2 * (i % 8))
        for k, (scan, days) in enumerate(zip(series.scans, series.days)):
            folder = work / subject / f"v{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, image in (("image", scan.image), ("lesion", scan.lesion_enclosed_mask), ("head", scan.head_mask)):
                sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
            lines.append(f"{subject},right,v{k},{days:g},{subject}/v{k}/image.nii.gz,"
                         f"{subject}/v{k}/lesion.nii.gz,{subject}/v{k}/head.nii.gz")
            truth.append({"subject": subject, "timepoint": f"v{k}", "true_lesion_ml": scan.truth.lesion_enclosed_ml,
                          "true_head_ml": scan.truth.head_volume_ml})
        print(f"  phantom {i + 1}/{n}", file=sys.stderr, flush=True)
    pd.DataFrame(truth).to_csv(work / f"truth_{n}.csv", index=False)
    tmp = manifest.with_suffix(".partial")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(manifest)
    _images_only(manifest)
    return manifest


def _images_only(manifest: Path) -> Path:
    table = pd.read_csv(manifest, dtype=str).drop(columns=["lesion_mask", "head_mask"])
    path = manifest.with_name(manifest.stem + "_images.csv")
    table.to_csv(path, index=False)
    return path


def run(manifest: Path, out: Path, workers: int, pipeline: str) -> dict:
    from lesionvol.batch import run_batch
    from lesionvol.inputs import AnalysisOptions

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    summary = run_batch(manifest, out, AnalysisOptions(register=pipeline != "masks"), workers=workers,
                        overwrite=True, show_progress=False)
    wall = time.perf_counter() - started
    peaks = list(summary.peak_rss_mb_per_worker.values())
    done = [o for o in summary.outcomes if o.status == "done"]
    first_error = next((o.error for o in summary.outcomes if o.status == "failed"), "")
    return {"pipeline": pipeline, "workers": workers, "studies": summary.n_done, "failed": summary.n_failed,
            "studies_per_min": summary.studies_per_minute, "wall_s": round(wall, 1),
            "startup_s": summary.startup_seconds,
            "study_s_median": round(float(np.median([o.seconds for o in done])), 2) if done else None,
            "study_cpu_s_median": round(float(np.median([o.cpu_seconds for o in done])), 2) if done else None, "peak_rss_mb_per_worker": round(max(peaks), 0),
            "load_1min_before": round(load_before, 2), "first_error": first_error[:120]}


def accuracy(work: Path, out: Path, n: int) -> str:
    truth = pd.read_csv(work / f"truth_{n}.csv", dtype={"timepoint": str})
    table = pd.read_csv(out / "cohort_volumes.csv", dtype={"timepoint": str}).merge(truth, on=["subject", "timepoint"])
    lesion = 100 * (table["lesion_volume_ml"] - table["true_lesion_ml"]) / table["true_lesion_ml"]
    head = 100 * (table["head_volume_ml"] - table["true_head_ml"]) / table["true_head_ml"]
    return (f"voxel-counted truth masks vs analytic truth over {len(table)} scans: lesion error "
            f"{lesion.mean():+.2f} % (|max| {lesion.abs().max():.2f} %), head {head.mean():+.2f} % "
            f"(|max| {head.abs().max():.2f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=16)
    parser.add_argument("--work", default="/tmp/lesionvol-bench")
    parser.add_argument("--pipelines", nargs="+", default=["masks", "masks+register", "full"])
    parser.add_argument("--repeat", type=int, default=2, help="runs per setting; the fastest is kept")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "batch_throughput.txt"))
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print(f"making {args.studies} phantom studies in {work} (cached)", file=sys.stderr)
    manifest = make_cohort(work, args.studies)
    available = {"masks": True, "masks+register": importlib.util.find_spec("lesionvol.register") is not None,
                 "full": importlib.util.find_spec("lesionvol.segment") is not None
                 and importlib.util.find_spec("lesionvol.register") is not None}
    rows, notes = [], []
    for pipeline in args.pipelines:
        if not available[pipeline]:
            notes.append(f"{pipeline}: skipped (module not in this checkout)")
            continue
        for workers in (1, 2):
            print(f"{pipeline}, {workers} worker(s) ...", file=sys.stderr, flush=True)
            out = work / f"out_{pipeline}_{workers}"
            runs = []
            for _ in range(args.repeat):
                source = manifest.with_name(manifest.stem + "_images.csv") if pipeline == "full" else manifest
                runs.append(run(source, out, workers, pipeline))
                print(f"  {runs[-1]}", file=sys.stderr, flush=True)
            best = max(runs, key=lambda r: r["studies_per_min"])
            best["runs_studies_per_min"] = " ".join(f"{r['studies_per_min']:.1f}" for r in runs)
            rows.append(best)
        if pipeline == "masks":
            notes.append(accuracy(work, work / "out_masks_2", args.studies))
    text = format_results(rows, notes, args.studies)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


def format_results(rows: list[dict], notes: list[str], n_studies: int) -> str:
    """The results table, the speed-ups and the notes as text."""
    table = pd.DataFrame(rows)
    errors = [f"{r['pipeline']} ({r['workers']} workers): {r['failed']} failed, e.g. {r['first_error']}"
              for r in rows if r["failed"]]
    notes += errors
    table = table.drop(columns=["first_error"])
    lines = [
        f"lesionvol batch throughput, {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}",
        f"{n_studies} phantom studies (baseline + 2 follow-ups, 128x128x40 @ 1x1x3 mm each), "
        "embedded LocalCluster, 1 thread + 1 ITK thread per worker, every study redone",
        "",
        table.to_string(index=False),
        "",
    ]
    for pipeline, group in table.groupby("pipeline", sort=False):
        spm = dict(zip(group["workers"], group["studies_per_min"]))
        cpu = dict(zip(group["workers"], group["study_cpu_s_median"]))
        if 1 in spm and 2 in spm and spm[1] > 0:
            lines.append(f"speed-up {pipeline}: {spm[2] / spm[1]:.2f}x measured with 2 workers "
                         f"({spm[1]:.1f} -> {spm[2]:.1f} studies/min); CPU s per study {cpu[1]:.2f} -> {cpu[2]:.2f}, "
                         f"so on 2 idle cores at most {2 * cpu[1] / cpu[2]:.2f}x (not measured)")
    lines += ["", *notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
