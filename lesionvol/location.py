"""Where the necrotic lesion sits in the femoral head, and the staging read off its position.

All geometry is in physical LPS millimetres (x = +Left, y = +Posterior, z = +Superior), so
the answers do not depend on the slice plane or obliquity of the acquisition. Anatomical
directions are those of the scanner's patient axes: anterior = −y, superior = +z, lateral =
−x for a right hip and +x for a left hip. The *mid-coronal* and *mid-sagittal* sections are
the coronal (normal y) and sagittal (normal x) planes through the head centre, resampled from
the masks, not acquired slices.

The head centre is a least-squares sphere fitted to the head mask's surface, trimmed of the
flat head–neck cut (points well inside the sphere), so it is the centre of the articular
sphere whichever head definition (sphere fit or junction cut) the mask follows.

Every output column and its definition is listed in :data:`LOCATION_DEFINITIONS`.

Example
-------
>>> from lesionvol.phantom import make_visit, VisitSpec, lesion_for_fraction
>>> scan = make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 20.0),), shape=(80, 80, 40),
...                   spacing_mm=(1.5, 1.5, 3.0)), seed=0)
>>> loc = describe_location(scan.lesion_enclosed_mask, scan.head_mask, side="right")
>>> loc["lesion_centroid_direction"]
'anterior-superior'
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import fit_sphere, index_to_physical_affine, physical_points

#: Kerboul grade limits on the combined necrotic angle (degrees), see LOCATION_DEFINITIONS.
KERBOUL_LIMITS_DEG = (200.0, 250.0, 300.0)
#: Depths below the fitted head surface (mm) probed for the Kerboul arc.
ARC_DEPTHS_MM = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: CJFH pillars: medial 30 %, central 40 %, lateral 30 % of the head's width.
PILLAR_FRACTIONS = (0.3, 0.4, 0.3)
#: A pillar counts as wholly involved when the lesion reaches this share of its columns.
PILLAR_FULL = 0.95
#: Grid step (mm) of the resampled mid-coronal section (JIC margin, CJFH pillars).
SECTION_STEP_MM = 0.5
#: Head-mask sphere fit: rounds of fitting; surface points more than HEAD_CUT_TRIM_MM (at least one
#: voxel) inside the last fit are the flat head–neck cut and are left out of the next round.
HEAD_SPHERE_FIT_ROUNDS = 4
HEAD_CUT_TRIM_MM = 2.0
#: infer_side: the cut head's centroid lies off the sphere's centre away from the neck (superior and
#: medial).  A cut where the neck leaves the ball (~0.7-0.8 R) moves it by ~0.015 R (0.35 mm for
#: R = 23 mm); a whole ball by < 0.01 mm.  Below SIDE_MIN_OFFSET_FRACTION × R, not superior, or
#: with a left-right share below SIDE_MIN_LATERAL_SHARE, the side is 'unknown'.
SIDE_MIN_OFFSET_FRACTION = 0.006
SIDE_MIN_LATERAL_SHARE = 0.3

OCTANTS = [f"{ap}_{si}_{ml}" for ap in ("anterior", "posterior") for si in ("superior", "inferior")
           for ml in ("medial", "lateral")]

LOCATION_DEFINITIONS: dict[str, str] = {
    "head_centre_x_mm, head_centre_y_mm, head_centre_z_mm":
        "centre of the sphere fitted to the head mask surface (flat head-neck cut trimmed), LPS mm",
    "head_radius_fit_mm": "radius of that sphere (mm)",
    "lesion_centroid_anterior_mm, _superior_mm, _lateral_mm":
        "lesion centroid minus head centre along anterior (-y), superior (+z) and lateral "
        "(-x right hip, +x left hip), mm; negative = posterior / inferior / medial",
    "lesion_centroid_distance_mm": "distance from head centre to lesion centroid (mm)",
    "lesion_centroid_direction":
        "names of the centroid offset components larger than 30 % of its length, ordered "
        "anterior/posterior, superior/inferior, medial/lateral (e.g. 'anterior-superior')",
    "lesion_pct_<ap>_<si>_<ml>":
        "% of lesion volume in each octant about the head centre (anterior/posterior x "
        "superior/inferior x medial/lateral); the 8 columns sum to 100",
    "lesion_main_octant": "octant holding the largest share of the lesion",
    "kerboul_coronal_deg, kerboul_sagittal_deg":
        "modified Kerboul necrotic angle (Ha 2006): arc of the head surface, seen from the head "
        "centre, under which the lesion lies in the mid-coronal / mid-sagittal section; measured "
        "in 1-degree steps, a direction counts when the lesion is present 0.5-3 mm below the "
        "fitted surface",
    "kerboul_combined_deg": "kerboul_coronal_deg + kerboul_sagittal_deg",
    "kerboul_grade":
        "1 < 200, 2 200-249, 3 250-299, 4 >= 300 degrees combined (Ha 2006; <= 190 none "
        "collapsed, >= 240 all collapsed)",
    "jic_type":
        "JIC 2001 on the mid-coronal section: weight-bearing portion = head width under the "
        "acetabulum, from the lateral acetabular edge to the point as far medial of the head "
        "centre (our operational reading), divided in thirds; A: lesion's lateral margin within "
        "the medial third, B: within the medial two thirds, C1: beyond two thirds but not "
        "beyond the lateral acetabular edge, C2: beyond the edge. Empty without an edge "
        "(reason in jic_reason)",
    "jic_lesion_lateral_margin_mm": "lateral-most lesion point in the mid-coronal section, lateral of the head centre (mm)",
    "jic_acetabular_edge_lateral_mm": "lateral acetabular edge, lateral of the head centre (mm)",
    "cjfh_type":
        "CJFH (China-Japan Friendship Hospital) on the mid-coronal section: head width split into "
        "medial 30 % / central 40 % / lateral 30 % pillars; a pillar is involved when the lesion "
        "reaches any of its columns above the head centre, wholly involved at >= 95 % of them. "
        "M: medial only; C: central (+/- medial), lateral spared; L1: lateral partly involved; "
        "L2: lateral wholly involved; L3: all three wholly involved",
    "cjfh_pct_medial, cjfh_pct_central, cjfh_pct_lateral": "% of each pillar's columns reached by the lesion",
}


# ----------------------------------------------------------------------------- geometry helpers
def _lateral_unit(side: str) -> np.ndarray:
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', not {side!r}")
    return np.array([-1.0, 0.0, 0.0]) if side == "right" else np.array([1.0, 0.0, 0.0])


ANTERIOR = np.array([0.0, -1.0, 0.0])
SUPERIOR = np.array([0.0, 0.0, 1.0])


def _points(mask: sitk.Image) -> np.ndarray:
    return physical_points(mask, np.argwhere(sitk.GetArrayViewFromImage(mask) != 0))


def _sampler(mask: sitk.Image):
    """Nearest-voxel lookup of a mask at physical points (outside the grid = 0)."""
    array = sitk.GetArrayViewFromImage(mask) != 0
    # inverse of the 4x4 affine rather than Grid.to_index: the two differ in the last bit, which
    # would move a point lying half-way between voxels to the other one (a change of results)
    inverse = np.linalg.inv(index_to_physical_affine(mask))
    shape = np.asarray(array.shape)

    def sample(points: np.ndarray) -> np.ndarray:
        ijk = points @ inverse[:3, :3].T + inverse[:3, 3]
        zyx = np.rint(ijk[..., ::-1]).astype(int)
        ok = np.all((zyx >= 0) & (zyx < shape), axis=-1)
        out = np.zeros(points.shape[:-1], bool)
        out[ok] = array[tuple(zyx[ok].T)]
        return out

    return sample


def fit_head_sphere(head_mask: sitk.Image) -> tuple[np.ndarray, float]:
    """Centre (LPS mm) and radius (mm) of the sphere fitted to the head mask's surface.

    The surface is the mask's boundary voxels; :func:`lesionvol.geometry.fit_sphere` is fitted
    to them ``HEAD_SPHERE_FIT_ROUNDS`` times, each round leaving out the points more than
    ``HEAD_CUT_TRIM_MM`` (at least one voxel) inside the last fit (the flat head–neck cut), so a
    junction-cut head gives its articular sphere.  Boundary voxel centres lie about half a voxel
    inside the true surface, so half a voxel (mean spacing) is added to the radius.

    Example
    -------
    >>> img = sitk.Image([40, 40, 40], sitk.sitkUInt8)
    >>> zyx = np.indices((40, 40, 40)); r = np.sqrt(((zyx - 20) ** 2).sum(0))
    >>> ball = sitk.GetImageFromArray(((r <= 12) & (zyx[0] > 14)).astype(np.uint8))  # cut ball
    >>> centre, radius = fit_head_sphere(ball)
    >>> np.round(centre).tolist(), round(radius)
    ([20.0, 20.0, 20.0], 12)
    """
    mask = sitk.Cast(head_mask != 0, sitk.sitkUInt8)
    if not np.any(sitk.GetArrayViewFromImage(mask)):
        raise InputError("head mask is empty")
    eroded = sitk.BinaryErode(mask, [1, 1, 1])
    surface = _points(sitk.And(mask, sitk.Not(eroded)))
    # the voxel centres of a mask's surface lie about half a voxel inside the true surface
    half_voxel = 0.5 * float(np.mean(mask.GetSpacing()))
    keep = np.ones(len(surface), bool)
    centre, radius = surface.mean(axis=0), 1.0
    for _ in range(HEAD_SPHERE_FIT_ROUNDS):
        centre, radius = fit_sphere(surface[keep])
        distance = np.linalg.norm(surface - centre, axis=1)
        keep = distance > radius - max(HEAD_CUT_TRIM_MM, 2 * half_voxel)
    return centre, radius + half_voxel


def infer_side(head_mask: sitk.Image) -> str:
    """'right' or 'left' from a head mask cut at the head–neck junction; 'unknown' otherwise.

    The cut removes the cap towards the neck, which runs laterally, so the mask's centroid
    lies medial of the fitted sphere's centre: towards +x (patient left) for a right hip.
    A mask of the whole sphere has no cut and no side (returns 'unknown'), and the answer
    relies on the image header's left/right being correct.

    Example
    -------
    >>> zyx = np.indices((40, 40, 40)); r = np.sqrt(((zyx - 20) ** 2).sum(0))
    >>> cut = (r <= 12) & ((zyx[2] - 20) + (zyx[0] - 20) > -12 * 0.75 * 2 ** 0.5)
    >>> infer_side(sitk.GetImageFromArray(cut.astype(np.uint8)))  # neck towards -x and -z (inferior)
    'right'
    """
    centre, radius = fit_head_sphere(head_mask)
    offset = _points(head_mask).mean(axis=0) - centre
    size = float(np.linalg.norm(offset))
    if (size < SIDE_MIN_OFFSET_FRACTION * radius or offset[2] <= 0      # LPS +z is superior
            or abs(offset[0]) < SIDE_MIN_LATERAL_SHARE * size):
        return "unknown"
    return "right" if offset[0] > 0 else "left"


# ----------------------------------------------------------------------------- measures
def _arc_deg(sample, centre, radius, u, v, step_deg: float = 1.0) -> float:
    theta = np.deg2rad(np.arange(0.0, 360.0, step_deg))
    directions = np.cos(theta)[:, None] * u + np.sin(theta)[:, None] * v
    depths = radius - np.asarray(ARC_DEPTHS_MM)
    pts = centre + directions[:, None, :] * depths[None, :, None]
    hit = sample(pts).any(axis=1)
    return float(hit.sum() * step_deg)


def _coronal_section(sample, centre, radius, lateral):
    """Lesion presence on a 0.5 mm grid of the mid-coronal plane: (lateral coords, superior coords, hit)."""
    g = np.arange(-radius, radius + 1e-9, SECTION_STEP_MM)
    lat, sup = np.meshgrid(g, g, indexing="ij")
    pts = centre + lat[..., None] * lateral + sup[..., None] * SUPERIOR
    inside = lat**2 + sup**2 <= radius**2
    return lat, sup, sample(pts) & inside


def kerboul_grade(combined_deg: float) -> int | None:
    """Modified Kerboul grade 1-4 from the combined necrotic angle (see LOCATION_DEFINITIONS).

    Example
    -------
    >>> [kerboul_grade(a) for a in (150, 200, 260, 300)]
    [1, 2, 3, 4]
    """
    if combined_deg is None or not np.isfinite(combined_deg):
        return None
    return 1 + sum(combined_deg >= limit for limit in KERBOUL_LIMITS_DEG)


def jic_type(lesion_lateral_mm: float, edge_lateral_mm: float) -> str:
    """JIC type from the lesion's lateral margin and the acetabular edge, both lateral of the
    head centre in the mid-coronal section (see LOCATION_DEFINITIONS).

    Example
    -------
    >>> [jic_type(x, 21.0) for x in (-10.0, 5.0, 15.0, 25.0)]
    ['A', 'B', 'C1', 'C2']
    """
    third = 2.0 * edge_lateral_mm / 3.0
    if lesion_lateral_mm <= -edge_lateral_mm + third:
        return "A"
    if lesion_lateral_mm <= -edge_lateral_mm + 2 * third:
        return "B"
    if lesion_lateral_mm <= edge_lateral_mm:
        return "C1"
    return "C2"


def cjfh_type(pct_medial: float, pct_central: float, pct_lateral: float) -> str:
    """CJFH type from the % of each pillar's columns the lesion reaches (see LOCATION_DEFINITIONS).

    Example
    -------
    >>> cjfh_type(40, 0, 0), cjfh_type(20, 60, 0), cjfh_type(0, 100, 50), cjfh_type(0, 100, 100), cjfh_type(100, 100, 100)
    ('M', 'C', 'L1', 'L2', 'L3')
    """
    full = 100 * PILLAR_FULL
    if pct_lateral <= 0:
        if pct_central > 0:
            return "C"
        return "M" if pct_medial > 0 else ""
    if pct_lateral >= full and pct_central >= full and pct_medial >= full:
        return "L3"
    return "L2" if pct_lateral >= full else "L1"


def describe_location(
    lesion_mask: sitk.Image,
    head_mask: sitk.Image,
    *,
    side: str,
    acetabular_edge_mm=None,
) -> dict[str, object]:
    """Location and staging columns of one lesion (see :data:`LOCATION_DEFINITIONS`).

    Parameters
    ----------
    lesion_mask, head_mask : sitk.Image
        Binary masks (any grids; physical space is used throughout).
    side : {"right", "left"}
        Which hip; ``infer_side(head_mask)`` can supply it.
    acetabular_edge_mm : sequence of 3 float, optional
        Lateral acetabular edge (LPS mm) in the mid-coronal section, e.g. a landmark placed by
        the reader. Without it ``jic_type`` is empty and ``jic_reason`` says why.

    Returns
    -------
    dict
        Flat columns with units in their names; empty strings / NaN where undefined.

    Example
    -------
    >>> from lesionvol.phantom import make_visit, VisitSpec, lesion_for_fraction
    >>> scan = make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 20.0),), shape=(80, 80, 40),
    ...                   spacing_mm=(1.5, 1.5, 3.0)), seed=0)
    >>> loc = describe_location(scan.lesion_enclosed_mask, scan.head_mask, side="right",
    ...                         acetabular_edge_mm=scan.truth.acetabular_edge_mm)
    >>> loc["jic_type"], loc["kerboul_grade"], loc["cjfh_type"]
    ('C1', 1, 'L1')
    """
    lateral = _lateral_unit(side)
    centre, radius = fit_head_sphere(head_mask)
    nan = float("nan")
    out: dict[str, object] = {
        "location_side": side,
        "head_centre_x_mm": float(centre[0]), "head_centre_y_mm": float(centre[1]),
        "head_centre_z_mm": float(centre[2]), "head_radius_fit_mm": float(radius),
    }
    points = _points(lesion_mask)
    if len(points) == 0:
        out.update({"lesion_centroid_anterior_mm": nan, "lesion_centroid_superior_mm": nan,
                    "lesion_centroid_lateral_mm": nan, "lesion_centroid_distance_mm": nan,
                    "lesion_centroid_direction": "", **{f"lesion_pct_{o}": nan for o in OCTANTS},
                    "lesion_main_octant": "", "kerboul_coronal_deg": 0.0, "kerboul_sagittal_deg": 0.0,
                    "kerboul_combined_deg": 0.0, "kerboul_grade": None, "jic_type": "",
                    "jic_reason": "no lesion", "jic_lesion_lateral_margin_mm": nan,
                    "jic_acetabular_edge_lateral_mm": nan, "cjfh_type": "", "cjfh_pct_medial": 0.0,
                    "cjfh_pct_central": 0.0, "cjfh_pct_lateral": 0.0})
        return out

    d = points - centre
    ant, sup, lat = d @ ANTERIOR, d @ SUPERIOR, d @ lateral
    offset = np.array([ant.mean(), sup.mean(), lat.mean()])
    length = float(np.linalg.norm(offset))
    names = []
    for value, (pos, neg) in zip(offset, (("anterior", "posterior"), ("superior", "inferior"), ("lateral", "medial"))):
        if length > 0 and abs(value) >= 0.3 * length:
            names.append(pos if value > 0 else neg)
    out.update({
        "lesion_centroid_anterior_mm": float(offset[0]), "lesion_centroid_superior_mm": float(offset[1]),
        "lesion_centroid_lateral_mm": float(offset[2]), "lesion_centroid_distance_mm": length,
        "lesion_centroid_direction": "-".join(names) if names else "central",
    })
    n = len(points)
    shares = {}
    for octant in OCTANTS:
        ap, si, ml = octant.split("_")
        sel = ((ant >= 0) if ap == "anterior" else (ant < 0)) & ((sup >= 0) if si == "superior" else (sup < 0)) \
            & ((lat >= 0) if ml == "lateral" else (lat < 0))
        shares[octant] = 100.0 * int(sel.sum()) / n
        out[f"lesion_pct_{octant}"] = shares[octant]
    out["lesion_main_octant"] = max(shares, key=shares.get)

    sample = _sampler(lesion_mask)
    coronal = _arc_deg(sample, centre, radius, lateral, SUPERIOR)
    sagittal = _arc_deg(sample, centre, radius, ANTERIOR, SUPERIOR)
    out.update({"kerboul_coronal_deg": coronal, "kerboul_sagittal_deg": sagittal,
                "kerboul_combined_deg": coronal + sagittal, "kerboul_grade": kerboul_grade(coronal + sagittal)})

    lat_grid, sup_grid, hit = _coronal_section(sample, centre, radius, lateral)
    lateral_margin = float(lat_grid[hit].max()) if hit.any() else nan
    out["jic_lesion_lateral_margin_mm"] = lateral_margin
    if not hit.any():
        out.update({"jic_type": "", "jic_reason": "lesion not in the mid-coronal section",
                    "jic_acetabular_edge_lateral_mm": nan})
    elif acetabular_edge_mm is None:
        out.update({"jic_type": "", "jic_acetabular_edge_lateral_mm": nan,
                    "jic_reason": "no lateral acetabular edge landmark given (not detected from the image)"})
    else:
        edge = float((np.asarray(acetabular_edge_mm, float) - centre) @ lateral)
        if edge <= 0:
            out.update({"jic_type": "", "jic_acetabular_edge_lateral_mm": edge,
                        "jic_reason": "acetabular edge landmark is not lateral of the head centre (wrong side?)"})
        else:
            out.update({"jic_type": jic_type(lateral_margin, edge), "jic_acetabular_edge_lateral_mm": edge,
                        "jic_reason": "acetabular edge from landmark"})

    # CJFH pillars: columns of the mid-coronal section above the head centre
    columns = lat_grid[:, 0]
    reached = (hit & (sup_grid >= 0)).any(axis=1)
    bounds = -radius + 2 * radius * np.cumsum((0.0, *PILLAR_FRACTIONS))
    pct = {}
    for name, lo, hi in zip(("medial", "central", "lateral"), bounds[:-1], bounds[1:]):
        sel = (columns >= lo) & (columns < hi) if name != "lateral" else (columns >= lo) & (columns <= hi)
        pct[name] = 100.0 * float(reached[sel].mean()) if sel.any() else 0.0
        out[f"cjfh_pct_{name}"] = pct[name]
    out["cjfh_type"] = cjfh_type(pct["medial"], pct["central"], pct["lateral"])
    return out

