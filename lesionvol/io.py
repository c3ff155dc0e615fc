"""Reading scans and masks, writing images safely, and nibabel conversion.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage
(``.mha``, ``.mhd``) and DICOM series (a folder, or one file of the series), all
through SimpleITK so that spacing, origin and direction cosines are kept. Nothing
identifying the patient is read out of DICOM headers: only the study date, which
turns into "days since baseline", and what tells the contrast (timing, sequence, series
description; from a NIfTI's BIDS sidecar too, :func:`sidecar_tags`).

A volume is only as right as the voxel grid it is counted on, and ITK reads several
broken grids without a word. So the geometry is checked against the other sources the
file carries, and refused (one line, :class:`~lesionvol.errors.InputError`) when they
disagree, before any voxel is read where the header alone tells:

* a DICOM series whose slice positions (ImagePositionPatient along the slice normal)
  are unevenly spaced, a missing slice above all (ITK reads it on the mean spacing);
* a NIfTI whose pixdim disagrees with its sform (ITK trusts pixdim);
* direction cosines that are not a rotation (shear or scale in an orientation matrix);
* complex voxels; more than :data:`MAX_IMAGE_BYTES` of voxels declared; fewer bytes in
  an uncompressed file than its header declares;
* a file name that is not valid UTF-8 (ITK aborts the process on one).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import grid_difference
from lesionvol.outdir import apply_umask

#: File suffixes of the formats lesionvol reads (lower case; the longer of two that share an
#: ending first, so that ``.nii.gz`` wins over ``.nii``). A DICOM series can also be given as
#: its folder. Matched case-insensitively, by :func:`split_suffix`.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")

#: Most bytes of voxel data lesionvol reads from one image, as its header declares them
#: (checked before any voxel is read: a small file can declare terabytes).
MAX_IMAGE_BYTES = 2 * 1024**3
#: Two sources of a voxel size (NIfTI pixdim and sform) agree when within this fraction.
SPACING_RTOL = 1e-3
#: A DICOM slice gap may differ from the series' median gap by this fraction of it.
SLICE_GAP_RTOL = 0.01
#: Largest departure from orthonormal (|D^T D - I|) accepted in direction cosines.
DIRECTION_TOLERANCE = 1e-4
#: Most bytes read of a NRRD or MetaImage text header.
MAX_TEXT_HEADER_BYTES = 1 << 20
#: Most dimensions a NRRD or MetaImage header may declare (checked before ITK, which hangs or
#: crashes on a negative or huge one; lesionvol itself needs 3, or 4 with a chosen volume).
MAX_DIMENSIONS = 5
#: Most data files a detached header (``.mhd``/``.nhdr`` LIST or pattern) may name.
MAX_DATA_FILES = 100_000

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_TEXT_HEADER_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: DICOM attributes kept with a scan: dates (for days since baseline) and what tells the contrast
#: (lesionvol.sequence). Nothing that identifies the patient is read.
DICOM_KEYWORDS = {"0008|0020": "StudyDate", "0008|0021": "SeriesDate", "0008|0022": "AcquisitionDate",
                  "0018|0020": "ScanningSequence", "0018|0021": "SequenceVariant", "0018|0022": "ScanOptions",
                  "0018|0080": "RepetitionTime", "0018|0081": "EchoTime", "0018|0082": "InversionTime",
                  "0018|1314": "FlipAngle", "0008|103e": "SeriesDescription", "0018|1030": "ProtocolName"}

#: Keys read from a BIDS sidecar (``scan.json`` beside ``scan.nii.gz``, as dcm2niix writes it) into a scan's
#: :attr:`Scan.dicom_tags`: the same attributes by the same keywords; a number's factor from the sidecar's
#: unit to DICOM's (seconds to milliseconds), None for text. Nothing else is read from it.
SIDECAR_KEYWORDS = {"ScanningSequence": None, "SequenceVariant": None, "ScanOptions": None,
                    "RepetitionTime": 1000.0, "EchoTime": 1000.0, "InversionTime": 1000.0, "FlipAngle": 1.0,
                    "SeriesDescription": None, "ProtocolName": None}
#: Most bytes read of a sidecar (dcm2niix's are a few kB).
MAX_SIDECAR_BYTES = 1 << 20


@dataclass(frozen=True)
class Scan:
    """A 3D image with where it came from.

    Attributes
    ----------
    image : SimpleITK.Image
        The intensities on their physical grid (LPS, mm).
    source : str
        The path it was read from ("" when built in memory).
    sha256 : str
        SHA-256 of the file (of the sorted file digests for a DICOM series).
    study_date : datetime.date or None
        From the DICOM header when there is one.
    dicom_tags : dict
        The DICOM attributes that date the scan and tell its contrast (:data:`DICOM_KEYWORDS`,
        by keyword); for another format, those a BIDS sidecar beside it holds
        (:data:`SIDECAR_KEYWORDS`, see :func:`sidecar_tags`), else empty. No patient identifiers.
    """

    image: sitk.Image
    source: str = ""
    sha256: str = ""
    study_date: dt.date | None = None
    dicom_tags: dict[str, str] = field(default_factory=dict, compare=False)


def split_suffix(path: str | os.PathLike) -> tuple[str, str]:
    """Split a file name into its stem and its suffix, as written (case kept).

    An image suffix of :data:`IMAGE_SUFFIXES` is matched whole (``.nii.gz``, any case);
    any other name keeps its last suffix, or its last two when it ends in ``.gz``
    (``table.csv.gz``). A name without a suffix (a DICOM folder) has suffix ``""``.

    Example
    -------
    >>> split_suffix("/data/t1_lesion.NII.GZ")
    ('t1_lesion', '.NII.GZ')
    >>> split_suffix("volumes.csv"), split_suffix("series_001")
    (('volumes', '.csv'), ('series_001', ''))
    """
    name = Path(path).name
    lowered = name.lower()
    suffix = next((s for s in IMAGE_SUFFIXES if lowered.endswith(s) and len(name) > len(s)), None)
    if suffix is None:
        suffixes = Path(name).suffixes
        suffix = "".join(suffixes[-2:]) if name.endswith(".gz") else (suffixes[-1] if suffixes else "")
    return name[: len(name) - len(suffix)], name[len(name) - len(suffix):]


def itk_path(path: str | bytes | os.PathLike) -> str:
    """The path as a string ITK can take, or a one-line refusal if its name is not valid UTF-8.

    SimpleITK hands file names to C++ as UTF-8; a name that is not (Latin-1 bytes from an old
    archive, which Python keeps as surrogate escapes) aborts the whole process. Call this
    before giving any path to SimpleITK.

    Raises
    ------
    InputError
        The name is not valid UTF-8 (the bad bytes shown as ``\\xNN``).

    Example
    -------
    >>> itk_path(Path("/data") / "t1.nii.gz")
    '/data/t1.nii.gz'
    >>> itk_path(b"/data/caf\\xe9.nii")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: '/data/caf\\xe9.nii': the file name is not valid UTF-8; ...
    """
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(text).decode("utf-8", "backslashreplace")
        raise InputError(f"'{shown}': the file name is not valid UTF-8; rename it (ITK cannot open it)") from None
    return text


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, or of the sorted digests of the files in a folder.

    A detached header (``.mhd``, ``.nhdr``: voxels in other files, named by its
    ``ElementDataFile`` / ``data file`` field, LIST and pattern forms included) is hashed
    together with the data files it names, so that a changed ``.raw`` changes the checksum
    (resumed batches redo the study). A data file that is missing counts as such.

    Example
    -------
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"; _ = p.write_bytes(b"abc")
    >>> sha256_of(p)[:12]
    'ba7816bf8f01'
    """
    path = Path(path)
    if path.is_dir():
        digests = sorted(sha256_of(p) for p in path.iterdir() if p.is_file())
        return hashlib.sha256("".join(digests).encode()).hexdigest()
    digest = _file_digest(path)
    header = _text_header(path)
    if header is None or not header.data_files:
        return digest
    combined = hashlib.sha256(digest.encode())
    for data_file in header.data_files:
        part = _file_digest(data_file) if data_file.is_file() else "missing"
        combined.update(f"\0{data_file.name}\0{part}".encode("utf-8", "surrogateescape"))
    return combined.hexdigest()


