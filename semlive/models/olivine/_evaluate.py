"""Olivine metrics per region and overall: against the EDS labels, or against the truth.

IoU and overall accuracy as Leichter et al. (2022) define them (:class:`Confusion`), counted
per streaming region (1024 × 1024 px of level 0) and summed for the whole mosaic. Against the
virtual SEM's truth, the pixels of EDS tiles (which the network trained or validated on) can be
left out, so the figure is for tiles the network never saw.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import Ledger
from semlive.models._metrics import Confusion, confusion
from semlive.settings import OlivineSettings

from ._data import _tile_boxes
from ._rules import olivine_labels, refine_labels
from ._segment import LABEL_PATH

__all__ = ["agreement_with_eds", "eds_tile_mask", "evaluate_against_truth", "region_metrics"]

_REGION_PX = 1024


def _per_region(
    shape: tuple[int, ...], score: Callable[[tuple[slice, slice]], Confusion | None]
) -> dict[str, Any]:
    """``score(box)`` for every 1024² region (None: nothing to score there), and the total."""
    rows, cols = shape
    regions, total = [], Confusion()
    for r in range(0, rows, _REGION_PX):
        for c in range(0, cols, _REGION_PX):
            cf = score((slice(r, r + _REGION_PX), slice(c, c + _REGION_PX)))
            if cf is None:
                continue
            total = total + cf
            regions.append({"region": [r // _REGION_PX, c // _REGION_PX], **cf.as_dict()})
    return {"overall": {**total.as_dict(), "pixels": total.pixels}, "regions": regions}


def region_metrics(
    predicted: NDArray[np.bool_], reference: NDArray[np.bool_], valid: NDArray[np.bool_]
) -> dict[str, Any]:
    """Confusion counts, IoU and OA per 1024² region and overall."""

    def score(box: tuple[slice, slice]) -> Confusion | None:
        if not valid[box].any():
            return None
        return confusion(predicted[box], reference[box], valid[box])

    return _per_region(predicted.shape, score)


def _labels(store: Path) -> NDArray[np.bool_] | None:
    import zarr

    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    if LABEL_PATH not in root:
        return None
    out: NDArray[np.bool_] = np.asarray(root[LABEL_PATH]["0"][:]) > 0
    return out


def eds_tile_mask(store: Path, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Pixels inside a tile that has EDS maps (the tiles training and validation draw on)."""
    ledger = Ledger(store / "ledger.sqlite")
    try:
        boxes, (th, tw) = _tile_boxes(store, ledger)
    finally:
        ledger.close()
    mask = np.zeros(shape, bool)
    for _, _, _, r0, c0, _ in boxes:
        mask[max(r0, 0) : r0 + th, max(c0, 0) : c0 + tw] = True
    return mask


def agreement_with_eds(store: Path, settings: OlivineSettings) -> dict[str, Any] | None:
    """The labels against the EDS-rule labels (refined on the BSE edges as for training)
    wherever the mosaic has EDS maps; None before segmentation or without EDS maps. Read
    region by region: a section's EDS maps do not fit in memory at once."""
    import zarr

    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    if LABEL_PATH not in root or "eds" not in root:
        return None
    labels, eds, bse = root[LABEL_PATH]["0"], root["eds"]["0"], root["bse"]["0"]
    elements = [c["label"] for c in root["eds"].attrs["ome"]["omero"]["channels"]]

    def score(box: tuple[slice, slice]) -> Confusion | None:
        maps = np.asarray(eds[(slice(None), *box)])
        grey = np.asarray(bse[box])
        valid = maps.any(axis=0) & (grey > 0)
        if not valid.any():
            return None
        reference = olivine_labels(dict(zip(elements, maps, strict=True)), settings)
        reference = refine_labels(grey, reference, valid, settings.refine_px)
        return confusion(np.asarray(labels[box]) > 0, reference, valid)

    return _per_region(bse.shape, score)


def evaluate_against_truth(
    store: Path, truth: Path, unseen_only: bool = True
) -> dict[str, Any] | None:
    """The labels against the truth's olivine (phase 1) on scanned pixels; with
    ``unseen_only`` the EDS tiles are left out. None before segmentation."""
    from semlive.streaming import truth_on_mosaic

    predicted = _labels(store)
    if predicted is None:
        return None
    phase = truth_on_mosaic(store, truth)["phase"]
    valid = phase != 255
    if unseen_only:
        valid &= ~eds_tile_mask(store, phase.shape)
    out = region_metrics(predicted, phase == 1, valid)
    cpx = valid & (phase == 2)
    out["clinopyroxene_as_olivine"] = float((predicted & cpx).sum() / max(int(cpx.sum()), 1))
    out["unseen_only"] = unseen_only
    return out
