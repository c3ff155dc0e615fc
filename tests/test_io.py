"""Reading every supported format with its geometry, nibabel conversion, and bad input."""

import gzip
import io
import json
import os
import time

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from nibabel.testing import data_path

from helpers import grid, rotation_matrix
from lesionvol.cli import main
from lesionvol.errors import InputError
from lesionvol.io import (
    MAX_IMAGE_BYTES, as_binary_mask, atomic_path, from_nibabel, read_image, read_mask, read_scan, sha256_of, to_nibabel,
    write_image,
)

OBLIQUE = rotation_matrix((0.3, 1.0, 0.2), 17.0)


def oblique_volume() -> sitk.Image:
    image = grid((24, 20, 9), (0.7, 0.7, 3.5), (-12.5, 30.25, 101.0), OBLIQUE, sitk.sitkInt16)
    values = np.arange(np.prod(image.GetSize()), dtype=np.int16).reshape(image.GetSize()[::-1]) % 997
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def assert_same_geometry(a: sitk.Image, b: sitk.Image, atol: float = 1e-4) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=atol)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_file_formats_keep_oblique_geometry_and_values(tmp_path, suffix):
    image = oblique_volume()
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(image, str(path))
    scan = read_scan(path)
    assert_same_geometry(scan.image, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(scan.image), sitk.GetArrayFromImage(image))
    assert len(scan.sha256) == 64


def write_dicom_series(image: sitk.Image, folder, patient_name="Doe^Jane", study_date="20260301", extra_tags=None,
                       series_uid="1.2.826.0.1.3680043.2.1125.1.42", prefix="slice"):
    """One DICOM file per slice with the geometry tags, as a scanner would write them."""
    folder.mkdir(exist_ok=True)
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0010|0010": patient_name, "0010|0020": "ID-12345", "0008|0020": study_date, "0008|0060": "MR",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.7", "0020|000e": series_uid,
            "0020|0032": "\\".join(f"{p:.6f}" for p in position),
            "0020|0037": "\\".join(f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])),
            "0020|0013": str(k + 1), "0018|0050": f"{image.GetSpacing()[2]:.4f}",
            "0028|0030": f"{image.GetSpacing()[1]:.4f}\\{image.GetSpacing()[0]:.4f}",
            "0008|0018": f"{series_uid}.{k + 1}",
            **(extra_tags or {}),
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(slice_)


def test_dicom_series_folder_geometry_and_study_date(tmp_path):
    image = oblique_volume()
    write_dicom_series(image, tmp_path / "series")
    scan = read_scan(tmp_path / "series")
    assert_same_geometry(scan.image, image, atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(scan.image), sitk.GetArrayFromImage(image))
    assert scan.study_date.isoformat() == "2026-03-01"
    # one file of the series reads the whole series
    assert read_image(tmp_path / "series" / "slice004.dcm").GetSize() == image.GetSize()
    # nothing identifying is kept on the Scan
    assert "Doe" not in repr(scan.__dict__.get("source", "")) and not hasattr(scan, "patient_name")