@dataclass(frozen=True)
class _TextHeader:
    """What lesionvol needs of a NRRD or MetaImage header (field names lower case)."""

    nrrd: bool  # else MetaImage
    fields: dict[str, str]
    length: int  # bytes up to the first voxel of attached data
    data_files: tuple[Path, ...]  # empty: the voxels follow the header in the same file
    compressed: bool
    offset_unknown: bool  # a byte/line skip or header size moves the data: no size check


def _check_text_header(path: Path) -> None:
    """Refuse the NRRD/MetaImage dimension fields ITK hangs or crashes on (``NDims = -1``).

    Example
    -------
    >>> p = Path(tempfile.mkdtemp()) / "x.mha"
    >>> _ = p.write_text("ObjectType = Image\\nNDims = -1\\nDimSize = 4 4 4\\nElementDataFile = LOCAL\\n")
    >>> _check_text_header(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: cannot read '...x.mha': its header declares NDims = '-1' (an integer from 1 to 5 is needed)
    """
    header = _text_header(path)
    if header is None:
        return
    dim_key, size_key = ("dimension", "sizes") if header.nrrd else ("ndims", "dimsize")
    shown = {"ndims": "NDims", "dimsize": "DimSize"}
    value = header.fields.get(dim_key, "")
    if not re.fullmatch(r"[1-9][0-9]?", value) or int(value) > MAX_DIMENSIONS:
        raise InputError(f"cannot read '{path}': its header declares {shown.get(dim_key, dim_key)} = {value!r} "
                         f"(an integer from 1 to {MAX_DIMENSIONS} is needed)")
    sizes = header.fields.get(size_key, "").split()
    if len(sizes) != int(value) or not all(re.fullmatch(r"[0-9]{1,12}", v) and int(v) > 0 for v in sizes):
        raise InputError(f"cannot read '{path}': its header declares {shown.get(size_key, size_key)} = "
                         f"{header.fields.get(size_key, '')!r} ({value} positive integers are needed)")


def _data_file_names(value: str, listed: list[str]) -> list[str]:
    """Names given by a data file field: one name, LIST (the lines after), or a printf pattern."""
    words = value.split()
    if not words:
        return []
    if words[0] == "LIST":
        return [line.strip() for line in listed if line.strip()]
    if "%" in words[0] and len(words) >= 4:
        try:
            first, last, step = (int(w) for w in words[1:4])
            indices = range(first, last + (1 if step > 0 else -1), step)
            if not 0 < len(indices) <= MAX_DATA_FILES:
                return []
            return [words[0] % i for i in indices]
        except (ValueError, TypeError, OverflowError):
            return []
    return [value.strip()]


