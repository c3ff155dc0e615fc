"""Which contrast lesionvol reads on the real public series of ``run.py``, from three sources.

For every scan: the contrast from its DICOM tags (as ``lesionvol analyze`` reads a DICOM folder),
from the NIfTI and BIDS sidecar that dcm2niix (the converter pipelines use; ``pip install
dcm2niix``) writes from the same series, and from its pixels alone (a NIfTI whose sidecar was
lost).  The NRRD and NIfTI scans have no tags: they are read from their pixels only.

    python benchmarks/real_other/contrast.py > /tmp/contrast.txt

The acquisition (sequence, TR, TE, flip) is printed from the tags so that each reading can be
checked against what was acquired.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dcm2niix  # noqa: E402
import run  # noqa: E402
from lesionvol.io import read_scan  # noqa: E402
from lesionvol.sequence import classify_contrast  # noqa: E402


#: The tags printed as what was acquired, and their short names.
ACQUISITION = (("ScanningSequence", "seq"), ("RepetitionTime", "TR"), ("EchoTime", "TE"), ("FlipAngle", "flip"))


def main() -> int:
    warnings.simplefilter("ignore")
    print(f"{'scan':22s} {'acquired':34s} {'DICOM tags':19s} {'dcm2niix':19s} pixels")
    agree = n_converted = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in sorted(run.all_scans().items()):
            scan = read_scan(path)
            t = scan.dicom_tags
            acquired = " ".join(f"{short} {t[key]}" for key, short in ACQUISITION if t.get(key))
            tags = classify_contrast(scan.image, t)[0] if t else "-"
            pixels = classify_contrast(scan.image)[0]
            converted = "-"
            if path.is_dir():
                subprocess.run([str(dcm2niix.bin), "-z", "y", "-f", name, "-o", tmp, str(path)],
                               check=True, capture_output=True)
                nifti = sorted(Path(tmp).glob(f"{name}*.nii.gz"))[0]   # one volume per series here
                nii = read_scan(nifti)
                converted = classify_contrast(nii.image, nii.dicom_tags)[0]
                n_converted += 1
                agree += converted == tags
            print(f"{name:22s} {acquired:34s} {tags:19s} {converted:19s} {pixels}")
    print(f"\ndcm2niix NIfTI + sidecar read as its DICOM series: {agree} of {n_converted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