def test_nibabel_conversion_matches_nibabel_reading_the_same_file(tmp_path):
    image = oblique_volume()
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(image, str(path))
    nii = nib.load(path)
    # LPS (SimpleITK) and RAS (nibabel) describe the same physical voxel positions
    np.testing.assert_allclose(to_nibabel(image).affine, nii.affine, atol=1e-4)
    back = from_nibabel(nii)
    assert_same_geometry(back, image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_real_scan_shipped_by_nibabel_reads_with_the_same_world_coordinates():
    path = f"{data_path}/anatomical.nii"
    image = read_image(path)
    nii = nib.load(path)
    ijk = np.array([10, 20, 5])
    ras = nii.affine @ [*ijk, 1]
    lps = np.array(image.TransformIndexToPhysicalPoint([int(v) for v in ijk]))
    np.testing.assert_allclose(lps, [-ras[0], -ras[1], ras[2]], atol=1e-3)


def test_write_image_is_atomic_and_leaves_no_temporary_file(tmp_path):
    write_image(oblique_volume(), tmp_path / "out.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


# ---- bad input: one clear error each --------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_scan(tmp_path / "nope.nii.gz")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.nii.gz"
    path.write_text("patient notes, not an image")
    with pytest.raises(InputError, match="cannot read"):
        read_scan(path)


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii", "scan.nrrd", "scan.mha"])
def test_truncated_file(tmp_path, name):
    # ITK zero-fills a truncated NIfTI silently; lesionvol must refuse it like the others
    path = tmp_path / name
    sitk.WriteImage(oblique_volume(), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InputError, match="cannot read"):
        read_scan(path)


def test_2d_image_refused(tmp_path):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.Image([32, 32], sitk.sitkInt16), str(path))
    with pytest.raises(InputError, match="2D"):
        read_scan(path)


def test_4d_needs_a_chosen_volume(tmp_path):
    path = tmp_path / "dyn.nii.gz"
    data = np.zeros((3, 5, 6, 7), np.float32)  # t, z, y, x
    data[2] = 7.0
    sitk.WriteImage(sitk.GetImageFromArray(data, isVector=False), str(path))
    with pytest.raises(InputError, match="4D with 3 volumes; choose one"):
        read_scan(path)
    chosen = read_scan(path, volume_index=2).image
    assert chosen.GetSize() == (7, 6, 5) and float(sitk.GetArrayFromImage(chosen).max()) == 7.0
    with pytest.raises(InputError, match="out of range"):
        read_scan(path, volume_index=3)


def test_nan_intensities_refused(tmp_path):
    image = sitk.Cast(oblique_volume(), sitk.sitkFloat32)
    image[3, 4, 5] = float("nan")
    image[4, 4, 5] = float("inf")
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match="2 NaN or infinite"):
        read_scan(path)


def test_mask_on_another_grid_refused(tmp_path):
    image = oblique_volume()
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask.SetSpacing((0.7, 0.7, 3.0))
    sitk.WriteImage(mask, str(tmp_path / "m.nii.gz"))
    with pytest.raises(InputError, match="not on its image's grid: spacing") as error:
        read_mask(tmp_path / "m.nii.gz", image)
    message = str(error.value)
    assert "image grid: size (24, 20, 9), spacing (0.7, 0.7, 3.5) mm" in message
    assert "mask grid: size (24, 20, 9), spacing (0.7, 0.7, 3.0) mm" in message and "\n" not in message


def test_mask_on_a_rotated_grid_refused():
    """Same size, spacing and origin, other direction cosines: still another grid."""
    image = oblique_volume()
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(image)
    mask.SetDirection((OBLIQUE @ rotation_matrix((0.0, 0.0, 1.0), 2.0)).flatten().tolist())
    with pytest.raises(InputError, match=r"the head mask is not on its image's grid: direction cosines differ; "
                                         r"image grid: .* direction \(0\.9[0-9]*, .*; mask grid: .* direction"):
        as_binary_mask(mask, image, name="the head mask")


def test_float_probability_mask_refused_but_float_binary_accepted():
    image = oblique_volume()
    mask = sitk.Image(image.GetSize(), sitk.sitkFloat32)
    mask.CopyInformation(image)
    mask[1, 1, 1] = 1.0
    assert int(sitk.GetArrayFromImage(as_binary_mask(mask, image)).sum()) == 1
    mask[2, 2, 2] = 0.6
    with pytest.raises(InputError, match="fractional values"):
        as_binary_mask(mask, image)


def test_label_map_refused_and_0_255_accepted():
    mask = sitk.Image([5, 5, 5], sitk.sitkUInt8)
    mask[1, 1, 1] = 255
    assert int(sitk.GetArrayFromImage(as_binary_mask(mask)).sum()) == 1
    mask[2, 2, 2] = 2
    with pytest.raises(InputError, match="not binary"):
        as_binary_mask(mask)


# ---- geometry is right or refused (issue "Never lose or corrupt a user's data") ----------

