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
    return (lambda message: None) if quiet else (lambda message: print(f"  {message}", file=sys.stderr, flush=True))


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
                        help="hip to segment when masks are not given (default: auto)")
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
        register=not args.no_register, volume_index=args.volume, progress=_say(args.quiet),
    )
    write_study(result, args.out, overwrite=args.overwrite)
    print(format_table(result.rows()))
    print(f"\nwrote {args.out}/volumes.csv and summary.json in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lesionvol.report import has_results, write_study
    from lesionvol.sample import SAMPLE_LABELS, sample_series_paths, sample_truth
    from lesionvol.study import analyze

    out = Path(args.out)
    marker = out / "summary.json"
    overwrite = args.overwrite or (marker.exists() and '"command": "demo"' in marker.read_text())
    if has_results(out) and not overwrite:
        raise LesionvolError(f"'{out}' holds results that are not a demo's; use --overwrite or another --out")
    truth = sample_truth()
    print(f"lesionvol {__version__} demo: right hip, baseline, 3 and 12 months (synthetic, exact truth)", file=sys.stderr)
    started = time.perf_counter()
    result = analyze(sample_series_paths(), labels=[s.replace(" ", "") for s in SAMPLE_LABELS],
                     days=truth["days"], progress=_say(args.quiet))
    write_study(result, out, overwrite=overwrite, extra_summary={"command": "demo"})
    seconds = time.perf_counter() - started
    rows = result.rows()
    print(format_table(rows))
    print("\nagainst the sample's analytic truth:")
    for row, true_lesion, true_lf in zip(rows, truth["lesion_volume_ml"], truth["lesion_pct_head"]):
        error = 100 * (row["lesion_volume_ml"] - true_lesion) / true_lesion
        print(f"  {row['timepoint']:>9}: lesion {row['lesion_volume_ml']:.2f} mL (true {true_lesion:.2f}, "
              f"{error:+.1f} %), LF {row['lesion_pct_head']:.1f} % (true {true_lf:.1f} %)")
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
