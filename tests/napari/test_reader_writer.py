"""The reader puts voxels where they are in the scanner; the writer puts masks back on their grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from napari_lesionvol._reader import napari_get_reader
from napari_lesionvol._writer import write_labels


def _euler(angles_rad):
    t = sitk.Euler3DTransform()
    t.SetRotation(*angles_rad)
    return t.GetMatrix()


def _volume(direction, size=(40, 36, 12), spacing=(0.9, 0.8, 3.0), origin=(-120.0, 35.5, 60.0)):
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def _read(path):
    reader = napari_get_reader(str(path))
    assert reader is not None, f"the plugin does not offer to read {path}"
    return reader(str(path))


def _layer(layer_data):
    from napari.layers import Image, Labels

    data, attributes, kind = layer_data
    return (Labels if kind == "labels" else Image)(data, **attributes)


def test_oblique_image_known_point_lands_at_its_world_coordinate(tmp_path):
    image = _volume(_euler((0.25, -0.15, 0.4)))  # oblique: ~20-30° off every axis
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.int16)
    ijk = (21, 14, 6)  # index (x, y, z)
    array[ijk[2] - 1:ijk[2] + 2, ijk[1] - 2:ijk[1] + 3, ijk[0] - 2:ijk[0] + 3] = 1000  # small block
    marked = sitk.GetImageFromArray(array)
    marked.CopyInformation(image)
    sitk.WriteImage(marked, str(tmp_path / "oblique.nii.gz"))
    point_lps = np.array(marked.TransformIndexToPhysicalPoint(ijk))

    [layer_data] = _read(tmp_path / "oblique.nii.gz")
    layer = _layer(layer_data)
    meta = layer.metadata["lesionvol"]
    assert meta["display"] == "resampled"
    assert np.allclose(meta["native_grid"]["direction"], image.GetDirection())  # true geometry kept
    # the displayed voxel at the point's world coordinate (z, y, x) is inside the block ...
    world = point_lps[::-1]
    index = np.round(layer.world_to_data(world)).astype(int)
    assert layer.data[tuple(index)] > 900
    # ... and the brightest displayed voxels are centred on that point (within a display voxel)
    bright = np.argwhere(layer.data > 0.5 * layer.data.max())
    centre_world = np.asarray(layer.data_to_world(bright.mean(axis=0)))
    assert np.allclose(centre_world, world, atol=1.0)


def test_coronal_image_is_reordered_voxel_for_voxel(tmp_path):
    image = _volume((1, 0, 0, 0, 0, 1, 0, -1, 0))  # coronal: slices along -P... rows along S
    array = np.arange(np.prod(image.GetSize()), dtype=np.int16).reshape(sitk.GetArrayViewFromImage(image).shape)
    numbered = sitk.GetImageFromArray(array)
    numbered.CopyInformation(image)
    sitk.WriteImage(numbered, str(tmp_path / "coronal.nrrd"))
    [layer_data] = _read(tmp_path / "coronal.nrrd")
    layer = _layer(layer_data)
    assert layer.metadata["lesionvol"]["display"] == "reoriented"
    assert layer.data.size == array.size
    for ijk in [(0, 0, 0), (5, 30, 11), (39, 0, 7)]:
        world = np.array(numbered.TransformIndexToPhysicalPoint(ijk))[::-1]
        index = layer.world_to_data(world)
        assert np.allclose(index, np.round(index), atol=1e-6)
        assert layer.data[tuple(np.round(index).astype(int))] == array[ijk[2], ijk[1], ijk[0]]


def test_dicom_folder_and_mha_are_read(tmp_path):
    test_io = pytest.importorskip("test_io")
    image = _volume(_euler((0.0, 0.0, 0.0)), size=(16, 16, 6))
    image = sitk.Cast(sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 900, (6, 16, 16), dtype=np.int16)),
                      sitk.sitkInt16)
    image.SetSpacing((0.9, 0.8, 3.0))
    test_io.write_dicom_series(image, tmp_path / "series")
    [(data, attributes, kind)] = _read(tmp_path / "series")
    assert kind == "image" and data.shape == (6, 16, 16)
    assert attributes["metadata"]["lesionvol"]["study_date"] == "2026-03-01"
    sitk.WriteImage(image, str(tmp_path / "scan.mha"))
    [(data, attributes, kind)] = _read(tmp_path / "scan.mha")
    assert np.allclose(attributes["scale"], (3.0, 0.8, 0.9))
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None


def test_masks_open_as_labels_and_save_back_on_their_grid(tmp_path):
    from lesionvol.sample import sample_mask_paths, sample_series_paths

    for path in (sample_mask_paths("lesion")[2], sample_mask_paths("head")[0]):  # oblique 12-month, coronal baseline
        [(data, attributes, kind)] = _read(path)
        assert kind == "labels"
        out = write_labels(str(tmp_path / f"{path.name}"), data, attributes)[0]
        original, saved = sitk.ReadImage(str(path)), sitk.ReadImage(out)
        assert saved.GetSize() == original.GetSize()
        assert np.allclose(saved.GetSpacing(), original.GetSpacing()) and np.allclose(saved.GetOrigin(), original.GetOrigin())
        assert np.allclose(saved.GetDirection(), original.GetDirection(), atol=1e-6)
        # exact round trip, also for the oblique scan shown resampled (unchanged: its file's voxels)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(original), sitk.GetArrayFromImage(saved))
    # an edited oblique mask goes back by nearest neighbour: close to, not exactly, the painted volume
    path = sample_mask_paths("lesion")[2]
    [(data, attributes, _)] = _read(path)
    assert attributes["metadata"]["lesionvol"]["display"] == "resampled"
    edited = data.copy()
    edited[np.nonzero(data)[0].min()] = 0  # erase the lesion's first displayed slice
    saved = sitk.ReadImage(write_labels(str(tmp_path / "edited.nii.gz"), edited, attributes)[0])
    display_ml = edited.astype(bool).sum() * np.prod(attributes["scale"]) / 1000
    saved_ml = sitk.GetArrayViewFromImage(saved).astype(bool).sum() * np.prod(saved.GetSpacing()) / 1000
    assert saved_ml == pytest.approx(display_ml, rel=0.05)
    [(_, attributes, kind)] = _read(sample_series_paths()[0])
    assert kind == "image"


def test_viewer_open_uses_the_plugin(make_viewer):
    from lesionvol.sample import sample_series_paths

    viewer = make_viewer()
    path = sample_series_paths()[0]
    [layer] = viewer.open(str(path), plugin="lesionvol")
    image = sitk.ReadImage(str(path))
    centre_ijk = [s // 2 for s in image.GetSize()]
    world = np.array(image.TransformIndexToPhysicalPoint(centre_ijk))[::-1]
    index = np.round(layer.world_to_data(world)).astype(int)
    assert layer.data[tuple(index)] == sitk.GetArrayViewFromImage(image)[centre_ijk[2], centre_ijk[1], centre_ijk[0]]
