"""The study report (report.html) and the cohort index (index.html): one self-contained file each,
nothing external, every picture a valid inlined PNG, the numbers a reader signs off, user text
escaped; and the page renders in a real headless browser (Debian's chromium) without loading
anything."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lesionvol import study
from lesionvol.html_report import study_html, write_cohort_index, write_study_html
from lesionvol.inputs import AnalysisOptions
from lesionvol.sample import sample_mask_paths, sample_series_paths

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
EVIL = '<script>alert("x")</script>&<b>'


class _Page(HTMLParser):
    """Every tag with its attributes, the text, and the content of <style> elements."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)

    def all(self, tag: str) -> list[dict]:
        return [attrs for t, attrs in self.tags if t == tag]


def _png_of_data_uri(uri: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix), uri[:60]
    png = base64.b64decode(uri[len(prefix):], validate=True)
    assert png.startswith(PNG_MAGIC)
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:  # decodes: a valid PNG, not just its magic bytes
        image.load()
        assert image.format == "PNG" and min(image.size) > 50
    return png


def assert_self_contained(text: str) -> _Page:
    """No script, no stylesheet link, no frame or object, every <img> an inlined PNG, every link
    relative, no url()/@import in the CSS."""
    page = _Page(text)
    assert "<script" not in text.lower()
    assert not page.all("script") and not page.all("link")
    for tag in ("iframe", "object", "embed", "video", "audio", "source", "base", "form"):
        assert not page.all(tag), tag
    assert 'src="http' not in text and 'href="http' not in text
    for tag, attrs in page.tags:
        for name in ("src", "srcset", "poster", "data", "action", "background"):
            if name in attrs:
                assert tag == "img" and name == "src", (tag, name)
        if "href" in attrs:
            href = attrs["href"]
            assert tag == "a" and ":" not in href.split("/")[0] and not href.startswith("//"), href
        assert "style" not in attrs or "url(" not in attrs["style"]
    for img in page.all("img"):
        _png_of_data_uri(img["src"])
        assert img.get("alt")
    css = "".join(page.styles)
    assert "url(" not in css and "@import" not in css
    return page


@pytest.fixture(scope="module")
def result() -> study.StudyResult:
    return study.analyze(sample_series_paths(), AnalysisOptions(register=False), days=[0, 90, 365],
                         lesion_masks=sample_mask_paths("lesion"), head_masks=sample_mask_paths("head"))


@pytest.fixture(scope="module")
def report(result, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("study")
    batch = {"batch": {"subject": "S01", "side": "right"}}
    return write_study_html(result, folder / "report.html", extra_summary=batch)


def test_report_is_one_self_contained_file(report):
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]
    text = report.read_text(encoding="utf-8")
    page = assert_self_contained(text)
    # QC slice per timepoint, the change overlay of the one follow-up on the baseline grid, the LF plot
    assert len(page.all("img")) == 3 + 1 + 1
    assert "Content-Security-Policy" in text  # the browser itself would refuse anything external


def test_report_shows_the_numbers_to_sign_off(report, result):
    page = _Page(report.read_text(encoding="utf-8"))
    text = " ".join("".join(page.text).split())
    rows = result.rows()
    for row in rows:
        assert f"{row['lesion_pct_head']:.1f}" in text
        assert row["threshold_flag"] in text
        assert row["steinberg_extent"] in text
    assert [r["threshold_flag"] for r in rows] == ["at_or_above", "at_or_above", "below"]
    # the rows above the threshold are highlighted, LF in its column
    cells = [t for t in page.text if t.strip()]
    assert all(f"{row['lesion_pct_head']:.1f}" in cells for row in rows)
    assert sum(1 for _, a in page.tags if a.get("class") == "above") == 2
    assert f"{rows[1]['regenerated_ml']:.3f}" in text and f"{rows[1]['new_lesion_ml']:.3f}" in text
    # the threshold is called exploratory, with its source
    assert "10 % LF threshold is exploratory" in text
    assert " ".join(result.summary()["threshold"]["source"].split()) in text
    assert f"Last visit t2: LF {rows[-1]['lesion_pct_head']:.1f} % of the femoral head, threshold flag below" in text
    assert "lesion_pct_head" in text and "steinberg_extent" in text  # definitions
    assert "S01 right" in text


def test_provenance_names_files_never_paths(report, result):
    text = report.read_text(encoding="utf-8")
    for path in sample_series_paths() + sample_mask_paths("lesion"):
        assert path.name in text
        assert str(path.parent) not in text
    for tp in result.timepoints:
        assert tp.scan.sha256 in text
    assert "register" in text and "threshold_pct" in text  # the options


def test_text_is_escaped(result, monkeypatch):
    """Labels are checked by the core, so the user text is injected through the row values."""
    original = study.StudyResult.rows

    def evil_rows(self):
        rows = original(self)
        rows[0]["mask_source"] = EVIL
        rows[1]["threshold_flag"] = EVIL
        return rows

    monkeypatch.setattr(study.StudyResult, "rows", evil_rows)
    monkeypatch.setattr(study, "THRESHOLD_SOURCE", "Source " + EVIL)
    monkeypatch.setitem(result.timepoints[1].registration_qc, "registration_doubtful", True)
    monkeypatch.setitem(result.timepoints[1].registration_qc, "registration_doubtful_reason", EVIL)
    text = study_html(result, title=EVIL)
    assert EVIL not in text and "<script" not in text and "<b>" not in text
    assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;b&gt;") >= 5
    page = _Page(text)
    assert EVIL in page.text  # shown as text, exactly
    # the doubtful registration is highlighted and named
    assert [a for t, a in page.tags if t == "th" and a.get("class") == "bad"] == [{"class": "bad"}]
    assert sum(1 for t, a in page.tags if t == "td" and "bad" in a.get("class", "").split()) >= 3
    assert "DOUBTFUL" in page.text and "1 doubtful" in " ".join(page.text)


