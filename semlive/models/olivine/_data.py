"""Training pairs from the store: drift-corrected BSE around each EDS tile, with its EDS label.

Each tile that has EDS maps is cut from the mosaic (``bse/0`` and ``eds/0``) at its placement,
with a margin of BSE context around it (unlabelled). The tiles are split by spatial blocks of
the acquisition grid into training and validation; every pixel that lies in a validation tile
is ignored in the training tiles, so overlapping tiles never straddle the split.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import Ledger
from semlive.calibration import DriftTracker, mosaic_image
from semlive.calibration._calibrate import session_of
from semlive.errors import InputDataError
from semlive.records import SessionInfo
from semlive.settings import CalibrationSettings, OlivineSettings

from ._rules import RuleSet, load_rule_set, olivine_labels, refine_labels

__all__ = ["IGNORE", "LOOKALIKE", "LabelledTile", "TrainingData", "load_training_data"]

logger = logging.getLogger(__name__)

IGNORE = 255
LOOKALIKE = 2  # not olivine: clinopyroxene by the multi-class EDS rules (rules.toml)
MARGIN_PX = 32  # BSE context kept around each labelled tile


@dataclass(frozen=True, slots=True)
class LabelledTile:
    name: str
    grid: tuple[int, int]  # acquisition grid row, col
    origin: tuple[int, int]  # mosaic row, col of bse[0, 0]
    # DN in the mosaic's own integer type (uint16, or uint8 for 8-bit detectors): half the
    # memory of float32 (a section's 300 EDS tiles hold 0.35 GB as float32); every reader
    # converts to float32 before arithmetic
    bse: NDArray[np.unsignedinteger[Any]]
    # 1 olivine; not olivine: LOOKALIKE (clinopyroxene, whose BSE overlaps olivine's) or 0;
    # IGNORE unlabelled
    label: NDArray[np.uint8]
    acquired_at: datetime

    @property
    def labelled(self) -> int:
        return int(np.count_nonzero(self.label != IGNORE))

    @property
    def olivine(self) -> int:
        return int(np.count_nonzero(self.label == 1))


@dataclass(frozen=True, slots=True)
class TrainingData:
    train: list[LabelledTile]
    validation: list[LabelledTile]
    blocks: dict[str, list[tuple[int, int]]]  # "train"/"validation" -> grid blocks

    def split(self) -> dict[str, Any]:
        return {
            "train": [t.name for t in self.train],
            "validation": [t.name for t in self.validation],
            "blocks": {k: [list(b) for b in v] for k, v in self.blocks.items()},
        }


def _tile_boxes(
    store: Path, ledger: Ledger, session: SessionInfo | None = None
) -> tuple[list[tuple[str, int, int, int, int, datetime]], tuple[int, int]]:
    if session is None:
        _, session = session_of(store, ledger, None)
    with ledger.transaction() as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "placements" not in tables:
            raise InputDataError(
                f"{store} has no tile placements; stitch the session first (semlive stitch)",
                path=store,
            )
        rows = db.execute(
            "SELECT t.tile, t.row, t.col, p.row_px, p.col_px, t.acquired_at FROM tiles t "
            "JOIN placements p ON p.tile = t.tile WHERE t.eds_checksum IS NOT NULL ORDER BY t.tile"
        ).fetchall()
    out = [
        (name, r, c, round(rp), round(cp), datetime.fromisoformat(at))
        for name, r, c, rp, cp, at in rows
    ]
    return out, session.tile_shape


def load_training_data(
    store: Path, settings: OlivineSettings, only: Collection[str] | None = None
) -> TrainingData:
    """All EDS tiles of the store (or those named in ``only``: a live session's tiles whose
    maps are fused) as labelled tiles, split into training and validation."""
    import zarr

    ledger = Ledger(store / "ledger.sqlite")
    try:
        _, session = session_of(store, ledger, None)
        boxes, (th, tw) = _tile_boxes(store, ledger, session)
        if only is not None:
            boxes = [box for box in boxes if box[0] in only]
        tracker = DriftTracker(session, ledger, CalibrationSettings())
        scales = {name: tracker.eds_scale(at) for name, *_, at in boxes}
    finally:
        ledger.close()
    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    if not boxes or "eds" not in root:
        raise InputDataError(
            f"{store} has no EDS-mapped tiles to learn from; the olivine network trains on "
            "tiles with EDS maps (tiles/<tile>.eds.tif) — acquire some (about 1 in 4 tiles)",
            path=store,
        )
    image = mosaic_image(store)
    bse, eds = image.array, root["eds"]["0"]
    elements = [c["label"] for c in root["eds"].attrs["ome"]["omero"]["channels"]]
    rows, cols = bse.shape
    rules = load_rule_set()
    val_names, blocks = _split(boxes, settings)
    val_boxes = [(r0, c0) for name, _, _, r0, c0, _ in boxes if name in val_names]
    train: list[LabelledTile] = []
    validation: list[LabelledTile] = []
    for name, gr, gc, r0, c0, at in boxes:
        a0, b0 = max(r0 - MARGIN_PX, 0), max(c0 - MARGIN_PX, 0)
        a1, b1 = min(r0 + th + MARGIN_PX, rows), min(c0 + tw + MARGIN_PX, cols)
        grey = np.asarray(bse[a0:a1, b0:b1])
        maps = np.asarray(eds[:, a0:a1, b0:b1])
        olivine = olivine_labels(dict(zip(elements, maps, strict=True)), settings, scales[name])
        known = np.zeros(grey.shape, bool)
        known[r0 - a0 : r0 - a0 + th, c0 - b0 : c0 - b0 + tw] = True
        known &= grey > 0  # scanned
        olivine = refine_labels(grey, olivine, known, settings.refine_px)
        lookalike = _lookalikes(rules, dict(zip(elements, maps, strict=True)), scales[name])
        label = np.where(olivine, 1, np.where(known & lookalike & ~olivine, LOOKALIKE, 0))
        label = np.where(known, label, IGNORE).astype(np.uint8)
        if name not in val_names:
            for vr, vc in val_boxes:  # never train on a pixel of a validation tile
                label[
                    max(vr - a0, 0) : max(vr - a0 + th, 0), max(vc - b0, 0) : max(vc - b0 + tw, 0)
                ] = IGNORE
        tile = LabelledTile(name, (gr, gc), (a0, b0), grey, label, at)
        (validation if name in val_names else train).append(tile)
    data = TrainingData(train, validation, blocks)
    _check_enough(data, settings, store)
    return data


def _lookalikes(
    rules: RuleSet, maps: dict[str, NDArray[np.generic]], eds_scale: float
) -> NDArray[np.bool_]:
    """Clinopyroxene by the multi-class EDS rules (in their order: a vesicle or an oxide is
    neither; where the maps lack an element only the other classes need, by clinopyroxene's own
    conditions), opened by a pixel (the counts' noise leaves single pixels); none where the maps
    lack an element clinopyroxene's rule needs (Si, say)."""
    from scipy.ndimage import binary_opening

    if rules.elements <= set(maps):
        found = rules.apply(maps, eds_scale) == rules.value_of("clinopyroxene")
    else:
        found = rules.holds("clinopyroxene", maps, eds_scale)
    if found is None:
        return np.zeros(next(iter(maps.values())).shape, bool)
    out: NDArray[np.bool_] = binary_opening(found)
    return out


def _split(
    boxes: list[tuple[str, int, int, int, int, datetime]], settings: OlivineSettings
) -> tuple[set[str], dict[str, list[tuple[int, int]]]]:
    k = settings.block_tiles
    by_block: dict[tuple[int, int], list[str]] = {}
    for name, gr, gc, *_ in boxes:
        by_block.setdefault((gr // k, gc // k), []).append(name)
    order = sorted(by_block)
    rng = np.random.default_rng(settings.seed)
    rng.shuffle(order)
    want = max(1, round(settings.validation_fraction * len(boxes)))
    val: set[str] = set()
    val_blocks: list[tuple[int, int]] = []
    for block in order:
        if len(val) >= want or len(val) + len(by_block[block]) >= len(boxes):
            continue
        val |= set(by_block[block])
        val_blocks.append(block)
    train_blocks = [b for b in sorted(by_block) if b not in val_blocks]
    return val, {"train": train_blocks, "validation": sorted(val_blocks)}


def _check_enough(data: TrainingData, settings: OlivineSettings, store: Path) -> None:
    labelled = sum(t.labelled for t in data.train)
    olivine = sum(t.olivine for t in data.train)
    if (
        not data.validation
        or labelled < settings.min_labelled_px
        or (olivine < settings.min_olivine_px)
    ):
        raise InputDataError(
            f"too few EDS-labelled pixels to train on in {store}: found {len(data.train)} "
            f"training and {len(data.validation)} validation tiles, {labelled:,} labelled "
            f"training pixels of which {olivine:,} olivine; needed at least one validation "
            f"tile, {settings.min_labelled_px:,} labelled and {settings.min_olivine_px:,} "
            "olivine pixels — let the SEM acquire more EDS tiles (over olivine) and train "
            "again, or lower olivine.min_labelled_px / min_olivine_px",
            path=store,
            expected=(settings.min_labelled_px, settings.min_olivine_px),
            got=(labelled, olivine),
        )
