"""Every docstring example in ``lesionvol`` and ``napari_lesionvol`` runs and prints what it says.

The modules are found by walking both packages (``lesionvol.segment.*`` included) and keeping
those whose source holds a ``>>>`` example, so a new module, or a new example in an old one,
is tested without editing this file.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ("lesionvol", "napari_lesionvol")

#: Modules that import Qt or napari when imported: their examples run with the Qt tests only.
NEEDS_QT = {"napari_lesionvol._widget": "imports qtpy and napari at import time (a Qt application)"}

OPTIONS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


def _module_names() -> list[str]:
    names = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.append(package_name)

        def fail(name: str) -> None:
            raise ImportError(f"cannot walk {name}")

        names += [info.name for info in pkgutil.walk_packages(package.__path__, f"{package_name}.", onerror=fail)]
    return names


def _has_examples(name: str) -> bool:
    """True when the module's source holds a ``>>>`` line (read, not imported: Qt modules stay unloaded)."""
    origin = importlib.util.find_spec(name).origin
    return origin is not None and origin.endswith(".py") and ">>>" in Path(origin).read_text(encoding="utf-8")


def _params() -> list:
    return [pytest.param(name, marks=pytest.mark.skip(reason=NEEDS_QT[name])) if name in NEEDS_QT else name
            for name in _module_names() if _has_examples(name)]


MODULES = _params()


def test_every_package_is_walked():
    names = [p if isinstance(p, str) else p.values[0] for p in MODULES]
    assert {n.split(".")[0] for n in names} == set(PACKAGES)
    assert "lesionvol.io" in names and any(n.startswith("lesionvol.segment.") for n in names)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report: list[str] = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    if result.attempted == getattr(result, "skipped", 0):  # Python >= 3.13 counts skipped ones
        pytest.skip(f"every example in {name} is marked +SKIP")
    assert result.failed == 0, "".join(report)
