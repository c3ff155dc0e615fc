"""A study's results as one self-contained HTML page, and a cohort index page for a batch.

``report.html`` is for the person who signs the study off: the table per timepoint with LF
against the threshold, the QC slices, the change overlays, each registration's checks,
the definitions and the provenance. Everything is in the one file: pictures are inlined as
base64 PNG ``data:`` URIs, the CSS is in a ``<style>`` element, there is no JavaScript and no
external resource of any kind (the page opens offline, from a mail attachment or a USB stick).

Every text put into the page is escaped (:func:`html.escape`): subjects, labels and file
names are user data. Input files are named by their base names only, never by their paths,
and nothing is read from DICOM headers.

Pictures are drawn with matplotlib on bare figures (:func:`lesionvol.cohort_plots.new_figure`),
never pyplot, so the host process's backend is left alone.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

import numpy as np
import SimpleITK as sitk

from lesionvol import __version__
from lesionvol.io import atomic_path
from lesionvol.outdir import apply_umask
from lesionvol.study import StudyResult, Timepoint, format_cell, is_set, row_checks

PathLike = str | os.PathLike

#: The per-timepoint table of the report: (column of ``volumes.csv``, title, decimals; None for text).
TABLE_COLUMNS = (
    ("timepoint", "visit", None), ("days", "days", 0), ("head_volume_ml", "head mL", 2),
    ("lesion_volume_ml", "lesion mL", 3), ("lesion_pct_head", "LF %", 1),
    ("residual_pct_baseline", "RF %", 1), ("regenerated_ml", "regenerated mL", 3),
    ("new_lesion_ml", "new mL", 3), ("steinberg_extent", "Steinberg", None),
    ("threshold_flag", "threshold flag", None), ("mask_source", "masks", None),
)

#: Registration checks shown per follow-up, when present: (key of ``registration_qc``, title, decimals).
#: Other keys of ``registration_qc`` follow them, under their own names.
REGISTRATION_COLUMNS = (
    ("registration_method", "method", None), ("registration_metric", "metric (MI)", 3),
    ("registration_rotation_deg", "rotation °", 2), ("registration_uncertainty_mm", "uncertainty mm", 2),
    ("head_dice_registered", "head Dice", 3),
    ("head_volume_change_pct", "head vol. change %", 1), ("head_centre_residual_mm", "head centre residual mm", 2),
)

#: Colours of the change overlays (residual, regenerated, new lesion) and of the head outline.
CHANGE_COLOURS = {"residual": "#ff9f1c", "regenerated": "#2ec4b6", "new lesion": "#e71d9e"}
HEAD_COLOUR = "deepskyblue"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:1.5em auto;
max-width:1150px;padding:0 1em;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}
h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{border-left:5px solid #d9822b;background:#fff5e8;padding:.6em 1em;margin:1em 0}
.warn{border-left:5px solid #c0392b;background:#fdecea;padding:.6em 1em;margin:1em 0}
tr.doubtful td,td.bad,th.bad{background:#fdecea}th.bad{color:#c0392b}
table.checks td{max-width:420px}tbody th{text-align:left;font-weight:normal;background:#f6f7f9}
tr.above td.flag{background:#fdecea;font-weight:bold}
.tag{display:inline-block;padding:0 .4em;border-radius:3px;background:#c0392b;color:#fff;font-weight:bold}
.ok{color:#1e7b34}.muted{color:#666;font-size:.9em}
figure{display:inline-block;margin:.4em .6em .8em 0;vertical-align:top}
figcaption{font-size:.85em;color:#444;max-width:520px}
img{max-width:100%;height:auto;border:1px solid #ddd}
dl.defs dt{font-weight:bold;font-family:monospace;margin-top:.4em}dl.defs dd{margin-left:1.5em}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
"""


# ----------------------------------------------------------------------------- small helpers
def esc(value: object) -> str:
    """``value`` as HTML text: ``str()`` then every ``& < > " '`` escaped (user data is never markup).

    Example
    -------
    >>> esc('a<b & "c"')
    'a&lt;b &amp; &quot;c&quot;'
    """
    return html.escape("" if value is None else str(value), quote=True)


