"""The plugin as napari discovers it, and the core free of any GUI toolkit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUI_MODULES = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy", "superqt")


def test_npe2_validates_the_manifest():
    npe2 = shutil.which("npe2")
    if npe2 is None:
        pytest.skip("npe2 command not installed")
    done = subprocess.run([npe2, "validate", "lesionvol"], capture_output=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr


def test_manifest_contributes_reader_writer_sample_and_widget():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "plugins" / "napari_lesionvol" / "napari.yaml")
    assert manifest.name == "lesionvol"  # npe2 wants the distribution's name
    assert not manifest.display_name.endswith(")")  # npe2 rejects it, then `npe2 list` hides the plugin
    contributions = manifest.contributions
    patterns = contributions.readers[0].filename_patterns
    assert {"*.nii", "*.nii.gz", "*.nrrd", "*.mha"} <= set(patterns) and contributions.readers[0].accepts_directories
    assert contributions.writers[0].layer_types == ["labels"]
    assert [s.key for s in contributions.sample_data] == ["onfh_series"]
    assert contributions.widgets[0].display_name == "Lesion review"
    for command in contributions.commands:  # every python_name resolves
        module, _, attribute = command.python_name.partition(":")
        assert hasattr(__import__(module, fromlist=[attribute]), attribute), command.python_name


def test_core_imports_no_gui_toolkit():
    code = (
        "import importlib, pkgutil, sys, lesionvol\n"
        "for m in pkgutil.walk_packages(lesionvol.__path__, 'lesionvol.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {GUI_MODULES!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the core imported {done.stdout.strip()}"


def test_import_linter_contract():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter not installed")
    done = subprocess.run([lint], capture_output=True, encoding="utf-8", errors="replace", timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_sample_data_then_widget_from_the_plugins_menu(make_viewer):
    viewer = make_viewer()
    layers = viewer.open_sample("lesionvol", "onfh_series")  # File > Open Sample > lesionvol
    names = [layer.name for layer in layers]
    assert names[:3] == ["baseline", "month03", "month12"]
    assert {"baseline_lesion", "month12_head"} <= set(names)
    assert viewer.layers["baseline_lesion"].metadata["lesionvol"]["role"] == "lesion"
    from _napari_testing import process_events_for

    process_events_for(0.2)  # the sample opens in its acquisition plane, before any widget is open
    assert viewer.dims.order == (1, 0, 2) and tuple(viewer.dims.axis_labels) == ("I-S", "A-P", "R-L")
    assert viewer.canvas.overlays["lesionvol_left"].text == "R"
    _, widget = viewer.window.add_plugin_dock_widget("lesionvol", "Lesion review")  # Plugins > lesionvol
    assert [r.image.currentText() for r in widget.rows] == ["baseline", "month03", "month12"]
    assert [r.lesion.currentText() for r in widget.rows] == ["baseline_lesion", "month03_lesion", "month12_lesion"]
