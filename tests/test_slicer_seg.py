"""3D Slicer segmentations: round trips, overlapping layers, LPS/RAS space, header fields, refusals."""

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from helpers import grid, rotation_matrix
from lesionvol.errors import InputError
from lesionvol.geometry import index_to_physical_affine, same_grid
from lesionvol.io import read_image, read_mask
from lesionvol.measure import measure_volumes
from lesionvol.sample import sample_mask_paths, sample_series_paths
from lesionvol.slicer_seg import head_and_lesion, is_slicer_segmentation, read_segments, write_segments

OBLIQUE = rotation_matrix((0.3, 1.0, 0.2), 17.0)
SIZE = (12, 10, 7)


def blank() -> sitk.Image:
    return grid(SIZE, (0.7, 0.9, 3.5), (-12.5, 30.25, 101.0), OBLIQUE)


def box(lo, hi) -> sitk.Image:
    mask = blank()
    mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
    return mask


def head_lesion() -> tuple[sitk.Image, sitk.Image]:
    return box((1, 1, 1), (10, 9, 6)), box((3, 2, 2), (6, 5, 4))


def voxels(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def assert_same(a: sitk.Image, b: sitk.Image) -> None:
    """Identical voxels; geometry equal to the last bits a 17-digit text header keeps."""
    assert a.GetSize() == b.GetSize() and a.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(voxels(a), voxels(b))
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-12)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=1e-12)


