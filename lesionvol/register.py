"""Rigid (or affine) registration of a follow-up scan to the baseline, per hip, with QC.

The transform follows ITK's convention: it maps points of the *fixed* image (baseline)
to the same anatomical points of the *moving* image (follow-up), in physical LPS mm.
It is what :func:`SimpleITK.Resample` needs to bring a follow-up mask onto the baseline
grid, and what ``sitk.WriteTransform`` writes as a ``.tfm`` that 3D Slicer and ITK read.

Why not the head alone
----------------------
The femoral head is a sphere: a rotation about its centre leaves a head-sized crop almost
unchanged, so inside such a crop only the lesion constrains it, and the lesion is what changes
between visits. Head Dice and head-centre distance cannot see that rotation either. So the
metric runs on the rigid bone of the proximal femur with the lesion kept out, and every result
is checked by the metric's curvature in a rotation about the head centre.

How it works
------------
1. **Region** (femur path, when a baseline head mask is given): the proximal femur as far as the
   field holds it — the head ball (radius from the mask volume) plus ``HEAD_MARGIN_MM``, and a
   tube of radius ``FEMUR_TUBE_FRACTION`` · R + ``FEMUR_TUBE_MARGIN_MM`` along the neck axis
   (found in the image from the head centre, as the segmenter does) out to the trochanter and
   then ``SHAFT_LENGTH_MM`` down the shaft (patient inferior); the tube starts
   ``CUP_GAP_MM`` beyond the head surface so that the acetabulum, which moves with the
   pelvis and not with the femur, stays out. Without a neck axis the region is a ball of
   ``FALLBACK_REACH_MM`` beyond the head (the method says so). **Lesions** (``fixed_lesion``,
   ``moving_lesion``) dilated by ``LESION_BAND_MM`` are removed from the metric on both sides;
   without lesion masks the head's interior deeper than ``HEAD_CORE_MM`` is removed instead
   (the lesion may lie anywhere in it). Whole-field path (no head mask): the whole images.
2. **Starts**: the rotation centre is the baseline head centre (else the intensity centre of
   mass) and the translation maps it onto the follow-up head centre (else the centre of mass).
   Rotations tried: the one that takes the baseline neck axis onto the follow-up neck axis,
   spun by 0 and ±``SPIN_DEG`` about it (when both axes are found), identity and
   ±``START_ANGLE_DEG`` about each axis, and (whole field) the principal-axes alignments.
   All are scored on the coarsest level (in numpy, :class:`_SampledMetric`); the ``N_CANDIDATES``
   best are optimised there (``START_SCHEDULE``) and the best continues. On the whole field the
   ``FIELD_CANDIDATES`` best are optimised so, and the ``N_CANDIDATES`` best of those are taken to the end
   of the coarsest level (L-BFGS, ``THOROUGH_SCHEDULE``) before one is kept: before any optimisation the
   scores rank the starts poorly (stress pair 10201: the start that reaches the truth ranked third, the
   two before it ended 2.4 and 10.5 mm off, and after the fixed steps alone it still looked worse).
   A caller's ``initial_transform`` replaces these starts (the data-driven start is then run as an
   independent check, see 4).
3. **Multi-resolution** (own pyramid in mm, so 1 × 1 × 5 mm grids are not shrunk into
   20 mm slices): smoothed, resampled copies at ``LEVEL_SPACING_MM``, then the native grids.
   Mattes mutual information (contrast changes between visits and sequences). With a head,
   gradient descent on the coarse levels, in numpy on the metric's own derivative
   (:meth:`_Problem.descend`: each step moves no point more than a set number of mm, a step that does
   not lower the metric is taken back and halved), and L-BFGS on the native grid, in numpy on the same
   derivative (:meth:`_Problem.quasi_newton`, a budget of metric evaluations): gradient descent
   zig-zagged along the shallow spin about the neck axis until its iteration limit. The whole field
   (and a caller's start checked against the data-driven one) runs L-BFGS on the 2 mm and native
   levels (``THOROUGH_SCHEDULE``, ``FIELD_NATIVE``) after gradient descent from the starts with fixed
   steps (halving them left some whole fields 2-25 mm off, L-BFGS from the starts 16 mm).
   Fixed random sample sets (``SCHEDULE``).
   The metric derivative comes from the images themselves, not ITK's smoothed gradient images
   (those smooth by a voxel, 4-5 mm across thick slices, and moved the optimum 0.3-0.8 mm).
   **Resolution matching** (native level, :meth:`_Problem.match_resolution`): before the native level
   each image is blurred by the other's voxel profile (a box of one spacing along each grid axis,
   as a Gaussian of the same variance, oriented by the pose reached on the 2 mm level), so both show
   the anatomy through the same two profiles. Compared at their own resolutions, a 6 mm slice seen
   edge-on in one image and across in the other do not look alike at the true pose and the optimum
   moved: on 21 thick-slice development pairs (5-6.4 mm) mean TRE 0.30 -> 0.19 mm (whole field) and
   0.33 -> 0.26 mm (head and lesion masks). The registration QC figures (metric, correlation) are
   taken on the matched images.
4. **Rotation about the head centre** (gradient descent crawls along the spin about the neck
   axis, which only the trochanter and shaft fix, and stopped 1.5-3.5° short on thick-slice
   pairs): after the 2 mm level and again on the native grid, the metric is modelled as a
   quadratic function of the rotation about the head centre (central differences, 19 poses, on
   a fixed sample set evaluated in numpy: :class:`_SampledMetric`) and Newton steps are taken
   (``NEWTON_STEPS``, ``NATIVE_NEWTON_STEPS``). Other minima: the metric is profiled along the
   least curved rotation (at ``PROFILE_STEPS`` × ``RESTART_DEG``); a dip as low as the result is
   optimised from there, and it (or the independent start) replaces the result when it ends
   clearly better.
   **Backward pass** (with a head, :func:`_backward`): the native level is run again the other way
   round, the follow-up's proximal femur (the baseline's region carried over by the result)
   registered to the baseline from the inverse of the result, with the same keep-outs, and the
   result is the transform half-way between the two (:func:`_midway`: mean rotation, mean image of
   the head centre). The two directions sample one image and interpolate the other, each through
   thick slices seen at another angle, so each carries its own bias; half-way keeps what they
   share. Forward only with gradient descent, three runs of record in a row ended one pair just
   over 1 mm off at the head, unflagged (ph9602, ph9701, ph9802). On the 83 development stress
   pairs (seeds 300-319, 8100-8108, 9100-9408, 9600-9608, 9700-9708), against that: mean TRE
   0.24 -> 0.15 mm and worst 1.37 -> 0.67 mm (head + lesion masks), 0.25 -> 0.15 and 1.28 -> 0.70
   mm (head masks); L-BFGS forward only reached 0.17 mm mean, worst 1.35 / 1.25 mm (flagged). It
   costs a second native level: 1.5-1.7x the time of the forward pass with gradient descent.
5. **Error estimate** (``registration_uncertainty_mm``), from the native-grid model: the largest
   displacement, over points of the head ball, by any rotation whose metric lies within
   ``MODEL_TOLERANCE`` · |metric| of the optimum (a flat direction gives an unbounded error),
   plus the displacement by the Newton step the model still asks for, in each direction of the
   backward pass, the larger of the two; or half the distance between the two directions' results;
   or the distance to another
   start that ended as good (metric within ``METRIC_TIE_FRACTION``), whichever is larger; a start
   that ended the 2 mm level as good but apart is carried to the native grid and compared there (of
   two that tie there, the lower metric is kept: a forced bad start, stress pair 9208, ended 1.6 %
   worse and 1.22 mm off where the independent start ended 0.57 mm off).
   The systematic error left on the femur region (a spin about the neck axis of 1.5-2.5° where the
   metric's optimum is not the truth, on thick and thinner slices alike) shows up as a flat spin: it is
   what the tolerance was set on (seeds 300-319 of the stress generator, then again on the 65
   development pairs with resolution matching).
   Whole field (no head): the head may be anywhere in the anatomy near the field's centre, so the
   error is taken over the scanned anatomy within ``FIELD_REACH_MM`` of its intensity centre
   (anywhere in it when the field holds both hips), as ``FIELD_SPREAD_FACTOR`` × the largest
   displacement there between the result and the optimum of the metric on each of ``FIELD_SEEDS``
   independent sample sets (Newton steps in rotation and translation; the first set is the one
   the result was refined on, so its step is the convergence still missing): how far the data let
   the optimum wander, not a fixed tolerance (the former 1.5 % tolerance read 1.8-3 mm for
   errors of 0.02-1 mm and flagged every whole-field pair). A flat direction is unbounded.
   That spread is sampling noise; what the data cannot resolve is systematic and the sample sets do
   not show it, so the estimate is at least ``PROFILE_FACTOR`` × how far the optimum moves when the
   native images are compared as they are instead of resolution-matched (:func:`_profile_shift_mm`:
   the optimum's dependence on the slice profile, which the data do not give; largest on thick
   slices seen across).
   ``registration_doubtful`` whenever the uncertainty exceeds ``MAX_UNCERTAINTY_MM``.
6. **QC** (:func:`registration_qc`): metric, correlation of the registered images over the
   region, overlap of the fields, neck-axis angle after registration, head Dice, head volume
   change, head-centre residual; a head that collapsed is no longer rigid, and its Dice and
   volume change flag it for review.

Example
-------
>>> from lesionvol.phantom import make_series
>>> s = make_series(seed=2, n_followups=1, shape=(64, 64, 24), spacing_mm=(2.0, 2.0, 5.0))
>>> reg = register_followup(s.scans[0].image, s.scans[1].image,
...                         fixed_head=s.scans[0].head_mask, moving_head=s.scans[1].head_mask)
>>> reg.qc["registration_doubtful"] == (reg.qc["registration_uncertainty_mm"] > MAX_UNCERTAINTY_MM
...                                    or reg.qc["registration_doubtful_reason"] != "")
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import physical_points, voxel_volume_mm3
from lesionvol.io import check_same_grid
from lesionvol.segment.head import BOTH_HIPS_FIELD_MM, field_width_mm

# --- region (femur path)
#: The head part of the region: head ball (equivalent radius of the mask) plus this (plate, edge).
HEAD_MARGIN_MM = 3.0
#: The neck/shaft tube starts this far beyond the head surface: the acetabulum (R + 2.5 to
#: R + 8 mm from the head centre) belongs to the pelvis, which moves relative to the femur.
CUP_GAP_MM = 10.0
#: Trochanter distance from the head centre along the neck axis, × R (femoral anatomy: 2-2.4 R).
TROCHANTER_FRACTION = 2.2
#: Tube radius around the neck axis and shaft: FEMUR_TUBE_FRACTION · R + FEMUR_TUBE_MARGIN_MM
#: (neck 0.6 R, trochanter 0.8 R, plus soft tissue around the cortex).
FEMUR_TUBE_FRACTION = 0.8
FEMUR_TUBE_MARGIN_MM = 8.0
#: Length of shaft taken below the trochanter (as far as the field holds it), patient inferior.
SHAFT_LENGTH_MM = 80.0
#: No neck axis found: ball of this reach beyond the head surface (head, neck, trochanter).
FALLBACK_REACH_MM = 45.0
#: Lesion masks are dilated by this before being removed from the metric (band, oedema, plate).
LESION_BAND_MM = 4.0
#: Without lesion masks the head interior deeper than this under the head surface is removed.
HEAD_CORE_MM = 3.0
#: The follow-up image is cropped to a box of the region's reach plus this around its head.
MOVING_MARGIN_MM = 25.0

# --- optimisation
#: Target spacing (mm) of the coarse pyramid levels; the last level is the native grid.
LEVEL_SPACING_MM = (4.0, 2.0)
#: Rotation starts: ± this about each LPS axis (degrees) ...
START_ANGLE_DEG = 20.0
#: ... and ± this about the neck axis after aligning the neck axes (the spin they do not fix).
SPIN_DEG = 20.0
#: Best starts optimised on the coarsest level before one is kept.
N_CANDIDATES = 2
#: The whole field's: its starts' scores before any optimisation rank them poorly (stress pair 10201: the
#: start that reaches the truth ranked third, the best two ended 2.4 and 10.5 mm off).
FIELD_CANDIDATES = 3
HISTOGRAM_BINS = 32
#: Per pyramid level: (optimiser, largest step in mm — any point of the image moves at most this
#: much per iteration —, smallest step in mm (regular-step only), iterations, at most this many
#: metric samples — random, fixed seed — which sets the cost of one iteration). Set for time on
#: stress seeds 8100-8108 (head masks): the 2 mm level stops at 40 iterations of 5,000 samples (it
#: crawled up to 200 iterations along the spin about the neck, which the Newton steps that follow
#: finish; 80 iterations of 10,000 samples took 1.5x the time for the same TRE); the native level is L-BFGS
#: (:meth:`_Problem.quasi_newton`; its "iterations" are metric evaluations) on 20,000 samples (10,000 moved the
#: mean TRE from 0.29 to 0.43 mm with gradient descent, 0.150 to 0.159 mm with L-BFGS), the native rotation
#: model's sample set (NATIVE_MODEL_SAMPLES), so that it and the Newton steps after it seek the same optimum.
#: 25 evaluations: on the 83 development stress pairs 40 gave the same TRE (mean 0.149 mm) in 1.1x the time, and
#: L-BFGS's own stopping rule alone the same in 1.8x (a failing line search spent 100-200 evaluations).
SCHEDULE = [("gd", 2.0, 0.0, 100, 5_000), ("gd", 0.5, 0.0, 80, 5_000), ("lbfgs", 0.5, 0.0, 25, 20_000)]
#: The native level of the whole-field path (no head): L-BFGS on 40,000 samples, 40 evaluations. On the 83
#: development stress pairs (whole field) ITK's regular-step descent (300 iterations, 40,000 samples) gave
#: mean TRE 0.160 mm, worst 1.00, in twice the time; 25 evaluations left one pair at 1.32 mm, 20,000 samples
#: 0.148 / 0.82 mm with more false flags (11 against 8).
FIELD_NATIVE = ("lbfgs", 0.5, 0.0, 40, 40_000)
#: Metric evaluations (value and gradient) of the backward pass's L-BFGS (:func:`_backward`): it starts at the
#: forward result, near its own optimum (12 left a development pair 0.83 mm off where 20-25 gave 0.67 mm).
BACKWARD_EVALUATIONS = 20
#: Metric samples used to score the starts on the coarsest level.
START_SAMPLES = 20_000
#: The coarsest level for each of the N_CANDIDATES best starts: as SCHEDULE[0] with fewer
#: iterations (100 let a far start crawl for 0.3-0.6 s); the winner then runs the full SCHEDULE.
#: The whole field runs it with fixed steps (:meth:`_Problem.descend`); L-BFGS there, 30 evaluations, jumped into
#: other basins: 2 of 18 further development pairs, seeds 9500-9517, ended 16-17 mm off, flagged.
START_SCHEDULE = ("gd", 2.0, 0.0, 60, 5_000)
#: Powell for the optional affine stage on the 2 mm level: (iterations, step, tolerance, samples).
AFFINE_SCHEDULE = (2, 1.0, 0.05, 30_000)

# --- error estimate
#: Profile step (deg) along the least curved rotation; a dip is re-optimised with RESTART_SCHEDULE.
RESTART_DEG = 8.0
RESTART_SCHEDULE = ("gd", 1.0, 0.0, 150, 10_000)
#: The independent start (with a caller's initial_transform) that ends the coarsest level within
#: this of the caller's start (mm, over the head ball) is in its basin: counted as agreeing, not run on.
SAME_BASIN_MM = 2.0
#: Coarse and 2 mm levels for the whole field, and for a caller's start and the independent start when they end
#: the coarsest level apart: L-BFGS, 60 evaluations each. The whole field with SCHEDULE's short 2 mm level ended
#: 3.5 mm off on stress pair 9208. In place of ITK's gradient descent (100 and 200 iterations): on the 83
#: development stress pairs whole field mean / worst TRE 0.134 / 0.95 -> 0.134 / 0.86 mm, 0.72 -> 0.58 s per pair
#: (18 more, seeds 9500-9517: 0.125 / 0.45 -> 0.114 / 0.47 mm); forced bad starts 0.148 / 0.67 -> 0.152 / 0.63 mm.
THOROUGH_SCHEDULE = [("lbfgs", 2.0, 0.0, 60, 5_000), ("lbfgs", 0.5, 0.0, 60, 10_000)]
#: A restart that ends within this of the result (mm, over the head ball) came back.
AGREE_MM = 0.5
#: A restart whose 2 mm-level metric is within this fraction of the result's is an equally good
#: pose (its distance from the result counts in the uncertainty); one better by more replaces it.
#: Set on the tuning pairs: restarts that stalled on thick-slice pairs ended 1-4 % worse 1-3 mm
#: away while the result itself was 1-2 mm off; real local minima ended 5-20 % worse.
METRIC_TIE_FRACTION = 0.04
#: Points on the head ball where the uncertainty is measured: the centre and this many on the
#: sphere of radius R (Fibonacci directions).
N_HEAD_POINTS = 64

#: Rotation model (metric as a quadratic function of the rotation about the head centre, 2 mm
#: level): finite-difference step (deg), metric samples, Newton steps (each at most NEWTON_MAX_DEG).
MODEL_STEP_DEG = 2.0
MODEL_SAMPLES = 10_000
NEWTON_STEPS = 2
NATIVE_NEWTON_STEPS = 2
NATIVE_MODEL_SAMPLES = 20_000
NEWTON_MAX_DEG = 8.0
#: Newton steps in the rotation keep the Hessian measured before them while they add up to less than
#: this (degrees; the gradient is measured anew after each step).
REUSE_HESSIAN_DEG = 1.0
#: Gradient descent (the coarse levels, in numpy): a step that does not lower the metric is taken back and
#: halved; the level ends when the step is below this fraction of its first length.
DESCENT_MIN_STEP = 0.125
#: Curvatures (per deg², relative to |metric|) below this count as flat.
MIN_CURVATURE = 1e-4
#: Poses whose metric is within this fraction of |metric| of the optimum cannot be told from it
#: (the curvature term of the uncertainty). Set on stress seeds 300-319 (sphere and head-only
#: masks): with 0.01 the estimate was 0.2-1.2 x the error found (larger errors came with flatter
#: spins); 0.015 (x 1.22) covers the largest ratio, so that every tuning pair above 1 mm is flagged.
#: Set again for the resolution-matched native level (its |metric| is 25-30 % larger and its curvature
#: other): with 0.015, one of the 65 development pairs (stress seeds 300-319, 8100-8108, 9100-9408) above
#: 1 mm went unflagged (ph315, 3.5 -> 4.7 mm slices: 1.04 mm with head and lesion masks, estimate 0.94;
#: 1.32 mm with head masks, 0.96), 0.0175 flagged it at 1.01-1.03, 0.02 at 1.07-1.09. False flags (pairs
#: under 1 mm) with masks / head masks: 23 / 21 of 65 before resolution matching, 9 / 8 with 0.015, 18 / 17
#: with 0.02.
MODEL_TOLERANCE = 0.02
#: Whole field (no head): the error is estimated over the scanned anatomy within FIELD_REACH_MM of
#: its intensity centre (where a single-hip field holds the head: 38-44 mm from it on the stress
#: phantoms; anywhere in it when the field holds both hips), as FIELD_SPREAD_FACTOR x the largest
#: displacement there between the result and the optimum on each of the FIELD_SEEDS sample sets
#: (:func:`_field_spread_mm`; Newton steps of models with finite-difference steps MODEL_STEP_DEG and
#: MODEL_STEP_MM). Set on stress seeds 300-319 and 8100-8108 and real development cases 1-4 (see
#: benchmarks/registration_stress.py): the error at the head was 0.10-2.49 x that displacement (0.10-0.68
#: mm; errors 0.02-1.00 mm), so 3 x covers the largest with a margin of 1.2. (The former estimate, a 1.5 %
#: tolerance on the metric's curvature in rotation and translation, read 1.8-3.0 mm for errors of 0.02-1.0
#: mm: every pair was flagged.) With head masks the same displacement was 0.06-0.35 mm for errors up to
#: 1.08 mm (11 x): there the error is systematic (thick slices, a shallow spin), not sampling noise, and the
#: curvature tolerance (MODEL_TOLERANCE) stays.
FIELD_REACH_MM = 50.0
FIELD_SPREAD_FACTOR = 3.0
FIELD_SEEDS = (17, 101, 102, 103)
#: Whole field: the estimate is at least PROFILE_FACTOR x the profile shift (:func:`_profile_shift_mm`: how far
#: the optimum moves between the resolution-matched and the unmatched native images). Set on the 65
#: development pairs (stress seeds 300-319, 8100-8108, 9100-9408, with resolution matching): 3 x the sampling
#: spread alone left ph9408 (6.0 -> 6.2 mm slices) at 0.99 mm with an estimate of 0.77 (3.9 x its spread) and
#: ph9404 at 0.60 for 0.55; the error was at most 2.16 x the profile shift (9404; 9408: 1.88 x), so 2.5 covers
#: every pair's error (bar ph9206, a wrong pose 4 mm off that the spread flags) with a margin of 1.16. False
#: flags on the 64 pairs under 1 mm: 0 with the spread alone, 5 with this term (+ 9408 at 0.99 mm), 9 before
#: resolution matching; 2 x covered neither 9404 nor, with a margin, 9408.
PROFILE_FACTOR = 2.5
MODEL_STEP_MM = 1.0
#: Profile along the least constrained rotation: at these multiples of RESTART_DEG.
PROFILE_STEPS = (-2, -1, 1, 2)
#: A flat or concave direction (unbounded error) is reported as this many mm.
UNBOUNDED_MM = 99.0

# --- QC limits for the ``doubtful`` flag (see :func:`registration_qc`)
MAX_UNCERTAINTY_MM = 1.0
MIN_HEAD_DICE = 0.85
MAX_HEAD_VOLUME_CHANGE_PCT = 10.0
MAX_HEAD_CENTRE_RESIDUAL_MM = 2.0
#: The two scans' neck axes (each from its own segmentation) may disagree this much after registration: on 15
#: real development pelvis pairs (cases 1-15, each moved by a known rigid transform onto another grid, right hip,
#: every registration within 0.21 mm) they differed by 0.4-15.6 deg (5 mm slices); 10 deg flagged 3 of them.
MAX_NECK_AXIS_DEG = 20.0
MIN_CORRELATION = 0.3
MIN_OVERLAP_FRACTION = 0.5
#: Refused (InputError) when less than this fraction of the smaller field overlaps the other.
REFUSE_OVERLAP_FRACTION = 0.05
MAX_METRIC = -0.05  # Mattes MI is negative; closer to 0 means the images share little information

METHOD_FEMUR = "rigid 6-DOF, Mattes MI, levels 4 mm / 2 mm / native (run both ways, result half-way), proximal femur region (head, neck, trochanter, shaft)"
METHOD_BALL = "rigid 6-DOF, Mattes MI, levels 4 mm / 2 mm / native (run both ways, result half-way), head + 45 mm region (no neck axis found)"
METHOD_FIELD = "rigid 6-DOF, Mattes MI, levels 4 mm / 2 mm / native, whole field (no head mask), multi-start from centres of mass and principal axes"
#: kept for callers that print the default method
METHOD = METHOD_FEMUR


#: What each QC column means (for summary.json next to the other definitions).
REGISTRATION_DEFINITIONS = {
    "registration_method": "how the follow-up was registered to the baseline: region (proximal femur, head ball, or "
                           "whole field when no head was given), lesion exclusion, rigid 6-DOF unless affine asked",
    "registration_metric": "final Mattes mutual information on the native grids, resolution-matched (negative; lower = better match)",
    "registration_rotation_deg": "rotation angle of the baseline -> follow-up transform (deg)",
    "registration_uncertainty_mm": (
        "estimated error at the head (mm): the metric is modelled as a quadratic function of the rotation about the "
        "head centre on the native grid; the largest displacement over the head ball by any rotation whose metric is "
        f"within {100 * MODEL_TOLERANCE:g} % of the optimum's, plus the displacement by the Newton step the model still "
        "asks for, the larger of the two directions (the native level is run baseline -> follow-up and follow-up -> "
        "baseline, and the result is the transform half-way between them); or, if larger, half the distance between "
        "the two directions' results, or the distance to another start (independent start, dips of the metric along the least "
        f"curved rotation) that ended with a metric within {100 * METRIC_TIE_FRACTION:g} % of the result's (one that "
        f"ended the 2 mm level more than {AGREE_MM:g} mm away is carried to the native grid and compared there; of two "
        "that tie there the lower metric is kept). Whole field "
        f"(no head): over the scanned anatomy within {FIELD_REACH_MM:g} mm of its intensity centre (anywhere in it "
        f"when the field is {BOTH_HIPS_FIELD_MM:g} mm wide or more: both hips), {FIELD_SPREAD_FACTOR:g} x the largest "
        f"displacement between the result and the optimum of the metric on each of {len(FIELD_SEEDS)} independent "
        "sample sets of the native grids (one Newton step in rotation and translation from the result; the first set "
        f"is the one the result was refined on), or {PROFILE_FACTOR:g} x how far the optimum moves when the native images "
        "are compared as they are rather than resolution-matched (the slice profile, which the data do not resolve), "
        "or the distance to another start that ended as good, whichever is larger; unbounded (99 mm) when the metric "
        "is flat in a direction. The native grids are compared resolution-matched: each image blurred by the other's "
        "voxel profile"),
    "registration_restarts_agreeing": "other starts that came back to the result (within 0.5 mm) / other starts run",
    "registration_correlation": "Pearson correlation of baseline and registered follow-up intensities over the metric region "
                                "(native grids, resolution-matched; every other voxel along each axis)",
    "registration_overlap_fraction": "fraction of the smaller field of view that the other covers after registration",
    "neck_axis_angle_deg": "angle between the mapped baseline neck axis and the follow-up neck axis (deg; empty if not found)",
    "head_dice_registered": "Dice of the baseline head and the follow-up head resampled through the transform (nearest neighbour)",
    "head_volume_change_pct": "100 * (follow-up head volume - baseline head volume) / baseline, native grids",
    "head_centre_residual_mm": "distance between the mapped baseline head centroid and the follow-up head centroid (mm)",
    "registration_doubtful": (
        f"True when the estimated error at the head (registration_uncertainty_mm) exceeds {MAX_UNCERTAINTY_MM} mm, "
        f"the neck axes differ by more than {MAX_NECK_AXIS_DEG} deg, head Dice < {MIN_HEAD_DICE}, |head volume change| > "
        f"{MAX_HEAD_VOLUME_CHANGE_PCT} % (collapse: no longer rigid), head centre residual > "
        f"{MAX_HEAD_CENTRE_RESIDUAL_MM} mm, correlation < {MIN_CORRELATION}, overlap < {MIN_OVERLAP_FRACTION}, "
        f"or metric > {MAX_METRIC}, or the optimiser on the native grid did not converge (stopped at its iteration "
        "limit or left the overlap); change maps then need review"),
    "registration_doubtful_reason": "which of those limits were crossed",
}


@dataclass
class Registration:
    """A follow-up → baseline registration.

    Attributes
    ----------
    transform : sitk.Transform
        Maps baseline (fixed) physical points to follow-up (moving) physical points (ITK
        convention); ``Euler3DTransform`` for rigid, ``AffineTransform`` for affine.
    qc : dict
        Quality figures whose keys become ``volumes.csv`` columns (units in the names).
    doubtful : bool
        True when a QC figure is outside its limit; change maps then need review.
    """

    transform: sitk.Transform
    qc: dict = field(default_factory=dict)
    doubtful: bool = False


# ----------------------------------------------------------------------------- helpers
def _as_float(image: sitk.Image) -> sitk.Image:
    if image.GetDimension() != 3:
        raise InputError(f"registration needs 3D images, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("registration needs single-component (scalar) images")
    return sitk.Cast(image, sitk.sitkFloat32)


def _binary(mask: sitk.Image | None, reference: sitk.Image, name: str, allow_empty: bool = False) -> sitk.Image | None:
    if mask is None:
        return None
    check_same_grid(mask, reference, name)  # refused, not resampled: see io.check_same_grid
    mask = sitk.Cast(mask != 0, sitk.sitkUInt8)
    if not allow_empty and not np.any(sitk.GetArrayViewFromImage(mask)):
        raise InputError(f"{name} is empty")
    return mask


def mask_centroid_mm(mask: sitk.Image) -> np.ndarray:
    """Centroid of a binary mask in physical LPS mm.

    Example
    -------
    >>> m = sitk.Image([5, 5, 5], sitk.sitkUInt8); m[1:4, 1:4, 1:4] = 1
    >>> mask_centroid_mm(m)
    array([2., 2., 2.])
    """
    zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0)
    return physical_points(mask, zyx.mean(axis=0, keepdims=True))[0]


def _foreground(array: np.ndarray) -> np.ndarray:
    """Voxels brighter than the median (tissue rather than air/background)."""
    return array > np.percentile(array, 50)


def _intensity_centre_mm(image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(image).astype(np.float64)
    weights = np.clip(array - np.percentile(array, 50), 0, None)
    total = weights.sum()
    if total <= 0:
        size = np.asarray(image.GetSize(), float)
        return np.asarray(image.TransformContinuousIndexToPhysicalPoint((size - 1) / 2))
    zyx = [(weights.sum(axis=tuple(a for a in range(3) if a != k)) * np.arange(array.shape[k])).sum() / total
           for k in range(3)]
    return physical_points(image, np.array([zyx]))[0]


def _principal_axes(image: sitk.Image, centre: np.ndarray) -> np.ndarray | None:
    """Eigenvectors (columns, largest first) of the intensity-weighted second moments, or None
    when two eigenvalues are within 10 % (axes then undefined)."""
    array = sitk.GetArrayViewFromImage(image)
    step = max(1, int(round((array.size / 50_000) ** (1 / 3))))   # moments of about 50,000 voxels
    sub = array[::step, ::step, ::step].astype(np.float64)
    w = np.clip(sub - np.percentile(sub, 50), 0, None)
    zyx = np.argwhere(w > 0)
    if len(zyx) < 10:
        return None
    weights = w[tuple(zyx.T)]
    pts = physical_points(image, zyx * step) - centre
    cov = (pts * weights[:, None]).T @ pts / weights.sum()
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1]
    if np.any(np.diff(values) > -0.1 * values[:-1]):
        return None
    return vectors


def _fibonacci_directions(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], -1)


def _rotation_about(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation matrix by ``angle_deg`` about the unit vector ``axis`` (Rodrigues)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = math.radians(angle_deg)
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector a onto unit vector b."""
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        return _rotation_about(perp, 180.0)
    return _rotation_about(axis, math.degrees(math.atan2(s, c)))


