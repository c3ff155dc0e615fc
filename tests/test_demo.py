"""`lesionvol demo`: the whole job (segment, register, measure, report) on the sample series."""

import csv
import json

import pytest

from lesionvol.cli import main
from lesionvol.sample import sample_truth


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "lesionvol-demo"
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    with open(out / "volumes.csv", encoding="utf-8") as handle:
        return out, list(csv.DictReader(handle))


def test_demo_table_matches_the_sample_truth(demo):
    out, rows = demo
    truth = sample_truth()
    assert [r["timepoint"] for r in rows] == ["baseline", "month03", "month12"]
    for i, row in enumerate(rows):
        assert row["mask_source"] == "segmented"
        assert float(row["head_volume_ml"]) == pytest.approx(truth["head_volume_ml"][i], rel=0.04)
        assert float(row["lesion_volume_ml"]) == pytest.approx(truth["lesion_volume_ml"][i], rel=0.10)
        assert float(row["lesion_pct_head"]) == pytest.approx(truth["lesion_pct_head"][i], abs=1.0)
    for i in (1, 2):
        # regenerated bone: baseline lesion no longer lesion, after registration (truth 3.36 and 6.71 mL)
        assert float(rows[i]["regenerated_ml"]) == pytest.approx(truth["regenerated_ml"][i], abs=0.6)
        assert float(rows[i]["new_lesion_ml"]) < 0.3
    assert [r["threshold_flag"] for r in rows] == ["at_or_above", "at_or_above", "below"]
    assert [r["steinberg_extent"] for r in rows] == ["B", "A", "A"]


def test_demo_writes_transforms_and_can_run_again(demo, capsys):
    out, _ = demo
    assert sorted(p.name for p in (out / "transforms").iterdir()) == ["month03.tfm", "month12.tfm"]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["command"] == "demo"
    # a second demo into the same folder replaces its own earlier output without --overwrite
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
