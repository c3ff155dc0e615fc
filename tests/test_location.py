"""Lesion location and staging on phantoms whose geometry makes the answer known analytically."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionvol.location import (
    LOCATION_DEFINITIONS,
    OCTANTS,
    describe_location,
    fit_head_sphere,
    infer_side,
    jic_type,
    kerboul_grade,
)
from lesionvol.phantom import VisitSpec, lesion_for_fraction, make_visit

R = 23.0
GRID = dict(shape=(96, 96, 64), spacing_mm=(1.0, 1.0, 1.5))


def lateral_of(side):
    return np.array([-1.0, 0, 0]) if side == "right" else np.array([1.0, 0, 0])


def expected_arc_deg(offset, radius, u, v, neck_axis, junction_mm):
    """Arc (deg) of the head surface under a ball lesion in the plane spanned by u, v through the
    head centre, as describe_location measures it (a direction counts if the lesion is present
    1-3.5 mm under the true surface), from the analytic shapes: lesion = ball ∩ junction-cut head."""
    theta = np.deg2rad(np.arange(0, 360, 0.25))
    d = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v
    depths = np.linspace(R - 3.5, R - 1.0, 11)
    p = d[:, None, :] * depths[None, :, None]
    inside = (np.linalg.norm(p - offset, axis=-1) <= radius) & (p @ neck_axis <= junction_mm)
    return 0.25 * float(inside.any(axis=1).sum())


def expected_lateral_margin(offset, radius, lateral, neck_axis, junction_mm):
    """Lateral-most point of (lesion ball ∩ head ball) in the mid-coronal plane (fine grid)."""
    sup = np.array([0, 0, 1.0])
    g = np.arange(-R, R, 0.02)
    la, su = np.meshgrid(g, g, indexing="ij")
    p = la[..., None] * lateral + su[..., None] * sup
    inside = (la**2 + su**2 <= R**2) & (np.linalg.norm(p - offset, axis=-1) <= radius) & (p @ neck_axis <= junction_mm)
    return float(la[inside].max())


def scan_with(side, pct, direction, **grid):
    les = lesion_for_fraction(R, pct, side=side, direction=direction)
    scan = make_visit(VisitSpec(lesions=(les,), **{**GRID, **grid}), seed=3, side=side, head_radius_mm=R)
    return scan, les


@pytest.mark.parametrize("side", ["right", "left"])
def test_head_centre_side_and_centroid(side):
    scan, les = scan_with(side, 20.0, None, plane="axial", rotation_deg=(4.0, -6.0, 8.0))
    centre, radius = fit_head_sphere(scan.head_mask)
    assert np.linalg.norm(centre - scan.truth.head_centre_mm) < 0.5
    assert abs(radius - R) < 1.0
    assert infer_side(scan.head_mask) == side
    loc = describe_location(scan.lesion_enclosed_mask, scan.head_mask, side=side)
    truth = scan.truth.lesion_centroid_mm - scan.truth.head_centre_mm
    measured = np.array([loc["lesion_centroid_anterior_mm"], loc["lesion_centroid_superior_mm"],
                         loc["lesion_centroid_lateral_mm"]])
    expected = np.array([truth @ [0, -1, 0], truth[2], truth @ lateral_of(side)])
    assert np.abs(measured - expected).max() < 0.8
    assert loc["lesion_centroid_direction"] == "anterior-superior"
    assert sum(loc[f"lesion_pct_{o}"] for o in OCTANTS) == pytest.approx(100.0)
    assert loc["lesion_main_octant"].startswith("anterior_superior")


def test_infer_side_unknown_for_a_whole_sphere():
    zyx = np.indices((40, 40, 40))
    ball = (np.sqrt(((zyx - 20) ** 2).sum(0)) <= 12).astype(np.uint8)
    assert infer_side(sitk.GetImageFromArray(ball)) == "unknown"


# (direction in object frame for a right hip, lesion % of head, expected JIC)
CASES = [
    ((0.80, -0.20, 0.60), 3.0, "A"),     # small, medial-superior
    ((0.15, -0.40, 0.90), 6.0, "B"),     # small, central-superior
    ((-0.25, -0.45, 0.86), 20.0, "C1"),  # default antero-superior
    ((-0.55, -0.30, 0.78), 35.0, "C2"),  # large, lateral
]


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("direction, pct, jic", CASES)
def test_kerboul_jic_cjfh_known_geometry(side, direction, pct, jic):
    direction = np.array(direction) * ([1, 1, 1] if side == "right" else [-1, 1, 1])
    scan, les = scan_with(side, pct, direction)
    lateral = lateral_of(side)
    offset = np.array(les.centre_offset_mm)
    loc = describe_location(scan.lesion_enclosed_mask, scan.head_mask, side=side,
                            acetabular_edge_mm=scan.truth.acetabular_edge_mm)
    sup, ant = np.array([0, 0, 1.0]), np.array([0, -1.0, 0])
    coronal = expected_arc_deg(offset, les.radius_mm, lateral, sup, scan.truth.neck_axis, scan.truth.junction_mm)
    sagittal = expected_arc_deg(offset, les.radius_mm, ant, sup, scan.truth.neck_axis, scan.truth.junction_mm)
    assert loc["kerboul_coronal_deg"] == pytest.approx(coronal, abs=8)
    assert loc["kerboul_sagittal_deg"] == pytest.approx(sagittal, abs=8)
    assert loc["kerboul_grade"] == kerboul_grade(coronal + sagittal)
    margin = expected_lateral_margin(offset, les.radius_mm, lateral, scan.truth.neck_axis, scan.truth.junction_mm)
    edge = (scan.truth.acetabular_edge_mm - scan.truth.head_centre_mm) @ lateral
    assert loc["jic_lesion_lateral_margin_mm"] == pytest.approx(margin, abs=1.5)
    assert loc["jic_acetabular_edge_lateral_mm"] == pytest.approx(edge, abs=0.5)
    assert jic_type(margin, edge) == jic  # the case really is of that type
    assert loc["jic_type"] == jic
    assert loc["cjfh_type"] in {"A": {"M", "C"}, "B": {"C"}, "C1": {"C", "L1"}, "C2": {"L1", "L2"}}[jic]


def test_large_lesion_grades_high_and_whole_head_is_l3():
    scan, les = scan_with("right", 45.0, (-0.3, -0.3, 0.9))
    loc = describe_location(scan.lesion_enclosed_mask, scan.head_mask, side="right")
    assert loc["kerboul_grade"] >= 3
    assert loc["jic_type"] == "" and "landmark" in loc["jic_reason"]
    whole = describe_location(scan.head_mask, scan.head_mask, side="right")
    assert whole["cjfh_type"] == "L3" and whole["kerboul_grade"] == 4


def test_no_lesion_and_definitions():
    scan, _ = scan_with("right", 10.0, None)
    empty = sitk.Image(scan.head_mask) * 0
    loc = describe_location(empty, scan.head_mask, side="right")
    assert loc["jic_type"] == "" and loc["kerboul_combined_deg"] == 0.0 and loc["jic_reason"] == "no lesion"
    assert "jic_type" in LOCATION_DEFINITIONS and "kerboul_grade" in LOCATION_DEFINITIONS
    with pytest.raises(Exception):
        describe_location(empty, scan.head_mask, side="both")