def _axis_rotation(axis: int, angle_deg: float) -> np.ndarray:
    return _rotation_about(np.eye(3)[axis], angle_deg)


def _euler_from_rotation(matrix: np.ndarray, centre: np.ndarray, translation: np.ndarray) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter([float(v) for v in centre])
    t.SetMatrix([float(v) for v in _nearest_rotation(np.asarray(matrix, float)).ravel()], 1e-6)
    t.SetTranslation([float(v) for v in translation])
    return t


def _perturbed(transform: sitk.Euler3DTransform, rotation: np.ndarray) -> sitk.Euler3DTransform:
    """``transform`` applied after a rotation of the baseline about the transform's centre."""
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3) @ rotation
    return _euler_from_rotation(matrix, np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation()))


def _map(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """``transform`` applied to points (n, 3) in mm (as a matrix for rigid and affine transforms: point by
    point through ITK, the error estimate's maps took 17 ms per registration)."""
    if isinstance(transform, (sitk.Euler3DTransform, sitk.AffineTransform)):
        A, c = np.asarray(transform.GetMatrix()).reshape(3, 3), np.asarray(transform.GetCenter())
        return (np.asarray(points, float) - c) @ A.T + c + np.asarray(transform.GetTranslation())
    return np.array([transform.TransformPoint([float(v) for v in p]) for p in points])


def _crop_box(image: sitk.Image, lo_mm: np.ndarray, hi_mm: np.ndarray) -> sitk.Image | None:
    """Crop to the voxels whose centres fall in the physical box [lo, hi] (any direction cosines);
    None when the box misses the image."""
    corners = np.array([[x, y, z] for x in (lo_mm[0], hi_mm[0]) for y in (lo_mm[1], hi_mm[1])
                        for z in (lo_mm[2], hi_mm[2])])
    idx = np.array([image.TransformPhysicalPointToContinuousIndex([float(v) for v in c]) for c in corners])
    size = np.asarray(image.GetSize())
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, size)
    if np.any(hi - lo < 2):
        return None
    return sitk.RegionOfInterest(image, [int(v) for v in hi - lo], [int(v) for v in lo])


