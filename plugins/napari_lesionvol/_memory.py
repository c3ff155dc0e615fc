"""What the widget remembers of the mask layers between runs, so edits survive Run again.

After a run the visit rows point at the Labels layers holding the run's masks (segmented ones
too), so pressing Run again (say, after typing the days) measures what the reader sees and
corrected, not a fresh segmentation. For each such layer a :class:`MaskMemory` keeps, without
Qt or napari:

* the mask as the run first had it (the segmenter's, or the file's), where it came from and its
  definition: the next run's provenance then still says the mask was edited by hand and gives
  the volume *before* the edit, not the edited one;
* the native mask as last measured and the layer's data at that moment: the next run takes that
  native mask (plus any voxels painted since, carried over as :func:`apply_display_edit` does)
  instead of reading the display array back, which for an oblique scan would be a lossy
  nearest-neighbour round trip.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from lesionvol.geometry import same_grid
from napari_lesionvol._geometry import META_KEY, apply_display_edit, reference_image


@dataclass
class Remembered:
    """One mask layer of a run, as the widget last measured it."""

    label: str
    kind: str
    initial: np.ndarray  # the mask (native grid, bool) as the first run of this layer had it
    origin: str  # where that mask came from (provenance words)
    definition: str  # the timepoint's head/lesion definition then
    native: sitk.Image  # the mask as last measured (native grid)
    shown: np.ndarray  # the layer's data (bool) when it was last measured


class MaskMemory:
    """Remembered masks, keyed by layer (weakly: a removed layer is forgotten)."""

    def __init__(self):
        self._by_layer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, layer) -> Remembered | None:
        return self._by_layer.get(layer) if layer is not None else None

    def remember(self, session, layers) -> None:
        """Record every mask of ``session`` with the layer showing it (``layers(label, kind)``)."""
        for tp in session.timepoints:
            for kind in ("lesion", "head"):
                layer = layers(tp.label, kind)
                if layer is None:
                    continue
                self._by_layer[layer] = Remembered(
                    tp.label, kind, session.initial_mask(tp.label, kind), session.mask_origin[tp.label][kind],
                    getattr(tp, f"{kind}_definition"), sitk.Image(getattr(tp, kind)),
                    np.asarray(layer.data) != 0)

    def native_now(self, layer) -> sitk.Image | None:
        """The layer's mask on its native grid from what was last measured plus what was painted
        since (None when the layer is not remembered or no longer on the same grid)."""
        memory = self.get(layer)
        if memory is None:
            return None
        data = np.asarray(layer.data) != 0
        if data.shape != memory.shown.shape:
            return None
        if np.array_equal(data, memory.shown):
            return sitk.Image(memory.native)
        meta = layer.metadata.get(META_KEY) or {}
        if "native_grid" in meta and same_grid(reference_image(meta["native_grid"]), memory.native):
            return apply_display_edit(memory.native, memory.shown, data, meta)
        return None

    def carry_into(self, session, layers, given: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
        """Give a new run's session the initial masks and origins of the layers it measured again.

        ``given`` is the run's ``{label: {kind: layer name}}`` of masks taken from layers: a mask
        segmented anew is not carried. Returns the (label, kind) carried over.
        """
        carried = []
        for tp in session.timepoints:
            for kind in ("lesion", "head"):
                layer = layers(tp.label, kind)
                memory = self.get(layer)
                if memory is None or given.get(tp.label, {}).get(kind) != layer.name or memory.label != tp.label \
                        or memory.kind != kind or memory.initial.shape != session.initial_mask(tp.label, kind).shape \
                        or not same_grid(memory.native, tp.scan.image):
                    continue
                session.carry_over(tp.label, kind, memory.initial, memory.origin, memory.definition)
                carried.append((tp.label, kind))
        return carried
