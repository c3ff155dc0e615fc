"""The ``lesionvol`` command: a thin shell over the library (see ``lesionvol --help``).

Errors are one line on stderr and a non-zero exit: 2 for bad input or a refused
output folder, 1 for an internal error, 130 when interrupted; ``segment --side both``
exits 3 when a field showing both hips gave only one head (that hip's masks are written).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from lesionvol import __version__
from lesionvol.errors import LesionvolError
from lesionvol.inputs import AnalysisOptions


def _say(quiet: bool):
    if quiet:
        return None
    return lambda step, total, message: print(f"  [{step + 1}/{total}] {message}", file=sys.stderr, flush=True)


def format_table(rows: list[dict]) -> str:
    """A readable fixed-width table of the main columns of ``volumes.csv`` (``study.MAIN_COLUMNS``)."""
    from lesionvol.study import MAIN_COLUMNS, format_cell

    cells = [[title for _, title, _ in MAIN_COLUMNS]]
    cells += [[format_cell(row.get(key), digits) or "-" for key, _, digits in MAIN_COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(MAIN_COLUMNS))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def _scalar(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def add_option_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """One flag per :class:`~lesionvol.inputs.AnalysisOptions` field (or those named), made from
    the field's declaration: its help, choices, type and default."""
    for f in dataclasses.fields(AnalysisOptions):
        if names is not None and f.name not in names:
            continue
        flag = AnalysisOptions.option_flag(f.name)
        help_text = AnalysisOptions.option_help(f.name).replace("%", "%%")  # argparse formats help with %
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true",
                                help=help_text)
        elif f.type.startswith("tuple[float, float, float]"):
            parser.add_argument(flag, dest=f.name, type=float, nargs=3, metavar=("X", "Y", "Z"), help=help_text)
        else:
            kind = {"float": float, "int": int, "int | None": int}.get(f.type, str)
            choices = AnalysisOptions.option_choices(f.name) or None
            default = f" (default {f.default})" if f.default is not None and "default" not in help_text else ""
            parser.add_argument(flag, dest=f.name, type=kind, choices=choices, default=f.default,
                                metavar="N" if kind is int else None, help=help_text + default)


