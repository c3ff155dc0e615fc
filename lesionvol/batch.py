"""A cohort of studies on Dask: ``lesionvol batch MANIFEST.csv|COHORT_DIR --out DIR``.

Each study (one hip of one subject, its scans oldest first; see :mod:`lesionvol.manifest`
for the manifest CSV and the cohort folder layout) is one Dask task that calls
:func:`lesionvol.study.analyze_scans` and writes ``DIR/<subject>_<side>/`` with
:func:`lesionvol.report.write_study` (atomically).  The driver then writes, in ``DIR``:

``cohort_volumes.csv``, ``cohort_volumes.parquet``
    One row per hip per timepoint: ``subject``, ``side`` and the columns of each study's
    ``volumes.csv`` (``timepoint``, ``days``, volumes, LF, RF, flags, ...), the same values.
``errors.csv``
    ``subject, side, error``: one row per study that failed (header only when none did).
``lf_trajectories.png``, ``rf_by_followup.png``
    Each hip's LF against days with the threshold line; the cohort's RF at each follow-up.
``index.html``
    The cohort page: one row per hip linking to its ``report.html``, with the two plots.
``batch_summary.json``
    Counts, timings (studies per minute), peak memory per worker, versions, parameters.

Engine.  By default an embedded ``LocalCluster`` of ``workers`` processes with one thread
each; ``scheduler="tcp://host:8786"`` uses an existing Dask cluster instead (inputs and
``DIR`` must then be on a file system the workers share).  ITK's own threads are pinned in
every worker (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` and a worker plugin calling
``SetGlobalDefaultNumberOfThreads``), so processes and ITK threads do not oversubscribe
the cores.

Corrections.  A study a reader corrected (``<study>/corrections/``, :mod:`lesionvol.corrections`)
is measured again with the corrected masks on the next run, and its ``mask_source`` says so.

Resuming.  A study whose folder holds ``volumes.csv`` and ``summary.json`` written by a
batch with the same inputs (SHA-256 of every file of every visit, days, labels, seeds) and the
same :class:`~lesionvol.inputs.AnalysisOptions` is skipped unless ``overwrite``; a study whose inputs changed is redone.  One bad
study (missing or corrupt file, failed segmentation or registration) is recorded in
``errors.csv`` and the others finish.  Every file is written to a temporary name and renamed,
so an interrupted run leaves complete study folders or none; leftovers of a killed run are
removed by the next run.  A second batch into the same ``DIR`` is refused while one runs (a lock);
``DIR`` must be new, empty or a lesionvol batch folder, and outside the inputs' folders
(:mod:`lesionvol.outdir`).

Pseudonymity: subjects are named by the manifest's IDs only; nothing is read from DICOM
patient fields.

Example
-------
>>> summary = run_batch("cohort.csv", "results", AnalysisOptions(threshold_pct=15), workers=2)  # doctest: +SKIP
>>> print(summary.describe())                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import os
import re
import resource
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lesionvol import __version__
from lesionvol.errors import InputError, LesionvolError, OutputExistsError
from lesionvol.inputs import AnalysisOptions
from lesionvol.io import atomic_path
from lesionvol.manifest import StudySpec, read_studies
from lesionvol.outdir import check_not_inputs, locked, marker_kind, resolve_out, write_marker

PathLike = str | os.PathLike
ITK_THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"
DASHBOARD = "127.0.0.1:0"  # this machine only: the dashboard has no authentication
COHORT_FILES = ("cohort_volumes.csv", "cohort_volumes.parquet", "errors.csv", "lf_trajectories.png",
                "rf_by_followup.png", "index.html", "batch_summary.json")


# ----------------------------------------------------------------------------- one study (the task)
@dataclass
class StudyOutcome:
    """What became of one study: ``done``, ``skipped`` (results were current) or ``failed``."""

    subject: str
    side: str
    status: str
    error: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    peak_rss_mb: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.subject}_{self.side}"


def _sha256(path: PathLike | None) -> str | None:
    from lesionvol.io import sha256_of

    return sha256_of(path) if path is not None else None


def study_fingerprint(spec: StudySpec, options: AnalysisOptions, corrections: dict | None = None,
                      dicom_export: bool = False) -> dict:
    """What a study's results depend on: the options, per visit its label, days, seed and the
    checksum of every file it reads, the checksums of a reader's corrections, and whether the
    DICOM export was asked for (a study done without it is redone when it is)."""
    return {
        "visits": [{"timepoint": v.label, "days": v.days, "seed_mm": v.seed_mm, "series": v.series,
                    **{f"{name}_sha256": _sha256(getattr(v, name))
                       for name in ("image", "lesion", "head", "label_map", "transform")}}
                   for v in spec.visits],
        "options": options.as_dict(),
        **({"corrections": {f"{label}/{kind}": _sha256(path) for label, kinds in sorted(corrections.items())
                            for kind, path in sorted(kinds.items())}} if corrections else {}),
        **({"dicom_export": True} if dicom_export else {}),
    }


def _with_corrections(spec: StudySpec, folder: Path, corrections: dict) -> list:
    """The study's visits, those a reader corrected with the corrected masks (lesionvol.corrections)."""
    from lesionvol.corrections import corrected_masks

    visits = []
    for visit in spec.visits:
        if visit.label in corrections:
            head, lesion, source = corrected_masks(folder, visit.label, corrections[visit.label])
            visit = dataclasses.replace(visit, head=head, lesion=lesion, label_map=None, mask_source=source)
        visits.append(visit)
    return visits