def test_attack_dicom_series_with_a_missing_slice_is_refused_naming_the_gap(tmp_path):
    # ITK reads 8 of 9 slices on their mean spacing (4.0 mm instead of 3.5 mm), with a warning only
    write_dicom_series(oblique_volume(), tmp_path / "series")
    (tmp_path / "series" / "slice004.dcm").unlink()
    expected = (f"'{tmp_path / 'series'}': slices 4 and 5 of 8 (slice003.dcm, slice005.dcm) are 7.00 mm apart where "
                f"the others are 3.50 mm: a missing slice or uneven spacing (ImagePositionPatient along the slice "
                f"normal); refused rather than read on the mean spacing")
    for given in (tmp_path / "series", tmp_path / "series" / "slice000.dcm"):
        with pytest.raises(InputError) as error:
            read_scan(given)
        assert str(error.value) == expected


def test_attack_dicom_series_with_a_missing_slice_read_when_gaps_are_allowed_with_a_warning(tmp_path):
    write_dicom_series(oblique_volume(), tmp_path / "series")
    (tmp_path / "series" / "slice004.dcm").unlink()
    with pytest.warns(UserWarning, match=r"slices 4 and 5 of 8 .* 7\.00 mm apart .*read on the mean spacing"):
        image = read_image(tmp_path / "series", allow_gaps=True)
    assert image.GetSize() == (24, 20, 8)
    assert image.GetSpacing()[2] == pytest.approx(4.0, abs=1e-4)  # (9 - 1) * 3.5 mm / (8 - 1): what ITK does


def test_attack_dicom_series_with_uneven_slice_spacing_is_refused(tmp_path):
    image = oblique_volume()
    write_dicom_series(image, tmp_path / "series")
    moved = tmp_path / "series" / "slice004.dcm"
    ds = pydicom.dcmread(moved)
    normal = np.asarray(image.GetDirection()).reshape(3, 3)[:, 2]
    ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(image.TransformIndexToPhysicalPoint((0, 0, 4))) + normal]
    ds.save_as(moved)
    with pytest.raises(InputError, match=r"^'.*series': slices 4 and 5 of 9 \(slice003\.dcm, slice004\.dcm\) are "
                                         r"4\.50 mm apart where the others are 3\.50 mm \(and 1 more uneven gap\): "):
        read_scan(tmp_path / "series")


@pytest.mark.parametrize("pixdim_z", [0.0, 1.0])
def test_attack_nifti_pixdim_disagreeing_with_the_sform_is_refused_naming_both(tmp_path, pixdim_z):
    # ITK takes the spacing from pixdim (0 becomes 1 mm): the volume would come out at a third
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    nii = nib.Nifti1Image(np.ones((6, 6, 6), np.int16), affine)
    nii.set_sform(affine, code=1)
    nii.set_qform(affine, code=1)
    nii.header["pixdim"][3] = pixdim_z
    path = tmp_path / "scan.nii"
    nib.save(nii, path)
    read_as = " (which ITK reads as (0.8, 0.8, 1.0) mm)" if pixdim_z == 0 else ""
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == (f"'{path}' gives two voxel sizes: pixdim says (0.8, 0.8, {pixdim_z}) mm{read_as}, "
                                f"the sform (0.8, 0.8, 3.0) mm; refused rather than guess (fix pixdim or the sform)")


