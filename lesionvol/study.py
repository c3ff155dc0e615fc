"""One hip over time: read the scans, get the masks, register, measure, tabulate.

:func:`analyze_scans` takes :class:`~lesionvol.inputs.Visit` s and
:class:`~lesionvol.inputs.AnalysisOptions`; it is the one path behind ``lesionvol analyze``,
``lesionvol demo``, every study of ``lesionvol batch`` and the napari widget.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from lesionvol import __version__
from lesionvol.change import ChangeMaps, change_maps
from lesionvol.errors import InputError
from lesionvol.geometry import same_grid
from lesionvol.inputs import AnalysisOptions, LoadedVisit, Visit, load_visit, visits_from_lists
from lesionvol.io import Scan, as_binary_mask
from lesionvol.location import LOCATION_DEFINITIONS, describe_location, infer_side
from lesionvol.register import REGISTRATION_DEFINITIONS
from lesionvol.segment.head import (ARTICULAR_PLATE_MM, AT_OTHER_RADIUS_MIN_GAP_MM, DOME_MARROW_MIN,
                                    HEAD_PAIR_RADIUS_MAX_MM, HEAD_RADIUS_PLAUSIBLE_MM, MAX_RESOLVED_PLATE_MM, PLATE_TROUGH_REACH_MM,
                                    OUTER_SURFACE_DOUBT_BELOW, REFIT_MAX_FAILED_STARTS, REFIT_OFFSET_MM,
                                    REFIT_RADIUS_SHIFT_MAX_MM, REFIT_STARTS_MM, RESOLVED_PLATE_TROUGH_MAX,
                                    ROOF_LARGER_BY_MM, head_size_doubt)
from lesionvol.segment.lesion import (LESION_FILL_MIN, MARGIN_BAND_GAP_MM, MARGIN_OEDEMA_SIGNAL, OEDEMA_PROFILE_MAX,
                                      SET_ASIDE_DOUBT_ML, MarginReading, lesion_fill_ratio)
from lesionvol.sequence import check_t1
from lesionvol.measure import (
    MAX_LESION_OUTSIDE_FRACTION,
    STEINBERG_RULE,
    THRESHOLD_SOURCE,
    check_lesion_in_head,
    Volumes,
    mask_volume_ml,
    measure_volumes,
    residual_pct_baseline,
    steinberg_extent,
    threshold_flag,
)

if TYPE_CHECKING:
    from lesionvol.segment import HipSegmentation

PathLike = str | os.PathLike
Progress = Callable[[int, int, str], None]

#: A segmented lesion with more marrow oedema next to it than this fraction of its volume has a doubtful
#: margin.  Phantom family B: 10.2 % next to the oedema-halo lesion, which reads +38 %; at most 1.2 % next to
#: the others.  Lesions written into real heads with an oedema halo (``benchmarks/real_t1/implant.py
#: --halo-mm 5``, seeds 1 and 13) read +35 % (median) and the trimmed oedema is only 0.3-8 % of them: with the
#: other flags, 5 % flagged 20 of their 52 errors over 10 %, 2 % flags 44; without a halo 2 % flags 6 of 60
#: lesions (empirical).  Oedema taken in outside the band is taken out and reported here too
#: (``lesionvol.segment.lesion.OEDEMA_PROFILE_BIN_MM``): 26 % of the lesion on the real test crop with a 3 mm halo,
#: 30 % next to family B's 6 mm halo.
MAX_MARGIN_OEDEMA_FRACTION = 0.02
#: A segmented lesion with more than this fraction of its volume continued from its band's shape
#: (``lesion_band_continued_ml``) is inferred in part, not seen: the row says so.  The continuation is added only
#: when it is at least 6 % (lesionvol.segment.lesion.BAND_MIN_MISSING); a tenth and more is flagged.
MAX_BAND_CONTINUED_FRACTION = 0.10
#: A segmented lesion that was not continued, though its band's sphere holds marrow next to it (``lesion_band_sphere_
#: marrow_ml``: a margin seen where the band runs along the slices stopped it), may read small when that marrow is more
#: than this fraction of it.  Lesions written into the real development heads (implant.py seeds 25, 1300, 1500 and
#: 1700 with LF 30-50 %; 120 hips): the three not continued that read 10.5-12.9 % small, unflagged, held 9.8-11.0 %;
#: the others not continued 7.7 % at most (-27.3 %, its head 12 % small), 6.3 % (+23.4 %, flagged head size) and
#: 6.1 % (+0.8 %).  Phantom family B's standard and held-out sets (lesions that are no balls): 7.0 % at most, on
#: lesions read +0.5 to +6.1 %.
MAX_BAND_SPHERE_MARROW_FRACTION = 0.08
#: A segmented lesion on slices at least 3.5 mm thick whose margin fits no sphere (``HipMasks.band_unread``) could
#: not be continued from its band's shape, nor checked against it: where that part is more than
#: MAX_BAND_UNREAD_FRACTION of the lesion, it may read far too small.  Lesions written into real heads (implant.py,
#: LF 30-50 %, 3980, 4100, 4160, 4240, 4480, 4520; about 170 lesions): 5 such, reading -54.3, -54.0, -23.4, +11.7 and
#: -8.4 %, among them the one lesion over 10 % of the fresh draws that nothing else flagged (4480 case 13 left, a 50 %
#: fat-centred lesion, -54.0 %: its centre read as marrow on three slices); every other lesion's margin fits one
#: (empirical).
MAX_BAND_UNREAD_FRACTION = 0.1
#: A segmented lesion on slices thicker than MAX_LESION_SLICE_MM (mm) may read small: where its band lies
#: within one slice, band and fat-bright centre average to marrow-like signal.  On axial-like slices (normal
#: within 45 deg of the body's long axis) the superior dome's band face lies along the slices, so there
#: from MAX_LESION_AXIAL_SLICE_MM.  Phantom family B, fat-centred lesions of 5-40 % (48 development cases):
#: -9 to -89 % on 5.9-6.3 mm slices of any plane; axial -10 to -22 % on 3.9-5.0 mm, within 3 % on 3.1-3.8 mm;
#: coronal within 6 % up to 5.7 mm but one (-12 % on 5.4 mm).
MAX_LESION_SLICE_MM = 5.5
MAX_LESION_AXIAL_SLICE_MM = 3.5

DEFINITIONS = {
    "volume": "voxel count x voxel volume on each scan's native grid (mL); *_mesh_volume_ml: marching-cubes surface volume",
    "lesion_pct_head": "LF = 100 * lesion_volume_ml / head_volume_ml, same timepoint",
    "residual_pct_baseline": "RF = 100 * lesion_volume_ml / baseline lesion_volume_ml (native-space volumes)",
    "regenerated_ml": "baseline lesion voxels not lesion at this timepoint, in baseline space (after registration)",
    "new_lesion_ml": "lesion voxels at this timepoint outside the baseline lesion, in baseline space",
    "change_method": "how the follow-up lesion was brought into baseline space for regenerated_ml / new_lesion_ml",
    "steinberg_extent": STEINBERG_RULE,
    "image_contrast": "the image's contrast as lesionvol reads it (DICOM timing tags, else tissue contrast): T1, T2, "
                      "STIR/fat-suppressed or unknown; T2 and STIR images are refused unless allow_non_t1, and "
                      "non_t1_allowed says that override was used",
    "mask_at_fov_edge": "True when the head or lesion mask touches a face of the image (the field of view may cut "
                        "it, so its volume may be short); mask_at_fov_edge_reason names the faces",
    "margin_oedema_ml": "segmented lesions: marrow oedema next to the lesion, which the lesion excludes: "
                        "intermediate T1 signal reached from healthy marrow without crossing the band, and oedema "
                        "taken in outside the band's outer edge where the lesion's radial profile reads oedema over "
                        "a darker band; empty for a lesion drawn by the user",
    "lesion_margin_signal": "segmented (enclosed) lesions: the median signal of the lesion's margin against the "
                            "healthy marrow within the slice plane (x the local marrow); a margin at the band's outer "
                            "edge reads about half of marrow or less, marrow oedema taken in reads more",
    "lesion_margin_band_gap_mm": "segmented (enclosed) lesions: the median distance within the slice plane from that "
                                 "margin to the lesion's band (below 0.3 of marrow); empty when no band lies within "
                                 f"{MARGIN_BAND_GAP_MM[1] + 1:g} mm of it",
    "lesion_margin_doubtful": f"True when margin_oedema_ml exceeds {100 * MAX_MARGIN_OEDEMA_FRACTION:g} % of the lesion, "
                              f"or when lesion_margin_signal is at least {MARGIN_OEDEMA_SIGNAL:g} with "
                              f"lesion_margin_band_gap_mm {MARGIN_BAND_GAP_MM[0]:g}-{MARGIN_BAND_GAP_MM[1]:g} mm, or "
                              f"below {OEDEMA_PROFILE_MAX:g} with the band further in or none near it (marrow "
                              "oedema taken into the lesion outside its band): its outer margin may hold oedema or "
                              "have lost some lesion with it (a 6 mm oedema halo in phantom family B reads +3 to +7 %, "
                              "+36 to +50 % before the oedema outside the band was taken out; 3 and 5 mm halos around "
                              "lesions written into real heads read 4-10 % off (median), 3-14 of 30 still over 10 %, "
                              "8 mm halos 17-31 %); "
                              "check it",
    "lesion_on_thick_slices": f"True when a segmented head was read on slices thicker than "
                              f"{MAX_LESION_SLICE_MM:g} mm, or than {MAX_LESION_AXIAL_SLICE_MM:g} mm when they are "
                              "axial, whatever lesion it read: where a lesion's band lies within one slice it can read "
                              "as marrow, so a lesion may read small, or not at all (phantom family B: -9 to -89 % on "
                              "5.9-6.3 mm slices, axial -10 to -22 % on 3.9-5 mm, a 40 % lesion on 3.9 mm axial slices "
                              "0.00 mL; a 45 % lesion written into a real head, moved onto 5.8 mm slices, 0.00 mL); "
                              "lesion_on_thick_slices_reason says which; check it",
    "lesion_fill_ratio": "segmented (enclosed) lesions: the lesion's volume over the subchondral segment under its "
                         "footprint (footprint disc x depth under the marrow surface, per component); a segment "
                         "filled up to the plate reads 0.6-0.9, a band whose centre read as healthy marrow less",
    "lesion_fill_doubtful": f"True when lesion_fill_ratio is below {LESION_FILL_MIN:g}: the lesion may be its band "
                            "alone, what the band encloses read as marrow, and far too small (lesions written into "
                            "real heads that read 31-80 % small filled 0.15-0.55); check it",
    "lesion_band_continued_ml": "segmented (enclosed) lesions: the part of the lesion continued from its band's shape "
                                "(a sphere fitted to the band's margin seen on other slices) where slices at least "
                                "3.5 mm thick did not show the band and what it encloses read as marrow (an intermediate "
                                "centre: as marrow or oedema) or lay in the plate shell of the head's end slices; "
                                "included in lesion_volume_ml",
    "lesion_band_continued": f"True when lesion_band_continued_ml exceeds {100 * MAX_BAND_CONTINUED_FRACTION:g} % of the "
                             "lesion: that much of it is inferred from its band's shape, not seen (lesions written into "
                             "real heads that read -14 to -63 % without it read +0.1 to -24 % with it, and on a fresh "
                             "set the 7 of 30 flagged read -8.6 to -2.4 %; on a phantom a 2.2 mL lesion read +24 %); "
                             "check its margin",
    "lesion_band_sphere_marrow_ml": "segmented (enclosed) lesions on slices at least 3.5 mm thick that were not "
                                    "continued from their band's shape: the marrow inside that shape next to the "
                                    "lesion (not beyond a margin seen where the band crosses the slices), left out "
                                    "because a margin seen where the band runs along the slices stopped it; not "
                                    "included in lesion_volume_ml",
    "lesion_extent_doubtful": f"True when lesion_band_sphere_marrow_ml exceeds "
                              f"{100 * MAX_BAND_SPHERE_MARROW_FRACTION:g} % of the lesion: the band's shape says the "
                              "lesion reaches further across the slices than read, and it may read small (lesions "
                              "written into real heads: the three not continued that read 10.5-12.9 % small held "
                              "9.8-11.0 %, the others 7.7 % at most, phantom family B's 7.0 %); check its margin "
                              "across the slices",
    "lesion_band_unread_ml": "segmented (enclosed) lesions on slices at least 3.5 mm thick: the part of the lesion whose "
                             "margin against the healthy marrow fits no sphere, so that its band's shape could be "
                             "neither continued nor checked (lesion_band_continued, lesion_extent_doubtful); included "
                             "in lesion_volume_ml",
    "lesion_band_unread": f"True when lesion_band_unread_ml exceeds {100 * MAX_BAND_UNREAD_FRACTION:g} % of the lesion: "
                          "the lesion may be far off, a centre read as marrow missing or marrow oedema taken in "
                          "(lesions written into real heads: 5 of 176, reading -54.3 to +11.7 %, 4 of them more than "
                          "10 % off; an 8 mm oedema halo +59 %); check it",
    "lesion_set_aside_ml": "segmented (enclosed) lesions: the largest region of low signal reaching the plate that was "
                           "set aside as anatomy, not lesion (no subchondral segment, or at the head-neck junction, "
                           "the fovea or in the inferior head); not included in lesion_volume_ml",
    "lesion_set_aside_doubtful": f"True when lesion_set_aside_ml exceeds {SET_ASIDE_DOUBT_ML:g} mL (normal real heads, "
                                 "on their own and on follow-up grids: 1.07 mL at most): it may be a lesion's band "
                                 "whose centre was read as marrow (a 46 % fat-centred lesion written into a real head "
                                 "read 0.00 mL, its band's deep part, 5.4 mL, set aside as inferior head); check it",
    "head_dome_marrow_fraction": "segmented heads: the fraction of the rays from the head centre to the dome (in slices "
                                 "that resolve the surface) on which the marrow surface was found on the fitted sphere; "
                                 "a large lesion at the dome, its centre darker than marrow, hides it there; empty where no slice "
                                 "crosses the dome's surface steeply enough to show it (axial slices, as a rule)",
    "head_radius_minus_other_side_mm": "segmented heads, where both were found on the scan: this head's fitted radius "
                                       "minus the other's (a person's two femoral heads differ by less than 1 mm in "
                                       "radius)",
    "head_size_doubtful": f"True when head_dome_marrow_fraction is below {DOME_MARROW_MIN:g} (the head's sphere was "
                          "fitted without its dome: lesions written into real heads, the 6 of 148 heads more than 5 % "
                          "off, -21 to +24 %, read below 0.25, as did 22 within 5 %; on 43 draws of 30 such hips, 2 heads "
                          "reading 0.25-0.30 were 5 and 11 % small with nothing else flagging them; normal heads read "
                          "0.60 or more) or head_radius_minus_other_side_mm is beyond "
                          f"±{HEAD_PAIR_RADIUS_MAX_MM:g} mm (one of the two heads is off: on 86 such pairs, 5 of the 9 "
                          "with a head more than 10 % off and none of the 69 with both within 5 %) or the fitted radius "
                          f"lies outside {HEAD_RADIUS_PLAUSIBLE_MM[0]:g}-{HEAD_RADIUS_PLAUSIBLE_MM[1]:g} mm (an adult "
                          "head is 38-54 mm across; a 15 mm sphere inside a real head with a large lesion, fitted from "
                          "a seed point, read no lesion) or the fit depends on where it starts (head_refit_radius_shift_mm "
                          f"beyond ±{REFIT_RADIUS_SHIFT_MAX_MM:g} mm, or head_refit_failed_starts above "
                          f"{REFIT_MAX_FAILED_STARTS}) or head_outer_surface_fraction is below "
                          f"{OUTER_SURFACE_DOUBT_BELOW:g}, or the head was given the other head's radius, fitted "
                          "to its acetabular roof, or found only from a grid of starts; the head may "
                          "read too small or too large: check the head outline",
    "head_refit_radius_shift_mm": f"segmented heads: the head fitted again from {len(REFIT_STARTS_MM)} starts "
                                  f"{REFIT_OFFSET_MM:g} mm around its centre, the median of those fits' radii minus its "
                                  "own (normal real heads and their moved, cropped, shaded and noisy copies: within "
                                  "0.20 mm; lesions written into real heads moved it by up to 1.5 mm where the head "
                                  "read off)",
    "head_refit_failed_starts": f"segmented heads: how many of those {len(REFIT_STARTS_MM)} starts found no head (none "
                                "on the normal real development heads; 1 on one of 30 normal heads moved onto "
                                f"follow-up grids: more than {REFIT_MAX_FAILED_STARTS} flags the head)",
    "head_outer_surface_fraction": "segmented heads: the fraction of the rays from the head's centre on which its bone "
                                   "(outer) surface was found on the fitted sphere (normal real heads 0.45-0.69, on "
                                   "follow-up grids 0.33 or more; below 0.3 the sphere may rest on the marrow surface "
                                   "alone, or on a large lesion's band: a head fitted inside a 49 % lesion's band read "
                                   "0.22 and no lesion)",
    "head_radius_from_other_side": "segmented heads: True when the head's own fit was doubtful, the other head's on "
                                   "the scan was not, and this head's radius was more than "
                                   f"{AT_OTHER_RADIUS_MIN_GAP_MM:g} mm smaller: it was then given the other head's radius "
                                   "and its centre fitted again at it (a person's two heads differ by 0.3 mm across on "
                                   "average); head_size_doubtful stays True",
    "head_fitted_to_roof": "segmented heads: True when the head was fitted to its marrow surface below the dome and to "
                           "the acetabular roof above it, at the gap the other head of the scan shows (that head's "
                           f"own fit holding): its own fit was doubtful and read more than {ROOF_LARGER_BY_MM:g} mm "
                           "small against it, or none was found beside the other head (a large lesion at the dome "
                           "hides both of the head's surfaces there, not the roof); read to about 0.5 mm in radius; "
                           "head_size_doubtful stays True",
    "head_found_from_grid": "segmented heads: True when the head was missed from the vote's peaks and found only from "
                            "a grid of starts around them (a large lesion at the dome draws the peaks up): beside the "
                            "other head, the fit whose radius is nearest that head's (within "
                            f"{HEAD_PAIR_RADIUS_MAX_MM:g} mm) kept, or, both heads missed, the right and left fits "
                            f"that lie as one pelvis with the nearest radii (within {HEAD_PAIR_RADIUS_MAX_MM:g} mm); "
                            "head_size_doubtful stays True",
    "head_size_doubtful_reason": "why head_size_doubtful is True",
    "lesion_outside_head_ml": f"lesion voxels outside the head mask (QC); a lesion with more than "
                              f"{100 * MAX_LESION_OUTSIDE_FRACTION:g} % of its volume outside is refused",
    "days": "days since the baseline scan (given, or from DICOM study dates); empty if unknown",
    "head_definition": "anatomical: the femoral head's bone up to the articular surface (subchondral plate in, "
                       "cartilage and joint out), cut by the plane perpendicular to the neck axis where the neck "
                       "leaves the head's sphere; where the image does not resolve the plate (a dark rim wider than "
                       f"{MAX_RESOLVED_PLATE_MM:g} mm, or one averaging plate and cartilage: above "
                       f"{RESOLVED_PLATE_TROUGH_MAX:g} of marrow everywhere within {PLATE_TROUGH_REACH_MM:g} mm outside "
                       f"the marrow surface), the articular surface is taken {ARTICULAR_PLATE_MM:g} mm outside the "
                       "marrow surface, the steepest fall from marrow into the rim; sphere: the sphere fitted to that "
                       "surface; or as drawn by the user",
    "lesion_definition": "enclosed: everything inside the outer margin of the low-signal demarcating band, "
                         "fat-bright centre included, up to the same articular surface; dark: the low-signal region "
                         "only (Pascart, Bone 2019); or as drawn by the user. Cortex and subchondral plate are never "
                         "lesion unless a band encloses marrow beneath them",
}


#: ``change_method`` of a follow-up the core could not bring into baseline space.
NOT_COMPARED = "not compared: not registered and not on the baseline's grid"


def thick_slice_reason(image: sitk.Image) -> str:
    """Why a lesion segmented on ``image`` may read small, or not at all, because of its slices ("" when it need not):
    slices thicker than MAX_LESION_SLICE_MM, or axial-like ones thicker than MAX_LESION_AXIAL_SLICE_MM.

    Example
    -------
    >>> axial = sitk.Image([8, 8, 8], sitk.sitkUInt8); axial.SetSpacing((0.8, 0.8, 4.5))
    >>> thick_slice_reason(axial)
    '4.5 mm axial slices'
    >>> coronal = sitk.Image(axial); coronal.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0))
    >>> thick_slice_reason(coronal)
    ''
    """
    spacing = np.asarray(image.GetSpacing(), float)
    axis = int(np.argmax(spacing))
    normal = np.asarray(image.GetDirection(), float).reshape(3, 3)[:, axis]
    if spacing[axis] > MAX_LESION_SLICE_MM:
        return f"{spacing[axis]:.1f} mm slices"
    if abs(normal[2]) > math.cos(math.radians(45.0)) and spacing[axis] > MAX_LESION_AXIAL_SLICE_MM:
        return f"{spacing[axis]:.1f} mm axial slices"
    return ""


@dataclass
class Timepoint:
    """Everything known about one visit after analysis.

    ``transform_source`` is ``"baseline"``, ``"given"`` (a known transform), ``"registered"`` or
    ``""`` (a follow-up without a transform).
    """

    label: str
    scan: Scan
    lesion: sitk.Image
    head: sitk.Image
    mask_source: str
    volumes: Volumes
    days: float | None = None
    transform: sitk.Transform | None = None
    transform_source: str = ""
    change: ChangeMaps | None = None
    registration_qc: dict = field(default_factory=dict)
    location: dict = field(default_factory=dict)
    head_definition: str = "as drawn by the user"
    lesion_definition: str = "as drawn by the user"
    contrast: tuple[str, str] = ("unknown", "")  # (kind, reason) from lesionvol.sequence
    dicom_series: str | None = None  # the series chosen in a DICOM folder of several (Visit.series)
    margin_oedema_ml: float | None = None  # segmented lesions: the oedema next to it (mL), see DEFINITIONS
    oedema: sitk.Image | None = None  # segmented lesions: that oedema as a 0/1 mask on the scan's grid
    lesion_margin: MarginReading | None = None  # segmented enclosed lesions, see DEFINITIONS
    lesion_fill_ratio: float | None = None  # segmented enclosed lesions, see DEFINITIONS
    band_continued_ml: float | None = None  # segmented enclosed lesions, see DEFINITIONS
    band_sphere_marrow_ml: float | None = None  # segmented enclosed lesions, see DEFINITIONS
    set_aside_ml: float | None = None  # segmented enclosed lesions, see DEFINITIONS
    band_unread_ml: float | None = None  # segmented enclosed lesions, see DEFINITIONS
    head_dome_marrow_fraction: float | None = None  # segmented heads, see DEFINITIONS
    head_radius_minus_other_side_mm: float | None = None  # segmented heads with the other one found, see DEFINITIONS
    head_radius_mm: float | None = None  # segmented heads: the fitted sphere's radius (head_size_doubtful)
    head_refit_radius_shift_mm: float | None = None  # segmented heads, see DEFINITIONS
    head_refit_failed_starts: int | None = None  # segmented heads, see DEFINITIONS
    head_outer_surface_fraction: float | None = None  # segmented heads, see DEFINITIONS
    head_radius_from_other_side: bool | None = None  # segmented heads, see DEFINITIONS
    head_fitted_to_roof: bool | None = None  # segmented heads, see DEFINITIONS
    head_found_from_grid: bool | None = None  # segmented heads, see DEFINITIONS

    def take_segmentation_quality(self, seg: HipSegmentation, *, head: bool = True, lesion: bool = True) -> None:
        """Keep the segmenter's definitions and quality figures for the masks of ``seg`` this visit uses:
        its ``head`` (dome marrow fraction), its ``lesion`` (margin oedema and margin, fill ratio, band continued,
        marrow left in the band's sphere)."""
        if head:
            self.head_definition = seg.head_definition
            if seg.head_fit is not None:
                self.head_dome_marrow_fraction = seg.head_fit.quality.get("dome_marrow_fraction")
                self.head_radius_minus_other_side_mm = seg.head_fit.quality.get("radius_minus_other_side_mm")
                self.head_radius_mm = seg.head_fit.radius_mm
                self.head_refit_radius_shift_mm = seg.head_fit.quality.get("refit_radius_shift_mm")
                self.head_refit_failed_starts = seg.head_fit.quality.get("refit_failed_starts")
                self.head_outer_surface_fraction = seg.head_fit.quality.get("outer_fraction")
                self.head_radius_from_other_side = bool(seg.head_fit.quality.get("radius_from_other_side"))
                self.head_fitted_to_roof = bool(seg.head_fit.quality.get("fitted_to_roof"))
                self.head_found_from_grid = bool(seg.head_fit.quality.get("found_from_grid"))
        if lesion:
            self.lesion_definition = seg.lesion_definition
            if "oedema" in seg.masks:
                self.oedema = seg.masks["oedema"]
                self.margin_oedema_ml = mask_volume_ml(self.oedema)
            self.lesion_margin = seg.lesion_margin
            if seg.head_fit is not None and seg.lesion_definition == "enclosed":
                self.lesion_fill_ratio = lesion_fill_ratio(seg.lesion, seg.head_fit)
                if "band_continued" in seg.masks:
                    self.band_continued_ml = mask_volume_ml(seg.masks["band_continued"])
                if "band_sphere_marrow" in seg.masks:
                    self.band_sphere_marrow_ml = mask_volume_ml(seg.masks["band_sphere_marrow"])
                if "set_aside" in seg.masks:
                    self.set_aside_ml = mask_volume_ml(seg.masks["set_aside"])
                if "band_unread" in seg.masks:
                    self.band_unread_ml = mask_volume_ml(seg.masks["band_unread"])

    @property
    def change_method(self) -> str:
        """How this follow-up was brought into baseline space for the change columns, in words
        (the ``change_method`` column; the napari widget shows the same words)."""
        if self.change is None:
            return NOT_COMPARED if self.transform_source != "baseline" else ""
        if self.transform is None:
            return "same grid, not registered (assumes the hip did not move)"
        if self.transform_source == "given":
            return "transform given"
        if self.registration_qc.get("registration_doubtful"):
            return "registered to baseline, DOUBTFUL: review before use"
        return "registered to baseline"


#: Columns of ``volumes.csv`` a reader looks at first (the CLI table and the napari widget show these):
#: (column, short title, decimals; None for text).
MAIN_COLUMNS = (
    ("timepoint", "visit", None), ("days", "days", 0), ("head_volume_ml", "head mL", 2),
    ("lesion_volume_ml", "lesion mL", 3), ("lesion_pct_head", "LF %", 1),
    ("residual_pct_baseline", "RF %", 1), ("regenerated_ml", "regen. mL", 3),
    ("new_lesion_ml", "new mL", 3), ("threshold_flag", "flag", None), ("steinberg_extent", "Steinberg", None),
    ("mask_source", "masks", None),
)


def format_cell(value: object, decimals: int | None) -> str:
    """A table cell as text: ``""`` for missing values, floats to ``decimals`` places.

    Example
    -------
    >>> format_cell(12.345, 1), format_cell(None, 2), format_cell("below", None)
    ('12.3', '', 'below')
    """
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if decimals is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{decimals}f}"
    return str(value)