def _within_mm(mask: sitk.Image, distance_mm: float) -> sitk.Image:
    """Mask dilated by ``distance_mm`` (physical, any spacing); the distance map is taken over the
    mask's bounding box plus the distance only (a lesion fills a small part of the region's crop)."""
    array = sitk.GetArrayViewFromImage(mask)
    zyx = np.argwhere(array)
    if len(zyx) == 0:
        return mask
    pad = np.ceil(distance_mm / np.asarray(mask.GetSpacing())[::-1]).astype(int) + 1
    lo = np.maximum(zyx.min(axis=0) - pad, 0)
    hi = np.minimum(zyx.max(axis=0) + pad + 1, array.shape)
    box = sitk.RegionOfInterest(mask, [int(v) for v in (hi - lo)[::-1]], [int(v) for v in lo[::-1]])
    d = sitk.SignedMaurerDistanceMap(box, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    out = np.zeros(array.shape, np.uint8)
    out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = sitk.GetArrayViewFromImage(d) <= distance_mm
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(mask)
    return image


def _deeper_than_mm(mask: sitk.Image, depth_mm: float) -> sitk.Image:
    """Voxels of ``mask`` more than ``depth_mm`` inside its surface."""
    d = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=True, squaredDistance=False, useImageSpacing=True)
    return sitk.Cast(d > depth_mm, sitk.sitkUInt8)


def _on_grid(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """``mask`` on ``reference``'s grid, nearest neighbour (a mask of a cropped image's parent cut to the
    crop, or of a finer level); the mask itself when it is on that grid already."""
    if (mask.GetSize() == reference.GetSize() and np.allclose(mask.GetOrigin(), reference.GetOrigin())
            and np.allclose(mask.GetSpacing(), reference.GetSpacing())
            and np.allclose(mask.GetDirection(), reference.GetDirection())):
        return mask if mask.GetPixelID() == sitk.sitkUInt8 else sitk.Cast(mask, sitk.sitkUInt8)
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _voxel_profile_mm2(image: sitk.Image) -> np.ndarray:
    """Physical covariance (mm²) of an image's voxel profile: a box of one spacing along each grid axis
    (variance spacing² / 12), in LPS."""
    D = np.asarray(image.GetDirection()).reshape(3, 3)
    return D @ np.diag(np.asarray(image.GetSpacing(), float) ** 2 / 12) @ D.T


def _blurred(image: sitk.Image, covariance_mm2: np.ndarray) -> sitk.Image:
    """``image`` convolved with a Gaussian of physical covariance ``covariance_mm2`` (mm², any orientation:
    in the Fourier domain of the index grid, single precision, edges padded by replication to a fast FFT
    length; a whole pelvis of 7 M voxels takes about 0.15 s)."""
    import scipy.fft

    M = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing(), float)
    Minv = np.linalg.inv(M)
    C = (Minv @ covariance_mm2 @ Minv.T)[::-1, ::-1]                     # index covariance, array axes (z, y, x)
    array = sitk.GetArrayViewFromImage(image).astype(np.float32)
    pad = [int(math.ceil(3 * math.sqrt(max(C[i, i], 0.0)))) + 1 for i in range(3)]
    shape = [scipy.fft.next_fast_len(n + 2 * p, real=True) for n, p in zip(array.shape, pad)]
    padded = np.pad(array, [(p, L - n - p) for n, p, L in zip(array.shape, pad, shape)], mode="edge")
    k = [scipy.fft.fftfreq(shape[0])[:, None, None], scipy.fft.fftfreq(shape[1])[None, :, None],
         scipy.fft.rfftfreq(shape[2])[None, None, :]]
    quad = sum(C[i, j] * k[i] * k[j] for i in range(3) for j in range(3))
    workers = max(1, sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())    # ITK's thread budget (batch sets it)
    spectrum = scipy.fft.rfftn(padded, workers=workers) * np.exp(-2 * math.pi**2 * quad).astype(np.float32)
    out = scipy.fft.irfftn(spectrum, s=shape, workers=workers)
    out = np.ascontiguousarray(out[pad[0]:pad[0] + array.shape[0], pad[1]:pad[1] + array.shape[1],
                                   pad[2]:pad[2] + array.shape[2]], dtype=np.float32)
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(image)
    return result


# ----------------------------------------------------------------------------- hip landmarks
@dataclass
class _Hip:
    """Where the hip is in one image: head centre (mm), equivalent radius (mm), neck axis."""

    centre: np.ndarray
    radius: float
    neck_axis: np.ndarray | None


def _hip_from_mask(image: sitk.Image, head: sitk.Image) -> _Hip:
    centre = mask_centroid_mm(head)
    volume = np.count_nonzero(sitk.GetArrayViewFromImage(head)) * voxel_volume_mm3(head)
    radius = float((3 * volume / (4 * math.pi)) ** (1 / 3))
    axis = None
    try:  # the segmenter's neck finder: bright marrow leaving the head inferiorly
        from lesionvol.segment.head import fat_level, lateral_neck_axis

        axis, _ = lateral_neck_axis(image, fat_level(sitk.GetArrayViewFromImage(image)), centre, radius)
    except Exception:  # noqa: BLE001 - a missing neck only narrows the region
        axis = None
    return _Hip(centre, radius, axis)


def _femur_region(image: sitk.Image, hip: _Hip) -> tuple[sitk.Image, sitk.Image, float]:
    """Crop of ``image`` around the proximal femur, the region mask on it, and its reach (mm)."""
    c, R, a = hip.centre, hip.radius, hip.neck_axis
    tube = FEMUR_TUBE_FRACTION * R + FEMUR_TUBE_MARGIN_MM
    if a is not None:
        trochanter = c + TROCHANTER_FRACTION * R * a
        shaft_end = trochanter + SHAFT_LENGTH_MM * np.array([0.0, 0.0, -1.0])  # LPS +z is superior
        ends = np.array([c, trochanter, shaft_end])
        lo, hi = ends.min(axis=0) - tube, ends.max(axis=0) + tube
        lo, hi = np.minimum(lo, c - R - HEAD_MARGIN_MM), np.maximum(hi, c + R + HEAD_MARGIN_MM)
        reach = float(max(np.linalg.norm(e - c) for e in ends) + tube)
    else:
        reach = R + FALLBACK_REACH_MM
        lo, hi = c - reach, c + reach
    crop = _crop_box(image, lo, hi)
    if crop is None:
        raise InputError("the baseline head mask lies outside its image")
    # voxel centres as offsets from the head centre, one (z, y, x) array per LPS axis (broadcast from the
    # three grid axes: listing every voxel as an (n, 3) row took 20 ms per crop)
    shape = sitk.GetArrayViewFromImage(crop).shape
    step = np.asarray(crop.GetDirection()).reshape(3, 3) * np.asarray(crop.GetSpacing())   # columns: x, y, z index steps
    z, y, x = (np.arange(n, dtype=float).reshape([-1 if k == axis else 1 for k in range(3)]) for axis, n in enumerate(shape))
    p = [np.asarray(crop.GetOrigin())[i] - c[i] + step[i, 0] * x + step[i, 1] * y + step[i, 2] * z for i in range(3)]
    d_centre = np.sqrt(p[0] ** 2 + p[1] ** 2 + p[2] ** 2)
    inside = d_centre <= R + HEAD_MARGIN_MM
    if a is not None:
        far = d_centre >= R + CUP_GAP_MM
        for p0, p1 in ((c, trochanter), (trochanter, shaft_end)):
            u, r = p1 - p0, [p[i] - (p0 - c)[i] for i in range(3)]           # r: offset from p0
            t = np.clip((r[0] * u[0] + r[1] * u[1] + r[2] * u[2]) / (u @ u), 0.0, 1.0)
            inside |= far & ((r[0] - t * u[0]) ** 2 + (r[1] - t * u[1]) ** 2 + (r[2] - t * u[2]) ** 2 <= tube**2)
    else:
        inside |= (d_centre >= R + CUP_GAP_MM) & (d_centre <= reach)
    region = sitk.GetImageFromArray(inside.astype(np.uint8))
    region.CopyInformation(crop)
    return crop, region, reach