def _text_header(path: Path) -> _TextHeader | None:
    """Parse a NRRD or MetaImage header (``None`` for other files or an unfinished header)."""
    if split_suffix(path)[1].lower() not in _TEXT_HEADER_SUFFIXES or not path.is_file():
        return None
    with open(path, "rb") as handle:
        head = handle.read(MAX_TEXT_HEADER_BYTES)
    nrrd = head.startswith(b"NRRD")
    fields: dict[str, str] = {}
    offset, data_key, listed = 0, ("data file", "datafile") if nrrd else ("elementdatafile",), []
    lines = head.split(b"\n")
    for number, raw in enumerate(lines[:-1]):  # the last piece has no newline: not a whole line
        offset += len(raw) + 1
        line = raw.decode("utf-8", "surrogateescape").strip()
        if nrrd and number == 0 or line.startswith("#"):
            continue
        if nrrd and not line:
            break  # a blank line ends a NRRD header
        key, sep, value = line.partition(":" if nrrd else "=")
        if not sep or value.startswith("="):  # not a field (or a NRRD key:=value pair)
            if nrrd:
                continue
            return None
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() in data_key:
            listed = [piece.decode("utf-8", "surrogateescape") for piece in lines[number + 1:]]
            if not nrrd:
                break  # ElementDataFile is the last field of a MetaImage header
    else:
        if not nrrd or not any(k in fields for k in data_key):
            return None  # no end of header within MAX_TEXT_HEADER_BYTES
    data_value = next((fields[k] for k in data_key if k in fields), "LOCAL" if not nrrd else "")
    names = [] if data_value in ("LOCAL", "") else _data_file_names(data_value, listed)
    compressed = (fields.get("encoding", "raw").lower() not in ("raw",) if nrrd
                  else fields.get("compresseddata", "false").lower() == "true")
    skips = ("byte skip", "byteskip", "line skip", "lineskip") if nrrd else ("headersize",)
    return _TextHeader(nrrd=nrrd, fields=fields, length=offset, data_files=tuple(path.parent / n for n in names),
                       compressed=compressed, offset_unknown=any(k in fields for k in skips))


_PLANES = ("sagittal", "coronal", "axial")  # slices whose normal runs along x, y, z (LPS)


def list_dicom_series(folder: str | os.PathLike) -> list[dict]:
    """The DICOM series in a folder: number, UID, description, slice count and plane of each.

    Nothing identifying the patient is read.

    Example
    -------
    >>> list_dicom_series(tempfile.mkdtemp())
    []
    """
    found = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        keys = reader.GetMetaDataKeys()
        tag = lambda key: reader.GetMetaData(key).strip() if key in keys else ""  # noqa: E731
        orientation = _floats(tag("0020|0037"))
        plane = ""
        if orientation is not None and orientation.size == 6:
            plane = _PLANES[int(np.argmax(np.abs(np.cross(orientation[:3], orientation[3:]))))]
        found.append({"number": tag("0020|0011"), "uid": uid, "description": tag("0008|103e"),
                      "slices": len(files), "plane": plane, "files": files})
    return found


def _describe_series(series: list[dict]) -> str:
    return "; ".join(f"{s['number'] or '?'} '{s['description']}' ({s['slices']} slices{', ' + s['plane'] if s['plane'] else ''})"
                     for s in series)


def _dicom_series_files(folder: Path, series: str | None = None) -> list[str]:
    """The files of the folder's one DICOM series, or of the one ``series`` names (its number,
    UID or description, case ignored); otherwise a refusal that lists the series."""
    found = list_dicom_series(folder)
    if not found:
        raise InputError(f"'{folder}' is a folder without a DICOM series in it")
    if series is not None:
        wanted = str(series).strip().casefold()
        chosen = [s for s in found if wanted in (s["number"].casefold(), s["uid"].casefold(),
                                                 s["description"].casefold())]
        if len(chosen) != 1:
            how = "matches none" if not chosen else f"matches {len(chosen)}"
            raise InputError(f"series {series!r} {how} of the {len(found)} DICOM series in '{folder}': "
                             f"{_describe_series(found)}")
        found = chosen
    if len(found) > 1:
        raise InputError(f"'{folder}' holds {len(found)} DICOM series; choose one with --series NUMBER|UID|"
                         f"DESCRIPTION: {_describe_series(found)}")
    return [itk_path(name) for name in found[0]["files"]]


def _floats(text: str) -> np.ndarray | None:
    try:
        values = np.array([float(v) for v in text.split("\\")])
    except ValueError:
        return None
    return values if np.all(np.isfinite(values)) else None


def _slice_gap_problem(files: list[str]) -> str | None:
    """Why the slices of a DICOM series are not evenly spaced along their normal, or None.

    The positions come from each file's ImagePositionPatient, projected on the normal of
    the first file's ImageOrientationPatient, in the order ITK stacks them. Files without
    these tags cannot be checked (ITK then stacks them by name) and pass.
    """
    reader = sitk.ImageFileReader()
    positions = []
    orientation = None
    for name in files:
        reader.SetFileName(name)
        reader.ReadImageInformation()
        keys = reader.GetMetaDataKeys()
        position = _floats(reader.GetMetaData("0020|0032")) if "0020|0032" in keys else None
        if orientation is None and "0020|0037" in keys:
            orientation = _floats(reader.GetMetaData("0020|0037"))
        if position is None or len(position) != 3:
            return None
        positions.append(position)
    if len(positions) < 2 or orientation is None or len(orientation) != 6:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    if np.linalg.norm(normal) < 0.5:
        return None
    along = np.asarray(positions) @ (normal / np.linalg.norm(normal))
    gaps = np.abs(np.diff(along))
    typical = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - typical) > SLICE_GAP_RTOL * typical) if typical > 0 else np.arange(len(gaps))
    if not len(bad):
        return None
    k = int(bad[0])
    more = f" (and {len(bad) - 1} more uneven gap{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
    return (f"slices {k + 1} and {k + 2} of {len(files)} ({Path(files[k]).name}, {Path(files[k + 1]).name}) are "
            f"{gaps[k]:.2f} mm apart where the others are {typical:.2f} mm{more}: a missing slice or uneven "
            f"spacing (ImagePositionPatient along the slice normal)")