def test_round_trip_keeps_voxels_and_oblique_anisotropic_geometry(tmp_path):
    head, lesion = head_lesion()
    neck = box((0, 0, 6), (4, 4, 7))  # touches neither: shares the head's layer
    path = write_segments(tmp_path / "t0.seg.nrrd", {"head": head, "lesion": lesion, "neck": neck})
    masks = read_segments(path)
    assert list(masks) == ["head", "lesion", "neck"]
    for name, mask in (("head", head), ("lesion", lesion), ("neck", neck)):
        assert_same(masks[name], mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t0.seg.nrrd"]  # no partial file left


def test_overlapping_segments_are_written_as_layers_and_read_back(tmp_path):
    head, lesion = head_lesion()
    neck = box((0, 0, 6), (4, 4, 7))
    path = write_segments(tmp_path / "t0.seg.nrrd", {"head": head, "lesion": lesion, "neck": neck})
    data, header = nrrd.read(str(path))
    assert header["dimension"] == 4 and header["kinds"] == ["list", "domain", "domain", "domain"]
    assert header["sizes"].tolist() == [2, *SIZE]  # layers first, then i, j, k
    assert np.isnan(header["space directions"][0]).all()
    layers = {header[f"Segment{i}_Name"]: (header[f"Segment{i}_Layer"], header[f"Segment{i}_LabelValue"])
              for i in range(3)}
    assert layers == {"head": ("0", "1"), "lesion": ("1", "1"), "neck": ("0", "2")}
    assert int((data[0] == 1).sum()) == 9 * 8 * 5 and int((data[1] == 1).sum()) == 3 * 3 * 2


def test_a_4d_segmentation_written_by_another_tool_is_read_by_layer_and_label(tmp_path):
    """Built with pynrrd as Slicer lays it out: layer 0 holds head (2) and neck (5), layer 1 the lesion (1)."""
    head, lesion = head_lesion()
    neck = box((0, 0, 6), (4, 4, 7))
    layer0 = (voxels(head) * 2 + voxels(neck) * 5).transpose(2, 1, 0)
    layer1 = voxels(lesion).transpose(2, 1, 0)
    affine = index_to_physical_affine(blank())
    header = {"type": "unsigned char", "space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.vstack([[np.nan] * 3, affine[:3, :3].T]), "space origin": affine[:3, 3],
              "Segmentation_MasterRepresentation": "Binary labelmap"}
    for i, (name, layer, label) in enumerate((("Neck", 0, 5), ("Lesion", 1, 1), ("Head", 0, 2))):
        header.update({f"Segment{i}_ID": f"Segment_{i}", f"Segment{i}_Name": name,
                       f"Segment{i}_Layer": str(layer), f"Segment{i}_LabelValue": str(label)})
    path = tmp_path / "drawn.nrrd"  # a plain .nrrd name: the header tells it is a segmentation
    nrrd.write(str(path), np.stack([layer0, layer1]).astype(np.uint8), header)
    assert is_slicer_segmentation(path)
    masks = read_segments(path)
    assert list(masks) == ["Neck", "Lesion", "Head"]
    for name, mask in (("Head", head), ("Lesion", lesion), ("Neck", neck)):
        assert_same(masks[name], mask)
    h, l = head_and_lesion(path, blank())
    np.testing.assert_array_equal(voxels(h), voxels(head))  # the lesion lies inside the head
    np.testing.assert_array_equal(voxels(l), voxels(lesion))


@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior"])
def test_space_field_lps_or_ras_gives_the_same_lps_geometry_as_itk(tmp_path, space):
    head, _ = head_lesion()
    affine = index_to_physical_affine(head)
    if space == "right-anterior-superior":
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # the same points, written in RAS
    header = {"type": "unsigned char", "space": space, "kinds": ["domain"] * 3,
              "space directions": affine[:3, :3].T, "space origin": affine[:3, 3],
              "Segment0_ID": "Segment_1", "Segment0_Name": "head", "Segment0_LabelValue": "1", "Segment0_Layer": "0"}
    path = tmp_path / "head.seg.nrrd"
    nrrd.write(str(path), voxels(head).transpose(2, 1, 0).astype(np.uint8), header)
    mask = read_segments(path)["head"]
    assert_same(mask, head)
    itk = sitk.ReadImage(str(path))  # ITK's own NRRD reader converts RAS to LPS: it must agree
    assert same_grid(itk, mask)
    # and a point is where it was: the first voxel of the box, in LPS mm
    np.testing.assert_allclose(mask.TransformIndexToPhysicalPoint((1, 1, 1)),
                               head.TransformIndexToPhysicalPoint((1, 1, 1)), atol=1e-9)


def test_written_file_is_lps_and_itk_reads_its_geometry(tmp_path):
    head, lesion = head_lesion()
    path = write_segments(tmp_path / "t0.seg.nrrd", {"lesion": lesion})  # one segment: a 3D file
    header = nrrd.read_header(str(path))
    assert header["space"] == "left-posterior-superior" and header["kinds"] == ["domain"] * 3
    itk = sitk.ReadImage(str(path))
    assert same_grid(itk, lesion)
    np.testing.assert_array_equal(voxels(itk), voxels(lesion))


def test_header_has_the_fields_slicer_reads(tmp_path):
    head, lesion = head_lesion()
    path = write_segments(tmp_path / "t0.seg.nrrd", {"head": head, "lesion": lesion}, colors={"lesion": (1, 0.5, 0)})
    header = nrrd.read_header(str(path))
    assert header["Segmentation_MasterRepresentation"] == "Binary labelmap"
    assert header["Segmentation_ContainedRepresentationNames"] == "Binary labelmap|"
    assert header["Segmentation_ReferenceImageExtentOffset"] == "0 0 0"
    geometry = header["Segmentation_ConversionParameters"].split("|")
    assert geometry[0] == "Reference image geometry"
    values = [float(v) for v in geometry[1].rstrip(";").split(";")]
    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ index_to_physical_affine(head)
    np.testing.assert_allclose(np.reshape(values[:16], (4, 4)), ijk_to_ras, atol=1e-12)
    assert values[16:] == [0, 11, 0, 9, 0, 6]
    expected = {"ID": ("Segment_1", "Segment_2"), "Name": ("head", "lesion"), "LabelValue": ("1", "1"),
                "Layer": ("0", "1"), "Extent": ("0 11 0 9 0 6",) * 2, "NameAutoGenerated": ("0", "0"),
                "ColorAutoGenerated": ("0", "0")}
    for field, values_ in expected.items():
        assert (header[f"Segment0_{field}"], header[f"Segment1_{field}"]) == values_, field
    assert [float(c) for c in header["Segment1_Color"].split()] == [1.0, 0.5, 0.0]
    assert len(header["Segment0_Color"].split()) == 3 and "Segment2_ID" not in header


def test_volumes_from_a_segmentation_equal_those_of_the_separate_masks(tmp_path):
    image = read_image(sample_series_paths()[0])
    head = read_mask(sample_mask_paths("head")[0], image)
    lesion = read_mask(sample_mask_paths("lesion")[0], image)
    path = write_segments(tmp_path / "baseline.seg.nrrd", {"Head": head, "Lesion": lesion})
    from_seg = measure_volumes(*reversed(head_and_lesion(path, image)))
    separate = measure_volumes(lesion, sitk.Or(head, lesion))
    assert from_seg == separate
    assert from_seg.lesion_volume_ml > 0 and from_seg.head_volume_ml > from_seg.lesion_volume_ml


def test_segment_names_match_ignoring_case_and_can_be_chosen(tmp_path):
    head, lesion = head_lesion()
    path = write_segments(tmp_path / "t.seg.nrrd", {"Femoral head": head, " NECROSIS ": lesion})
    h, l = head_and_lesion(path, blank(), head_name="femoral HEAD", lesion_name="necrosis")
    np.testing.assert_array_equal(voxels(l), voxels(lesion))
    np.testing.assert_array_equal(voxels(h), voxels(head))


def test_missing_segment_is_refused_in_one_line_naming_those_found(tmp_path):
    head, _ = head_lesion()
    path = write_segments(tmp_path / "t.seg.nrrd", {"Head": head, "Neck": box((0, 0, 0), (2, 2, 2))})
    with pytest.raises(InputError) as error:
        head_and_lesion(path, blank())
    message = str(error.value)
    assert "\n" not in message
    assert "no segment named 'lesion'" in message and "'Head', 'Neck'" in message


def test_wrong_grid_is_refused_in_one_line(tmp_path):
    head, lesion = head_lesion()
    path = write_segments(tmp_path / "t.seg.nrrd", {"head": head, "lesion": lesion})
    other = blank()
    other.SetSpacing((0.7, 0.9, 3.0))
    with pytest.raises(InputError, match="not on its image's grid: spacing") as error:
        head_and_lesion(path, other)
    assert "\n" not in str(error.value) and "t.seg.nrrd" in str(error.value)


def test_a_segmentation_cropped_by_whole_voxels_is_placed_back_exactly(tmp_path):
    """Slicer can save cropped to the segments: same lattice, origin moved by whole voxels."""
    head, lesion = head_lesion()
    crop = [2, 1, 1]
    cropped = {name: sitk.RegionOfInterest(m, [8, 8, 5], crop) for name, m in (("head", head), ("lesion", lesion))}
    assert int(voxels(cropped["head"]).sum()) < int(voxels(head).sum())  # the crop cut the head
    head_inside = box((2, 1, 1), (10, 9, 6))
    cropped["head"] = sitk.RegionOfInterest(head_inside, [8, 8, 5], crop)
    path = write_segments(tmp_path / "cropped.seg.nrrd", cropped)
    h, l = head_and_lesion(path, blank())
    assert same_grid(h, blank())
    np.testing.assert_array_equal(voxels(h), voxels(head_inside))
    np.testing.assert_array_equal(voxels(l), voxels(lesion))


def test_a_segmentation_larger_than_the_image_is_refused_when_it_has_voxels_outside(tmp_path):
    head, lesion = head_lesion()
    padded = {n: sitk.ConstantPad(m, [1, 0, 0], [0, 0, 0]) for n, m in (("head", head), ("lesion", lesion))}
    padded["head"][0, 4, 4] = 1  # a voxel left of the image
    path = write_segments(tmp_path / "big.seg.nrrd", padded)
    with pytest.raises(InputError, match="reaches outside its image"):
        head_and_lesion(path, blank())
    padded["head"][0, 4, 4] = 0
    path = write_segments(tmp_path / "big.seg.nrrd", padded)
    h, _ = head_and_lesion(path, blank())
    np.testing.assert_array_equal(voxels(h), voxels(head))


def test_bad_input_is_refused_and_nothing_is_written(tmp_path):
    head, lesion = head_lesion()
    out = tmp_path / "t.seg.nrrd"
    not_binary = sitk.Cast(head, sitk.sitkUInt8) * 3
    cases = [({"head": head, "HEAD": lesion}, "two segments are named"),
             ({"head": head, "lesion": not_binary}, "not binary"),
             ({"head": head, "bad\nname": lesion}, "one-line"),
             ({}, "no masks")]
    for masks, reason in cases:
        with pytest.raises(InputError, match=reason):
            write_segments(out, masks)
    shifted = box((0, 0, 0), (2, 2, 2))
    shifted.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="not on its image's grid"):
        write_segments(out, {"head": head, "lesion": shifted})
    with pytest.raises(InputError, match="colour"):
        write_segments(out, {"head": head}, colors={"head": (255, 0, 0)})
    with pytest.raises(InputError, match=r"\.seg\.nrrd"):
        write_segments(tmp_path / "t.nii.gz", {"head": head})
    assert list(tmp_path.iterdir()) == []


def test_unreadable_files_are_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_segments(tmp_path / "missing.seg.nrrd")
    junk = tmp_path / "junk.seg.nrrd"
    junk.write_bytes(b"not a nrrd")
    with pytest.raises(InputError, match="cannot read") as error:
        read_segments(junk)
    assert "\n" not in str(error.value)
    scanner = tmp_path / "scanner.seg.nrrd"
    nrrd.write(str(scanner), np.zeros((2, 2, 2), np.uint8), {"space": "scanner-xyz", "space directions": np.eye(3)})
    with pytest.raises(InputError, match="space 'scanner-xyz'"):
        read_segments(scanner)
    assert not is_slicer_segmentation(tmp_path / "plain.nrrd")
