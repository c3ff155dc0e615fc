"""Rigid (or affine) registration of a follow-up scan to the baseline, per hip, with QC.

The transform follows ITK's convention: it maps points of the *fixed* image (baseline)
to the same anatomical points of the *moving* image (follow-up), in physical LPS mm.
It is what :func:`SimpleITK.Resample` needs to bring a follow-up mask onto the baseline
grid, and what ``sitk.WriteTransform`` writes as a ``.tfm`` that 3D Slicer and ITK read.

How it works
------------
1. **Region.** When femoral-head masks are given, both images are cropped to the head plus
   ``CROP_MARGIN_MM`` (head, neck, trochanter, acetabulum): the hip drives the registration,
   not the rest of the field of view. Restricting the metric to the head itself failed on the
   phantoms (a ball does not fix a rotation and the lesion inside it changes between visits).
2. **Initialisation** that survives large moves: the rotation centre is the baseline head
   centre (head-mask centroid, else intensity centre of mass) and the initial translation
   brings it onto the follow-up head centre. Seven rotation starts (identity, ±
   ``START_ANGLE_DEG`` about each axis) are scored on the coarsest level; the best one wins.
3. **Multi-resolution** (own pyramid in mm, so 1 × 1 × 5 mm grids are not shrunk into
   20 mm slices): smoothed, resampled copies at ``LEVEL_SPACING_MM``, then the native
   grids. Mattes mutual information tolerates the contrast change between visits and
   sequences. Gradient descent on the two coarse levels (step length re-estimated every
   iteration so that no point moves more than a set number of mm), regular-step gradient
   descent with a shrinking step on the native grid; parameter scales from physical shift and
   a fixed random sample set per level (``SCHEDULE``). The metric derivative is computed from
   the images themselves, not from ITK's default smoothed gradient images: those smooth by a
   voxel (up to 4-5 mm across thick slices), so their zero gradient lay 0.3-0.8 mm away from
   the metric's minimum and gradient descent stopped there.
4. **QC** (:func:`registration_qc`): final metric, head Dice after registration, head
   volume change, the residual between the mapped and the follow-up head centre, and a
   ``doubtful`` flag with its reason. A head that collapsed is no longer rigid: its shape
   changes, so its Dice and volume change flag the registration for review.

Example
-------
>>> from lesionvol.phantom import make_series
>>> s = make_series(seed=2, n_followups=1, shape=(64, 64, 24), spacing_mm=(2.0, 2.0, 5.0))
>>> reg = register_followup(s.scans[0].image, s.scans[1].image,
...                         fixed_head=s.scans[0].head_mask, moving_head=s.scans[1].head_mask)
>>> bool(reg.doubtful)
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.geometry import physical_points, voxel_volume_mm3
from lesionvol.io import check_same_grid

#: Images are cropped to the head bounding box plus this margin (mm) before registering: head,
#: neck, trochanter and acetabulum. A tighter region (head dilated 12-20 mm as metric mask) left
#: 2-5 mm errors on the phantoms: a ball does not fix a rotation, and the lesion inside changes.
CROP_MARGIN_MM = 40.0
#: Target spacing (mm) of the coarse pyramid levels; the last level is the native grid.
LEVEL_SPACING_MM = (4.0, 2.0)
#: Rotation starts tried on the coarsest level, degrees about each LPS axis.
START_ANGLE_DEG = 20.0
HISTOGRAM_BINS = 32
#: Per pyramid level: (optimiser, largest step in mm — any point of the image moves at most this
#: much per iteration —, smallest step in mm (regular-step only), iterations, at most this many
#: metric samples — random, fixed seed — which sets the cost of one iteration).
#: Profiled on the 6 benchmark pairs: with Powell (30k samples everywhere) a pair took 200-400
#: metric evaluations per level; gradient descent needs 10-60 cheaper iterations per level.
SCHEDULE = [("gd", 2.0, 0.0, 100, 5_000), ("gd", 0.5, 0.0, 100, 10_000), ("rsgd", 0.25, 0.02, 60, 15_000)]
#: Metric samples used to score the rotation starts on the coarsest level.
START_SAMPLES = 30_000
#: Powell for the optional affine stage on the 2 mm level: (iterations, step, tolerance, samples).
AFFINE_SCHEDULE = (2, 1.0, 0.05, 30_000)
#: QC limits for the ``doubtful`` flag (see :func:`registration_qc`).
MIN_HEAD_DICE = 0.85
MAX_HEAD_VOLUME_CHANGE_PCT = 10.0
MAX_HEAD_CENTRE_RESIDUAL_MM = 2.0
MAX_METRIC = -0.05  # Mattes MI is negative; closer to 0 means the images share little information

METHOD = "rigid 6-DOF, Mattes MI, gradient descent, levels 4 mm / 2 mm / native, head region"


#: What each QC column means (for summary.json next to the other definitions).
REGISTRATION_DEFINITIONS = {
    "registration_method": "how the follow-up was registered to the baseline (rigid 6-DOF unless affine asked)",
    "registration_metric": "final Mattes mutual information on the native grids (negative; lower = better match)",
    "registration_rotation_deg": "rotation angle of the baseline -> follow-up transform (deg)",
    "head_dice_registered": "Dice of the baseline head and the follow-up head resampled through the transform (nearest neighbour)",
    "head_volume_change_pct": "100 * (follow-up head volume - baseline head volume) / baseline, native grids",
    "head_centre_residual_mm": "distance between the mapped baseline head centroid and the follow-up head centroid (mm)",
    "registration_doubtful": (f"True when head Dice < {MIN_HEAD_DICE}, |head volume change| > "
                              f"{MAX_HEAD_VOLUME_CHANGE_PCT} % (collapse: no longer rigid), head centre residual > "
                              f"{MAX_HEAD_CENTRE_RESIDUAL_MM} mm, or metric > {MAX_METRIC}; change maps then need review"),
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


def _binary(mask: sitk.Image | None, reference: sitk.Image, name: str) -> sitk.Image | None:
    if mask is None:
        return None
    check_same_grid(mask, reference, name)  # refused, not resampled: see io.check_same_grid
    mask = sitk.Cast(mask != 0, sitk.sitkUInt8)
    if not np.any(sitk.GetArrayViewFromImage(mask)):
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


def _crop(image: sitk.Image, mask: sitk.Image, margin_mm: float) -> sitk.Image:
    """Crop to the mask's bounding box plus ``margin_mm`` (physical geometry is kept)."""
    zyx = np.argwhere(sitk.GetArrayViewFromImage(mask) != 0)
    margin = np.ceil(margin_mm / np.asarray(image.GetSpacing()))[::-1].astype(int)
    lo = np.maximum(zyx.min(axis=0) - margin, 0)
    hi = np.minimum(zyx.max(axis=0) + margin + 1, np.asarray(image.GetSize())[::-1])
    return sitk.RegionOfInterest(image, [int(v) for v in (hi - lo)[::-1]], [int(v) for v in lo[::-1]])