def _parse_dicom_date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _nifti_header(path: Path):
    """The NIfTI header exactly as stored (nibabel's load "fixes" a zero pixdim to 1)."""
    for klass in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            with nib.openers.ImageOpener(path) as handle:
                return klass.from_fileobj(handle, check=False)
        except Exception:  # HeaderDataError, a short or gzip-broken file, ...
            continue
    return None


def _check_nifti_numbers(path: Path) -> None:
    """Refuse a NIfTI whose sform or qform holds inf or NaN (ITK's reader never returns on one)."""
    header = _nifti_header(path)
    if header is None:
        return
    parts = []
    if header["sform_code"] > 0:
        parts.append(("sform", [header["srow_x"], header["srow_y"], header["srow_z"]]))
    if header["qform_code"] > 0:
        parts.append(("qform", [header[k] for k in ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                                                     "qoffset_z")] + [header["pixdim"][:4]]))
    for name, values in parts:
        if not all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values):
            raise InputError(f"cannot read '{path}': its {name} holds infinite or NaN numbers")


def _round(values) -> tuple[float, ...]:
    return tuple(round(float(v), 4) + 0.0 for v in values)


def _check_nifti_geometry(path: Path, itk_spacing: tuple[float, ...]) -> None:
    """Refuse a NIfTI whose voxel size in pixdim (what ITK uses) disagrees with its sform.

    ITK takes the spacing from pixdim (a zero made 1 mm) even when the sform, which
    nibabel, FSL and most viewers use, says otherwise: volumes then come out wrong by the ratio.
    """
    header = _nifti_header(path)
    if header is None:
        return  # ITK read it; nibabel's full read (_check_nifti_data) reports what is wrong
    n = min(int(header["dim"][0]), 3)
    pixdim = np.asarray(header["pixdim"][1:1 + n], dtype=float)
    itk = np.asarray(itk_spacing[:n], dtype=float)
    sform, sform_code = header.get_sform(coded=True)
    if sform_code and sform is not None and np.all(np.isfinite(sform)):
        linear = np.asarray(sform, dtype=float)[:3, :3]
        sform_spacing = np.linalg.norm(linear, axis=0)[:n]
        if not np.allclose(itk, sform_spacing, rtol=SPACING_RTOL, atol=1e-6):
            read_as = "" if _round(itk) == _round(pixdim) else f" (which ITK reads as {_round(itk)} mm)"
            raise InputError(
                f"'{path}' gives two voxel sizes: pixdim says {_round(pixdim)} mm{read_as}, the sform "
                f"{_round(sform_spacing)} mm; refused rather than guess (fix pixdim or the sform)")
        problem = _orthonormal_problem(linear / np.where(sform_spacing > 0, sform_spacing, 1.0)) if n == 3 else None
        if problem:
            raise InputError(f"'{path}' has a sform with {problem}; lesionvol needs a rotation")
    elif not np.all(np.isfinite(pixdim) & (pixdim > 0)):
        raise InputError(f"'{path}' declares no voxel size: pixdim {_round(pixdim)} and no sform "
                         f"(ITK would read {_round(itk)} mm)")


def _orthonormal_problem(direction: np.ndarray) -> str | None:
    """What is wrong with a direction-cosine matrix that is not a rotation, or None."""
    direction = np.asarray(direction, dtype=float)
    if not np.all(np.isfinite(direction)):
        return "non-finite direction cosines"
    error = np.abs(direction.T @ direction - np.eye(len(direction)))
    if float(error.max()) <= DIRECTION_TOLERANCE:
        return None
    lengths = np.linalg.norm(direction, axis=0)
    unit = direction / np.where(lengths > 0, lengths, 1.0)
    cosines = np.abs(unit.T @ unit - np.diag(np.diag(unit.T @ unit)))
    return (f"direction cosines that are not orthonormal (column lengths {_round(lengths)}, largest cosine "
            f"between axes {float(cosines.max()):.4f}): shear or scale in the orientation matrix")


def _component_bytes(reader: sitk.ImageFileReader) -> int:
    bits = re.search(r"(\d+)-bit", sitk.GetPixelIDValueAsString(reader.GetPixelIDValue()))
    return int(bits.group(1)) // 8 if bits else 8


