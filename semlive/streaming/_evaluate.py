"""Against a simulated session's ground truth (``_truth/``): placement accuracy, and the
truth maps resampled onto the mosaic grid."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["placement_error_px", "truth_on_mosaic"]


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


def truth_on_mosaic(
    store: Path, truth: Path, names: tuple[str, ...] = ("phase",)
) -> dict[str, NDArray[np.generic]]:
    """The truth maps (``_truth/maps.zarr``) resampled onto the mosaic's level-0 grid (nearest
    pixel). The mosaic frame is the true frame shifted by the tiles' mean stage error (Contract
    2 anchors the placements' mean deviation from nominal at zero), so that shift is undone.
    Outside the truth grid: phase 255 (unscanned), 0 for integer maps, NaN for float maps."""
    import zarr

    meta = json.loads((truth / "truth.json").read_text())["mosaic"]
    maps: Any = zarr.open_group(str(truth / "maps.zarr"), mode="r")
    bse: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")["bse"]
    transforms = bse.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    s = float(transforms[0]["scale"][-1])
    ty, tx = (float(v) for v in transforms[1]["translation"][-2:])
    rows, cols = bse["0"].shape
    with (truth / "tiles.csv").open(newline="", encoding="utf-8") as f:
        error = np.mean(
            [
                (
                    float(r["true_x_um"]) - float(r["nominal_x_um"]),
                    float(r["true_y_um"]) - float(r["nominal_y_um"]),
                )
                for r in csv.DictReader(f)
            ],
            axis=0,
        )
    px = meta["pixel_size_um"]
    tr = np.rint((ty + s * np.arange(rows) + error[1] - meta["origin_y_um"]) / px).astype(int)
    tc = np.rint((tx + s * np.arange(cols) + error[0] - meta["origin_x_um"]) / px).astype(int)
    shape = meta["shape"]
    r_in, c_in = (tr >= 0) & (tr < shape[0]), (tc >= 0) & (tc < shape[1])
    inside = r_in[:, None] & c_in[None, :]
    tr, tc = np.clip(tr, 0, shape[0] - 1), np.clip(tc, 0, shape[1] - 1)
    out: dict[str, NDArray[np.generic]] = {}
    for name in names:
        values = np.asarray(maps[name][:])[np.ix_(tr, tc)]
        if values.dtype.kind == "f":
            fill: float = float("nan")
        else:
            fill = 255 if name == "phase" else 0
        out[name] = np.where(inside, values, fill).astype(values.dtype)
    return out