def _level(image: sitk.Image, spacing_mm: float, label: bool = False) -> sitk.Image:
    """Copy of ``image`` on a grid of about ``spacing_mm`` (never finer than native), smoothed."""
    native = np.asarray(image.GetSpacing(), float)
    spacing = np.maximum(native, spacing_mm)
    if np.allclose(spacing, native):
        return image
    if not label:
        sigma = 0.5 * np.sqrt(np.clip(spacing**2 - native**2, 0, None))
        image = sitk.SmoothingRecursiveGaussian(image, [float(max(s, 1e-3)) for s in sigma])
    size = np.maximum(np.round(np.asarray(image.GetSize()) * native / spacing), 2).astype(int)
    # keep the same physical box: first voxel centre moves by half the change of voxel size
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((spacing - native) / 2)
    interpolator = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    return sitk.Resample(image, [int(s) for s in size], sitk.Transform(), interpolator, origin.tolist(),
                         spacing.tolist(), image.GetDirection(), 0.0, image.GetPixelID())


def _method(n_voxels: int, max_samples: int, optimizer: str = "powell", step: float = 1.0,
            min_step: float = 0.01, iterations: int = 100, tolerance: float = 0.05, seed: int = 17):
    """Mattes MI with a fixed random sample set and one of three optimisers.

    ``"gd"``: gradient descent whose learning rate is re-estimated every iteration so that the
    largest physical shift of a point is ``step`` mm; it stops when the metric stops changing
    (window of 10 iterations) or after ``iterations``. ``"rsgd"``: regular-step gradient descent,
    ``step`` mm at first, shrinking (x0.7) whenever the direction turns back, down to
    ``min_step``. ``"powell"``: derivative-free line searches (value only; used for the starts
    and the affine stage). The samples are drawn once per level (fixed seed), so the metric is
    deterministic. Derivatives come from the images directly (central differences at the
    sample points), not from smoothed gradient images (see the module docstring).
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
    if optimizer == "gd":
        reg.SetOptimizerAsGradientDescent(learningRate=step, numberOfIterations=iterations,
                                          convergenceMinimumValue=1e-6, convergenceWindowSize=10,
                                          estimateLearningRate=reg.EachIteration,
                                          maximumStepSizeInPhysicalUnits=step)
    elif optimizer == "rsgd":
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=step, minStep=min_step,
                                                     numberOfIterations=iterations, relaxationFactor=0.7,
                                                     gradientMagnitudeTolerance=1e-8)
    else:
        reg.SetOptimizerAsPowell(numberOfIterations=iterations, maximumLineIterations=8, stepLength=step,
                                 stepTolerance=tolerance, valueTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


def _euler_from_rotation(matrix: np.ndarray, centre: np.ndarray, translation: np.ndarray) -> sitk.Euler3DTransform:
    t = sitk.Euler3DTransform()
    t.SetCenter([float(v) for v in centre])
    t.SetMatrix([float(v) for v in matrix.ravel()], 1e-6)
    t.SetTranslation([float(v) for v in translation])
    return t


def _axis_rotation(axis: int, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


# ----------------------------------------------------------------------------- registration
def register_followup(
    fixed_image: sitk.Image,
    moving_image: sitk.Image,
    *,
    fixed_head: sitk.Image | None = None,
    moving_head: sitk.Image | None = None,
    affine: bool = False,
) -> Registration:
    """Register a follow-up (moving) scan to the baseline (fixed) scan of the same hip.

    Parameters
    ----------
    fixed_image, moving_image : sitk.Image
        Baseline and follow-up, any grids, slice planes and thicknesses (physical LPS space).
    fixed_head, moving_head : sitk.Image, optional
        Femoral-head masks, each on its image's grid (a mask on another grid is refused; a
        caller that means to resample one does it first, nearest neighbour). When both are
        given the registration is driven by the proximal femur (see module docstring); with
        neither, the whole images are used and the centres of mass start the search.
    affine : bool
        Add an affine (12-parameter) stage after the rigid one. Rigid is right for bone;
        affine absorbs scanner scaling/shear but also a collapsing head's deformation.

    Returns
    -------
    Registration
        ``transform`` maps baseline → follow-up points (ITK convention), ``qc`` and ``doubtful``.

    Raises
    ------
    InputError
        Images that are not 3D scalar, an empty head mask, a head mask not on its image's
        grid (:func:`lesionvol.io.check_same_grid`), or images that never overlap.

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
    fixed, moving = _as_float(fixed_image), _as_float(moving_image)
    f_head = _binary(fixed_head, fixed, "baseline head mask")
    m_head = _binary(moving_head, moving, "follow-up head mask")

    # Region: the head plus a margin that takes in the neck, trochanter and acetabulum. The
    # metric is not restricted to the head itself: the lesion inside it changes between visits
    # and the ball alone does not fix the rotation (see CROP_MARGIN_MM).
    if f_head is not None:
        fixed = _crop(fixed, f_head, CROP_MARGIN_MM)
        f_centre = mask_centroid_mm(f_head)
    else:
        f_centre = _intensity_centre_mm(fixed)
    if m_head is not None:
        moving = _crop(moving, m_head, CROP_MARGIN_MM + 15.0)
        m_centre = mask_centroid_mm(m_head)
    else:
        m_centre = _intensity_centre_mm(moving)
    if f_head is None and m_head is not None:
        f_centre = m_centre  # no baseline head: start without a translation
    if m_head is None and f_head is not None:
        m_centre = f_centre

    pyramid = [(_level(fixed, spacing), _level(moving, spacing)) for spacing in (*LEVEL_SPACING_MM, 0.0)]

    # Starts: identity and ± START_ANGLE_DEG about each axis, all about the baseline head centre
    # with the translation that maps head centre onto head centre; the best metric value wins.
    f0, m0 = pyramid[0]
    n0 = int(np.prod(f0.GetSize()))
    best = None
    for rotation in [np.eye(3)] + [_axis_rotation(a, s * START_ANGLE_DEG) for a in range(3) for s in (-1, 1)]:
        t = _euler_from_rotation(rotation, f_centre, m_centre - f_centre)
        reg = _method(n0, START_SAMPLES)
        reg.SetInitialTransform(t)
        try:
            value = reg.MetricEvaluate(f0, m0)
        except RuntimeError:  # too few samples overlap from this start
            continue
        if best is None or value < best[0]:
            best = (value, t)
    if best is None:
        raise InputError("registration failed: the images do not overlap from any start")
    transform = best[1]

    metric = best[0]
    for (f, m), (optimizer, step, min_step, iterations, samples) in zip(pyramid, SCHEDULE):
        reg = _method(int(np.prod(f.GetSize())), samples, optimizer, step, min_step, iterations)
        reg.SetInitialTransform(transform, inPlace=True)
        reg.Execute(f, m)
        metric = reg.GetMetricValue()

    if affine:
        aff = sitk.AffineTransform(3)
        aff.SetCenter(transform.GetCenter())
        aff.SetMatrix(transform.GetMatrix())
        aff.SetTranslation(transform.GetTranslation())
        # one pass on the 2 mm level: 12 parameters make Powell slow on the native grid
        iterations, step, tolerance, samples = AFFINE_SCHEDULE
        for f, m in pyramid[1:2]:
            reg = _method(int(np.prod(f.GetSize())), samples, "powell", step, iterations=iterations,
                          tolerance=tolerance)
            reg.SetInitialTransform(aff, inPlace=True)
            reg.Execute(f, m)
            metric = reg.GetMetricValue()
        transform = aff

    qc = registration_qc(transform, fixed_head=f_head, moving_head=m_head, metric=metric, affine=affine)
    return Registration(transform=transform, qc=qc, doubtful=bool(qc["registration_doubtful"]))


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
) -> dict:
    """QC figures of a registration, as flat ``volumes.csv`` columns.

    ``registration_metric`` is the final Mattes mutual information (negative; lower is
    better). With both head masks: ``head_dice_registered`` is the Dice of the baseline head
    and the follow-up head resampled through the transform (nearest neighbour);
    ``head_volume_change_pct`` compares native-grid head volumes;
    ``head_centre_residual_mm`` is the distance between the mapped baseline head centroid
    and the follow-up head centroid. The registration is ``registration_doubtful`` when
    the Dice is under ``MIN_HEAD_DICE``, the head volume changed by more than
    ``MAX_HEAD_VOLUME_CHANGE_PCT`` (collapse: a head that is no longer rigid), the centre
    residual exceeds ``MAX_HEAD_CENTRE_RESIDUAL_MM``, or the metric is above ``MAX_METRIC``.

    Example
    -------
    >>> head = sitk.Image([20, 20, 20], sitk.sitkUInt8); head[5:15, 5:15, 5:15] = 1
    >>> qc = registration_qc(sitk.Euler3DTransform(), fixed_head=head, moving_head=head, metric=-0.5)
    >>> qc["head_dice_registered"], qc["registration_doubtful"]
    (1.0, False)
    """
    nan = float("nan")
    matrix = np.asarray(transform.GetMatrix()).reshape(3, 3) if hasattr(transform, "GetMatrix") else np.eye(3)
    angle = math.degrees(math.acos(np.clip((np.trace(_nearest_rotation(matrix)) - 1) / 2, -1, 1)))
    qc: dict = {
        "registration_method": METHOD.replace("rigid 6-DOF", "rigid + affine") if affine else METHOD,
        "registration_metric": float(metric),
        "registration_rotation_deg": angle,
        "head_dice_registered": nan,
        "head_volume_change_pct": nan,
        "head_centre_residual_mm": nan,
    }
    reasons = []
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