def _check_header(reader: sitk.ImageFileReader, path: Path, n_files: int = 1) -> None:
    """Refusals the header alone decides, before any voxel is read (``n_files`` slices of a series)."""
    dim = reader.GetDimension()
    if dim < 2:
        raise InputError(f"'{path}' is {dim}D; lesionvol needs a 3D volume")
    if reader.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise InputError(f"'{path}' holds complex-valued voxels ({sitk.GetPixelIDValueAsString(reader.GetPixelID())}); "
                         f"lesionvol needs a real image (the magnitude)")
    size = [*reader.GetSize()[: reader.GetDimension()], *([n_files] if n_files > 1 else [])]
    n_bytes = math.prod(size) * max(reader.GetNumberOfComponents(), 1) * _component_bytes(reader)
    if n_bytes > MAX_IMAGE_BYTES:
        raise InputError(
            f"'{path}' declares {' x '.join(str(v) for v in size)} voxels of "
            f"{sitk.GetPixelIDValueAsString(reader.GetPixelIDValue())} ({n_bytes / 2**30:.1f} GiB); lesionvol reads "
            f"at most {MAX_IMAGE_BYTES / 2**30:.1f} GiB of voxels (lesionvol.io.MAX_IMAGE_BYTES)")
    available = _stored_bytes(path)
    if available is not None and available < n_bytes:
        raise InputError(f"cannot read '{path}': truncated (its header declares {n_bytes} bytes of voxels, the file "
                         f"holds {available})")
    problem = _orthonormal_problem(np.reshape(reader.GetDirection(), (dim, dim)))
    if problem:
        raise InputError(f"'{path}' has {problem}; lesionvol needs a rotation (resample it, or fix the header)")


def _stored_bytes(path: Path) -> int | None:
    """Bytes of voxel data an uncompressed file holds (None when that cannot be told cheaply)."""
    suffix = split_suffix(path)[1].lower()
    if suffix == ".nii":
        header = _nifti_header(path)
        offset = float(header["vox_offset"]) if header is not None else math.nan
        return max(path.stat().st_size - int(offset), 0) if math.isfinite(offset) and offset >= 0 else None
    header = _text_header(path)
    if header is None or header.compressed or header.offset_unknown:
        return None
    if not header.data_files:
        return max(path.stat().st_size - header.length, 0)
    missing = next((f for f in header.data_files if not f.is_file()), None)
    if missing is not None:
        raise InputError(f"cannot read '{path}': its data file '{missing}' does not exist")
    return sum(f.stat().st_size for f in header.data_files)


def _check_nifti_data(path: Path) -> None:
    """Refuse a truncated NIfTI file or one with NaN/inf values.

    ITK's NIfTI reader does neither: it silently zero-fills missing data and turns NaN
    into 0, which would make a damaged scan look valid. nibabel reads the raw data.
    """
    try:
        data = np.asanyarray(nib.load(path).dataobj)
    except Exception as exc:  # nibabel raises EOFError, OSError, ValueError, zlib.error ...
        raise InputError(f"cannot read '{path}': truncated or corrupt NIfTI ({type(exc).__name__}: {str(exc)[:100]})") from None
    if np.issubdtype(data.dtype, np.floating):
        n_bad = int(np.count_nonzero(~np.isfinite(data)))
        if n_bad:
            raise InputError(f"'{path}' has {n_bad} NaN or infinite voxels")


@contextlib.contextmanager
def _quiet_readers(printed: list[str]) -> Iterator[None]:
    """Keep ITK, the C libraries under it (NIfTI, MetaIO, GDCM) and nibabel's header fixes off stderr.

    They print straight to the process's stderr (file descriptor 2), around an exception
    or instead of one; what matters in their messages is checked here and refused, so a
    command's stderr stays one line. What they printed is appended to ``printed`` (the
    detail of a refusal). Another thread's stderr is held back for the same milliseconds.
    """
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    nib_level = nib.imageglobals.logger.level
    nib.imageglobals.logger.setLevel(logging.CRITICAL + 1)
    with tempfile.TemporaryFile() as sink:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(sink.fileno(), 2)
        except (OSError, ValueError, AttributeError):  # no stderr to redirect (closed, or a daemon's)
            saved = None
        try:
            yield
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read(1 << 16).decode("utf-8", "backslashreplace")
                printed.extend(line.strip(" *") for line in text.splitlines() if line.strip(" *"))
            nib.imageglobals.logger.setLevel(nib_level)
            sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def _dicom_tags(keys, value) -> dict[str, str]:
    """The :data:`DICOM_KEYWORDS` attributes among ``keys`` (``value(key)`` reads one), by keyword."""
    return {word: value(key).strip() for key, word in DICOM_KEYWORDS.items() if key in keys}


def sidecar_tags(path: str | os.PathLike) -> dict[str, str]:
    """The contrast attributes of the BIDS sidecar beside an image file, as DICOM keywords and units.

    dcm2niix writes ``scan.json`` beside ``scan.nii.gz`` with the acquisition's timing in seconds;
    the :data:`SIDECAR_KEYWORDS` it holds are returned as DICOM would give them (times in ms, lists
    joined with a backslash), so that :mod:`lesionvol.sequence` reads a NIfTI's contrast from its
    acquisition, not only from its tissue contrast. No sidecar: ``{}``.

    Raises
    ------
    InputError
        A sidecar that is not a JSON object, or a timing that is not a number.

    Example
    -------
    >>> import json, tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "t2.json").write_text(json.dumps({"EchoTime": 0.101, "RepetitionTime": 4.32,
    ...                                                 "ScanningSequence": "SE", "PatientName": "Doe^Jane"}))
    >>> sidecar_tags(folder / "t2.nii.gz")
    {'ScanningSequence': 'SE', 'RepetitionTime': '4320', 'EchoTime': '101'}
    """
    import json

    path = Path(os.fsdecode(path))
    side = path.with_name(split_suffix(path)[0] + ".json")
    if not side.is_file():
        return {}
    try:
        with open(side, "rb") as f:
            text = f.read(MAX_SIDECAR_BYTES + 1)
        if len(text) > MAX_SIDECAR_BYTES:
            raise InputError(f"the sidecar '{side}' is larger than {MAX_SIDECAR_BYTES} bytes")
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"the sidecar '{side}' is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"the sidecar '{side}' is not a JSON object")
    tags = {}
    for key, factor in SIDECAR_KEYWORDS.items():
        value = data.get(key)
        if value is None:
            continue
        if factor is None:
            tags[key] = "\\".join(map(str, value)) if isinstance(value, list) else str(value)
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"the sidecar '{side}' gives {key} {value!r}, not a number")
        else:
            tags[key] = f"{value * factor:.6g}"
    return tags