# ----------------------------------------------------------------------------- pyramid and metric
def _level(image: sitk.Image, spacing_mm: float, label: bool = False) -> sitk.Image:
    """Copy of ``image`` on a grid of about ``spacing_mm`` (never finer than native), smoothed."""
    native = np.asarray(image.GetSpacing(), float)
    spacing = np.maximum(native, spacing_mm)
    if np.allclose(spacing, native):
        return image
    if not label:
        # Gaussian of sigma (mm) along each grid axis, none along an axis that keeps its spacing (scipy's
        # sampled kernel: ITK's recursive Gaussian took 4-5x as long, 3 ms on a 22 x 68 x 45 crop, 67 ms on
        # 60 x 200 x 200)
        from scipy import ndimage

        sigma_voxels = 0.5 * np.sqrt(np.clip(spacing**2 - native**2, 0, None)) / native
        smoothed = sitk.GetImageFromArray(ndimage.gaussian_filter(
            sitk.GetArrayViewFromImage(image).astype(np.float32), sigma_voxels[::-1].tolist()))
        smoothed.CopyInformation(image)
        image = smoothed
    size = np.maximum(np.round(np.asarray(image.GetSize()) * native / spacing), 2).astype(int)
    # keep the same physical box: first voxel centre moves by half the change of voxel size
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((spacing - native) / 2)
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.Resample(image, [int(s) for s in size], sitk.Transform(), interpolator, origin.tolist(),
                         spacing.tolist(), image.GetDirection(), 0.0, image.GetPixelID())


def _method(n_voxels: int, max_samples: int, optimizer: str = "powell", step: float = 1.0,
            min_step: float = 0.01, iterations: int = 100, tolerance: float = 0.05, seed: int = 17):
    """ITK's Mattes MI with a fixed random sample set and one of two optimisers (gradient descent and
    L-BFGS run in numpy, :meth:`_Problem.descend` and :meth:`_Problem.quasi_newton`).

    ``n_voxels`` is the number of voxels the samples are drawn from (the fixed mask's, when
    there is one). ``"rsgd"``: regular-step gradient descent, ``step`` mm at first, shrinking (x0.7) whenever the
    direction turns back, down to ``min_step``. ``"powell"``: derivative-free line searches
    (the affine stage). The samples are drawn once per level (fixed seed), so the metric is
    deterministic and comparable between poses.
    """
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(HISTOGRAM_BINS)
    fraction = min(1.0, max_samples / max(n_voxels, 1))
    if fraction < 1.0:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(fraction, seed)
    else:
        reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetInterpolator(sitk.sitkLinear)
    if optimizer == "rsgd":
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=step, minStep=min_step,
                                                     numberOfIterations=iterations, relaxationFactor=0.7,
                                                     gradientMagnitudeTolerance=1e-8)
    else:
        reg.SetOptimizerAsPowell(numberOfIterations=iterations, maximumLineIterations=8, stepLength=step,
                                 stepTolerance=tolerance, valueTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


@dataclass
class _Level:
    fixed: sitk.Image
    moving: sitk.Image
    fixed_mask: sitk.Image | None
    moving_mask: sitk.Image | None
    n_samples_from: int

    @cached_property
    def arrays(self) -> dict:
        """What every sample set of this level reads (made once: a whole pelvis field is millions of voxels):
        the fixed image's range, the moving image flat (float32, x fastest), its range, and its keep mask flat
        (None without a moving mask)."""
        fixed = sitk.GetArrayViewFromImage(self.fixed)
        moving = sitk.GetArrayFromImage(self.moving).astype(np.float32, copy=False)
        return dict(f_lo=float(fixed.min()), f_hi=float(fixed.max()), moving=moving.ravel(), shape=moving.shape,
                    m_lo=float(moving.min()), m_hi=float(moving.max()),
                    keep=None if self.moving_mask is None else (sitk.GetArrayViewFromImage(self.moving_mask) != 0).ravel())


#: The uniform cubic B-spline's four pieces as polynomials in t (rows: weights of bins k - 1 ... k + 2; columns:
#: coefficients of 1, t, t^2, t^3), and their derivatives (columns: 1, t, t^2).
_PARZEN = np.array([[1, -3, 3, -1], [4, 0, -6, 3], [1, 3, 3, -3], [0, 0, 0, 1]]) / 6
_PARZEN_SLOPE = np.array([[-1, 2, -1], [0, -4, 3], [1, 2, -3], [0, 0, 1]]) / 2


def _parzen_window(t: np.ndarray, slopes: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Cubic B-spline Parzen weights (4, n) of bins k - 1 ... k + 2 for an intensity at u = k + 1/2 + t,
    t in [0, 1) (bin j centred at j + 1/2), and with ``slopes`` their derivatives in u. The four weights
    are the uniform cubic B-spline's pieces at distances 1 + t, t, 1 - t and 2 - t: polynomials without
    branches, summing to 1, twice continuously differentiable in u (each sample's mass moves smoothly
    between bins, so the metric is smooth in the pose).

    >>> w, d = _parzen_window(np.array([0.0, 0.25, 0.5], np.float32), slopes=True)
    >>> np.allclose(w.sum(axis=0), 1), np.allclose(d.sum(axis=0), 0), np.round(w[:, 0] * 6, 4).tolist()
    (True, True, [1.0, 4.0, 1.0, 0.0])
    """
    powers = np.empty((4, len(t)), t.dtype)                  # 1, t, t^2, t^3 (the metric's: float32)
    powers[0], powers[1] = 1, t
    np.multiply(t, t, out=powers[2])
    np.multiply(powers[2], t, out=powers[3])
    weights = _PARZEN.astype(t.dtype) @ powers
    return weights, (_PARZEN_SLOPE.astype(t.dtype) @ powers[:3] if slopes else None)


class _SampledMetric:
    """Mutual information of one level on a fixed sample set, evaluated in numpy (no per-call
    set-up: ITK's metric re-reads the masks and images on every call, 10-30 ms each, while the
    rotation model needs dozens of evaluations). Fixed intensities fall in one of HISTOGRAM_BINS
    bins, moving intensities (trilinear interpolation, in numpy) are spread over four bins by a
    cubic B-spline window (:func:`_parzen_window`), so the value changes continuously with the pose
    and its gradient is the one the value follows. Returns -MI (lower is better, like Mattes MI); nan
    when fewer than 200 samples land in the moving image and outside its mask's keep-out."""

    def __init__(self, lv: "_Level", samples: int, seed: int = 17):
        fixed = sitk.GetArrayViewFromImage(lv.fixed)
        # flat indices (C order, as np.argwhere lists voxels), unravelled after the draw: a whole pelvis
        # field has millions of voxels, and listing them all as (z, y, x) rows cost 0.2 s per sample set
        flat = np.arange(fixed.size) if lv.fixed_mask is None else np.flatnonzero(sitk.GetArrayViewFromImage(lv.fixed_mask))
        rng = np.random.default_rng(seed)
        if len(flat) > samples:
            flat = flat[np.sort(rng.choice(len(flat), samples, replace=False))]
        zyx = np.column_stack(np.unravel_index(flat, fixed.shape))
        self.points = physical_points(lv.fixed, zyx)
        self.points_t = np.ascontiguousarray(self.points.T, np.float32)      # float32: to 0.0001 mm in a 500 mm field
        values = fixed[tuple(zyx.T)].astype(np.float64)
        shared = lv.arrays
        lo, hi = shared["f_lo"], shared["f_hi"]
        self.fixed_bin = np.clip(((values - lo) / max(hi - lo, 1e-12) * HISTOGRAM_BINS).astype(int), 0, HISTOGRAM_BINS - 1)
        self.m_lo, self.m_hi = shared["m_lo"], shared["m_hi"]
        self.moving = shared["moving"]                                       # flat, x fastest
        nz, ny, nx = shared["shape"]
        self.strides = np.array([1, nx, nx * ny], np.intp)                   # flat offset of one x, y, z step
        self._corners = np.array([0, 1, nx, nx + 1, nx * ny, nx * ny + 1, nx * ny + nx, nx * ny + nx + 1])[:, None]
        self.last = np.array([nx - 1, ny - 1, nz - 1], float)                # largest xyz index
        self.cell = np.maximum(self.last.astype(np.intp) - 1, 0)             # last cell start (linear interpolation)
        self.moving_keep = shared["keep"]
        direction = np.asarray(lv.moving.GetDirection()).reshape(3, 3)
        self.from_index = direction * np.asarray(lv.moving.GetSpacing())   # xyz index offset -> physical
        self.to_index = np.linalg.inv(self.from_index)                      # physical offset -> xyz index
        self.origin = np.asarray(lv.moving.GetOrigin())

    def __call__(self, transform: sitk.Transform) -> float:
        A = np.asarray(transform.GetMatrix()).reshape(3, 3)
        return self.value(A, np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation()))

    def _landed(self, A: np.ndarray, c: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples the pose x -> A (x - c) + c + t maps inside the moving image and outside its
        keep-out: their indices and their moving xyz index coordinates (rows x, y, z: contiguous, so that
        the element-wise arithmetic runs at memory speed; on columns, strided, the gradient call took
        twice as long)."""
        M = self.to_index @ A                                                # fixed point -> moving xyz index
        offset = (self.to_index @ (c + t - self.origin) - M @ c).astype(np.float32)
        xyz = M.astype(np.float32) @ self.points_t + offset[:, None]     # float32: half float64's memory traffic
        x, y, z = xyz
        lx, ly, lz = self.last
        inside = (x >= 0) & (x <= lx) & (y >= 0) & (y <= ly) & (z >= 0) & (z <= lz)
        if self.moving_keep is not None:
            _, sy, sz = self.strides
            r = (xyz + 0.5).astype(np.intp)                                  # nearest voxel outside the keep-out
            # (clipped: the samples outside the image are dropped by ``inside`` anyway)
            inside &= self.moving_keep.take(r[0] + r[1] * sy + r[2] * sz, mode="clip")
        sel = np.flatnonzero(inside)
        return sel, (xyz if len(sel) == len(inside) else xyz.take(sel, axis=1))

    def _interpolated(self, q: np.ndarray, slopes: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The moving image at xyz index coordinates ``q`` (3, n) by trilinear interpolation (what ITK's
        linear interpolator does), and with ``slopes`` its derivatives (3, n) in x, y and z; float32 (the
        image's type: arithmetic mixed with float64 ran at a third of float32's speed)."""
        _, sy, sz = self.strides
        i0 = np.minimum(q.astype(np.intp), self.cell[:, None])
        fx, fy, fz = q - i0.astype(np.float32)
        # the eight corners of each sample's cell in one gather (x fastest: 000, 100, 010, 110, 001, ...)
        v000, v100, v010, v110, v001, v101, v011, v111 = self.moving.take(i0[0] + i0[1] * sy + i0[2] * sz + self._corners)
        gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
        a0, a1 = v000 * gx + v100 * fx, v010 * gx + v110 * fx          # along x, at (y0, z0) and (y1, z0)
        b0, b1 = v001 * gx + v101 * fx, v011 * gx + v111 * fx          # ... at z1
        c0, c1 = a0 * gy + a1 * fy, b0 * gy + b1 * fy
        m = c0 * gz + c1 * fz
        if not slopes:
            return m, None
        dm = np.empty((3, len(m)), np.float32)
        dm[0] = ((v100 - v000) * gy + (v110 - v010) * fy) * gz + ((v101 - v001) * gy + (v111 - v011) * fy) * fz
        dm[1] = (a1 - a0) * gz + (b1 - b0) * fz
        dm[2] = c1 - c0
        return m, dm

    def _joint(self, sel: np.ndarray, m: np.ndarray, slopes: bool = False):
        """Joint histogram (counts) of the fixed bins of samples ``sel`` and the moving intensities ``m``
        spread by the Parzen window (:func:`_parzen_window`; 2 padding bins each side), the joint cell of each
        sample's four window weights (4, n), and with ``slopes`` the weights' derivatives in intensity."""
        n = HISTOGRAM_BINS + 4
        span = max(self.m_hi - self.m_lo, 1e-12)
        raw = (m - self.m_lo) / span
        # u = 2 + raw * HISTOGRAM_BINS in [2, HISTOGRAM_BINS + 2]; the window covers bins k - 1 ... k + 2,
        # k = floor(u - 1/2), at most HISTOGRAM_BINS + 1 (the last padding bin is k + 2)
        s = 1.5 + np.clip(raw, 0, 1) * HISTOGRAM_BINS
        k = s.astype(np.intp)
        weights, slope = _parzen_window(s - np.floor(s), slopes)
        cells = ((self.fixed_bin[sel] + 2) * n + k) + self._offsets
        joint = np.bincount(cells.ravel(), weights=weights.ravel(), minlength=n * n).reshape(n, n)
        if slopes:
            slope *= np.where((raw > 0) & (raw < 1), np.float32(HISTOGRAM_BINS / span), np.float32(0))  # d weight / d m
        return joint, cells, slope

    @staticmethod
    def _mutual_information(joint: np.ndarray) -> tuple[float, np.ndarray]:
        """MI of a joint histogram of counts and log(p / (p_fixed p_moving)) per cell (0 where p = 0)."""
        p = joint / joint.sum()
        nz = p > 0
        ratio = np.zeros_like(p)
        np.divide(p, np.outer(p.sum(axis=1), p.sum(axis=0)), out=ratio, where=nz)
        np.log(ratio, out=ratio, where=nz)
        return float((p * ratio).sum()), ratio

    def value(self, A: np.ndarray, c: np.ndarray, t: np.ndarray) -> float:
        """-MI of the pose x -> A (x - c) + c + t (no transform object: the rotation model's poses)."""
        sel, q = self._landed(A, c, t)
        if len(sel) < 200:
            return float("nan")
        m, _ = self._interpolated(q)
        joint, _, _ = self._joint(sel, m)
        return -self._mutual_information(joint)[0]

    def value_and_gradient(self, A: np.ndarray, c: np.ndarray, t: np.ndarray) -> tuple[float, np.ndarray]:
        """-MI of the pose x -> A (x - c) + c + t and its derivative with respect to (w, d): a rotation
        vector w (radians) applied first about c (x -> A R(w) (x - c) + c + t) and a shift d (mm) added
        to t. The derivative of the trilinear interpolation and of the Parzen window, as computed (the
        samples that cross a mask's edge are held fixed); nan when fewer than 200 samples land."""
        sel, q = self._landed(A, c, t)
        if len(sel) < 200:
            return float("nan"), np.full(6, np.nan)
        m, dm = self._interpolated(q, slopes=True)
        joint, cells, slope = self._joint(sel, m, slopes=True)
        mi, ratio = self._mutual_information(joint)
        dvalue_djoint = -(ratio - mi) / joint.sum()                          # d(-MI) / d joint cell
        per_sample = (dvalue_djoint.astype(np.float32).ravel()[cells] * slope).sum(axis=0)   # d(-MI) / d m
        g_q = (dm * per_sample).astype(np.float64)                          # (3, n): d(-MI) / d moving index
        g_t = self.to_index.T @ g_q.sum(axis=1)                             # d(-MI) / d shift (mm)
        # d y = A (w x r), r = x - c: the sum over samples of r x (A^T g_y), g_y = to_index^T g_q, from
        # M = sum r (A^T g_y)^T = A^T (sum (y - c - t) g_y^T) A, y = origin + to_index^-1 q (the moving point)
        q_c = q - (self.to_index @ (c + t - self.origin))[:, None]           # index offsets from the centre's image (float64)
        M = A.T @ self.from_index @ (q_c @ g_q.T) @ self.to_index @ A
        g_w = np.array([M[1, 2] - M[2, 1], M[2, 0] - M[0, 2], M[0, 1] - M[1, 0]])
        return -mi, np.concatenate([g_w, g_t])

    _offsets = np.arange(-1, 3)[:, None]


class _Problem:
    """Pyramid of the (cropped) images and their metric masks; runs and scores poses. ``levels=False``:
    the native grid only (the coarse levels are None), for a pass that starts near the result."""

    def __init__(self, fixed, moving, fixed_mask, moving_mask, halve_steps: bool = True, levels: bool = True):
        self.levels: list = []
        self.halve_steps = halve_steps  # gradient descent (:meth:`descend`) halves a step that overshoots, else fixed steps
        self.converged = True  # whether the last level run ended before its iteration limit
        self._sampled: dict = {}
        self.matched = False  # whether the native level is resolution-matched (:meth:`match_resolution`)
        # each coarse level is made from the next finer one (smoothing a whole pelvis field at full
        # resolution for every level took 0.4 s more; the Gaussians add up to the same width)
        images = {0.0: (fixed, moving)}
        f, m = fixed, moving
        for spacing in sorted(LEVEL_SPACING_MM) if levels else ():
            f, m = _level(f, spacing), _level(m, spacing)
            images[spacing] = (f, m)
        for spacing in (*LEVEL_SPACING_MM, 0.0):
            if spacing not in images:  # ``levels=False``: the native grid only
                self.levels.append(None)
                continue
            f, m = images[spacing]
            fm = None if fixed_mask is None else _on_grid(fixed_mask, f)
            mm = None if moving_mask is None else _on_grid(moving_mask, m)
            n = int(np.count_nonzero(sitk.GetArrayViewFromImage(fm))) if fm is not None else int(np.prod(f.GetSize()))
            if fm is not None and n < 50:
                raise InputError(f"registration refused: the images do not overlap enough to register (the metric region "
                                  f"holds {n} voxels at {spacing or 'native'} mm)")
            self.levels.append(_Level(f, m, fm, mm, n))

    def match_resolution(self, transform: sitk.Transform) -> None:
        """Bring the native level's two images to one resolution (once; the rotation of ``transform``, the
        pose after the 2 mm level, orients them): the baseline is blurred by the follow-up's voxel profile
        and the follow-up by the baseline's, each mapped into the other's frame (:func:`_voxel_profile_mm2`,
        :func:`_blurred`), so that both are the anatomy seen through the same two profiles. Compared at
        their own resolutions, a 6 mm slice seen edge-on in one image and across in the other do not
        look alike at the true pose, and the optimum of the metric moved (stress pairs with 5-6.4 mm
        slices, see the module docstring). The unmatched native level is kept after it
        (:func:`_profile_shift_mm`)."""
        if self.matched:
            return
        self.matched = True
        native = self.native
        lv = self.levels[native]
        A = _nearest_rotation(np.asarray(transform.GetMatrix()).reshape(3, 3))    # fixed frame -> moving frame
        fixed = _blurred(lv.fixed, A.T @ _voxel_profile_mm2(lv.moving) @ A)
        moving = _blurred(lv.moving, A @ _voxel_profile_mm2(lv.fixed) @ A.T)
        self.levels[native] = _Level(fixed, moving, lv.fixed_mask, lv.moving_mask, lv.n_samples_from)
        self.levels.append(lv)  # the native images as they are, after it (:func:`_profile_shift_mm`)
        self._sampled = {k: v for k, v in self._sampled.items() if k[0] != native}

    @property
    def native(self) -> int:
        """Index of the native level (resolution-matched once :meth:`match_resolution` ran; the unmatched
        native images then follow it)."""
        return len(LEVEL_SPACING_MM)

    def _reg(self, level: int, samples: int, *args, **kwargs):
        lv = self.levels[level]
        reg = _method(lv.n_samples_from, samples, *args, **kwargs)
        if lv.fixed_mask is not None:
            reg.SetMetricFixedMask(lv.fixed_mask)
        if lv.moving_mask is not None:
            reg.SetMetricMovingMask(lv.moving_mask)
        return reg, lv

    def sampler(self, level: int, samples: int, seed: int = 17) -> _SampledMetric:
        """The numpy metric of one level on one fixed sample set (made once, kept)."""
        key = (level, samples, seed)
        if key not in self._sampled:
            self._sampled[key] = _SampledMetric(self.levels[level], samples, seed)
        return self._sampled[key]

    def sampled(self, transform: sitk.Transform, level: int, samples: int, seed: int = 17) -> float:
        """-MI of a pose on a fixed sample set, in numpy (:class:`_SampledMetric`); for the rotation model."""
        return self.sampler(level, samples, seed)(transform)

    def optimise(self, transform: sitk.Transform, schedule, first_level: int = 0) -> sitk.Transform:
        """Run ``schedule`` level by level from ``first_level``; the transform is copied."""
        transform = sitk.Euler3DTransform(transform) if isinstance(transform, sitk.Euler3DTransform) else transform
        for level, (optimizer, step, min_step, iterations, samples) in enumerate(schedule, start=first_level):
            if optimizer == "gd":
                transform = self.descend(transform, level, samples, step, iterations, self.halve_steps)
                continue
            if optimizer == "lbfgs":
                transform = self.quasi_newton(transform, level, samples, iterations)
                continue
            reg, lv = self._reg(level, samples, optimizer, step, min_step, iterations)
            reg.SetInitialTransform(transform, inPlace=True)
            try:
                reg.Execute(lv.fixed, lv.moving)
            except RuntimeError:  # left the overlap on this level: keep what we had
                self.converged = False
                break
            self.converged = reg.GetOptimizerIteration() < iterations
        return transform

    def descend(self, transform: sitk.Euler3DTransform, level: int, samples: int, step: float,
                iterations: int, halve: bool = True) -> sitk.Euler3DTransform:
        """Gradient descent in numpy on one fixed sample set (:meth:`_SampledMetric.value_and_gradient`), as
        ITK's gradient descent with the learning rate re-estimated every iteration: each iteration moves the
        pose ``step`` mm down the gradient (rotation scaled by the region's reach, so that no sample point
        moves much more than ``step``). With ``halve`` (the femur region), a step that does not lower the metric
        is taken back and halved, and the level ends when the step is below DESCENT_MIN_STEP of its first length
        or after ``iterations``; without (the whole field), every step is ``step`` mm, as ITK's, for
        ``iterations``. Either way it returns the best pose seen. ITK's metric cost 5-7 ms per iteration on the
        coarse levels whatever the samples (it re-reads masks and images), this 1-2 ms; the halving ends a level
        in 14 iterations where ITK's window criterion took 35. On a whole field the halving stopped in the
        first dip: 3-8 of the 83 development stress pairs ended 2-25 mm off (fixed steps: mean 0.132, worst
        0.64 mm, as ITK's; 18 more pairs, seeds 9500-9517: 0.129 / 0.48 mm)."""
        metric = self.sampler(level, samples)
        A = np.asarray(transform.GetMatrix()).reshape(3, 3)
        c, t = np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation())
        reach = max(float(np.max(np.linalg.norm(metric.points - c, axis=1))), 1.0)
        scale = np.r_[np.full(3, 1 / reach), np.ones(3)]            # (rotation rad, shift mm) -> mm moved
        step_min = step * DESCENT_MIN_STEP
        best = (np.inf, A, t, None)
        self.converged = False
        for _ in range(iterations):
            value, gradient = metric.value_and_gradient(A, c, t)
            if not np.isfinite(value):
                break
            if value < best[0]:
                best = (value, A, t, gradient)
            elif halve:                                                # overshot: back to the best pose, shorter step
                step *= 0.5
                if step < step_min:
                    self.converged = True
                    break
                A, t, gradient = best[1], best[2], best[3]
            g = gradient * scale                                       # gradient per mm moved
            norm = float(np.linalg.norm(g))
            if norm < 1e-12:
                self.converged = True
                break
            move = -step * g / norm * scale                            # back to (rad, mm)
            angle = float(np.linalg.norm(move[:3]))
            if angle > 0:
                A = A @ _rotation_about(move[:3] / angle, math.degrees(angle))
            t = t + move[3:]
        return _euler_from_rotation(best[1], c, best[2]) if np.isfinite(best[0]) else transform

    def quasi_newton(self, transform: sitk.Euler3DTransform, level: int, samples: int,
                     evaluations: int) -> sitk.Euler3DTransform:
        """L-BFGS in numpy on one fixed sample set (:meth:`_SampledMetric.value_and_gradient`), in the rotation
        (scaled by the region's reach: mm moved at its edge) and the translation (mm) from ``transform``.
        Gradient descent zig-zags along a shallow valley (the spin about the neck axis) and crawled there
        to its iteration limit; a quasi-Newton step follows the valley."""
        import scipy.optimize

        metric = self.sampler(level, samples)
        A0 = np.asarray(transform.GetMatrix()).reshape(3, 3)
        c, t0 = np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation())
        reach = max(float(np.max(np.linalg.norm(metric.points - c, axis=1))), 1.0)

        def pose(x):
            w = x[:3] / reach
            angle = float(np.linalg.norm(w))
            return (A0 if angle == 0 else A0 @ _rotation_about(w / angle, math.degrees(angle))), t0 + x[3:]

        def f(x):  # the rotation gradient is taken at the pose (w after A): the derivative in x to first order
            A, t = pose(x)
            value, gradient = metric.value_and_gradient(A, c, t)
            if not np.isfinite(value):
                return 1e3, np.zeros(6)
            return value, np.r_[gradient[:3] / reach, gradient[3:]]

        start = metric.value(A0, c, t0)
        result = scipy.optimize.minimize(f, np.zeros(6), jac=True, method="L-BFGS-B",
                                         options={"maxiter": evaluations, "maxfun": evaluations, "ftol": 1e-6})
        # a budget, not a convergence test: what it leaves of the rotation shows in the error estimate (the
        # Newton step the model still asks for), and the two directions of the backward pass must agree;
        # not converged when it left the overlap
        self.converged = bool(np.isfinite(result.fun) and result.fun < 1e3)
        if not self.converged or (np.isfinite(start) and result.fun > start):
            return transform
        A, t = pose(result.x)
        return _euler_from_rotation(A, c, t)

    def final_metric(self, transform: sitk.Transform) -> float:
        """Native-grid metric on one fixed sample set (comparable between poses), in numpy: the sample set
        of the native rotation model (ITK's metric set-up re-reads a whole pelvis field, 0.6 s)."""
        return self.sampled(transform, self.native, NATIVE_MODEL_SAMPLES)


