"""DICOM export of a study's results: a SEG of the masks and an SR of the measurements.

For each timepoint whose scan was read from a DICOM series, :func:`write_dicom_export` writes

``<timepoint>_seg.dcm``
    A DICOM Segmentation (binary) on the source series' frames: segment 1 the femoral head
    (head and lesion together, as in ``masks/<timepoint>_head.nii.gz``), segment 2 the necrotic
    lesion. The segments overlap, as the masks do.
``<timepoint>_sr.dcm``
    A Comprehensive 3D SR holding a TID 1500 measurement report: the head volume (mL), the lesion
    volume (mL) and LF (lesion as % of the head), each group referencing its segment of the SEG.

Both objects are derived from the source series, so they carry its patient and study attributes
(name, ID, birth date, sex, study UID, accession number): that is what lets a PACS file them with
the scan, and why the export is opt-in (``lesionvol analyze --dicom-export``). Nothing here logs
or prints those attributes. The writing is done with highdicom (``pip install 'lesionvol[dicom]'``).

Example
-------
>>> check_dicom_inputs(["baseline.nii.gz"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lesionvol.errors.InputError: --dicom-export needs DICOM series as inputs; 'baseline.nii.gz' is not one ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from lesionvol import __version__
from lesionvol.errors import InputError, LesionvolError

if TYPE_CHECKING:  # the module imports without highdicom; the export itself needs it
    import pydicom

    from lesionvol.study import StudyResult, Timepoint

#: Where the export goes inside a study's output folder.
FOLDER = "dicom"
#: Series numbers of the derived series (outside the range scanners give acquisitions).
SEG_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902
#: Private coding scheme for the one quantity with no standard code (LF).
PRIVATE_SCHEME = "99LESIONVOL"
#: The one-line hint when highdicom is missing.
INSTALL_HINT = "DICOM export needs highdicom: pip install 'lesionvol[dicom]'"
#: Largest distance (mm) between a source slice's position and the scan's voxel grid.
POSITION_TOLERANCE_MM = 1e-3


def _highdicom():
    try:
        import highdicom
    except ImportError:
        raise LesionvolError(INSTALL_HINT) from None
    return highdicom


def _is_dicom_file(path: Path) -> bool:
    """True when ``path`` is a file with the DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_source(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder (read as a DICOM series) or a DICOM file.

    Example
    -------
    >>> is_dicom_source("scan.nii.gz")
    False
    """
    path = Path(os.fsdecode(path))
    return path.is_dir() or _is_dicom_file(path)


def check_dicom_inputs(paths: Iterable[str | os.PathLike]) -> None:
    """Refuse, in one line, inputs that are not DICOM series, or a missing highdicom (before any
    work is done).

    Raises
    ------
    InputError
        A path is neither a folder nor a DICOM file.
    LesionvolError
        highdicom is not installed.
    """
    for path in paths:
        if not is_dicom_source(path):
            raise InputError(f"--dicom-export needs DICOM series as inputs; '{os.fsdecode(path)}' is not one "
                             f"(NIfTI, NRRD and MetaImage files carry no DICOM attributes to derive from)")
    _highdicom()


def source_files(timepoint: Timepoint) -> list[str]:
    """The files of the DICOM series a timepoint's scan was read from (the series chosen, if any).

    Raises
    ------
    InputError
        The scan was not read from a DICOM series.
    """
    from lesionvol.io import _dicom_series_files  # the same choice of series as the reader made

    source = Path(timepoint.scan.source) if timepoint.scan.source else None
    if source is None or not is_dicom_source(source):
        shown = f"'{source.name}'" if source is not None else "an image in memory"
        raise InputError(f"--dicom-export needs DICOM series as inputs; {timepoint.label} was read from "
                         f"{shown}, not a DICOM series")
    if source.is_dir():
        return _dicom_series_files(source, timepoint.dicom_series)
    return [str(source)] if _frames(source) > 1 else _dicom_series_files(source.parent, _series_uid(source))


def _frames(path: Path) -> int:
    import pydicom

    return int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames", 1) or 1)


def _series_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def slice_order(datasets: Sequence[pydicom.Dataset], image: sitk.Image) -> list[int]:
    """The slice index (k of the scan's ``[k, row, column]`` array) of each single-frame dataset.

    Each slice is placed by its ImagePositionPatient on the scan's grid, so the order of the files
    does not matter; a slice off the grid, a duplicate, a missing slice or another matrix size is
    refused (the masks would not land on the voxels they were drawn on).

    Example
    -------
    >>> import pydicom
    >>> image = sitk.Image([4, 3, 2], sitk.sitkInt16); image.SetSpacing([1.0, 1.0, 2.5])
    >>> slices = [pydicom.Dataset() for _ in range(2)]
    >>> for ds, z_mm in zip(slices, (2.5, 0.0)):
    ...     ds.ImagePositionPatient, ds.Rows, ds.Columns = [0, 0, z_mm], 3, 4
    >>> slice_order(slices, image)
    [1, 0]
    """
    n_slices = image.GetSize()[2]
    order = []
    for ds in datasets:
        if int(ds.get("NumberOfFrames", 1) or 1) != 1:
            raise InputError("DICOM export supports series of single-frame images (one file per slice), "
                             "not enhanced multi-frame images")
        if (int(ds.Rows), int(ds.Columns)) != (image.GetSize()[1], image.GetSize()[0]):
            raise InputError(f"a DICOM slice of {ds.Rows} x {ds.Columns} pixels is not on the scan's "
                             f"{image.GetSize()[1]} x {image.GetSize()[0]} grid")
        index = np.asarray(image.TransformPhysicalPointToContinuousIndex([float(v) for v in ds.ImagePositionPatient]))
        k = int(round(index[2]))
        off_mm = np.linalg.norm((index - [0, 0, k]) * np.asarray(image.GetSpacing()))
        if off_mm > POSITION_TOLERANCE_MM or not 0 <= k < n_slices:
            raise InputError(f"a DICOM slice lies {off_mm:.3g} mm off the scan's voxel grid")
        order.append(k)
    if sorted(order) != list(range(n_slices)):
        raise InputError(f"the DICOM series' {len(order)} slices do not match the scan's {n_slices} slices "
                         f"one to one")
    return order


def read_sources(timepoint: Timepoint) -> list[pydicom.Dataset]:
    """The source series of a timepoint as pydicom datasets, in the scan's slice order."""
    import pydicom

    datasets = [pydicom.dcmread(name) for name in source_files(timepoint)]
    order = slice_order(datasets, timepoint.scan.image)
    return [ds for _, ds in sorted(zip(order, datasets), key=lambda pair: pair[0])]


def _algorithm(timepoint: Timepoint, kind: str, options_segmenter: str):
    """(algorithm type, algorithm identification) of one mask: manual when a reader drew it."""
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    definition = timepoint.head_definition if kind == "head" else timepoint.lesion_definition
    if definition == "as drawn by the user":
        return hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    family = codes.cid7162.ArtificialIntelligence if options_segmenter.startswith("onnx:") \
        else codes.cid7162.MorphologicalOperations
    identification = hd.AlgorithmIdentificationSequence(
        name="lesionvol", family=family, version=__version__,
        parameters={"segmenter": options_segmenter.split(":")[0], "definition": definition[:64]})
    return hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, identification


def segmentation(timepoint: Timepoint, sources: Sequence[pydicom.Dataset], segmenter: str = "classical"):
    """A binary DICOM SEG of a timepoint's head (segment 1) and lesion (segment 2) masks.

    Parameters
    ----------
    timepoint : Timepoint
        Its ``head`` and ``lesion`` masks are on its scan's grid (native space).
    sources : sequence of pydicom.Dataset
        The scan's DICOM slices in slice order (:func:`read_sources`): frame k of the SEG is
        derived from ``sources[k]`` and holds slice k of the masks.
    segmenter : str
        ``AnalysisOptions.segmenter``, recorded as the algorithm of the masks lesionvol made.

    Returns
    -------
    highdicom.seg.Segmentation
        Empty frames are left out, as highdicom does by default.
    """
    hd = _highdicom()
    from pydicom.valuerep import format_number_as_ds
    from pydicom.sr.codedict import codes

    head = sitk.GetArrayFromImage(timepoint.head).astype(bool)
    lesion = sitk.GetArrayFromImage(timepoint.lesion).astype(bool)
    descriptions = []
    for number, (kind, label, category, kind_code) in enumerate((
            ("head", "femoral head", codes.SCT.AnatomicalStructure, codes.SCT.FemoralHead),
            ("lesion", "necrotic lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Necrosis)), 1):
        algorithm_type, identification = _algorithm(timepoint, kind, segmenter)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind_code, algorithm_type=algorithm_type,
            algorithm_identification=identification, tracking_uid=hd.UID(), tracking_id=label,
            anatomic_regions=[codes.SCT.FemoralHead]))
    seg = hd.seg.Segmentation(
        source_images=list(sources), pixel_array=np.stack([head, lesion], axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="lesionvol", manufacturer_model_name="lesionvol",
        software_versions=__version__, device_serial_number="none", content_label="ONFH",
        content_description=f"femoral head and necrotic lesion, {timepoint.label}"[:64],
        # a head with no lesion (healed) still gets its empty lesion segment's frames
        omit_empty_frames=bool(head.any() and lesion.any()))
    # highdicom copies the source's SpacingBetweenSlices, which writers that save one 2D image per
    # file (ITK, GDCM) fill with 1; readers that rebuild a volume from the SEG trust it. Write the
    # spacing the slices' positions give, as the scan was read.
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.SpacingBetweenSlices = format_number_as_ds(float(timepoint.scan.image.GetSpacing()[2]))
    return seg


def measurement_report(timepoint: Timepoint, seg, sources: Sequence[pydicom.Dataset], side: str = ""):
    """A Comprehensive 3D SR holding a TID 1500 report of one timepoint's measurements.

    Two volumetric groups (TID 1411), each referencing its segment of ``seg``: the femoral head
    with its volume (mL), and the necrotic lesion with its volume (mL) and LF, the lesion as a
    percentage of the head (``lesion_pct_head``; a private code, ``99LESIONVOL``, as no standard
    one exists). The time point (TID 1502) is the timepoint's label.

    Parameters
    ----------
    timepoint : Timepoint
        Its ``volumes`` are those of ``volumes.csv``.
    seg : highdicom.seg.Segmentation
        The timepoint's SEG (:func:`segmentation`).
    sources : sequence of pydicom.Dataset
        The scan's DICOM slices (the SR's evidence with the SEG).
    side : str
        ``left`` or ``right``: the laterality of the finding site (left out otherwise).
    """
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    millilitre = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
    lf_name = hd.sr.CodedConcept("lesion_pct_head", PRIVATE_SCHEME, "Necrotic lesion volume as % of femoral head")
    laterality = {"left": codes.SCT.Left, "right": codes.SCT.Right}.get(side)
    site = [hd.sr.FindingSite(codes.SCT.FemoralHead, laterality=laterality)]
    volumes = timepoint.volumes
    groups = []
    for number, name, finding, measurements in (
            (1, "femoral head", codes.SCT.FemoralHead,
             [(codes.SCT.Volume, volumes.head_volume_ml, millilitre)]),
            (2, "necrotic lesion", codes.SCT.Necrosis,
             [(codes.SCT.Volume, volumes.lesion_volume_ml, millilitre),
              (lf_name, volumes.lesion_pct_head, codes.UCUM.Percent)])):
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name),
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, segment_number=number),
            time_point_context=hd.sr.TimePointContext(time_point=timepoint.label),
            finding_type=finding, finding_sites=site,
            measurements=[hd.sr.Measurement(name=concept, value=float(value), unit=unit)
                          for concept, value, unit in measurements if np.isfinite(value)]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="lesionvol", manufacturer_name="lesionvol", model_name=__version__))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("113091000", "SCT", "Magnetic resonance imaging"),
        imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report[0], series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="lesionvol", is_complete=True, is_final=False, is_verified=False)