def _recorded_fingerprint(folder: Path) -> dict | None:
    """The fingerprint a batch recorded in a complete result folder, or None."""
    if not ((folder / "volumes.csv").is_file() and (folder / "summary.json").is_file()):
        return None
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))["batch"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, LesionvolError) else f"internal error ({type(exc).__name__}: {text})"


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS): the worker process's peak so far
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def run_study(spec: StudySpec, out_dir: PathLike, options: AnalysisOptions, overwrite: bool = False,
              dicom_export: bool = False) -> StudyOutcome:
    """Analyse one study into ``out_dir/<subject>_<side>`` unless its results are current
    (``dicom_export``: with its DICOM SEG and SR, :mod:`lesionvol.dicom_export`).

    The study's side replaces ``options.side``. This is the Dask task; it never raises for a
    bad study (the error is in the outcome).
    """
    from lesionvol import report, study

    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = StudyOutcome(spec.subject, spec.side, "done", worker=_worker_name())
    try:
        if spec.problems:
            raise InputError("missing file(s): " + ", ".join(spec.problems))
        from lesionvol.corrections import read_corrections

        folder = Path(out_dir) / spec.key
        options = dataclasses.replace(options, side=spec.side)
        corrections = read_corrections(folder)
        fingerprint = study_fingerprint(spec, options, corrections, dicom_export)
        recorded = _recorded_fingerprint(folder)
        if recorded == fingerprint and not overwrite:
            outcome.status = "skipped"
        else:
            visits = _with_corrections(spec, folder, corrections) if corrections else spec.visits
            result = study.analyze_scans(visits, options)
            extra = {"batch": {"subject": spec.subject, "side": spec.side, "fingerprint": fingerprint}}
            # a batch result with other inputs or options is ours to replace
            report.write_study(result, folder, overwrite=overwrite or recorded is not None, extra_summary=extra,
                               dicom_export=dicom_export)
    except Exception as exc:  # one bad study must not stop the cohort
        outcome.status, outcome.error = "failed", _one_line(exc)
    outcome.seconds = time.perf_counter() - started
    outcome.cpu_seconds = time.process_time() - cpu_started  # the worker's CPU time (all its threads)
    outcome.peak_rss_mb = _peak_rss_mb()
    return outcome


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid-{os.getpid()}"


# ----------------------------------------------------------------------------- the engine
def _pin_itk_threads(n: int) -> None:
    import SimpleITK as sitk

    os.environ[ITK_THREADS_ENV] = str(n)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