# ----------------------------------------------------------------------------- registration
def register_followup(
    fixed_image: sitk.Image,
    moving_image: sitk.Image,
    *,
    fixed_head: sitk.Image | None = None,
    moving_head: sitk.Image | None = None,
    fixed_lesion: sitk.Image | None = None,
    moving_lesion: sitk.Image | None = None,
    affine: bool = False,
    initial_transform: sitk.Transform | None = None,
) -> Registration:
    """Register a follow-up (moving) scan to the baseline (fixed) scan of the same hip.

    Parameters
    ----------
    fixed_image, moving_image : sitk.Image
        Baseline and follow-up, any grids, slice planes and thicknesses (physical LPS space).
    fixed_head, moving_head : sitk.Image, optional
        Femoral-head masks, each on its image's grid (a mask on another grid is refused; a
        caller that means to resample one does it first, nearest neighbour). With a baseline
        head the metric runs on the proximal femur around it (see the module docstring); with
        none, on the whole field, and ``registration_method`` says so.
    fixed_lesion, moving_lesion : sitk.Image, optional
        Lesion masks on their images' grids (may be empty: healed). Dilated by
        ``LESION_BAND_MM`` and kept out of the metric; without them the head interior is.
    affine : bool
        Add an affine (12-parameter) stage after the rigid one. Rigid is right for bone;
        affine absorbs scanner scaling/shear but also a collapsing head's deformation.
    initial_transform : sitk.Transform, optional
        A start (baseline → follow-up points) used instead of the data-driven starts; the
        data-driven start is still run as an independent check and wins when it ends better.

    Returns
    -------
    Registration
        ``transform`` maps baseline → follow-up points (ITK convention), ``qc`` (with
        ``registration_uncertainty_mm``) and ``doubtful``.

    Raises
    ------
    InputError
        Images that are not 3D scalar, an empty head mask, a mask not on its image's grid
        (:func:`lesionvol.io.check_same_grid`), or images that do not overlap.

    Example
    -------
    >>> from lesionvol.phantom import make_series
    >>> s = make_series(seed=4, n_followups=1, shape=(64, 64, 24), spacing_mm=(2.0, 2.0, 5.0))
    >>> reg = register_followup(s.scans[0].image, s.scans[1].image,
    ...                         fixed_head=s.scans[0].head_mask, moving_head=s.scans[1].head_mask)
    >>> p0, p1 = s.head_points_mm(0), s.head_points_mm(1)
    >>> tre = np.linalg.norm([np.subtract(reg.transform.TransformPoint(p), q) for p, q in zip(p0, p1)], axis=1)
    >>> bool(tre.mean() < 0.5)
    True
    """
    fixed_full, moving_full = _as_float(fixed_image), _as_float(moving_image)
    f_head = _binary(fixed_head, fixed_full, "baseline head mask")
    m_head = _binary(moving_head, moving_full, "follow-up head mask")
    f_lesion = _binary(fixed_lesion, fixed_full, "baseline lesion mask", allow_empty=True)
    m_lesion = _binary(moving_lesion, moving_full, "follow-up lesion mask", allow_empty=True)

    f_hip = _hip_from_mask(fixed_full, f_head) if f_head is not None else None
    m_hip = _hip_from_mask(moving_full, m_head) if m_head is not None else None
    # intensity centres: the whole field's rotation centre, or a follow-up without a head mask
    need_com = f_hip is None or m_hip is None
    f_com = _intensity_centre_mm(fixed_full) if need_com else None
    m_com = _intensity_centre_mm(moving_full) if need_com else None

    # ---- region and what is kept out of the metric
    if f_hip is not None:
        fixed, region, reach = _femur_region(fixed_full, f_hip)
        f_centre = f_hip.centre
        m_centre = m_hip.centre if m_hip is not None else f_centre + (m_com - f_com)
        half = reach + MOVING_MARGIN_MM
        moving = _crop_box(moving_full, m_centre - half, m_centre + half)
        if moving is None:
            raise InputError("registration refused: the images do not overlap (the follow-up holds nothing "
                             "around the baseline head)")
        method = METHOD_FEMUR if f_hip.neck_axis is not None else METHOD_BALL
    else:
        fixed, moving, region = fixed_full, moving_full, None
        f_centre, m_centre = f_com, (m_hip.centre if m_hip is not None else m_com)
        method = METHOD_FIELD
    lesions = f_lesion is not None or m_lesion is not None
    if lesions:
        method += f", lesions (+{LESION_BAND_MM:g} mm) kept out of the metric"
    elif f_head is not None or m_head is not None:
        method += f", head interior (deeper than {HEAD_CORE_MM:g} mm) kept out of the metric"
    # what is kept out, (baseline, follow-up): the lesions when any is given, else the head interiors
    lesion_masks, head_masks = ((f_lesion, m_lesion), (None, None)) if lesions else ((None, None), (f_head, m_head))
    fixed_mask = _metric_mask(fixed, region, lesion_masks[0], head_masks[0])
    moving_mask = _metric_mask(moving, None, lesion_masks[1], head_masks[1])
    # gradient descent on the whole field takes fixed steps (:meth:`_Problem.descend`)
    problem = _Problem(fixed, moving, fixed_mask, moving_mask, halve_steps=f_hip is not None)

    # ---- starts
    translation = m_centre - f_centre
    data_starts = [np.eye(3)] + [_axis_rotation(a, s * START_ANGLE_DEG) for a in range(3) for s in (-1, 1)]
    f_axis = f_hip.neck_axis if f_hip is not None else None
    m_axis = m_hip.neck_axis if m_hip is not None else None
    if f_axis is not None and m_axis is not None:
        align = _rotation_between(f_axis, m_axis)
        data_starts = [_rotation_about(m_axis, s) @ align for s in (0.0, -SPIN_DEG, SPIN_DEG)] + data_starts
    if f_hip is None:
        fa, ma = _principal_axes(fixed_full, f_com), _principal_axes(moving_full, m_com)
        if fa is not None and ma is not None:
            for signs in ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)):
                data_starts.append(ma @ np.diag(signs) @ fa.T)
    data_starts = [_euler_from_rotation(r, f_centre, translation) for r in data_starts]
    if initial_transform is not None:
        given = _as_euler(initial_transform, f_centre)
        starts = [given] + [_perturbed(given, _axis_rotation(a, s * START_ANGLE_DEG)) for a in range(3) for s in (-1, 1)]
        best, best_from = _best_start(problem, starts, f_hip is None)
        independent, independent_from = _best_start(problem, data_starts, f_hip is None)
    else:
        best, best_from = _best_start(problem, data_starts, f_hip is None)
        independent, independent_from = None, 0
    if best is None and independent is None:
        raise InputError("registration refused: the images do not overlap from any start")
    if best is None:
        best, best_from, independent = independent, independent_from, None
    # ---- coarse and 2 mm levels
    axes = _restart_axes(f_axis)
    if f_hip is not None:
        qc_points = np.vstack([f_hip.centre, f_hip.centre + f_hip.radius * _fibonacci_directions(N_HEAD_POINTS)])
    else:
        qc_points = _field_points(fixed_full, f_centre)
    schedule, same_basin = (SCHEDULE[:2] if f_hip is not None else THOROUGH_SCHEDULE), 0
    if independent is not None:
        apart = float(np.max(np.linalg.norm(_map(independent, qc_points) - _map(best, qc_points), axis=1)))
        if apart <= SAME_BASIN_MM:
            independent, same_basin = None, 1  # both starts ended the coarsest level together: not run on
        else:  # they must be compared: both converged as far as THOROUGH_SCHEDULE (a short 2 mm level left
            schedule = THOROUGH_SCHEDULE          # them 1-2 mm apart along the spin, a false tie)
    transform = problem.optimise(best, schedule[best_from:], first_level=best_from)
    # ---- the rotation about the head centre: Newton steps on a quadratic model of the metric (gradient
    # descent crawls along the spin about the neck axis, which only the trochanter and shaft fix)
    transform, model = _newton_rotation(problem, transform, axes)
    candidates = []
    if independent is not None:
        other, _ = _newton_rotation(problem, problem.optimise(independent, schedule[independent_from:],
                                                              first_level=independent_from), axes)
        candidates.append(("independent start", other))
    # ---- other minima along the least constrained rotation: a profile of RESTART_DEG steps; a dip
    # as low as the result (or lower) is optimised from there
    metric = model[0]
    weak = _weakest_axis(model[2], axes)
    profile = [(k * RESTART_DEG, _perturbed(transform, _rotation_about(weak, k * RESTART_DEG))) for k in PROFILE_STEPS]
    values = {a: problem.sampled(t, 1, MODEL_SAMPLES) for a, t in profile}
    values[0.0] = metric
    for angle, t in profile:
        neighbours = [values.get(angle + d * RESTART_DEG, np.inf) for d in (-1, 1)]
        v = values[angle]
        if np.isfinite(v) and v <= metric + METRIC_TIE_FRACTION * abs(metric) and v <= min(neighbours):
            other, _ = _newton_rotation(problem, problem.optimise(t, [RESTART_SCHEDULE], first_level=1), axes)
            candidates.append(("restart", other))
    scored = [(kind, t, problem.sampled(t, 1, MODEL_SAMPLES)) for kind, t in candidates]
    finite = [c for c in scored if np.isfinite(c[2])]
    winner = min(finite, key=lambda c: c[2], default=None)
    if winner is not None and (not np.isfinite(metric) or winner[2] < metric - METRIC_TIE_FRACTION * abs(metric)):
        scored = [c for c in scored if c[1] is not winner[1]] + [("first result", transform, metric)]
        transform, metric = winner[1], winner[2]
        _, model = _newton_rotation(problem, transform, axes, steps=0)
    here = _map(transform, qc_points)
    distances = [float(np.max(np.linalg.norm(_map(t, qc_points) - here, axis=1))) for _, t, _ in scored]
    tied = [np.isfinite(m) and m <= metric + METRIC_TIE_FRACTION * abs(metric) for _, _, m in scored]
    agreeing = sum(1 for d in distances if d <= AGREE_MM) + same_basin
    native = problem.native

    def finish(t):
        """The native grid: optimiser, then (whole field) a Newton step in the translation, Newton steps in
        the rotation; the transform, the rotation model at the end, and whether the native optimiser converged
        (rather than stopping at its iteration limit)."""
        problem.match_resolution(t)
        t = problem.optimise(t, SCHEDULE[2:] if f_hip is not None else [FIELD_NATIVE], first_level=2)
        converged = problem.converged
        if f_hip is None:
            # whole field: nothing pins the translation at the (unknown) head as a head region does, and a
            # field that stopped short is off by a shift: a Newton step in the translation
            t = _newton_translation(problem, t, native, NATIVE_MODEL_SAMPLES)
        t, rotation = _newton_rotation(problem, t, axes, steps=NATIVE_NEWTON_STEPS, level=native,
                                       samples=NATIVE_MODEL_SAMPLES)
        return t, rotation, converged

    # ---- native grid: Newton steps in the rotation again, and the uncertainty from the model there
    transform, model, converged = finish(transform)
    # a start that ended the 2 mm level as good as the result but apart from it is carried to the native grid
    # too and compared there (on the 2 mm level both may still sit anywhere along a shallow spin: false ties)
    ties = []
    for (kind, t, m), d, tie in zip(scored, distances, tied):
        if not tie:
            continue
        if d <= AGREE_MM:
            ties.append(d)
            continue
        other, other_model, other_converged = finish(t)
        v, mine = other_model[0], model[0]
        d = float(np.max(np.linalg.norm(_map(other, qc_points) - _map(transform, qc_points), axis=1)))
        if np.isfinite(v) and (not np.isfinite(mine) or v < mine - METRIC_TIE_FRACTION * abs(mine)):
            transform, model, converged = other, other_model, other_converged   # clearly better on the native grid
        elif np.isfinite(v) and v <= mine + METRIC_TIE_FRACTION * abs(mine):
            if d <= AGREE_MM:
                agreeing += 1
            ties.append(d)
            if v < mine:   # a tie: the lower of the two is kept, their distance counts in the uncertainty
                transform, model, converged = other, other_model, other_converged
    if f_hip is not None:
        curvature_mm, residual_mm = _model_error_mm(model, axes, np.asarray(transform.GetCenter()), qc_points)
        estimate = curvature_mm + residual_mm
        # the native level run backwards too (follow-up as the fixed image), and the result half-way between
        back = _backward(fixed_full, moving_full, f_hip, transform, axes, qc_points, lesion_masks, head_masks)
        if back is None:  # the follow-up holds too little of the femur region: the forward result alone
            method += ", backward pass impossible (too little of the region in the follow-up)"
        else:
            backward, b_estimate, b_converged = back
            apart = float(np.max(np.linalg.norm(_map(backward, qc_points) - _map(transform, qc_points), axis=1)))
            transform, converged = _midway(transform, backward), converged and b_converged
            estimate = max(estimate, b_estimate, apart / 2)
    else:  # whole field: how far the optimum moves between independent sample sets (see _field_spread_mm)
        estimate = FIELD_SPREAD_FACTOR * _field_spread_mm(problem, transform, axes, model, qc_points, native)
        # plus what the sample sets cannot show: the optimum's dependence on the slice profile (see PROFILE_FACTOR)
        estimate = max(estimate, PROFILE_FACTOR * _profile_shift_mm(problem, transform, axes, qc_points))
    uncertainty = min(max([estimate] + ties), UNBOUNDED_MM)  # finite: JSON and CSV
    metric = problem.final_metric(transform)

    if affine:
        aff = sitk.AffineTransform(3)
        aff.SetCenter(transform.GetCenter())
        aff.SetMatrix(transform.GetMatrix())
        aff.SetTranslation(transform.GetTranslation())
        # one pass on the 2 mm level: 12 parameters make Powell slow on the native grid
        iterations, step, tolerance, samples = AFFINE_SCHEDULE
        reg, lv = problem._reg(1, samples, "powell", step, iterations=iterations, tolerance=tolerance)
        reg.SetInitialTransform(aff, inPlace=True)
        reg.Execute(lv.fixed, lv.moving)
        transform = aff
        metric = problem.final_metric(transform)
        method = method.replace("rigid 6-DOF", "rigid + affine")

    overlap = _overlap_fraction(fixed_full, moving_full, transform)
    if overlap < REFUSE_OVERLAP_FRACTION:
        raise InputError(f"registration refused: the images do not overlap ({100 * overlap:.1f} % of the smaller "
                         "field of view lies in the other after the best alignment)")
    qc = registration_qc(transform, fixed_head=f_head, moving_head=m_head, metric=metric, affine=affine,
                         method=method, uncertainty_mm=uncertainty, restarts=(agreeing, len(scored) + same_basin),
                         correlation=_correlation(problem, transform), overlap=overlap,
                         neck_axes=(f_axis, m_axis), converged=converged)
    return Registration(transform=transform, qc=qc, doubtful=bool(qc["registration_doubtful"]))


