"""Real prostate MRI from the PROSTATEx collection, as shipped in picai_prep's test data.

Source: three PROSTATEx studies (ProstateX-0000, -0001, -0218; Siemens 3 T, 2011) kept as DICOM
under ``tests/input/dcm/ProstateX/`` of the public repository ``DIAGNijmegen/picai_prep`` (code
Apache-2.0).  The images are the SPIE-AAPM-NCI PROSTATEx challenge data of The Cancer Imaging
Archive (TCIA), which TCIA publishes under CC BY 3.0 (cite Litjens et al. 2017 and TCIA, Clark et
al. 2013); the repository itself states no licence for them.  Prostate protocols: the femoral
heads are in view on the 260 mm axial 3D GRE (VIBE, 4 flip angles) and DCE (TWIST) series of
ProstateX-0218, on the edges of the 180-200 mm T2 TSE series, and on the 400 mm tri-plane T2
localizers.

How to get it (no network besides the search tool's ``fetch``)::

    fetch github:DIAGNijmegen/picai_prep           -> /work/.mirror/DIAGNijmegen+picai_prep/repo
    git --git-dir=/work/.mirror/DIAGNijmegen+picai_prep/repo archive HEAD tests/input/dcm/ProstateX \
        | tar -x -C /work/cache/real_other/prostatex --strip-components=4

``lesionvol.io.read_image`` reads each series folder as it is.  Only the tri-plane localizers
need this module: their 13 files are 3 sagittal, 5 coronal and 5 axial slices in one series, so
:func:`localizer_stacks` writes the coronal and the axial slices as two NRRD volumes.
Scans are kept outside the repository (``/work/cache/real_other``); never commit them.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from stacks import write_plane_stacks

ROOT = Path(os.environ.get("LESIONVOL_REAL_OTHER", "/work/cache/real_other")) / "prostatex"

#: name -> series folder (relative to ROOT), the series run in the benchmark
SERIES = {
    "px0218_vibe_fa20": "ProstateX-0218/02-18-2011/26.000000-fl3dvibepreflip20degWip403d-85720",
    "px0218_vibe_fa10": "ProstateX-0218/02-18-2011/25.000000-fl3dvibepreflip10degWip403d-85816",
    "px0218_vibe_fa2": "ProstateX-0218/02-18-2011/23.000000-fl3dvibepreflip2degWip403dPD-72759",
    "px0218_dce_t08": "ProstateX-0218/02-18-2011/27.000000-TwistdynamicWip576TT8.0s-64234",
    "px0218_t2_tra": "ProstateX-0218/02-18-2011/5.000000-t2tsetra320p2-09906",
    "px0218_t2_cor": "ProstateX-0218/02-18-2011/6.000000-t2tsecor320p2-02127",
    "px0218_adc": "ProstateX-0218/02-18-2011/21.000000-ADChigh bvalue-80390",
    "px0000_t2_tra": "ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702",
    "px0000_t2_cor": "ProstateX-0000/07-07-2011/5.000000-t2tsecor-03471",
    "px0000_pd_tfl3d": "ProstateX-0000/07-07-2011/9.000000-tfl3d PD reftra1.5x1.5t3-67276",
    "px0001_t2_tra": "ProstateX-0001/07-08-2011/6.000000-t2tsetra-76610",
    "px0001_t2_cor": "ProstateX-0001/07-08-2011/5.000000-t2tsecor-26539",
}

#: tri-plane localizers: name prefix -> series folder
LOCALIZERS = {
    "px0218_loc": "ProstateX-0218/02-18-2011/1.000000-t2localizer-63139",
    "px0001_loc": "ProstateX-0001/07-08-2011/1.000000-t2localizer-75055",
}


def localizer_stacks(out_dir: Path | None = None) -> dict[str, Path]:
    """Write the coronal and axial slices of each tri-plane localizer as NRRD volumes.

    Returns ``{"px0218_loc_cor": path, ...}``.  The slices of one plane are parallel, equally
    spaced (10.5 mm apart, 7 mm thick) and read in position order by SimpleITK.
    """
    out_dir = Path(out_dir or ROOT / "derived")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for prefix, rel in LOCALIZERS.items():
        written.update(write_plane_stacks(sorted(glob.glob(str(ROOT / rel / "*.dcm"))), prefix, out_dir))
    return written


def scans() -> dict[str, Path]:
    """name -> path of every ProstateX scan of the benchmark (localizer stacks written on demand)."""
    out = {name: ROOT / rel for name, rel in SERIES.items() if (ROOT / rel).is_dir()}
    out.update(localizer_stacks())
    return out


if __name__ == "__main__":
    for name, path in scans().items():
        print(name, path)
