"""Real 1.5 T coronal T1 TSE pelvis scans (easoplee/pelvic_project) with hand labels of both femora.

The repository holds 23 scans as DICOM series (``data/images/images_NN/``, CC BY) and per-slice
hand labels of both proximal femora, head and neck (``mask/femur_binary_mask_2d/2d_scan_NNNN.npy``,
numbered through all patients in order, then by file name within each; each label is the
transpose of its image slice).  The labels carry no licence: they are used here to *evaluate*
only, never committed, never trained on.

Only cases 1–15 are for development (``DEV_CASES``); 16–23 are held out for evaluation by others
and this module refuses to extract them.

Everything is extracted to a cache outside the repository (``$LESIONVOL_REAL_T1_CACHE``, default
``/work/cache/pelvic_project``) from a git mirror of the repository (``$PELVIC_PROJECT_GIT``,
default ``/work/.mirror/easoplee+pelvic_project/repo``; or ``git clone --bare
https://github.com/easoplee/pelvic_project`` and point the variable at it).

Example
-------
>>> image, label, tags = load_case(1)                          # doctest: +SKIP
>>> image.GetSize(), tags["EchoTime"]                          # doctest: +SKIP
((384, 384, 47), 6.2)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import SimpleITK as sitk

DEV_CASES = tuple(range(1, 16))
HELD_OUT_CASES = tuple(range(16, 24))
GIT_DIR = Path(os.environ.get("PELVIC_PROJECT_GIT", "/work/.mirror/easoplee+pelvic_project/repo"))
CACHE = Path(os.environ.get("LESIONVOL_REAL_T1_CACHE", "/work/cache/pelvic_project"))
LABEL_DIR = "mask/femur_binary_mask_2d"
#: DICOM tags kept with each case (for the sequence check).
TAGS = ("SeriesDescription", "ProtocolName", "ScanningSequence", "SequenceVariant", "ScanOptions",
        "EchoTime", "RepetitionTime", "InversionTime", "FlipAngle", "EchoTrainLength",
        "MagneticFieldStrength", "Manufacturer")


def _git(*args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={GIT_DIR}", *args], check=True, capture_output=True).stdout


def _series_files(case: int) -> list[str]:
    """DICOM file names of one case, sorted by file name (the labels' order)."""
    names = _git("ls-tree", "--name-only", "HEAD", f"data/images/images_{case:02d}/").decode().split()
    return sorted(Path(n).name for n in names if n.endswith(".dcm"))


def _check_dev(case: int) -> None:
    if case not in DEV_CASES:
        raise ValueError(f"case {case} is not a development case (1–15); 16–23 are held out")


def _label_offset(case: int) -> int:
    """Global index of a case's first label: slices of the cases before it (all development cases)."""
    return sum(len(_series_files(c)) for c in range(1, case))


def extract(case: int) -> Path:
    """Extract one development case (DICOM files and label slices) to the cache; its folder."""
    _check_dev(case)
    out = CACHE / f"images_{case:02d}"
    done = out / ".complete"
    if done.exists():
        return out
    (out / "dicom").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    files = _series_files(case)
    first = _label_offset(case) + 1
    for i, name in enumerate(files):
        (out / "dicom" / name).write_bytes(_git("show", f"HEAD:data/images/images_{case:02d}/{name}"))
        label = _git("show", f"HEAD:{LABEL_DIR}/2d_scan_{first + i:04d}.npy")
        (out / "labels" / (Path(name).stem + ".npy")).write_bytes(label)
    done.write_text("ok\n")
    return out


def load_case(case: int) -> tuple[sitk.Image, sitk.Image, dict]:
    """One development case: (T1 image, uint8 femur label on the image grid, DICOM tags).

    The label is 1 on both proximal femora (head and neck, as far as drawn).
    """
    import pydicom

    folder = extract(case) / "dicom"
    reader = sitk.ImageSeriesReader()
    ordered = list(reader.GetGDCMSeriesFileNames(str(folder)))     # sorted by slice position
    reader.SetFileNames(ordered)
    image = reader.Execute()
    size = image.GetSize()
    label = np.zeros(size[::-1], np.uint8)
    for k, path in enumerate(ordered):
        m = np.load(Path(path).parent.parent / "labels" / (Path(path).stem + ".npy"))
        label[k] = (m.T > 0.5)
    lab = sitk.GetImageFromArray(label)
    lab.CopyInformation(image)
    ds = pydicom.dcmread(ordered[len(ordered) // 2], stop_before_pixels=True)
    tags = {}
    for t in TAGS:
        v = ds.get(t)
        if v is not None:
            tags[t] = (list(v) if isinstance(v, pydicom.multival.MultiValue)
                       else float(v) if isinstance(v, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS, float, int))
                       else str(v))
    return image, lab, tags


if __name__ == "__main__":
    import sys

    for c in (map(int, sys.argv[1:]) if len(sys.argv) > 1 else DEV_CASES):
        print(c, extract(c))
