"""Days filled when the reader has not typed them: from the DICOM dates (study date, else
acquisition date, counted from the first visit), or the bundled sample's days."""

from __future__ import annotations

import pytest
import SimpleITK as sitk
from _napari_testing import open_sample, wait_for_worker

from lesionvol.sample import sample_series_paths


def _dock(viewer):
    from napari_lesionvol._widget import ReviewWidget

    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    return widget


def test_days_from_the_dicom_dates_of_each_visit(make_viewer, tmp_path):
    test_io = pytest.importorskip("test_io")
    base, month03 = (sitk.ReadImage(str(p)) for p in sample_series_paths()[:2])
    # the baseline with a study date; the 3-month scan without one but with its acquisition date
    test_io.write_dicom_series(base, tmp_path / "T1_cor_0", study_date="20260301",
                               series_uid="1.2.826.0.1.3680043.2.1125.1.50")
    test_io.write_dicom_series(month03, tmp_path / "T1_cor_3", study_date="",
                               extra_tags={"0008|0022": "20260531"}, series_uid="1.2.826.0.1.3680043.2.1125.1.51")
    viewer = make_viewer()
    for folder in ("T1_cor_0", "T1_cor_3"):
        viewer.open(str(tmp_path / folder), plugin="lesionvol")
    widget = _dock(viewer)
    assert [image for image, _ in widget.series.chosen()] == ["T1_cor_0", "T1_cor_3"]
    assert widget.known_days() == ([0.0, 91.0], "DICOM dates")
    assert widget.days.placeholderText() == "0, 91 (from DICOM dates)"
    widget.register_box.setChecked(False)  # same grid: compared voxel for voxel
    widget.run_button.click()
    wait_for_worker(widget)
    assert [r["days"] for r in widget.table_rows()] == [0, 91]
    # another choice of visits: counted from the first chosen
    widget.set_series(["T1_cor_3", "T1_cor_0"])
    assert widget.known_days() == ([0.0, -91.0], "DICOM dates")


def test_days_from_the_sample_follow_the_visits_chosen(make_viewer):
    viewer = make_viewer()
    open_sample(viewer)
    widget = _dock(viewer)
    assert widget.known_days() == ([0.0, 91.0, 365.0], "the sample")
    widget.set_series(["month03", "month12"])
    assert widget.known_days() == ([0.0, 274.0], "the sample")
    assert widget.days.placeholderText() == "0, 274 (from the sample)"
    # a layer that is not the sample's file (same pixels, no source): nothing is known
    layer = viewer.layers["month12"]
    viewer.add_image(layer.data, name="copy", scale=layer.scale, translate=layer.translate)
    widget.set_series(["month03", "copy"])
    assert widget.known_days() == (None, "")
    assert "(from" not in widget.days.placeholderText()