def png_data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for PNG bytes (refused if the bytes are not a PNG).

    Example
    -------
    >>> png_data_uri(b"\\x89PNG\\r\\n\\x1a\\n")
    'data:image/png;base64,iVBORw0KGgo='
    """
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("not a PNG")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig, dpi: int = 100) -> bytes:
    """The PNG bytes of a matplotlib figure, rendered in memory.

    Example
    -------
    >>> from lesionvol.cohort_plots import new_figure
    >>> fig, ax = new_figure((1, 1))
    >>> figure_png(fig)[:4]
    b'\\x89PNG'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _img(png: bytes, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{png_data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def _table(header: Sequence[str], rows: Iterable[Sequence[tuple[str, str]]], row_classes: Sequence[str] = ()) -> str:
    """An HTML table; each cell is ``(text, css class)``, the text is escaped here."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if i < len(row_classes) and row_classes[i] else ""
        cells = "".join(f'<td class="{c}">{esc(t)}</td>' if c else f"<td>{esc(t)}</td>" for t, c in row)
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        # belt and braces: even a page edited by hand may load nothing from anywhere
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def _name_only(path: object) -> str:
    """A file's base name (a folder's name for a DICOM series): paths are never shown."""
    return os.path.basename(os.path.normpath(os.fspath(path))) if path else ""


# ----------------------------------------------------------------------------- pictures
def qc_png(tp: Timepoint) -> bytes:
    """The QC slice of :func:`lesionvol.report.qc_picture` (head blue, lesion red), as PNG bytes.

    Example
    -------
    >>> head = sitk.Image([12, 12, 12], sitk.sitkUInt8); head[2:10, 2:10, 2:10] = 1
    >>> lesion = sitk.Image([12, 12, 12], sitk.sitkUInt8); lesion[2:5, 2:10, 2:10] = 1
    >>> from lesionvol.study import analyze_scans, Visit
    >>> tp = analyze_scans([Visit(sitk.Image([12, 12, 12], sitk.sitkFloat32), lesion=lesion, head=head)]).timepoints[0]
    >>> qc_png(tp)[:4]
    b'\\x89PNG'
    """
    from lesionvol.report import qc_picture  # report imports this module: import at call time

    buffer = io.BytesIO()
    qc_picture(tp, buffer)  # Figure.savefig writes PNG to a file object
    return buffer.getvalue()


def lf_plot_png(result: StudyResult) -> bytes:
    """LF (% of the head) over days, with the threshold line, as PNG bytes.

    Visits without days are drawn against the visit number (and the axis says so).

    Example
    -------
    >>> head = sitk.Image([12, 12, 12], sitk.sitkUInt8); head[2:10, 2:10, 2:10] = 1
    >>> from lesionvol.study import analyze_scans, Visit
    >>> result = analyze_scans([Visit(sitk.Image([12, 12, 12], sitk.sitkFloat32), lesion=head * 0, head=head)])
    >>> lf_plot_png(result)[:4]
    b'\\x89PNG'
    """
    from lesionvol.cohort_plots import new_figure

    rows = result.rows()
    days = [r["days"] for r in rows]
    use_days = all(d is not None for d in days)
    x = days if use_days else list(range(len(rows)))
    lf = [r["lesion_pct_head"] if r["lesion_pct_head"] is not None else float("nan") for r in rows]
    fig, ax = new_figure((5.6, 3.4))
    ax.plot(x, lf, marker="o", ms=5, lw=1.5, color="#1f4e79", label="LF")
    for xi, yi, row in zip(x, lf, rows):
        if np.isfinite(yi):
            ax.annotate(str(row["timepoint"]), (xi, yi), textcoords="offset points", xytext=(4, 5), fontsize=7)
    threshold = result.threshold_pct
    ax.axhline(threshold, color="crimson", ls="--", lw=1.2, label=f"{threshold:g} % threshold (exploratory)")
    ax.set_xlabel("days since baseline" if use_days else "visit (0 = baseline; days unknown)")
    ax.set_ylabel("LF (% of femoral head)")
    finite = [v for v in lf if np.isfinite(v)]
    ax.set_ylim(0, max(finite + [threshold]) * 1.25 + 0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return figure_png(fig, dpi=100)


def _lps_array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def change_png(baseline: Timepoint, tp: Timepoint) -> bytes:
    """The change overlay of one follow-up on the baseline image, coronal slice, as PNG bytes.

    Residual (lesion at both visits), regenerated (baseline lesion only) and new lesion
    (follow-up only) are filled over the baseline image, on the baseline grid, with the
    baseline head outlined. The slice is the mid-coronal slice of the baseline head (as in
    the QC pictures); when no lesion or change lies in it, the coronal slice holding the most
    change, and the title says so.

    Example
    -------
    >>> head = sitk.Image([12, 12, 12], sitk.sitkUInt8); head[2:10, 2:10, 2:10] = 1
    >>> base = sitk.Image([12, 12, 12], sitk.sitkUInt8); base[2:6, 2:10, 2:10] = 1
    >>> follow = sitk.Image(base); follow[2:4, 2:10, 2:10] = 0
    >>> from lesionvol.study import analyze_scans, Visit, AnalysisOptions
    >>> image = sitk.Image([12, 12, 12], sitk.sitkFloat32)
    >>> result = analyze_scans([Visit(image, lesion=base, head=head), Visit(image, lesion=follow, head=head)],
    ...                        AnalysisOptions(register=False))  # same grid: compared without registration
    >>> change_png(*result.timepoints)[:4]
    b'\\x89PNG'
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from lesionvol.cohort_plots import new_figure

    if tp.change is None:
        raise ValueError(f"{tp.label} has no change maps")
    image_lps = sitk.DICOMOrient(baseline.scan.image, "LPS")
    array = sitk.GetArrayFromImage(image_lps).astype(np.float32)
    head = _lps_array(baseline.head)
    layers = {"residual": _lps_array(tp.change.residual), "regenerated": _lps_array(tp.change.regenerated),
              "new lesion": _lps_array(tp.change.new_lesion)}
    where = np.nonzero(head) if head.any() else np.nonzero(np.ones_like(head))
    y = int(np.round(np.mean(where[1])))
    where_said = "mid-coronal slice of the baseline head"
    per_slice = sum(layer.astype(bool) for layer in layers.values()).sum(axis=(0, 2))
    if per_slice.any() and per_slice[y] == 0:
        y = int(np.argmax(per_slice))
        where_said = "coronal slice with the most change (none in the mid-coronal slice)"
    spacing = image_lps.GetSpacing()
    fig, ax = new_figure((5, 5 * array.shape[0] * spacing[2] / (array.shape[2] * spacing[0]) + 0.9))
    lo, hi = np.percentile(array, [1, 99.5]) if array.size else (0, 1)
    aspect = spacing[2] / spacing[0]
    ax.imshow(array[:, y, :], cmap="gray", origin="lower", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect)
    for name, layer in layers.items():
        sl = layer[:, y, :]
        if sl.any():
            ax.imshow(np.ma.masked_equal(sl.astype(np.uint8), 0), cmap=ListedColormap([CHANGE_COLOURS[name]]),
                      origin="lower", alpha=0.7, aspect=aspect, interpolation="nearest", vmin=0, vmax=1)
    if head[:, y, :].any():
        ax.contour(head[:, y, :], levels=[0.5], colors=HEAD_COLOUR, linewidths=0.8)
    ax.legend(handles=[Patch(color=c, label=n) for n, c in CHANGE_COLOURS.items()]
              + [Patch(facecolor="none", edgecolor=HEAD_COLOUR, label="baseline head")],
              fontsize=7, loc="upper right", framealpha=0.8)
    ax.set_title(f"{tp.label} vs {baseline.label}: regenerated {tp.change.regenerated_ml:.2f} mL, "
                 f"new {tp.change.new_lesion_ml:.2f} mL\n{where_said}", fontsize=8)
    ax.set_xlabel("R ← → L (coronal, baseline grid)")
    ax.set_xticks([]); ax.set_yticks([])
    fig.tight_layout()
    return figure_png(fig, dpi=100)


# ----------------------------------------------------------------------------- the study page
def _threshold_note(summary: dict) -> str:
    t = summary["threshold"]
    return (
        '<div class="note"><strong>The '
        f"{esc(format(t['lesion_pct_head_threshold_pct'], 'g'))} % LF threshold is exploratory.</strong> "
        "It comes from a small study and is not a validated cut-off; the threshold flag is a prompt for "
        "review, not a prognosis.<br>"
        f"<span class=\"muted\">Rule: <code>{esc(t['rule'])}</code><br>Source: {esc(t['source'])}</span></div>"
    )


def _timepoint_table(rows: list[dict]) -> str:
    cells, classes = [], []
    for row in rows:
        cells.append([(format_cell(row.get(col), dec), "num" if dec is not None else ("flag" if col == "threshold_flag"
                                                                                        else ""))
                      for col, _, dec in TABLE_COLUMNS])
        classes.append("above" if row.get("threshold_flag") == "at_or_above" else "")
    return _table([title for _, title, _ in TABLE_COLUMNS], cells, classes)


def _checks(rows: list[dict]) -> str:
    """What a reader should check, visit by visit, in the words ``analyze`` prints and the napari table shows
    (:func:`lesionvol.study.row_checks`); empty when nothing is flagged."""
    items = [f"<li>{esc(r['timepoint'])}: {esc(check)}</li>" for r in rows for check in row_checks(r)]
    if not items:
        return ""
    return ('<div class="warn"><strong>Check before use</strong> (flags raised on these results; each is defined '
            f"below):<ul>{''.join(items)}</ul></div>")


def _registration_section(result: StudyResult) -> str:
    """One column per follow-up, one row per check (long method texts stay readable); the columns of
    doubtful registrations are highlighted."""
    follow = result.timepoints[1:]
    if not follow:
        return "<p>Baseline only: nothing was registered.</p>"
    present = {k for tp in follow for k in tp.registration_qc}
    checks = [(k, t, d) for k, t, d in REGISTRATION_COLUMNS if k in present]
    shown = {k for k, _, _ in REGISTRATION_COLUMNS} | {"registration_doubtful", "registration_doubtful_reason"}
    # checks this module does not know by name (added to the registration later) are shown too
    checks += [(k, k.replace("registration_", "").replace("_", " "), 3)
               for k in dict.fromkeys(k for tp in follow for k in tp.registration_qc) if k not in shown]
    doubtful = [is_set(tp.registration_qc.get("registration_doubtful")) for tp in follow]
    sources = {"given": "given", "registered": "registered", "": "none"}

    def line(title: str, values: list[str], numeric: bool = False) -> str:
        cells = "".join(f'<td class="{" ".join(c for c in ("num" if numeric else "", "bad" if bad else "") if c)}">'
                        f"{esc(v)}</td>" for v, bad in zip(values, doubtful))
        return f"<tr><th>{esc(title)}</th>{cells}</tr>"

    lines = [
        line("doubtful", ["DOUBTFUL" if bad else ("no" if tp.registration_qc else "not checked")
                          for tp, bad in zip(follow, doubtful)]),
        line("reason", [tp.registration_qc.get("registration_doubtful_reason", "") for tp in follow]),
        line("transform", [sources.get(tp.transform_source, tp.transform_source) for tp in follow]),
    ]
    for key, title, decimals in checks:
        values = [tp.registration_qc.get(key) for tp in follow]
        lines.append(line(title, [format_cell(v, decimals) for v in values],
                          numeric=decimals is not None and not any(isinstance(v, str) for v in values)))
    lines.append(line("change maps", [tp.change_method for tp in follow]))
    head = "".join(f'<th class="{"bad" if bad else ""}">{esc(tp.label)}</th>' for tp, bad in zip(follow, doubtful))
    n_doubtful = sum(doubtful)
    warn = (f'<div class="warn"><span class="tag">{n_doubtful} doubtful</span> registration(s): their '
            "regenerated / new volumes and change overlays need review before use.</div>") if n_doubtful else ""
    return (f'{warn}<table class="checks"><thead><tr><th>check</th>{head}</tr></thead>'
            f"<tbody>{''.join(lines)}</tbody></table>")


def _definitions(summary: dict) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in summary["definitions"].items())
    return f'<dl class="defs">{items}</dl>'


