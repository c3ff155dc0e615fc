"""The real MR example TotalSegmentator ships in its repository's tests (a negative control).

Source: ``tests/reference_files/example_mr_sm.nii.gz`` of the public repository
``wasserth/TotalSegmentator`` (Apache-2.0 for the repository; the image is a crop of an MR of the
TotalSegmentator MRI dataset, published under CC BY 4.0).  An axial 3 mm upper-abdomen MR
(liver, kidneys, spleen; 117 x 91 x 20): no femoral head in view, so the right answer is a refusal.

How to get it::

    fetch github:wasserth/TotalSegmentator          -> /work/.mirror/wasserth+TotalSegmentator/repo
    git --git-dir=/work/.mirror/wasserth+TotalSegmentator/repo show \
        HEAD:tests/reference_files/example_mr_sm.nii.gz > /work/cache/real_other/totalsegmentator/example_mr_sm.nii.gz

``lesionvol.io.read_image`` reads it as it is.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("LESIONVOL_REAL_OTHER", "/work/cache/real_other")) / "totalsegmentator"


def scans() -> dict[str, Path]:
    path = ROOT / "example_mr_sm.nii.gz"
    return {"ts_example_mr_abdomen": path} if path.exists() else {}