def _metric_mask(image: sitk.Image, region: sitk.Image | None, lesion: sitk.Image | None,
                 head: sitk.Image | None) -> sitk.Image | None:
    """The metric mask on ``image``'s grid: ``region`` (or everywhere) less the lesion dilated by
    LESION_BAND_MM, or less the head interior deeper than HEAD_CORE_MM when no lesion is given."""
    keep_out = None
    if lesion is not None:
        keep_out = _within_mm(_on_grid(lesion, image), LESION_BAND_MM)
    elif head is not None:
        keep_out = _deeper_than_mm(_on_grid(head, image), HEAD_CORE_MM)
    if keep_out is None:
        return region
    keep = sitk.GetArrayViewFromImage(keep_out) == 0
    if region is not None:
        keep &= sitk.GetArrayViewFromImage(region) != 0
    mask = sitk.GetImageFromArray(keep.astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def _backward(fixed_full: sitk.Image, moving_full: sitk.Image, f_hip: _Hip, transform: sitk.Euler3DTransform, axes,
              qc_points: np.ndarray, lesions, heads) -> tuple[sitk.Euler3DTransform, float, bool] | None:
    """The native level run backwards from ``transform``: the follow-up's proximal femur (the baseline's
    region carried over by ``transform``) registered to the baseline, with the same keep-outs
    (``lesions``, ``heads``: baseline, follow-up). Returns it inverted (baseline -> follow-up points), its
    error estimate at ``qc_points`` (:func:`_model_error_mm`) and whether its optimiser converged; None
    when the follow-up holds too little of the region."""
    A = np.asarray(transform.GetMatrix()).reshape(3, 3)
    axis = None if f_hip.neck_axis is None else A @ f_hip.neck_axis
    m_hip = _Hip(_map(transform, f_hip.centre[None])[0], f_hip.radius, axis)
    try:
        fixed, region, reach = _femur_region(moving_full, m_hip)
        half = reach + MOVING_MARGIN_MM
        moving = _crop_box(fixed_full, f_hip.centre - half, f_hip.centre + half)
        problem = _Problem(fixed, moving, _metric_mask(fixed, region, lesions[1], heads[1]),
                           _metric_mask(moving, None, lesions[0], heads[0]), levels=False)
    except InputError:
        return None
    b_axes = [A @ np.asarray(a, float) for a in axes]
    start = _as_euler(transform.GetInverse(), m_hip.centre)
    problem.match_resolution(start)
    t = problem.quasi_newton(start, problem.native, NATIVE_MODEL_SAMPLES, BACKWARD_EVALUATIONS)
    converged = problem.converged
    t, model = _newton_rotation(problem, t, b_axes, steps=NATIVE_NEWTON_STEPS, level=problem.native,
                                samples=NATIVE_MODEL_SAMPLES)
    curvature_mm, residual_mm = _model_error_mm(model, b_axes, m_hip.centre, _map(transform, qc_points))
    return _as_euler(t.GetInverse(), f_hip.centre), curvature_mm + residual_mm, converged


def _midway(a: sitk.Euler3DTransform, b: sitk.Euler3DTransform) -> sitk.Euler3DTransform:
    """The rigid transform half-way between ``a`` and ``b`` (same centre): mean rotation, mean image
    of the centre."""
    c = np.asarray(a.GetCenter())
    matrix = (np.asarray(a.GetMatrix()) + np.asarray(b.GetMatrix())).reshape(3, 3) / 2
    mid = (np.asarray(a.TransformPoint([float(v) for v in c])) + np.asarray(b.TransformPoint([float(v) for v in c]))) / 2
    return _euler_from_rotation(matrix, c, mid - c)


def _rotation_model(problem: "_Problem", transform: sitk.Euler3DTransform, axes, level: int, samples: int,
                    h_deg: float, seed: int = 17, hessian: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Quadratic model of the metric in the rotation about the transform's centre (the head centre):
    value, gradient (per degree) and Hessian (per degree squared) along ``axes``, by central
    differences of step ``h_deg`` on one fixed sample set (19 metric evaluations; 7 when a
    ``hessian`` is given, which is then kept: the gradient alone is new)."""
    axes = np.column_stack([np.asarray(a, float) for a in axes])
    metric = problem.sampler(level, samples, seed)
    A = np.asarray(transform.GetMatrix()).reshape(3, 3)
    c, t = np.asarray(transform.GetCenter()), np.asarray(transform.GetTranslation())

    def f(delta):
        v = axes @ delta
        angle = float(np.linalg.norm(v))
        return metric.value(A if angle == 0 else A @ _rotation_about(v / angle, angle), c, t)

    return _central_model(f, h_deg, hessian)


def _central_model(f, h: float, hessian: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Value, gradient and Hessian of ``f`` (a function of a 3-vector) at 0 by central differences
    of step ``h`` (19 evaluations; 7 when ``hessian`` is given and kept)."""
    f0 = f(np.zeros(3))
    g, H = np.zeros(3), np.zeros((3, 3))
    e = np.eye(3) * h
    plus = [f(e[i]) for i in range(3)]
    minus = [f(-e[i]) for i in range(3)]
    for i in range(3):
        g[i] = (plus[i] - minus[i]) / (2 * h)
        H[i, i] = (plus[i] + minus[i] - 2 * f0) / h**2
    if hessian is not None:
        return f0, g, hessian
    for i in range(3):
        for j in range(i + 1, 3):
            H[i, j] = H[j, i] = (f(e[i] + e[j]) - f(e[i] - e[j]) - f(-e[i] + e[j]) + f(-e[i] - e[j])) / (4 * h**2)
    return f0, g, H


def _rotation_step(transform: sitk.Euler3DTransform, axes, delta_deg: np.ndarray) -> sitk.Euler3DTransform:
    v = sum(float(d) * np.asarray(a, float) for d, a in zip(delta_deg, axes))
    angle = float(np.linalg.norm(v))
    return _perturbed(transform, np.eye(3) if angle == 0 else _rotation_about(v / angle, angle))


def _newton_rotation(problem: "_Problem", transform: sitk.Euler3DTransform, axes, steps: int | None = None,
                     level: int = 1, samples: int = MODEL_SAMPLES):
    """Up to ``steps`` (default NEWTON_STEPS) Newton steps in the rotation about the transform's
    centre on the 2 mm level, each kept only if the metric drops; returns the transform and the
    quadratic model (value, gradient, Hessian) at it. The Hessian is measured at the start and kept
    while the steps since it add up to less than REUSE_HESSIAN_DEG (a quasi-Newton iteration: only
    the gradient is measured again, 7 evaluations instead of 19); past that it is measured anew."""
    steps = NEWTON_STEPS if steps is None else steps
    model = _rotation_model(problem, transform, axes, level, samples, MODEL_STEP_DEG)
    moved = 0.0
    for _ in range(steps):
        f0, g, H = model
        if not np.isfinite(f0):
            break
        delta = _newton_delta(g, H, abs(f0))
        if np.linalg.norm(delta) < 0.05:
            break
        candidate = _rotation_step(transform, axes, delta)
        if not problem.sampled(candidate, level, samples) < f0:
            break
        transform, moved = candidate, moved + float(np.linalg.norm(delta))
        keep = H if moved < REUSE_HESSIAN_DEG else None
        model = _rotation_model(problem, transform, axes, level, samples, MODEL_STEP_DEG, hessian=keep)
        if keep is None:
            moved = 0.0
    return transform, model


def _newton_delta(g: np.ndarray, H: np.ndarray, scale: float) -> np.ndarray:
    """Newton step (degrees) of a quadratic model, curvatures floored (flat or concave directions
    take a bounded step downhill), at most NEWTON_MAX_DEG long."""
    w, V = np.linalg.eigh(H)
    w = np.maximum(w, MIN_CURVATURE * scale)
    delta = -V @ ((V.T @ g) / w)
    n = float(np.linalg.norm(delta))
    return delta * (NEWTON_MAX_DEG / n) if n > NEWTON_MAX_DEG else delta


def _weakest_axis(H: np.ndarray, axes) -> np.ndarray:
    """Physical rotation axis along which the metric's curvature is smallest."""
    w, V = np.linalg.eigh(H)
    v = sum(V[i, 0] * np.asarray(a, float) for i, a in enumerate(axes))
    return v / np.linalg.norm(v)


def _model_error_mm(model, axes, centre: np.ndarray, points: np.ndarray,
                    tolerance: float = MODEL_TOLERANCE) -> tuple[float, float]:
    """Error at ``points`` allowed by the quadratic model of the rotation about ``centre``.

    Curvature term: the largest displacement of any point over the rotations whose metric lies
    within ``tolerance`` · |metric| of the optimum (the ellipsoid δᵀHδ/2 ≤ tol; a flat or
    concave direction makes it infinite). Residual term: the largest displacement by the Newton
    step the model still asks for (an optimum not reached)."""
    f0, g, H = model
    if not np.isfinite(f0) or not np.all(np.isfinite(H)):
        return float("inf"), 0.0
    B = np.column_stack([np.asarray(a, float) for a in axes]) * (math.pi / 180)  # degrees -> rotation vector
    w, V = np.linalg.eigh(H)
    if w[0] <= MIN_CURVATURE * abs(f0):
        return float("inf"), 0.0
    half = V @ np.diag(1 / np.sqrt(w)) @ V.T                 # H^(-1/2)
    bound = math.sqrt(2 * tolerance * abs(f0))
    r = points - centre
    worst = []
    for q in r:
        skew = np.array([[0, q[2], -q[1]], [-q[2], 0, q[0]], [q[1], -q[0], 0]])  # δ × q = skew · δ
        worst.append(bound * float(np.linalg.norm(skew @ B @ half, 2)))
    step = B @ _newton_delta(g, H, abs(f0))
    moved = np.linalg.norm(np.cross(step, r), axis=1)
    return float(max(worst)), float(np.max(moved))


def _translation_model(problem: "_Problem", transform: sitk.Euler3DTransform, level: int, samples: int,
                       h_mm: float, seed: int = 17, hessian: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Quadratic model of the metric in the translation (value, gradient per mm, Hessian per mm²),
    central differences of step ``h_mm`` on one fixed sample set (19 metric evaluations; 7 when a
    ``hessian`` is given and kept)."""
    def f(delta):
        t = sitk.Euler3DTransform(transform)
        t.SetTranslation([float(v) for v in np.asarray(transform.GetTranslation()) + delta])
        return problem.sampled(t, level, samples, seed)

    return _central_model(f, h_mm, hessian)


def _newton_translation(problem: "_Problem", transform: sitk.Euler3DTransform, level: int,
                        samples: int) -> sitk.Euler3DTransform:
    """One Newton step in the translation, kept only if the metric drops."""
    f0, g, H = _translation_model(problem, transform, level, samples, MODEL_STEP_MM)
    if np.isfinite(f0):
        delta = _newton_delta(g, H, abs(f0))
        if np.linalg.norm(delta) >= 0.02:
            t = sitk.Euler3DTransform(transform)
            t.SetTranslation([float(v) for v in np.asarray(transform.GetTranslation()) + delta])
            if problem.sampled(t, level, samples) < f0:
                transform = t
    return transform


def _flat(model) -> bool:
    """Whether a quadratic model (value, gradient, Hessian) is unusable: not finite, or flat or concave in a
    direction."""
    f0, _, H = model
    return not np.isfinite(f0) or not np.all(np.isfinite(H)) or np.linalg.eigvalsh(H)[0] <= MIN_CURVATURE * abs(f0)


def _newton_move_mm(transform: sitk.Euler3DTransform, axes, points: np.ndarray, rotation, rotation_model,
                    shift, shift_model) -> float:
    """The largest displacement at ``points`` by one Newton step in the rotation (gradient of ``rotation``,
    Hessian and scale of ``rotation_model``) and one in the translation (likewise), to first order:
    x -> A R(w) (x - c) + c + t + d."""
    B = np.column_stack([np.asarray(a, float) for a in axes]) * (math.pi / 180)   # degrees -> rotation vector
    A = np.asarray(transform.GetMatrix()).reshape(3, 3)
    w = B @ _newton_delta(rotation[1], rotation_model[2], abs(rotation_model[0]))
    d = _newton_delta(shift[1], shift_model[2], abs(shift_model[0]))
    moved = np.cross(w, points - np.asarray(transform.GetCenter())) @ A.T + d
    return float(np.max(np.linalg.norm(moved, axis=1)))


def _field_spread_mm(problem: "_Problem", transform: sitk.Euler3DTransform, axes, rotation_model, points: np.ndarray,
                     level: int) -> float:
    """Whole field: the largest displacement at ``points`` between the result and the optimum of the metric
    on each of FIELD_SEEDS (independent sample sets of the native grid; the first is the set the result was
    refined on, so its term is the Newton step still asked for), each reached by one Newton step in the
    rotation and one in the translation (the Hessians of the first set, kept: they differ little between
    sets). How far the data let the optimum wander; inf when the metric is flat or concave in a direction."""
    samples = NATIVE_MODEL_SAMPLES
    shift_model = _translation_model(problem, transform, level, samples, MODEL_STEP_MM)
    if _flat(rotation_model) or _flat(shift_model):
        return float("inf")
    worst = 0.0
    for seed in FIELD_SEEDS:
        if seed == FIELD_SEEDS[0]:
            rot, shift = rotation_model, shift_model
        else:
            rot = _rotation_model(problem, transform, axes, level, samples, MODEL_STEP_DEG, seed, hessian=rotation_model[2])
            shift = _translation_model(problem, transform, level, samples, MODEL_STEP_MM, seed, hessian=shift_model[2])
        if not (np.isfinite(rot[0]) and np.isfinite(shift[0])):
            return float("inf")
        worst = max(worst, _newton_move_mm(transform, axes, points, rot, rotation_model, shift, shift_model))
    return worst


def _profile_shift_mm(problem: "_Problem", transform: sitk.Euler3DTransform, axes, points: np.ndarray) -> float:
    """How far the optimum moves at ``points`` when the native images are compared as they are rather than
    resolution-matched (:meth:`_Problem.match_resolution`): one Newton step in the rotation and one in the
    translation from the result on the unmatched images. What the slices cannot resolve: the metric's
    optimum depends on the slice profile assumed (a box of one spacing), which the data do not give; 0 when
    the native level was not matched; inf when the metric there is flat or concave in a direction."""
    if not problem.matched:
        return 0.0
    level = problem.native + 1
    rotation = _rotation_model(problem, transform, axes, level, NATIVE_MODEL_SAMPLES, MODEL_STEP_DEG)
    shift = _translation_model(problem, transform, level, NATIVE_MODEL_SAMPLES, MODEL_STEP_MM)
    if _flat(rotation) or _flat(shift):
        return float("inf")
    return _newton_move_mm(transform, axes, points, rotation, rotation, shift, shift)


def _restart_axes(neck_axis: np.ndarray | None) -> list[np.ndarray]:
    """Three orthogonal rotation axes for the rotation model: the neck axis first, when known."""
    first = np.asarray(neck_axis, float) if neck_axis is not None else np.array([1.0, 0.0, 0.0])
    helper = np.eye(3)[int(np.argmin(np.abs(first)))]
    second = np.cross(first, helper)
    second /= np.linalg.norm(second)
    return [first, second, np.cross(first, second)]


def _as_euler(transform: sitk.Transform, centre: np.ndarray) -> sitk.Euler3DTransform:
    """A rigid start from any transform (its linear part projected onto a rotation), centred at ``centre``."""
    try:
        t = sitk.Euler3DTransform(transform)  # Euler3D, VersorRigid3D, ...
        mapped = np.asarray(t.TransformPoint([float(v) for v in centre]))
        matrix = np.asarray(t.GetMatrix()).reshape(3, 3)
    except (RuntimeError, TypeError):
        mapped = np.asarray(transform.TransformPoint([float(v) for v in centre]))
        cols = [np.asarray(transform.TransformPoint([float(v) for v in centre + e])) - mapped for e in np.eye(3)]
        matrix = np.column_stack(cols)
    return _euler_from_rotation(matrix, centre, mapped - centre)


def _best_start(problem: _Problem, starts: list, whole_field: bool = False) -> tuple[sitk.Euler3DTransform | None, int]:
    """Score starts on the coarsest level, optimise the best N_CANDIDATES there, return the best
    and the level the caller optimises it on from: the coarsest again when it hit START_SCHEDULE's
    iteration cap (it goes on converging there, at 4 mm, cheaply), else the next (running the
    coarsest level again on a converged pose cost 10 iterations, the convergence window, for
    nothing). Scores are taken in numpy on one fixed sample set (:class:`_SampledMetric`; ITK's
    metric costs a set-up per call). ``whole_field``: the FIELD_CANDIDATES best are optimised with
    START_SCHEDULE, and the N_CANDIDATES best of them are taken on to the end of the coarsest level
    (THOROUGH_SCHEDULE's first level) before one is kept."""
    scored = [(problem.sampled(t, 0, START_SAMPLES), i) for i, t in enumerate(starts)]
    scored = sorted((v, i) for v, i in scored if np.isfinite(v))[:FIELD_CANDIDATES if whole_field else N_CANDIDATES]

    def optimised(poses: list, schedule: list) -> list:
        """(metric, pose, converged) of each pose optimised with ``schedule``, the best first."""
        out = []
        for t in poses:
            t = problem.optimise(t, schedule)
            v = problem.sampled(t, 0, START_SAMPLES)
            if np.isfinite(v):
                out.append((v, t, problem.converged))
        return sorted(out, key=lambda c: c[0])

    ended = optimised([starts[i] for _, i in scored], [START_SCHEDULE])
    if whole_field:
        ended = optimised([t for _, t, _ in ended[:N_CANDIDATES]], THOROUGH_SCHEDULE[:1])
    return (None, 0) if not ended else (ended[0][1], 1 if ended[0][2] else 0)


def _anatomy_points(image: sitk.Image, n: int = 400) -> np.ndarray:
    """Up to ``n`` points spread over the bright (tissue) voxels of an image, mm."""
    array = sitk.GetArrayViewFromImage(image)
    zyx = np.argwhere(_foreground(array))
    if len(zyx) == 0:
        zyx = np.argwhere(np.ones(array.shape, bool))
    pick = np.linspace(0, len(zyx) - 1, min(n, len(zyx))).astype(int)
    return physical_points(image, zyx[pick])


def _field_points(image: sitk.Image, centre: np.ndarray) -> np.ndarray:
    """Where the head may be when none is given: points of the scanned anatomy within
    FIELD_REACH_MM of its intensity centre (a field of one hip), or anywhere in it when the field is
    wide enough to hold both hips (the heads are then far out on either side)."""
    points = _anatomy_points(image, 2000)
    if field_width_mm(image) >= BOTH_HIPS_FIELD_MM:
        return points
    near = points[np.linalg.norm(points - centre, axis=1) <= FIELD_REACH_MM]
    return near if len(near) >= 10 else points


def _overlap_fraction(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Fraction of the smaller field of view that lies in the other field after registration
    (estimated on a 12³ lattice of each field)."""
    def index_to_physical(image):
        M = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
        return M, np.asarray(image.GetOrigin())

    def lattice(image):
        g = [np.linspace(0, s - 1, 12) for s in image.GetSize()]
        idx = np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
        M, o = index_to_physical(image)
        return idx @ M.T + o

    def inside(image, points):
        M, o = index_to_physical(image)
        idx = (points - o) @ np.linalg.inv(M).T
        return np.all((idx >= -0.5) & (idx <= np.asarray(image.GetSize()) - 0.5), axis=1)

    f_in_m = inside(moving, _map(transform, lattice(fixed))).mean()
    inverse = transform.GetInverse()
    m_in_f = inside(fixed, _map(inverse, lattice(moving))).mean()
    v_f = np.prod(np.asarray(fixed.GetSize()) * fixed.GetSpacing())
    v_m = np.prod(np.asarray(moving.GetSize()) * moving.GetSpacing())
    return float(f_in_m if v_f <= v_m else m_in_f)


def _correlation(problem: _Problem, transform: sitk.Transform) -> float:
    """Pearson correlation of the baseline and the registered follow-up over the metric region (native grid,
    every other voxel along each axis: a whole pelvis field has millions)."""
    lv = problem.levels[problem.native]
    every_other = sitk.Image([(n + 1) // 2 for n in lv.fixed.GetSize()], sitk.sitkUInt8)
    every_other.SetOrigin(lv.fixed.GetOrigin())
    every_other.SetDirection(lv.fixed.GetDirection())
    every_other.SetSpacing([2.0 * s for s in lv.fixed.GetSpacing()])
    moved = sitk.Resample(lv.moving, every_other, transform, sitk.sitkLinear, float("nan"), sitk.sitkFloat32)
    a = sitk.GetArrayViewFromImage(lv.fixed)[::2, ::2, ::2].ravel()
    b = sitk.GetArrayViewFromImage(moved).ravel()
    keep = np.isfinite(b)
    if lv.fixed_mask is not None:
        keep &= sitk.GetArrayViewFromImage(lv.fixed_mask)[::2, ::2, ::2].ravel() != 0
    if lv.moving_mask is not None:
        inside = sitk.Resample(lv.moving_mask, every_other, transform, sitk.sitkNearestNeighbor, 1, sitk.sitkUInt8)
        keep &= sitk.GetArrayViewFromImage(inside).ravel() != 0
    if keep.sum() < 10 or np.std(a[keep]) == 0 or np.std(b[keep]) == 0:
        return float("nan")
    return float(np.corrcoef(a[keep], b[keep])[0, 1])


# ----------------------------------------------------------------------------- quality control
def dice(a: sitk.Image, b: sitk.Image) -> float:
    """Dice overlap of two binary masks on the same grid.

    Example
    -------
    >>> a = sitk.Image([4, 4, 4], sitk.sitkUInt8); a[0:2, :, :] = 1
    >>> b = sitk.Image(a); b[0:1, :, :] = 0
    >>> round(dice(a, b), 3)
    0.667
    """
    x = sitk.GetArrayViewFromImage(a) != 0
    y = sitk.GetArrayViewFromImage(b) != 0
    total = int(x.sum()) + int(y.sum())
    return 2.0 * int(np.logical_and(x, y).sum()) / total if total else float("nan")


def registration_qc(
    transform: sitk.Transform,
    *,
    fixed_head: sitk.Image | None = None,
    moving_head: sitk.Image | None = None,
    metric: float = float("nan"),
    affine: bool = False,
    method: str | None = None,
    uncertainty_mm: float = float("nan"),
    restarts: tuple[int, int] | None = None,
    correlation: float = float("nan"),
    overlap: float = float("nan"),
    neck_axes: tuple = (None, None),
    converged: bool = True,
) -> dict:
    """QC figures of a registration, as flat ``volumes.csv`` columns.

    ``registration_metric`` is the final Mattes mutual information (negative; lower is
    better); ``registration_uncertainty_mm`` the estimated error at the head (restarts, see the
    module docstring); ``registration_correlation`` and ``registration_overlap_fraction`` how
    well and how much the registered images match; ``neck_axis_angle_deg`` the angle between
    the mapped baseline neck axis and the follow-up one. With both head masks:
    ``head_dice_registered`` (Dice of the baseline head and the follow-up head resampled
    through the transform), ``head_volume_change_pct`` (native grids) and
    ``head_centre_residual_mm`` (mapped baseline head centroid to follow-up head centroid).
    ``registration_doubtful`` when any of them crosses its limit (``REGISTRATION_DEFINITIONS``);
    figures that were not computed (nan) cross none.

    Example
    -------
    >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[5:15, 5:15, 5:15] = 1
    >>> qc = registration_qc(sitk.Euler3DTransform(), fixed_head=head, moving_head=head, metric=-0.5)
    >>> qc["head_dice_registered"], qc["registration_doubtful"]
    (1.0, False)
    >>> registration_qc(sitk.Euler3DTransform(), metric=-0.5, uncertainty_mm=3.2)["registration_doubtful_reason"]
    'estimated error at the head up to 3.2 mm > 1.0 mm (the metric is flat in a rotation about the head centre, or another start ends elsewhere as good)'
    """
    nan = float("nan")
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3) if hasattr(transform, "GetMatrix") else np.eye(3)
    rotation = _nearest_rotation(matrix)
    angle = math.degrees(math.acos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    if method is None:
        method = METHOD_FEMUR.replace("rigid 6-DOF", "rigid + affine") if affine else METHOD_FEMUR
    f_axis, m_axis = neck_axes
    neck_angle = nan
    if f_axis is not None and m_axis is not None:
        neck_angle = math.degrees(math.acos(np.clip(float((rotation @ f_axis) @ m_axis), -1, 1)))
    qc: dict = {
        "registration_method": method,
        "registration_metric": float(metric),
        "registration_rotation_deg": angle,
        "registration_uncertainty_mm": float(uncertainty_mm),
        "registration_restarts_agreeing": f"{restarts[0]}/{restarts[1]}" if restarts else "",
        "registration_correlation": float(correlation),
        "registration_overlap_fraction": float(overlap),
        "neck_axis_angle_deg": neck_angle,
        "head_dice_registered": nan,
        "head_volume_change_pct": nan,
        "head_centre_residual_mm": nan,
    }
    reasons = []
    if uncertainty_mm > MAX_UNCERTAINTY_MM:
        why = ("the optimum moves between independent sample sets, or another start ends elsewhere as good"
               if "whole field" in method else
               "the metric is flat in a rotation about the head centre, or another start ends elsewhere as good")
        reasons.append(f"estimated error at the head up to {uncertainty_mm:.1f} mm > {MAX_UNCERTAINTY_MM} mm ({why})")
    if not converged:
        reasons.append("the optimiser on the native grid did not converge (stopped at its iteration limit or left "
                       "the overlap)")
    if neck_angle > MAX_NECK_AXIS_DEG:
        reasons.append(f"neck axes {neck_angle:.0f} deg apart after registration")
    if fixed_head is not None and moving_head is not None:
        moved = sitk.Resample(moving_head, fixed_head, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        qc["head_dice_registered"] = dice(fixed_head, moved)
        v_f = np.count_nonzero(sitk.GetArrayViewFromImage(fixed_head)) * voxel_volume_mm3(fixed_head)
        v_m = np.count_nonzero(sitk.GetArrayViewFromImage(moving_head)) * voxel_volume_mm3(moving_head)
        qc["head_volume_change_pct"] = 100.0 * (v_m - v_f) / v_f
        mapped = np.asarray(transform.TransformPoint([float(v) for v in mask_centroid_mm(fixed_head)]))
        qc["head_centre_residual_mm"] = float(np.linalg.norm(mapped - mask_centroid_mm(moving_head)))
        if qc["head_dice_registered"] < MIN_HEAD_DICE:
            reasons.append(f"head Dice {qc['head_dice_registered']:.2f} < {MIN_HEAD_DICE}")
        if abs(qc["head_volume_change_pct"]) > MAX_HEAD_VOLUME_CHANGE_PCT:
            reasons.append(f"head volume changed {qc['head_volume_change_pct']:+.1f} % (collapse or mask error?)")
        if qc["head_centre_residual_mm"] > MAX_HEAD_CENTRE_RESIDUAL_MM:
            reasons.append(f"head centres {qc['head_centre_residual_mm']:.1f} mm apart after registration")
    if correlation < MIN_CORRELATION:
        reasons.append(f"registered images correlate {correlation:.2f} < {MIN_CORRELATION}")
    if overlap < MIN_OVERLAP_FRACTION:
        reasons.append(f"fields of view overlap {100 * overlap:.0f} % < {100 * MIN_OVERLAP_FRACTION:.0f} %")
    if not metric <= MAX_METRIC:
        reasons.append(f"metric {metric:.3f} > {MAX_METRIC} (little shared information)")
    qc["registration_doubtful"] = bool(reasons)
    qc["registration_doubtful_reason"] = "; ".join(reasons)
    return qc


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt


def target_registration_error_mm(transform: sitk.Transform, fixed_points_mm, moving_points_mm) -> np.ndarray:
    """Distance (mm) between mapped baseline points and their true follow-up positions.

    Example
    -------
    >>> t = sitk.TranslationTransform(3, (1.0, 0.0, 0.0))
    >>> target_registration_error_mm(t, [[0, 0, 0]], [[1, 0, 2]])
    array([2.])
    """
    mapped = np.array([transform.TransformPoint([float(v) for v in p]) for p in np.asarray(fixed_points_mm, float)])
    return np.linalg.norm(mapped - np.asarray(moving_points_mm, float), axis=1)
