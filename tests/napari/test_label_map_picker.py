"""A label-map Labels layer per visit, in the widget's series rows, as ITK-SNAP or nnU-Net save masks."""

from __future__ import annotations

import numpy as np
import pytest
from _napari_testing import open_sample, true_sample_transforms, wait_for_worker, wait_until

from lesionvol.io import read_mask
from lesionvol.measure import measure_volumes
from lesionvol.sample import SAMPLE_VISITS, sample_mask_paths

HEAD_LABEL, LESION_LABEL, OTHER_LABEL = 3, 7, 5  # not the defaults: the panel's values must be used
COLUMNS = ("head_volume_ml", "lesion_volume_ml", "lesion_pct_head", "regenerated_ml", "new_lesion_ml")


def drawn_layer(viewer, like, values, name):
    """A Labels layer on ``like``'s grid as a reader drew it in napari (no file behind it)."""
    from napari_lesionvol._geometry import META_KEY

    meta = {k: v for k, v in like.metadata.get(META_KEY, {}).items() if k not in ("source", "sha256")}
    return viewer.add_labels(values, name=name, scale=like.scale, translate=like.translate, rotate=like.rotate,
                             metadata={META_KEY: meta}).name


def add_label_maps(viewer) -> list[str]:
    """Per visit, one Labels layer on the head layer's grid: head-only voxels HEAD_LABEL, lesion
    LESION_LABEL, and a band below the head OTHER_LABEL (a label lesionvol must ignore)."""
    names = []
    for visit in SAMPLE_VISITS:
        head, lesion = viewer.layers[f"{visit}_head"], viewer.layers[f"{visit}_lesion"]
        values = np.where(np.asarray(head.data) != 0, HEAD_LABEL, 0).astype(np.uint16)
        values[np.asarray(lesion.data) != 0] = LESION_LABEL
        rows = np.flatnonzero(values.any(axis=(0, 2)))
        band = values[:, rows.max() + 1: rows.max() + 4, :]
        band[band == 0] = OTHER_LABEL
        names.append(drawn_layer(viewer, head, values, f"{visit} labels"))
    return names


def run_rows(widget) -> list[dict]:
    widget.run(transforms=true_sample_transforms())
    wait_for_worker(widget)
    return widget.session.rows()


@pytest.fixture
def widget_with_sample(make_viewer):
    from napari_lesionvol._widget import ReviewWidget

    viewer = make_viewer()
    open_sample(viewer)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion review")
    return viewer, widget


def test_a_label_map_layer_gives_the_volumes_of_separate_head_and_lesion_layers(widget_with_sample):
    """The same voxels as one label map or as two layers give the same numbers, to the last digit;
    on the two non-oblique visits they are the reference masks' volumes exactly."""
    viewer, widget = widget_with_sample
    images = list(SAMPLE_VISITS)
    widget.series.set_series(images, [f"{v}_lesion" for v in images], [f"{v}_head" for v in images])
    from_files = run_rows(widget)
    truth_ml = [measure_volumes(read_mask(lesion), read_mask(head)).lesion_volume_ml
                for lesion, head in zip(sample_mask_paths("lesion"), sample_mask_paths("head"))]
    assert [row["lesion_volume_ml"] for row in from_files] == pytest.approx(truth_ml, abs=1e-9)

    # the same masks as a reader's own layers (no file behind them: the oblique month12 is then
    # brought back from the display grid by nearest neighbour, for a label map as for a mask)
    separate = {kind: [drawn_layer(viewer, viewer.layers[f"{v}_{kind}"], np.asarray(viewer.layers[f"{v}_{kind}"].data),
                                   f"{v} {kind} drawn") for v in images] for kind in ("lesion", "head")}
    widget.series.set_series(images, separate["lesion"], separate["head"])
    drawn = run_rows(widget)

    maps = add_label_maps(viewer)
    widget.options_panel.controls["head_label"].setValue(HEAD_LABEL)
    widget.options_panel.controls["lesion_label"].setValue(LESION_LABEL)
    widget.series.set_series(images, label_maps=maps)
    assert [masks for _, masks in widget.series.chosen()] == [{"label_map": name} for name in maps]
    assert not widget.series.rows[0].lesion.isEnabled() and not widget.series.rows[0].head.isEnabled()
    from_map = run_rows(widget)

    for row_map, row_drawn in zip(from_map, drawn):
        for column in COLUMNS:
            assert row_map[column] == row_drawn[column], (row_map["timepoint"], column)
    for row_map, row_file in zip(from_map[:2], from_files[:2]):  # baseline, month03: not resampled for display
        for column in COLUMNS:
            assert row_map[column] == row_file[column], (row_map["timepoint"], column)
    # month12 (oblique): a layer drawn on the display grid comes back by nearest neighbour, label map or
    # not (-2.1 % of its 1.93 mL lesion here, as for the separate drawn layers above)
    assert from_map[2]["lesion_volume_ml"] == pytest.approx(from_files[2]["lesion_volume_ml"], rel=0.03)
    # the head holds the lesion (head = head + lesion labels): LF is the separate layers' LF
    base = measure_volumes(read_mask(sample_mask_paths("lesion")[0]), read_mask(sample_mask_paths("head")[0]))
    assert from_map[0]["lesion_pct_head"] == pytest.approx(base.lesion_pct_head, abs=1e-9)
    assert 0 < from_map[0]["lesion_pct_head"] < 100
    # the label map layers are left as the reader drew them (the results get their own mask layers)
    assert set(np.unique(viewer.layers[maps[0]].data)) == {0, HEAD_LABEL, OTHER_LABEL, LESION_LABEL}


def test_a_label_map_without_the_panels_labels_is_refused_naming_the_layer(widget_with_sample):
    viewer, widget = widget_with_sample
    maps = add_label_maps(viewer)
    widget.series.set_series(list(SAMPLE_VISITS), label_maps=maps)  # the panel still says 1 and 2
    widget.run(transforms=true_sample_transforms())
    wait_until(lambda: widget.last_error is not None or widget.session is not None, 120, "the refusal")
    assert widget.session is None
    assert f"the label map layer '{maps[0]}' holds neither the head label 1 nor the lesion label 2" in widget.last_error
