"""Volumes of analytic shapes on anisotropic and oblique grids; LF, RF, flag and Steinberg."""

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import ball, ball_volume_ml, centred_grid, rotation_matrix
from lesionvol.measure import (
    mask_volume_ml,
    measure_volumes,
    mesh_volume_ml,
    residual_pct_baseline,
    steinberg_extent,
    threshold_flag,
)

OBLIQUE = rotation_matrix((1.0, 2.0, 0.5), 23.0)

GRIDS = {
    "isotropic 1 mm": ((1.0, 1.0, 1.0), None),
    "coronal 0.6x0.6x3 mm": ((0.6, 0.6, 3.0), None),
    "oblique 0.8x0.8x2 mm, 23 deg": ((0.8, 0.8, 2.0), OBLIQUE),
    "oblique 0.4x0.4x4 mm, 23 deg": ((0.4, 0.4, 4.0), OBLIQUE),
}


@pytest.mark.parametrize("name", GRIDS)
def test_head_sized_ball_volume_within_voxelisation_error(name):
    spacing, direction = GRIDS[name]
    radius = 23.0  # a 46 mm femoral head: 50.97 mL
    centre = (3.3, -7.1, 12.4)  # off the grid points, so the sampling is not symmetric
    reference = centred_grid(60.0, spacing, direction, centre)
    mask = ball(reference, centre, radius)
    true_ml = ball_volume_ml(radius)
    # Voxel-centre sampling of a smooth surface: the error is a sum of signed
    # sub-voxel slivers that largely cancel; 1 % of a head is 0.5 mL.
    assert mask_volume_ml(mask) == pytest.approx(true_ml, rel=0.01)
    # The mesh cuts the voxel staircase's corners; it stays within 2 % here.
    assert mesh_volume_ml(mask) == pytest.approx(true_ml, rel=0.02)


def test_small_lesion_volume_on_thick_slices():
    # a 5 mL lesion (r = 10.6 mm) on 4 mm slices: coarser, so a 4 % margin
    radius = (5000 * 3 / (4 * np.pi)) ** (1 / 3)
    reference = centred_grid(30.0, (0.5, 0.5, 4.0), OBLIQUE, (1.1, 2.2, 0.7))
    assert mask_volume_ml(ball(reference, (1.1, 2.2, 0.7), radius)) == pytest.approx(5.0, rel=0.04)


def test_voxel_volume_uses_spacing_not_voxel_count():
    mask = sitk.Image([10, 10, 10], sitk.sitkUInt8)
    mask.SetSpacing((0.5, 0.5, 3.0))
    mask[0:4, 0:4, 0:2] = 1  # 32 voxels of 0.75 mm³
    assert mask_volume_ml(mask) == pytest.approx(0.024)


def test_mesh_volume_is_smaller_than_voxel_count_for_a_cube():
    mask = sitk.Image([12, 12, 12], sitk.sitkUInt8)
    mask[2:10, 2:10, 2:10] = 1
    assert mask_volume_ml(mask) == pytest.approx(0.512)
    assert 0.45 < mesh_volume_ml(mask) < 0.512


def test_empty_lesion_is_zero_not_an_error():
    head = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    head[2:18, 2:18, 2:18] = 1
    volumes = measure_volumes(sitk.Image(head.GetSize(), sitk.sitkUInt8), head)
    assert volumes.lesion_volume_ml == 0.0
    assert volumes.lesion_mesh_volume_ml == 0.0
    assert volumes.lesion_pct_head == 0.0
    assert steinberg_extent(volumes.lesion_pct_head) == "none"
    assert threshold_flag(volumes.lesion_pct_head) == "below"


def test_lesion_drawn_outside_the_head_is_reported():
    head = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    head[0:10, :, :] = 1
    lesion = sitk.Image(head.GetSize(), sitk.sitkUInt8)
    lesion[8:12, 0:10, 0:10] = 1  # 400 voxels, 200 of them outside
    volumes = measure_volumes(lesion, head)
    assert volumes.lesion_volume_ml == pytest.approx(0.4)
    assert volumes.lesion_outside_head_ml == pytest.approx(0.2)


@pytest.mark.parametrize(
    "lf, extent", [(0.0, "none"), (0.01, "A"), (14.999, "A"), (15.0, "B"), (22.0, "B"), (30.0, "B"), (30.001, "C"), (100.0, "C")]
)
def test_steinberg_boundaries_15_and_30_inclusive_for_b(lf, extent):
    assert steinberg_extent(lf) == extent


def test_steinberg_boundary_survives_floating_point():
    # 4.5 / 30 * 100 is 14.999999999999998 in floating point; it must still read 15 % -> B
    assert steinberg_extent(100 * 4.5 / 30) == "B"
    assert steinberg_extent(100 * 9.0 / 30) == "B"  # exactly 30.000000000000004 -> B


@pytest.mark.parametrize("lf, flag", [(9.999, "below"), (10.0, "at_or_above"), (10.001, "at_or_above"), (3.7, "below")])
def test_threshold_flag_at_10_percent(lf, flag):
    assert threshold_flag(lf) == flag


def test_threshold_is_configurable():
    assert threshold_flag(12.0, threshold_pct=15.0) == "below"
    assert threshold_flag(15.0, threshold_pct=15.0) == "at_or_above"
    assert threshold_flag(float("nan")) == ""


def test_residual_pct_baseline():
    assert residual_pct_baseline(2.25, 9.0) == pytest.approx(25.0)
    assert residual_pct_baseline(0.0, 9.0) == 0.0
    assert np.isnan(residual_pct_baseline(1.0, 0.0))  # no baseline lesion: RF undefined