def _raw_nifti(path, shape, pixdim=(1.0, 1.0, 1.0), data: bytes = b"") -> None:
    """A NIfTI-1 file written byte by byte (nibabel's save would fill in what the test leaves out)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["pixdim"][1:4] = pixdim
    header["vox_offset"] = 352
    with (gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb")) as handle:
        handle.write(header.binaryblock + bytes(4) + data)


def test_attack_nifti_without_sform_and_a_zero_pixdim_is_refused(tmp_path):
    path = tmp_path / "scan.nii.gz"
    _raw_nifti(path, (6, 6, 6), (0.8, 0.8, 0.0), bytes(6 * 6 * 6 * 2))
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == (f"'{path}' declares no voxel size: pixdim (0.8, 0.8, 0.0) and no sform "
                                f"(ITK would read (0.8, 0.8, 1.0) mm)")


def _metaimage(path, fields: str, data: bytes) -> None:
    path.write_bytes(f"ObjectType = Image\nNDims = 3\n{fields}ElementDataFile = LOCAL\n".encode() + data)


def test_attack_metaimage_with_a_scaled_transform_matrix_is_refused(tmp_path):
    # ITK takes TransformMatrix as direction cosines as is: every voxel 15 % larger than its spacing says
    path = tmp_path / "scaled.mha"
    _metaimage(path, "TransformMatrix = 1.15 0 0 0 1 0 0 0 1\nElementSpacing = 1 1 3\nDimSize = 6 6 6\n"
                     "ElementType = MET_SHORT\n", bytes(6 * 6 * 6 * 2))
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == (f"'{path}' has direction cosines that are not orthonormal (column lengths (1.15, 1.0, "
                                f"1.0), largest cosine between axes 0.0000): shear or scale in the orientation matrix; "
                                f"lesionvol needs a rotation (resample it, or fix the header)")


def test_attack_nrrd_with_sheared_space_directions_is_refused(tmp_path):
    path = tmp_path / "sheared.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 6 6\n"
                     b"space directions: (1,0,0) (0.5,1,0) (0,0,3)\nencoding: raw\nendian: little\n"
                     b"space origin: (0,0,0)\n\n" + bytes(6 * 6 * 6 * 2))
    with pytest.raises(InputError, match=r"has direction cosines that are not orthonormal \(column lengths \(1\.0, "
                                         r"1\.0, 1\.0\), largest cosine between axes 0\.4472\): shear"):
        read_scan(path)


def test_attack_complex_valued_image_is_refused(tmp_path):
    path = tmp_path / "complex.nii.gz"
    sitk.WriteImage(sitk.Image([6, 6, 6], sitk.sitkComplexFloat32), str(path))
    expected = (f"'{path}' holds complex-valued voxels (complex of 32-bit float); "
                f"lesionvol needs a real image (the magnitude)")
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == expected
    with pytest.raises(InputError) as error:
        read_mask(path)
    assert str(error.value) == expected


def test_attack_tiny_file_declaring_a_huge_image_is_refused_before_reading(tmp_path):
    mha = tmp_path / "huge.mha"
    _metaimage(mha, "DimSize = 1500 1500 1500\nElementType = MET_SHORT\n", bytes(100))
    nii = tmp_path / "huge.nii.gz"
    _raw_nifti(nii, (1500, 1500, 1500), data=bytes(100))
    for path in (mha, nii):
        started = time.perf_counter()
        with pytest.raises(InputError) as error:
            read_scan(path)
        assert str(error.value) == (f"'{path}' declares 1500 x 1500 x 1500 voxels of 16-bit signed integer (6.3 GiB); "
                                    f"lesionvol reads at most 2.0 GiB of voxels (lesionvol.io.MAX_IMAGE_BYTES)")
        assert time.perf_counter() - started < 2.0
    assert MAX_IMAGE_BYTES == 2 * 1024**3


def test_attack_file_declaring_more_voxels_than_it_holds_is_refused_before_reading(tmp_path):
    path = tmp_path / "short.mha"
    _metaimage(path, "DimSize = 64 64 64\nElementType = MET_SHORT\n", bytes(100))
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == (f"cannot read '{path}': truncated (its header declares 524288 bytes of voxels, "
                                f"the file holds 100)")
    detached = tmp_path / "gone.mhd"
    detached.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
                        "ElementDataFile = gone.raw\n")
    with pytest.raises(InputError) as error:
        read_scan(detached)
    assert str(error.value) == f"cannot read '{detached}': its data file '{tmp_path / 'gone.raw'}' does not exist"


@pytest.mark.parametrize("name, header", [
    ("minus.mha", "ObjectType = Image\nNDims = -1\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n"),
    ("huge.mha", "ObjectType = Image\nNDims = 2147483647\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
                 "ElementDataFile = LOCAL\n"),
    ("huge.nrrd", "NRRD0004\ntype: uchar\ndimension: 2147483647\nsizes: 4 4 4\nencoding: raw\n\n"),
])
def test_attack_header_declaring_minus_one_or_huge_dimensions_is_refused_before_itk(tmp_path, name, header):
    # found by tests/test_fuzz.py: ITK hangs on NDims = -1 and dies (SIGSEGV) on NDims = 2147483647
    path = tmp_path / name
    path.write_bytes(header.encode() + bytes(64))
    key, value = ("dimension", "2147483647") if name.endswith(".nrrd") else ("NDims", header.split()[5])
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == (f"cannot read '{path}': its header declares {key} = '{value}' "
                                f"(an integer from 1 to 5 is needed)")


def test_attack_nifti_with_an_infinite_sform_is_refused_before_itk(tmp_path):
    # found by tests/test_fuzz.py (seed 2): ITK's NIfTI reader never returns on srow_z = -inf
    affine = np.diag([0.8, 0.8, 3.0, 1.0])
    nii = nib.Nifti1Image(np.ones((6, 6, 6), np.int16), affine)
    nii.set_sform(affine, code=1)
    path = tmp_path / "scan.nii.gz"
    nib.save(nii, path)
    raw = gzip.decompress(path.read_bytes())
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw[:348]), check=False)
    header["srow_z"][1] = -np.inf
    path.write_bytes(gzip.compress(header.binaryblock + raw[348:]))
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert str(error.value) == f"cannot read '{path}': its sform holds infinite or NaN numbers"


def test_attack_file_name_holding_a_newline_still_gives_a_one_line_refusal(tmp_path):
    path = tmp_path / "scan\nname.nii.gz"
    path.write_text("not an image")
    with pytest.raises(InputError) as error:
        read_scan(path)
    assert "\n" not in str(error.value) and "scan\\nname.nii.gz" in str(error.value)


def _bad_name(tmp_path, name: bytes) -> bytes:
    path = os.fsencode(tmp_path) + b"/" + name
    sitk.WriteImage(oblique_volume(), str(tmp_path / "good.nii"))
    os.rename(tmp_path / "good.nii", path)
    return path


def test_attack_file_name_that_is_not_utf8_is_refused_before_itk(tmp_path, capsys):
    # ITK aborts the whole process (exit 134) on such a name
    path = _bad_name(tmp_path, b"scan\xe9.nii")
    expected = f"'{tmp_path}/scan\\xe9.nii': the file name is not valid UTF-8; rename it (ITK cannot open it)"
    for given in (path, os.fsdecode(path)):
        with pytest.raises(InputError) as error:
            read_scan(given)
        assert str(error.value) == expected
    with pytest.raises(InputError) as error:
        read_mask(path)
    assert str(error.value) == expected
    with pytest.raises(InputError) as error:
        write_image(oblique_volume(), os.fsdecode(os.fsencode(tmp_path) + b"/out\xe9.nii.gz"))
    assert "the file name is not valid UTF-8" in str(error.value)
    sitk.WriteImage(sitk.Cast(oblique_volume() > 500, sitk.sitkUInt8), str(tmp_path / "m.nii.gz"))
    assert main(["measure", os.fsdecode(path), "--lesion", str(tmp_path / "m.nii.gz"),
                 "--head", str(tmp_path / "m.nii.gz")]) == 2
    assert capsys.readouterr().err == f"lesionvol: error: {expected}\n"


def test_attack_dicom_folder_holding_a_file_name_that_is_not_utf8_is_refused(tmp_path):
    write_dicom_series(oblique_volume(), tmp_path / "series")
    os.rename(tmp_path / "series" / "slice004.dcm", os.fsencode(tmp_path / "series") + b"/slice\xe9.dcm")
    with pytest.raises(InputError, match=r"slice\\xe9\.dcm': the file name is not valid UTF-8"):
        read_scan(tmp_path / "series")


# ---- resume fingerprints cover detached data files --------------------------------------

@pytest.mark.parametrize("suffix", [".mhd", ".nhdr"])
def test_attack_sha256_of_a_detached_header_changes_when_its_data_file_changes(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(oblique_volume(), str(path), False)
    data_file = next(p for p in tmp_path.iterdir() if p != path)
    before = sha256_of(path)
    assert before != sha256_of.__wrapped__(path) if hasattr(sha256_of, "__wrapped__") else True
    data = bytearray(data_file.read_bytes())
    data[100] ^= 0xFF
    data_file.write_bytes(bytes(data))
    assert sha256_of(path) != before
    data_file.unlink()
    assert sha256_of(path) not in (before, "")  # a missing data file counts, without an exception


def test_sha256_of_a_metaimage_list_covers_every_listed_file(tmp_path):
    for k in range(3):
        (tmp_path / f"s{k}.raw").write_bytes(bytes([k]) * 16)
    path = tmp_path / "scan.mhd"
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 3\nElementType = MET_UCHAR\n"
                    "ElementDataFile = LIST 2D\ns0.raw\ns1.raw\ns2.raw\n")
    assert read_image(path).GetSize() == (4, 4, 3)
    before = sha256_of(path)
    (tmp_path / "s2.raw").write_bytes(bytes([9]) * 16)
    assert sha256_of(path) != before
    # an attached header keeps the plain file digest (fingerprints recorded before stay valid)
    sitk.WriteImage(oblique_volume(), str(tmp_path / "plain.mha"))
    import hashlib
    assert sha256_of(tmp_path / "plain.mha") == hashlib.sha256((tmp_path / "plain.mha").read_bytes()).hexdigest()


# ---- written files get the user's permissions ------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_attack_atomic_path_gives_the_umask_mode_not_mkstemp_0600(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        with atomic_path(tmp_path / "volumes.csv") as tmp:
            tmp.write_text("timepoint\n")
        write_image(oblique_volume(), tmp_path / "mask.nii.gz")
        write_image(oblique_volume(), tmp_path / "mask.mhd")
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.mhd", "mask.nii.gz", "mask.zraw", "volumes.csv"]
    for p in tmp_path.iterdir():
        assert p.stat().st_mode & 0o777 == mode, p.name


def test_write_image_detached_header_names_its_final_data_file(tmp_path):
    # the header once named ".mask.mhd.partial-XXXX.zraw", a temporary file left beside it
    write_image(oblique_volume(), tmp_path / "mask.mhd")
    write_image(oblique_volume(), tmp_path / "mask.nhdr", compress=False)
    assert "ElementDataFile = mask.zraw" in (tmp_path / "mask.mhd").read_text()
    assert "data file: mask.raw" in (tmp_path / "mask.nhdr").read_text()
    for name in ("mask.mhd", "mask.nhdr"):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(tmp_path / name)),
                                      sitk.GetArrayFromImage(oblique_volume()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.mhd", "mask.nhdr", "mask.raw", "mask.zraw"]


def test_dicom_timing_tags_are_kept_and_tell_the_contrast(tmp_path, capsys):
    """A T2 series (TR 4000 ms, TE 90 ms) whose pixels could pass for anything: the tags decide,
    the scan keeps them (no patient identifiers), and analyze refuses it in one line."""
    from lesionvol.cli import main

    write_dicom_series(oblique_volume(), tmp_path / "t2", extra_tags={
        "0018|0020": "SE", "0018|0080": "4000", "0018|0081": "90", "0008|103e": "COR T2 TSE"})
    scan = read_scan(tmp_path / "t2")
    assert scan.dicom_tags == {"StudyDate": "20260301", "ScanningSequence": "SE", "RepetitionTime": "4000",
                               "EchoTime": "90", "SeriesDescription": "COR T2 TSE"}
    assert main(["analyze", str(tmp_path / "t2"), "--out", str(tmp_path / "out" / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not look T1-weighted: T2 (long TR and TE (TR 4000, TE 90): T2-weighted)" in err
    assert "Doe" not in err and "ID-12345" not in err


def test_a_nifti_from_dcm2niix_keeps_its_contrast_tags_from_the_bids_sidecar(tmp_path, capsys):
    """The same T2 series (TR 4000 ms, TE 90 ms) converted by dcm2niix, the converter pipelines use: the NIfTI's
    sidecar gives its timing in seconds; lesionvol reads it in ms, refuses the scan as T2 in one line, and copies
    nothing else from the sidecar (dcm2niix keeps the series description, lesionvol no patient field)."""
    import subprocess

    import dcm2niix

    write_dicom_series(oblique_volume(), tmp_path / "t2", extra_tags={   # one study time, as a scanner writes it
        "0018|0020": "SE", "0018|0080": "4000", "0018|0081": "90", "0008|103e": "COR T2 TSE", "0008|0030": "101500"})
    subprocess.run([str(dcm2niix.bin), "-z", "y", "-ba", "n", "-f", "t2", "-o", str(tmp_path), str(tmp_path / "t2")],
                   check=True, capture_output=True)
    assert [p.name for p in tmp_path.glob("t2*.nii.gz")] == ["t2.nii.gz"]    # one series, one volume
    sidecar = json.loads((tmp_path / "t2.json").read_text())
    assert sidecar["EchoTime"] == pytest.approx(0.09) and sidecar["PatientName"] == "Doe^Jane"   # -ba n: not anonymised
    scan = read_scan(tmp_path / "t2.nii.gz")
    assert scan.dicom_tags == {"ScanningSequence": "SE", "RepetitionTime": "4000", "EchoTime": "90",
                               "SeriesDescription": "COR T2 TSE", "ProtocolName": "COR T2 TSE"}
    assert main(["segment", str(tmp_path / "t2.nii.gz"), "--out-head", str(tmp_path / "head.nii.gz"),
                 "--out-lesion", str(tmp_path / "lesion.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert "does not look T1-weighted: T2 (long TR and TE (TR 4000, TE 90): T2-weighted)" in err
    assert not (tmp_path / "head.nii.gz").exists() and not (tmp_path / "lesion.nii.gz").exists()
    assert "Doe" not in err
    (tmp_path / "t2.json").unlink()   # without its sidecar the scan is read from its pixels alone
    assert read_scan(tmp_path / "t2.nii.gz").dicom_tags == {}


@pytest.mark.parametrize("text,problem", [("[1, 2]", "is not a JSON object"), ("{'EchoTime': 0.1", "not readable JSON"),
                                          ('{"EchoTime": "long"}', "gives EchoTime 'long', not a number")])
def test_a_broken_sidecar_is_refused_in_one_line(tmp_path, text, problem):
    sitk.WriteImage(oblique_volume(), str(tmp_path / "scan.nii.gz"))
    (tmp_path / "scan.json").write_text(text)
    with pytest.raises(InputError) as caught:
        read_scan(tmp_path / "scan.nii.gz")
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_a_folder_with_two_dicom_series_lists_them_and_series_chooses(tmp_path, capsys):
    """Two series in one folder (a T1 and a second acquisition): refused with the list, read with --series,
    and the chosen series gives the same image as a folder holding it alone."""
    from lesionvol.cli import main

    t1, other = oblique_volume(), sitk.Cast(oblique_volume() * 0.5, sitk.sitkFloat32)
    write_dicom_series(t1, tmp_path / "both", extra_tags={"0020|0011": "3", "0008|103e": "COR T1 TSE"},
                       series_uid="1.2.826.0.1.3680043.2.1125.1.3", prefix="t1_")
    write_dicom_series(other, tmp_path / "both", extra_tags={"0020|0011": "5", "0008|103e": "COR PD"},
                       series_uid="1.2.826.0.1.3680043.2.1125.1.5", prefix="pd_")
    write_dicom_series(t1, tmp_path / "alone")
    with pytest.raises(InputError) as caught:
        read_scan(tmp_path / "both")
    message = str(caught.value)
    assert "holds 2 DICOM series; choose one with --series" in message
    assert "3 'COR T1 TSE' (9 slices" in message and "5 'COR PD' (9 slices" in message
    for choice in ("3", "cor t1 tse", "1.2.826.0.1.3680043.2.1125.1.3"):
        chosen = read_scan(tmp_path / "both", series=choice).image
        alone = read_scan(tmp_path / "alone").image
        assert np.array_equal(sitk.GetArrayViewFromImage(chosen), sitk.GetArrayViewFromImage(alone))
        assert chosen.GetSpacing() == alone.GetSpacing() and chosen.GetOrigin() == alone.GetOrigin()
    with pytest.raises(InputError, match="series '7' matches none of the 2 DICOM series"):
        read_scan(tmp_path / "both", series="7")
    assert main(["analyze", str(tmp_path / "both"), "--out", str(tmp_path / "out" / "o")]) == 2
    assert "choose one with --series" in capsys.readouterr().err