def _read_series(folder: Path, allow_gaps: bool, notes: list[str],
                 series: str | None = None) -> tuple[sitk.Image, dict[str, str]]:
    """Read a DICOM series; a gap allowed is appended to ``notes`` (warned about once stderr is back)."""
    files = _dicom_series_files(folder, series)
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    first.ReadImageInformation()
    _check_header(first, folder, n_files=len(files))
    problem = _slice_gap_problem(files)
    if problem and not allow_gaps:
        raise InputError(f"'{folder}': {problem}; refused rather than read on the mean spacing")
    if problem:
        notes.append(f"'{folder}': {problem}; read on the mean spacing because gaps were allowed")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    image = reader.Execute()
    dim = image.GetDimension()
    problem = _orthonormal_problem(np.reshape(image.GetDirection(), (dim, dim)))
    if problem:
        raise InputError(f"'{folder}' has {problem} (ImageOrientationPatient); lesionvol needs a rotation")
    return image, _dicom_tags(reader.GetMetaDataKeys(0), lambda key: reader.GetMetaData(0, key))


def _read_quietly(path: Path, name: str, allow_gaps: bool, notes: list[str],
                  series: str | None = None) -> tuple[sitk.Image, dict[str, str]]:
    if path.is_dir():
        return _read_series(path, allow_gaps, notes, series)
    _check_text_header(path)
    if split_suffix(path)[1].lower() in NIFTI_SUFFIXES:
        _check_nifti_numbers(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    reader.ReadImageInformation()
    is_dicom = reader.GetImageIOFromFileName(name) == "GDCMImageIO"
    if is_dicom and (reader.GetDimension() == 2 or reader.GetSize()[-1] == 1):
        return _read_series(path.parent, allow_gaps, notes)  # one slice of a series: read the whole series
    _check_header(reader, path)
    if split_suffix(path)[1].lower() in NIFTI_SUFFIXES:
        _check_nifti_geometry(path, reader.GetSpacing())
        _check_nifti_data(path)
    image = reader.Execute()
    return image, _dicom_tags(reader.GetMetaDataKeys(), reader.GetMetaData) if is_dicom else sidecar_tags(path)


def _read_any(path: Path, allow_gaps: bool = False, series: str | None = None) -> tuple[sitk.Image, dict[str, str]]:
    """Read an image file or DICOM folder; return it with its DICOM attributes (:data:`DICOM_KEYWORDS`)."""
    name = itk_path(path)
    if not path.exists():
        raise InputError(f"'{path}' does not exist")
    printed: list[str] = []
    notes: list[str] = []
    try:
        with _quiet_readers(printed):
            result = _read_quietly(path, name, allow_gaps, notes, series)
        for note in notes:
            warnings.warn(note, UserWarning, stacklevel=4)
        return result
    except RuntimeError as exc:
        reason = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = (printed or reason or ["unreadable"])[0 if printed else -1]  # the C library says more than errno
        raise InputError(
            f"cannot read '{path}' as a NIfTI, NRRD, MetaImage or DICOM image ({detail[:160]})"
        ) from None


def _as_3d_volume(image: sitk.Image, path: Path, volume_index: int | None) -> sitk.Image:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"'{path}' has {image.GetNumberOfComponentsPerPixel()} components per voxel; a scalar image is needed")
    dim = image.GetDimension()
    if dim == 4:
        n_volumes = image.GetSize()[3]
        if volume_index is None and n_volumes > 1:
            raise InputError(f"'{path}' is 4D with {n_volumes} volumes; choose one with --volume K")
        index = 0 if volume_index is None else volume_index
        if not 0 <= index < n_volumes:
            raise InputError(f"'{path}' has volumes 0..{n_volumes - 1}; --volume {index} is out of range")
        size = list(image.GetSize())
        size[3] = 0
        image = sitk.Extract(image, size, [0, 0, 0, index])
    elif dim != 3:
        raise InputError(f"'{path}' is {dim}D; lesionvol needs a 3D volume")
    if min(image.GetSize()) < 2:
        raise InputError(f"'{path}' is a single slice (size {image.GetSize()}); lesionvol needs a 3D volume")
    return image


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """A refusal is one line, even when it quotes a file name holding a newline."""
    try:
        yield
    except InputError as exc:
        text = str(exc)
        if "\n" not in text and "\r" not in text:
            raise
        raise InputError(text.replace("\r", "\\r").replace("\n", "\\n")) from None


