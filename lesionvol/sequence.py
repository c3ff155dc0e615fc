"""Which MRI contrast is this?  T1 (what lesionvol's segmenter reads), T2, STIR/fat-suppressed.

The classical segmenter relies on T1 contrast: fatty marrow bright, the necrotic band dark.  On a
T2 or STIR image the same method would read fluid as marrow and marrow as lesion, so
:func:`check_t1` refuses such images unless the caller overrides it (and records that).

How the contrast is judged:

1. **DICOM tags**, when given (``dicom_tags``: a mapping of keyword to value, e.g. from pydicom, or
   :attr:`lesionvol.io.Scan.dicom_tags`, which holds them for a DICOM series and a NIfTI's BIDS sidecar):
   fat suppression (``ScanOptions`` FS/SFS/FSA/FSS, or a short-TI inversion recovery, TI 80–250
   ms: STIR) → "STIR/fat-suppressed"; spin echo with TR ≤ 1000 ms and TE ≤ 30 ms, spoiled
   gradient echo with TE ≤ 15 ms and a flip at least the Ernst angle of a tissue with T1 1000 ms
   (arccos exp(-TR / 1000 ms): 5° at TR 4 ms, 39° at TR 250 ms), or inversion recovery with TI
   600–1500 ms (MPRAGE) → "T1"; TE ≥ 60 ms with TR ≥ 1500 ms (spin echo), TE > 15 ms (gradient
   echo, T2*) or TI ≥ 1500 ms (FLAIR) → "T2".  Long TR with short TE, or a gradient echo flipped
   below that Ernst angle (proton density), is "unknown".  Thresholds are textbook weighting rules
   at 1.5–3 T (e.g. Westbrook, *MRI in Practice*; the Ernst angle: below it a spoiled gradient echo
   is proton-density weighted, above it T1-weighted); the series description is read only for the
   words "stir", "tirm", "fs", "fatsat", "spair", "t2" and "t1" when the timing tags are missing.
2. **Tissue contrast** otherwise (intensity-scale free, no anatomy assumed): the object is split
   from background (Otsu), and its voxels into three classes (multi-Otsu).  On T1 the bright
   class is fat and fatty marrow, abundant (16–35 % of the object on the 15 development pelvis
   scans, 34 % on nibabel's brain T1 crop) and nothing is much brighter than it.  Fat-suppressed
   images have no abundant bright tissue: only fluid is bright (bright class < 8 % or a fluid
   tail, with the 85th percentile under 0.4 × the 99th, which is far above the median).  On T2, fluid is brighter than fat: a set of voxels well above the rest (more than
   1 % of the object above 1.6 × its 85th percentile; on the T1 development scans the top 0.5 %
   reaches at most 1.57 × it, so a T1 with unusually bright vessels or bias could be misread), with
   the class below the brightest under 0.72 of it (fat under fluid); in a T1 field with little fat
   the 85th percentile is muscle and fat lies far above it, but marrow under fat reads ~0.8 of it.
   These rules were set on the development scans (all T1) and synthetic contrasts.  On real
   T2 TSE prostate series read without their tags (PROSTATEx, ``benchmarks/real_other``) 7 of 8
   read "T1": their histograms match a T1 pelvis's, so the image rule is a guard, not a
   classifier: trust tags.

Example
-------
>>> import numpy as np, SimpleITK as sitk
>>> classify_contrast(sitk.Image(8, 8, 8, sitk.sitkFloat32), {"ScanningSequence": "SE", "EchoTime": 12,
...                                                             "RepetitionTime": 550})[0]
'T1'
>>> classify_contrast(sitk.Image(8, 8, 8, sitk.sitkFloat32), {"ScanningSequence": "IR", "InversionTime": 150,
...                                                             "EchoTime": 40, "RepetitionTime": 4000})[0]
'STIR/fat-suppressed'
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lesionvol.errors import InputError

__all__ = ["classify_contrast", "check_t1", "NotT1Error", "KINDS"]

KINDS = ("T1", "T2", "STIR/fat-suppressed", "unknown")

#: DICOM timing rules (ms, degrees): textbook T1/T2/PD weighting at 1.5–3 T.
T1_SE_MAX_TR, T1_SE_MAX_TE = 1000.0, 30.0
T2_MIN_TE, T2_MIN_TR = 60.0, 1500.0
T1_GRE_MAX_TE = 15.0
#: A spoiled gradient echo is T1-weighted from the Ernst angle of a tissue with this T1 (muscle at 1.5 T,
#: the slower of marrow and muscle) upward, proton-density weighted below it.
GRE_REFERENCE_T1_MS = 1000.0
STIR_TI_RANGE = (80.0, 250.0)
T1_IR_TI_RANGE = (600.0, 1500.0)
FLAIR_MIN_TI = 1500.0
FAT_SAT_OPTIONS = {"FS", "SFS", "FSA", "FSS", "FSI", "FSP", "FAT_SAT", "SP_FS"}
#: Image rules (fractions of the object's voxels, ratios of signal), set on the 15 T1 development
#: scans (bright class 16–35 %; 99.5th percentile ≤ 1.57 × the 85th) and synthetic contrasts.
MIN_BRIGHT_FRACTION_T1 = 0.10
FATSAT_MAX_BRIGHT_FRACTION = 0.08
FATSAT_MIN_TAIL_RATIO = 2.5
#: Fat suppressed: the 85th percentile (fat on T1/T2, muscle when fat is suppressed) is below this
#: fraction of the 99th (fluid).
FATSAT_MAX_P85_OF_P99 = 0.4
T2_FLUID_RATIO = 1.6
T2_FLUID_FRACTION = 0.01
#: ... but only where the class below the brightest reads under this fraction of it (fat under fluid
#: on T2: 0.61-0.66 on phantom family B's T2 scans).  Where it reads above (0.77-0.83 on family B's T1
#: scans: marrow and fat partial volume under fat), the brightest class is fat in a field with little
#: of it (a one-hip field of muscle), whose 85th percentile is muscle: "far brighter" is then fat, not
#: fluid (6 of family B's 15 T1 scans were read as T2 and refused before this).
T2_MAX_MID_OF_TOP = 0.72
MAX_SAMPLES = 400_000


def _num(tags, key):
    v = tags.get(key)
    try:
        return float(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _words(value) -> set[str]:
    if value is None:
        return set()
    if isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    return {w for w in str(value).upper().replace("\\", " ").replace("/", " ").replace(",", " ").split() if w}


def _from_tags(tags) -> tuple[str, str] | None:
    seq = _words(tags.get("ScanningSequence"))
    options = _words(tags.get("ScanOptions"))
    te, tr = _num(tags, "EchoTime"), _num(tags, "RepetitionTime")
    ti, flip = _num(tags, "InversionTime"), _num(tags, "FlipAngle")
    timing = ", ".join(f"{k} {v:g}" for k, v in (("TR", tr), ("TE", te), ("TI", ti), ("flip", flip)) if v is not None)
    if options & FAT_SAT_OPTIONS:
        return "STIR/fat-suppressed", f"DICOM ScanOptions {'/'.join(sorted(options & FAT_SAT_OPTIONS))} (fat suppression)"
    if ti is not None and ("IR" in seq or ti > 0):
        if STIR_TI_RANGE[0] <= ti <= STIR_TI_RANGE[1]:
            return "STIR/fat-suppressed", f"inversion recovery with a short TI ({timing}): STIR"
        if ti >= FLAIR_MIN_TI:
            return "T2", f"inversion recovery with a long TI ({timing}): FLAIR"
        if T1_IR_TI_RANGE[0] <= ti <= T1_IR_TI_RANGE[1]:
            return "T1", f"inversion recovery with TI {ti:g} ms ({timing}): T1-weighted"
    if te is not None and tr is not None:
        gradient = "GR" in seq and "SE" not in seq
        if gradient:
            if te > T1_GRE_MAX_TE:
                return "T2", f"gradient echo with a long TE ({timing}): T2*-weighted"
            ernst_deg = float(np.degrees(np.arccos(np.exp(-tr / GRE_REFERENCE_T1_MS))))
            if flip is None or flip >= ernst_deg:
                return "T1", (f"gradient echo, short TE, flip at least the Ernst angle {ernst_deg:.0f} deg ({timing}): "
                               "T1-weighted")
            return "unknown", (f"gradient echo flipped below the Ernst angle {ernst_deg:.0f} deg ({timing}): "
                               "proton-density weighted")
        else:
            if tr <= T1_SE_MAX_TR and te <= T1_SE_MAX_TE:
                return "T1", f"short TR and TE ({timing}): T1-weighted"
            if te >= T2_MIN_TE and tr >= T2_MIN_TR:
                return "T2", f"long TR and TE ({timing}): T2-weighted"
            if tr >= T2_MIN_TR and te <= T1_SE_MAX_TE:
                return "unknown", f"long TR, short TE ({timing}): proton-density weighted"
    desc = _words(tags.get("SeriesDescription")) | _words(tags.get("ProtocolName"))
    text = " ".join(desc).replace("_", " ")
    words = set(text.split())
    if words & {"STIR", "TIRM", "FS", "FATSAT", "SPAIR", "SPIR", "FSE-FS"}:
        return "STIR/fat-suppressed", f"series description {' '.join(sorted(desc))!r} names fat suppression"
    if any(w.startswith("T2") for w in words):
        return "T2", f"series description {' '.join(sorted(desc))!r} names T2"
    if any(w.startswith("T1") for w in words):
        return "T1", f"series description {' '.join(sorted(desc))!r} names T1"
    return None


def _from_image(image: sitk.Image) -> tuple[str, str]:
    from skimage.filters import threshold_multiotsu, threshold_otsu

    a = sitk.GetArrayViewFromImage(image)
    if a.ndim == 4 or image.GetNumberOfComponentsPerPixel() > 1:
        return "unknown", "a multi-component image"
    flat = a.reshape(-1)
    step = max(1, flat.size // MAX_SAMPLES)
    v = np.asarray(flat[::step], np.float32)
    v = v[np.isfinite(v)]
    if v.size < 100 or np.ptp(v) <= 0:
        return "unknown", "a constant image"
    obj = v[v > 0.5 * threshold_otsu(v)]      # the imaged object, not the air around it
    if obj.size < 100 or np.ptp(obj) <= 0:
        return "unknown", "no imaged object"
    if np.unique(obj[: 10 * MAX_SAMPLES]).size < 3:  # a synthetic or label-like image: no tissue contrast to read
        return "unknown", "fewer than three grey levels"
    t_lo, t_hi = threshold_multiotsu(obj, 3)
    bright = obj > t_hi
    mid = (obj > t_lo) & ~bright
    mid_of_top = float(np.median(obj[mid]) / np.median(obj[bright])) if mid.any() else 0.0
    f_bright = float(bright.mean())
    med, p99 = float(np.median(obj)), float(np.percentile(obj, 99))
    p85 = float(np.percentile(obj, 85))
    fluid = float((obj > T2_FLUID_RATIO * p85).mean())
    facts = (f"bright tissue {100 * f_bright:.0f} % of the object, top 1 % at {p99 / max(med, 1e-9):.1f}x the "
             f"median, {100 * fluid:.1f} % above {T2_FLUID_RATIO:g}x its 85th percentile")
    fat_dark = p85 < FATSAT_MAX_P85_OF_P99 * p99
    if (f_bright < FATSAT_MAX_BRIGHT_FRACTION or fluid > T2_FLUID_FRACTION) and fat_dark \
            and p99 > FATSAT_MIN_TAIL_RATIO * med:
        return "STIR/fat-suppressed", f"looks fat-suppressed: no abundant bright tissue, only small bright regions ({facts})"
    if fluid > T2_FLUID_FRACTION and mid_of_top < T2_MAX_MID_OF_TOP:
        return "T2", f"looks T2-weighted: a set of voxels far brighter than fat ({facts})"
    if f_bright >= MIN_BRIGHT_FRACTION_T1:
        return "T1", f"looks T1-weighted: abundant bright (fat) tissue, nothing far brighter ({facts})"
    return "unknown", f"contrast not recognised ({facts})"


def classify_contrast(image: sitk.Image, dicom_tags=None) -> tuple[str, str]:
    """Guess the contrast of ``image``: one of :data:`KINDS`, and one line saying why.

    Parameters
    ----------
    image : SimpleITK.Image
        Any MR image.
    dicom_tags : mapping, optional
        DICOM keywords (``ScanningSequence``, ``ScanOptions``, ``EchoTime``, ``RepetitionTime``,
        ``InversionTime``, ``FlipAngle``, ``SeriesDescription``...) to values; decisive tags win
        over the image's tissue contrast.

    Example
    -------
    >>> classify_contrast(sitk.Image(8, 8, 8, sitk.sitkFloat32))
    ('unknown', 'a constant image')
    """
    if dicom_tags:
        found = _from_tags(dict(dicom_tags))
        if found is not None:
            return found
    return _from_image(image)


class NotT1Error(InputError):
    """The image looks T2-weighted, STIR or fat-suppressed: lesionvol segments T1 images."""


def check_t1(image: sitk.Image, allow_non_t1: bool = False, dicom_tags=None) -> tuple[str, str]:
    """Refuse an image that does not look T1-weighted (unless ``allow_non_t1``).

    Returns ``(kind, reason)`` from :func:`classify_contrast` when the image passes (always when
    ``allow_non_t1``: record the kind and reason with the results then).  "unknown" passes with
    its reason: only positive evidence of another contrast is refused.

    Raises
    ------
    NotT1Error
        One line: what the image looks like, and how to override.

    Example
    -------
    >>> check_t1(sitk.Image(8, 8, 8, sitk.sitkFloat32), dicom_tags={"ScanOptions": "FS"})
    Traceback (most recent call last):
    ...
    lesionvol.sequence.NotT1Error: the image does not look T1-weighted: STIR/fat-suppressed (DICOM ScanOptions FS (fat suppression)); lesionvol segments T1 images (override with allow_non_t1 / --allow-non-t1)
    """
    kind, reason = classify_contrast(image, dicom_tags)
    if kind in ("T2", "STIR/fat-suppressed") and not allow_non_t1:
        raise NotT1Error(f"the image does not look T1-weighted: {kind} ({reason}); lesionvol segments T1 "
                         "images (override with allow_non_t1 / --allow-non-t1)")
    return kind, reason
