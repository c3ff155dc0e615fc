"""DICOM export (``--dicom-export``): a SEG of the masks and a TID 1500 SR of the measurements.

The inputs are DICOM series made from the bundled sample's scans (a synthetic hip, coronal; the
12-month scan is oblique on a 0.8 mm grid), written one file per slice with the file names in
reverse slice order, so the SEG's frames must be placed by position, not by file order.
"""

import csv
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from lesionvol.cli import main
from lesionvol.errors import InputError
from lesionvol.io import read_mask
from lesionvol.measure import measure_volumes
from lesionvol.sample import sample_mask_paths, sample_series_paths

hd = pytest.importorskip("highdicom")

from test_io import write_dicom_series  # noqa: E402

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_ID, PATIENT_NAME = "ID-12345", "Doe^Jane"
STUDY_UID = "1.2.826.0.1.3680043.2.1125.1.7"
SAMPLE = (0, 2)  # baseline and month 12 of the sample


def series_uid(index: int) -> str:
    return f"1.2.826.0.1.3680043.2.1125.1.6{index}"


def write_mr_series(image: sitk.Image, folder, index: int, number: str = "3", description: str = "COR T1") -> None:
    """An MR series (T1 timing) with the file names in reverse slice order."""
    write_dicom_series(image, folder, patient_name=PATIENT_NAME, series_uid=series_uid(index), prefix=f"s{index}_",
                       extra_tags={"0008|0016": MR_IMAGE_STORAGE, "0020|0052": "1.2.826.0.1.3680043.2.1125.1.99",
                                   "0018|0080": "550", "0018|0081": "12", "0020|0011": number,
                                   "0008|103e": description})
    files = sorted(folder.glob(f"s{index}_*.dcm"))
    for f in files:
        f.rename(f.with_name("tmp_" + f.name))
    for k, f in enumerate(sorted(folder.glob(f"tmp_s{index}_*.dcm"))):
        f.rename(folder / f"s{index}_{len(files) - 1 - k:03d}.dcm")


def sources_in_slice_order(folder, uid: str) -> list:
    """The series' datasets sorted along the slice normal (the order ITK reads them in)."""
    datasets = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    datasets = [ds for ds in datasets if ds.SeriesInstanceUID == uid]
    row, col = np.reshape(np.asarray(datasets[0].ImageOrientationPatient, float), (2, 3))
    normal = np.cross(row, col)
    return sorted(datasets, key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))


def physical_points_of(mask: sitk.Image) -> np.ndarray:
    """LPS mm of every voxel of a mask, sorted."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) > 0)
    points = np.array([mask.TransformIndexToPhysicalPoint([int(i) for i in p[::-1]]) for p in zyx])
    return points[np.lexsort(points.T[::-1])]


def num_items(sr) -> dict:
    """{(tracking identifier, concept meaning): (value, unit)} of the SR's measurement groups."""
    found = {}
    report = sr.ContentSequence
    for container in (item for item in report if item.ValueType == "CONTAINER"):
        for group in container.ContentSequence:
            items = group.ContentSequence
            tracking = next(i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "112039")
            time_point = next(i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == "C2348792")
            for item in items:
                if item.ValueType == "NUM":
                    value = item.MeasuredValueSequence[0]
                    found[(time_point, tracking, item.ConceptNameCodeSequence[0].CodeMeaning)] = (
                        float(value.NumericValue), value.MeasurementUnitsCodeSequence[0].CodeValue)
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``lesionvol analyze`` on two DICOM series with the sample's masks and --dicom-export."""
    root = tmp_path_factory.mktemp("dicom_export")
    folders = []
    for index in SAMPLE:
        folder = root / f"visit{index}"
        write_mr_series(sitk.ReadImage(str(sample_series_paths()[index])), folder, index)
        folders.append(folder)
    out = root / "out"
    args = ["analyze", *map(str, folders), "--out", str(out), "--days", "0", "365", "--no-register", "--quiet",
            "--lesion", *(str(sample_mask_paths("lesion")[i]) for i in SAMPLE),
            "--head", *(str(sample_mask_paths("head")[i]) for i in SAMPLE), "--dicom-export"]
    return root, folders, out, args


@pytest.fixture(scope="module")
def ran(exported):
    root, folders, out, args = exported
    capture = pytest.MonkeyPatch()
    import io
    import sys

    printed = io.StringIO()
    capture.setattr(sys, "stdout", printed)
    capture.setattr(sys, "stderr", printed)
    try:
        code = main(args)
    finally:
        capture.undo()
    return code, printed.getvalue(), out


def test_analyze_writes_a_seg_and_an_sr_per_timepoint_without_printing_the_patient(ran):
    code, printed, out = ran
    assert code == 0, printed
    assert sorted(p.name for p in (out / "dicom").iterdir()) == ["t0_seg.dcm", "t0_sr.dcm", "t1_seg.dcm", "t1_sr.dcm"]
    assert PATIENT_ID not in printed and "Doe" not in printed


