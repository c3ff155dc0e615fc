"""Real 3 T prostate MRI (MR-guided biopsy, 2005) kept as test data by SlicerProstate/SliceTracker.

Source: ``RegistrationModule/Resources/Testing/testData_1..3`` at commit ``afe7398`` (2015) of the
public repository ``SlicerProstate/SliceTracker`` (the DICOM files are gone from its newest
tree; they are in its history).  One anonymised subject ("PCAMRGBX-00137", Siemens Verio 3 T,
feet first supine): ``testData_1`` = a 400 mm tri-plane gradient-echo localizer (TR 7.8, TE 3.69,
flip 20; 7 slices per plane, 6 mm thick, 7.2 mm apart) plus a 160 mm axial VIBE; ``testData_2`` =
axial T2 TSE, 160 mm; ``testData_3`` = axial T2 TSE (TR 3000, TE 106), 192 x 240 mm, 3.6 mm
slices, both femoral heads in view.  Licence: the repository is under the 3D Slicer Contribution
and Software License (BSD-style), which it applies to software "and/or data"; the data's own
provenance (Brigham and Women's Hospital biopsy programme) is not stated further.

How to get it::

    fetch github:SlicerProstate/SliceTracker   -> /work/.mirror/SlicerProstate+SliceTracker/repo/.git
    G=/work/.mirror/SlicerProstate+SliceTracker/repo/.git
    git --git-dir=$G ls-tree -r afe7398538df999ba997079306ec6751737c69d8 RegistrationModule/Resources/Testing \
      | while read mode type blob path; do mkdir -p "$(dirname "$path")"; \
          git --git-dir=$G cat-file blob $blob > "$path"; done      # run in /work/cache/real_other/slicetracker
    # (t2-N4.nrrd of preopDir is not in the snapshot; it is not used)

``lesionvol.io.read_image`` reads ``testData_2`` and ``testData_3`` as they are; the localizer
holds three planes and a second series, so :func:`localizer_stacks` writes its coronal and axial
slices as NRRD volumes (the DICOM tags are then lost: lesionvol judges contrast from the image).
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

ROOT = Path(os.environ.get("LESIONVOL_REAL_OTHER", "/work/cache/real_other")) / "slicetracker"
TESTING = ROOT / "RegistrationModule" / "Resources" / "Testing"


def localizer_stacks(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the coronal and axial slices of series 1 of ``testData_1`` as NRRD volumes."""
    import pydicom
    import SimpleITK as sitk

    out_dir = Path(out_dir or ROOT / "derived")
    out_dir.mkdir(parents=True, exist_ok=True)
    by_plane: dict[str, list[tuple[float, str]]] = {}
    for f in sorted(glob.glob(str(TESTING / "testData_1" / "*.dcm"))):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if str(ds.SeriesNumber) != "1":
            continue
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        plane = ("sag", "cor", "ax")[int(np.argmax(np.abs(normal)))]
        by_plane.setdefault(plane, []).append((float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))), f))
    written = {}
    for plane in ("cor", "ax"):
        files = [f for _, f in sorted(by_plane.get(plane, []))]
        if len(files) < 3:
            continue
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        path = out_dir / f"st_loc_{plane}.nrrd"
        sitk.WriteImage(reader.Execute(), str(path))
        written[f"st_loc_{plane}"] = path
    return written


def scans() -> dict[str, Path]:
    """name -> path of every SliceTracker scan of the benchmark."""
    if not TESTING.is_dir():
        return {}
    out = {"st_t2_ax_guidance": TESTING / "testData_3", "st_t2_ax_cover": TESTING / "testData_2"}
    out.update(localizer_stacks())
    return out
