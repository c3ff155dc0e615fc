"""Fuzzing the command line with broken image headers, files and manifests.

Issue "Never lose or corrupt a user's data": whatever file or manifest it is given, a run
ends in exit 0 or exit 2 with exactly one line on stderr (a batch whose studies failed
exits 1 by contract, with the failures in its ``errors.csv``), never a traceback, an
abort, or a file written outside ``--out``.

The cases are made here with a fixed seed and run in one child process (this file run as
a script), so that a C++ abort is reported with its case instead of killing pytest; stderr
is captured at the file-descriptor level, so ITK's own prints count too.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

SEED = int(os.environ.get("LESIONVOL_FUZZ_SEED", "20261202"))  # fixed; another seed explores further
N_IMAGE_CASES = 240  # headers, truncations, random bytes, names, DICOM series: measure
N_MANIFEST_READS = 300  # manifests through lesionvol.manifest.read_manifest
N_BATCH_CASES = 10  # manifests through `lesionvol batch`
N_BATCH_STARTED = 1  # of which accepted ones, that start Dask (10 to 20 s each on 2 busy cores)
CASE_TIMEOUT_S = 60  # no output for this long: the case hangs

EXTREMES = ["0", "-1", "1", "3", "1e-30", "1e30", "1e999", "nan", "inf", "-inf", "2147483647", "4294967296",
            "1500", "-0", "abc", "", "٣", "0x10", "1,5"]


# ----------------------------------------------------------------------------- the valid inputs
def _base_files(data: Path) -> dict[str, Path]:
    import numpy as np
    import SimpleITK as sitk

    from helpers import rotation_matrix

    rng = np.random.default_rng(SEED)
    image = sitk.GetImageFromArray((rng.random((6, 8, 8)) * 900).astype(np.int16))
    image.SetSpacing((0.9, 0.9, 3.0))
    image.SetOrigin((-5.0, 7.5, 20.0))
    image.SetDirection(rotation_matrix((0.2, 1.0, 0.1), 12.0).flatten().tolist())
    lesion, head = np.zeros((6, 8, 8), np.uint8), np.zeros((6, 8, 8), np.uint8)
    lesion[2:4, 3:5, 3:6], head[1:5, 1:7, 1:7] = 1, 1
    files = {}
    for name, suffix, compress in [("nii", ".nii", False), ("niigz", ".nii.gz", True), ("nrrd", ".nrrd", False),
                                   ("mha", ".mha", False), ("mhd", ".mhd", False), ("nhdr", ".nhdr", False)]:
        files[name] = data / f"base{suffix}"
        sitk.WriteImage(image, str(files[name]), compress)
    for name, values in (("lesion", lesion), ("head", head)):
        mask = sitk.GetImageFromArray(values)
        mask.CopyInformation(image)
        files[name] = data / f"{name}.nii.gz"
        sitk.WriteImage(mask, str(files[name]))
    series = data / "series"
    series.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        for tag, value in {"0008|0060": "MR", "0020|000e": "1.2.3.4.5", "0020|000d": "1.2.3.4",
                           "0020|0013": str(k + 1), "0008|0018": f"1.2.3.4.5.{k + 1}",
                           "0020|0032": "\\".join(f"{p:.5f}" for p in image.TransformIndexToPhysicalPoint((0, 0, k))),
                           "0020|0037": "\\".join(f"{v:.7f}" for v in (*direction[:, 0], *direction[:, 1]))}.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(series / f"s{k:02d}.dcm"))
        writer.Execute(slice_)
    files["series"] = series
    return files


# ----------------------------------------------------------------------------- image mutations
def _mutate_nifti(rng: random.Random, base: Path, target: Path) -> str:
    import nibabel as nib
    import numpy as np

    raw = base.read_bytes()
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw[:348]), check=False)
    field = rng.choice(["dim", "pixdim", "datatype", "bitpix", "vox_offset", "scl_slope", "scl_inter", "qform_code",
                        "sform_code", "quatern_b", "quatern_d", "qoffset_x", "srow_x", "srow_z", "magic",
                        "sizeof_hdr", "dim_info", "xyzt_units"])
    value = rng.choice(EXTREMES[:13] + ["32", "1792", "2048", "16", "7"])
    warnings.simplefilter("ignore", RuntimeWarning)  # nan cast to an integer field: that is the point
    try:
        if header[field].shape:
            index = rng.randrange(len(header[field]))
            header[field][index] = np.array(float(value)).astype(header[field].dtype) if field != "magic" else value
        else:
            header[field] = np.array(float(value)).astype(header[field].dtype) if field != "magic" else value[:4]
    except (ValueError, OverflowError, TypeError):
        header[field] = 0 if field != "magic" else b"n+2\x00"
    data = header.binaryblock + raw[348:]
    gz = rng.random() < 0.3
    target = target.with_name(target.name + (".nii.gz" if gz else ".nii"))
    (gzip.open if gz else open)(target, "wb").write(data)
    return f"{target.name}: NIfTI {field} = {value}"


def _mutate_text(rng: random.Random, base: Path, target: Path) -> str:
    text = base.read_bytes()
    split = text.index(b"\n\n") + 2 if text.startswith(b"NRRD") and b"\n\n" in text else (
        text.index(b"ElementDataFile = LOCAL\n") + 24 if b"ElementDataFile = LOCAL\n" in text else len(text))
    lines, payload = text[:split].decode().splitlines(), text[split:]
    k = rng.randrange(1, len(lines))
    key, sep, value = lines[k].partition(": " if text.startswith(b"NRRD") else " = ")
    choice = rng.random()
    if choice < 0.15:
        del lines[k]
        what = f"deleted {key!r}"
    elif choice < 0.25:
        lines.insert(k, lines[k])
        what = f"repeated {key!r}"
    elif choice < 0.75 and value:
        words = value.replace("(", " ( ").replace(")", " ) ").replace(",", " , ").split()
        numeric = [i for i, w in enumerate(words) if w not in "(),"] or [0]
        i = rng.choice(numeric)
        words[i] = rng.choice(EXTREMES)
        value = " ".join(words).replace(" ( ", "(").replace(" ) ", ")").replace(" , ", ",").replace("( ", "(")
        lines[k] = f"{key}{sep}{value}"
        what = f"{key} = {value}"
    else:
        value = rng.choice(["MET_FLOAT", "MET_OTHER", "double", "block", "gzip", "bzip2", "ascii", "hex", "True",
                            "LIST", "../../etc/hostname", "%d.raw 0 1000000000 1", "/dev/zero", "no_such.raw",
                            "0.5 0 0 0.5 1 0 0 0 1", "(1,0,0) (0.5,1,0) (0,0,3)", "1500 1500 1500", "2", "5"])
        lines[k] = f"{key}{sep}{value}"
        what = f"{key} = {value}"
    if rng.random() < 0.2 and payload:
        payload = payload[: rng.randrange(len(payload))]
        what += f", data cut to {len(payload)} bytes"
    target = target.with_name(target.name + base.suffix)
    target.write_bytes("\n".join(lines).encode() + b"\n" + payload)  # a .mhd/.nhdr still names base.raw
    return f"{target.name}: {what}"


def _truncated(rng: random.Random, base: Path, target: Path) -> str:
    data = base.read_bytes()
    cut = rng.choice([0, 1, 4, 100, 347, 348, 351, rng.randrange(len(data))])
    target = target.with_name(target.name + "".join(base.suffixes))
    target.write_bytes(data[:cut])
    return f"{target.name}: {base.name} cut to {cut} bytes"


def _random_bytes(rng: random.Random, target: Path) -> str:
    prefix = rng.choice([b"", b"NRRD0004\n", b"ObjectType = Image\nNDims = 3\n", b"\x5c\x01\x00\x00", b"\x1f\x8b"])
    data = prefix + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 1200)))
    target = target.with_name(target.name + rng.choice([".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"]))
    target.write_bytes(data)
    return f"{target.name}: {len(data)} random bytes after {prefix[:12]!r}"


def _odd_name(rng: random.Random, base: Path, folder: Path) -> tuple[str, str]:
    name = rng.choice([b"scan\xe9.nii.gz", b"\xff\xfe.nii.gz", "scan ü 1.nii.gz".encode(), b"scan\nx.nii.gz",
                       b"..nii.gz", b"scan.NII.GZ", b"scan%s%n.nii.gz"])
    path = os.fsencode(folder) + b"/" + name
    with open(path, "wb") as handle:
        handle.write(base.read_bytes())
    return os.fsdecode(path), f"name {name!r}"


def _mutated_series(rng: random.Random, series: Path, target: Path) -> str:
    import pydicom

    target.mkdir()
    files = sorted(series.iterdir())
    for f in files:
        (target / f.name).write_bytes(f.read_bytes())
    victim = target / rng.choice(files[1:-1]).name
    what = rng.choice(["missing slice", "moved slice", "duplicate position", "sheared orientation", "no position",
                       "truncated slice", "other series"])
    if what == "missing slice":
        victim.unlink()
    elif what == "truncated slice":
        victim.write_bytes(victim.read_bytes()[:400])
    else:
        ds = pydicom.dcmread(victim)
        if what == "moved slice":
            ds.ImagePositionPatient = [str(float(v) + 1.3) for v in ds.ImagePositionPatient]
        elif what == "duplicate position":
            ds.ImagePositionPatient = pydicom.dcmread(target / files[0].name).ImagePositionPatient
        elif what == "sheared orientation":
            ds.ImageOrientationPatient = ["1", "0", "0", "0.5", "1", "0"]
            for f in target.iterdir():
                other = pydicom.dcmread(f)
                other.ImageOrientationPatient = ["1", "0", "0", "0.5", "1", "0"]
                other.save_as(f)
            ds = pydicom.dcmread(victim)
        elif what == "no position":
            del ds.ImagePositionPatient
        else:
            ds.SeriesInstanceUID = "1.2.3.9"
        ds.save_as(victim)
    return f"{target.name}: DICOM series, {what} ({victim.name})"


def _image_cases(rng: random.Random, files: dict[str, Path], data: Path) -> list[dict]:
    cases = []
    for i in range(N_IMAGE_CASES):
        target = data / f"case{i:03d}"
        kind = rng.choices(["nifti", "text", "truncated", "bytes", "name", "dicom"], [30, 35, 15, 10, 5, 5])[0]
        if kind == "nifti":
            what = _mutate_nifti(rng, files["nii"], target)
        elif kind == "text":
            what = _mutate_text(rng, files[rng.choice(["nrrd", "mha", "mhd", "nhdr"])], target)
        elif kind == "truncated":
            what = _truncated(rng, files[rng.choice(["nii", "niigz", "nrrd", "mha", "lesion"])], target)
        elif kind == "bytes":
            what = _random_bytes(rng, target)
        elif kind == "name":
            path, what = _odd_name(rng, files[rng.choice(["niigz", "lesion"])], data)
        else:
            what = _mutated_series(rng, files["series"], target)
        if kind != "name":
            path = str(next(p for p in data.iterdir() if p.name.startswith(target.name)))
        image, lesion = (str(files["niigz"]), path) if kind != "dicom" and rng.random() < 0.3 else (path, str(files["lesion"]))
        cases.append({"kind": "cli", "what": what,
                      "argv": ["measure", image, "--lesion", lesion, "--head", str(files["head"])]})
    return cases


# ----------------------------------------------------------------------------- manifests
NASTY_CELLS = {
    "subject": ["..", "../x", "a/b", "", "P 1", "Ünï", "=cmd()", "x" * 80, "P001\x00", "P\n1", "/etc"],
    "side": ["both", "", "LEFT", "l", "right "],
    "timepoint": ["..", "a/b", "", "t0", "t\n1", "../../x"],
    "days": ["-1", "1e308", "1e999", "nan", "inf", "", "3,5", "٣", "18446744073709551616", "0x10"],
    "image": ["../data/base.nii.gz", "..", "/", "missing.nii", "series", "../../../../etc/passwd", "",
              "base.nii.gz\x00", "a\nb.nii.gz", "case000.nii", "case005.nii.gz", "case010.mha"],
    "lesion_mask": ["", "..", "../data/lesion.nii.gz", "head.nii.gz", "base.nii.gz"],
    "head_mask": ["", "/dev/null", "lesion.nii.gz"],
    "seed_mm": ["1 2 3", "nan nan nan", "1e999 0 0", "x", ""],
    "transform": ["", "missing.tfm", "base.nii.gz"],
}


def _manifest(rng: random.Random, folder: Path, i: int) -> tuple[Path, str]:
    """A valid manifest with 0 to 3 mutations: columns, cells, quoting, empty lines, encodings, bytes."""
    columns = ["subject", "side", "timepoint", "days", "image", "lesion_mask", "head_mask"]
    rows = [["P001", "right", f"t{k}", str(91 * k), "base.nii.gz", "lesion.nii.gz", "head.nii.gz"] for k in range(2)]
    rows += [["P002", "left", "t0", "0", "base.nii.gz", "lesion.nii.gz", "head.nii.gz"]] * (rng.random() < 0.5)
    what, quoting, text_edits, encoding = [], csv.QUOTE_MINIMAL, [], "utf-8"
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        move = rng.choice(["cell", "cell", "cell", "drop column", "rename column", "shuffle", "extra column",
                           "duplicate row", "quoting", "empty lines", "unbalanced quote", "cut", "encoding"])
        what.append(move)
        if move == "cell" and rows:
            r, c = rng.randrange(len(rows)), rng.randrange(len(columns))
            rows[r][c] = rng.choice(NASTY_CELLS.get(columns[c], ["", "?"]))
            what[-1] = f"{columns[c]}={rows[r][c]!r}"
        elif move == "drop column":
            c = rng.randrange(len(columns))
            columns, rows = columns[:c] + columns[c + 1:], [row[:c] + row[c + 1:] for row in rows]
        elif move == "rename column":
            columns[rng.randrange(len(columns))] = rng.choice(["IMAGE", "", "subject", " days", "seed_mm", "junk"])
        elif move == "shuffle":
            order = rng.sample(range(len(columns)), len(columns))
            columns, rows = [columns[k] for k in order], [[row[k] for k in order] for row in rows]
        elif move == "extra column":
            columns.append(rng.choice(["seed_mm", "transform", "label_map", "notes"]))
            rows = [row + [rng.choice(NASTY_CELLS.get(columns[-1], ["x"]))] for row in rows]
        elif move == "duplicate row" and rows:
            rows.append(list(rng.choice(rows)))
        elif move == "quoting":
            quoting = rng.choice([csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])
        elif move == "encoding":
            encoding = rng.choice(["utf-8-sig", "utf-16", "latin-1", "cp1252", "utf-32", "bytes"])
        else:
            text_edits.append(move)
    buffer = io.StringIO()
    csv.writer(buffer, quoting=quoting).writerows([columns, *rows])
    text = buffer.getvalue()
    if "empty lines" in text_edits:
        text = text.replace("\r\n", "\r\n\r\n  \r\n")
    if "unbalanced quote" in text_edits:
        text = text.replace(",", '"', 1)
    if "cut" in text_edits:
        text = text[: rng.randrange(len(text) + 1)]
    data = bytes(rng.randrange(256) for _ in range(200)) if encoding == "bytes" else text.encode(encoding, "replace")
    path = folder / f"manifest{i:03d}.csv"  # beside the images: relative paths are theirs
    path.write_bytes(data)
    return path, f"{path.name} ({encoding}; {', '.join(what) or 'valid'}): {text[:200]!r}"


def _accepted(path: Path) -> bool:
    from lesionvol.manifest import read_manifest

    try:
        read_manifest(path)
    except Exception:  # the child tells refusals from failures; here only: would a batch start?
        return False
    return True


# ----------------------------------------------------------------------------- the child process
def _snapshot(root: Path, skip: list[str]) -> dict[str, tuple[int, int]]:
    seen = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(folder, d) not in skip]
        for name in names:
            path = os.path.join(folder, name)
            try:
                stat = os.lstat(path)
            except OSError:
                continue
            seen[path] = (stat.st_size, stat.st_mtime_ns)
    return seen


def _run_one(case: dict) -> tuple[object, str]:
    from lesionvol.cli import main
    from lesionvol.errors import LesionvolError
    from lesionvol.manifest import read_manifest

    if case["kind"] == "cli":
        return main(case["argv"]), ""
    try:
        read_manifest(case["path"])
    except LesionvolError as exc:
        print(f"lesionvol: error: {exc}", file=sys.stderr)
        return 2, ""
    return 0, ""


def _child(cases_file: str, results_file: str, start: int) -> None:
    warnings.simplefilter("always")  # the command line shows each warning: so must the fuzz
    warnings.simplefilter("ignore", DeprecationWarning)
    spec = json.loads(Path(cases_file).read_text())
    root, skip = Path(spec["root"]), spec["skip"]
    with open(results_file, "a") as results:
        for i in range(start, len(spec["cases"])):
            case = spec["cases"][i]
            results.write(json.dumps({"i": i, "started": True}) + "\n")
            results.flush()
            before = _snapshot(root, skip + ([case["out"]] if case.get("out") else []))
            with tempfile.TemporaryFile() as err, open(os.devnull, "w") as null:
                sys.stdout.flush(), sys.stderr.flush()
                saved = os.dup(1), os.dup(2)
                os.dup2(null.fileno(), 1), os.dup2(err.fileno(), 2)
                try:
                    code, tb = _run_one(case)
                except BaseException as exc:  # noqa: BLE001 - any escape is the finding
                    code, tb = f"exception {type(exc).__name__}", traceback.format_exc()
                finally:
                    sys.stdout.flush(), sys.stderr.flush()
                    os.dup2(saved[0], 1), os.dup2(saved[1], 2)
                    os.close(saved[0]), os.close(saved[1])
                err.seek(0)
                stderr = err.read().decode("utf-8", "backslashreplace")
            after = _snapshot(root, skip + ([case["out"]] if case.get("out") else []))
            changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
            results.write(json.dumps({"i": i, "code": code, "stderr": stderr, "traceback": tb,
                                      "changed": changed}) + "\n")
            results.flush()


# ----------------------------------------------------------------------------- the test
def _run_all(spec: dict, tmp: Path) -> dict[int, dict]:
    cases_file, results_file = tmp / "cases.json", tmp / "results.jsonl"
    cases_file.write_text(json.dumps(spec))
    results: dict[int, dict] = {}
    start = 0
    env = {**os.environ, "TMPDIR": str(tmp / "scratch"), "PYTHONPATH": os.pathsep.join(sys.path),
           "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    while start < len(spec["cases"]):
        with open(tmp / "child_stderr.txt", "w+b") as child_err:
            child = subprocess.Popen([sys.executable, __file__, str(cases_file), str(results_file), str(start)],
                                     cwd=tmp / "cwd", env=env, stdout=subprocess.DEVNULL, stderr=child_err)
            seen, idle = results_file.stat().st_size if results_file.exists() else 0, 0.0
            while child.poll() is None and idle < CASE_TIMEOUT_S:  # a case that hangs is one finding
                time.sleep(0.2)
                size = results_file.stat().st_size if results_file.exists() else 0
                seen, idle = size, (0.0 if size != seen else idle + 0.2)
            hung = child.poll() is None
            if hung:
                child.kill()
            child.wait()
            child_err.seek(0)
            tail = child_err.read().decode("utf-8", "backslashreplace")[-600:]
        last = start
        for line in results_file.read_text().splitlines():
            record = json.loads(line)
            last = record["i"]
            if "code" in record:
                results[record["i"]] = record
        if last not in results:  # the process died or hung in this case
            code = f"hang (over {CASE_TIMEOUT_S} s)" if hung else f"crash (exit {child.returncode})"
            results[last] = {"i": last, "code": code, "stderr": tail, "changed": []}
        start = last + 1
    return results


def _problem(case: dict, result: dict) -> str | None:
    code, lines = result["code"], result["stderr"].splitlines()
    batch = case["kind"] == "cli" and case["argv"][0] == "batch"
    if result.get("changed"):
        return f"files changed outside --out: {result['changed'][:3]}"
    if code == 2:
        ok = len(lines) == 1 and lines[0].startswith("lesionvol: error: ") and "internal error" not in lines[0]
        return None if ok else f"exit 2 with stderr {result['stderr'][:600]!r}"
    if code == 0 or (code == 1 and batch):
        if batch and code == 1:
            errors = Path(case["out"]) / "errors.csv"
            text = errors.read_text() if errors.exists() else "(no errors.csv)"
            if "internal error" in text or "Traceback" in text or not errors.exists():
                return f"batch failures not reported as such: {text[:600]!r}"
        return None if not lines else f"exit {code} with stderr {result['stderr'][:600]!r}"
    return f"exit {code}: {result['stderr'][-600:]!r} {result.get('traceback', '')[-1500:]}"


def test_fuzz_command_line_never_crashes_never_writes_outside_out(tmp_path):
    rng = random.Random(SEED)
    data, manifests, outs = tmp_path / "data", tmp_path / "data", tmp_path / "outs"
    for folder in (data, outs, tmp_path / "scratch", tmp_path / "cwd"):
        folder.mkdir(exist_ok=True)
    files = _base_files(data)
    cases = _image_cases(rng, files, data)
    manifest_cases = [_manifest(rng, manifests, i) for i in range(N_MANIFEST_READS)]
    cases += [{"kind": "manifest", "path": str(p), "what": what} for p, what in manifest_cases]
    # one batch that starts Dask (seconds), with a valid study or a broken one; the rest refused at once
    accepted = [case for case in manifest_cases if _accepted(case[0])]
    refused = [case for case in manifest_cases if case not in accepted]
    chosen = rng.sample(accepted, min(N_BATCH_STARTED, len(accepted)))
    chosen += rng.sample(refused, min(N_BATCH_CASES - len(chosen), len(refused)))
    for i, (path, what) in enumerate(chosen):
        out = str(outs / f"out{i:02d}")
        cases.append({"kind": "cli", "what": what, "out": out,
                      "argv": ["batch", str(path), "--out", out, "--workers", "1", "--no-register", "--quiet"]})
    spec = {"root": str(tmp_path), "skip": [str(tmp_path / "scratch")], "cases": cases}
    results = _run_all(spec, tmp_path)

    problems = [f"{case['what']}\n    argv {case.get('argv', case.get('path'))}\n    {_problem(case, results[i])}"
                for i, case in enumerate(cases) if i in results and _problem(case, results[i])]
    missing = [i for i in range(len(cases)) if i not in results]
    codes: dict[str, int] = {}
    for i, case in enumerate(cases):
        key = f"{case['argv'][0] if case['kind'] == 'cli' else 'read_manifest'} exit {results.get(i, {}).get('code')}"
        codes[key] = codes.get(key, 0) + 1
    print(f"fuzz: {len(cases)} runs; {json.dumps(codes, sort_keys=True)}")
    assert not missing, f"cases never run: {missing[:10]}"
    assert not problems, f"{len(problems)} of {len(cases)} runs went wrong:\n" + "\n".join(problems[:40])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))
