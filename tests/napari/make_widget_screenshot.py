"""Save docs/napari_widget.png: the review widget docked on the sample series.

Run under a display (``xvfb-run -a python tests/napari/make_widget_screenshot.py``).
Not a test; it uses the sample's reference masks and true transforms so it needs no
segmenter or registration.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(out: Path = ROOT / "docs" / "napari_widget.png") -> Path:
    import napari
    from qtpy.QtWidgets import QApplication

    from _napari_testing import open_sample, show_coronal_through_lesion, true_sample_transforms

    from napari_lesionvol._widget import ReviewWidget

    viewer = napari.Viewer(show=True, title="lesionvol review")
    viewer.window.resize(1700, 950)
    open_sample(viewer)
    widget = ReviewWidget(viewer)
    widget.setMinimumWidth(720)
    viewer.window.add_dock_widget(widget, name="Lesion review", area="right")
    widget.days.setText("0, 91, 365")
    widget.run(transforms=true_sample_transforms())
    deadline = time.monotonic() + 120
    while widget.session is None and widget.last_error is None and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)
    if widget.last_error:
        raise SystemExit(widget.last_error)
    show_coronal_through_lesion(viewer, {"baseline", "baseline_lesion", "month12 change"})
    viewer.layers["baseline_lesion"].contour = 2
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    viewer.close()
    return out


if __name__ == "__main__":
    print(main(*(Path(a) for a in sys.argv[1:])))