def _option_value(name: str, value: object) -> str:
    if name == "segmenter" and isinstance(value, str) and value.startswith("onnx:"):
        return "onnx:" + _name_only(value[len("onnx:"):])  # a model's path is not shown, its name is
    return "" if value is None else str(value)


def _provenance(result: StudyResult, summary: dict) -> str:
    from lesionvol.io import sha256_of

    options = _table(["option", "value"], [[(k, ""), (_option_value(k, v), "mono")]
                                            for k, v in summary["options"].items()])
    inputs = _table(["visit", "image file", "SHA-256", "masks", "transform"],
                    [[(i["timepoint"], ""), (_name_only(i["file"]), "mono"), (i["sha256"] or "", "mono"),
                      (i["mask_source"], ""), (i["transform"], "")] for i in summary["inputs"]])
    images = {os.path.normpath(tp.scan.source) for tp in result.timepoints if tp.scan.source}
    others = []
    for path in dict.fromkeys(result.input_files):
        if os.path.normpath(path) in images:
            continue
        try:
            digest = sha256_of(path)
        except OSError:
            digest = "(no longer readable)"
        others.append([(_name_only(path), "mono"), (digest, "mono")])
    other_files = ("<p>Other files read (masks, label maps, transforms):</p>" + _table(["file", "SHA-256"], others)
                   if others else "")
    return (f"<p>lesionvol {esc(summary['lesionvol_version'])}; report written "
            f"{esc(_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z'))}. Files are named by their "
            "base names only; nothing in this report is read from DICOM headers.</p>"
            f"<h3>Options</h3>{options}<h3>Inputs</h3>{inputs}{other_files}")