#: Attributes whose values never appear in a message (a refusal quotes highdicom's reason).
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber",
               "ReferringPhysicianName", "InstitutionName", "StudyID")


def _without_patient(text: str, sources: Sequence[pydicom.Dataset]) -> str:
    """``text`` on one line, with any value of :data:`IDENTIFYING` in the sources replaced by ``***``."""
    text = " ".join(text.split())
    values = {str(ds.get(keyword, "") or "") for ds in sources[:1] for keyword in IDENTIFYING}
    for value in sorted((v for v in values if len(v.strip()) > 1), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def write_dicom_export(result: StudyResult, folder: str | os.PathLike) -> list[Path]:
    """Write ``<timepoint>_seg.dcm`` and ``<timepoint>_sr.dcm`` for every timepoint into ``folder``.

    Call it inside the output folder's atomic block (:func:`lesionvol.report.write_study` does,
    with ``dicom_export=True``): a refusal then leaves nothing behind.

    Parameters
    ----------
    result : StudyResult
        Every timepoint's scan must have been read from a DICOM series.
    folder : path-like
        Created if missing.

    Returns
    -------
    list of Path
        The files written, SEG then SR per timepoint.

    Raises
    ------
    InputError
        A scan was not read from a DICOM series, or its slices do not match its grid.
    LesionvolError
        highdicom is not installed.

    Example
    -------
    >>> from lesionvol.study import analyze
    >>> result = analyze(["/data/hip/cor_t1_baseline", "/data/hip/cor_t1_month3"])  # doctest: +SKIP
    >>> [path.name for path in write_dicom_export(result, "out/dicom")]  # doctest: +SKIP
    ['t0_seg.dcm', 't0_sr.dcm', 't1_seg.dcm', 't1_sr.dcm']
    """
    _highdicom()
    for tp in result.timepoints:  # refuse before writing anything
        source_files(tp)
    side = str(result.timepoints[0].location.get("location_side", "")) if result.timepoints else ""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for tp in result.timepoints:
        sources = read_sources(tp)
        try:
            seg = segmentation(tp, sources, result.options.segmenter)
            sr = measurement_report(tp, seg, sources, side)
        except (ValueError, AttributeError, TypeError, KeyError) as exc:  # highdicom's refusals of a series
            raise InputError(f"{tp.label}: the DICOM series cannot be the source of a SEG/SR "
                             f"({_without_patient(str(exc), sources)[:200]})") from None
        for suffix, dataset in (("seg", seg), ("sr", sr)):
            path = folder / f"{tp.label}_{suffix}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            written.append(path)
    return written
