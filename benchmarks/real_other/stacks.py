"""Tri-plane localizer series split into one volume per plane (shared by the loaders here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_plane_stacks(files: list[str], prefix: str, out_dir: Path) -> dict[str, Path]:
    """Write the coronal and axial slices among DICOM ``files`` as NRRD volumes ``{prefix}_{plane}.nrrd``.

    Slices are grouped by the axis their normal is closest to and ordered along it; a plane with
    fewer than 3 slices is skipped.  Returns ``{"{prefix}_cor": path, ...}``.

    Example
    -------
    >>> write_plane_stacks([], "loc", Path("/tmp"))
    {}
    """
    import pydicom
    import SimpleITK as sitk

    by_plane: dict[str, list[tuple[float, str]]] = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        normal = np.cross(iop[:3], iop[3:])
        plane = ("sag", "cor", "ax")[int(np.argmax(np.abs(normal)))]
        by_plane.setdefault(plane, []).append((float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))), f))
    written = {}
    for plane in ("cor", "ax"):
        ordered = [f for _, f in sorted(by_plane.get(plane, []))]
        if len(ordered) < 3:
            continue
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(ordered)
        path = Path(out_dir) / f"{prefix}_{plane}.nrrd"
        sitk.WriteImage(reader.Execute(), str(path))
        written[f"{prefix}_{plane}"] = path
    return written