def study_html(result: StudyResult, extra_summary: dict | None = None, title: str = "") -> str:
    """The study's report as one self-contained HTML page (a string).

    Parameters
    ----------
    result : StudyResult
        The analysed study.
    extra_summary : dict, optional
        What :func:`lesionvol.report.write_study` adds to ``summary.json``; a batch's
        ``{"batch": {"subject": ..., "side": ...}}`` names the study in the title.
    title : str, optional
        The page title (default: the batch's subject and side, else "study").

    Returns
    -------
    str
        HTML with every picture inlined as a PNG ``data:`` URI and no external resource.

    Example
    -------
    >>> head = sitk.Image([12, 12, 12], sitk.sitkUInt8); head[2:10, 2:10, 2:10] = 1
    >>> lesion = sitk.Image([12, 12, 12], sitk.sitkUInt8); lesion[2:4, 2:10, 2:10] = 1
    >>> from lesionvol.study import analyze_scans, Visit
    >>> result = analyze_scans([Visit(sitk.Image([12, 12, 12], sitk.sitkFloat32), lesion=lesion, head=head)])
    >>> page = study_html(result, title="S<1> right")
    >>> "<title>lesionvol report: S&lt;1&gt; right</title>" in page, "http" in page.replace("http-equiv", "")
    (True, False)
    """
    summary = result.summary()
    rows = summary["timepoints"]
    batch = (extra_summary or {}).get("batch") or {}
    if not title:
        title = " ".join(str(batch[k]) for k in ("subject", "side") if batch.get(k)) or "study"
    side = next((r.get("location_side") for r in rows if r.get("location_side")), "")
    baseline = result.timepoints[0]
    last = rows[-1]

    qc = "".join(_img(qc_png(tp), f"QC slice {tp.label}", f"{tp.label}: mid-coronal slice; femoral head outlined "
                      "in blue, lesion in red (patient's right on the left)") for tp in result.timepoints)
    changes = []
    for tp in result.timepoints[1:]:
        if tp.change is None:
            changes.append(f"<p>{esc(tp.label)}: no change maps ({esc(tp.change_method)}).</p>")
        else:
            changes.append(_img(change_png(baseline, tp), f"change overlay {tp.label}",
                                f"{tp.label}: residual / regenerated / new lesion on the baseline ({baseline.label}) "
                                f"grid; {tp.change_method}"))
    change_section = "".join(changes) if changes else "<p>Baseline only: no follow-up to compare.</p>"

    lf_last = format_cell(last.get("lesion_pct_head"), 1)
    flag = last.get("threshold_flag") or ""
    headline = (f"<p>Last visit <strong>{esc(last['timepoint'])}</strong>: LF <strong>{esc(lf_last)} %</strong> "
                f"of the femoral head, threshold flag <strong>{esc(flag)}</strong>"
                f" (threshold {esc(format(result.threshold_pct, 'g'))} %, exploratory).</p>")
    body = [
        f"<h1>lesionvol report: {esc(title)}</h1>",
        f"<p class=\"muted\">Necrotic lesion of the femoral head on serial MRI; {len(rows)} visit(s)"
        + (f"; {esc(side)} hip" if side else "") + f"; lesionvol {esc(__version__)}.</p>",
        headline,
        _threshold_note(summary),
        "<h2>Volumes per visit</h2>",
        _timepoint_table(rows),
        _checks(rows),
        _img(lf_plot_png(result), "LF over time with the threshold line",
             "Lesion fraction LF (% of the head) at each visit; dashed line: the exploratory threshold."),
        "<h2>QC slices</h2>", qc,
        "<h2>Change since baseline</h2>", change_section,
        "<h2>Registration checks</h2>", _registration_section(result),
        "<h2>Definitions</h2>", _definitions(summary),
        "<h2>Provenance</h2>", _provenance(result, summary),
    ]
    return _page(f"lesionvol report: {title}", "\n".join(body))


