"""Contrast check: T1 passes, T2 and STIR/fat-suppressed images are refused unless allowed."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionvol.errors import InputError
from lesionvol.sequence import KINDS, check_t1, classify_contrast

# tissue signal per contrast (textbook ordering): fat, marrow, muscle, fluid, cortex
CONTRASTS = {
    "T1": dict(fat=1.0, marrow=0.9, muscle=0.35, fluid=0.12, cortex=0.05),
    "T2": dict(fat=0.55, marrow=0.5, muscle=0.18, fluid=1.0, cortex=0.05),
    "STIR/fat-suppressed": dict(fat=0.06, marrow=0.08, muscle=0.2, fluid=1.0, cortex=0.05),
}


def pelvis(kind: str, seed: int = 0, scale: float = 300.0) -> sitk.Image:
    """A small synthetic pelvis field: body of muscle in 12 mm of fat, a bladder, two femora."""
    lv = CONTRASTS[kind]
    z, y, x = np.mgrid[0:24, 0:96, 0:128].astype(np.float32)
    x, y, z = (x - 64) * 2.0, (y - 48) * 2.0, (z - 12) * 4.0        # mm
    body = (x / 120) ** 2 + (y / 85) ** 2 <= 1
    inner = (x / 108) ** 2 + (y / 73) ** 2 <= 1
    v = np.zeros(x.shape, np.float32)
    v[body] = lv["fat"]
    v[inner] = lv["muscle"]
    for cx in (-70.0, 70.0):
        r = np.sqrt((x - cx) ** 2 + y ** 2 + z ** 2)
        v[r <= 24] = lv["cortex"]
        v[r <= 22] = lv["marrow"]
    v[np.sqrt(x**2 + (y + 20) ** 2 + z**2) <= 25] = lv["fluid"]    # bladder
    rng = np.random.default_rng(seed)
    v = np.abs(v * scale + rng.normal(0, 0.04 * scale, v.shape)).astype(np.float32)
    img = sitk.GetImageFromArray(v)
    img.SetSpacing((2.0, 2.0, 4.0))
    return img


@pytest.mark.parametrize("kind", list(CONTRASTS))
def test_image_contrast_is_recognised(kind):
    got, reason = classify_contrast(pelvis(kind))
    assert got == kind, reason
    assert reason and "\n" not in reason


def test_intensity_scale_does_not_matter():
    assert classify_contrast(pelvis("T1", scale=3.0))[0] == classify_contrast(pelvis("T1", scale=3000.0))[0] == "T1"


def test_real_brain_t1_passes():
    from nibabel.testing import data_path

    kind, reason = check_t1(sitk.ReadImage(str(data_path) + "/anatomical.nii"))
    assert kind == "T1", reason


def test_phantom_t1_passes():
    from lesionvol.phantom import VisitSpec, make_visit

    assert check_t1(make_visit(VisitSpec(), seed=0).image)[0] == "T1"


@pytest.mark.parametrize("kind", ["T2", "STIR/fat-suppressed"])
def test_non_t1_refused_in_one_line_unless_allowed(kind):
    image = pelvis(kind)
    with pytest.raises(InputError) as exc:
        check_t1(image)
    msg = str(exc.value)
    assert "\n" not in msg and kind in msg and "allow" in msg
    assert check_t1(image, allow_non_t1=True)[0] == kind


# DICOM tags as the dev scans carry them (1.5 T Siemens coronal T1 TSE), and typical others
TAGS = [
    ({"ScanningSequence": "SE", "SequenceVariant": ["SK", "SP", "OSP"], "ScanOptions": "", "EchoTime": 6.2,
      "RepetitionTime": 579.0, "FlipAngle": 121.0, "SeriesDescription": "t1_tse_cor"}, "T1"),
    ({"ScanningSequence": "SE", "EchoTime": 90.0, "RepetitionTime": 4200.0}, "T2"),
    ({"ScanningSequence": "SE", "EchoTime": 12.0, "RepetitionTime": 600.0, "ScanOptions": "FS"},
     "STIR/fat-suppressed"),
    ({"ScanningSequence": ["SE", "IR"], "EchoTime": 45.0, "RepetitionTime": 5000.0, "InversionTime": 160.0},
     "STIR/fat-suppressed"),
    ({"ScanningSequence": ["GR", "IR"], "EchoTime": 3.0, "RepetitionTime": 2000.0, "InversionTime": 900.0,
      "FlipAngle": 9.0}, "T1"),
    ({"ScanningSequence": "GR", "SequenceVariant": "SP", "EchoTime": 4.0, "RepetitionTime": 20.0, "FlipAngle": 25.0},
     "T1"),
    ({"ScanningSequence": "GR", "EchoTime": 25.0, "RepetitionTime": 700.0, "FlipAngle": 20.0}, "T2"),
    # 3D spoiled gradient echoes as PROSTATEx carries them (TR 3.85 ms: Ernst angle 5 deg): a VIBE at flip 10
    # and a DCE frame at flip 12 are T1-weighted, the same at flip 2 and a TR 800 ms flip 14 reference are
    # proton-density weighted (both once read "T1" only from flip 15 up, then "T2" by the image)
    ({"ScanningSequence": "GR", "EchoTime": 1.42, "RepetitionTime": 3.85, "FlipAngle": 10.0}, "T1"),
    ({"ScanningSequence": "GR", "EchoTime": 1.42, "RepetitionTime": 3.85, "FlipAngle": 12.0}, "T1"),
    ({"ScanningSequence": "GR", "EchoTime": 1.42, "RepetitionTime": 3.85, "FlipAngle": 2.0}, "unknown"),
    ({"ScanningSequence": "GR", "EchoTime": 1.53, "RepetitionTime": 800.0, "FlipAngle": 14.0}, "unknown"),
    ({"ScanningSequence": "GR", "EchoTime": 4.8, "RepetitionTime": 250.0, "FlipAngle": 70.0}, "T1"),
    ({"ScanningSequence": "SE", "EchoTime": 20.0, "RepetitionTime": 3000.0}, "unknown"),
    ({"SeriesDescription": "COR STIR HIPS"}, "STIR/fat-suppressed"),
    ({"SeriesDescription": "t2_tse_ax"}, "T2"),
]


@pytest.mark.parametrize("tags,kind", TAGS)
def test_dicom_tags_decide(tags, kind):
    # the image says T1; decisive tags win over it
    got, reason = classify_contrast(pelvis("T1"), tags)
    assert got == kind, reason
    assert got in KINDS


def test_tags_without_timing_fall_back_to_the_image():
    assert classify_contrast(pelvis("STIR/fat-suppressed"), {"Manufacturer": "SIEMENS"})[0] == "STIR/fat-suppressed"


def test_unknown_passes_with_its_reason():
    kind, reason = check_t1(sitk.Image(8, 8, 8, sitk.sitkFloat32))
    assert kind == "unknown" and reason


def test_a_one_hip_t1_field_of_little_fat_is_not_read_as_t2():
    """Phantom family B, one hip in a 4 mm coronal field: fat is only 8 % of the object, so its 85th
    percentile is muscle and fat lies far above it, as fluid does on T2.  The class below the brightest
    (marrow under fat, 0.8 of it; fat under fluid on T2 reads 0.6-0.66) tells them apart: not T2, so not
    refused (6 of family B's 15 T1 scans were read as T2 before), while its T2 scan still is."""
    from lesionvol.phantom_b import Hip, HipScanSpec, Lesion, make_hip_scan

    def scan(contrast):
        hip = Hip("right", head_radius_mm=24.0, lesion=Lesion(pct_of_head=15.0, shape_seed=1))
        return make_hip_scan(HipScanSpec(right=hip, field="right", anatomy_seed=1, contrast=contrast), seed=1)[0]

    assert classify_contrast(scan("T1"))[0] in ("T1", "unknown")
    check_t1(scan("T1"))
    assert classify_contrast(scan("T2"))[0] == "T2"
