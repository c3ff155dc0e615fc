"""Fixtures for the napari tests: a real viewer on a virtual display (pytest-xvfb).

Offscreen Qt has no OpenGL context, so nothing here sets QT_QPA_PLATFORM=offscreen;
pytest-xvfb starts Xvfb for the session (CI installs it, see .ci/run).
"""

from __future__ import annotations

import json

import pytest
from _napari_testing import _process_events, true_sample_transforms


@pytest.fixture
def make_viewer():
    """Factory for napari viewers, closed at the end of the test."""
    import napari

    viewers = []

    def make(show: bool = False, **kwargs):
        viewer = napari.Viewer(show=show, **kwargs)
        viewers.append(viewer)
        return viewer

    yield make
    for viewer in viewers:
        viewer.close()
    _process_events()


@pytest.fixture(scope="session")
def sample_transforms():
    """The true baseline→follow-up transforms of the sample series (ITK convention)."""
    return true_sample_transforms()


@pytest.fixture(scope="session")
def sample_truth_json():
    from lesionvol.sample import sample_data_dir

    return json.loads((sample_data_dir() / "truth.json").read_text(encoding="utf-8"))
