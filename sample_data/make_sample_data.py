"""Write the bundled sample series: a right hip at baseline, 3 and 12 months, with exact truth.

Run from the repository root::

    python sample_data/make_sample_data.py [--out sample_data]

It calls :func:`lesionvol.phantom.make_series` with a fixed seed, so the files are reproducible
byte for byte with the same generator version, numpy and SimpleITK.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lesionvol.phantom import GENERATOR_VERSION, make_series

SEED = 20221201
VISITS = ("baseline", "month03", "month12")
DAYS = (0.0, 91.0, 365.0)
HEAD_RADIUS_MM = 23.6          # anatomical head ≈ 53 mL, diameter 47.2 mm
LF_PCT = (18.0, 11.0, 4.0)     # REBORNE means: 18.7 %, 11.6 %, 3.7 % of the head
INTENSITY_SCALE = 1000.0       # marrow ≈ 1000 in the stored int16 images


def build():
    """The sample series (a :class:`lesionvol.phantom.Series`).

    Example
    -------
    >>> s = build()  # doctest: +SKIP
    """
    return make_series(
        SEED, n_followups=2, side="right", head_radius_mm=HEAD_RADIUS_MM, lesion_pct_head=LF_PCT[0],
        residual_fractions=(LF_PCT[1] / LF_PCT[0], LF_PCT[2] / LF_PCT[0]), bright_centre=False,
        max_rotation_deg=4.0, max_translation_mm=5.0, shape=(128, 128, 40), spacing_mm=(1.0, 1.0, 3.0),
        followup_grids=[{}, dict(shape=(160, 160, 30), spacing_mm=(0.8, 0.8, 4.0), oblique_deg=12.0)],
        snr=25.0, bias_amplitude=0.15, days=DAYS, intensity_scale=INTENSITY_SCALE)


def _as_int16(image: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.clip(np.rint(sitk.GetArrayFromImage(image)), -32768, 32767).astype(np.int16))
    out.CopyInformation(image)
    return out


def _vec(v) -> list[float] | None:
    return None if v is None else [float(x) for x in v]


def main(argv: list[str] | None = None) -> int:
    """Write the images, reference masks and truth.json into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    out = Path(parser.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    series = build()
    for name, scan in zip(VISITS, series.scans):
        sitk.WriteImage(_as_int16(scan.image), str(out / f"{name}.nii.gz"), useCompression=True)
        sitk.WriteImage(scan.head_mask, str(out / f"{name}_head.nii.gz"), useCompression=True)
        sitk.WriteImage(scan.lesion_enclosed_mask, str(out / f"{name}_lesion.nii.gz"), useCompression=True)

    truths = [s.truth for s in series.scans]
    base_ml = truths[0].lesion_enclosed_ml
    changes = [None] + [c["right"] for c in series.changes]
    truth = {
        "description": "lesionvol synthetic sample series: right hip, dark-centred necrotic lesion, "
                       "baseline, 3 and 12 months (see README.md)",
        "generator": "lesionvol.phantom.make_series",
        "generator_version": GENERATOR_VERSION,
        "seed": SEED,
        "side": "right",
        "visits": list(VISITS),
        "days": [float(d) for d in DAYS],
        "head_definition": "head ball cut by the head-neck junction plane (perpendicular to the neck axis "
                           "where the neck, radius 0.62 R, leaves the ball: 0.785 R from the centre); analytic",
        "lesion_definition": "enclosed: everything inside the outer margin of the demarcating band "
                             "(head ball ∩ lesion ball, lens); analytic. The lesion centre is dark, so "
                             "lesion_dark_ml equals it.",
        "head_radius_mm": HEAD_RADIUS_MM,
        "head_volume_ml": [t.head_volume_ml for t in truths],
        "head_sphere_volume_ml": [t.head_sphere_volume_ml for t in truths],
        "lesion_volume_ml": [t.lesion_enclosed_ml for t in truths],
        "lesion_dark_ml": [t.lesion_dark_ml for t in truths],
        "lesion_pct_head": [t.lesion_pct_head for t in truths],
        "residual_pct_baseline": [100.0 * t.lesion_enclosed_ml / base_ml for t in truths],
        "regenerated_ml": [0.0] + [c.regenerated_ml for c in changes[1:]],
        "new_lesion_ml": [0.0] + [c.new_ml for c in changes[1:]],
        "lesions": [[{"centre_offset_mm": list(l.centre_offset_mm), "radius_mm": l.radius_mm,
                      "band_mm": l.band_mm, "bright_centre": l.bright_centre} for l in s.visit.lesions]
                    for s in series.scans],
        "landmarks_mm": [{"head_centre": _vec(t.head_centre_mm), "lesion_centroid": _vec(t.lesion_centroid_mm),
                          "neck_axis": _vec(t.neck_axis), "acetabular_axis": _vec(t.acetabular_axis),
                          "acetabular_edge": _vec(t.acetabular_edge_mm)} for t in truths],
        "grids": [{"size": list(s.image.GetSize()), "spacing_mm": list(s.image.GetSpacing()),
                   "origin_mm": list(s.image.GetOrigin()), "direction": list(s.image.GetDirection()),
                   "plane": s.visit.plane, "oblique_deg": s.visit.oblique_deg} for s in series.scans],
        "transforms": [
            {"fixed": "baseline", "moving": name, "type": "Euler3DTransform",
             "convention": "ITK: maps baseline (fixed) physical LPS points to follow-up (moving) physical points",
             "center_mm": list(tf.GetCenter()),
             "parameters": list(tf.GetParameters()),  # angleX, angleY, angleZ (rad), tx, ty, tz (mm)
             "parameter_names": ["angle_x_rad", "angle_y_rad", "angle_z_rad", "tx_mm", "ty_mm", "tz_mm"],
             "compute_zyx": bool(tf.GetComputeZYX()),
             "matrix": list(tf.GetMatrix()), "translation_mm": list(tf.GetTranslation()),
             "rotation_deg": math.degrees(math.acos(min(1.0, (np.trace(np.reshape(tf.GetMatrix(), (3, 3))) - 1) / 2)))}
            for name, tf in zip(VISITS[1:], series.transforms)],
        "image_storage": f"int16 = round(float32 phantom image); marrow ≈ {INTENSITY_SCALE:g} before bias and noise",
        "snr": 25.0,
        "bias_amplitude": 0.15,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