def _cohort(tmp_path: Path, result, report: Path) -> tuple[Path, pd.DataFrame]:
    from lesionvol.cohort_plots import plot_lf_trajectories, plot_rf_by_followup

    out = tmp_path / "batch"
    frames = []
    for subject, side in (("S01", "right"), ("S<2>", "left")):
        frame = pd.DataFrame(result.rows())
        frame.insert(0, "subject", subject)
        frame.insert(1, "side", side)
        frames.append(frame)
        (out / f"{subject}_{side}").mkdir(parents=True)
        shutil.copy(report, out / f"{subject}_{side}" / "report.html")
    table = pd.concat(frames, ignore_index=True)
    # as read back from volumes.csv: booleans as text, a missing value for the baseline
    table["registration_doubtful"] = [None, "False", "True", None, "True", "True"]
    table["head_size_doubtful"] = ["True", "False", "False", "False", "False", None]    # S01's baseline head
    table["head_dome_marrow_fraction"] = [0.1, 0.9, 0.9, 0.9, 0.9, None]
    plot_lf_trajectories(table, out / "lf_trajectories.png")
    plot_rf_by_followup(table, out / "rf_by_followup.png")
    return out, table


def test_cohort_index(tmp_path, result, report):
    from types import SimpleNamespace

    out, table = _cohort(tmp_path, result, report)
    failed = SimpleNamespace(subject="S3", side="left", status="failed", error="missing file(s): " + EVIL)
    index = write_cohort_index(out, table, [failed], threshold_pct=10)
    assert index == out / "index.html"
    text = index.read_text(encoding="utf-8")
    page = assert_self_contained(text)
    assert len(page.all("img")) == 2  # both cohort plots, inlined
    links = [a["href"] for a in page.all("a")]
    assert links == ["S01_right/report.html", "S%3C2%3E_left/report.html"]
    for link in links:  # relative links that resolve to the study reports
        from urllib.parse import unquote

        assert (out / unquote(link)).is_file()
    last_lf = f"{result.rows()[-1]['lesion_pct_head']:.1f}"     # the sample's last visit, about 4 %
    rows = [[c.strip() for c in r] for r in _table_rows(text)]
    # doubtful registrations, then visits with something to check (the baseline's head, read back as text)
    assert rows[0] == ["S01", "right", "3", "t2", "365", last_lf, "below", "1", "2"]
    assert rows[1] == ["S<2>", "left", "3", "t2", "365", last_lf, "below", "2", "2"]
    assert '<span class="tag">2</span> hip(s) with visits to check' in text
    assert rows[2] == ["S3", "left", "missing file(s): " + EVIL]
    assert EVIL not in text and "S&lt;2&gt;" in text
    assert "10 % LF threshold is exploratory" in " ".join(page.text)


def _table_rows(text: str) -> list[list[str]]:
    """The text of each body row's cells, every table of the page in order."""

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                self.rows.append([])
            elif tag == "td":
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "td" and self.cell is not None:
                self.rows[-1].append(self.cell)
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(text)
    return [r for r in parser.rows if r]


# ----------------------------------------------------------------------------- a real browser
def _page_requests(netlog: Path) -> list[str]:
    """URLs the page asked the network for (Chromium's own background requests left out)."""
    text = netlog.read_text(encoding="utf-8", errors="replace").rstrip()
    try:
        log = json.loads(text)
    except ValueError:  # a log cut short at exit lacks its closing brackets
        log = json.loads(text.rstrip(",") + "]}")
    return [event["params"]["url"] for event in log["events"]
            if "url" in event.get("params", {})
            and event["params"].get("network_isolation_key", "").startswith("file://")]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install -y chromium); "
                                             "the browser rendering check needs it")
def test_renders_in_headless_chromium(tmp_path, result, report):
    from PIL import Image

    out, table = _cohort(tmp_path, result, report)
    pages = [report, write_cohort_index(out, table)]
    for n, page in enumerate(pages):
        # the page without its Content-Security-Policy: a reference to anything external would then
        # really be requested, and show in the network log
        bare = tmp_path / f"bare{n}.html"
        text = page.read_text(encoding="utf-8")
        start = text.index('<meta http-equiv="Content-Security-Policy"')
        bare.write_text(text[:start] + text[text.index(">", start) + 1:], encoding="utf-8")
        for target in (page, bare):
            shot, netlog = tmp_path / f"{target.stem}{n}.png", tmp_path / f"{target.stem}{n}.json"
            run = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", f"--log-net-log={netlog}", f"--screenshot={shot}",
                 "--window-size=1200,1600", target.resolve().as_uri()],
                capture_output=True, text=True, timeout=180, cwd=tmp_path)
            assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
            with Image.open(shot) as image:
                pixels = np.asarray(image.convert("L"), dtype=float)
            assert pixels.shape == (1600, 1200)
            assert pixels.std() > 20  # text, tables and pictures, not a blank page
            assert (pixels < 80).mean() > 0.002  # dark pixels: text (and the MR images) drawn
            assert _page_requests(netlog) == [], "the page requested something from the network"