@pytest.mark.parametrize("visit", [0, 1])
def test_seg_masks_are_the_nifti_masks_voxel_for_voxel(ran, exported, visit):
    """Frames are matched to the source slices by SOP instance UID, the slices sorted along their
    normal independently of lesionvol; both segments equal the NIfTI masks the run wrote."""
    _, folders, _, _ = exported
    code, printed, out = ran
    assert code == 0, printed
    seg = hd.seg.segread(out / "dicom" / f"t{visit}_seg.dcm")
    sources = sources_in_slice_order(folders[visit], series_uid(SAMPLE[visit]))
    frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in sources], segment_numbers=[1, 2])
    for number, kind in ((1, "head"), (2, "lesion")):
        nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / f"t{visit}_{kind}.nii.gz")))
        assert frames[..., number - 1].shape == nifti.shape
        assert int(frames[..., number - 1].sum()) == int(nifti.sum()) > 500
        assert np.array_equal(frames[..., number - 1] > 0, nifti > 0), f"{kind}: SEG and NIfTI masks differ"
    assert [seg.get_segment_description(n).segment_label for n in (1, 2)] == ["femoral head", "necrotic lesion"]
    assert seg.get_segment_description(1).algorithm_type.value == "MANUAL"  # the reader's masks were given


@pytest.mark.parametrize("visit", [0, 1])
def test_seg_geometry_puts_every_voxel_where_the_nifti_mask_has_it(ran, visit):
    """Read as a volume (highdicom's affine: positions, orientation, pixel spacing and the spacing
    between slices), the lesion segment covers the same LPS points as the NIfTI lesion mask."""
    _, _, out = ran
    seg = hd.seg.segread(out / "dicom" / f"t{visit}_seg.dcm")
    volume = seg.get_volume(segment_numbers=[2])
    ijk = np.argwhere(volume.array[..., 0] > 0)
    points = (volume.affine @ np.c_[ijk, np.ones(len(ijk))].T).T[:, :3]
    points = points[np.lexsort(points.T[::-1])]
    nifti = sitk.ReadImage(str(out / "masks" / f"t{visit}_lesion.nii.gz"))
    expected = physical_points_of(nifti)
    assert points.shape == expected.shape
    np.testing.assert_allclose(points, expected, atol=1e-3)
    # a reader that stacks frames by the spacing between slices gets the scan's (3 and 4 mm here; the
    # source files, written one 2D image each, say 1)
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(nifti.GetSpacing()[2], abs=1e-6)
    assert float(measures.SpacingBetweenSlices) == pytest.approx((3.0, 4.0)[visit], abs=1e-6)
    assert [float(v) for v in measures.PixelSpacing] == pytest.approx(nifti.GetSpacing()[1::-1], abs=1e-6)


def test_sr_holds_the_volumes_of_volumes_csv(ran):
    code, printed, out = ran
    assert code == 0, printed
    with open(out / "volumes.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for visit, row in enumerate(rows):
        seg = pydicom.dcmread(out / "dicom" / f"t{visit}_seg.dcm")
        sr = hd.sr.srread(out / "dicom" / f"t{visit}_sr.dcm")
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        values = num_items(sr)
        label = row["timepoint"]
        expected = {("femoral head", "Volume"): (row["head_volume_ml"], "ml"),
                    ("necrotic lesion", "Volume"): (row["lesion_volume_ml"], "ml"),
                    ("necrotic lesion", "Necrotic lesion volume as % of femoral head"): (row["lesion_pct_head"], "%")}
        assert set(values) == {(label, *key) for key in expected}
        for key, (printed_value, unit) in expected.items():
            value, sr_unit = values[(label, *key)]
            assert f"{value:.6g}" == printed_value and sr_unit == unit  # volumes.csv prints 6 significant digits
        # and they are the reference masks' volumes (the masks given to the run)
        reference = measure_volumes(read_mask(sample_mask_paths("lesion")[SAMPLE[visit]]),
                                    read_mask(sample_mask_paths("head")[SAMPLE[visit]]))
        assert values[(label, "necrotic lesion", "Volume")][0] == pytest.approx(reference.lesion_volume_ml, rel=1e-9)
        assert values[(label, "femoral head", "Volume")][0] == pytest.approx(reference.head_volume_ml, rel=1e-9)
        # the groups reference the SEG written beside it
        references = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                      for container in sr.ContentSequence if container.ValueType == "CONTAINER"
                      for group in container.ContentSequence for item in group.ContentSequence
                      if item.ValueType == "IMAGE" and item.ConceptNameCodeSequence[0].CodeValue == "121191"}
        assert references == {seg.SOPInstanceUID}


def test_seg_and_sr_are_filed_with_the_patient_and_study_of_the_source(ran):
    _, _, out = ran
    for name in ("t0_seg.dcm", "t0_sr.dcm", "t1_seg.dcm", "t1_sr.dcm"):
        ds = pydicom.dcmread(out / "dicom" / name)
        assert (ds.PatientID, str(ds.PatientName), ds.StudyInstanceUID) == (PATIENT_ID, PATIENT_NAME, STUDY_UID)


