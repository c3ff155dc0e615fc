"""Find and fit the femoral head on a T1 image: a sphere, its neck axis and head–neck junction.

How (classical, intensity-scale free: every level is relative to the marrow/fat signal):

1. **Candidates.** The image is binned to about 2 mm, divided by its fat field (the fat/marrow
   signal smoothed over about 40 mm, so receive-coil shading does not matter; scaled so the fat
   level, the upper class of a three-class Otsu split, reads 1) and every strong edge votes along
   its gradient line, on both sides, at 14–34 mm.  The marrow/plate and plate/joint surfaces and the concentric acetabular
   cortices all vote for the head centre; the peaks of the smoothed vote map (the 12 best, at
   least 20 mm apart) are the candidates.  In a field showing both hips, once one head is found, the
   other is looked for down to the 40th peak where the pair of the first would lie (a necrotic dome
   loses the edges that vote for its head).
2. **Sphere fit.** Around a candidate, in-plane rays are cast in every native slice from the
   foot of the centre (no interpolation across slices, so 4 mm slices do not blur the edges).
   On each ray, the *outer* head surface is the rise from the dark subchondral plate to the joint
   space/muscle (40 % of the way from the plate's trough to the joint space), the *inner* (marrow)
   surface the steepest fall from marrow into the plate (no level: how dark an unresolved rim reads
   changes with the grid).  Robust (trimmed) sphere fits give the centre (from the inner surface
   when enough of it is visible and, once, within 7 mm of the outer, else the outer) and the head
   radius (outer surface; 1 mm outside the marrow surface, read on the slices that resolve it, where
   the rim is wider than a plate); the rays are cast again from the new centre, up to eight rounds
   in all, until the centre moves less than 0.05 mm.  The first radii come from the central slices: the median over
   the rays of the first rise out of a dark shell, or, when that fit finds no head and the rays'
   upper quartile lies far beyond it (a large lesion's band was the first dark shell on many
   rays), their upper quartile.  From a start a few mm off, the outer surface may be looked for at
   the wrong radius, and be missed or found on too few rays, while the marrow surface already
   gives the centre: then the marrow surface leads and the outer surface is looked for again just
   outside it.  Rim widths are read at the fitted centre, not the start, so the radius does not
   depend on where the fit started.
3. **Neck axis.** 3D rays beyond the acetabulum find the bright marrow tube leaving the head
   inferiorly and laterally (on the known side, or on either side, the brighter taken): the
   centre of the neck's opening, the bright directions with no dark rim around the brightest
   cone of them (a mean shift from it).  Circles fitted to the neck's cross-sections re-aim the axis
   through their centres and give the neck's radius.  The
   anatomical head is the ball cut by the plane perpendicular to the axis where the neck leaves
   the ball, sqrt(R² − r_neck²) from the centre, r_neck the neck's radius measured across the axis
   (0.72 R if unreadable).  ``junction_fraction`` asks for a fixed cut at that fraction of R instead
   (0.55 R was lesionvol's convention before; it cut the head ~7 % short).
4. **Checks.** A fit is a femoral head only if the central slices show marrow inside a dark rim
   with a rise out of it on at least 30 % of the rays (and, without a seed point, marrow signal
   inside at all), the outer surface is found on at least 40 % of the rays in slices that resolve
   it (thick slices smear the cap), the radius is 15–33 mm, the plate is 0.3–5 mm thick, a neck
   bright along at least 75 % of its axis leaves it inferiorly (but at least 20° from straight down: not
   the shaft below the greater trochanter) without a cortical rim between, and
   bone marrow (the acetabular roof) lies above it beyond its rim on at least 60 % of the upward
   rays; otherwise :class:`NoFemoralHeadError`.  In a field showing both hips the side is
   where the head lies (left or right of the body's midline; nothing within 40 mm of the midline
   is a head) and the neck must leave it laterally; in a narrower field a second head's side is
   where it lies against the first; a second head must lie where the other hip of the pelvis
   would (``PAIR_LR_MM``).  The numbers are the module constants below
   (``HEAD_RADIUS_RANGE_MM``, ``PLATE_THICKNESS_MM`` ...).

Example
-------
>>> from lesionvol.phantom import VisitSpec, make_visit
>>> scan = make_visit(VisitSpec(), seed=0)
>>> fit = find_heads(scan.image)[0]
>>> fit.side, abs(fit.radius_mm - 23.0) < 0.5
('right', True)
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lesionvol.errors import InputError
from lesionvol.geometry import Grid, fit_concentric_spheres, fit_sphere, fit_sphere_centre

__all__ = ["HeadFit", "NoFemoralHeadError", "find_heads", "fit_head", "fat_level", "junction_distance_mm",
           "neck_axis"]

# Tunables.  Intensity levels are fractions of the fat/marrow signal (× fat); lengths are mm.
# "Anatomy" cites /work/shared/domain.md; "empirical" means no published source: the value was set
# while developing the method on the lesionvol phantoms (lesionvol.phantom), so accuracy on them is
# not an independent check of it.

# --- the head itself (anatomy, with margins)
#: Accepted femoral-head radius (outer surface).  Adult heads are 38–54 mm across (domain.md):
#: radius 19–27 mm, widened by 4–6 mm either side for small, large and collapsed heads.
HEAD_RADIUS_RANGE_MM = (15.0, 33.0)
#: A first radius read off the median ray profile may lie this far outside HEAD_RADIUS_RANGE_MM
#: and still be refined by the sphere fit (empirical).
PROFILE_RADIUS_SLACK_MM = 3.0
#: Accepted subchondral plate thickness (outer minus inner head radius), empirical: thin enough
#: for partial volume at 0.4 mm pixels, thick enough for a 4 mm slice cutting the plate obliquely.
PLATE_THICKNESS_MM = (0.3, 5.0)
#: Plate thickness assumed where the inner (marrow) surface is not seen (empirical, typical reading).
DEFAULT_PLATE_MM = 2.0
#: A large lesion's band is the first dark shell on many central rays, so the median of their first
#: rise out of a dark shell can be the band's, not the head's.  When the rays' upper quartile lies
#: more than this (mm) beyond the median and no head is found from the median, the fit starts again
#: from the upper quartile (second phantom family, held-out set 6000: a 40 % lesion with an
#: oedematous centre read 14.0 mm median, 24.2 mm upper quartile, head 24 mm; every other head of
#: the standard and held-out sets: 0.2-2.2 mm).
LESION_SHELL_GAP_MM = 4.0
#: The head is cut where the neck leaves it (design.md): by the plane perpendicular to the neck
#: axis at sqrt(R² - r_neck²) from the centre, r_neck the neck's measured radius.  Where the neck
#: cannot be measured, r_neck = NECK_RADIUS_FRACTION · R (femoral neck ~0.7 of the head's
#: diameter; anatomy), i.e. a cut at ~0.69 R.  The cut is kept within JUNCTION_LIMITS × R.
NECK_RADIUS_FRACTION = 0.72
JUNCTION_LIMITS = (0.45, 0.85)
#: A field at least this wide (mm, left-right) shows both hips (a pelvis is ~30-40 cm across; one
#: hip's field of view is ~15-20 cm).
BOTH_HIPS_FIELD_MM = 280.0
#: In such a field a head's side is where it lies: the two head centres are 80-100 mm either side
#: of the body's midline (anatomy), so a candidate within SIDE_FROM_MIDLINE_MM of the midline is
#: no femoral head, and one beyond it is on that side.  The body is the signal above BODY_LEVEL ×
#: fat (muscle reads ~0.35, air 0) and its midline the median left-right position of the body.
SIDE_FROM_MIDLINE_MM = 40.0
BODY_LEVEL = 0.15
#: Two heads of one image are at least this far apart (the two hips of a pelvis are ~15–20 cm
#: apart); closer candidates are the same head.
MIN_HEAD_SEPARATION_MM = 40.0
#: A second head lies PAIR_LR_MM from the first along the patient's left-right axis, on the side its
#: neck says, and within PAIR_OFF_AXIS_MM of it front to back and foot to head (the heads of an
#: adult pelvis are 15-20 cm apart and level; margins for tilted and rotated positioning).  A
#: "second head" in the thigh of a one-hip field was refused by this.
PAIR_LR_MM = (120.0, 260.0)
PAIR_OFF_AXIS_MM = 50.0

# --- signal levels (× fat; the phantom's plate reads ~0.05, joint space / muscle ~0.35–0.45)
#: Outer surface: half-way between plate (~0.05) and joint space / muscle (~0.35–0.45).
OUTER_LEVEL = 0.22
#: Half-way between marrow (1) and plate: the marrow's edge for the first radius estimate, the neck's
#: sections and the lesion's expected signal (the fit's marrow surface is the steepest fall, below).
INNER_LEVEL = 0.5
#: The outer level measured on a head is 40 % of the way from its plate to its joint space ...
OUTER_LEVEL_FRACTION = 0.4
#: ... from the plate's trough, the darkest point of the median profile within this distance (mm)
#: inside the radius (a median over a fixed band there took in the blurred rise into the marrow: a
#: 1.5 mm plate on 0.7-0.9 mm pixels read 0.05 at its trough, 0.11 over the band, and the head radius
#: came out 0.18 mm large, median over the second phantom family; 0.09 mm with the trough) ...
PLATE_TROUGH_SEARCH_MM = 2.0
#: ... to the joint space, read this far (mm) outside the radius (empirical) ...
OUTER_LEVEL_SAMPLE_MM = (0.6, 1.4)
#: ... and kept within these limits (empirical).
OUTER_LEVEL_LIMITS = (OUTER_LEVEL - 0.08, OUTER_LEVEL + 0.12)
#: Fat level of the whole image: upper class of a three-class Otsu split (background, soft tissue,
#: fat/marrow), estimated from at most this many voxels (speed).
FAT_OTSU_CLASSES = 3
FAT_MAX_SAMPLES = 400_000
#: An upper class holding less than this fraction of the voxels is no tissue filling a hip field but a
#: bright sliver (fat beside a receive coil, vessels): it is left out and the split made again, at most
#: FAT_SPLIT_ROUNDS times.  On two real one-hip fields cut from the development scans the fat beside
#: the coil was 0.6-0.7 % of the voxels, its median 3.2-3.6x the fat elsewhere (the marrow then read a
#: third of the "fat" and no head was found); the fat class of the 15 real pelvis fields holds 31-52 % of the
#: voxels, of both phantom families' T1 fields 6 % or more, of their T2 and STIR fields 2.2 % or more.
FAT_MIN_CLASS_FRACTION = 0.01
FAT_SPLIT_ROUNDS = 3
#: Local marrow level: this percentile of the signal within this distance of the candidate centre
#: (central slices) ...
LOCAL_MARROW_PERCENTILE = 80
LOCAL_MARROW_RADIUS_MM = 14.0
#: ... used to rescale only when it reads above this (else the head may be necrotic; keep fat).
LOCAL_MARROW_MIN = 0.5
#: A femoral head holds marrow: below this (× the fat near it) a candidate found without a seed is
#: refused.  Development scans read 0.79-1.02; the rectum on a T2 prostate scan read 0.19 (and came
#: out a "head" that was 99 % lesion); a head necrotic throughout its centre reads as low (0.15), so
#: it is measured only from a reader's seed point.
MIN_MARROW_SIGNAL = 0.35

# --- 1. candidates: edges vote for sphere centres on a coarse grid
#: Grid spacing of the vote map (mm).
VOTE_STEP_MM = 2.0
#: Vote distances from each edge, covering HEAD_RADIUS_RANGE_MM and the acetabular cortices.
VOTE_RADII_MM = (14.0, 34.0)
#: Gaussian sigma (coarse voxels, i.e. 2 mm) of the image before edges, and of the vote map.
VOTE_IMAGE_SIGMA_VOXELS = 1.0
VOTE_MAP_SIGMA_VOXELS = 1.0
#: An edge votes when its gradient exceeds this (× fat per mm); its vote weight is capped at
#: VOTE_WEIGHT_MAX so a few strong fat/air edges do not drown the head (empirical).
VOTE_EDGE_MIN = 0.04
VOTE_WEIGHT_MAX = 0.4
#: Receive-coil shading: before voting, the image is divided by a smooth fat field, the mean of the
#: fat/marrow voxels (above FAT_FIELD_CLASS × the field) within about FAT_FIELD_SIGMA_MM, on a
#: FAT_FIELD_STEP_MM grid, kept within FAT_FIELD_LIMITS × fat (normalised convolution; two rounds).
#: Without it a hip under a coil darker by a quarter lost its vote peak (real scans with a
#: simulated shading field of 0.6–1.4).
FAT_FIELD_CLASS = 0.6
FAT_FIELD_SIGMA_MM = 40.0
FAT_FIELD_STEP_MM = 8.0
FAT_FIELD_LIMITS = (0.3, 3.0)
FAT_FIELD_ROUNDS = 2
#: Vote-map peaks tried as candidates (until a head is found on each side): at most this many, this far apart, at least this fraction
#: of the best peak (empirical).
N_CANDIDATES = 12
CANDIDATE_MIN_SEPARATION_MM = 20.0
CANDIDATE_MIN_REL_VOTE = 0.2
#: A one-hip field: where the field shows both hips and one head was found, the other is looked for in a field this
#: wide (mm, left to right) centred on the found head's mirror image across the body's midline (the width of the
#: one-hip crops of the real development scans, benchmarks/real_t1/variants.py, where every head is found).
ONE_HIP_FIELD_MM = 180.0
#: Where the field shows both hips and one head was found among those, the other is looked for further
#: down, up to this many peaks, where it would lie as the pair of the first (PAIR_LR_MM, PAIR_OFF_AXIS_MM
#: from it, on the other side of the midline).  A necrotic dome loses the edges that vote for its head:
#: lesions written into the real development heads (``benchmarks/real_t1/implant.py``) left two heads'
#: peaks 14th and 16th; on a 192 mm field of a real T2 prostate series the 14th peak is the perineum
#: (its fit passes the anatomy checks there), hence only at the pair's place.
N_CANDIDATES_PAIR = 40
#: With a user's seed point, only peaks within this distance of it count, and the head fitted there must
#: lie within it too.
SEED_SEARCH_RADIUS_MM = 30.0
#: While a head is missing after every candidate was tried (none found, or one side of a field that shows
#: both hips), each candidate is tried once more from this far below it (LPS -z).  A large lesion's band at
#: the weight-bearing dome votes too and draws the peak up: written into the real development heads
#: (``benchmarks/real_t1/implant.py --seed 23 --lf-pct 30 50``), 6 of 30 heads with lesions of 30-50 % and
#: intermediate centres were refused; the peaks nearest them lay 2-7 mm off the true centres, most of it upwards,
#: and the fits from them failed.  With this second pass all 6 were found (each flagged ``head_size_doubtful``).
#: Only while a head is missing, so that a scan whose heads are found is read exactly as before.
RESTART_BELOW_MM = 5.0

# --- 2. sphere fit from in-plane ray profiles
#: Ray sampling step (mm) and number of ray directions per slice (2.5° apart).
RAY_STEP_MM = 0.25
RAY_ANGLES = 144
#: The fit samples each ray this far (mm) beyond the windows where it looks for the surfaces and the means beside them.
BAND_MARGIN_MM = 1.0
MIN_BAND_SAMPLES = 4
#: The region of interest reaches this far beyond the largest head radius (mm).
ROI_MARGIN_MM = 12.0
#: In-plane axes finer than FINE_SPACING_MM are smoothed with sigma RAY_SMOOTH_SIGMA_MM (noise).
FINE_SPACING_MM = 1.5
RAY_SMOOTH_SIGMA_MM = 0.5
#: Slices within this distance (mm) of the centre are the "central" ones (radius and local levels);
#: the nearest slice is used if none is this close.
CENTRAL_SLAB_MM = 3.0
#: Surface points are sought in slices within this fraction of R from the centre: beyond it the
#: surface is too oblique to the in-plane rays.
MAX_SLICE_HEIGHT_FRACTION = 0.85
#: Expected in-plane radius of the surface at a slice: never below this (mm), near the poles.
MIN_EXPECTED_RHO_MM = 1.0
#: Outer surface: a rise through the outer level within this window (mm) of the expected radius,
#: with the mean over OUTER_BEFORE_MM inside below the level and over OUTER_AFTER_MM outside above
#: it by OUTER_RISE_MARGIN (empirical).
OUTER_WINDOW_MM = (-4.0, 3.0)
OUTER_BEFORE_MM = 1.0
OUTER_AFTER_MM = 1.25
OUTER_RISE_MARGIN = 0.05
#: Inner (marrow) surface: the steepest fall of the profile within this window of the expected inner
#: radius, from marrow (mean over INNER_BEFORE_MM above INNER_MARROW_MIN) into the dark rim (mean over
#: INNER_AFTER_MM below INNER_RIM_MAX), falling by at least INNER_MIN_FALL_PER_MM (× marrow per mm).
#: The steepest fall, not a level crossing: on real scans the rim under the marrow (plate, cartilage,
#: joint) is not resolved, and its depth, hence any level between it and the marrow, changes with the
#: grid and the slice blur.  Crossing the level half-way to the rim's depth, the same real head moved
#: onto another grid (4.4-6.4 mm slices) lost up to 1.2 mm of marrow radius, up to 25 % of its volume
#: (development cases 1-15); with the steepest fall within 5.2 %.  (INNER_RIM_MAX and the slope are
#: empirical: 0.35 let the fit fall back to the level crossing's radius on one of those heads.)
INNER_WINDOW_MM = (-3.0, 2.5)
INNER_BEFORE_MM = 1.5
INNER_AFTER_MM = 1.0
INNER_MARROW_MIN = 0.7
INNER_RIM_MAX = 0.6
INNER_MIN_FALL_PER_MM = 0.1
#: First radius estimate from the central slices' profiles (smoothed over this many samples): the
#: plate is the first stretch darker than PLATE_DARK_MAX beyond PLATE_SEARCH_START_MM, and the
#: estimate needs a rise out of it on at least MIN_PROFILE_FRACTION of the rays.
PROFILE_SMOOTH_SAMPLES = 3
PLATE_SEARCH_START_MM = 8.0
PLATE_DARK_MAX = OUTER_LEVEL + 0.05
MIN_PROFILE_FRACTION = 0.3
#: Robust sphere fit: trimming rounds, fewest points, and the inlier band (MAD_TO_SIGMA × MAD ×
#: SPHERE_TRIM_SIGMAS, at least SPHERE_TRIM_MIN_MM).  1.4826 turns a MAD into a normal sigma.
SPHERE_TRIM_ROUNDS = 4
SPHERE_MIN_POINTS = 10
MAD_TO_SIGMA = 1.4826
SPHERE_TRIM_SIGMAS = 2.5
SPHERE_TRIM_MIN_MM = 0.6
#: Edge sampling and fitting is repeated at most FIT_ROUNDS times, until the centre moves less than
#: CONVERGED_MM; a surface needs MIN_SURFACE_POINTS points to be fitted (empirical; a real head's copy
#: on 6.1 mm slices still moved 1 mm in the 4th round, less than 0.1 mm in the 8th).
FIT_ROUNDS = 8
CONVERGED_MM = 0.05
MIN_SURFACE_POINTS = 30
#: The inner surface gives the centre when found on MIN_INNER_FRACTION of the rays and its radius
#: is within MAX_INNER_OUTER_GAP_MM of the outer one (empirical: on the real development heads and
#: their moved copies the first round read 3.5-5.9 mm between the two, one copy 6.4 mm, which the
#: former 6 mm limit left to the outer surface: -14 % of volume).  A quarter, not 0.3: a 30-34 %
#: intermediate-centred lesion written into real heads (``benchmarks/real_t1/implant.py``) hides the marrow
#: surface under the dome, which was then seen on 0.297 of the rays; the outer surface alone led the fit
#: onto the rise out of the unresolved rim, 3 mm out, and the head was refused (no acetabulum above it).
MIN_INNER_FRACTION = 0.25
MAX_INNER_OUTER_GAP_MM = 7.0
#: A head fitted with ``require_marrow`` (found without a seed point) shows its marrow surface on at least this
#: fraction of the rays: marrow inside a cortical shell.  Every head returned on the lesions written into real heads (implant.py seeds 1, 13,
#: 22, on their own grids and on follow-up grids, 357 heads with and without the lesions) read 0.27 or more
#: (median 0.62); a trochanter returned as a right head on a one-hip crop of a follow-up grid whose head a large
#: lesion hid read 0.12.  A reader's seed point vouches for a head necrotic throughout instead.
MIN_MARROW_SURFACE_FRACTION = 0.2
#: The head's size is doubtful when its marrow surface is found on less than this fraction of the rays to the
#: dome (``HeadFit.quality["dome_marrow_fraction"]``): a large lesion there, its centre darker than marrow, hides
#: it, and the sphere is fitted to the head's lower part.  Lesions written into real heads
#: (benchmarks/real_t1/implant.py, development seeds 1-3, 9, 10: 148 heads): the 6 whose head read more than 5 %
#: off (-21 to +24 %) read 0.01-0.24, and 22 others that read within 5 % read below 0.25 too; the same heads
#: without the lesion read 0.73 or more, normal phantom heads (family B) 0.72-0.97.  Raised from 0.25 to 0.3 after
#: the latest run of each of 43 implant draws (1085 hips): of the 20 heads reading 0.25-0.30, 9 read more than 5 %
#: (head) or 10 % (lesion) off, 2 of them flagged by nothing (heads -5.1 and -11.1 %, lesions -14.9 and -13.9 %),
#: and 6 unflagged heads read within.  Above 0.30 the errors no flag caught were the lesion's (+12.8 to +18.5 %, the
#: heads within 4 %), and a phantom head (family A) with a 20 % lesion there reads 0.31; normal heads read 0.60 or
#: more (copies moved onto follow-up grids).
DOME_MARROW_MIN = 0.3
#: A person's two femoral heads are nearly the same size: in 80 pairs of femurs of adults aged 20-40 their diameters
#: differed by less than 2 mm (Young et al., Clin Orthop Relat Res 2013;471:1593), in 345 pairs on CT by 0.3 mm on
#: average (Laumonerie et al., Bone Joint J 2018;100-B:839).  Where both heads are found on one scan and their
#: fitted radii differ by more than this (mm), one of the two is off, and both heads' sizes are doubtful.  The 15
#: real development scans' heads differ by 0.50 mm at most.  Lesions written into them (implant.py seeds 1, 2,
#: 1200, 1300, 1500, 2000; 86 pairs): of the 9 pairs with a head more than 10 % off in volume, 5 differ by more
#: than 1 mm (1.3-4.1 mm; 4 of them not flagged by the dome), and none of the 69 pairs whose heads both read within
#: 5 % does.
HEAD_PAIR_RADIUS_MAX_MM = 1.0
#: An adult femoral head is 38-54 mm across (domain.md): radius 19-27 mm.  A fitted radius more than 1 mm outside
#: that (the fit's own error: phantom family B's 27 mm heads read up to 27.07 mm) makes the head's size doubtful,
#: also where no other head was found to compare it with.  Every head returned on the 30 real development heads
#: (benchmarks/real_t1/evaluate.py, 90) reads 20.3-24.0 mm, on their variants.py copies (240) 19.9-24.0 mm.  From a seed point at the centre of a real head with a 38 % intermediate-centred lesion written into
#: it (implant.py seed 2600, LF 30-50 %, case 3 right, both heads missed without a seed), a 15.1 mm sphere inside
#: the head was fitted with no lesion in it (the head is 21.9 mm); it passed every other check.
HEAD_RADIUS_PLAUSIBLE_MM = (18.0, 28.0)
#: A head found is fitted again from REFIT_STARTS_MM around its centre (a tetrahedron's corners, REFIT_OFFSET_MM
#: away): where the fit holds, each start finds the same head.  Its size is doubtful when the median of those fits'
#: radii lies more than REFIT_RADIUS_SHIFT_MAX_MM from its own (about 4 % of a 22 mm head's volume), or when more than
#: REFIT_MAX_FAILED_STARTS starts find no head at all.  On the 30 real development heads, 3 of the 4 starts at least
#: found the same head within 0.15 mm of radius, and the median moved 0.13 mm at most; no start failed.  Under lesions
#: written into those heads (implant.py seeds 1200 and 3740, LF 30-50 %: 57 heads), the fit moved with its start on
#: heads that read off: the three more than 5 % off that nothing else flagged (-21.9 %, -5.2 %, +7.7 %) moved +1.54,
#: +0.37 and -0.52 mm, and each of the 5 heads from which a start found no head read 6-11 % large.  Not tuned on: the
#: 240 normal heads of variants.py's copies moved at most 0.20 mm, none flagged; on five fresh implant draws (144
#: heads) it alone flagged 2 of the 34 heads more than 5 % off (-28.7 and -24.8 %) and 3 of the 110 within 5 %.  One
#: start of four that finds no head says little of the head's size: the 5 development heads with a failed start were
#: flagged for other reasons too, and on a fresh draw moved onto follow-up grids (implant.py --moved 34700) a normal
#: head (case 1 left, shift 0.02 mm) was flagged for that alone; the heads of four fresh LF 30-50 % draws that the
#: refit alone flagged had 0, 3 or 4 failed starts.
REFIT_OFFSET_MM = 3.0
REFIT_STARTS_MM = REFIT_OFFSET_MM / math.sqrt(3.0) * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float)
REFIT_RADIUS_SHIFT_MAX_MM = 0.3
REFIT_MAX_FAILED_STARTS = 1
#: A head's size is doubtful too when its bone (outer) surface is found on fewer than OUTER_SURFACE_DOUBT_BELOW of the
#: rays (``HeadFit.quality["outer_fraction"]``): the sphere then rests on the marrow surface alone, which a large
#: lesion's band can stand in for.  The 30 normal real development heads read 0.45-0.69, 90 copies of them moved onto
#: follow-up grids 0.33-0.72; lesions written into them (implant.py seeds 3740, 4060 LF 30-50 %, 4000 LF 4-35 %): the
#: 5 heads below 0.40 read 21-56 % small, every other 0.43 or more.  Below 0.3: a fat-centred lesion of 49 % (4060
#: case 3 right, 0.22) whose head was fitted 2.6 mm small inside its band, the lesion outside it, read 0.00 mL for
#: 21.2 with no flag (its refits agreed within 0.05 mm, its dome read marrow: the band), and the other head of that
#: scan (0.19, -25.7 %; flagged by its refit too).
OUTER_SURFACE_DOUBT_BELOW = 0.3
#: Such a head is fitted again from RESCUE_STARTS_MM around its centre (6 starts RESCUE_OFFSET_MM away along the
#: axes), and the largest fit whose bone surface is seen on at least OUTER_SURFACE_DOUBT_BELOW of the rays replaces it
#: when larger (:func:`_fit_where_bone_is_seen`): a lesion's band makes a head small.  Under a large lesion the fit
#: depends on its start: 4060 case 3 right, fitted 19.3 mm inside the band (bone surface 0.22), was found at 21.9 mm
#: (0.58; 21.86 mm without the lesion) from 5 mm below its centre; from 5 mm behind it, at 19.8 mm with its bone
#: surface seen on 0.56 of the rays (a fat-centred lesion's band, dark then bright, reads as a bone surface too), so
#: the most-seen fit is not the one kept (3980 case 3 right, -8.5 %, read -26.1 % with it).
RESCUE_OFFSET_MM = 5.0
RESCUE_STARTS_MM = RESCUE_OFFSET_MM * np.vstack([np.eye(3), -np.eye(3)])
#: A head whose own fit is doubtful (:func:`own_size_doubt`) beside a head whose fit holds, its radius more than
#: AT_OTHER_RADIUS_MIN_GAP_MM smaller, takes that head's radii, and its centre is fitted again at them
#: (:func:`fit_at_radius_of`), unless the centre would move further than AT_OTHER_RADIUS_MAX_MOVE_MM.  Without the gap,
#: on the draws it was built on (implant.py 4080 and 4100), 4 of the 9 heads it moved read further off: two heads'
#: radii differ by up to 0.5 mm on the development scans, and the "sound" head may be off unflagged too.  With it, on
#: 11 draws (330 hips) 10 heads moved: the 9 that were 0.80-3.03 mm smaller than the other all read nearer the truth
#: (3980 case 6 right -45.7 -> -6.7 %); the one 0.98 mm larger (fresh 4120 case 14 right, moved) had read right, +3.5 %,
#: and read -11.0 % at the other's radius.  A lesion's band and the cap it leaves make a head small (as in
#: :func:`_fit_where_bone_is_seen`), so only a smaller head takes the other's radius.
AT_OTHER_RADIUS_MIN_GAP_MM = 0.75
AT_OTHER_RADIUS_MAX_MOVE_MM = 4.0
#: Under a large lesion at the dome neither of the head's surfaces shows there, but the acetabular roof above it,
#: concentric with the head, does: on rays up from the centre, the roof's marrow rises out of the dark rim (the head's
#: plate, cartilage, joint and the acetabular plate) a gap beyond the head's marrow surface.  Roof rays: superior
#: component above ROOF_MIN_UP, front-to-back below ROOF_MAX_FRONT_BACK (coronal 5.2 mm slices smear the others); the
#: rise: :func:`_roof_points`.  The gap of the 30 real development heads (:func:`roof_gap_mm`): 4.45-6.41 mm, median
#: 5.42; a person's two within 0.5 mm on 13 of the 15 scans, 0.79 mm at most.  Lesions written into those heads (LF
#: 30-50 %, seeds 4240 and 4260 moved, 60 heads) move it by 0.03 mm (median; 0.25 mm at most) at the true centre,
#: where the roof is found on 0.61-1.00 of the rays (median 0.88).
ROOF_MIN_UP = 0.7
ROOF_MAX_FRONT_BACK = 0.35
ROOF_DARK = 0.35
ROOF_RISE = 0.5
ROOF_MARROW_MM = 2.0
#: The roof is looked for within this of the gap expected (mm), and the fit uses the marrow-surface points on rays
#: whose superior component lies below ROOF_BELOW_UP (away from a lesion at the dome).
ROOF_WINDOW_MM = 3.0
ROOF_BELOW_UP = 0.3
#: ... then, once converged, within this of the sphere (a lesion's band lies 1.5 mm or more inside it).
ROOF_FINE_WINDOW_MM = (-1.0, 1.0)
#: :func:`roof_gap_mm` looks for the roof ROOF_GAP_SEARCH_MM ± ROOF_WINDOW_MM beyond the marrow surface: the
#: development heads read 4.45-6.41 mm (median 5.42), phantom family B's 7.7 mm.
ROOF_GAP_SEARCH_MM = 6.5
#: At least this fraction of the roof rays must show the roof, at the gap, from the fitted centre; and at least
#: ROOF_MIN_STARTS of the 5 starts (its own centre and REFIT_STARTS_MM) must give a fit, their marrow-surface radii
#: within ROOF_START_SPREAD_MAX_MM of each other: a fit that moves with its start is not one to vouch for (the two roof
#: fits that made a head read 16-18 % small, on one real head, spread 1.6-2.0 mm; those that helped 0.0-0.1 mm but one).
ROOF_MIN_FRACTION = 0.6
ROOF_MIN_STARTS = 3
ROOF_START_SPREAD_MAX_MM = 0.5
#: A doubtful head takes the fit to the roof only where that fit's marrow surface lies more than this (mm) outside its
#: own: a lesion's band left below ROOF_BELOW_UP draws the roof fit in, never out, so only a larger fit is taken (on
#: lesion draws into the development heads, of 80 doubtful heads fitted at the other head's gap or 5.5 mm, the 9 whose
#: roof fit read 0.6 mm or more larger all moved towards the truth, from -30..-5 % to -8..+7 %; of the 9 that read
#: 0.6 mm or more smaller, 4 moved away).
ROOF_LARGER_BY_MM = 0.6
#: A head still missed beside a head found (:func:`_missed_head_from_grid`; both missed:
#: :func:`_both_heads_from_grid`) is fitted from a grid of starts GRID_STEP_MM apart around the first GRID_MAX_PEAKS
#: vote peaks where it would lie (3 across, 3 front to back, and the peak, 1 and 2 steps below it: the band of a
#: large lesion at the dome draws the peak up), and of the fits lying as the other hip of the pelvis, their radius
#: within HEAD_PAIR_RADIUS_MAX_MM of the other head's, the one whose radius is nearest is kept, flagged.  Lesions
#: written into the real development heads (LF 30-50 %, tuning draws 4160, 4240, and 4200 and 4260 moved): of 11
#: heads missed, the fits from the true centre converged for 9; from the vote peak nearest each (1.6-8.2 mm off,
#: most of it upwards) none did, from 5 mm along one axis 3 of 11, and from this grid all 11 (1 to 16 of the 27
#: starts), in 2.7-3.9 s each; so kept, beside a sound head, 3 (4160 1 right -1.1 %, 4260 3 right -0.3 %, 4 left
#: +2.5 % of head volume), and on six fresh draws 1 of the 10 missed (+12.9 %). Without the radius limit, beside a
#: phantom family B head whose neck runs 15 deg from straight down (refused), a 28.4 mm sphere 6.6 mm off it was
#: returned beside the other head's 24.1 mm.
GRID_STEP_MM = 3.0
GRID_STARTS_MM = GRID_STEP_MM * np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-2, -1, 0)],
                                         float)
GRID_MAX_PEAKS = 2
#: Both heads missed (:func:`_both_heads_from_grid`): with no sound head to hold a radius against, a fit counts only
#: where at least GRID_MIN_SUPPORT starts of its grid converge on it (centres within GRID_AGREE_MM, radii within
#: GRID_AGREE_RADIUS_MM), and the pair most starts converge on is kept.  On implant draw 4200 moved case 13 the pair of
#: nearest radii read the right head +10.9 % from one start (on a crop of that scan, two fits 7.5 and 5.1 mm off the
#: heads, one start each, at -37 and -32 %); the pair most starts converge on reads +2.2 and +4.1 %.
GRID_MIN_SUPPORT = 2
GRID_AGREE_MM = 1.0
GRID_AGREE_RADIUS_MM = 0.3
#: With both heads missed the grids run around the first GRID_MAX_PEAKS_BOTH peaks of each side: under large lesions
#: the heads' own peaks ranked 1-6 on their side (0 first; implant draws 4200 and 4260 moved, 4500 moved, 4680),
#: behind those of other round structures.  A grid around a peak takes 2-4 s, so a field showing both hips on which no
#: head is found is refused in 15-47 s instead of 1-20 s (implant draws; real_other: a 351 mm abdomen 33 s, two
#: localizers 15 and 22 s); the left side's grids run only where the right holds a supported fit (the abdomen: 70 s
#: with both sides').
GRID_MAX_PEAKS_BOTH = 8
#: Head radius: median distance of the outer points within this distance of the outer fit.
RADIUS_INLIER_MM = 2.0
#: A head needs its outer surface (or its marrow surface, when that gives the centre) on at least
#: this fraction of the rays (empirical) ...
MIN_OUTER_FRACTION = 0.4
#: ... counting the rays in slices that resolve the surface: where the head's in-plane radius
#: changes by at most this much across the slice's thickness (thick slices smear the cap).
MAX_SURFACE_SMEAR_MM = 2.5

# --- real-anatomy normalisation and checks (set on the 15 development pelvis scans, 1.5 T T1 TSE)
#: The dark rim around the marrow (plate, and on real scans cartilage, joint and acetabular
#: plate with it) is read as the median over central-slice rays of each ray's minimum between
#: RIM_SEARCH_MM; the profile is then rescaled affinely so that marrow reads 1 and the rim
#: RIM_TARGET (the plate level the levels above were set for).  On the phantoms the rim already
#: reads ~0.05 (no change); on real T1 TSE it reads 0.3–0.45 of marrow.
RIM_SEARCH_MM = (8.0, 36.0)
RIM_TARGET = 0.05
#: ... but only a rim reading above this is rescaled: a resolved plate seen through partial volume
#: on coarse pixels reads up to ~0.15 (first phantom family at 1.5 mm pixels: 0.138-0.147), real
#: unresolved rims 0.18-0.45 (development scans); rescaling a resolved plate moves the marrow
#: surface found (head 14 % small). Empirical, set on those two: a narrow margin on both sides.
RIM_RESCALE_ABOVE = 0.165
#: Marrow inside a cortical shell: the rim must read below this fraction of the marrow.
RIM_MAX = 0.65
#: A dark rim thicker than this (mm) between the marrow surface and the rise out of it holds
#: cartilage, joint and acetabular plate as well (unresolved at 1.5 T, 0.9 mm, 5 mm slices): the
#: articular bone surface is not seen, and is placed ARTICULAR_PLATE_MM outside the marrow surface
#: (the subchondral plate of the femoral head is ~1 mm; anatomy, with partial volume the half-level
#: crossing marks the marrow surface itself).
MAX_RESOLVED_PLATE_MM = 2.6
ARTICULAR_PLATE_MM = 1.0
#: ... nor is a rim that was rescaled (above RIM_RESCALE_ABOVE) and does not read dark just outside the
#: marrow surface: a plate the image resolves reads below RESOLVED_PLATE_TROUGH_MAX on the central slices'
#: median profile within PLATE_TROUGH_REACH_MM of it (phantom family B, plate, cartilage and fluid drawn on
#: 0.9-1.2 mm pixels: 0.06-0.10), plate and cartilage averaged together read brighter (real T1 heads with and
#: without lesions: 0.09-0.65, median 0.23; 0.19-1.22 on the 52 fits this rule reached, those whose rise out
#: of the rim lay within 2.6 mm), however near the rise out of them lies: a lesion at the dome of a real head
#: made its rim read 2.5 mm wide, and the head was fitted on that rise, 1.5 mm large, +22 % of volume
#: (implant.py seed 3700 case 13 right; the trough read 0.26).  The rise out of such a rim lies beyond the
#: articular surface, so this only ever brings the surface in.
RESOLVED_PLATE_TROUGH_MAX = 0.15
PLATE_TROUGH_REACH_MM = 2.5
#: The acetabulum: above the head (rays whose superior component exceeds ACETABULUM_MIN_UP) the
#: rim is followed, within ACETABULUM_REACH_MM of the head surface, by bone marrow again (above
#: ACETABULUM_MARROW_LEVEL × marrow) on at least ACETABULUM_MIN_FRACTION of the rays (development
#: scans: 0.85-1.00 on all 30 heads, 0.12-0.35 on round structures off the femur, 0.47 on midline
#: soft tissue of a prostate VIBE; first phantom family 0.63-0.97 (0.63: SNR 10 with a 25 % bias
#: field), second 1.00).
ACETABULUM_MIN_UP = 0.7
ACETABULUM_REACH_MM = (1.5, 14.0)
ACETABULUM_MARROW_LEVEL = 0.5
ACETABULUM_MIN_FRACTION = 0.6

# --- 3. neck axis
#: Directions probed (a Fibonacci sphere) and samples along each, from NECK_START_BEYOND_MM beyond
#: the head surface out to max(NECK_END_FRACTION · R, R + NECK_END_BEYOND_MM): past the
#: acetabulum, along the proximal neck (empirical).
NECK_DIRECTIONS = 600
NECK_SAMPLES = 12
NECK_START_BEYOND_MM = 7.0
NECK_END_FRACTION = 1.7
NECK_END_BEYOND_MM = 12.0
#: A sample is neck marrow above this level (× fat) ...
NECK_BRIGHT_LEVEL = 0.6
#: ... and a direction is neck-like when more than this fraction of its samples are.
NECK_MIN_BRIGHT_FRACTION = 0.5
#: A femoral neck is marrow all along: the axis found must be bright on at least this fraction of
#: its samples (development scans 0.97-1.00, both phantom families 1.00; a bladder's outlet on a
#: T2 prostate scan 0.53).
NECK_ACCEPT_FRACTION = 0.75
#: The neck runs inferiorly: only directions whose superior (+z) component is below this count; and
#: more laterally than front to back (anteversion below 45°; development scans: lateral 0.6-0.9,
#: posterior 0.15-0.57; the ischium, medial and posterior, drew a one-hip crop's axis otherwise).
NECK_MAX_SUPERIOR_COMPONENT = -0.2
#: ... and laterally (the neck-shaft angle is ~125-135°): when the side is known from the head's
#: position, only directions whose lateral component exceeds this count; bright bone leaving the
#: head medially is the pelvis (ischium, pubis), not a neck.
NECK_MIN_LATERAL_COMPONENT = 0.2
#: ... but never steeply: the neck leaves the head at least NECK_MIN_FROM_INFERIOR_DEG from straight down.
#: The shaft runs about 7° off vertical and the adult neck–shaft angle is about 128° (coxa valga from
#: about 140°), so a neck runs about 45° from straight down, 33° at 140° (phantom family B reads 180° − the
#: angle − 7° exactly: 23° at 150°, 15° at 160°).  The 30 development heads read 46–75°.  The greater
#: trochanter, taken for a head where a large lesion hid the head itself, has only the shaft below it:
#: 16° (lesions of LF 30–50 % written into real heads, implant.py seed 2000 case 6 right and case 14 left).
NECK_MIN_FROM_INFERIOR_DEG = 20.0
#: Where it leaves the head (from NECK_THROUGH_MM[0] inside to NECK_THROUGH_MM[1] outside the
#: surface) a neck direction never falls below NECK_NO_RIM_LEVEL × marrow: no cortical rim there
#: (real scans: the rim reads 0.3–0.45 of marrow; fat or muscle beyond a rim is not a neck).  Only
#: 2 mm inside: a necrotic lesion may reach the head–neck cut and is dark up to it.
NECK_THROUGH_MM = (2.0, 6.0)
NECK_NO_RIM_LEVEL = 0.5
#: Brightness along the axis is averaged over directions within this angle of it.
NECK_CONE_DEG = 15.0
#: The neck's opening (bright directions with no rim) is gathered within this angle of its centre,
#: found in this many mean-shift rounds.  A real neck's opening spans about 25 deg about its axis
#: (development scans).
NECK_OPENING_DEG = 40.0
NECK_OPENING_ROUNDS = 5
#: Side from the neck when no midline or side is known: the side whose neck is brighter along its axis, unless
#: the two read within NECK_SIDE_TIE of each other; then the side whose neck opening is bright over more of
#: the directions within NECK_SIDE_OPENING_DEG of its axis.  The fat of the acetabular fossa can read as bright
#: as a neck along a narrow channel medially (a real left head in a one-hip field of a follow-up copy: 1.00
#: either way, returned as a right head); within 25 deg the true neck read 0.11-0.57 brighter on all 77 heads
#: measured (the development scans, and one-hip fields cut from them and from follow-up copies of them).
NECK_SIDE_TIE = 0.05
NECK_SIDE_OPENING_DEG = 25.0
#: Neck radius: in planes perpendicular to the axis at NECK_RADIUS_AT × R from the centre (beyond
#: the cut, inside the ball: there the cross-section is the neck's), NECK_RADIUS_RAYS rays from the
#: axis find where marrow falls below INNER_LEVEL (the marrow surface, searched between
#: NECK_RADIUS_SEARCH × R); the bone surface is NECK_CORTEX_MM outside it; the
#: median over rays and planes, if found on at least half of the rays (empirical).
NECK_RADIUS_AT = (0.8, 0.9, 1.0)
NECK_RADIUS_RAYS = 36
NECK_RADIUS_SEARCH = (0.35, 1.0)
#: The axis is re-aimed through the centres of the neck's cross-sections up to NECK_AIM_ROUNDS
#: times, by at most NECK_MAX_REAIM_DEG each round.
NECK_AIM_ROUNDS = 3
NECK_MAX_REAIM_DEG = 25.0
#: Cortex of the neck outside its marrow surface (anatomy: 1-3 mm, thickest inferiorly; the two
#: phantom families use 2 and 1.2 mm).
NECK_CORTEX_MM = 1.5


class NoFemoralHeadError(InputError):
    """No femoral head was found in the image (wrong body part, or the hip is outside the view)."""


@dataclass
class HeadFit:
    """A fitted femoral head, physical LPS millimetres.

    ``radius_mm`` is the outer head surface (sphere-equivalent head), ``inner_radius_mm`` the
    marrow surface under the subchondral plate, ``neck_axis`` the unit vector from the centre
    into the neck, ``junction_mm`` the distance of the head–neck cut plane from the centre.
    ``marrow_level`` is the fat/marrow signal near the head (image units).

    Example
    -------
    >>> f = HeadFit(np.zeros(3), 23.0, 21.0, np.array([-0.7, 0.1, -0.7]), 12.65, "right", 1.0)
    >>> round(f.sphere_volume_ml, 2)
    50.97
    """

    centre_mm: np.ndarray
    radius_mm: float
    inner_radius_mm: float
    neck_axis: np.ndarray
    junction_mm: float
    side: str
    marrow_level: float
    quality: dict = field(default_factory=dict)

    @property
    def sphere_volume_ml(self) -> float:
        """Volume of the sphere-equivalent head (mL)."""
        return 4.0 / 3.0 * math.pi * self.radius_mm**3 / 1000.0


# ----------------------------------------------------------------------------- intensity level
def fat_level(values: np.ndarray) -> float:
    """Fat/marrow signal of an image: median of the upper class of a three-class Otsu split.

    An upper class of less than FAT_MIN_CLASS_FRACTION of the voxels (a bright sliver of fat by the
    coil) is left out and the rest split again.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> v = np.r_[rng.normal(0, 2, 5000), rng.normal(35, 2, 3000), rng.normal(100, 2, 2000)]
    >>> round(fat_level(v))
    100
    >>> round(fat_level(np.r_[v, rng.normal(400, 5, 50)]))      # 0.5 % of the voxels at 4x the fat
    100
    """
    from skimage.filters import threshold_multiotsu

    v = np.asarray(values, np.float32).ravel()
    v = v[np.isfinite(v)]
    if v.size > FAT_MAX_SAMPLES:
        v = v[:: v.size // FAT_MAX_SAMPLES]
    if v.size == 0 or float(v.max()) <= float(v.min()):
        raise NoFemoralHeadError("the image is constant: no femoral head can be found")
    n = v.size
    for _ in range(FAT_SPLIT_ROUNDS):
        upper = v > threshold_multiotsu(v, classes=FAT_OTSU_CLASSES)[-1]
        if upper.sum() >= FAT_MIN_CLASS_FRACTION * n or np.unique(v[~upper]).size < FAT_OTSU_CLASSES:
            break
        v = v[~upper]
    return float(np.median(v[upper]))


# ----------------------------------------------------------------------------- candidates
def _binned(image: sitk.Image) -> sitk.Image:
    """The image averaged to about 2 mm per voxel, then resampled to exactly 2 mm (own frame)."""
    spacing = np.asarray(image.GetSpacing())
    factors = [max(1, int(round(VOTE_STEP_MM / s))) for s in spacing]
    img = sitk.Cast(image, sitk.sitkFloat32)
    if any(f > 1 for f in factors):
        img = sitk.BinShrink(img, factors)
    size = np.asarray(img.GetSize()) * np.asarray(img.GetSpacing()) / VOTE_STEP_MM
    ref = sitk.Image([max(2, int(math.ceil(s))) for s in size], sitk.sitkFloat32)
    ref.SetSpacing([VOTE_STEP_MM] * 3)
    ref.SetDirection(img.GetDirection())
    # keep the first voxel's outer corner where it was
    half = 0.5 * (np.asarray(img.GetSpacing()) - VOTE_STEP_MM)
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    ref.SetOrigin(tuple(np.asarray(img.GetOrigin()) - d @ half))
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, 0.0)


def fat_field(a: np.ndarray, fat: float, spacing_mm: float) -> np.ndarray:
    """A smooth map of the fat/marrow signal over an image array (receive-coil shading), image units.

    The mean of the voxels reading above FAT_FIELD_CLASS × the current field within about
    FAT_FIELD_SIGMA_MM (normalised convolution on a FAT_FIELD_STEP_MM grid; where there is no fat
    near, ``fat``, the image's fat level), scaled so that the image divided by it has its fat level
    (:func:`fat_level`) at 1.  ``spacing_mm`` is the array's (isotropic) voxel size.

    Example
    -------
    >>> x = np.linspace(0.7, 1.3, 60)[None, None, :] * np.ones((20, 60, 60))
    >>> img = 100 * x * (np.indices((20, 60, 60))[2] % 4 == 0) + 30 * x    # fat stripes on muscle
    >>> f = fat_field(img, 130.0, 2.0)
    >>> bool(f[10, 30, 50] / f[10, 30, 10] > 1.3)
    True
    """
    f = max(1, int(round(FAT_FIELD_STEP_MM / spacing_mm)))
    shape = a.shape
    pad = [(0, (-n) % f) for n in shape]
    small_shape = tuple((n + p[1]) // f for n, p in zip(shape, pad))

    def block_sum(x):
        return np.pad(x, pad).reshape(small_shape[0], f, small_shape[1], f, small_shape[2], f).sum(axis=(1, 3, 5))

    def up(x):
        z = ndimage.zoom(x, [(n + p[1]) / m for n, p, m in zip(shape, pad, small_shape)], order=1, mode="nearest")
        return z[: shape[0], : shape[1], : shape[2]]

    sigma = FAT_FIELD_SIGMA_MM / FAT_FIELD_STEP_MM
    field = np.full(shape, fat, np.float32)
    for _ in range(FAT_FIELD_ROUNDS):
        m = (a > FAT_FIELD_CLASS * field).astype(np.float32)
        if not m.any():
            return np.full(shape, fat, np.float32)
        w = ndimage.gaussian_filter(block_sum(m), sigma, mode="nearest")
        v = ndimage.gaussian_filter(block_sum(a * m), sigma, mode="nearest")
        prior = 1e-3 * float(w.max())
        field = up((v + prior * fat) / (w + prior)).astype(np.float32)
    field = np.clip(field, FAT_FIELD_LIMITS[0] * fat, FAT_FIELD_LIMITS[1] * fat)
    return field * np.float32(fat_level(a / field))     # the image divided by it has its fat level at 1


def _coarse_and_field(image: sitk.Image, fat: float) -> tuple[np.ndarray, np.ndarray, Grid]:
    """The image on the 2 mm vote grid, its fat field (:func:`fat_field`) there, and the grid."""
    coarse = _binned(image)
    a = sitk.GetArrayFromImage(coarse)
    return a, fat_field(a, fat, VOTE_STEP_MM), Grid.of(coarse)


def _vote_map(image: sitk.Image, fat: float) -> tuple[np.ndarray, Grid, np.ndarray]:
    """Smoothed sphere-centre vote map on a 2 mm grid, that grid, and the image's fat field on it.

    The edges are those of the image divided by its fat field.
    """
    a, field, grid = _coarse_and_field(image, fat)
    a = a / field
    a = ndimage.gaussian_filter(a, VOTE_IMAGE_SIGMA_VOXELS)
    grads = np.gradient(a, VOTE_STEP_MM)
    g = np.sqrt(sum(x * x for x in grads))
    edge = g > VOTE_EDGE_MIN
    if not edge.any():
        return np.zeros(a.shape, np.float32), grid, field
    z, y, x = np.nonzero(edge)
    w = np.minimum(g[edge], VOTE_WEIGHT_MAX)
    u = np.stack([gr[edge] for gr in grads], -1) / g[edge][:, None]   # (z, y, x) unit, to the bright side
    pos = np.stack([z, y, x], -1).astype(np.float32)
    shape = np.asarray(a.shape)
    acc = np.zeros(a.size, np.float32)
    # concentric surfaces of the hip (marrow/plate, plate/joint, acetabular cortices) have edges
    # facing both ways, so each edge votes on both sides (a fully necrotic head is dark inside)
    for r in np.arange(VOTE_RADII_MM[0], VOTE_RADII_MM[1] + 1e-6, VOTE_STEP_MM):
        for sign in (1.0, -1.0):
            q = np.rint(pos + sign * u * (r / VOTE_STEP_MM)).astype(np.int64)
            ok = np.all((q >= 0) & (q < shape), axis=1)
            flat = np.ravel_multi_index(q[ok].T, a.shape)
            acc += np.bincount(flat, weights=w[ok], minlength=a.size).astype(np.float32)
    return ndimage.gaussian_filter(acc.reshape(a.shape), VOTE_MAP_SIGMA_VOXELS), grid, field


def _field_at(field: np.ndarray, grid: Grid, point_mm: np.ndarray) -> float:
    """The fat field (a (z, y, x) array on ``grid``) at the voxel nearest a physical point (clamped)."""
    i = np.clip(np.rint(grid.to_index(np.asarray(point_mm, float)[None])[0][::-1]).astype(int), 0,
                np.asarray(field.shape) - 1)
    return float(field[tuple(i)])


def _fat_near(image: sitk.Image, point_mm: np.ndarray) -> float:
    """The image's fat field (:func:`fat_field`) at ``point_mm`` (image units)."""
    _, field, grid = _coarse_and_field(image, fat_level(sitk.GetArrayViewFromImage(image)))
    return _field_at(field, grid, point_mm)


def _candidates(image: sitk.Image, fat: float, seed_mm=None,
                n: int = N_CANDIDATES) -> list[tuple[np.ndarray, float]]:
    """Physical points where edges vote most for a sphere centre (best first), each with the fat level there."""
    from skimage.feature import peak_local_max

    acc, grid, field = _vote_map(image, fat)
    shape = np.asarray(acc.shape)
    if seed_mm is not None:
        idx = grid.to_index(np.asarray(seed_mm, float)[None])[0][::-1]
        zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
        far = ((zz - idx[0]) ** 2 + (yy - idx[1]) ** 2 + (xx - idx[2]) ** 2) > (SEED_SEARCH_RADIUS_MM / VOTE_STEP_MM) ** 2
        acc[far] = 0
    peaks = peak_local_max(acc, min_distance=int(CANDIDATE_MIN_SEPARATION_MM / VOTE_STEP_MM), num_peaks=n,
                           threshold_rel=CANDIDATE_MIN_REL_VOTE, exclude_border=False)
    return [(grid.to_physical(p[::-1][None].astype(float))[0], float(field[tuple(p)])) for p in peaks]


# ----------------------------------------------------------------------------- ray profiles
class _Rays:
    """In-plane ray profiles of a region of interest, from the foot of a centre in each slice."""

    def __init__(self, image: sitk.Image, centre_mm: np.ndarray, half_mm: float, fat: float, reach_mm: float = 0.0):
        """Rays ``half_mm`` long from centres up to ``reach_mm`` from ``centre_mm``; image values over ``fat``."""
        grid = Grid.of(image)
        box = grid.box_around(centre_mm, half_mm + reach_mm)
        if box is None:
            raise NoFemoralHeadError("the candidate head lies outside the image")
        self.lo, self.hi = box
        sl = tuple(slice(a, b) for a, b in zip(self.lo[::-1], self.hi[::-1]))
        roi = sitk.GetArrayViewFromImage(image)[sl].astype(np.float32) / np.float32(fat)
        sigma = [max(0.0, RAY_SMOOTH_SIGMA_MM / s) if s < FINE_SPACING_MM else 0.0 for s in grid.spacing_mm[::-1]]
        self.array = ndimage.gaussian_filter(roi, sigma) if any(sigma) else roi
        self.grid = grid
        self.angles = np.linspace(0, 2 * np.pi, RAY_ANGLES, endpoint=False)
        self.rho = np.arange(0.0, half_mm, RAY_STEP_MM)

    def slices(self, centre_mm: np.ndarray, max_h_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Signed offsets h (mm) from ``centre_mm`` and indices of the slices within ``max_h_mm`` of it."""
        c = self.grid.to_index(centre_mm[None])[0]
        ks = np.arange(self.lo[2], self.hi[2])
        h = (ks - c[2]) * self.grid.spacing_mm[2]
        return h[np.abs(h) <= max_h_mm], ks[np.abs(h) <= max_h_mm]

    def profiles(self, centre_mm: np.ndarray, max_h_mm: float):
        """Profiles (n_slices, n_angles, n_rho), signed slice offsets h (mm) and slice indices."""
        h, ks = self.slices(centre_mm, max_h_mm)
        return self.sample(centre_mm, ks, np.zeros(len(ks), int), len(self.rho)), h, ks

    def sample(self, centre_mm: np.ndarray, ks: np.ndarray, first: np.ndarray, n_samples: int) -> np.ndarray:
        """Profiles (len(ks), n_angles, n_samples) of slices ``ks``, each starting at ray sample ``first`` (one per
        slice; sample i lies i × RAY_STEP_MM from the centre's foot); nan off the image."""
        g = self.grid
        c = g.to_index(centre_mm[None])[0]
        rho = (first[:, None] + np.arange(n_samples)[None]) * RAY_STEP_MM
        ci = c[0] + np.cos(self.angles)[None, :, None] * rho[:, None, :] / g.spacing_mm[0]
        cj = c[1] + np.sin(self.angles)[None, :, None] * rho[:, None, :] / g.spacing_mm[1]
        coords = np.empty((3,) + ci.shape, np.float32)
        coords[0] = (ks - self.lo[2])[:, None, None]
        coords[1] = cj - self.lo[1]
        coords[2] = ci - self.lo[0]
        prof = ndimage.map_coordinates(self.array, coords.reshape(3, -1), order=1, mode="nearest")
        inside = ((coords[1] >= 0) & (coords[1] <= self.array.shape[1] - 1)
                  & (coords[2] >= 0) & (coords[2] <= self.array.shape[2] - 1))
        return np.where(inside.reshape(-1), prof, np.nan).reshape(coords.shape[1:])

    def central_profiles(self, centre_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`profiles` of the central slices (:func:`_central`): on slices thicker than twice
        CENTRAL_SLAB_MM the nearest slice may lie beyond it."""
        prof, h, ks = self.profiles(centre_mm, CENTRAL_SLAB_MM + self.grid.spacing_mm[2])
        keep = _central(h) if len(h) else slice(None)
        return prof[keep], h[keep], ks[keep]

    def points(self, centre_mm: np.ndarray, ks: np.ndarray, angle_idx: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """Physical points of in-plane ray positions."""
        g = self.grid
        c = g.to_index(centre_mm[None])[0]
        idx = np.stack([c[0] + np.cos(self.angles[angle_idx]) * rho / g.spacing_mm[0],
                        c[1] + np.sin(self.angles[angle_idx]) * rho / g.spacing_mm[1],
                        ks.astype(float)], -1)
        return g.to_physical(idx)


def _means_around(prof: np.ndarray, before_mm: float, after_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each profile over ``before_mm`` up to and including sample i, and over ``after_mm``
    beyond it, for i = 0 … m - 2 (arrays (n, m - 1))."""
    n, m = prof.shape
    nb, na = max(1, int(round(before_mm / RAY_STEP_MM))), max(1, int(round(after_mm / RAY_STEP_MM)))
    csum = np.concatenate([np.zeros((n, 1)), np.nancumsum(np.nan_to_num(prof, nan=0.0), axis=1)], axis=1)
    idx = np.arange(m - 1)
    lo_b = np.clip(idx - nb + 1, 0, m)
    hi_a = np.clip(idx + 1 + na, 0, m)
    return ((csum[:, idx + 1] - csum[:, lo_b]) / (idx + 1 - lo_b),
            (csum[:, hi_a] - csum[:, idx + 1]) / np.maximum(hi_a - idx - 1, 1))


def _in_window(m: int, expect: np.ndarray, window_mm: tuple[float, float]) -> np.ndarray:
    """Samples 0 … m - 2 of each profile within ``window_mm`` of its ``expect`` (mm)."""
    rho = np.arange(m - 1) * RAY_STEP_MM
    return (rho[None] >= expect[:, None] + window_mm[0]) & (rho[None] <= expect[:, None] + window_mm[1])


def _crossings(prof: np.ndarray, level: float, rising: bool, expect: np.ndarray, window_mm: tuple[float, float],
               before_mm: float, after_mm: float, before_test, after_test):
    """Sub-sample crossing of ``level`` on each profile nearest to ``expect`` (mm) within a window.

    Returns rho (nan where none) per profile.  ``before_test``/``after_test`` check the mean of
    the profile over ``before_mm`` inside / ``after_mm`` outside of the crossing.
    """
    n, m = prof.shape
    step = RAY_STEP_MM
    above = prof >= level
    cross = (above[:, 1:] & ~above[:, :-1]) if rising else (~above[:, 1:] & above[:, :-1])
    rho = np.arange(m - 1) * step
    mean_before, mean_after = _means_around(prof, before_mm, after_mm)
    ok = cross & _in_window(m, expect, window_mm) & before_test(mean_before) & after_test(mean_after)
    dist = np.where(ok, np.abs(rho[None] - expect[:, None]), np.inf)
    best = np.argmin(dist, axis=1)
    found = np.isfinite(dist[np.arange(n), best])
    a, b = prof[np.arange(n), best], prof[np.arange(n), best + 1]
    frac = np.clip((level - a) / np.where(b != a, b - a, 1.0), 0, 1)
    out = (best + frac) * step
    return np.where(found, out, np.nan)


def _steepest_falls(prof: np.ndarray, expect: np.ndarray, window_mm: tuple[float, float], before_mm: float,
                    after_mm: float, before_test, after_test, min_fall_per_mm: float) -> np.ndarray:
    """Sub-sample position (rho, mm) of each profile's steepest fall within ``window_mm`` of ``expect``
    (mm); nan where none.

    A fall counts where the profile is locally steepest, falls by at least ``min_fall_per_mm``, and
    ``before_test``/``after_test`` hold for its means over ``before_mm`` inside / ``after_mm`` outside
    of that sample or of one next to it (a blurred edge may fail them at its very centre).

    Example
    -------
    >>> rho = np.arange(0, 30, RAY_STEP_MM)
    >>> prof = 1.0 / (1.0 + np.exp((rho - 20.3) / 0.4))          # marrow (1) falling into a dark rim at 20.3 mm
    >>> edge = _steepest_falls(prof[None], np.array([21.0]), (-3.0, 2.5), 1.5, 1.0,
    ...                        lambda m: m > 0.7, lambda m: m < 0.6, 0.1)
    >>> round(float(edge[0]), 2)
    20.3
    """
    n, m = prof.shape
    slope = np.full((n, m - 1), np.inf, np.float64)
    slope[:, 1:-1] = (prof[:, 2:-1] - prof[:, :-3]) / (2 * RAY_STEP_MM)       # central differences
    mean_before, mean_after = _means_around(prof, before_mm, after_mm)
    passes = before_test(mean_before) & after_test(mean_after)
    passes[:, 1:] |= passes[:, :-1].copy()
    passes[:, :-1] |= passes[:, 1:].copy()
    local = np.zeros_like(passes)
    local[:, 1:-1] = (slope[:, 1:-1] <= slope[:, :-2]) & (slope[:, 1:-1] <= slope[:, 2:])
    ok = _in_window(m, expect, window_mm) & local & passes & np.isfinite(slope) & (slope < -min_fall_per_mm)
    rows = np.arange(n)
    best = np.argmin(np.where(ok, slope, np.inf), axis=1)
    found = ok[rows, best]
    best = np.clip(best, 1, m - 3)
    # parabola through the slopes at best-1, best, best+1: the sub-sample steepest point
    y0, y1, y2 = slope[rows, best - 1], slope[rows, best], slope[rows, best + 1]
    curv = y0 - 2 * y1 + y2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(np.isfinite(curv) & (curv > 0), 0.5 * (y0 - y2) / curv, 0.0)
    return np.where(found, (best + np.clip(shift, -0.5, 0.5)) * RAY_STEP_MM, np.nan)


def _fit_sphere(points: np.ndarray, trim_iter: int = SPHERE_TRIM_ROUNDS, radius_mm: float | None = None,
                start_mm: np.ndarray | None = None, min_points: int = SPHERE_MIN_POINTS,
                offsets_mm: np.ndarray | None = None):
    """Robust sphere fit: centre, radius, inlier mask; refitted ``trim_iter`` times, each time on
    the points within a MAD band of the last fit.  None when fewer than ``min_points`` remain.  With ``radius_mm``
    the radius is that, and only the centre is fitted, from ``start_mm`` (:func:`fit_sphere_centre`); with
    ``offsets_mm`` too, each point lies that much outside the sphere, whose radius is fitted from ``radius_mm``
    (:func:`fit_concentric_spheres`)."""
    p = np.asarray(points, float)
    off = np.zeros(len(p)) if offsets_mm is None else np.asarray(offsets_mm, float)
    keep = np.ones(len(p), bool)
    c, r = (p.mean(0) if start_mm is None else np.asarray(start_mm, float)), radius_mm or 0.0
    for _ in range(trim_iter + 1):
        if keep.sum() < min_points:
            return None
        if offsets_mm is not None:
            c, r = fit_concentric_spheres(p[keep], off[keep], c, r)
        else:
            c, r = fit_sphere(p[keep]) if radius_mm is None else (fit_sphere_centre(p[keep], radius_mm, c), radius_mm)
        res = np.linalg.norm(p - c, axis=1) - r - off
        mad = MAD_TO_SIGMA * np.median(np.abs(res[keep] - np.median(res[keep])))
        keep = np.abs(res) < max(SPHERE_TRIM_SIGMAS * mad, SPHERE_TRIM_MIN_MM)
    return c, r, keep


def _outer_level(prof: np.ndarray, R: float) -> float:
    """Outer-surface level: OUTER_LEVEL_FRACTION of the way from the plate (the trough of the median
    profile within PLATE_TROUGH_SEARCH_MM inside R) to the joint space/muscle (just outside R), kept
    within OUTER_LEVEL_LIMITS (OUTER_LEVEL if unreadable)."""
    rho = np.arange(prof.shape[-1]) * RAY_STEP_MM
    flat = prof.reshape(-1, prof.shape[-1])
    with warnings.catch_warnings():     # rays leaving the image are all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        inside = flat[:, (rho > R - PLATE_TROUGH_SEARCH_MM) & (rho <= R)]
        plate = np.nanmin(np.nanmedian(inside, axis=0)) if inside.size else np.nan   # R beyond the rays: unreadable
        near, far = OUTER_LEVEL_SAMPLE_MM
        joint = np.nanmedian(flat[:, (rho > R + near) & (rho < R + far)])
    level = plate + OUTER_LEVEL_FRACTION * (joint - plate)
    return float(np.clip(level, *OUTER_LEVEL_LIMITS)) if np.isfinite(level) else OUTER_LEVEL


def _rim_level(prof: np.ndarray) -> float | None:
    """Level of the dark rim around the marrow (× local marrow): the median over the central
    slices' rays of each ray's minimum within RIM_SEARCH_MM (None if no ray reaches it)."""
    rho = np.arange(prof.shape[-1]) * RAY_STEP_MM
    sel = (rho >= RIM_SEARCH_MM[0]) & (rho <= RIM_SEARCH_MM[1])
    flat = prof.reshape(-1, prof.shape[-1])[:, sel]
    flat = ndimage.uniform_filter1d(np.nan_to_num(flat, nan=np.inf), PROFILE_SMOOTH_SAMPLES, axis=1)
    m = flat.min(axis=1)
    m = m[np.isfinite(m)]
    return float(np.median(m)) if m.size else None


def _central(h: np.ndarray) -> np.ndarray:
    """Slices within CENTRAL_SLAB_MM of the centre, given their signed offsets h (mm); the nearest
    slice(s) if none is that close."""
    return np.abs(h) <= max(CENTRAL_SLAB_MM, np.min(np.abs(h)) + 1e-6)


@dataclass
class _Edges:
    """Surface points found on the rays (physical mm), whether each lies in a slice that resolves the
    surface, and the number of rays in such slices."""

    outer: np.ndarray
    inner: np.ndarray
    outer_resolved: np.ndarray
    inner_resolved: np.ndarray
    n_resolved: int
    inner_up: np.ndarray      # per inner point: its ray runs to the dome (superior component > ACETABULUM_MIN_UP)
    n_up_resolved: int        # rays to the dome in slices that resolve the surface


def _edges(rays: _Rays, centre: np.ndarray, R: float, r_in: float | None,
           inner_window_mm: tuple[float, float] = INNER_WINDOW_MM) -> _Edges:
    """Outer and inner surface points seen from ``centre`` for a head of radius R, the inner (marrow) surface looked
    for within ``inner_window_mm`` of ``r_in``."""
    max_h = MAX_SLICE_HEIGHT_FRACTION * R
    h, ks = rays.slices(centre, max_h)
    if not len(h):      # the fit moved off the slices (a candidate at a thin field's front or back)
        raise NoFemoralHeadError("the candidate head lies outside the image's slices")
    central = _central(h)
    level = _outer_level(rays.sample(centre, ks[central], np.zeros(int(central.sum()), int), len(rays.rho)), R)
    ri = r_in if r_in is not None else R - DEFAULT_PLATE_MM
    exp_out_h = np.sqrt(np.maximum(R * R - h * h, MIN_EXPECTED_RHO_MM**2))
    exp_in_h = np.sqrt(np.maximum(ri * ri - h * h, MIN_EXPECTED_RHO_MM**2))
    # each slice's rays are sampled only where the two surfaces are looked for (windows and the means beside them)
    near = np.minimum(exp_out_h + OUTER_WINDOW_MM[0] - OUTER_BEFORE_MM, exp_in_h + inner_window_mm[0] - INNER_BEFORE_MM)
    far = np.maximum(exp_out_h + OUTER_WINDOW_MM[1] + OUTER_AFTER_MM, exp_in_h + inner_window_mm[1] + INNER_AFTER_MM)
    end = len(rays.rho)         # samples from here on lie beyond the rays' length: nan, none found there
    first = np.clip(np.floor((near - BAND_MARGIN_MM) / RAY_STEP_MM).astype(int), 0, end - MIN_BAND_SAMPLES)
    last = np.minimum(np.ceil((far + BAND_MARGIN_MM) / RAY_STEP_MM).astype(int), end - 1)
    n = max(int((last - first).max()) + 1, MIN_BAND_SAMPLES)
    prof = rays.sample(centre, ks, first, n)
    prof = np.where(first[:, None, None] + np.arange(n)[None, None] < end, prof, np.nan)
    n_s, n_a, _ = prof.shape
    flat = prof.reshape(n_s * n_a, -1)
    hh = np.repeat(h, n_a)
    kk = np.repeat(ks, n_a)
    aa = np.tile(np.arange(n_a), n_s)
    start = np.repeat(first * RAY_STEP_MM, n_a)          # rho (mm) of each ray's first sample
    exp_out = np.repeat(exp_out_h, n_a)
    rho_out = start + _crossings(flat, level, True, exp_out - start, OUTER_WINDOW_MM, OUTER_BEFORE_MM, OUTER_AFTER_MM,
                                 lambda m: m < level, lambda m: m > level + OUTER_RISE_MARGIN)
    exp_in = np.repeat(exp_in_h, n_a)
    rho_in = start + _steepest_falls(flat, exp_in - start, inner_window_mm, INNER_BEFORE_MM, INNER_AFTER_MM,
                                     lambda m: m > INNER_MARROW_MIN, lambda m: m < INNER_RIM_MAX, INNER_MIN_FALL_PER_MM)
    out_ok, in_ok = np.isfinite(rho_out), np.isfinite(rho_in)
    p_out = rays.points(centre, kk[out_ok], aa[out_ok], rho_out[out_ok])
    p_in = rays.points(centre, kk[in_ok], aa[in_ok], rho_in[in_ok])
    # a slice shows the surface where it crosses it steeply enough: within the slice's thickness the
    # sphere's in-plane radius changes by about thickness × |h| / rho (mm)
    resolved = rays.grid.spacing_mm[2] * np.abs(hh) / exp_out <= MAX_SURFACE_SMEAR_MM
    up = _up(rays.points(centre, kk, aa, exp_in) - centre) > ACETABULUM_MIN_UP
    return _Edges(p_out, p_in, resolved[out_ok], resolved[in_ok], int(resolved.sum()), up[in_ok],
                  int((up & resolved).sum()))


def _dome_marrow_fraction(e: _Edges, centre: np.ndarray, r_in: float) -> float:
    """Fraction of the rays to the dome (in slices that resolve the surface) on which the marrow surface
    was found within RADIUS_INLIER_MM of the fitted one (centre, r_in); nan when no such ray.  A large
    lesion at the dome hides the marrow surface there (``DOME_MARROW_MIN``)."""
    if not e.n_up_resolved:
        return float("nan")
    on_sphere = np.abs(np.linalg.norm(e.inner - centre, axis=1) - r_in) < RADIUS_INLIER_MM
    return int((e.inner_up & e.inner_resolved & on_sphere).sum()) / e.n_up_resolved


def head_size_doubt(dome_marrow_fraction: float | None, radius_minus_other_side_mm: float | None,
                    radius_mm: float | None = None, refit_radius_shift_mm: float | None = None,
                    refit_failed_starts: int | None = None, outer_fraction: float | None = None,
                    radius_from_other_side: bool | None = None, fitted_to_roof: bool | None = None,
                    found_from_grid: bool | None = None) -> str | None:
    """Why a fitted head's size is doubtful ("" when nothing says so; None when no figure is known).

    Its marrow surface is hidden under the dome (``dome_marrow_fraction`` below ``DOME_MARROW_MIN``), its
    radius differs from that of the other head found on the same scan by more than ``HEAD_PAIR_RADIUS_MAX_MM``
    (``HeadFit.quality["radius_minus_other_side_mm"]``, mm), its fitted radius (``radius_mm``) lies outside
    ``HEAD_RADIUS_PLAUSIBLE_MM``, an adult head's, or the fit depends on where it starts: fitted again from
    ``REFIT_STARTS_MM`` around its centre, the median radius moves by more than ``REFIT_RADIUS_SHIFT_MAX_MM``
    (``refit_radius_shift_mm``), or more than ``REFIT_MAX_FAILED_STARTS`` of them find no head
    (``refit_failed_starts``; :func:`refit_head`), or its bone surface was found on fewer than
    ``OUTER_SURFACE_DOUBT_BELOW`` of the rays (``outer_fraction``).  With ``radius_from_other_side`` the reasons
    are those of the head's own fit, and the radius is then the other head's (:func:`fit_at_radius_of`); with
    ``fitted_to_roof`` the head was fitted to the acetabular roof (:func:`fit_to_roof`), and with ``found_from_grid``
    it was found only from a grid of starts (:func:`_missed_head_from_grid`); both are always said.

    Example
    -------
    >>> head_size_doubt(0.8, -0.3, 22.0), head_size_doubt(None, None)
    ('', None)
    >>> print(head_size_doubt(0.8, -2.14))
    the head's radius is 2.1 mm smaller than the other head's on the same scan (a person's two differ by less than 1 mm)
    >>> print(head_size_doubt(0.6, None, 15.1))
    the head's fitted radius, 15.1 mm, lies outside an adult femoral head's (18-28 mm: 38-54 mm across, with 1 mm of fit error)
    >>> print(head_size_doubt(0.6, None, 22.0, 1.54, 2))
    fitted again from 4 starts 3 mm around its centre, the head's radius moves by +1.5 mm (median), and 2 of them find no head
    >>> head_size_doubt(0.6, None, 22.0, 0.05, 1)           # one failed start alone says nothing of the size
    ''
    >>> print(head_size_doubt(0.65, -0.6, 19.3, 0.05, 0, 0.22))
    the head's bone surface was found on 22 % of the rays (normal heads: 33 % or more): the sphere may rest on the marrow surface alone, or on a large lesion's band
    """
    known = [x for x in (dome_marrow_fraction, radius_minus_other_side_mm, radius_mm, refit_radius_shift_mm,
                         refit_failed_starts, outer_fraction) if x is not None and not math.isnan(x)]
    if not known and not fitted_to_roof and not found_from_grid:
        return None
    reasons = []
    lo_mm, hi_mm = HEAD_RADIUS_PLAUSIBLE_MM
    if radius_mm is not None and not lo_mm <= radius_mm <= hi_mm:
        reasons.append(f"the head's fitted radius, {radius_mm:.1f} mm, lies outside an adult femoral head's "
                       f"({lo_mm:g}-{hi_mm:g} mm: 38-54 mm across, with 1 mm of fit error)")
    if dome_marrow_fraction is not None and dome_marrow_fraction < DOME_MARROW_MIN:
        reasons.append(f"the marrow surface under the dome was found on {dome_marrow_fraction:.2f} of the rays to it "
                       "(a lesion there hides it)")
    if radius_minus_other_side_mm is not None and abs(radius_minus_other_side_mm) > HEAD_PAIR_RADIUS_MAX_MM:
        reasons.append(f"the head's radius is {abs(radius_minus_other_side_mm):.1f} mm "
                       f"{'larger' if radius_minus_other_side_mm > 0 else 'smaller'} than the other head's on the "
                       f"same scan (a person's two differ by less than {HEAD_PAIR_RADIUS_MAX_MM:g} mm)")
    refit = []
    if refit_radius_shift_mm is not None and abs(refit_radius_shift_mm) > REFIT_RADIUS_SHIFT_MAX_MM:
        refit.append(f"the head's radius moves by {refit_radius_shift_mm:+.1f} mm (median)")
    if refit_failed_starts is not None and refit_failed_starts > REFIT_MAX_FAILED_STARTS:
        refit.append(f"{refit_failed_starts} of them find{'s' if refit_failed_starts == 1 else ''} no head")
    if refit:
        reasons.append(f"fitted again from {len(REFIT_STARTS_MM)} starts {REFIT_OFFSET_MM:g} mm around its centre, "
                       + ", and ".join(refit))
    if outer_fraction is not None and outer_fraction < OUTER_SURFACE_DOUBT_BELOW:
        reasons.append(f"the head's bone surface was found on {100 * outer_fraction:.0f} % of the rays (normal heads: "
                       "33 % or more): the sphere may rest on the marrow surface alone, or on a large lesion's band")
    if radius_from_other_side:
        reasons.append("its own fit being doubtful, the head was given the other head's radius and its centre fitted "
                       "again at it (a person's two heads differ by 0.3 mm across on average)")
    if fitted_to_roof:
        reasons.append("its own fit being doubtful or none found, the head was fitted to its marrow surface below the "
                       "dome and to the acetabular roof the other head's gap beyond it: read to about 0.5 mm in radius, "
                       "7 % in volume")
    if found_from_grid:
        reasons.append("the head was missed from the vote's peaks and found only from a grid of starts around one, "
                       f"held against the other head's radius (within {HEAD_PAIR_RADIUS_MAX_MM:g} mm): its fit depends "
                       "on where it starts")
    return "; ".join(reasons)


def _up(d: np.ndarray) -> np.ndarray:
    """Superior component of each direction (rows of ``d``, LPS mm: +z is superior) as a unit vector."""
    return d[:, 2] / np.maximum(np.linalg.norm(d, axis=1), 1e-9)


def _resolved_radius(points: np.ndarray, inliers: np.ndarray, resolved: np.ndarray, centre: np.ndarray) -> float:
    """Median distance from ``centre`` of the inlier points in slices that resolve the surface (all
    inliers when fewer than MIN_SURFACE_POINTS of them do).  Thick slices read the surface inside
    the sphere where they cut it obliquely: a real head on 6.1 mm slices, 0.2-0.5 mm at 10-16 mm
    from its centre, and its radius then read 0.5 mm small (-7 % of volume)."""
    use = inliers & resolved if int((inliers & resolved).sum()) >= MIN_SURFACE_POINTS else inliers
    return float(np.median(np.linalg.norm(points[use] - centre, axis=1)))


def _lead_inner_rim_mm(rays: _Rays, centre: np.ndarray, r_in: float, outer: np.ndarray,
                       fit_out: tuple | None) -> float:
    """Width of the dark rim (mm) where the marrow surface led the fit: the wider of the median profile's rim
    (:func:`_rim_width_mm`) and the outer points' radius beyond the marrow surface ``r_in``.  The outer points
    were found on too few rays to lead; ``fit_out`` is their sphere, None when they were too few for one."""
    seen = _outer_radius(outer, centre, fit_out) - r_in if fit_out is not None else 0.0
    return max(_rim_width_mm(rays, centre), seen)


def _outer_radius(points: np.ndarray, centre: np.ndarray, fit) -> float:
    """Head radius: median distance from ``centre`` of the outer points near the sphere ``fit``."""
    d = np.linalg.norm(points - centre, axis=1)
    good = np.abs(d - fit[1]) < RADIUS_INLIER_MM
    return float(np.median(d[good])) if good.any() else float(fit[1])


def _median_profile_radius(prof: np.ndarray, h: np.ndarray) -> tuple[float, float, float] | None:
    """Outer and inner head radius: medians over the rays of the central slices; and the outer
    radius's upper quartile over the rays.

    On each ray the plate is the first dark stretch beyond PLATE_SEARCH_START_MM (8 mm); the outer
    surface is where the profile rises out of it, the inner surface where it last was marrow-bright
    before it.  None when fewer than MIN_PROFILE_FRACTION of the rays show the rise.
    """
    rays = np.nan_to_num(prof[_central(h)].reshape(-1, prof.shape[-1]), nan=0.0)
    rays = ndimage.uniform_filter1d(rays, PROFILE_SMOOTH_SAMPLES, axis=1)
    start = int(PLATE_SEARCH_START_MM / RAY_STEP_MM)
    n = rays.shape[1]
    idx = np.arange(n)
    dark = (rays < PLATE_DARK_MAX) & (idx >= start)
    has_dark = dark.any(1)
    i0 = np.where(has_dark, np.argmax(dark, 1), n - 1)
    rise = (rays >= PLATE_DARK_MAX) & (idx[None] > i0[:, None])
    has_rise = rise.any(1) & has_dark
    if has_rise.mean() < MIN_PROFILE_FRACTION:
        return None
    outer = np.argmax(rise, 1)[has_rise] * RAY_STEP_MM
    bright = (rays >= INNER_LEVEL) & (idx[None] < i0[:, None])
    inner = (n - 1 - np.argmax(bright[:, ::-1], 1)) * RAY_STEP_MM
    ok_in = bright.any(1) & has_rise
    o = float(np.median(outer))
    i = float(np.median(inner[ok_in])) if ok_in.mean() > MIN_PROFILE_FRACTION else o - DEFAULT_PLATE_MM
    return o, i, float(np.percentile(outer, 75))


def _plate_trough(rays: _Rays, centre: np.ndarray, r_in: float) -> float:
    """The darkest level (× marrow) of the central slices' median profile within PLATE_TROUGH_REACH_MM outside
    the marrow surface's radius ``r_in`` (mm); inf when no slice or sample is there."""
    prof, h, _ = rays.central_profiles(centre)
    if not len(h):
        return float("inf")
    rho = np.arange(prof.shape[-1]) * RAY_STEP_MM
    near = prof[_central(h)][..., (rho >= r_in) & (rho <= r_in + PLATE_TROUGH_REACH_MM)]
    rays_near = near.reshape(-1, near.shape[-1])
    seen = np.isfinite(rays_near).any(axis=0)          # radii some ray reaches inside the image
    if not seen.any():
        return float("inf")
    return float(np.min(np.nanmedian(rays_near[:, seen], axis=0)))


def _rim_width_mm(rays: _Rays, centre: np.ndarray) -> float:
    """Marrow surface to the rise out of the dark rim on the median profile of the central slices (mm);
    0 when the profile shows none."""
    prof, h, _ = rays.central_profiles(centre)
    radii = _median_profile_radius(prof, h) if len(h) else None
    return 0.0 if radii is None else radii[0] - radii[1]


def neck_axis(image: sitk.Image, fat: float, centre: np.ndarray, R: float,
              side: str | None = None) -> tuple[np.ndarray | None, float]:
    """Unit vector (LPS) from the head centre into the neck, and the bright fraction along it.

    ``fat`` is the image's marrow level (:func:`fat_level`), ``centre`` (mm) and ``R`` (mm) the
    head's sphere; with ``side`` ("left"/"right") known, the neck is looked for laterally only.
    The axis is None when no bright neck leaves the head.
    """
    axis, bright_fraction, _ = _neck(image, fat, centre, R, side)
    return axis, bright_fraction


def _neck(image: sitk.Image, fat: float, centre: np.ndarray, R: float,
          side: str | None) -> tuple[np.ndarray | None, float, float]:
    """:func:`neck_axis`, and the bright fraction over the directions within NECK_SIDE_OPENING_DEG of the axis."""
    from scipy.ndimage import map_coordinates

    grid = Grid.of(image)
    n = NECK_DIRECTIONS
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)
    radii = np.linspace(R + NECK_START_BEYOND_MM, max(NECK_END_FRACTION * R, R + NECK_END_BEYOND_MM), NECK_SAMPLES)
    through = np.arange(R - NECK_THROUGH_MM[0], R + NECK_THROUGH_MM[1] + 1e-6, 1.0)
    radii = np.r_[through, radii]
    pts = centre + dirs[:, None, :] * radii[None, :, None]
    idx = grid.to_index(pts.reshape(-1, 3))
    arr = sitk.GetArrayViewFromImage(image)
    vals = map_coordinates(arr, idx[:, ::-1].T, order=1, mode="constant", cval=np.nan).reshape(n, -1) / fat
    with warnings.catch_warnings():     # rays wholly outside the image give all-NaN rows: no neck there
        warnings.simplefilter("ignore", RuntimeWarning)
        # the neck is marrow continuous with the head's: no dark rim where the ray leaves the head
        no_rim = np.nan_to_num(np.nanmin(vals[:, : len(through)], axis=1), nan=0.0) > NECK_NO_RIM_LEVEL
        vals = vals[:, len(through):]
        frac = np.nanmean(vals > NECK_BRIGHT_LEVEL, axis=1)
    frac = np.where(no_rim, np.nan_to_num(frac), 0.0)
    inferior = dirs[:, 2] < NECK_MAX_SUPERIOR_COMPONENT    # LPS +z is superior; the neck runs inferiorly
    inferior &= np.abs(dirs[:, 0]) > np.abs(dirs[:, 1])   # ... and more laterally than front to back
    if side is not None:                                   # LPS +x is patient left: lateral is -x on the right
        inferior &= dirs[:, 0] * (1.0 if side == "left" else -1.0) > NECK_MIN_LATERAL_COMPONENT
    # the neck is the brightest cone of directions: bright bone may leave the head's surroundings
    # in several places (neck, trochanter, ischium), and a mean over all of them points between them
    cone = dirs @ dirs.T > math.cos(math.radians(NECK_CONE_DEG))
    cone_frac = (cone @ frac) / cone.sum(axis=1)
    best = int(np.argmax(np.where(inferior, cone_frac, -1.0)))
    w = np.where(inferior, np.clip(frac - NECK_MIN_BRIGHT_FRACTION, 0, None), 0.0) ** 2
    if w[cone[best]].sum() <= 0:
        return None, 0.0, 0.0

    def weighted_mean(sel: np.ndarray) -> np.ndarray:
        a = (w[sel, None] * dirs[sel]).sum(0)
        return a / np.linalg.norm(a)

    # how bright the neck is: along the brightest cone
    brightest = weighted_mean(cone[best])
    bright_fraction = float(frac[dirs @ brightest > math.cos(math.radians(NECK_CONE_DEG))].mean())
    # the axis is the centre of the neck's opening: of the bright directions that may be a neck's and
    # leave the head with no dark rim, the weighted mean of those within NECK_OPENING_DEG of it (a mean
    # shift from the brightest cone, which alone lay anywhere in a neck wide open to the trochanter: on a
    # real head's moved copies it swung 30 deg towards the horizontal between grids).
    axis = brightest
    for _ in range(NECK_OPENING_ROUNDS):
        axis = weighted_mean(dirs @ axis > math.cos(math.radians(NECK_OPENING_DEG)))
    return axis, bright_fraction, float(frac[dirs @ axis > math.cos(math.radians(NECK_SIDE_OPENING_DEG))].mean())


def lateral_neck_axis(image: sitk.Image, fat: float, centre: np.ndarray, R: float,
                      side: str | None = None) -> tuple[np.ndarray | None, float]:
    """:func:`neck_axis` looked for laterally: on ``side``, or when it is None on either side, the
    brighter taken (where both are about as bright, the one with the brighter opening: NECK_SIDE_TIE).
    (Looked for in every direction, the neck of a real right head ran into the pubis, bright on 0.83 of
    its axis against the true neck's 1.00, and the head was returned as the left.)
    """
    if side is not None:
        return neck_axis(image, fat, centre, R, side)
    right, left = (_neck(image, fat, centre, R, s) for s in ("right", "left"))
    if abs(right[1] - left[1]) < NECK_SIDE_TIE:
        best = right if right[2] >= left[2] else left
    else:
        best = right if right[1] >= left[1] else left
    return best[0], best[1]


def _circle_fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares circle through 2D points (algebraic fit): centre and radius."""
    A = np.c_[2.0 * points, np.ones(len(points))]
    sol, *_ = np.linalg.lstsq(A, (points**2).sum(1), rcond=None)
    return sol[:2], float(np.sqrt(max(sol[2] + sol[:2] @ sol[:2], 0.0)))


def _neck_section(rays: _Rays, centre: np.ndarray, R: float, axis: np.ndarray) -> tuple[np.ndarray, float | None]:
    """The neck's axis and bone radius (mm) where it leaves the head; radius None when unreadable.

    In planes across the axis, the marrow surface is found on rays from the axis and a circle is
    fitted to it in each plane: the circles' centres re-aim the axis (a direction from the neck's
    opening may be 15° off the neck's own axis, and a plane across a tilted axis cuts the neck off its
    centre), and the radii are read again across the re-aimed axis.
    """
    g = rays.grid
    a = np.asarray(axis, float)
    ang = np.linspace(0, 2 * np.pi, NECK_RADIUS_RAYS, endpoint=False)
    rho = np.arange(0.0, NECK_RADIUS_SEARCH[1] * R, RAY_STEP_MM)
    start = int(NECK_RADIUS_SEARCH[0] * R / RAY_STEP_MM)
    radii: list[float] = []
    for _ in range(NECK_AIM_ROUNDS):
        e1 = np.cross(a, [0.0, 1.0, 0.0] if abs(a[1]) < 0.9 else [1.0, 0.0, 0.0])
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(a, e1)
        dirs2 = np.c_[np.cos(ang), np.sin(ang)]
        dirs = dirs2[:, :1] * e1 + dirs2[:, 1:] * e2
        radii, centres = [], []
        for f in NECK_RADIUS_AT:
            foot = centre + f * R * a
            pts = foot + dirs[:, None, :] * rho[None, :, None]
            idx = g.to_index(pts.reshape(-1, 3)) - rays.lo
            prof = ndimage.map_coordinates(rays.array, idx[:, ::-1].T, order=1, mode="constant",
                                           cval=np.nan).reshape(len(dirs), -1)
            prof = ndimage.uniform_filter1d(np.nan_to_num(prof, nan=0.0), PROFILE_SMOOTH_SAMPLES, axis=1)
            if not (prof[:, :start] >= INNER_LEVEL).any(axis=1).mean() > 0.5:
                continue
            below = (prof < INNER_LEVEL) & (np.arange(len(rho)) >= start)
            ok = below.any(axis=1) & (prof[:, start] >= INNER_LEVEL)
            if ok.mean() < 0.5:
                continue
            edge = dirs2[ok] * (np.argmax(below[ok], axis=1) * RAY_STEP_MM)[:, None]
            c2, r = _circle_fit(edge)
            radii.append(r + NECK_CORTEX_MM)
            centres.append(foot + c2[0] * e1 + c2[1] * e2)
        if len(centres) < 2:
            break
        aimed = np.mean(centres, axis=0) - centre
        aimed /= np.linalg.norm(aimed)
        if (math.degrees(math.acos(float(np.clip(aimed @ a, -1.0, 1.0)))) > NECK_MAX_REAIM_DEG
                or abs(aimed[0]) <= abs(aimed[1])):
            break               # the circles lie off this neck: keep the axis found
        a = aimed
    return a, (float(np.median(radii)) if radii else None)


def _even_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (a Fibonacci lattice), rows (x, y, z)."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)


def _acetabulum_fraction(rays: _Rays, centre: np.ndarray, R: float) -> float:
    """Fraction of the upward rays (superior component above ACETABULUM_MIN_UP) on which bone
    marrow (the acetabular roof) follows the head's dark rim within ACETABULUM_REACH_MM of its
    surface: a femoral head sits in an acetabulum; a round muscle or bowel loop does not."""
    dirs = _even_directions(400)
    up = dirs[:, 2]      # LPS +z is superior
    dirs = dirs[up > ACETABULUM_MIN_UP]
    rho = R + np.arange(ACETABULUM_REACH_MM[0], ACETABULUM_REACH_MM[1] + 1e-6, 0.5)
    pts = centre + dirs[:, None, :] * rho[None, :, None]
    idx = rays.grid.to_index(pts.reshape(-1, 3)) - rays.lo
    prof = ndimage.map_coordinates(rays.array, idx[:, ::-1].T, order=1, mode="constant",
                                   cval=np.nan).reshape(len(dirs), -1)
    ok = np.isfinite(prof).all(axis=1)
    if not ok.any():
        return 0.0
    prof = prof[ok]
    # dark first (joint, acetabular plate), then marrow
    first_dark = np.argmax(prof < ACETABULUM_MARROW_LEVEL, axis=1)
    has_dark = (prof < ACETABULUM_MARROW_LEVEL).any(axis=1)
    after = np.arange(prof.shape[1])[None] > first_dark[:, None]
    marrow = ((prof >= ACETABULUM_MARROW_LEVEL) & after).any(axis=1) & has_dark
    return float(marrow.mean())


def field_width_mm(image: sitk.Image) -> float:
    """Extent (mm) of the image's field along the patient's left-right (LPS x) axis.

    Example
    -------
    >>> field_width_mm(sitk.Image([200, 100, 10], sitk.sitkUInt8))
    200.0
    """
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    return float(np.abs(d @ (np.asarray(image.GetSize()) * np.asarray(image.GetSpacing())))[0])


def body_midline_mm(image: sitk.Image, fat: float) -> float:
    """Left-right position (LPS x, mm) of the body's midline: the median x of the voxels above
    BODY_LEVEL × ``fat`` on a 2 mm grid (the field's centre if there are none).

    Example
    -------
    >>> img = sitk.Image([100, 20, 20], sitk.sitkFloat32)
    >>> img[60:90, :, :] = 1.0          # a body in x 60-89 mm
    >>> body_midline_mm(img, 1.0)     # voxel centres 60 ... 89 mm
    74.5
    """
    coarse = _binned(image)
    body = sitk.GetArrayViewFromImage(coarse) > BODY_LEVEL * fat
    if not body.any():
        size = np.asarray(image.GetSize(), float)
        return float(Grid.of(image).to_physical(((size - 1) / 2)[None])[0][0])
    # x (LPS) of every voxel, built per axis in float32 (no index list of the whole body)
    step = np.asarray(coarse.GetDirection()).reshape(3, 3)[0] * np.asarray(coarse.GetSpacing())
    k, j, i = (np.arange(n, dtype=np.float32) for n in body.shape)
    x = (np.float32(coarse.GetOrigin()[0]) + np.float32(step[0]) * i[None, None, :]
         + np.float32(step[1]) * j[None, :, None] + np.float32(step[2]) * k[:, None, None])
    return float(np.median(x[body]))


def junction_distance_mm(R: float, neck_radius_mm: float | None) -> float:
    """Distance (mm) of the head–neck cut from the centre: where a neck of that radius leaves a ball
    of radius R, within JUNCTION_LIMITS × R.

    Example
    -------
    >>> round(junction_distance_mm(24.0, 0.72 * 24.0) / 24.0, 2)
    0.69
    """
    rn = NECK_RADIUS_FRACTION * R if neck_radius_mm is None else neck_radius_mm
    d = math.sqrt(max(R * R - rn * rn, 0.0))
    return float(np.clip(d, JUNCTION_LIMITS[0] * R, JUNCTION_LIMITS[1] * R))


def _marrow_rays(image: sitk.Image, centre: np.ndarray, fat: float | None, require_marrow: bool,
                 rays: _Rays | None = None) -> tuple[_Rays, float, float]:
    """The rays around ``centre`` rescaled so that the marrow near it reads 1 and, where the dark rim around it reads
    above RIM_RESCALE_ABOVE, the rim RIM_TARGET; with the fat level then (image units) and the rim's level before
    that rescaling.  ``fat``, ``require_marrow`` and ``rays`` as in :func:`fit_head` (``rays`` is not changed)."""
    if fat is None:
        fat = _fat_near(image, centre)
    if rays is None:
        rays = _Rays(image, centre, HEAD_RADIUS_RANGE_MM[1] + ROI_MARGIN_MM, fat)
    else:
        rays = copy.copy(rays)
        rays.array = rays.array.copy()      # rescaled below
    # local fat level: bright part of the ball around the candidate
    prof, h, _ = rays.central_profiles(centre)
    inner_vals = prof[..., : int(LOCAL_MARROW_RADIUS_MM / RAY_STEP_MM)]
    inner_vals = inner_vals[np.isfinite(inner_vals)]
    if inner_vals.size == 0:
        raise NoFemoralHeadError("the candidate head lies outside the image")
    local = float(np.percentile(inner_vals, LOCAL_MARROW_PERCENTILE))
    if require_marrow and local < MIN_MARROW_SIGNAL:
        raise NoFemoralHeadError(f"no marrow inside the round structure (it reads {local:.2f} of the fat near "
                                 "it): no femoral head, or one necrotic throughout (give a seed point in it)")
    if local > LOCAL_MARROW_MIN:      # rescale so that the local marrow reads 1 (bias field, fat vs marrow)
        rays.array /= np.float32(local)
        fat *= local
    prof, h, _ = rays.central_profiles(centre)
    rim = _rim_level(prof)
    if rim is None or rim > RIM_MAX:
        raise NoFemoralHeadError("no marrow inside a dark cortical shell (no femoral head) was found")
    if rim > RIM_RESCALE_ABOVE:  # marrow 1, rim RIM_TARGET: the levels below then hold on real scans too
        gain = np.float32((1.0 - RIM_TARGET) / (1.0 - rim))
        rays.array = (rays.array - np.float32(rim)) * gain + np.float32(RIM_TARGET)
    return rays, fat, rim


def fit_head(image: sitk.Image, candidate_mm: np.ndarray, *, fat: float | None = None,
             junction_fraction: float | None = None, side: str | None = None,
             require_marrow: bool = True, rays: _Rays | None = None) -> HeadFit:
    """Fit the femoral head around a candidate centre (physical mm); raises NoFemoralHeadError.

    The head is cut at ``junction_fraction`` × R from the centre, or where its neck leaves it
    (measured neck radius) when ``junction_fraction`` is None.  ``side`` ("left"/"right"), when
    known from where the head lies, makes the neck be looked for laterally only; otherwise the
    side is read off the neck.  ``fat`` is the fat/marrow signal near the candidate (image units);
    by default the image's fat field there (:func:`fat_field`), so coil shading does not matter.
    ``require_marrow`` refuses a candidate with no marrow signal inside (``MIN_MARROW_SIGNAL``) or whose
    marrow surface shows on too few rays (``MIN_MARROW_SURFACE_FRACTION``); a reader's seed point or head
    mask vouches for a head necrotic throughout its centre instead.  ``rays``: the image's region around the
    candidate, smoothed and over ``fat``, made once for several fits (:func:`refit_head`).

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> fit = fit_head(scan.image, scan.truth.head_centre_mm + 3.0)
    >>> float(np.linalg.norm(fit.centre_mm - scan.truth.head_centre_mm)) < 0.5
    True
    """
    centre = np.asarray(candidate_mm, float)
    rays, fat, rim = _marrow_rays(image, centre, fat, require_marrow, rays)
    prof, h, _ = rays.central_profiles(centre)
    radii = _median_profile_radius(prof, h)
    lo_mm, hi_mm = HEAD_RADIUS_RANGE_MM
    if radii is None or not (lo_mm - PROFILE_RADIUS_SLACK_MM <= radii[0] <= hi_mm + PROFILE_RADIUS_SLACK_MM):
        raise NoFemoralHeadError("no spherical bone surface (femoral head) was found in the image")
    R, r_in, R_upper = radii
    rescaled = rim > RIM_RESCALE_ABOVE
    try:
        fit = _fit_from(image, rays, centre, R, r_in, fat, side, junction_fraction, rescaled)
    except NoFemoralHeadError:
        if not (R_upper - R > LESION_SHELL_GAP_MM and R_upper <= hi_mm + PROFILE_RADIUS_SLACK_MM):
            raise
        fit = _fit_from(image, rays, centre, R_upper, R_upper - DEFAULT_PLATE_MM, fat, side, junction_fraction,
                        rescaled)
    if require_marrow and fit.quality["inner_fraction"] < MIN_MARROW_SURFACE_FRACTION:
        raise NoFemoralHeadError(f"no marrow inside the round structure's shell (its marrow surface is seen on "
                                 f"{100 * fit.quality['inner_fraction']:.0f} % of the rays)")
    return fit


def _fit_from(image: sitk.Image, rays: _Rays, centre: np.ndarray, R: float, r_in: float, fat: float,
              side: str | None, junction_fraction: float | None, rim_rescaled: bool) -> HeadFit:
    """:func:`fit_head` from a start: the centre (mm) and the outer and marrow-surface radii (mm);
    ``rim_rescaled``: the rim around the marrow read above RIM_RESCALE_ABOVE and was rescaled."""
    lo_mm, hi_mm = HEAD_RADIUS_RANGE_MM
    n_out = n_in = n_rays = 0
    use_inner = agreed = False
    for _ in range(FIT_ROUNDS):
        e = _edges(rays, centre, R, r_in)
        p_out, p_in, n_rays = e.outer, e.inner, e.n_resolved
        fit_in = _fit_sphere(p_in) if len(p_in) >= MIN_SURFACE_POINTS else None
        fit_out = _fit_sphere(p_out) if len(p_out) >= MIN_SURFACE_POINTS else None
        n_out = int((fit_out[2] & e.outer_resolved).sum()) if fit_out is not None else 0
        n_in = int((fit_in[2] & e.inner_resolved).sum()) if fit_in is not None else 0
        inner_seen = fit_in is not None and n_in >= MIN_INNER_FRACTION * n_rays
        # once they agreed, the marrow surface keeps the lead while it is seen: on real T1 the rise out of the
        # unresolved rim creeps outward round by round (a real head's copy: 5.7 mm beyond the marrow surface,
        # then 6.04 mm, and its radius was then read off that rise, +20 % of volume)
        agree = inner_seen and fit_out is not None and (agreed or abs(fit_in[1] - fit_out[1]) < MAX_INNER_OUTER_GAP_MM)
        agreed = agreed or agree
        # from a start a few mm off, the outer surface is looked for at the wrong radius and may not be
        # found, or found on other surfaces (on too few rays to be the head's), while the marrow surface
        # already gives the centre: then the marrow surface leads, and the outer surface is looked for
        # again a plate's thickness outside it
        outer_seen = agree and n_out >= MIN_OUTER_FRACTION * n_rays
        lead_inner = inner_seen and not outer_seen and n_in > n_out
        use_inner = agree or lead_inner
        if fit_out is None and not use_inner:
            raise NoFemoralHeadError("no spherical bone surface (femoral head) was found in the image")
        new_centre = fit_in[0] if use_inner else fit_out[0]
        if use_inner:
            r_in = _resolved_radius(p_in, fit_in[2], e.inner_resolved, new_centre)
            R_new = r_in + DEFAULT_PLATE_MM if lead_inner else _outer_radius(p_out, new_centre, fit_out)
        else:
            R_new = _outer_radius(p_out, new_centre, fit_out)
            r_in = R_new - DEFAULT_PLATE_MM
        moved = float(np.linalg.norm(new_centre - centre))
        centre, R = new_centre, R_new
        if moved < CONVERGED_MM and not lead_inner:
            break
    # A rim thicker than a plate holds cartilage, joint and acetabular plate too: the articular
    # bone surface lies ARTICULAR_PLATE_MM outside the marrow surface, not at the rise out of the rim.
    # Where the marrow surface led because the outer one was not seen, R is a default plate's thickness
    # outside it unless the median profile shows such a rim (a real head moved onto 5.5 mm slices read
    # 2 mm there, 1 mm on its own grid: +12 % of volume), or the outer points found on too few rays to
    # lead do (a fat-centred lesion at a real head's dome hid its rise out of the rim on all but 0.37 of
    # the rays; the median profile read 2.5 mm, the points found 3.1 mm, and the default plate put the
    # head 1 mm large, +13 % of volume: implant.py seed 19 case 13 left).
    if use_inner and (R - r_in > MAX_RESOLVED_PLATE_MM
                      or rim_rescaled and R - r_in > ARTICULAR_PLATE_MM
                      and _plate_trough(rays, centre, r_in) > RESOLVED_PLATE_TROUGH_MAX
                      or lead_inner and _lead_inner_rim_mm(rays, centre, r_in, p_out, fit_out) > MAX_RESOLVED_PLATE_MM):
        R = r_in + ARTICULAR_PLATE_MM
    elif not use_inner and (rim_mm := _rim_width_mm(rays, centre)) > MAX_RESOLVED_PLATE_MM:
        R -= rim_mm - ARTICULAR_PLATE_MM       # same, read off the median profiles from the fitted centre
        r_in = R - ARTICULAR_PLATE_MM
    quality = {"outer_fraction": n_out / max(n_rays, 1), "inner_fraction": n_in / max(n_rays, 1),
               "radius_mm": R, "plate_mm": R - r_in, "dome_marrow_fraction": _dome_marrow_fraction(e, centre, r_in)}
    if not (lo_mm <= R <= hi_mm):
        raise NoFemoralHeadError(f"the best spherical surface has radius {R:.1f} mm, outside the "
                                 f"femoral-head range {lo_mm:.0f}–{hi_mm:.0f} mm")
    # the spherical surface seen: the outer one, or the marrow surface when that one gives the centre
    # (where the rim is unresolved, the rise out of it may lie at the acetabulum on many rays)
    seen = max(quality["outer_fraction"], quality["inner_fraction"] if use_inner else 0.0)
    if seen < MIN_OUTER_FRACTION or not (PLATE_THICKNESS_MM[0] <= R - r_in <= PLATE_THICKNESS_MM[1]):
        raise NoFemoralHeadError("no femoral head: no spherical bone surface with a subchondral plate "
                                 f"(surface found on {100 * seen:.0f} % of rays)")
    return _with_anatomy(image, rays, centre, R, r_in, fat, side, junction_fraction, quality)


def _with_anatomy(image: sitk.Image, rays: _Rays, centre: np.ndarray, R: float, r_in: float, fat: float,
                  side: str | None, junction_fraction: float | None, quality: dict) -> HeadFit:
    """The head fitted at ``centre`` (outer and marrow-surface radii R and ``r_in``, mm), once its anatomy is checked:
    a neck leaves it laterally, not straight down, and it sits in an acetabulum; raises NoFemoralHeadError otherwise.
    ``quality`` gains the neck's and the acetabulum's figures; the side is read off the neck when ``side`` is None."""
    axis, neck_frac = lateral_neck_axis(image, fat, centre, R, side)
    quality["neck_bright_fraction"] = neck_frac
    if axis is None or neck_frac < NECK_ACCEPT_FRACTION:
        raise NoFemoralHeadError("no femoral head: a spherical surface was found but no femoral neck leaves it")
    quality["acetabulum_fraction"] = _acetabulum_fraction(rays, centre, R)
    if quality["acetabulum_fraction"] < ACETABULUM_MIN_FRACTION:
        raise NoFemoralHeadError("no femoral head: a round structure with a neck was found, but it sits in no "
                                 f"acetabulum (bone above it on {100 * quality['acetabulum_fraction']:.0f} % of rays)")
    if side is None:
        side = "right" if axis[0] < 0 else "left"     # the neck runs laterally; LPS +x is patient left
    axis, rn = _neck_section(rays, centre, R, axis)
    from_inferior_deg = math.degrees(math.acos(float(np.clip(-axis[2], -1.0, 1.0))))    # LPS +z is superior
    if from_inferior_deg < NECK_MIN_FROM_INFERIOR_DEG:
        raise NoFemoralHeadError(f"no femoral head: the bone leaving the round structure runs {from_inferior_deg:.0f}° "
                                 "from straight down, as the shaft below the greater trochanter does, not a neck")
    quality["neck_radius_mm"] = rn if rn is not None else float("nan")
    junction = junction_distance_mm(R, rn) if junction_fraction is None else junction_fraction * R
    return HeadFit(centre, R, r_in, axis, junction, side, fat, quality)


def refit_head(image: sitk.Image, fit: HeadFit, fat: float | None = None, require_marrow: bool = True) -> HeadFit:
    """``fit`` with ``quality["refit_radius_shift_mm"]`` and ``quality["refit_failed_starts"]`` set: the head fitted
    again from each of REFIT_STARTS_MM around its centre (same side and cut), the median of their radii minus its own
    (mm; nan when no start finds a head), and the number of starts that find none (:func:`head_size_doubt`).
    ``fat`` and ``require_marrow`` as the head was fitted with (:func:`fit_head`; by default the image's fat field at
    its centre).

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> fit = refit_head(scan.image, fit_head(scan.image, scan.truth.head_centre_mm))
    >>> abs(fit.quality["refit_radius_shift_mm"]) < 0.1, fit.quality["refit_failed_starts"]
    (True, 0)
    """
    radii = [other.radius_mm for other in _fits_around(image, fit.centre_mm, fit.side, REFIT_STARTS_MM, fat,
                                                        require_marrow)]
    fit.quality["refit_radius_shift_mm"] = float(np.median(radii)) - fit.radius_mm if radii else float("nan")
    fit.quality["refit_failed_starts"] = len(REFIT_STARTS_MM) - len(radii)
    return fit


def _found_again_nowhere(fit: HeadFit) -> bool:
    """Whether no start of :func:`refit_head` around ``fit`` finds a head: such a fit is not returned.  On 11 implant
    draws (330 heads with lesions written in, 330 without) it is so for 5 fits, all on heads with lesions: two on no
    head at all (41 and 65 mm from one), one at -64 % of the head's volume, one at +18 %, one at -5 %; never on a head
    without a lesion."""
    return fit.quality.get("refit_failed_starts") == len(REFIT_STARTS_MM)


def _fit_where_bone_is_seen(image: sitk.Image, fit: HeadFit, fat: float | None, junction_fraction: float | None,
                            require_marrow: bool) -> HeadFit:
    """``fit``, or, where its bone surface is seen on fewer than OUTER_SURFACE_DOUBT_BELOW of the rays, the largest of
    the heads fitted from RESCUE_STARTS_MM around it (same side, cut and fat level) whose bone surface is seen on at
    least that fraction, when larger than ``fit``: a sphere resting on the marrow surface alone may have been fitted
    inside a large lesion's band, which makes a head small, never large."""
    if fit.quality["outer_fraction"] >= OUTER_SURFACE_DOUBT_BELOW:
        return fit
    seen = [other for other in _fits_around(image, fit.centre_mm, fit.side, RESCUE_STARTS_MM, fat, require_marrow,
                                            junction_fraction)
            if other.quality["outer_fraction"] >= OUTER_SURFACE_DOUBT_BELOW and other.radius_mm > fit.radius_mm]
    return max(seen, key=lambda other: other.radius_mm, default=fit)


def _fits_around(image: sitk.Image, centre_mm: np.ndarray, side: str | None, offsets_mm: np.ndarray,
                 fat: float | None, require_marrow: bool, junction_fraction: float | None = None) -> list[HeadFit]:
    """The head fitted from each of ``offsets_mm`` (mm, rows) around ``centre_mm`` as a ``side`` head, at the fat
    level ``fat`` (by default the image's fat field at the centre), sharing one region of rays; the starts that find
    no head are left out."""
    if fat is None:
        fat = _fat_near(image, centre_mm)
    reach_mm = float(np.linalg.norm(offsets_mm, axis=1).max())
    rays = _Rays(image, centre_mm, HEAD_RADIUS_RANGE_MM[1] + ROI_MARGIN_MM, fat, reach_mm=reach_mm)
    fits = []
    for offset in offsets_mm:
        try:
            fits.append(fit_head(image, centre_mm + offset, fat=fat, junction_fraction=junction_fraction,
                                 side=side, require_marrow=require_marrow, rays=rays))
        except NoFemoralHeadError:
            pass
    return fits


def _centre_at_radius(rays: _Rays, start_mm: np.ndarray, R: float, r_in: float) -> tuple[np.ndarray | None, int]:
    """:func:`fit_at_radius_of` from one start: the centre (None when too few rays show the marrow surface) and the
    number of rays whose marrow surface lies within RADIUS_INLIER_MM / 2 of the sphere from it."""
    centre = np.asarray(start_mm, float)
    for _ in range(FIT_ROUNDS):
        e = _edges(rays, centre, R, r_in)
        fit = _fit_sphere(e.inner[e.inner_resolved], radius_mm=r_in, start_mm=centre, min_points=MIN_SURFACE_POINTS)
        if fit is None:
            return None, 0
        new = fit[0]
        moved = float(np.linalg.norm(new - centre))
        centre = new
        if moved < CONVERGED_MM:
            break
    e = _edges(rays, centre, R, r_in)
    res = np.linalg.norm(e.inner[e.inner_resolved] - centre, axis=1) - r_in
    return centre, int((np.abs(res) < RADIUS_INLIER_MM / 2).sum())


def own_size_doubt(fit: HeadFit) -> str:
    """:func:`head_size_doubt` from ``fit``'s own figures, without the other head's ("" when none says so)."""
    q = fit.quality
    return head_size_doubt(q.get("dome_marrow_fraction"), None, fit.radius_mm, q.get("refit_radius_shift_mm"),
                           q.get("refit_failed_starts"), q.get("outer_fraction"),
                           found_from_grid=q.get("found_from_grid")) or ""


def fit_at_radius_of(image: sitk.Image, fit: HeadFit, other: HeadFit, fat: float | None = None,
                     junction_fraction: float | None = None) -> HeadFit | None:
    """``fit`` given the radii of ``other``, the other head of the same scan, and its centre fitted again at that
    marrow-surface radius: the centre from which the marrow surface found on its rays lies on that sphere (the
    points more than a trimmed band off it left out, :func:`_fit_sphere`).  None when no dark rim reads around it,
    too few rays show it, or the centre moves more than AT_OTHER_RADIUS_MAX_MOVE_MM.
    ``quality["radius_from_other_side"]`` is True and ``quality["own_radius_mm"]`` holds ``fit``'s radius; its other
    figures are those of ``fit``'s own fit, which say why its size was doubted.

    A large lesion at the dome hides the head's marrow surface there, and the sphere through what is left, a cap,
    trades its radius against its centre; at a known radius the cap fixes the centre (a person's two femoral heads
    differ by 0.3 mm across on average).  ``fat`` and ``junction_fraction`` as in :func:`fit_head`.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> fit = fit_head(scan.image, scan.truth.head_centre_mm)
    >>> small = HeadFit(fit.centre_mm + 1.0, fit.radius_mm - 1.0, fit.inner_radius_mm - 1.0, fit.neck_axis,
    ...                 fit.junction_mm, fit.side, fit.marrow_level, dict(fit.quality))
    >>> again = fit_at_radius_of(scan.image, small, fit)
    >>> again.radius_mm == fit.radius_mm, float(np.linalg.norm(again.centre_mm - fit.centre_mm)) < 0.3
    (True, True)
    """
    try:
        rays, _, _ = _marrow_rays(image, fit.centre_mm, fat, require_marrow=False)
    except NoFemoralHeadError:      # no dark rim reads around it at this fat level: its own fit stands
        return None
    r_in = other.inner_radius_mm
    best, best_support = None, -1
    for start in fit.centre_mm + np.vstack([np.zeros(3), REFIT_STARTS_MM]):
        centre, support = _centre_at_radius(rays, start, other.radius_mm, r_in)
        if centre is not None and support > best_support and \
                np.linalg.norm(centre - fit.centre_mm) <= AT_OTHER_RADIUS_MAX_MOVE_MM:
            best, best_support = centre, support
    if best is None:
        return None
    centre = best
    R = other.radius_mm
    rn = fit.quality.get("neck_radius_mm")
    junction = junction_fraction * R if junction_fraction is not None else \
        junction_distance_mm(R, None if rn is None or math.isnan(rn) else rn)
    return HeadFit(centre, R, r_in, fit.neck_axis, junction, fit.side, fit.marrow_level,
                   dict(fit.quality, radius_mm=R, own_radius_mm=fit.radius_mm, radius_from_other_side=True))


def _roof_points(rays: _Rays, centre: np.ndarray, r_in: float, gap_mm: float) -> tuple[np.ndarray, int]:
    """Points (mm) where the acetabular roof's marrow rises out of the dark rim above a head centred at ``centre``
    whose marrow surface has radius ``r_in``, found within ROOF_WINDOW_MM of ``gap_mm`` beyond it, and the number
    of roof rays looked along.  On each ray the rise is found where the profile first reads ROOF_RISE after reading
    below ROOF_DARK, and placed where it crosses half-way from the rim's minimum to the roof's marrow (the maximum
    ROOF_MARROW_MM beyond): the same under any affine rescaling of the profile (the rim's level, which a lesion's band
    changes, sets the rescaling of :func:`_marrow_rays`)."""
    d = _even_directions(800)
    dirs = d[(d[:, 2] > ROOF_MIN_UP) & (np.abs(d[:, 1]) < ROOF_MAX_FRONT_BACK)]      # LPS: +z superior, y front-back
    n_marrow = int(round(ROOF_MARROW_MM / RAY_STEP_MM))
    rho = r_in + 0.5 + np.arange(0.0, gap_mm + ROOF_WINDOW_MM + ROOF_MARROW_MM, RAY_STEP_MM)   # from outside the surface
    idx = rays.grid.to_index((centre + dirs[:, None, :] * rho[None, :, None]).reshape(-1, 3)) - rays.lo
    prof = ndimage.map_coordinates(rays.array, idx[:, ::-1].T, order=1, mode="constant",
                                   cval=np.nan).reshape(len(dirs), -1)
    points = []
    for u, p in zip(dirs, prof):
        dark = np.flatnonzero(p < ROOF_DARK)
        if not np.isfinite(p).all() or not len(dark):
            continue
        rise = np.flatnonzero(p[dark[0]:] >= ROOF_RISE)
        if not len(rise):
            continue
        k = dark[0] + rise[0]
        level = 0.5 * (p[dark[0]:k].min() + p[k:k + n_marrow + 1].max())
        j = k - 1
        while p[j] >= level:            # back to the last sample below the half-way level (the rim's minimum is)
            j -= 1
        r = rho[j] + RAY_STEP_MM * (level - p[j]) / (p[j + 1] - p[j])
        if abs(r - r_in - gap_mm) <= ROOF_WINDOW_MM:
            points.append(centre + u * r)
    return np.array(points).reshape(-1, 3), len(dirs)


def roof_gap_mm(image: sitk.Image, fit: HeadFit, fat: float | None = None) -> float:
    """The gap (mm) between ``fit``'s marrow surface and the acetabular roof's marrow above it: the median over the roof
    rays (:func:`_roof_points`, looked for ROOF_GAP_SEARCH_MM ± ROOF_WINDOW_MM out); nan when none shows it or no
    dark rim reads around the head.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> round(roof_gap_mm(scan.image, fit_head(scan.image, scan.truth.head_centre_mm)), 1)
    5.7
    """
    try:
        rays, _, _ = _marrow_rays(image, fit.centre_mm, fat, require_marrow=False)
    except NoFemoralHeadError:
        return float("nan")
    roof, _ = _roof_points(rays, fit.centre_mm, fit.inner_radius_mm, ROOF_GAP_SEARCH_MM)
    d = np.linalg.norm(roof - fit.centre_mm, axis=1) - fit.inner_radius_mm
    return float(np.median(d)) if len(d) else float("nan")


def _below_dome(rays: _Rays, centre: np.ndarray, r_in: float, window_mm: tuple[float, float]) -> np.ndarray:
    """Marrow-surface points (mm) found within ``window_mm`` of the sphere (``centre``, ``r_in``) on the rays whose
    superior component lies below ROOF_BELOW_UP, in slices that resolve the surface."""
    e = _edges(rays, centre, r_in + ARTICULAR_PLATE_MM, r_in, window_mm)
    return e.inner[e.inner_resolved & (_up(e.inner - centre) < ROOF_BELOW_UP)]


def _centre_under_roof(rays: _Rays, start_mm: np.ndarray, r_in: float,
                       gap_mm: float) -> tuple[np.ndarray, float, int] | None:
    """Centre and marrow-surface radius (mm) of the head whose marrow surface below ROOF_BELOW_UP and acetabular roof
    ``gap_mm`` beyond it fit the points found on the rays, by rounds from ``start_mm`` and ``r_in``, and the number of
    points within RADIUS_INLIER_MM / 2 of their sphere; None when too few points show either, or fewer than
    ROOF_MIN_FRACTION of the roof rays the roof from the centre fitted.  Once converged, the marrow surface is looked
    for again within ROOF_FINE_WINDOW_MM of the sphere: a large lesion's band, inside it, then drops out."""
    centre = np.asarray(start_mm, float)
    for window in (INNER_WINDOW_MM, ROOF_FINE_WINDOW_MM):
        for _ in range(FIT_ROUNDS):
            below = _below_dome(rays, centre, r_in, window)
            roof, _ = _roof_points(rays, centre, r_in, gap_mm)
            if len(below) < MIN_SURFACE_POINTS or len(roof) < SPHERE_MIN_POINTS:
                return None
            offsets = np.r_[np.zeros(len(below)), np.full(len(roof), gap_mm)]
            fit = _fit_sphere(np.vstack([below, roof]), radius_mm=r_in, start_mm=centre, min_points=MIN_SURFACE_POINTS,
                              offsets_mm=offsets)
            if fit is None:
                return None
            moved = float(np.linalg.norm(fit[0] - centre)) + abs(fit[1] - r_in)
            centre, r_in = fit[0], fit[1]
            if moved < CONVERGED_MM:
                break
    roof, n_roof = _roof_points(rays, centre, r_in, gap_mm)
    if len(roof) < ROOF_MIN_FRACTION * n_roof:
        return None
    below = _below_dome(rays, centre, r_in, ROOF_FINE_WINDOW_MM)
    support = int((np.abs(np.linalg.norm(below - centre, axis=1) - r_in) < RADIUS_INLIER_MM / 2).sum()
                  + (np.abs(np.linalg.norm(roof - centre, axis=1) - r_in - gap_mm) < RADIUS_INLIER_MM / 2).sum())
    return centre, r_in, support


def fit_to_roof(image: sitk.Image, start_mm: np.ndarray, r_in_mm: float, plate_mm: float, gap_mm: float,
                side: str | None, fat: float | None = None, junction_fraction: float | None = None) -> HeadFit | None:
    """The head fitted to its marrow surface below the dome and to the acetabular roof ``gap_mm`` beyond it, from
    ``start_mm`` and a marrow-surface radius ``r_in_mm`` (:func:`_centre_under_roof`), its bone surface ``plate_mm``
    outside; with its anatomy checked (:func:`_with_anatomy`), or None.  ``quality["fitted_to_roof"]`` is True and
    ``quality["roof_gap_mm"]`` holds the gap used; its other figures are read from the centre fitted.

    A large lesion whose centre reads darker than marrow hides both of the head's surfaces under the dome, and the
    sphere fitted to what is left follows the lesion's band or the roof's rise; the roof, concentric with the head,
    is not touched by the lesion and holds the sphere from above.  ``fat`` and ``junction_fraction`` as in
    :func:`fit_head`.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(), seed=0)
    >>> fit = fit_to_roof(scan.image, scan.truth.head_centre_mm + 3.0, 20.0, 2.0, 5.7, "right")   # 5 mm, 1 mm off
    >>> abs(fit.radius_mm - 23.0) < 0.1, float(np.linalg.norm(fit.centre_mm - scan.truth.head_centre_mm)) < 0.2
    (True, True)
    """
    try:
        start_mm = np.asarray(start_mm, float)
        rays, fat, _ = _marrow_rays(image, start_mm, fat, require_marrow=True)
        fits = [f for start in start_mm + np.vstack([np.zeros(3), REFIT_STARTS_MM])
                if (f := _centre_under_roof(rays, start, r_in_mm, gap_mm)) is not None]
        if len(fits) < ROOF_MIN_STARTS or np.ptp([f[1] for f in fits]) > ROOF_START_SPREAD_MAX_MM:
            return None
        centre, r_in, _ = max(fits, key=lambda f: f[2])
        R = r_in + plate_mm
        if not HEAD_RADIUS_RANGE_MM[0] <= R <= HEAD_RADIUS_RANGE_MM[1]:
            return None
        e = _edges(rays, centre, R, r_in)
        out = np.abs(np.linalg.norm(e.outer - centre, axis=1) - R) < RADIUS_INLIER_MM
        inner = np.abs(np.linalg.norm(e.inner - centre, axis=1) - r_in) < RADIUS_INLIER_MM
        quality = {"outer_fraction": int((out & e.outer_resolved).sum()) / max(e.n_resolved, 1),
                   "inner_fraction": int((inner & e.inner_resolved).sum()) / max(e.n_resolved, 1),
                   "radius_mm": R, "plate_mm": plate_mm, "dome_marrow_fraction": _dome_marrow_fraction(e, centre, r_in),
                   "fitted_to_roof": True, "roof_gap_mm": gap_mm}
        return _with_anatomy(image, rays, centre, R, r_in, fat, side, junction_fraction, quality)
    except NoFemoralHeadError:
        return None


def fit_size_doubt(fit: HeadFit) -> str | None:
    """:func:`head_size_doubt` from the figures of ``fit`` itself (its quality, its radius).

    Example
    -------
    >>> fit = HeadFit(np.zeros(3), 22.0, 21.0, np.array([-0.7, 0.1, -0.7]), 15.0, "right", 1.0,
    ...               {"dome_marrow_fraction": 0.9, "refit_radius_shift_mm": 0.05, "refit_failed_starts": 2})
    >>> print(fit_size_doubt(fit))
    fitted again from 4 starts 3 mm around its centre, 2 of them find no head
    """
    q = fit.quality
    return head_size_doubt(q.get("dome_marrow_fraction"), q.get("radius_minus_other_side_mm"), fit.radius_mm,
                           q.get("refit_radius_shift_mm"), q.get("refit_failed_starts"), q.get("outer_fraction"),
                           q.get("radius_from_other_side"), q.get("fitted_to_roof"), q.get("found_from_grid"))


def _pair_plausible(a: HeadFit, b: HeadFit) -> bool:
    """Whether two fits of opposite sides lie as the two hips of one pelvis (PAIR_LR_MM, PAIR_OFF_AXIS_MM)."""
    right, left = (a, b) if a.side == "right" else (b, a)
    return _pair_place(left.centre_mm, right)


def _pair_place(point_mm: np.ndarray, fit: HeadFit) -> bool:
    """Whether a point lies where the other hip of ``fit``'s pelvis would (PAIR_LR_MM to its other side,
    within PAIR_OFF_AXIS_MM front to back and foot to head).

    Example
    -------
    >>> right = HeadFit(np.array([-90.0, 0.0, 0.0]), 22.0, 21.0, np.array([-0.8, 0.3, -0.5]), 15.0, "right", 1.0)
    >>> _pair_place([85.0, 10.0, -5.0], right), _pair_place([-20.0, 0.0, 0.0], right)   # left hip / midline
    (True, False)
    """
    d = (np.asarray(point_mm, float) - fit.centre_mm) * (1.0 if fit.side == "right" else -1.0)   # LPS +x: left
    return bool(PAIR_LR_MM[0] <= d[0] <= PAIR_LR_MM[1] and np.all(np.abs(d[1:]) <= PAIR_OFF_AXIS_MM))


def _fit_candidate(image: sitk.Image, start_mm: np.ndarray, fat: float | None, side: str | None, seed_mm,
                   junction_fraction: float | None, reasons: list[str]) -> HeadFit | None:
    """:func:`fit_head` from one start for :func:`find_heads`: the fit, or None with the reason appended to
    ``reasons``.  With a seed point, the head must lie within SEED_SEARCH_RADIUS_MM of it."""
    try:
        fit = fit_head(image, start_mm, fat=fat, junction_fraction=junction_fraction, side=side,
                       require_marrow=seed_mm is None)
    except NoFemoralHeadError as exc:
        reasons.append(str(exc))
        return None
    if seed_mm is not None and (away := float(np.linalg.norm(fit.centre_mm - seed_mm))) > SEED_SEARCH_RADIUS_MM:
        # the fit drifted off what the reader pointed at (a 7 mm-slice localizer: from a seed in the
        # head to a 16 mm round structure lateral to it, 32 mm away)
        reasons.append(f"the head fitted near the seed point lies {away:.0f} mm from it")
        return None
    return fit


def _lr_band(image: sitk.Image, x_from_mm: float, x_to_mm: float) -> sitk.Image:
    """The part of ``image`` between LPS x = ``x_from_mm`` and ``x_to_mm`` (patient right to left; cut along the
    index axis nearest to left-right).

    Example
    -------
    >>> img = sitk.Image([100, 20, 10], sitk.sitkUInt8)          # x 0-99 mm
    >>> _lr_band(img, 59.5, 200.0).GetSize(), _lr_band(img, -10.0, 59.5).GetSize()
    ((40, 20, 10), (60, 20, 10))
    """
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    k = int(np.argmax(np.abs(d[0])))                        # the index axis running most nearly left-right
    step = image.GetSpacing()[k] * d[0, k]
    ends = sorted((x - image.GetOrigin()[0]) / step for x in (x_from_mm, x_to_mm))
    size = list(image.GetSize())
    lo, hi = min(max(math.ceil(ends[0]), 0), size[k]), min(max(math.floor(ends[1]) + 1, 0), size[k])
    index = [0, 0, 0]
    index[k], size[k] = lo, hi - lo
    return sitk.RegionOfInterest(image, size, index)


def _head_in_mirror_field(image: sitk.Image, midline_mm: float, found: HeadFit,
                          junction_fraction: float | None) -> HeadFit | None:
    """The head of the other hip, looked for in a one-hip field (ONE_HIP_FIELD_MM wide) centred on the mirror image
    of ``found`` across the body's midline: its own vote and fat level, the head's side read off its neck.  It must
    be the other side's and lie where the other hip of ``found``'s pelvis would.

    In the whole field a head under a large lesion votes weakly against the field's strongest peaks, and the fit from
    the peaks it gets may not converge.  Lesions written into the real development heads (implant.py): of 8 heads
    missed beside a head found, 3 are found so (seed 3720 case 4 left, a 25 % lesion at 0.45 of marrow: head +0.3 %,
    lesion +1.7 %; seed 1200 case 3 left, 31 % at 0.48: head +7.0 %, lesion +29.3 %; fresh seed 3840 case 15 right,
    42.5 % at 0.36: head +1.0 %, lesion +13.2 %; all three flagged head_size_doubtful), the other 5 are refused in
    that field too.  None if there is none (the whole field's refusals say why no head at all was found).

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    >>> right = next(f for f in find_heads(scan.image) if f.side == "right")
    >>> fat = fat_level(sitk.GetArrayViewFromImage(scan.image))
    >>> _head_in_mirror_field(scan.image, body_midline_mm(scan.image, fat), right, None).side
    'left'
    """
    missing = "left" if found.side == "right" else "right"
    x = 2.0 * midline_mm - float(found.centre_mm[0])
    try:
        fits = find_heads(_lr_band(image, x - ONE_HIP_FIELD_MM / 2, x + ONE_HIP_FIELD_MM / 2),
                          junction_fraction=junction_fraction, refine=False)
    except (NoFemoralHeadError, InputError, RuntimeError):
        return None
    return next((fit for fit in fits if fit.side == missing and _pair_plausible(fit, found)), None)


def _gap_from(image: sitk.Image, other: HeadFit | None) -> float | None:
    """The roof gap (mm) to fit a head with: the other head's of the same scan (:func:`roof_gap_mm`; a person's two
    agree within 0.5 mm on 13 of the 15 development scans), None when there is none, its own fit is doubtful or its roof
    does not show.  No population's gap stands in: phantom family B's heads read 7.7 mm, beyond the development heads'
    4.45-6.41 mm, and two of its heads fitted at 5.5 mm read 17 % large."""
    if other is None or own_size_doubt(other):
        return None
    gap = roof_gap_mm(image, other)
    return None if math.isnan(gap) else gap


def _missed_head_under_roof(image: sitk.Image, found: HeadFit, starts: list[np.ndarray],
                            junction_fraction: float | None) -> HeadFit | None:
    """The other hip's head, missed by every fit from the vote's peaks, fitted to the acetabular roof
    (:func:`fit_to_roof`) from each of ``starts`` in turn at ``found``'s marrow-surface radius and plate, with its
    roof gap: the first that lies where the other hip of ``found``'s pelvis would, or None."""
    missing = "left" if found.side == "right" else "right"
    gap = _gap_from(image, found)
    if gap is None:
        return None
    for start in starts:
        fit = fit_to_roof(image, start, found.inner_radius_mm, found.radius_mm - found.inner_radius_mm, gap, missing,
                          junction_fraction=junction_fraction)
        if fit is not None and fit.side == missing and _pair_plausible(fit, found):
            return fit
    return None


def _grid_fits(image: sitk.Image, start_mm: np.ndarray, fat: float | None, side: str,
               junction_fraction: float | None) -> list[HeadFit]:
    """The ``side`` heads fitted from each of GRID_STARTS_MM around ``start_mm`` (:func:`_fits_around`; ``fat`` by
    default the image's fat field there); the starts that find none, or one of the other side, are left out."""
    return [fit for fit in _fits_around(image, start_mm, side, GRID_STARTS_MM, fat, True, junction_fraction)
            if fit.side == side]


def _missed_head_from_grid(image: sitk.Image, found: HeadFit, peaks: list[tuple[np.ndarray, float | None]],
                           junction_fraction: float | None) -> HeadFit | None:
    """The other hip's head, missed by every fit from the vote's peaks and by :func:`_missed_head_under_roof`, fitted
    from GRID_STARTS_MM around each of the first GRID_MAX_PEAKS of ``peaks`` (centre mm, fat level or None) in turn
    (:func:`_grid_fits`): of the fits that lie where the other hip of ``found``'s pelvis would, their radius within
    HEAD_PAIR_RADIUS_MAX_MM of ``found``'s, the one whose radius is nearest, with ``quality["found_from_grid"]`` True
    (it is always flagged); None when no start finds one.  ``found``'s own fit may be doubtful: beside 5 such heads on
    implant draws (4160 case 13, 4200 moved 12, 4260 moved 8, 4500 moved 12, 4620 moved 14) the other head is then
    found at -15 to +6 % of its volume, 3 of them within 3 %."""
    missing = "left" if found.side == "right" else "right"
    for start, fat in peaks[:GRID_MAX_PEAKS]:
        fits = [fit for fit in _grid_fits(image, start, fat, missing, junction_fraction)
                if _pair_plausible(fit, found) and abs(fit.radius_mm - found.radius_mm) <= HEAD_PAIR_RADIUS_MAX_MM]
        if fits:
            fit = min(fits, key=lambda f: abs(f.radius_mm - found.radius_mm))
            fit.quality["found_from_grid"] = True
            return fit
    return None


def _support(fit: HeadFit, fits: list[HeadFit]) -> int:
    """How many of ``fits`` (``fit`` among them) lie within GRID_AGREE_MM of its centre and GRID_AGREE_RADIUS_MM of
    its radius: the starts of a grid that converge on it."""
    return sum(1 for other in fits if np.linalg.norm(other.centre_mm - fit.centre_mm) <= GRID_AGREE_MM
               and abs(other.radius_mm - fit.radius_mm) <= GRID_AGREE_RADIUS_MM)


def _both_heads_from_grid(image: sitk.Image, peaks: dict[str, list[tuple[np.ndarray, float | None]]],
                          junction_fraction: float | None) -> dict[str, HeadFit]:
    """Both heads, when every fit from the vote's peaks missed both: the heads fitted from GRID_STARTS_MM around the
    first GRID_MAX_PEAKS_BOTH of each side's ``peaks`` (centre mm, fat level or None; :func:`_grid_fits`).  Of the right
    and left fits that lie as one pelvis with radii within HEAD_PAIR_RADIUS_MAX_MM, each converged on from at least
    GRID_MIN_SUPPORT starts (:func:`_support`), the pair most starts converge on (then the nearest radii), each with
    ``quality["found_from_grid"]`` True (always flagged); empty when there is no such pair."""
    supported = {}
    for side in ("right", "left"):
        fits = [fit for start, fat in peaks[side][:GRID_MAX_PEAKS_BOTH]
                for fit in _grid_fits(image, start, fat, side, junction_fraction)]
        supported[side] = [(fit, n) for fit in fits if (n := _support(fit, fits)) >= GRID_MIN_SUPPORT]
        if not supported[side]:         # no pair without this side: the other side's grids need not run
            return {}
    pairs = [(n_right + n_left, -abs(right.radius_mm - left.radius_mm), right, left)
             for right, n_right in supported["right"] for left, n_left in supported["left"]
             if _pair_plausible(right, left) and abs(right.radius_mm - left.radius_mm) <= HEAD_PAIR_RADIUS_MAX_MM]
    if not pairs:
        return {}
    *_, right, left = max(pairs, key=lambda pair: pair[:2])
    right.quality["found_from_grid"] = left.quality["found_from_grid"] = True
    return {"right": right, "left": left}


def find_heads(image: sitk.Image, *, seed_mm=None, junction_fraction: float | None = None,
               refine: bool = True) -> list[HeadFit]:
    """Every femoral head in the image (at most one per side), best first.

    The vote's peaks are tried best first; while a head is still missing after all of them, each is tried once
    more from RESTART_BELOW_MM below it.  Where the field shows both hips and one head was found, the other is
    then looked for in a one-hip field where the other hip would be (:func:`_head_in_mirror_field`).  A head whose
    bone surface is seen on too few rays is fitted again from starts around it, and the largest fit whose bone surface
    is seen replaces it when larger (:func:`_fit_where_bone_is_seen`).  Each head found is fitted again from starts
    around it (:func:`refit_head`), which says whether its size is doubtful; one that none of those starts finds again
    is dropped (:func:`_found_again_nowhere`; not a fit from a grid, held to the other head's radius or to its grid's
    support instead).  Where one head is found without a seed point, the other is fitted to its acetabular roof from the
    peaks where it would lie (:func:`_missed_head_under_roof`), and failing that from a grid of starts around those
    peaks (:func:`_missed_head_from_grid`); where the field shows both hips and neither was found, both from grids
    around each side's first peaks (:func:`_both_heads_from_grid`).  Where one head's own fit is doubtful, the other's
    is not, and its radius is more than AT_OTHER_RADIUS_MIN_GAP_MM smaller, the doubtful head is given the other's radii
    and its centre fitted again at them (:func:`fit_at_radius_of`); any other head whose own fit is doubtful, beside one
    whose fit holds, is fitted to its acetabular roof where that fit's radius lies more than ROOF_LARGER_BY_MM above its
    own (:func:`fit_to_roof`).  ``refine=False`` leaves both refits out (the one-hip field's search leaves them to the
    search over both hips).  Raises :class:`NoFemoralHeadError` when there is none.

    Example
    -------
    >>> from lesionvol.phantom import VisitSpec, make_visit
    >>> scan = make_visit(VisitSpec(shape=(224, 128, 40), spacing_mm=(1.5, 1.0, 3.0)), seed=0, side="both")
    >>> sorted(f.side for f in find_heads(scan.image))
    ['left', 'right']
    """
    if image.GetDimension() != 3:
        raise InputError(f"segmentation needs a 3D image, got {image.GetDimension()}D")
    fat = fat_level(sitk.GetArrayViewFromImage(image))
    midline = body_midline_mm(image, fat) if field_width_mm(image) >= BOTH_HIPS_FIELD_MM else None
    best: dict[str, HeadFit] = {}
    fats: dict[str, float | None] = {}
    reasons = []
    paired = midline is not None and seed_mm is None
    candidates = _candidates(image, fat, seed_mm, N_CANDIDATES_PAIR if paired else N_CANDIDATES)
    if seed_mm is not None:
        # last, the reader's point itself: the edges near it may vote for other spheres (a large lesion's band),
        # from which no head is found (lesions written into real heads on a follow-up grid, implant.py --moved:
        # of 3 heads refused, 2 were then found from a seed point at their centre, the third is refused there too)
        candidates.append((np.asarray(seed_mm, float), None))
    tried: set[tuple[int, float]] = set()
    for restart in (False, True):
        # a second pass, only while a head is missing: each candidate once more from RESTART_BELOW_MM below it
        if restart and best and (midline is None or len(best) == 2):
            break
        for rank, (cand, fat_here) in enumerate(candidates):
            if len(best) == 2:
                break
            if any(np.linalg.norm(cand - f.centre_mm) < MIN_HEAD_SEPARATION_MM for f in best.values()):
                continue
            if paired and rank >= N_CANDIDATES and not (len(best) == 1 and _pair_place(cand, next(iter(best.values())))):
                continue
            side = None
            if midline is not None:
                offset = float(cand[0]) - midline
                if abs(offset) < SIDE_FROM_MIDLINE_MM:
                    reasons.append(f"a candidate {abs(offset):.0f} mm from the body's midline is no femoral head")
                    continue
                side = "left" if offset > 0 else "right"      # LPS +x is patient left
            elif best:
                # a field a little narrower than both hips (no midline): a second head's side is where it lies
                # against the first.  Looked for on either side, its neck can run medially through the acetabular
                # fossa's fat onto pelvic bone as bright as a neck (real copies on 278-279 mm fields: a left head
                # taken for a second right one and dropped)
                first_x = next(iter(best.values())).centre_mm[0]
                if abs(cand[0] - first_x) >= PAIR_LR_MM[0]:
                    side = "left" if cand[0] > first_x else "right"     # LPS +x is patient left
            if side in best:
                continue
            for below_mm in (0.0, RESTART_BELOW_MM) if restart else (0.0,):
                if (rank, below_mm) in tried:
                    continue
                tried.add((rank, below_mm))
                fit = _fit_candidate(image, cand - np.array([0.0, 0.0, below_mm]), fat_here, side, seed_mm,
                                     junction_fraction, reasons)
                if fit is None or fit.side in best:
                    continue
                if best and not _pair_plausible(fit, next(iter(best.values()))):
                    reasons.append(f"a {fit.side} head at {np.round(fit.centre_mm).tolist()} mm does not lie where "
                                   "the other hip would")
                    continue
                best[fit.side], fats[fit.side] = fit, fat_here       # candidates come best first
                break
    if paired and len(best) == 1:
        found = next(iter(best.values()))
        other = _head_in_mirror_field(image, midline, found, junction_fraction)
        if other is not None:
            best[other.side] = other
    for side in best:
        fit = best[side] = _fit_where_bone_is_seen(image, best[side], fats.get(side), junction_fraction, seed_mm is None)
        if "refit_radius_shift_mm" not in fit.quality:     # the mirror field's own search measured its head's
            refit_head(image, fit, fats.get(side), require_marrow=seed_mm is None)
    if seed_mm is None:
        for side in [side for side, fit in best.items() if _found_again_nowhere(fit)]:
            dropped = best.pop(side)
            reasons.append(f"a {side} head at {np.round(dropped.centre_mm).tolist()} mm is found again from none of "
                           f"{len(REFIT_STARTS_MM)} starts {REFIT_OFFSET_MM:g} mm around it")
    if seed_mm is None and len(best) == 1:
        # also on a field a little narrower than both hips (no midline): real copies on 278-279 mm fields hold both
        found = next(iter(best.values()))
        peaks = [(cand, fat_here) for cand, fat_here in candidates if _pair_place(cand, found)]
        starts = [cand for cand, _ in peaks]
        if midline is not None:
            starts.append(np.array([2.0 * midline - found.centre_mm[0], found.centre_mm[1], found.centre_mm[2]]))
        other = _missed_head_under_roof(image, found, starts, junction_fraction)
        if other is None and (other := _missed_head_from_grid(image, found, peaks, junction_fraction)) is not None:
            refit_head(image, other)
        if other is not None:
            best[other.side] = other
    if paired and not best:
        peaks = {"right": [(cand, f) for cand, f in candidates if midline - cand[0] >= SIDE_FROM_MIDLINE_MM],
                 "left": [(cand, f) for cand, f in candidates if cand[0] - midline >= SIDE_FROM_MIDLINE_MM]}
        best = _both_heads_from_grid(image, peaks, junction_fraction)
        for fit in best.values():
            refit_head(image, fit)
    if refine and len(best) == 2:
        # a head whose own fit is doubtful, smaller than one whose fit holds: the sound head's radius, its own centre
        doubt = {side: own_size_doubt(fit) for side, fit in best.items()}
        for side, other in (("right", "left"), ("left", "right")):
            if doubt[side] and not doubt[other] and \
                    best[other].radius_mm - best[side].radius_mm > AT_OTHER_RADIUS_MIN_GAP_MM:
                best[side] = fit_at_radius_of(image, best[side], best[other], fats.get(side),
                                              junction_fraction) or best[side]
        # any other doubtful head beside a sound one: fitted to its acetabular roof where that fit lies well outside
        for side, other in (("right", "left"), ("left", "right")):
            fit = best[side]
            if own_size_doubt(fit) and not fit.quality.get("radius_from_other_side") \
                    and not fit.quality.get("fitted_to_roof") and (gap := _gap_from(image, best[other])) is not None:
                under = fit_to_roof(image, fit.centre_mm, fit.inner_radius_mm, fit.radius_mm - fit.inner_radius_mm,
                                    gap, side, fats.get(side), junction_fraction)
                if under is not None and under.inner_radius_mm - fit.inner_radius_mm > ROOF_LARGER_BY_MM:
                    under.quality["own_radius_mm"] = fit.radius_mm
                    best[side] = under
    if len(best) == 2:
        right, left = best["right"], best["left"]
        right.quality["radius_minus_other_side_mm"] = right.radius_mm - left.radius_mm
        left.quality["radius_minus_other_side_mm"] = left.radius_mm - right.radius_mm
    if not best:
        why = reasons[0] if reasons else "no bright spherical structure"
        raise NoFemoralHeadError(f"no femoral head found in the image ({why}); is this a hip MRI? "
                                 "Give --seed-mm at the head centre if the hip is there")
    return sorted(best.values(), key=lambda f: -f.quality["outer_fraction"])
