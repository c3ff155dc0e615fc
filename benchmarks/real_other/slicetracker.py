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

from stacks import write_plane_stacks

ROOT = Path(os.environ.get("LESIONVOL_REAL_OTHER", "/work/cache/real_other")) / "slicetracker"
TESTING = ROOT / "RegistrationModule" / "Resources" / "Testing"


def localizer_stacks(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the coronal and axial slices of series 1 of ``testData_1`` as NRRD volumes."""
    import pydicom

    out_dir = Path(out_dir or ROOT / "derived")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [f for f in sorted(glob.glob(str(TESTING / "testData_1" / "*.dcm")))
             if str(pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber) == "1"]
    return write_plane_stacks(files, "st_loc", out_dir)


def scans() -> dict[str, Path]:
    """name -> path of every SliceTracker scan of the benchmark."""
    if not TESTING.is_dir():
        return {}
    out = {"st_t2_ax_guidance": TESTING / "testData_3", "st_t2_ax_cover": TESTING / "testData_2"}
    out.update(localizer_stacks())
    return out