def read_image(path: str | bytes | os.PathLike, volume_index: int | None = None, *,
               allow_gaps: bool = False, series: str | None = None) -> sitk.Image:
    """Read a 3D image (file or DICOM series folder) keeping its physical geometry.

    Parameters
    ----------
    path : path-like
        NIfTI, NRRD, MetaImage file, a DICOM file or a folder holding one DICOM series.
    volume_index : int, optional
        Which volume of a 4D image to take; a 4D image without it is refused.
    allow_gaps : bool
        Read a DICOM series with a missing slice or uneven slice spacing anyway, on its
        mean spacing as ITK does (a ``UserWarning`` says which gap). Off by default: the
        volume of anything spanning the gap is then wrong.
    series : str, optional
        For a folder holding several DICOM series: the one to read, by its number, UID or
        description (case ignored). Without it such a folder is refused with the list.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file; a file name that is not UTF-8; 2D,
        multi-component or complex image; 4D without ``volume_index``; NaN or infinite
        intensities; more than :data:`MAX_IMAGE_BYTES` of voxels; a DICOM slice gap;
        NIfTI pixdim disagreeing with the sform; direction cosines that are not a rotation.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths
    >>> read_image(sample_series_paths()[0]).GetDimension()
    3
    """
    return read_scan(path, volume_index, allow_gaps=allow_gaps, series=series).image


def read_scan(path: str | bytes | os.PathLike, volume_index: int | None = None, *,
              allow_gaps: bool = False, series: str | None = None) -> Scan:
    """Read a 3D image as a :class:`Scan`, with its checksum and DICOM study date.

    See :func:`read_image` for the formats and the errors raised.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths
    >>> len(read_scan(sample_series_paths()[0]).sha256)
    64
    """
    path = Path(os.fsdecode(path))
    with _one_line_errors():
        image, tags = _read_any(path, allow_gaps, series)
        image = _as_3d_volume(image, path, volume_index)
        if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
            values = sitk.GetArrayViewFromImage(image)
            n_bad = int(np.count_nonzero(~np.isfinite(values)))
            if n_bad:
                raise InputError(f"'{path}' has {n_bad} NaN or infinite voxels")
    date = next((tags[word] for word in ("StudyDate", "SeriesDate", "AcquisitionDate") if tags.get(word)), "")
    return Scan(image=image, source=str(path), sha256=sha256_of(path), study_date=_parse_dicom_date(date),
                dicom_tags=tags)


def describe_grid(image: sitk.Image) -> str:
    """A voxel grid in one line: size, spacing (mm), origin (LPS mm) and direction cosines.

    Example
    -------
    >>> img = sitk.Image([4, 3, 2], sitk.sitkUInt8); img.SetOrigin((10.0, -2.5, 0.0))
    >>> describe_grid(img)
    'size (4, 3, 2), spacing (1.0, 1.0, 1.0) mm, origin (10.0, -2.5, 0.0) mm, direction (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)'
    """
    def values(numbers) -> str:
        return "(" + ", ".join(str(round(float(v), 4) + 0.0) for v in numbers) + ")"  # + 0.0: no "-0.0"

    return (f"size {tuple(image.GetSize())}, spacing {values(image.GetSpacing())} mm, "
            f"origin {values(image.GetOrigin())} mm, direction {values(image.GetDirection())}")


def check_same_grid(mask: sitk.Image, image: sitk.Image, name: str = "mask") -> None:
    """Refuse a mask that is not on its image's voxel grid.

    This is lesionvol's one policy for a mask on another grid: it is refused, never
    resampled behind the user's back (a resampled mask no longer holds the voxels the
    user drew, and volumes are counted on the native grid). Size, spacing, origin and
    direction cosines must agree within :data:`lesionvol.geometry.GRID_TOLERANCE`, as
    :func:`lesionvol.geometry.same_grid` checks. A caller that means to resample
    does it itself, with nearest neighbour, before calling.

    Raises
    ------
    InputError
        One line: what differs, then both grids (see :func:`describe_grid`).

    Example
    -------
    >>> image = sitk.Image([4, 4, 4], sitk.sitkFloat32)
    >>> mask = sitk.Image([4, 4, 4], sitk.sitkUInt8); mask.SetOrigin((0.0, 0.0, 2.0))
    >>> check_same_grid(mask, image, "the head mask")  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    lesionvol.errors.InputError: the head mask is not on its image's grid: origin ... mm;
        image grid: size (4, 4, 4), spacing (1.0, 1.0, 1.0) mm, origin (0.0, 0.0, 0.0) mm, ...;
        mask grid: size (4, 4, 4), spacing (1.0, 1.0, 1.0) mm, origin (0.0, 0.0, 2.0) mm, ...
    """
    difference = grid_difference(image, mask)
    if difference is not None:
        raise InputError(f"{name} is not on its image's grid: {difference}; "
                         f"image grid: {describe_grid(image)}; mask grid: {describe_grid(mask)}")


def as_binary_mask(mask: sitk.Image, reference: sitk.Image | None = None, name: str = "mask") -> sitk.Image:
    """Check that an image is a binary mask (on the reference grid) and return it as uint8 0/1.

    Integer masks holding {0, 1} or {0, 255}, and float masks holding exactly 0.0 and
    1.0, are accepted. A float mask with other values (a probability map) and label
    maps with several labels are refused: thresholding or choosing a label is the
    user's decision, not ours.

    Raises
    ------
    InputError
        Non-binary or fractional values, or a grid that differs from ``reference``
        (see :func:`check_same_grid`).

    Example
    -------
    >>> m = sitk.Image([3, 3, 3], sitk.sitkFloat32); m[1, 1, 1] = 1.0
    >>> int(sitk.GetArrayFromImage(as_binary_mask(m)).sum())
    1
    """
    if mask.GetNumberOfComponentsPerPixel() != 1 or mask.GetDimension() != 3:
        raise InputError(f"{name} must be a 3D scalar image")
    if reference is not None:
        check_same_grid(mask, reference, name)
    values = sitk.GetArrayViewFromImage(mask)
    unique = np.unique(values)
    if not np.all(np.isfinite(unique)):
        raise InputError(f"{name} has NaN or infinite values")
    if np.any(unique != np.round(unique)):
        raise InputError(f"{name} has fractional values (a probability map?); threshold it to 0/1 first")
    nonzero = unique[unique != 0]
    if len(nonzero) > 1 or (len(nonzero) == 1 and nonzero[0] not in (1, 255)):
        shown = ", ".join(str(v) for v in unique[:6].astype(int))
        raise InputError(f"{name} is not binary (values {shown}{', …' if len(unique) > 6 else ''}); give a 0/1 mask")
    binary = sitk.GetImageFromArray((values != 0).astype(np.uint8))
    binary.CopyInformation(mask)
    return binary


