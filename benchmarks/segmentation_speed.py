"""Speed and peak memory of segment_hip on a 256 × 256 × 160 T1 volume, 2 cores.

Run:  python benchmarks/segmentation_speed.py > benchmarks/results/segmentation_speed.txt

The phantom volume (0.5 × 0.5 × 0.8 mm, coronal, oblique 8°, SNR 20, fat-bright lesion of 18 %)
is written to a temporary NIfTI; a fresh Python process with 2 ITK/BLAS threads then reads it
and segments it three times.  Reported: wall time of each ``segment_hip`` call (reading
excluded), and the child process's peak resident memory (imports and the image included), next
to its peak before segmenting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, sys, time
import SimpleITK as sitk
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
from lesionvol.segment import segment_hip
from lesionvol.measure import mask_volume_ml
def peak_mb():   # VmHWM: this process's peak resident set (ru_maxrss would include the forking parent)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
image = sitk.ReadImage(sys.argv[1])
before = peak_mb()
times = []
for _ in range(3):
    t0 = time.perf_counter()
    seg = segment_hip(image)
    times.append(time.perf_counter() - t0)
peak = peak_mb()
print(json.dumps(dict(times=times, peak_mb=peak, before_mb=before, size=image.GetSize(),
                      head_ml=mask_volume_ml(seg.head), lesion_ml=mask_volume_ml(seg.lesion))))
"""


def main() -> int:
    from lesionvol.phantom import VisitSpec, lesion_for_fraction, make_visit
    import SimpleITK as sitk

    spec = VisitSpec(lesions=(lesion_for_fraction(23.0, 18.0, bright_centre=True),), shape=(256, 256, 160),
                     spacing_mm=(0.5, 0.5, 0.8), oblique_deg=8.0, snr=20.0, bias_amplitude=0.2)
    scan = make_visit(spec, seed=42)
    env = dict(os.environ, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS="2", OMP_NUM_THREADS="2",
               OPENBLAS_NUM_THREADS="2", MKL_NUM_THREADS="2")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "t1.nii")
        sitk.WriteImage(scan.image, path)
        out = subprocess.run([sys.executable, "-c", CHILD, path], env=env, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"volume {r['size'][0]}x{r['size'][1]}x{r['size'][2]} (x, y, z) float32, 0.5 x 0.5 x 0.8 mm, "
          f"{os.cpu_count()} cores on this machine, 2 threads")
    print("segment_hip wall time per call: " + ", ".join(f"{t:.2f} s" for t in r["times"])
          + f"   (best {min(r['times']):.2f} s; aim < 5 s)")
    print(f"peak resident memory of the process: {r['peak_mb']:.0f} MB "
          f"(after imports and reading the image: {r['before_mb']:.0f} MB; "
          f"segmentation adds {r['peak_mb'] - r['before_mb']:.0f} MB)")
    print(f"result: head {r['head_ml']:.2f} mL (truth {scan.truth.head_volume_ml:.2f}), "
          f"lesion {r['lesion_ml']:.2f} mL (truth {scan.truth.lesion_enclosed_ml:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