def _thread_plugin(n: int):
    from distributed import WorkerPlugin

    class PinITKThreads(WorkerPlugin):
        """Limit ITK's thread pool in each worker (Dask pins BLAS/OpenMP, not ITK)."""

        name = "lesionvol-pin-itk-threads"

        def __init__(self, threads: int):
            self.threads = threads

        def setup(self, worker):
            _pin_itk_threads(self.threads)

    return PinITKThreads(n)


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (they inherit it), so Ctrl-C in a terminal,
    which reaches the whole process group, interrupts the driver only; the driver then closes
    the cluster and cleans up instead of every worker printing a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _spawn_environ() -> dict:
    """Dask's environment for new worker processes without MALLOC_TRIM_THRESHOLD_. Dask sets it (65536) to
    hand freed memory back to the system; setting it at all also fixes glibc's mmap threshold, so every
    numpy temporary over 128 kB is mapped and faulted in anew: a study took 10.7 s instead of 4.6 s (the
    registration's and the segmenter's numpy code make many such temporaries)."""
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return environ


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None, itk_threads: int, dashboard: str | None) -> Iterator:
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    else:
        if workers < 1:
            raise InputError(f"--workers must be at least 1, not {workers}")
        env = {ITK_THREADS_ENV: str(itk_threads), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        with _workers_ignore_ctrl_c(), dask.config.set({"distributed.nanny.pre-spawn-environ": _spawn_environ()}):
            # Dask's nannies write it into this process's environment, which new workers inherit
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=dashboard, silence_logs=logging.ERROR, env=env)
        client = Client(cluster)
    try:
        client.register_plugin(_thread_plugin(itk_threads))
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


# ----------------------------------------------------------------------------- cohort outputs
@dataclass
class BatchSummary:
    """Counts, timings and outcomes of a batch; ``describe()`` is what the CLI prints."""

    out_dir: str
    n_studies: int
    n_done: int
    n_skipped: int
    n_failed: int
    n_rows: int
    seconds: float
    startup_seconds: float
    studies_per_minute: float
    workers: int | None
    scheduler: str
    peak_rss_mb_per_worker: dict[str, float]
    outcomes: list[StudyOutcome] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    n_rows_to_check: int = 0    # visits with something to check (lesionvol.study.row_checks)

    def as_dict(self) -> dict:
        done = sorted(o.seconds for o in self.outcomes if o.status == "done")
        data = {k: v for k, v in asdict(self).items() if k != "outcomes"}
        data.update(
            lesionvol_version=__version__, versions=_versions(),
            study_seconds={"median": done[len(done) // 2] if done else None, "max": done[-1] if done else None,
                           "total": sum(done)},
            studies=[{"study": o.key, "status": o.status, "seconds": round(o.seconds, 3),
                      "cpu_seconds": round(o.cpu_seconds, 3), "worker": o.worker,
                      **({"error": o.error} if o.error else {})} for o in self.outcomes],
        )
        return data

    def describe(self) -> str:
        where = self.scheduler if self.workers is None else f"{self.workers} local worker(s)"
        lines = [
            f"lesionvol batch: {self.n_studies} studies -> {self.out_dir}",
            f"  done {self.n_done}, skipped (already current) {self.n_skipped}, failed {self.n_failed} "
            f"in {self.seconds:.1f} s on {where}"
            + (f" ({self.studies_per_minute:.1f} studies/min analysed)" if self.n_done else ""),
        ]
        lines += [f"  failed {o.key}: {o.error}" for o in self.outcomes if o.status == "failed"]
        if self.n_rows_to_check:
            lines.append(f"  {self.n_rows_to_check} of the {self.n_rows} visits have something to check: index.html "
                         "names their hips, each study's report.html says what")
        lines.append(f"  cohort_volumes.csv/.parquet ({self.n_rows} rows), errors.csv, lf_trajectories.png, "
                     "rf_by_followup.png, index.html, batch_summary.json")
        return "\n".join(lines)


def _versions() -> dict:
    import dask
    import distributed
    import SimpleITK as sitk

    return {"dask": dask.__version__, "distributed": distributed.__version__, "SimpleITK": sitk.Version_VersionString(),
            "python": sys.version.split()[0]}


def cohort_table(out_dir: PathLike, studies: list[StudySpec]):
    """The tidy cohort table (pandas) from the studies' ``volumes.csv``, in study order."""
    import pandas as pd

    frames = []
    for spec in studies:
        frame = pd.read_csv(Path(out_dir) / spec.key / "volumes.csv", dtype={"timepoint": str, "image_sha256": str},
                            keep_default_na=False, na_values=[""])
        frame.insert(0, "subject", spec.subject)
        frame.insert(1, "side", spec.side)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["subject", "side", "timepoint", "days"])
    return pd.concat(frames, ignore_index=True, sort=False)


