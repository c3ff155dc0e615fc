"""Reading scans and masks, writing images safely, and nibabel conversion.

Formats: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage
(``.mha``, ``.mhd``) and DICOM series (a folder, or one file of the series), all
through SimpleITK so that spacing, origin and direction cosines are kept. Nothing
identifying the patient is read out of DICOM headers: only the study date, which
turns into "days since baseline".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import grid_difference

#: File suffixes of the formats lesionvol reads (lower case; the longer of two that share an
#: ending first, so that ``.nii.gz`` wins over ``.nii``). A DICOM series can also be given as
#: its folder. Matched case-insensitively, by :func:`split_suffix`.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
IMAGE_SUFFIXES = (*NIFTI_SUFFIXES, ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_DATE_TAGS = ("0008|0020", "0008|0021", "0008|0022")  # study, series, acquisition date


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
    """

    image: sitk.Image
    source: str = ""
    sha256: str = ""
    study_date: dt.date | None = None


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


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, or of the sorted digests of the files in a folder.

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
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dicom_series_files(folder: Path) -> list[str]:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not series_ids:
        raise InputError(f"'{folder}' is a folder without a DICOM series in it")
    if len(series_ids) > 1:
        raise InputError(
            f"'{folder}' holds {len(series_ids)} DICOM series; point to a folder with one series"
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))


def _parse_dicom_date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


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


def _read_any(path: Path) -> tuple[sitk.Image, dt.date | None]:
    """Read an image file or DICOM folder; return it with its DICOM study date if any."""
    if not path.exists():
        raise InputError(f"'{path}' does not exist")
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(_dicom_series_files(path))
            reader.MetaDataDictionaryArrayUpdateOn()
            image = reader.Execute()
            keys = reader.GetMetaDataKeys(0)
            value = next((reader.GetMetaData(0, t) for t in _DATE_TAGS if t in keys), "")
            return image, _parse_dicom_date(value)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        is_dicom = reader.GetImageIOFromFileName(str(path)) == "GDCMImageIO"
        if is_dicom and (reader.GetDimension() == 2 or reader.GetSize()[-1] == 1):
            return _read_any(path.parent)  # one slice of a series: read the whole series
        if split_suffix(path)[1].lower() in NIFTI_SUFFIXES:
            _check_nifti_data(path)
        image = reader.Execute()
        keys = reader.GetMetaDataKeys()
        value = next((reader.GetMetaData(t) for t in _DATE_TAGS if t in keys), "")
        return image, _parse_dicom_date(value)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reversed(reason) if line.strip()), "unreadable")
        raise InputError(
            f"cannot read '{path}' as a NIfTI, NRRD, MetaImage or DICOM image ({detail.strip()[:160]})"
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


def read_image(path: str | os.PathLike, volume_index: int | None = None) -> sitk.Image:
    """Read a 3D image (file or DICOM series folder) keeping its physical geometry.

    Parameters
    ----------
    path : path-like
        NIfTI, NRRD, MetaImage file, a DICOM file or a folder holding one DICOM series.
    volume_index : int, optional
        Which volume of a 4D image to take; a 4D image without it is refused.

    Raises
    ------
    InputError
        Missing, unreadable or truncated file; 2D or multi-component image; 4D without
        ``volume_index``; NaN or infinite intensities.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths
    >>> read_image(sample_series_paths()[0]).GetDimension()
    3
    """
    return read_scan(path, volume_index).image


def read_scan(path: str | os.PathLike, volume_index: int | None = None) -> Scan:
    """Read a 3D image as a :class:`Scan`, with its checksum and DICOM study date.

    See :func:`read_image` for the formats and the errors raised.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths
    >>> len(read_scan(sample_series_paths()[0]).sha256)
    64
    """
    path = Path(path)
    image, study_date = _read_any(path)
    image = _as_3d_volume(image, path, volume_index)
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        values = sitk.GetArrayViewFromImage(image)
        n_bad = int(np.count_nonzero(~np.isfinite(values)))
        if n_bad:
            raise InputError(f"'{path}' has {n_bad} NaN or infinite voxels")
    return Scan(image=image, source=str(path), sha256=sha256_of(path), study_date=study_date)


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


def read_mask(path: str | os.PathLike, reference: sitk.Image | None = None) -> sitk.Image:
    """Read a binary mask and check it lies on the grid of ``reference``.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths, sample_mask_paths
    >>> image = read_image(sample_series_paths()[0])
    >>> read_mask(sample_mask_paths("lesion")[0], image).GetPixelID() == sitk.sitkUInt8
    True
    """
    path = Path(path)
    image, _ = _read_any(path)
    if image.GetDimension() != 3:
        raise InputError(f"mask '{path}' is {image.GetDimension()}D; a 3D mask is needed")
    return as_binary_mask(image, reference, name=f"mask '{path}'")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``, renamed onto it only if the block succeeds.

    The temporary name is ``.<name>.partial-<random><suffix>`` (same suffix, so writers
    that infer the format from it still work); a crash or Ctrl-C never leaves a
    half-written file under ``path``.

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
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> Path:
    """Write an image atomically (see :func:`atomic_path`).

    Example
    -------
    >>> out = Path(tempfile.mkdtemp()) / "m.nii.gz"
    >>> write_image(sitk.Image([2, 2, 2], sitk.sitkUInt8), out).name
    'm.nii.gz'
    """
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), compress)
    return Path(path)


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
