"""A result folder reopened in the review widget, edited, and its corrections saved back."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from _napari_testing import process_events_for, wait_for_worker

from lesionvol.io import read_mask
from lesionvol.sample import sample_mask_paths, sample_series_paths


def _study(tmp_path):
    from lesionvol.cli import main

    scans = tmp_path / "scans" / "hip"
    scans.mkdir(parents=True)
    images = [shutil.copy(p, scans / p.name) for p in sample_series_paths()]
    out = tmp_path / "out"
    assert main(["analyze", *map(str, images), "--lesion", *map(str, sample_mask_paths("lesion")),
                 "--head", *map(str, sample_mask_paths("head")), "--no-register", "--quiet", "--out", str(out)]) in (0, None)
    return out, tmp_path / "scans"


def test_open_result_folder_edit_and_save_corrections(make_viewer, tmp_path):
    from napari_lesionvol._widget import ReviewWidget

    out, scans = _study(tmp_path)
    masks_before = {p.name: p.read_bytes() for p in (out / "masks").iterdir()}
    viewer = make_viewer()
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    assert widget.open_study_button.text() == "Open result folder…"
    assert not widget.save_corrections_button.isEnabled()

    study = widget.open_result_folder(out, scans)
    assert study is not None, widget.last_error
    labels = [visit.label for visit in study.visits]
    assert labels == ["t0", "t1", "t2"] and not study.missing
    # the visit rows hold the images and the study's masks (Run measures them as given)
    chosen = widget.series.chosen()
    assert [image for image, _ in chosen] == labels
    assert [masks for _, masks in chosen] == [{"lesion": f"{tp}_lesion", "head": f"{tp}_head"} for tp in labels]
    assert widget.table.rowCount() == 3 and widget.table.item(1, 0).text() == "t1"
    assert widget.save_corrections_button.isEnabled()

    # nothing edited: nothing saved
    assert widget.save_corrections() == []
    assert not (out / "corrections").exists()

    # erase the upper half of t1's lesion
    layer = viewer.layers["t1_lesion"]
    data = np.array(layer.data, copy=True)
    before = int(np.count_nonzero(data))
    zs = np.nonzero(data.any(axis=(1, 2)))[0]
    cut = zs[len(zs) // 2]
    erased = int(np.count_nonzero(data[cut:]))
    data[cut:] = 0
    layer.data = data
    assert erased > 0

    saved = widget.save_corrections()
    assert [(e["timepoint"], e["kind"]) for e in saved] == [("t1", "lesion")]
    path = out / "corrections" / "t1_lesion.nii.gz"
    assert path.is_file()
    corrected = read_mask(path)
    assert int(np.count_nonzero(sitk.GetArrayViewFromImage(corrected))) == before - erased
    record = json.loads((out / "corrections" / "corrections.json").read_text(encoding="utf-8"))
    assert record["t1"]["lesion"]["voxels_changed"] == erased
    assert record["t1"]["lesion"]["volume_ml"] < record["t1"]["lesion"]["volume_before_ml"]
    assert "t1 lesion: " + str(erased) + " voxels changed" in widget.status.text()
    # masks/ untouched
    assert {p.name: p.read_bytes() for p in (out / "masks").iterdir()} == masks_before

    # Run re-measures the masks as given (no segmentation), the edit included
    worker = widget.run(register=False)
    assert worker is not None, widget.last_error
    wait_for_worker(widget)
    rows = widget.table_rows()
    assert [r["mask_source"] for r in rows] != [] and rows[1]["lesion_volume_ml"] < study.rows[1]["lesion_volume_ml"]
    assert abs(rows[1]["lesion_volume_ml"] - record["t1"]["lesion"]["volume_ml"]) < 1e-6
    process_events_for(0.1)


def test_missing_image_is_named_in_the_status_line(make_viewer, tmp_path):
    from napari_lesionvol._widget import ReviewWidget

    out, scans = _study(tmp_path)
    (scans / "hip" / "month12.nii.gz").unlink()
    shutil.copy(sample_series_paths()[0], scans / "hip" / "month12.nii.gz")  # same name, other content
    viewer = make_viewer()
    widget = ReviewWidget(viewer)
    study = widget.open_result_folder(out, scans)
    assert study.missing == ["t2 (month12.nii.gz)"]
    assert "Image not found: t2 (month12.nii.gz)" in widget.status.text()
    assert [image for image, _ in widget.series.chosen()] == ["t0", "t1"]
    # an image layer already open (same SHA-256) is used; nothing else is needed
    viewer2 = make_viewer()
    from napari_lesionvol._reader import read_layers

    data, attributes, _ = read_layers(str(sample_series_paths()[2]))[0]
    viewer2.add_image(data, **{**attributes, "name": "M12"})
    widget2 = ReviewWidget(viewer2)
    study2 = widget2.open_result_folder(out, None)
    assert [v.image.name if v.image is not None else None for v in study2.visits] == [None, None, "M12"]
    assert "t0 (baseline.nii.gz); t1 (month03.nii.gz)" in widget2.status.text()


def test_not_a_study_folder_is_said_not_raised(make_viewer, tmp_path):
    from napari_lesionvol._widget import ReviewWidget

    viewer = make_viewer()
    widget = ReviewWidget(viewer)
    assert widget.open_result_folder(tmp_path) is None
    assert "summary.json" in widget.last_error
    assert widget.save_corrections() is None


def test_doubtful_registrations_come_first_in_the_status_line(make_viewer, tmp_path):
    import csv

    from napari_lesionvol._widget import ReviewWidget

    out, scans = _study(tmp_path)
    with (out / "volumes.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["registration_doubtful"] = str(row["timepoint"] == "t2")
        row["registration_doubtful_reason"] = "low overlap" if row["timepoint"] == "t2" else ""
    with (out / "volumes.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    widget = ReviewWidget(make_viewer())
    study = widget.open_result_folder(out, scans)
    assert study.doubtful == ["t2 (low overlap)"]
    text = widget.status.text()
    assert text.index("Check the registration of t2 (low overlap)") < text.index("Opened out")
    assert widget.table.item(2, 0).text().startswith("\u26a0")


def test_a_segmented_study_opens_with_the_oedema_next_to_its_lesion(make_viewer, tmp_path):
    """`lesionvol analyze` on a hip whose lesion has a 6 mm marrow-oedema halo (phantom family B) writes the
    oedema next to the lesion (flagged `lesion_margin_doubtful`); reopened for review it is a cyan layer of
    its own, the voxels written, beside the lesion and head layers that are measured and corrected."""
    from lesionvol.cli import main
    from lesionvol.io import write_image
    from lesionvol.measure import mask_volume_ml
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan
    from napari_lesionvol._reader import OEDEMA_COLOR
    from napari_lesionvol._study_folder import open_study

    hip = Hip("left", head_radius_mm=26.0, lesion=Lesion(pct_of_head=18.0, oedema_halo_mm=6.0, shape_seed=9),
              neck_shaft_deg=130.0, anteversion_deg=13.0)
    image, _ = make_hip_scan(HipScanSpec(left=hip, field="left", anatomy_seed=9), seed=9)
    scans = tmp_path / "scans"
    scans.mkdir()
    write_image(image, scans / "hip.nii.gz")
    out = tmp_path / "out"
    assert main(["analyze", str(scans / "hip.nii.gz"), "--quiet", "--out", str(out)]) in (0, None)
    written = read_mask(out / "masks" / "t0_oedema.nii.gz")
    with open(out / "volumes.csv", encoding="utf-8") as handle:
        row = next(csv.DictReader(handle))
    assert row["lesion_margin_doubtful"] == "True"
    assert mask_volume_ml(written) == pytest.approx(float(row["margin_oedema_ml"]), abs=1e-5)   # 4.00 mL
    assert float(row["margin_oedema_ml"]) > 0.2 * float(row["lesion_volume_ml"])              # of 13.25 mL

    viewer = make_viewer()
    study = open_study(viewer, out, scans)
    layer = study.visits[0].oedema
    assert layer is not None and layer.name == "t0_oedema" and not study.missing
    assert tuple(layer.colormap.map(np.array([1]))[0]) == OEDEMA_COLOR
    assert int((np.asarray(layer.data) != 0).sum()) == int(sitk.GetArrayViewFromImage(written).sum())
    assert set(study.visits[0].masks) == {"lesion", "head"}
