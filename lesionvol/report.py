"""Write a study's results: volumes.csv, summary.json, masks, transforms, QC pictures.

Everything goes into a hidden temporary folder next to the destination, which is
renamed into place only when complete: an interrupted run leaves no half-written
results, and an existing result folder is replaced only when asked and only when lesionvol
wrote it (see :mod:`lesionvol.outdir`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionvol.corrections import FOLDER as CORRECTIONS
from lesionvol.html_report import write_study_html
from lesionvol.io import write_image
from lesionvol.outdir import atomic_folder, resolve_out
from lesionvol.slicer_seg import write_segments
from lesionvol.study import StudyResult, Timepoint

#: A text cell starting with one of these is a formula to a spreadsheet (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it literally: a leading ``'`` before a formula start
    (OWASP's advice for CSV injection); numbers are written as numbers, not through this.

    Example
    -------
    >>> spreadsheet_safe("=SUM(A1:A9)"), spreadsheet_safe("below")
    ("'=SUM(A1:A9)", 'below')
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    if isinstance(value, str):
        return spreadsheet_safe(value)
    return value


def write_rows_csv(rows: list[dict], path: str | os.PathLike) -> None:
    """Write dict rows as CSV (union of keys, in first-seen order; empty cell for None; text
    that a spreadsheet would run as a formula is escaped, see :func:`spreadsheet_safe`).

    Example
    -------
    >>> p = Path(tempfile.mkdtemp()) / "v.csv"
    >>> write_rows_csv([{"a_ml": 1.0, "b": None}], p)
    >>> p.read_text().splitlines()
    ['a_ml,b', '1,']
    """
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def json_safe(value: object) -> object:
    """``value`` with every non-finite float (NaN, ±inf) as ``None`` (JSON ``null``), recursively;
    strings are left exactly as they are.

    Example
    -------
    >>> json_safe({"file": "NaNa_t1.nii.gz", "lf": float("nan"), "x": [float("inf"), 1.5]})
    {'file': 'NaNa_t1.nii.gz', 'lf': None, 'x': [None, 1.5]}
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write valid JSON: numpy values converted, NaN and infinities written as null."""
    text = json.dumps(json_safe(data), indent=2, default=_json_default, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def qc_picture(tp: Timepoint, path: str | os.PathLike) -> None:
    """Save a mid-coronal slice through the head with the head and lesion outlined.

    The image is reoriented to the nearest LPS axes first, so the picture is coronal
    whatever the acquisition plane; patient's right is on the picture's left.
    """
    from lesionvol.cohort_plots import new_figure  # a bare Figure: no pyplot, the host's backend is left alone

    image = sitk.DICOMOrient(tp.scan.image, "LPS")
    head = sitk.GetArrayFromImage(sitk.DICOMOrient(tp.head, "LPS"))
    lesion = sitk.GetArrayFromImage(sitk.DICOMOrient(tp.lesion, "LPS"))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    where = np.nonzero(head) if head.any() else np.nonzero(np.ones_like(head))
    y = int(np.round(np.mean(where[1])))
    spacing = image.GetSpacing()
    fig, ax = new_figure((5, 5 * array.shape[0] * spacing[2] / (array.shape[2] * spacing[0]) + 0.6))
    lo, hi = np.percentile(array, [1, 99.5])
    ax.imshow(array[:, y, :], cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=spacing[2] / spacing[0])
    if head[:, y, :].any():
        ax.contour(head[:, y, :], levels=[0.5], colors="deepskyblue", linewidths=0.8)
    if lesion[:, y, :].any():
        ax.contour(lesion[:, y, :], levels=[0.5], colors="red", linewidths=1.2)
    ax.set_title(
        f"{tp.label}: lesion {tp.volumes.lesion_volume_ml:.2f} mL, "
        f"{tp.volumes.lesion_pct_head:.1f} % of head", fontsize=9
    )
    ax.set_xlabel("R ← → L (coronal)")
    ax.set_xticks([]); ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_study(result: StudyResult, out_dir: str | os.PathLike, overwrite: bool = False,
                extra_summary: dict | None = None, kind: str = "study", dicom_export: bool = False) -> Path:
    """Write all outputs of a study into ``out_dir`` atomically; return the folder.

    Layout: ``volumes.csv``, ``summary.json``, ``masks/<tp>_{lesion,head}.nii.gz`` (and both as
    one 3D Slicer segmentation ``masks/<tp>.seg.nrrd``; for a segmented lesion also the marrow oedema
    next to it, ``masks/<tp>_oedema.nii.gz``),
    ``transforms/<tp>.tfm`` (follow-ups), ``change/<tp>_{regenerated,new}.nii.gz``
    (baseline space), ``qc/<tp>.png``, ``report.html`` (one self-contained page for sign-off) and
    the ``.lesionvol`` marker; a ``corrections/`` folder
    already there (a reader's corrections) is kept. The folder may not be
    an input's folder (``result.input_files``); see :func:`lesionvol.outdir.atomic_folder`.
    With ``dicom_export`` (DICOM inputs only) also ``dicom/<tp>_seg.dcm`` and ``dicom/<tp>_sr.dcm``
    (:mod:`lesionvol.dicom_export`; they carry the source's patient attributes); a refusal writes nothing.
    """
    kept = resolve_out(out_dir) / CORRECTIONS
    with atomic_folder(out_dir, overwrite, kind=kind, inputs=result.input_files) as tmp:
        if kept.is_dir():  # a reader's corrections survive a new run (lesionvol.corrections)
            shutil.copytree(kept, tmp / CORRECTIONS)
        if dicom_export:  # first: a refusal (non-DICOM inputs, no highdicom) costs no other writing
            from lesionvol.dicom_export import FOLDER, write_dicom_export

            write_dicom_export(result, tmp / FOLDER)
        for name in ("masks", "transforms", "change", "qc"):
            (tmp / name).mkdir()
        for tp in result.timepoints:
            write_image(tp.lesion, tmp / "masks" / f"{tp.label}_lesion.nii.gz")
            write_image(tp.head, tmp / "masks" / f"{tp.label}_head.nii.gz")
            if tp.oedema is not None:
                write_image(tp.oedema, tmp / "masks" / f"{tp.label}_oedema.nii.gz")
            write_segments(tmp / "masks" / f"{tp.label}.seg.nrrd", {"head": tp.head, "lesion": tp.lesion})
            if tp.transform is not None:
                sitk.WriteTransform(tp.transform, str(tmp / "transforms" / f"{tp.label}.tfm"))
            if tp.change is not None:
                write_image(tp.change.regenerated, tmp / "change" / f"{tp.label}_regenerated.nii.gz")
                write_image(tp.change.new_lesion, tmp / "change" / f"{tp.label}_new.nii.gz")
            qc_picture(tp, tmp / "qc" / f"{tp.label}.png")
        write_rows_csv(result.rows(), tmp / "volumes.csv")
        write_json({**result.summary(), **(extra_summary or {})}, tmp / "summary.json")
        write_study_html(result, tmp / "report.html", extra_summary)
    return Path(out_dir)
