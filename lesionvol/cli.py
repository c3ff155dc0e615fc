"""The ``lesionvol`` command: a thin shell over the library (see ``lesionvol --help``).

Errors are one line on stderr and a non-zero exit: 2 for bad input or a refused
output folder, 1 for an internal error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lesionvol import __version__
from lesionvol.errors import LesionvolError
from lesionvol.measure import THRESHOLD_PCT


def _say(quiet: bool):
    if quiet:
        return None
    return lambda step, total, message: print(f"  [{step + 1}/{total}] {message}", file=sys.stderr, flush=True)


def _fmt(value: object, digits: int = 2) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """A readable fixed-width table of the main columns of ``volumes.csv``."""
    columns = [
        ("timepoint", "timepoint", 0), ("days", "days", 0), ("head_volume_ml", "head mL", 2),
        ("lesion_volume_ml", "lesion mL", 2), ("lesion_pct_head", "LF %", 1),
        ("residual_pct_baseline", "RF %", 1), ("regenerated_ml", "regen mL", 2),
        ("new_lesion_ml", "new mL", 2), ("threshold_flag", "vs 10 %", 0), ("steinberg_extent", "Steinberg", 0),
    ]
    cells = [[title for _, title, _ in columns]]
    for row in rows:
        cells.append([_fmt(row.get(key), digits) if digits else _fmt(row.get(key), 0) for key, _, digits in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def _analyze_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold-pct", type=float, default=THRESHOLD_PCT,
                        help="LF threshold for threshold_flag, in %% of the head (default 10)")
    parser.add_argument("--side", choices=["auto", "left", "right"], default="auto",
                        help="hip to analyse when masks are not given (default: auto); for batch folders, "
                             "the side of subjects that do not give one")
    parser.add_argument("--lesion-definition", choices=["enclosed", "dark"], default="enclosed",
                        help="segmented lesion: everything inside the band, or low-signal only")
    parser.add_argument("--no-register", action="store_true",
                        help="skip registration (change maps only for follow-ups on the baseline grid)")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")


def cmd_analyze(args: argparse.Namespace) -> int:
    from lesionvol.report import write_study
    from lesionvol.study import analyze

    images = [args.baseline, *args.followups]
    started = time.perf_counter()
    result = analyze(
        images, lesion_masks=args.lesion, head_masks=args.head, labels=args.labels, days=args.days,
        threshold_pct=args.threshold_pct, side=args.side, lesion_definition=args.lesion_definition,
        register=not args.no_register, acetabular_edge_mm=args.acetabular_edge_mm, volume_index=args.volume,
        progress=_say(args.quiet),
    )
    write_study(result, args.out, overwrite=args.overwrite)
    print(format_table(result.rows()))
    print(f"\nwrote {args.out}/volumes.csv and summary.json in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lesionvol.report import has_results, write_study
    from lesionvol.sample import SAMPLE_VISITS, sample_series_paths, sample_truth
    from lesionvol.study import analyze

    out = Path(args.out)
    marker = out / "summary.json"
    overwrite = args.overwrite or (marker.exists() and '"command": "demo"' in marker.read_text())
    if has_results(out) and not overwrite:
        raise LesionvolError(f"'{out}' holds results that are not a demo's; use --overwrite or another --out")
    truth = sample_truth()
    print(f"lesionvol {__version__} demo: right hip, baseline, 3 and 12 months (synthetic, exact truth)", file=sys.stderr)
    started = time.perf_counter()
    result = analyze(sample_series_paths(), labels=list(SAMPLE_VISITS),
                     days=truth["days"], acetabular_edge_mm=truth["landmarks_mm"][0]["acetabular_edge"],
                     progress=_say(args.quiet))
    write_study(result, out, overwrite=overwrite, extra_summary={"command": "demo"})
    seconds = time.perf_counter() - started
    rows = result.rows()
    print(format_table(rows))
    print("\nagainst the sample's analytic truth:")
    for i, row in enumerate(rows):
        true_lesion, true_head = truth["lesion_volume_ml"][i], truth["head_volume_ml"][i]
        line = (f"  {row['timepoint']:>9}: head {row['head_volume_ml']:.2f} mL (true {true_head:.2f}), "
                f"lesion {row['lesion_volume_ml']:.2f} mL (true {true_lesion:.2f}, "
                f"{100 * (row['lesion_volume_ml'] - true_lesion) / true_lesion:+.1f} %), "
                f"LF {row['lesion_pct_head']:.1f} % (true {truth['lesion_pct_head'][i]:.1f} %)")
        if i and row["regenerated_ml"] is not None:
            line += f", regenerated {row['regenerated_ml']:.2f} mL (true {truth['regenerated_ml'][i]:.2f})"
        print(line)
    print(f"\nwrote {out}/ (volumes.csv, summary.json, masks/, transforms/, qc/) in {seconds:.1f} s")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from lesionvol.io import read_mask, read_scan
    from lesionvol.measure import measure_volumes, steinberg_extent, threshold_flag

    scan = read_scan(args.image, args.volume)
    lesion = read_mask(args.lesion, scan.image)
    if args.head is not None:
        head = read_mask(args.head, scan.image)
    else:
        from lesionvol.segment import segment_hip

        head = segment_hip(scan.image, side=args.side).head
    volumes = measure_volumes(lesion, head)
    lf = volumes.lesion_pct_head
    result = {
        "head_volume_ml": volumes.head_volume_ml, "lesion_volume_ml": volumes.lesion_volume_ml,
        "lesion_pct_head": lf, "threshold_pct": args.threshold_pct,
        "threshold_flag": threshold_flag(lf, args.threshold_pct), "steinberg_extent": steinberg_extent(lf),
        "head_mesh_volume_ml": volumes.head_mesh_volume_ml, "lesion_mesh_volume_ml": volumes.lesion_mesh_volume_ml,
        "lesion_outside_head_ml": volumes.lesion_outside_head_ml,
        "head_source": "user" if args.head else "segmented", "image_sha256": scan.sha256,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>24}  {_fmt(value, 3) if isinstance(value, float) else value}")
    return 0


def _with_side(path: str, side: str) -> Path:
    """``lesion.nii.gz`` -> ``lesion_left.nii.gz``: one mask pair per hip of a pelvis field."""
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
    return path.with_name(f"{path.name[: len(path.name) - len(suffix)]}_{side}{suffix}")


def cmd_segment(args: argparse.Namespace) -> int:
    from lesionvol.io import read_scan, write_image
    from lesionvol.measure import mask_volume_ml
    from lesionvol.segment import segment_hip, segment_hips

    scan = read_scan(args.image, args.volume)
    definitions = {"lesion_definition": args.lesion_definition, "head_definition": args.head_definition}
    if args.side == "both":
        outputs = [(seg, _with_side(args.out_lesion, side), _with_side(args.out_head, side))
                   for side, seg in sorted(segment_hips(scan.image, **definitions).items())]
    else:
        seg = segment_hip(scan.image, side=args.side, seed_mm=args.seed_mm, **definitions)
        outputs = [(seg, Path(args.out_lesion), Path(args.out_head))]
    for seg, lesion_path, head_path in outputs:
        write_image(seg.lesion, lesion_path)
        write_image(seg.head, head_path)
        print(f"{seg.side} hip: head {mask_volume_ml(seg.head):.2f} mL ({seg.head_definition}), "
              f"lesion {mask_volume_ml(seg.lesion):.2f} mL ({seg.lesion_definition}) -> {lesion_path.name}, {head_path.name}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from lesionvol.io import atomic_path, read_mask, read_scan
    from lesionvol.register import register_followup

    fixed, moving = read_scan(args.fixed, args.volume), read_scan(args.moving, args.volume)
    from lesionvol.segment import segment_hip

    # the femur moves relative to the pelvis: the registration is driven by the femoral head
    fixed_head = read_mask(args.fixed_head, fixed.image) if args.fixed_head else segment_hip(fixed.image).head
    moving_head = read_mask(args.moving_head, moving.image) if args.moving_head else segment_hip(moving.image).head
    result = register_followup(fixed.image, moving.image, fixed_head=fixed_head, moving_head=moving_head,
                               affine=args.affine)
    with atomic_path(args.out) as tmp:
        sitk.WriteTransform(result.transform, str(tmp))
    for key, value in result.qc.items():
        print(f"{key:>32}  {_fmt(value, 4) if isinstance(value, float) else value}")
    return 3 if result.doubtful else 0


def cmd_batch(args: argparse.Namespace) -> int:
    from lesionvol.batch import run_batch

    summary = run_batch(
        args.manifest, args.out, workers=args.workers, scheduler=args.scheduler, overwrite=args.overwrite,
        threshold_pct=args.threshold_pct, lesion_definition=args.lesion_definition,
        register=not args.no_register, show_progress=not args.quiet,
        side=None if args.side == "auto" else args.side, itk_threads=args.itk_threads,
    )
    print(summary.describe())
    return 0 if summary.n_failed == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lesionvol", description=(
        "Necrotic and residual lesion volume of the femoral head (ONFH) on serial MRI."))
    parser.add_argument("--version", action="version", version=f"lesionvol {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="the whole job on the bundled sample series")
    demo.add_argument("--out", default="lesionvol-demo", help="output folder (default: ./lesionvol-demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    demo.add_argument("--quiet", action="store_true", help="no progress messages")
    demo.set_defaults(run=cmd_demo)

    analyze = commands.add_parser("analyze", help="one hip, serial scans, oldest first")
    analyze.add_argument("baseline", help="baseline image (file or DICOM folder)")
    analyze.add_argument("followups", nargs="*", help="follow-up images, oldest first")
    analyze.add_argument("--out", required=True, help="output folder")
    analyze.add_argument("--lesion", nargs="+", metavar="MASK", help="lesion mask per image, in order")
    analyze.add_argument("--head", nargs="+", metavar="MASK", help="head mask per image, in order")
    analyze.add_argument("--labels", nargs="+", help="timepoint labels (default t0, t1, ...)")
    analyze.add_argument("--days", nargs="+", type=float, help="days since baseline per image")
    analyze.add_argument("--acetabular-edge-mm", type=float, nargs=3, metavar=("X", "Y", "Z"),
                         help="lateral acetabular edge on the baseline mid-coronal slice, LPS mm (for the JIC type)")
    analyze.add_argument("--volume", type=int, help="volume index to take from 4D images")
    _analyze_args(analyze)
    analyze.set_defaults(run=cmd_analyze)

    measure = commands.add_parser("measure", help="volumes of one image's masks")
    measure.add_argument("image")
    measure.add_argument("--lesion", required=True, metavar="MASK", help="lesion mask")
    measure.add_argument("--head", metavar="MASK", help="head mask (segmented when not given)")
    measure.add_argument("--side", choices=["auto", "left", "right"], default="auto")
    measure.add_argument("--threshold-pct", type=float, default=THRESHOLD_PCT)
    measure.add_argument("--volume", type=int, help="volume index to take from a 4D image")
    measure.add_argument("--json", action="store_true", help="print JSON instead of a table")
    measure.set_defaults(run=cmd_measure)

    segment = commands.add_parser("segment", help="segment the femoral head and the necrotic lesion")
    segment.add_argument("image")
    segment.add_argument("--out-lesion", required=True, metavar="MASK", help="lesion mask to write")
    segment.add_argument("--out-head", required=True, metavar="MASK", help="head mask to write")
    segment.add_argument("--side", choices=["auto", "left", "right", "both"], default="auto",
                         help="hip to segment; 'both' (pelvis field) writes M_left/M_right for each output")
    segment.add_argument("--lesion-definition", choices=["enclosed", "dark"], default="enclosed")
    segment.add_argument("--head-definition", choices=["anatomical", "sphere"], default="anatomical")
    segment.add_argument("--seed-mm", type=float, nargs=3, metavar=("X", "Y", "Z"),
                         help="a point inside the femoral head, LPS mm (as clicked in a viewer)")
    segment.add_argument("--volume", type=int, help="volume index to take from a 4D image")
    segment.set_defaults(run=cmd_segment)

    register = commands.add_parser("register", help="rigid registration of a follow-up to the baseline")
    register.add_argument("fixed", help="baseline image")
    register.add_argument("moving", help="follow-up image")
    register.add_argument("--out", required=True, metavar="T.tfm", help="ITK transform file (fixed -> moving points)")
    register.add_argument("--fixed-head", metavar="MASK", help="baseline head mask (segmented when not given)")
    register.add_argument("--moving-head", metavar="MASK", help="follow-up head mask (segmented when not given)")
    register.add_argument("--affine", action="store_true", help="affine instead of rigid")
    register.add_argument("--volume", type=int, help="volume index to take from 4D images")
    register.set_defaults(run=cmd_register)

    batch = commands.add_parser("batch", help="a cohort from a manifest CSV or a subject/session folder, on Dask")
    batch.add_argument("manifest", help="CSV: subject,side,timepoint,days,image[,lesion_mask,head_mask], or a "
                                        "folder SUBJECT/SESSION/image.nii.gz[+lesion,head] (see lesionvol.manifest)")
    batch.add_argument("--out", required=True, help="output folder (one SUBJECT_SIDE/ per study + cohort tables)")
    batch.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    batch.add_argument("--scheduler", metavar="ADDRESS", help="address of an existing Dask scheduler, "
                                                             "e.g. tcp://host:8786 (inputs and --out on a shared disk)")
    batch.add_argument("--itk-threads", type=int, default=1, metavar="N",
                       help="ITK threads per study (default 1: the cores go to worker processes)")
    _analyze_args(batch)
    batch.set_defaults(run=cmd_batch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (tests call this directly)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LesionvolError as exc:
        print(f"lesionvol: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lesionvol: interrupted; no partial results were left", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for pipelines; the traceback on request
        if args.debug:
            raise
        print(f"lesionvol: error: internal error ({type(exc).__name__}: {exc}); rerun with --debug", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
