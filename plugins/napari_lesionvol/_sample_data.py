"""Sample data: the bundled serial right-hip T1 series with its reference masks."""

from __future__ import annotations

from napari_lesionvol._reader import read_layers


def make_sample_data() -> list[tuple]:
    """Baseline, 3 and 12 months, then each visit's reference lesion and head masks.

    The images come first so the review widget, opened afterwards, picks them up in
    visit order; the masks open as Labels layers the reader can correct.
    """
    from lesionvol.sample import sample_mask_paths, sample_series_paths

    images = [layer for path in sample_series_paths() for layer in read_layers(str(path))]
    heads = [layer for path in sample_mask_paths("head") for layer in read_layers(str(path))]
    lesions = [layer for path in sample_mask_paths("lesion") for layer in read_layers(str(path))]
    for _, attributes, _ in heads:
        attributes["visible"] = False
    _view_when_added()
    return images + heads + lesions


def _view_when_added():
    """The sample opens as a radiologist reads it (napari gives a sample command no viewer:
    the current one is where its layers go)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # no napari, no Qt application: a script calling this function
        return
    if viewer is not None:
        from napari_lesionvol._view import radiological_view_later

        radiological_view_later(viewer)