def _write_cohort(out: Path, table, outcomes: list[StudyOutcome], threshold_pct: float) -> None:
    from lesionvol.cohort_plots import plot_lf_trajectories, plot_rf_by_followup
    from lesionvol.html_report import write_cohort_index
    from lesionvol.report import spreadsheet_safe, write_rows_csv

    records = table.astype(object).where(table.notna(), None).to_dict("records")
    with atomic_path(out / "cohort_volumes.csv") as tmp:
        if records:
            write_rows_csv(records, tmp)
        else:
            tmp.write_text(",".join(table.columns) + "\n", encoding="utf-8")
    typed = table.copy()
    for column in typed.columns[typed.dtypes == object]:
        typed[column] = typed[column].astype("string")  # uniform Arrow type even where studies differ
    with atomic_path(out / "cohort_volumes.parquet") as tmp:
        typed.to_parquet(tmp, index=False)
    with atomic_path(out / "errors.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["subject", "side", "error"])
        writer.writerows([spreadsheet_safe(text) for text in (o.subject, o.side, o.error)]
                         for o in outcomes if o.status == "failed")
    if len(table) and "lesion_pct_head" in table:
        plot_lf_trajectories(table, out / "lf_trajectories.png", threshold_pct)
        plot_rf_by_followup(table, out / "rf_by_followup.png")
    else:
        for name in ("lf_trajectories.png", "rf_by_followup.png"):
            (out / name).unlink(missing_ok=True)
    write_cohort_index(out, table, outcomes, threshold_pct)


def _remove_leftovers(out: Path, studies: list[StudySpec]) -> None:
    """Remove the temporary folders and files a killed run left (``.<name>.partial-*``, ``.old-*``)
    and the lock files of its studies (call with the batch's own lock held: no run can hold them)."""
    names = {s.key for s in studies} | set(COHORT_FILES)
    pattern = re.compile(r"^\.(?P<name>.+)\.(partial-[^/]*|old-[^/]*|lock)$")
    for path in out.glob(".*"):
        match = pattern.match(path.name)
        if match and match.group("name") in names:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the entry point
def run_batch(
    manifest: PathLike,
    out_dir: PathLike,
    options: AnalysisOptions | None = None,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    itk_threads: int = 1,
    dashboard: str | None = DASHBOARD,
    dicom_export: bool = False,
) -> BatchSummary:
    """Analyse every study of a manifest CSV (or cohort folder) on Dask; write the cohort outputs.

    Parameters
    ----------
    manifest : path-like
        Manifest CSV or cohort folder (format: :mod:`lesionvol.manifest`).
    out_dir : path-like
        Output folder: one ``<subject>_<side>/`` per study plus the cohort files.
    workers : int
        Worker processes of the embedded local cluster (one thread each).
    scheduler : str, optional
        Address of an existing Dask scheduler (then ``workers`` is not used).
    options : AnalysisOptions, optional
        How every study is analysed (each study's side replaces ``options.side``, which is the
        side of the subjects of a cohort folder that do not say it, unless "auto").
    overwrite : bool
        Redo studies whose results are current instead of skipping them.
    show_progress : bool
        A progress bar on stderr.
    itk_threads : int
        ITK threads per task (1: the cores are shared by processes, not threads).
    dashboard : str or None
        Address of the embedded cluster's Dask dashboard (``127.0.0.1:0``, a free port on this
        machine only, by default; ``None`` for none). It has no authentication: expose it on
        other interfaces (``0.0.0.0:8787``) only on a trusted network. Its address is printed.
    dicom_export : bool
        Also write each study's DICOM SEG and SR (``<study>/dicom/``, :mod:`lesionvol.dicom_export`;
        they copy the patient's attributes). A study whose inputs are not DICOM series fails with
        the reason; the others are written.

    Returns
    -------
    BatchSummary
        ``n_failed`` is non-zero when any study failed (the CLI exits with 1).

    Raises
    ------
    InputError
        The manifest is unusable (see :func:`lesionvol.manifest.read_manifest`).
    KeyboardInterrupt
        After cancelling the work and removing every partial file.
    """
    from tqdm import tqdm

    wall_start = time.perf_counter()
    options = options or AnalysisOptions()
    studies = read_studies(manifest, side=None if options.side == "auto" else options.side)
    keys = [s.key for s in studies]
    if len(set(keys)) != len(keys):
        raise InputError(f"two studies share an output folder name: {sorted({k for k in keys if keys.count(k) > 1})}")
    out = resolve_out(out_dir)
    check_not_inputs(out, [f for spec in studies for visit in spec.visits for f in visit.files()])
    with locked(out):  # one batch per output folder at a time
        if out.exists() and any(out.iterdir()) and marker_kind(out) != "batch":
            raise OutputExistsError(f"'{out}' is not empty and is not a lesionvol batch folder; choose a new or "
                                    f"empty folder")
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "batch")
        _remove_leftovers(out, studies)

        outcomes: dict[str, StudyOutcome] = {}
        startup = compute_seconds = 0.0
        say = tqdm.write if show_progress else (lambda message: None)
        try:
            with _dask_client(workers, scheduler, itk_threads, dashboard) as client:
                from distributed import as_completed

                if show_progress and scheduler is None and dashboard:
                    print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr, flush=True)

                startup = time.perf_counter() - wall_start
                compute_start = time.perf_counter()
                tag = uuid.uuid4().hex[:8]
                futures = {client.submit(run_study, spec, str(out.resolve()), options, overwrite, dicom_export,
                                         key=f"lesionvol-study-{spec.key}-{tag}", pure=False): spec for spec in studies}
                bar = tqdm(total=len(futures), unit="study", desc="lesionvol batch", file=sys.stderr,
                           disable=not show_progress, dynamic_ncols=True)
                try:
                    for future in as_completed(futures):
                        spec = futures[future]
                        try:
                            outcome = future.result()
                        except Exception as exc:  # the worker died (memory, segfault) or the task was lost
                            outcome = StudyOutcome(spec.subject, spec.side, "failed", _one_line(exc))
                        outcomes[spec.key] = outcome
                        if outcome.status == "failed":
                            say(f"failed {spec.key}: {outcome.error}")
                        bar.update(1)
                        bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()),
                                        skipped=sum(o.status == "skipped" for o in outcomes.values()), refresh=False)
                except BaseException:
                    client.cancel(list(futures), force=True)
                    raise
                finally:
                    bar.close()
                compute_seconds = time.perf_counter() - compute_start
        except KeyboardInterrupt:
            if scheduler is None:  # the local workers are gone: nothing can still be writing
                _remove_leftovers(out, studies)
            raise

        ordered = [outcomes[s.key] for s in studies]
        good = [s for s in studies if outcomes[s.key].status != "failed"]
        table = cohort_table(out, good)
        _write_cohort(out, table, ordered, options.threshold_pct)
        n_done = sum(o.status == "done" for o in ordered)
        peaks: dict[str, float] = {}
        for o in ordered:
            if o.worker:
                peaks[o.worker] = round(max(peaks.get(o.worker, 0.0), o.peak_rss_mb), 1)
        from lesionvol.html_report import cohort_records
        from lesionvol.study import row_checks

        summary = BatchSummary(
            out_dir=str(out), n_studies=len(studies), n_done=n_done,
            n_skipped=sum(o.status == "skipped" for o in ordered), n_failed=sum(o.status == "failed" for o in ordered),
            n_rows=len(table), seconds=0.0, startup_seconds=round(startup, 3),
            studies_per_minute=round(60.0 * n_done / compute_seconds, 2) if n_done and compute_seconds > 0 else 0.0,
            workers=None if scheduler else workers, scheduler=scheduler or "embedded LocalCluster",
            peak_rss_mb_per_worker=peaks, outcomes=ordered,
            n_rows_to_check=sum(bool(row_checks(r)) for r in cohort_records(table)),
            parameters={**options.as_dict(), "itk_threads": itk_threads, "overwrite": overwrite,
                        "dicom_export": dicom_export,
                        "manifest": os.path.basename(os.path.normpath(os.fspath(manifest)))},
        )
        summary.seconds = round(time.perf_counter() - wall_start, 3)
        from lesionvol.report import write_json

        with atomic_path(out / "batch_summary.json") as tmp:
            write_json(summary.as_dict(), tmp)
        return summary