def options_from_args(args: argparse.Namespace) -> AnalysisOptions:
    """The :class:`~lesionvol.inputs.AnalysisOptions` the parsed flags give (defaults for the rest)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(AnalysisOptions) if hasattr(args, f.name)}
    return AnalysisOptions(**given)


def _analyze_args(parser: argparse.ArgumentParser) -> None:
    add_option_arguments(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    parser.add_argument("--dicom-export", action="store_true",
                        help="also write dicom/<timepoint>_seg.dcm (DICOM SEG: head, lesion) and <timepoint>_sr.dcm "
                             "(DICOM SR, TID 1500: head and lesion volume, LF) for DICOM series inputs (refused for "
                             "other formats). These files COPY THE PATIENT'S ATTRIBUTES (name, ID, birth date, sex) "
                             "and the study's identifiers from the source series. Needs highdicom "
                             "(pip install 'lesionvol[dicom]')")


def _checks(rows: list[dict]) -> list[str]:
    """One ``check VISIT: ...`` line per flag a reader should look at (:func:`lesionvol.study.row_checks`).

    Example
    -------
    >>> _checks([{"timepoint": "t0", "lesion_margin_doubtful": True, "margin_oedema_ml": 1.6, "lesion_volume_ml": 16.8}])
    ['check t0: 1.60 mL of marrow oedema next to the 16.80 mL lesion: its outer margin may hold some of it']
    """
    from lesionvol.study import row_checks

    return [f"check {r['timepoint']}: {check}" for r in rows for check in row_checks(r)]


def cmd_analyze(args: argparse.Namespace) -> int:
    from lesionvol.inputs import visits_from_lists
    from lesionvol.outdir import check_out_folder
    from lesionvol.report import write_study
    from lesionvol.study import analyze_scans

    images = [args.baseline, *args.followups]
    def once_or_each(values):  # given once: for every image; else one per image
        return values * len(images) if values and len(values) == 1 else values

    visits = visits_from_lists(images, labels=args.labels, days=args.days, lesions=args.lesion, heads=args.head,
                               label_maps=args.label_map, seeds_mm=once_or_each(args.seed_mm),
                               series=once_or_each(args.series))
    if args.dicom_export:  # refused before any work when an input cannot be the source of a SEG
        from lesionvol.dicom_export import check_dicom_inputs

        check_dicom_inputs(images)
    check_out_folder(args.out, args.overwrite, [f for visit in visits for f in visit.files() if os.path.exists(f)])
    started = time.perf_counter()
    result = analyze_scans(visits, options_from_args(args), progress=_say(args.quiet))
    write_study(result, args.out, overwrite=args.overwrite, dicom_export=args.dicom_export)
    rows = result.rows()
    print(format_table(rows))
    for line in _checks(rows):
        print(line)
    also = " and dicom/ (SEG and SR per timepoint)" if args.dicom_export else ""
    print(f"\nwrote {args.out}/volumes.csv and summary.json{also} in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from lesionvol.outdir import marker_kind
    from lesionvol.report import write_study
    from lesionvol.sample import SAMPLE_VISITS, sample_series_paths, sample_truth
    from lesionvol.study import analyze

    out = Path(args.out)
    overwrite = args.overwrite or marker_kind(out) == "demo"  # a demo's own results are replaced
    truth = sample_truth()
    print(f"lesionvol {__version__} demo: right hip, baseline, 3 and 12 months (synthetic, exact truth)", file=sys.stderr)
    started = time.perf_counter()
    options = AnalysisOptions(acetabular_edge_mm=truth["landmarks_mm"][0]["acetabular_edge"])
    result = analyze(sample_series_paths(), options, labels=list(SAMPLE_VISITS), days=truth["days"],
                     progress=_say(args.quiet))
    write_study(result, out, overwrite=overwrite, extra_summary={"command": "demo"}, kind="demo")
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

    options = options_from_args(args)
    scan = read_scan(args.image, options.volume_index)
    lesion = read_mask(args.lesion, scan.image)
    head = read_mask(args.head, scan.image) if args.head is not None else _segment(scan, options, args.seed_mm).head
    volumes = measure_volumes(lesion, head)
    lf = volumes.lesion_pct_head
    result = {
        "head_volume_ml": volumes.head_volume_ml, "lesion_volume_ml": volumes.lesion_volume_ml,
        "lesion_pct_head": lf, "threshold_pct": options.threshold_pct,
        "threshold_flag": threshold_flag(lf, options.threshold_pct), "steinberg_extent": steinberg_extent(lf),
        "head_mesh_volume_ml": volumes.head_mesh_volume_ml, "lesion_mesh_volume_ml": volumes.lesion_mesh_volume_ml,
        "lesion_outside_head_ml": volumes.lesion_outside_head_ml,
        "head_source": "user" if args.head else "segmented", "image_sha256": scan.sha256,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>24}  {_scalar(value)}")
    return 0


def _with_side(path: str, side: str) -> Path:
    """``lesion.nii.gz`` -> ``lesion_left.nii.gz``: one mask pair per hip of a pelvis field."""
    from lesionvol.io import split_suffix

    stem, suffix = split_suffix(path)
    return Path(path).with_name(f"{stem}_{side}{suffix}")


def _check_contrast(scan, options: AnalysisOptions) -> None:
    """Refuse a scan that does not look T1-weighted unless ``--allow-non-t1`` (then say what it looks like)."""
    from lesionvol.sequence import check_t1

    kind, reason = check_t1(scan.image, options.allow_non_t1, scan.dicom_tags)
    if kind not in ("T1", "unknown"):
        print(f"lesionvol: the image looks {kind} ({reason}); segmented anyway (--allow-non-t1)", file=sys.stderr)


def _segment(scan, options: AnalysisOptions, seed_mm=None):
    """One hip of a scan, segmented as the options say (a non-T1 scan refused unless allowed)."""
    from lesionvol.segment import segment_hip

    _check_contrast(scan, options)
    return segment_hip(scan.image, side=options.side, seed_mm=seed_mm, head_definition=options.head_definition,
                       lesion_definition=options.lesion_definition, segmenter=options.make_segmenter())


def cmd_segment(args: argparse.Namespace) -> int:
    from lesionvol.io import read_scan, write_image
    from lesionvol.measure import mask_volume_ml
    from lesionvol.segment import MissingHipWarning, segment_hips
    from lesionvol.study import segmentation_checks

    both = args.side == "both"
    options = options_from_args(argparse.Namespace(**{**vars(args), "side": "auto" if both else args.side}))
    scan = read_scan(args.image, options.volume_index)
    if both:
        if options.segmenter != "classical" or args.seed_mm:
            raise LesionvolError("--side both uses the classical segmenter without a seed; segment one side "
                                 "at a time with --seed-mm or --segmenter")
        _check_contrast(scan, options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MissingHipWarning)
            hips = segment_hips(scan.image, lesion_definition=options.lesion_definition,
                                head_definition=options.head_definition)
        missing = [str(w.message) for w in caught if issubclass(w.category, MissingHipWarning)]
        outputs = [(seg, _with_side(args.out_lesion, side), _with_side(args.out_head, side))
                   for side, seg in sorted(hips.items())]
    else:
        missing = []
        outputs = [(_segment(scan, options, args.seed_mm), Path(args.out_lesion), Path(args.out_head))]
    for seg, lesion_path, head_path in outputs:
        write_image(seg.lesion, lesion_path)
        write_image(seg.head, head_path)
        print(f"{seg.side} hip: head {mask_volume_ml(seg.head):.2f} mL ({seg.head_definition}), "
              f"lesion {mask_volume_ml(seg.lesion):.2f} mL ({seg.lesion_definition}) -> {lesion_path.name}, {head_path.name}")
        for check in segmentation_checks(scan, seg):
            print(f"check {seg.side} hip: {check}")
    for message in missing:     # the hip found is written; the one not found is named, and the exit says so
        print(f"lesionvol: {message}", file=sys.stderr)
    return SEGMENT_HIP_MISSING if missing else 0


def cmd_register(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from lesionvol.io import atomic_path, itk_path, read_mask, read_scan
    from lesionvol.register import register_followup

    from lesionvol.segment import NoFemoralHeadError
    from lesionvol.sequence import NotT1Error

    options = options_from_args(args)
    itk_path(args.out)  # a name ITK cannot write is refused before any work
    fixed, moving = read_scan(args.fixed, options.volume_index), read_scan(args.moving, options.volume_index)
    # the femur moves relative to the pelvis: the registration is driven by the proximal femur, lesions
    # kept out; without a head (none given, none found, or a non-T1 image that cannot be segmented) the
    # whole field is registered and the QC says so
    masks = {}
    for name, scan, head_path, lesion_path in (("fixed", fixed, args.fixed_head, args.fixed_lesion),
                                               ("moving", moving, args.moving_head, args.moving_lesion)):
        head = read_mask(head_path, scan.image) if head_path else None
        lesion = read_mask(lesion_path, scan.image) if lesion_path else None
        if head is None and not args.whole_field:
            try:
                seg = _segment(scan, options)
                head, lesion = seg.head, lesion if lesion is not None else seg.lesion
            except (NoFemoralHeadError, NotT1Error) as exc:
                print(f"lesionvol: no femoral head segmented in the {name} image ({exc}); registering the whole "
                      "field", file=sys.stderr)
        masks[f"{name}_head"], masks[f"{name}_lesion"] = head, lesion
    if (masks["fixed_head"] is None) != (masks["moving_head"] is None):
        masks["fixed_head"] = masks["moving_head"] = None  # one head only cannot drive a femur registration
    result = register_followup(fixed.image, moving.image, affine=args.affine, **masks)
    with atomic_path(args.out) as tmp:
        sitk.WriteTransform(result.transform, str(tmp))
    for key, value in result.qc.items():
        print(f"{key:>32}  {_scalar(value)}")
    return 3 if result.doubtful else 0


def cmd_batch(args: argparse.Namespace) -> int:
    from lesionvol.batch import run_batch

    summary = run_batch(args.manifest, args.out, options_from_args(args), workers=args.workers,
                        scheduler=args.scheduler, overwrite=args.overwrite, show_progress=not args.quiet,
                        itk_threads=args.itk_threads, dashboard=None if args.dashboard == "none" else args.dashboard,
                        dicom_export=args.dicom_export)
    print(summary.describe())
    return 0 if summary.n_failed == 0 else 1


#: The options that matter where one scan is segmented (measure, segment, register).
#: Exit code of ``segment --side both`` when a field showing both hips gave one head: that hip's
#: masks are written and the other is named on stderr.
SEGMENT_HIP_MISSING = 3
_SEGMENT_OPTIONS = ("side", "head_definition", "lesion_definition", "segmenter", "volume_index", "allow_non_t1")


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
    analyze.add_argument("--label-map", nargs="+", metavar="LABELS",
                         help="one label image per image holding head and lesion (see --head-label, --lesion-label)")
    analyze.add_argument("--labels", nargs="+", help="timepoint labels (default t0, t1, ...)")
    analyze.add_argument("--days", nargs="+", type=float, help="days since baseline per image")
    analyze.add_argument("--seed-mm", type=float, nargs=3, action="append", metavar=("X", "Y", "Z"),
                         help="a point in the femoral head, LPS mm (as clicked in a viewer); once for every "
                              "image, or repeated once per image in order")
    analyze.add_argument("--series", nargs="+", metavar="SERIES",
                         help="for DICOM folders holding several series: which one (number, UID or description); "
                              "once for every image or one per image")
    _analyze_args(analyze)
    analyze.set_defaults(run=cmd_analyze)

    measure = commands.add_parser("measure", help="volumes of one image's masks")
    measure.add_argument("image")
    measure.add_argument("--lesion", required=True, metavar="MASK", help="lesion mask")
    measure.add_argument("--head", metavar="MASK", help="head mask (segmented when not given)")
    measure.add_argument("--seed-mm", type=float, nargs=3, metavar=("X", "Y", "Z"),
                         help="a point inside the femoral head, LPS mm, when the head is segmented")
    add_option_arguments(measure, _SEGMENT_OPTIONS + ("threshold_pct",))
    measure.add_argument("--json", action="store_true", help="print JSON instead of a table")
    measure.set_defaults(run=cmd_measure)

    segment = commands.add_parser("segment", help="segment the femoral head and the necrotic lesion")
    segment.add_argument("image")
    segment.add_argument("--out-lesion", required=True, metavar="MASK", help="lesion mask to write")
    segment.add_argument("--out-head", required=True, metavar="MASK", help="head mask to write")
    segment.add_argument("--side", choices=["auto", "left", "right", "both"], default="auto",
                         help="hip to segment; 'both' (pelvis field) writes M_left/M_right for each output, and exits 3 "
                              "naming the hip it could not find when the field shows both hips but one was found")
    segment.add_argument("--seed-mm", type=float, nargs=3, metavar=("X", "Y", "Z"),
                         help="a point inside the femoral head, LPS mm (as clicked in a viewer)")
    add_option_arguments(segment, tuple(n for n in _SEGMENT_OPTIONS if n != "side"))
    segment.set_defaults(run=cmd_segment)

    register = commands.add_parser("register", help="rigid registration of a follow-up to the baseline")
    register.add_argument("fixed", help="baseline image")
    register.add_argument("moving", help="follow-up image")
    register.add_argument("--out", required=True, metavar="T.tfm", help="ITK transform file (fixed -> moving points)")
    register.add_argument("--fixed-head", metavar="MASK", help="baseline head mask (segmented when not given)")
    register.add_argument("--moving-head", metavar="MASK", help="follow-up head mask (segmented when not given)")
    register.add_argument("--fixed-lesion", metavar="MASK", help="baseline lesion mask, kept out of the metric "
                                                                 "(segmented with the head when not given)")
    register.add_argument("--moving-lesion", metavar="MASK", help="follow-up lesion mask, kept out of the metric")
    register.add_argument("--whole-field", action="store_true",
                          help="register the whole field (no femoral head segmentation), e.g. two pelvis scans")
    register.add_argument("--affine", action="store_true", help="affine instead of rigid")
    add_option_arguments(register, _SEGMENT_OPTIONS)
    register.set_defaults(run=cmd_register)

    batch = commands.add_parser("batch", help="a cohort from a manifest CSV or a subject/session folder, on Dask")
    batch.add_argument("manifest", help="CSV: subject,side,timepoint,days,image[,lesion_mask,head_mask], or a "
                                        "folder SUBJECT/SESSION/image.nii.gz[+lesion,head] (see lesionvol.manifest)")
    batch.add_argument("--out", required=True, help="output folder (one SUBJECT_SIDE/ per study + cohort tables)")
    batch.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    batch.add_argument("--scheduler", metavar="ADDRESS", help="address of an existing Dask scheduler, "
                                                             "e.g. tcp://host:8786 (inputs and --out on a shared disk)")
    batch.add_argument("--dashboard", default="127.0.0.1:0", metavar="ADDRESS",
                       help="Dask dashboard of the local cluster (default 127.0.0.1:0: this machine only, a free "
                            "port; it has no authentication, so 0.0.0.0:8787 only on a trusted network; 'none')")
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
    except LesionvolError as exc:  # one line, whatever the message holds (file names may hold newlines)
        print("lesionvol: error: " + str(exc).replace("\r", "\\r").replace("\n", "\\n"), file=sys.stderr)
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
