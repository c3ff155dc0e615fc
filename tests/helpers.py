"""Small image builders shared by the core tests (analytic shapes on any physical grid)."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionvol.geometry import physical_points


def rotation_matrix(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Rotation about ``axis`` by ``angle_deg`` (Rodrigues)."""
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def grid(size_xyz, spacing_mm, origin_mm=(0.0, 0.0, 0.0), direction=None, pixel=sitk.sitkUInt8) -> sitk.Image:
    image = sitk.Image([int(s) for s in size_xyz], pixel)
    image.SetSpacing([float(s) for s in spacing_mm])
    image.SetOrigin([float(o) for o in origin_mm])
    if direction is not None:
        image.SetDirection(np.asarray(direction, float).flatten().tolist())
    return image


def centred_grid(extent_mm: float, spacing_mm, direction=None, centre_mm=(0.0, 0.0, 0.0), pixel=sitk.sitkUInt8):
    """A grid of about ``extent_mm`` on each side, centred on ``centre_mm`` whatever its direction."""
    size = [int(np.ceil(extent_mm / s)) for s in spacing_mm]
    direction = np.eye(3) if direction is None else np.asarray(direction, float)
    half = direction @ (np.asarray(spacing_mm) * (np.asarray(size) - 1) / 2)
    return grid(size, spacing_mm, np.asarray(centre_mm) - half, direction, pixel)


def points_of(image: sitk.Image) -> np.ndarray:
    """Physical LPS points of every voxel, shaped (z, y, x, 3)."""
    zyx = np.indices(image.GetSize()[::-1]).reshape(3, -1).T
    return physical_points(image, zyx).reshape(*image.GetSize()[::-1], 3)


def ball(reference: sitk.Image, centre_mm, radius_mm: float) -> sitk.Image:
    """uint8 mask of a ball sampled at voxel centres on the reference grid."""
    inside = np.linalg.norm(points_of(reference) - np.asarray(centre_mm), axis=-1) <= radius_mm
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


def ball_volume_ml(radius_mm: float) -> float:
    return 4.0 / 3.0 * np.pi * radius_mm**3 / 1000.0
