"""Placement accuracy against a simulated session's ground truth (``_truth/tiles.csv``)."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np

__all__ = ["placement_error_px"]


def placement_error_px(store: Path, truth: Path, pixel_size_um: float = 1.0) -> float:
    """RMS distance (px) between placed and true tile centres, common offset removed.

    Where the mosaic is anchored is a convention (mean deviation from nominal zero), so only
    the relative placement is compared.
    """
    with (truth / "tiles.csv").open(newline="", encoding="utf-8") as f:
        true = {
            r["tile"]: (float(r["true_x_um"]), float(r["true_y_um"])) for r in csv.DictReader(f)
        }
    db = sqlite3.connect(store / "ledger.sqlite")
    try:
        placed = {t: (x, y) for t, x, y in db.execute("SELECT tile, x_um, y_um FROM placements")}
    finally:
        db.close()
    common = sorted(set(true) & set(placed))
    if not common:
        return float("nan")
    d = np.array([np.subtract(placed[t], true[t]) for t in common]) / pixel_size_um
    d -= d.mean(axis=0)
    return float(np.sqrt((d**2).sum(axis=1).mean()))