def write_study_html(result: StudyResult, path: PathLike, extra_summary: dict | None = None, title: str = "") -> Path:
    """Write :func:`study_html` to ``path`` (atomically, UTF-8); return the path.

    Example
    -------
    >>> import tempfile
    >>> head = sitk.Image([12, 12, 12], sitk.sitkUInt8); head[2:10, 2:10, 2:10] = 1
    >>> from lesionvol.study import analyze_scans, Visit
    >>> result = analyze_scans([Visit(sitk.Image([12, 12, 12], sitk.sitkFloat32), lesion=head * 0, head=head)])
    >>> write_study_html(result, Path(tempfile.mkdtemp()) / "report.html").name
    'report.html'
    """
    page = study_html(result, extra_summary, title)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
        apply_umask(tmp)  # a page for others to open: the umask's permissions, not a temporary file's 0600
    return Path(path)


# ----------------------------------------------------------------------------- the cohort index
def cohort_records(table) -> list[dict]:
    """The rows of a cohort table (pandas) as dicts, missing cells as None (as :func:`row_checks` reads them)."""
    return table.astype(object).where(table.notna(), None).to_dict("records") if len(table) else []


def _hip_rows(table) -> list[dict]:
    """One dict per hip, in table order: subject, side, visits, last LF, its flag, doubtful registrations and
    visits with something to check (:func:`lesionvol.study.row_checks`)."""
    hips: dict[tuple[str, str], list[dict]] = {}
    for rec in cohort_records(table):
        hips.setdefault((str(rec.get("subject")), str(rec.get("side"))), []).append(rec)
    out = []
    for (subject, side), recs in hips.items():
        last = recs[-1]
        out.append({"subject": subject, "side": side, "visits": len(recs), "last_timepoint": last.get("timepoint"),
                    "last_days": last.get("days"), "last_lf": last.get("lesion_pct_head"),
                    "flag": last.get("threshold_flag"),
                    "doubtful": sum(is_set(r.get("registration_doubtful")) for r in recs),
                    "to_check": sum(bool(row_checks(r)) for r in recs)})
    return out


