"""Reading every supported format with its geometry, nibabel conversion, and bad input."""

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from nibabel.testing import data_path

from helpers import grid, rotation_matrix
from lesionvol.errors import InputError
from lesionvol.io import as_binary_mask, from_nibabel, read_image, read_mask, read_scan, to_nibabel, write_image

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


def write_dicom_series(image: sitk.Image, folder, patient_name="Doe^Jane", study_date="20260301"):
    """One DICOM file per slice with the geometry tags, as a scanner would write them."""
    folder.mkdir()
    image = sitk.Cast(image, sitk.sitkInt16)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
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
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
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
