"""Output folders: lesionvol replaces only what it wrote, never an input, one run at a time.

* A folder lesionvol writes holds a marker file, ``.lesionvol`` (JSON: who wrote it, which
  version, what kind of output). ``overwrite`` replaces a folder only when it carries that marker
  (or is empty); any other folder is refused, whatever the flag.
* An output folder may not be, contain, or lie inside the folder of any input (replacing it would
  delete the scans).
* A symlinked output folder is followed: results go to its target, the link stays.
* A lock (``.<name>.lock`` beside the folder while a run writes, ``flock``: released even when
  the process is killed) stops a second run into the same folder with a clear message.
* Temporary folders of a killed run (``.<name>.partial-*``, ``.<name>.old-*``) are removed by the
  next run into the same folder, under the lock.
* Files and folders get the permissions the user's umask gives, not the 0600/0700 of temporary files.

Example
-------
>>> import tempfile
>>> out = Path(tempfile.mkdtemp()) / "results"
>>> with atomic_folder(out, kind="study") as tmp:
...     _ = (tmp / "volumes.csv").write_text("timepoint\\n")
>>> is_ours(out), sorted(p.name for p in out.iterdir())
(True, ['.lesionvol', 'volumes.csv'])
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from lesionvol import __version__
from lesionvol.errors import LesionvolError, OutputExistsError

MARKER = ".lesionvol"
RESULT_FILES = ("volumes.csv", "summary.json")


def marker_kind(folder: str | os.PathLike) -> str | None:
    """What lesionvol wrote into ``folder`` (``study``, ``batch``, ``demo``, …), or None when the
    folder carries no readable marker."""
    try:
        return str(json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_ours(folder: str | os.PathLike) -> bool:
    """True when ``folder`` carries lesionvol's marker file."""
    return marker_kind(folder) is not None


def has_results(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a finished lesionvol study result.

    Example
    -------
    >>> has_results(tempfile.mkdtemp())
    False
    """
    return any((Path(folder) / name).exists() for name in RESULT_FILES)


def write_marker(folder: str | os.PathLike, kind: str) -> None:
    """Mark ``folder`` as written by lesionvol (``kind``: study, batch, demo, export)."""
    text = json.dumps({"written_by": "lesionvol", "version": __version__, "kind": kind})
    (Path(folder) / MARKER).write_text(text + "\n", encoding="utf-8")


def resolve_out(out_dir: str | os.PathLike) -> Path:
    """The real folder results go to: absolute, with symlinks followed."""
    return Path(os.path.realpath(os.fspath(out_dir)))


def _input_folder(path: Path) -> Path:
    return path if path.is_dir() else path.parent


def check_not_inputs(out_dir: Path, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output folder that is, holds, or lies inside the folder of an input.

    Example
    -------
    >>> check_not_inputs(Path("/data/P1"), ["/data/P1/base.nii.gz"])
    Traceback (most recent call last):
    ...
    lesionvol.errors.OutputExistsError: output folder '/data/P1' is the folder of the input '/data/P1/base.nii.gz'; choose an output folder outside the inputs' folders
    """
    for given in inputs:
        path = resolve_out(given)
        folder = _input_folder(path)
        if out_dir == folder:
            where = "is the folder of"
        elif folder in out_dir.parents:
            where = "lies inside the folder of"
        elif out_dir in path.parents:
            where = "holds"
        else:
            continue
        raise OutputExistsError(f"output folder '{out_dir}' {where} the input '{given}'; choose an output "
                                f"folder outside the inputs' folders")


def check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse to write into an existing non-empty folder unless it is lesionvol's and ``overwrite``."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputExistsError(f"'{out_dir}' exists and is not a folder")
    if not any(out_dir.iterdir()):
        return
    if not is_ours(out_dir):
        raise OutputExistsError(f"'{out_dir}' holds files lesionvol did not write (no {MARKER} marker); "
                                f"choose a new or empty folder (--overwrite replaces only lesionvol's own folders)")
    if not overwrite:
        raise OutputExistsError(f"'{out_dir}' already holds results; use --overwrite to replace them")


def check_out_folder(out_dir: str | os.PathLike, overwrite: bool, inputs: Iterable[str | os.PathLike]) -> None:
    """The checks :func:`atomic_folder` makes, made before any work, so a bad ``--out`` costs nothing.

    Example
    -------
    >>> check_out_folder("/data/P1/results", False, ["/data/P1/base.nii.gz"])
    Traceback (most recent call last):
    ...
    lesionvol.errors.OutputExistsError: output folder '/data/P1/results' lies inside the folder of the input '/data/P1/base.nii.gz'; choose an output folder outside the inputs' folders
    """
    out = resolve_out(out_dir)
    check_not_inputs(out, inputs)
    check_replaceable(out, overwrite)


@contextlib.contextmanager
def locked(out_dir: Path) -> Iterator[None]:
    """Hold the lock of ``out_dir`` for the block, or refuse at once.

    The lock is ``flock`` on ``.<name>.lock`` beside the folder (released by the kernel even when
    the process is killed); the file is removed when the block ends.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    busy = LesionvolError(f"another lesionvol run is writing to '{out_dir}'; wait for it to finish or choose "
                          f"another output folder")
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:  # the file may have been removed by the run that held it: then it is no lock
            same = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise busy
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def remove_leftovers(out_dir: Path, name: str | None = None) -> None:
    """Remove the temporary ``.<name>.partial-*`` / ``.<name>.old-*`` entries a killed run left
    beside ``out_dir`` (call with its lock held)."""
    name = name or out_dir.name
    for pattern in (f".{name}.partial-*", f".{name}.old-*"):
        for path in out_dir.parent.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_umask(root: Path) -> None:
    """Give ``root`` and everything in it the permissions the umask gives new files and folders
    (temporary files are created 0600 and folders 0700)."""
    mask = _umask()
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


@contextlib.contextmanager
def atomic_folder(out_dir: str | os.PathLike, overwrite: bool = False, *, kind: str = "study",
                  inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``out_dir`` only if the block succeeds.

    The checks of the module docstring come first: not an input's folder, lesionvol's own or
    empty, not locked by another run. The finished folder carries the marker file.

    Raises
    ------
    OutputExistsError
        The folder is not lesionvol's, holds results and ``overwrite`` is False, or is an input's folder.
    LesionvolError
        Another run holds the folder's lock.
    """
    out = resolve_out(out_dir)
    inputs = list(inputs)
    check_not_inputs(out, inputs)
    with locked(out):
        check_replaceable(out, overwrite)
        remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        try:
            yield tmp
            write_marker(tmp, kind)
            apply_umask(tmp)
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.replace(out, old / out.name)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