def read_mask(path: str | bytes | os.PathLike, reference: sitk.Image | None = None) -> sitk.Image:
    """Read a binary mask and check it lies on the grid of ``reference``.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths, sample_mask_paths
    >>> image = read_image(sample_series_paths()[0])
    >>> read_mask(sample_mask_paths("lesion")[0], image).GetPixelID() == sitk.sitkUInt8
    True
    """
    path = Path(os.fsdecode(path))
    with _one_line_errors():
        image, _ = _read_any(path)
        if image.GetDimension() != 3:
            raise InputError(f"mask '{path}' is {image.GetDimension()}D; a 3D mask is needed")
        return as_binary_mask(image, reference, name=f"mask '{path}'")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it only if the block succeeds.

    The temporary name is ``.<name>.partial-<random><suffix>`` (same suffix, so writers
    that infer the format from it still work); a crash or Ctrl-C never leaves a
    half-written file under ``path``. The temporary file is created private (0600); the
    finished file gets the permissions the user's umask gives a new file (0644 under
    umask 022), as if it had been written in place.

    Example
    -------
    >>> out = Path(tempfile.mkdtemp()) / "table.csv"
    >>> with atomic_path(out) as tmp:
    ...     _ = tmp.write_text("timepoint")
    >>> [p.name for p in out.parent.iterdir()]
    ['table.csv']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=split_suffix(path)[1], dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        apply_umask(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write an image atomically (see :func:`atomic_path`).

    A detached header (``.mhd``, ``.nhdr``) is written with its data file in a temporary
    folder under their final names (the header names its data file), then the data file is
    moved into place and the header last.

    Raises
    ------
    InputError
        The path is not valid UTF-8 (see :func:`itk_path`).

    Example
    -------
    >>> out = Path(tempfile.mkdtemp()) / "m.nii.gz"
    >>> write_image(sitk.Image([2, 2, 2], sitk.sitkUInt8), out).name
    'm.nii.gz'
    >>> sorted(p.name for p in write_image(sitk.Image([2, 2, 2], sitk.sitkUInt8), out.with_name("m.mhd")).parent.iterdir())
    ['m.mhd', 'm.nii.gz', 'm.zraw']
    """
    path = Path(itk_path(path))
    if split_suffix(path)[1].lower() not in (".mhd", ".nhdr"):
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp), compress)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        sitk.WriteImage(image, str(folder / path.name), compress)
        apply_umask(folder)
        header = _text_header(folder / path.name)
        for data_file in header.data_files if header is not None else ():
            os.replace(data_file, path.parent / data_file.name)
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


def to_nibabel(image: sitk.Image) -> nib.Nifti1Image:
    """Convert a 3D SimpleITK image (LPS) to a nibabel image (RAS affine, (i, j, k) array).

    Example
    -------
    >>> img = sitk.Image([4, 3, 2], sitk.sitkFloat32); img.SetOrigin((10.0, 20.0, 30.0))
    >>> nii = to_nibabel(img)
    >>> nii.shape, nii.affine[:3, 3].tolist()
    ((4, 3, 2), [-10.0, -20.0, 30.0])
    """
    from lesionvol.geometry import index_to_physical_affine

    data = sitk.GetArrayFromImage(image).transpose(2, 1, 0)
    affine = _LPS_TO_RAS @ index_to_physical_affine(image)
    nii = nib.Nifti1Image(data, affine)
    nii.set_qform(affine, code=1)
    nii.set_sform(affine, code=1)
    return nii


def from_nibabel(nii: nib.spatialimages.SpatialImage) -> sitk.Image:
    """Convert a 3D nibabel image (RAS affine) to a SimpleITK image (LPS geometry).

    Raises
    ------
    InputError
        If the affine has shear (not representable as spacing + direction cosines).

    Example
    -------
    >>> import nibabel as nib
    >>> nii = nib.Nifti1Image(np.zeros((4, 3, 2), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]))
    >>> img = from_nibabel(nii)
    >>> img.GetSize(), img.GetSpacing(), img.GetDirection()[0]
    ((4, 3, 2), (2.0, 2.0, 3.0), -1.0)
    """
    if len(nii.shape) != 3:
        raise InputError(f"nibabel image has shape {nii.shape}; a 3D volume is needed")
    affine = _LPS_TO_RAS @ np.asarray(nii.affine, dtype=float)
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise InputError("the nibabel affine has shear; it cannot be a SimpleITK direction matrix")
    image = sitk.GetImageFromArray(np.asanyarray(nii.dataobj).transpose(2, 1, 0).copy())
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.flatten().tolist())
    image.SetOrigin(affine[:3, 3].tolist())
    return image