def test_non_dicom_inputs_are_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "results" / "hip"
    images = [str(p) for p in sample_series_paths()[:2]]
    code = main(["analyze", *images, "--out", str(out), "--no-register", "--quiet", "--dicom-export"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--dicom-export needs DICOM series as inputs" in err
    assert "baseline.nii.gz" in err
    assert list(tmp_path.iterdir()) == []


def test_write_study_refuses_a_non_dicom_result_and_keeps_the_folder_as_it_was(tmp_path):
    """The library path (batch, scripts): the refusal comes inside the atomic folder, so an earlier
    result folder is left exactly as it was."""
    from lesionvol.inputs import AnalysisOptions
    from lesionvol.report import write_study
    from lesionvol.study import analyze

    result = analyze(sample_series_paths()[:1], AnalysisOptions(register=False),
                     lesion_masks=sample_mask_paths("lesion")[:1], head_masks=sample_mask_paths("head")[:1])
    out = tmp_path / "hip"
    write_study(result, out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(InputError, match="t0 was read from 'baseline.nii.gz', not a DICOM series"):
        write_study(result, out, overwrite=True, dicom_export=True)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert not (out / "dicom").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hip"]  # no temporary folder or lock left


def test_the_series_chosen_in_a_folder_of_two_is_the_source_of_the_seg(tmp_path, capsys):
    """A folder holding two series (T1 number 3, PD number 5): with --series 5 the SEG derives from
    series 5's slices and its frames hold the masks."""
    image = sitk.ReadImage(str(sample_series_paths()[0]))
    folder = tmp_path / "both"
    write_mr_series(image, folder, 1, number="3", description="COR T1")
    write_mr_series(image, folder, 2, number="5", description="COR PD")
    out = tmp_path / "out"
    code = main(["analyze", str(folder), "--series", "5", "--out", str(out), "--quiet", "--dicom-export",
                 "--lesion", str(sample_mask_paths("lesion")[0]), "--head", str(sample_mask_paths("head")[0])])
    assert code == 0, capsys.readouterr().err
    seg = hd.seg.segread(out / "dicom" / "t0_seg.dcm")
    assert [s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence] == [series_uid(2)]
    sources = sources_in_slice_order(folder, series_uid(2))
    frames = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in sources], segment_numbers=[2])
    lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "masks" / "t0_lesion.nii.gz")))
    assert np.array_equal(frames[..., 0] > 0, lesion > 0)


def test_a_slice_missing_from_the_source_series_is_refused(tmp_path):
    """The SEG must cover the scan slice for slice: a series with one slice fewer than the grid
    (here: the grid of the full series) is refused instead of shifting the frames."""
    from lesionvol.dicom_export import slice_order

    image = sitk.ReadImage(str(sample_series_paths()[0]))
    write_mr_series(image, tmp_path / "s", 1)
    datasets = [pydicom.dcmread(p) for p in sorted((tmp_path / "s").glob("*.dcm"))]
    order = slice_order(datasets, image)
    assert sorted(order) == list(range(image.GetSize()[2]))
    assert order[0] == image.GetSize()[2] - 1  # files named in reverse: the first file is the last slice
    with pytest.raises(InputError, match="do not match the scan's 40 slices"):
        slice_order(datasets[1:], image)
    shutil.rmtree(tmp_path / "s")


def test_a_batch_study_writes_its_dicom_export_and_is_redone_when_the_export_is_first_asked(exported):
    """The batch task (what each Dask worker runs): a study finished without the export is not
    'current' once the export is asked for; then it is, and a NIfTI study fails with the reason."""
    from lesionvol.batch import run_study
    from lesionvol.inputs import AnalysisOptions, Visit
    from lesionvol.manifest import StudySpec

    root, folders, _, _ = exported
    visits = [Visit(str(folder), label=label, days=day, lesion=str(sample_mask_paths("lesion")[i]),
                    head=str(sample_mask_paths("head")[i]))
              for folder, label, day, i in zip(folders, ("base", "m12"), (0, 365), SAMPLE)]
    spec = StudySpec("S01", "right", visits)
    out, options = root / "batch", AnalysisOptions(register=False)
    assert run_study(spec, out, options).status == "done"
    assert not (out / "S01_right" / "dicom").exists()
    assert run_study(spec, out, options, dicom_export=True).status == "done"  # redone, not skipped
    written = sorted(p.name for p in (out / "S01_right" / "dicom").iterdir())
    assert written == ["base_seg.dcm", "base_sr.dcm", "m12_seg.dcm", "m12_sr.dcm"]
    assert run_study(spec, out, options, dicom_export=True).status == "skipped"
    nifti = StudySpec("S02", "right", [Visit(str(sample_series_paths()[0]), lesion=str(sample_mask_paths("lesion")[0]),
                                             head=str(sample_mask_paths("head")[0]))])
    outcome = run_study(nifti, out, options, dicom_export=True)
    assert outcome.status == "failed" and "needs DICOM series as inputs" in outcome.error
    assert not (out / "S02_right").exists()
