"""Attacks on a user's data, each as a hostile but realistic user would try it: names that
would become paths, folders that are not ours, values that are not numbers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lesionvol.cli import main
from lesionvol.errors import InputError
from lesionvol.inputs import Visit
from lesionvol.manifest import read_manifest
from lesionvol.sample import sample_mask_paths, sample_series_paths

IMAGES = [str(p) for p in sample_series_paths()[:2]]
MASKS = ["--lesion", *map(str, sample_mask_paths("lesion")[:2]), "--head", *map(str, sample_mask_paths("head")[:2])]
BAD_NAMES = ["..", "../../x", "a/b", "a\\b", "x\0y", "line\nbreak", "y" * 300, ".hidden", "=1+1",
             "=HYPERLINK(\"http://x\")", "@SUM(A1)", "+2-3", " base", ""]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_timepoint_label_never_becomes_a_path(tmp_path, capsys, bad):
    work = tmp_path / "work"
    work.mkdir()
    before = _files(tmp_path)
    code = main(["analyze", *IMAGES, *MASKS, "--labels", "base", bad, "--no-register", "--quiet",
                 "--out", str(work / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot name a file" in err and err.count("\n") == 1
    assert _files(tmp_path) == before  # nothing written anywhere


@pytest.mark.parametrize("bad", ["../../../data/P2/base", "=HYPERLINK(\"x\")", "a b"])
def test_a_manifest_timepoint_or_subject_never_becomes_a_path(tmp_path, bad):
    (tmp_path / "m.csv").write_text(f"subject,side,timepoint,days,image\nP1,R,{bad},0,a.nii\n"
                                    f"{bad},R,t0,0,a.nii\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_manifest(tmp_path / "m.csv")
    assert "line 2: timepoint" in str(caught.value) and "line 3: subject" in str(caught.value)


def test_a_visit_refuses_a_bad_label_in_the_library_too():
    for bad in ("../escape", "-2+3"):
        with pytest.raises(InputError, match="cannot name a file"):
            Visit("a.nii.gz", label=bad)
    assert Visit("a.nii.gz", label="3mo_v2.1+").label == "3mo_v2.1+"
    assert os.path.basename(Visit("a.nii.gz").files()[0]) == "a.nii.gz"
