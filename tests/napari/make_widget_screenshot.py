"""Save docs/napari_widget.png: what a user sees after the README's steps, nothing staged.

Run under a display (``xvfb-run -a python tests/napari/make_widget_screenshot.py``).
Not a test. The steps are the README's: File ▸ Open Sample ▸ lesionvol, Plugins ▸ lesionvol ▸
Lesion review, click Run (the sample's reference masks are picked by name, its days filled
from the sample; the follow-ups are registered by lesionvol, as for a user). The view is the one
the widget sets when the results come: the baseline's acquisition plane through its lesion.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _wait(condition, timeout_s: float):
    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)


def main(out: Path = ROOT / "docs" / "napari_widget.png") -> Path:
    import napari

    viewer = napari.Viewer(show=True, title="napari")
    viewer.window.resize(1700, 1000)
    viewer.open_sample("lesionvol", "onfh_series")  # File > Open Sample > lesionvol
    _, widget = viewer.window.add_plugin_dock_widget("lesionvol", "Lesion review")  # Plugins > lesionvol
    if widget.known_days()[0] is None:  # the widget fills the sample's days itself
        raise SystemExit("the sample's days are not known to the widget")
    widget.run_button.click()
    _wait(lambda: widget.session is not None or widget.last_error is not None, 300)
    if widget.last_error:
        raise SystemExit(widget.last_error)
    _wait(lambda: False, 1.0)  # let the canvas draw
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()
    return out


if __name__ == "__main__":
    print(main(*(Path(a) for a in sys.argv[1:])))