def cohort_index_html(out_dir: PathLike, table, outcomes: Sequence = (), threshold_pct: float | None = None) -> str:
    """The batch's index page: links to each study's ``report.html``, one row per hip, the cohort plots.

    Parameters
    ----------
    out_dir : path-like
        The batch folder: study folders ``<subject>_<side>/`` and the cohort PNGs
        (``lf_trajectories.png``, ``rf_by_followup.png``), which are inlined when present.
    table : pandas.DataFrame
        The tidy cohort table (:func:`lesionvol.batch.cohort_table`).
    outcomes : sequence, optional
        The studies' outcomes (``subject``, ``side``, ``status``, ``error``); failed ones are listed.
    threshold_pct : float, optional
        The LF threshold (the table's ``threshold_pct`` when not given).

    Example
    -------
    >>> import pandas as pd, tempfile
    >>> table = pd.DataFrame({"subject": ["S<1>"], "side": ["right"], "timepoint": ["t0"], "days": [0.0],
    ...                       "lesion_pct_head": [12.5], "threshold_flag": ["at_or_above"]})
    >>> out = Path(tempfile.mkdtemp()); (out / "S<1>_right").mkdir()
    >>> _ = (out / "S<1>_right" / "report.html").write_text("")
    >>> page = cohort_index_html(out, table, threshold_pct=10)
    >>> 'href="S%3C1%3E_right/report.html"' in page, "S&lt;1&gt;" in page
    (True, True)
    """
    out = Path(out_dir)
    if threshold_pct is None:
        values = table["threshold_pct"].dropna() if "threshold_pct" in table else []
        threshold_pct = float(values.iloc[0]) if len(values) else None
    hips = _hip_rows(table)
    cells, classes = [], []
    for hip in hips:
        key = f"{hip['subject']}_{hip['side']}"
        if (out / key / "report.html").is_file():
            link = f'<a href="{esc(quote(key, safe=""))}/report.html">{esc(hip["subject"])}</a>'
        else:  # a study kept from a run that wrote no report
            link = f'{esc(hip["subject"])} <span class="muted">(no report.html: rerun with --overwrite)</span>'
        cells.append([link, esc(hip["side"]), esc(hip["visits"]), esc(hip["last_timepoint"]),
                      esc(format_cell(hip["last_days"], 0)), esc(format_cell(hip["last_lf"], 1)), esc(hip["flag"]),
                      esc(hip["doubtful"]), esc(hip["to_check"])])
        classes.append(("above " if hip["flag"] == "at_or_above" else "") + ("doubtful" if hip["to_check"] else ""))
    header = ["subject (report)", "side", "visits", "last visit", "last days", "last LF %", "threshold flag",
              "doubtful registrations", "visits to check"]
    numeric = {2, 4, 5, 7, 8}
    rows_html = "".join(
        f'<tr class="{c.strip()}">' + "".join(
            f'<td class="{"num" if i in numeric else ("flag" if i == 6 else "")}">{v}</td>' for i, v in enumerate(r))
        + "</tr>" for r, c in zip(cells, classes))
    hip_table = (f"<table><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in header)}</tr></thead>"
                 f"<tbody>{rows_html}</tbody></table>") if hips else "<p>No study produced results.</p>"
    failed = [o for o in outcomes if getattr(o, "status", "") == "failed"]
    failed_html = ("<h2>Failed studies</h2>" + _table(["subject", "side", "error"],
                                                     [[(o.subject, ""), (o.side, ""), (o.error, "")] for o in failed])
                   if failed else "")
    plots = []
    for name, caption in (("lf_trajectories.png", "Each hip's LF against days, with the threshold line."),
                          ("rf_by_followup.png", "Residual fraction RF (% of the baseline lesion) at each follow-up.")):
        path = out / name
        if path.is_file():
            plots.append(_img(path.read_bytes(), name, caption))
    note = ""
    if threshold_pct is not None:
        note = (f'<div class="note"><strong>The {esc(format(threshold_pct, "g"))} % LF threshold is '
                "exploratory</strong>"
                " (not a validated cut-off); each study's report gives its source.</div>")
    n_doubtful = sum(h["doubtful"] > 0 for h in hips)
    n_to_check = sum(h["to_check"] > 0 for h in hips)
    body = "\n".join([
        "<h1>lesionvol cohort</h1>",
        f"<p class=\"muted\">{len(hips)} hip(s) with results, {len(failed)} failed; lesionvol {esc(__version__)}. "
        "Each subject links to its study's report (report.html in its folder).</p>",
        note,
        (f'<div class="warn"><span class="tag">{n_doubtful}</span> hip(s) with doubtful registrations: review their '
         "change maps.</div>") if n_doubtful else "",
        (f'<div class="warn"><span class="tag">{n_to_check}</span> hip(s) with visits to check: each study\'s '
         "report lists what to check under its table.</div>") if n_to_check else "",
        "<h2>Hips</h2>", hip_table, failed_html,
        "<h2>Cohort plots</h2>", "".join(plots) or "<p>No cohort plots (no results).</p>",
    ])
    return _page("lesionvol cohort", body)


def write_cohort_index(out_dir: PathLike, table, outcomes: Sequence = (), threshold_pct: float | None = None) -> Path:
    """Write :func:`cohort_index_html` to ``out_dir/index.html`` (atomically); return its path.

    Example
    -------
    >>> import pandas as pd, tempfile
    >>> write_cohort_index(tempfile.mkdtemp(), pd.DataFrame(columns=["subject", "side"])).name
    'index.html'
    """
    path = Path(out_dir) / "index.html"
    page = cohort_index_html(out_dir, table, outcomes, threshold_pct)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
        apply_umask(tmp)  # a page for others to open: the umask's permissions, not a temporary file's 0600
    return path