def is_set(value: object) -> bool:
    """A flag cell: set when True in memory or read back from CSV as text (``"True"``, ``"1"``, ``"yes"``);
    False, empty, None and NaN are not.

    Example
    -------
    >>> [is_set(v) for v in (True, "True", "1", False, "False", "", None, float("nan"))]
    [True, True, True, False, False, False, False, False]
    """
    return str(value).strip().lower() in ("true", "1", "yes")


def _number(value: object) -> float | None:
    """A number cell in memory or read back from CSV; None when missing, empty or not a number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def row_checks(row: dict) -> list[str]:
    """What a reader should check in one row of :meth:`StudyResult.rows`, a phrase per flag raised: a mask at
    the edge of the field, a lesion margin next to marrow oedema, a lesion on thick slices, a lesion that may be its
    band alone, a lesion continued in part from its band's shape or left short of it or whose band's shape could not
    be read, a large low-signal region set
    aside as anatomy, a head whose dome a lesion hides or whose radius disagrees with the other head's, a doubtful
    registration.  ``lesionvol analyze`` prints
    them under its table, the napari table shows them on the row.

    Example
    -------
    >>> row_checks({"lesion_margin_doubtful": True, "margin_oedema_ml": 1.6, "lesion_volume_ml": 16.8})
    ['1.60 mL of marrow oedema next to the 16.80 mL lesion: its outer margin may hold some of it']
    >>> row_checks({"lesion_volume_ml": 16.8, "lesion_margin_doubtful": False})
    []
    >>> row_checks({"lesion_margin_doubtful": "True", "lesion_margin_signal": "0.55", "lesion_margin_band_gap_mm": "2.3"})
    ["the lesion's margin reads 0.55 of marrow with its band 2.3 mm inside it: it may hold marrow oedema taken in with it (too large)"]
    >>> row_checks({"lesion_margin_doubtful": True, "lesion_margin_signal": 0.62, "lesion_margin_band_gap_mm": None})
    ["the lesion's margin reads 0.62 of marrow with no band within 5.5 mm inside it: it may hold marrow oedema taken in with it (too large)"]
    """
    def ml(key: str) -> str:  # two decimals; empty when missing
        return format_cell(row.get(key), 2)

    checks = []
    if is_set(row.get("mask_at_fov_edge")):
        checks.append(f"{row.get('mask_at_fov_edge_reason')} (the volume may be short)")
    if is_set(row.get("lesion_margin_doubtful")):
        signal, gap = _number(row.get("lesion_margin_signal")), _number(row.get("lesion_margin_band_gap_mm"))
        band_unseen = is_set(row.get("lesion_on_thick_slices")) or is_set(row.get("lesion_band_continued"))
        taken_in = signal is not None and MarginReading(signal, gap).holds_oedema(band_unseen)
        oedema, lesion = _number(row.get("margin_oedema_ml")), _number(row.get("lesion_volume_ml"))
        if not taken_in or (oedema is not None and lesion is not None and oedema > MAX_MARGIN_OEDEMA_FRACTION * lesion):
            checks.append(f"{ml('margin_oedema_ml')} mL of marrow oedema next to the {ml('lesion_volume_ml')} mL lesion: "
                          "its outer margin may hold some of it")
        if taken_in:
            band = f"its band {gap:.1f} mm inside it" if gap is not None else \
                f"no band within {MARGIN_BAND_GAP_MM[1] + 1:g} mm inside it"
            checks.append(f"the lesion's margin reads {signal:.2f} of marrow with {band}: it may hold marrow oedema "
                          "taken in with it (too large)")
    if is_set(row.get("lesion_on_thick_slices")):
        checks.append(f"the head was read on {row.get('lesion_on_thick_slices_reason')}: where a lesion's band lies "
                      "within a slice it can read as marrow, so a lesion may read small, or not at all")
    if is_set(row.get("lesion_fill_doubtful")):
        checks.append(f"the lesion fills {ml('lesion_fill_ratio')} of the segment under it: it may be its band alone, "
                      "what the band encloses read as marrow (far too small)")
    if is_set(row.get("lesion_band_continued")):
        checks.append(f"{ml('lesion_band_continued_ml')} mL of the {ml('lesion_volume_ml')} mL lesion continue its "
                      "band's shape where thick slices did not show it: check its margin")
    if is_set(row.get("lesion_extent_doubtful")):
        checks.append(f"the lesion's band, continued as a sphere, holds {ml('lesion_band_sphere_marrow_ml')} mL of "
                      f"marrow next to the {ml('lesion_volume_ml')} mL lesion that thick slices leave undecided: the "
                      "lesion may read small; check its margin across the slices")
    if is_set(row.get("lesion_band_unread")):
        checks.append(f"{ml('lesion_band_unread_ml')} mL of the {ml('lesion_volume_ml')} mL lesion has a margin that "
                      "fits no sphere on thick slices, so its band's shape could not be read: the lesion may be far "
                      "off (a centre read as marrow missing, or marrow oedema taken in); check it")
    if is_set(row.get("lesion_set_aside_doubtful")):
        checks.append(f"a {ml('lesion_set_aside_ml')} mL region of low signal in the head was set aside as anatomy, not "
                      "lesion: it may be a lesion's band whose centre was read as marrow (far too small); check it")
    if is_set(row.get("head_size_doubtful")):
        why = row.get("head_size_doubtful_reason")      # absent from tables written before it was a column
        checks.append(f"{why if isinstance(why, str) and why else 'its size is doubtful'}: the head may read too "
                      "small or too large; check the head's outline")
    if is_set(row.get("registration_doubtful")):
        checks.append(f"registration doubtful ({row.get('registration_doubtful_reason')})")
    return checks


def segmentation_checks(scan: Scan, seg: HipSegmentation) -> list[str]:
    """What a reader should check in one segmented hip, in the words of :func:`row_checks` (``lesionvol
    segment`` prints them under each hip).

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, lesion_for_fraction, make_visit
    >>> from lesionvol.io import Scan
    >>> from lesionvol.segment import segment_hip
    >>> image = make_visit(VisitSpec(lesions=(lesion_for_fraction(23.0, 20.0),)), seed=1).image
    >>> segmentation_checks(Scan(image), segment_hip(image))
    []
    """
    tp = Timepoint(seg.side, scan, seg.lesion, seg.head, "segmented", measure_volumes(seg.lesion, seg.head))
    tp.take_segmentation_quality(seg)
    return row_checks(StudyResult([tp]).rows()[0])


@dataclass
class StudyResult:
    """The analysed series (oldest first), the options it was made with, the table rows."""

    timepoints: list[Timepoint]
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    input_files: list[str] = field(default_factory=list)  # every file read (outputs may not replace them)

    @property
    def threshold_pct(self) -> float:
        return self.options.threshold_pct

    def rows(self) -> list[dict]:
        """One dict per timepoint with the columns of ``volumes.csv``."""
        baseline_ml = self.timepoints[0].volumes.lesion_volume_ml
        rows = []
        for tp in self.timepoints:
            v = tp.volumes
            lf = v.lesion_pct_head
            spacing = tp.scan.image.GetSpacing()
            segmented_lesion = tp.margin_oedema_ml is not None and v.lesion_volume_ml > 0
            thick_reason = thick_slice_reason(tp.scan.image) if tp.margin_oedema_ml is not None else ""
            size_doubt = head_size_doubt(tp.head_dome_marrow_fraction, tp.head_radius_minus_other_side_mm,
                                         tp.head_radius_mm, tp.head_refit_radius_shift_mm, tp.head_refit_failed_starts,
                                         tp.head_outer_surface_fraction, tp.head_radius_from_other_side,
                                         tp.head_fitted_to_roof, tp.head_found_from_grid)
            margin = tp.lesion_margin if segmented_lesion else None
            continued = tp.band_continued_ml is not None and tp.band_continued_ml > MAX_BAND_CONTINUED_FRACTION * \
                v.lesion_volume_ml
            row = {
                "timepoint": tp.label,
                "days": tp.days,
                "spacing_x_mm": spacing[0],
                "spacing_y_mm": spacing[1],
                "spacing_z_mm": spacing[2],
                "head_volume_ml": v.head_volume_ml,
                "lesion_volume_ml": v.lesion_volume_ml,
                "lesion_pct_head": lf,
                "residual_pct_baseline": residual_pct_baseline(v.lesion_volume_ml, baseline_ml),
                "regenerated_ml": tp.change.regenerated_ml if tp.change else None,
                "new_lesion_ml": tp.change.new_lesion_ml if tp.change else None,
                "change_method": tp.change_method,
                "threshold_pct": self.threshold_pct,
                "threshold_flag": threshold_flag(lf, self.threshold_pct),
                "steinberg_extent": steinberg_extent(lf),
                "head_mesh_volume_ml": v.head_mesh_volume_ml,
                "lesion_mesh_volume_ml": v.lesion_mesh_volume_ml,
                "lesion_outside_head_ml": v.lesion_outside_head_ml,
                "mask_at_fov_edge": bool(v.head_fov_edges or v.lesion_fov_edges),
                "mask_at_fov_edge_reason": v.fov_edge_reason(),
                "margin_oedema_ml": tp.margin_oedema_ml,
                "lesion_margin_signal": None if margin is None else margin.signal,
                "lesion_margin_band_gap_mm": None if margin is None else margin.band_gap_mm,
                "lesion_margin_doubtful": (None if tp.margin_oedema_ml is None else
                                           tp.margin_oedema_ml > MAX_MARGIN_OEDEMA_FRACTION * v.lesion_volume_ml
                                           or margin is not None
                                           and margin.holds_oedema(bool(thick_reason) or continued)),
                "lesion_on_thick_slices": None if tp.margin_oedema_ml is None else bool(thick_reason),
                "lesion_on_thick_slices_reason": thick_reason,
                "lesion_fill_ratio": tp.lesion_fill_ratio,
                "lesion_fill_doubtful": (None if tp.lesion_fill_ratio is None else
                                         tp.lesion_fill_ratio < LESION_FILL_MIN),
                "lesion_band_continued_ml": tp.band_continued_ml,
                "lesion_band_continued": None if tp.band_continued_ml is None else continued,
                "lesion_band_sphere_marrow_ml": tp.band_sphere_marrow_ml,
                "lesion_extent_doubtful": (None if tp.band_sphere_marrow_ml is None else
                                           tp.band_sphere_marrow_ml > MAX_BAND_SPHERE_MARROW_FRACTION
                                           * v.lesion_volume_ml),
                "lesion_band_unread_ml": tp.band_unread_ml,
                "lesion_band_unread": (None if tp.band_unread_ml is None else
                                       tp.band_unread_ml > MAX_BAND_UNREAD_FRACTION * v.lesion_volume_ml),
                "lesion_set_aside_ml": tp.set_aside_ml,
                "lesion_set_aside_doubtful": None if tp.set_aside_ml is None else tp.set_aside_ml > SET_ASIDE_DOUBT_ML,
                "head_dome_marrow_fraction": tp.head_dome_marrow_fraction,
                "head_radius_minus_other_side_mm": tp.head_radius_minus_other_side_mm,
                "head_refit_radius_shift_mm": tp.head_refit_radius_shift_mm,
                "head_refit_failed_starts": tp.head_refit_failed_starts,
                "head_outer_surface_fraction": tp.head_outer_surface_fraction,
                "head_radius_from_other_side": tp.head_radius_from_other_side,
                "head_fitted_to_roof": tp.head_fitted_to_roof,
                "head_found_from_grid": tp.head_found_from_grid,
                "head_size_doubtful": None if size_doubt is None else bool(size_doubt),
                "head_size_doubtful_reason": size_doubt,
                **tp.registration_qc,
                **tp.location,
                "image_contrast": tp.contrast[0],
                "image_contrast_reason": tp.contrast[1],
                "non_t1_allowed": self.options.allow_non_t1 and tp.contrast[0] not in ("T1", "unknown"),
                "mask_source": tp.mask_source,
                "head_definition": tp.head_definition,
                "lesion_definition": tp.lesion_definition,
                "image_sha256": tp.scan.sha256,
            }
            rows.append({k: (None if isinstance(x, float) and math.isnan(x) else x) for k, x in row.items()})
        return rows

    def update_mask(self, index: int, kind: str, mask: sitk.Image) -> list[int]:
        """Replace one timepoint's ``'lesion'`` or ``'head'`` mask (a reader's correction) and re-measure.

        Volumes and location of that timepoint are measured again; a corrected lesion also
        redoes the change maps it takes part in (all follow-ups for the baseline, else its own).
        Returns the indices of the follow-ups whose change maps were redone.

        Example
        -------
        >>> import SimpleITK as sitk
        >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[2:18, 2:18, 2:18] = 1
        >>> lesion = sitk.Image([20, 20, 20], sitk.sitkUInt8); lesion[2:10, 2:10, 2:10] = 1
        >>> result = analyze_scans([Visit(sitk.Image([20, 20, 20], sitk.sitkFloat32), lesion=lesion, head=head)])
        >>> lesion[2:10, 2:10, 2:6] = 0  # the reader erases half of it
        >>> _ = result.update_mask(0, "lesion", lesion)
        >>> result.rows()[0]["lesion_volume_ml"]
        0.256
        """
        if kind not in ("lesion", "head"):
            raise ValueError("kind must be 'lesion' or 'head'")
        tp = self.timepoints[index]
        setattr(tp, kind, as_binary_mask(mask, tp.scan.image, name=f"the corrected {kind} mask of {tp.label}"))
        if kind == "lesion":
            tp.margin_oedema_ml = None      # measured next to the segmented lesion, not the reader's
            tp.oedema = None
            tp.lesion_margin = None
            tp.lesion_fill_ratio = None
            tp.band_continued_ml = None
            tp.band_sphere_marrow_ml = None
            tp.set_aside_ml = None
            tp.band_unread_ml = None
        else:
            tp.head_dome_marrow_fraction = None   # read off the segmented head's fit, not the reader's
            tp.head_radius_minus_other_side_mm = None
            tp.head_radius_mm = None
            tp.head_refit_radius_shift_mm = None
            tp.head_refit_failed_starts = None
            tp.head_outer_surface_fraction = None
            tp.head_radius_from_other_side = None
            tp.head_fitted_to_roof = None
            tp.head_found_from_grid = None
        tp.volumes = measure_volumes(tp.lesion, tp.head)
        edges = _acetabular_edges(self.timepoints, self.options.acetabular_edge_mm)
        _locate([tp], tp.location.get("location_side", ""), [edges[index]])
        if kind != "lesion":
            return []
        baseline = self.timepoints[0]
        redo = [i for i in (range(1, len(self.timepoints)) if index == 0 else [index])
                if self.timepoints[i].change is not None]
        for i in redo:
            follow = self.timepoints[i]
            follow.change = change_maps(baseline.lesion, follow.lesion, follow.transform)
        return redo

    def summary(self) -> dict:
        """Provenance and definitions for ``summary.json`` (no patient identifiers)."""
        return {
            "lesionvol_version": __version__,
            "threshold": {
                "lesion_pct_head_threshold_pct": self.threshold_pct,
                "rule": f"threshold_flag = 'below' if lesion_pct_head < {self.threshold_pct:g} else 'at_or_above'",
                "source": THRESHOLD_SOURCE,
            },
            "definitions": {**DEFINITIONS, **REGISTRATION_DEFINITIONS, **LOCATION_DEFINITIONS},
            "options": self.options.as_dict(),
            "inputs": [
                {"timepoint": tp.label, "file": os.path.basename(tp.scan.source), "sha256": tp.scan.sha256,
                 "mask_source": tp.mask_source, "transform": tp.transform_source}
                for tp in self.timepoints
            ],
            "timepoints": self.rows(),
        }


def _days_from_dates(scans: Sequence[Scan]) -> list[float | None]:
    base = scans[0].study_date
    return [float((s.study_date - base).days) if base and s.study_date else None for s in scans]


def _acetabular_edges(timepoints: list[Timepoint], baseline_edge_mm: Sequence[float] | None) -> list:
    """The baseline's acetabular edge landmark in each timepoint's space (through its transform)."""
    if baseline_edge_mm is None:
        return [None] * len(timepoints)
    return [tuple(baseline_edge_mm)] + [
        tp.transform.TransformPoint(tuple(baseline_edge_mm)) if tp.transform is not None else None
        for tp in timepoints[1:]
    ]


def _locate(timepoints: list[Timepoint], side: str, edges: Sequence) -> None:
    """Fill each timepoint's location and staging columns (lesionvol.location).

    ``edges`` holds the acetabular edge landmark per timepoint (see :func:`_acetabular_edges`),
    so JIC is read at the same anatomical edge at every visit.
    """
    side = side or infer_side(timepoints[0].head)
    for tp, edge in zip(timepoints, edges):
        if side not in ("left", "right"):
            tp.location = {"location_side": "", "location_reason": "hip side unknown; give --side left|right"}
        else:
            tp.location = describe_location(tp.lesion, tp.head, side=side, acetabular_edge_mm=edge)


def _mask_source(given: list[str]) -> str:
    if len(given) == 2:
        return "user"
    if not given:
        return "segmented"
    return f"user {given[0]}, segmented {'head' if given[0] == 'lesion' else 'lesion'}"



def _lesion_alone(segmenter) -> bool:
    """Whether a visit with a given head gets its lesion segmented inside that head (the built-in
    method's lesion model); a model that segments head and lesion together (ONNX) runs whole."""
    from lesionvol.segment import ClassicalSegmenter

    return isinstance(segmenter, ClassicalSegmenter)


def _days(loaded: list[LoadedVisit]) -> list[float | None]:
    """Days as given; when no visit gives them, from the DICOM study dates."""
    given = [v.visit.days for v in loaded]
    if any(d is not None for d in given):
        return given
    base = loaded[0].scan.study_date
    return [float((v.scan.study_date - base).days) if base and v.scan.study_date else None for v in loaded]


def analyze_scans(
    visits: Sequence[Visit],
    options: AnalysisOptions | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Analyse one hip's visits, oldest first: masks, registration, volumes, location, change.

    Parameters
    ----------
    visits : sequence of Visit
        Baseline first. Each holds its scan (in memory or a path), any masks or label map a
        reader drew (the rest is segmented), its days, an optional known transform and seed.
    options : AnalysisOptions, optional
        Threshold, side, definitions, segmenter, registration (defaults when not given).
    progress : callable, optional
        ``progress(step, total, message)`` before each step.

    Returns
    -------
    StudyResult
        The timepoints, the options, and ``rows()`` / ``summary()`` for the tables.

    Example
    -------
    >>> import SimpleITK as sitk
    >>> image = sitk.Image([20, 20, 20], sitk.sitkFloat32)
    >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[2:18, 2:18, 2:18] = 1
    >>> lesion = sitk.Image([20, 20, 20], sitk.sitkUInt8); lesion[2:10, 2:10, 2:10] = 1
    >>> result = analyze_scans([Visit(image, lesion=lesion, head=head)])
    >>> result.rows()[0]["lesion_pct_head"], result.rows()[0]["steinberg_extent"]
    (12.5, 'A')
    """
    options = options or AnalysisOptions()
    if not visits:
        raise InputError("no images given")
    n = len(visits)
    loaded = [load_visit(v, i, options) for i, v in enumerate(visits)]
    # T2, STIR and fat-suppressed images are refused unless allowed (DICOM timing tags, else tissue contrast)
    contrasts = [check_t1(v.scan.image, options.allow_non_t1, v.scan.dicom_tags) for v in loaded]
    labels = [v.label for v in loaded]
    if len(set(labels)) != n:
        raise InputError(f"timepoint labels must be unique: {labels}")
    if loaded[0].transform is not None:
        raise InputError(f"the baseline {labels[0]} cannot have a transform: transforms map the baseline "
                         f"to a follow-up")
    n_segment = sum(1 for v in loaded if v.lesion is None or v.head is None)
    n_register = sum(1 for v in loaded[1:] if v.transform is None) if options.register else 0
    total, step = n_segment + n_register + 1, 0

    def say(message: str) -> None:
        nonlocal step
        if progress is not None:
            progress(step, total, message)
        step += 1

    segmenter = options.make_segmenter() if n_segment else None
    timepoints: list[Timepoint] = []
    hip_side = options.side if options.side in ("left", "right") else ""
    for v, day, contrast in zip(loaded, _days(loaded), contrasts):
        lesion, head, seg = v.lesion, v.head, None
        given = [name for name, mask in (("lesion", lesion), ("head", head)) if mask is not None]
        if given == ["head"] and _lesion_alone(segmenter):
            # a given head: the lesion is segmented inside it, the head is not looked for again
            say(f"{v.label}: segmenting the lesion inside the given head")
            from lesionvol.segment.lesion_seed import head_fit_from_mask, segment_lesion_in_head

            try:
                fit = head_fit_from_mask(v.scan.image, head)
                lesion = segment_lesion_in_head(v.scan.image, head, options.lesion_definition, fit=fit)
            except InputError as exc:
                raise type(exc)(f"{v.label}: {exc}") from None
            hip_side = hip_side or fit.side
        elif len(given) < 2:
            say(f"{v.label}: segmenting the femoral head and the lesion")
            from lesionvol.segment import segment_hip

            try:
                seg = segment_hip(v.scan.image, side=hip_side or options.side, seed_mm=v.visit.seed_mm,
                                  head_definition=options.head_definition,
                                  lesion_definition=options.lesion_definition, segmenter=segmenter)
            except InputError as exc:  # say which visit could not be segmented
                raise type(exc)(f"{v.label}: {exc}") from None
            hip_side = hip_side or seg.side
            lesion = seg.lesion if lesion is None else lesion
            head = seg.head if head is None else head
        source = v.visit.mask_source or _mask_source(given)
        tp = Timepoint(v.label, v.scan, lesion, head, source, measure_volumes(lesion, head), day)
        check_lesion_in_head(tp.volumes, v.label)
        tp.contrast = contrast
        tp.dicom_series = v.visit.series
        if "lesion" not in given and seg is None:
            tp.lesion_definition = options.lesion_definition
        if seg is not None:
            tp.take_segmentation_quality(seg, head="head" not in given, lesion="lesion" not in given)
        timepoints.append(tp)

    baseline = timepoints[0]
    baseline.transform_source = "baseline"
    for tp, v in zip(timepoints[1:], loaded[1:]):
        if v.transform is not None:
            tp.transform, tp.transform_source = v.transform, "given"
        elif options.register:
            say(f"{tp.label}: registering to {baseline.label}")
            from lesionvol.register import register_followup

            registration = register_followup(  # the proximal femur, the lesions kept out of the metric
                baseline.scan.image, tp.scan.image, fixed_head=baseline.head, moving_head=tp.head,
                fixed_lesion=baseline.lesion, moving_lesion=tp.lesion)
            tp.transform, tp.transform_source = registration.transform, "registered"
            tp.registration_qc = dict(registration.qc)
        if tp.transform is not None:
            tp.change = change_maps(baseline.lesion, tp.lesion, tp.transform)
        elif same_grid(baseline.scan.image, tp.scan.image):
            tp.change = change_maps(baseline.lesion, tp.lesion)
    _locate(timepoints, hip_side, _acetabular_edges(timepoints, options.acetabular_edge_mm))
    say("measured")
    return StudyResult(timepoints, options, [f for v in visits for f in v.files()])


def analyze(
    images: Sequence[PathLike],
    options: AnalysisOptions | None = None,
    *,
    labels: Sequence[str] | None = None,
    days: Sequence[float | None] | None = None,
    lesion_masks: Sequence[PathLike | None] | None = None,
    head_masks: Sequence[PathLike | None] | None = None,
    progress: Progress | None = None,
) -> StudyResult:
    """Analyse one hip's serial scans from files, oldest first: :func:`analyze_scans` on
    :class:`Visit` s made from per-image lists.

    Parameters
    ----------
    images : sequence of path-like
        Baseline first, then follow-ups (NIfTI, NRRD, MHA or DICOM series folders).
    options : AnalysisOptions, optional
        How to analyse (threshold, side, definitions, segmenter, registration, …).
    labels, days : sequence, optional
        Timepoint names (``t0, t1, …`` by default) and days since baseline (from DICOM study
        dates when not given).
    lesion_masks, head_masks : sequence of path-like or None, optional
        Masks drawn by a reader, one per image (``None`` entries are segmented).
    progress : callable, optional
        ``progress(step, total, message)`` before each step.

    Example
    -------
    >>> from lesionvol.sample import sample_series_paths, sample_mask_paths
    >>> result = analyze(sample_series_paths(), AnalysisOptions(register=False),
    ...                  lesion_masks=sample_mask_paths("lesion"), head_masks=sample_mask_paths("head"))
    >>> [row["timepoint"] for row in result.rows()]
    ['t0', 't1', 't2']
    """
    visits = visits_from_lists(images, labels=labels, days=days, lesions=lesion_masks, heads=head_masks)
    return analyze_scans(visits, options, progress)
