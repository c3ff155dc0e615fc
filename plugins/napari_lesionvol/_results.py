"""The layers of a run in the viewer, and the corrections painted into them.

After a run: each visit's lesion and head masks in Labels layers (the layers the masks were
taken from, or new ones for segmented masks), the marrow oedema next to a segmented lesion
(cyan, ``<visit> oedema``: what ``margin_oedema_ml`` counts), the follow-ups resampled into baseline space
and their change overlays (residual yellow, regenerated green, new magenta). Painting or
erasing in a mask layer marks it; :meth:`ResultLayers.apply_edits` carries the painted
voxels to the native mask and re-measures with the core.
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import SimpleITK as sitk
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel

from lesionvol.geometry import same_grid
from napari_lesionvol._geometry import (
    META_KEY,
    apply_display_edit,
    display_meta,
    layer_transform,
    mask_from_layer,
    reference_image,
    to_display,
)
from napari_lesionvol._reader import LESION_COLOR, OEDEMA_COLOR, image_layer_data, labels_colormap
from napari_lesionvol._review import (
    CHANGE_COLORS,
    MASK_KINDS,
    NEW,
    REGENERATED,
    RESIDUAL,
    ReviewSession,
    change_label_image,
)
from napari_lesionvol._run import RunOutcome

#: Painting is re-measured once the brush has rested this long.
EDIT_DELAY_MS = 150


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(array).view(np.uint8).data, digest_size=16).hexdigest()


def _hex(rgba) -> str:
    return "#" + "".join(f"{round(255 * v):02x}" for v in rgba[:3])


def legend() -> QLabel:
    """What the colours of the mask and change layers mean."""
    entries = ((LESION_COLOR, "lesion"), (OEDEMA_COLOR, "oedema next to it"), (CHANGE_COLORS[RESIDUAL], "residual"),
               (CHANGE_COLORS[REGENERATED], "regenerated"), (CHANGE_COLORS[NEW], "new (baseline space)"))
    return QLabel(" &nbsp; ".join(f"<span style='color:{_hex(color)}'>■</span> {text}" for color, text in entries))


def oedema_name(label: str) -> str:
    """The name of the layer showing the marrow oedema next to a visit's segmented lesion.

    Example
    -------
    >>> oedema_name("baseline")
    'baseline oedema'
    """
    return f"{label} oedema"


class ResultLayers:
    """The session of the last successful run and the viewer layers that show it."""

    def __init__(self, viewer, on_edit, parent=None):
        self.viewer = viewer
        self.session: ReviewSession | None = None
        self._layers: dict[tuple[str, str], object] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._shown: dict[tuple[str, str], np.ndarray] = {}  # mask as displayed at the last update
        self._dirty: set[tuple[str, str]] = set()
        self._connections: list[tuple[object, object]] = []
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(EDIT_DELAY_MS)
        self._timer.timeout.connect(on_edit)

    # -- a run's result ---------------------------------------------------------------------
    def show(self, outcome: RunOutcome):
        """Put a run's masks and derived layers in the viewer and follow edits of the masks."""
        self.clear()
        session = self.session = outcome.session
        base = session.timepoints[0]
        for tp in session.timepoints:
            for kind in MASK_KINDS:
                layer = self._mask_layer(tp, kind, outcome.mask_layers.get(tp.label, {}).get(kind))
                self._layers[(tp.label, kind)] = layer
                self._digests[(tp.label, kind)] = _digest(np.asarray(layer.data))
                self._shown[(tp.label, kind)] = np.asarray(layer.data) != 0
                for emitter in (layer.events.paint, layer.events.data, layer.events.set_data):
                    callback = partial(self._on_edit, tp.label, kind)
                    emitter.connect(callback)
                    self._connections.append((emitter, callback))
            self._oedema_layer(tp)
        for tp, in_base in zip(session.timepoints[1:], outcome.followups_in_baseline):
            derived = {f"{tp.label} in {base.label} space": ("image", in_base),
                       f"{tp.label} change": ("labels", change_label_image(tp) if tp.change is not None else None)}
            for name, (kind, image) in derived.items():
                if image is not None:
                    self._derived_layer(name, kind, image, base)
                elif name in self.viewer.layers:  # left from an earlier run: it would show stale numbers
                    self.viewer.layers.remove(name)
            # follow-ups are reviewed in baseline space; their native layers stay one click away
            image_layer = outcome.mask_layers.get(tp.label, {}).get("image", tp.label)
            if image_layer in self.viewer.layers:
                self.viewer.layers[image_layer].visible = False
            for kind in MASK_KINDS:
                self._layers[(tp.label, kind)].visible = False
            if oedema_name(tp.label) in self.viewer.layers:
                self.viewer.layers[oedema_name(tp.label)].visible = False
        self._layers[(base.label, "lesion")].visible = True

    def layer(self, label: str, kind: str):
        """The Labels layer showing a visit's lesion or head mask (None when not shown)."""
        return self._layers.get((label, kind))

    def clear(self):
        """Forget the session and stop following the mask layers (the layers stay)."""
        self._timer.stop()
        for emitter, callback in self._connections:
            try:
                emitter.disconnect(callback)
            except Exception:  # the layer may be gone already
                pass
        self._connections.clear()
        self._layers.clear()
        self._digests.clear()
        self._shown.clear()
        self._dirty.clear()
        self.session = None

    def _mask_layer(self, tp, kind: str, chosen: str | None):
        """The Labels layer holding a visit's mask: the one chosen for the run, or a new one."""
        if chosen is not None and chosen in self.viewer.layers:
            return self.viewer.layers[chosen]
        name = f"{tp.label} {kind}"
        mask = getattr(tp, kind)
        display, how = to_display(mask, is_label=True)
        meta = display_meta(mask, display, how, role=kind, source=tp.scan.source)
        data = sitk.GetArrayFromImage(display).astype(np.uint8)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.metadata = {**layer.metadata, META_KEY: meta}
            return layer
        return self.viewer.add_labels(data, name=name, metadata={META_KEY: meta}, colormap=labels_colormap(kind),
                                      opacity=0.6 if kind == "lesion" else 0.3, **layer_transform(display))

    def _oedema_layer(self, tp):
        """Show the marrow oedema next to a visit's segmented lesion, or remove an earlier run's layer
        when there is none (it would show a lesion's margin that is no longer measured)."""
        name = oedema_name(tp.label)
        if tp.oedema is None or not sitk.GetArrayViewFromImage(tp.oedema).any():
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            return None
        data, attributes, _ = image_layer_data(tp.oedema, name, is_label=True, role="oedema",
                                               extra_meta={"derived": True, "source": tp.scan.source})
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)  # its grid may differ from the earlier run's
        return self.viewer.add_labels(data, **{**attributes, "opacity": 0.5})

    def _derived_layer(self, name: str, kind: str, image: sitk.Image, base):
        """A layer on the baseline's display grid (derived layers keep their source's geometry)."""
        display, how = to_display(image, is_label=(kind == "labels"))
        meta = display_meta(base.scan.image, display, how, derived=True, source=base.scan.source)
        data = sitk.GetArrayFromImage(display)
        geometry = layer_transform(display)
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            return layer
        if kind == "labels":
            return self.viewer.add_labels(data.astype(np.uint8), name=name, metadata={META_KEY: meta},
                                          colormap=CHANGE_COLORS, opacity=0.55, **geometry)
        finite = data[np.isfinite(data)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        return self.viewer.add_image(data, name=name, metadata={META_KEY: meta}, colormap="gray",
                                     contrast_limits=(float(lo), float(max(hi, lo + 1))), visible=False, **geometry)

    # -- corrections ------------------------------------------------------------------------
    def _on_edit(self, label: str, kind: str, event=None):
        self._dirty.add((label, kind))
        self._timer.start()

    def apply_edits(self) -> bool:
        """Re-measure the masks that were painted since the last update. True if anything changed."""
        self._timer.stop()
        if self.session is None:
            return False
        dirty, self._dirty = self._dirty, set()
        changed_any = False
        for label, kind in sorted(dirty):
            layer = self._layers.get((label, kind))
            if layer is None or layer not in self.viewer.layers:
                continue
            digest = _digest(np.asarray(layer.data))
            if digest == self._digests.get((label, kind)):
                continue
            self._digests[(label, kind)] = digest
            index = self.session.index_of(label)
            tp = self.session.timepoints[index]
            shown = np.asarray(layer.data) != 0
            meta = layer.metadata.get(META_KEY) or {}
            if "native_grid" in meta and same_grid(reference_image(meta["native_grid"]), tp.scan.image):
                # carry the painted voxels over; untouched voxels keep their native values
                mask = apply_display_edit(getattr(tp, kind), self._shown[(label, kind)], shown, meta)
            else:
                mask, _ = mask_from_layer(shown, meta or None, layer.scale, layer.translate, layer.rotate,
                                          tp.scan.image)
            self._shown[(label, kind)] = shown
            for i in self.session.update_mask(index, kind, mask):
                follow = self.session.timepoints[i]
                name = f"{follow.label} change"
                if name in self.viewer.layers:
                    display, _ = to_display(change_label_image(follow), is_label=True)
                    self.viewer.layers[name].data = sitk.GetArrayFromImage(display).astype(np.uint8)
            changed_any = True
        return changed_any
