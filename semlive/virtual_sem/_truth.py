"""Ground truth of a simulated session: maps on the mosaic grid and the crystal table.

The truth grid covers the union of the true tile footprints: pixel (r, c) centre at stage
(origin_x_um + c·px, origin_y_um + r·px). Unscanned pixels have phase 255. Crystal statistics
follow Contract 2's definitions on the noise-free, drift-free BSE: core d > d_max/2, rim
b < d ≤ d_max/2 from the distance d to the outer outline, r = mean(core) / mean(rim) of BSE with
the black level (resin) subtracted, over olivine pixels (cracks, holes and inclusions excluded).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import distance_transform_edt

from semlive.virtual_sem._crystals import Crystal
from semlive.virtual_sem._geometry import Window, polygon_area
from semlive.virtual_sem._imaging import BseDetector
from semlive.virtual_sem._materials import MaterialTable, Phase
from semlive.virtual_sem._plan import Plan
from semlive.virtual_sem._scene import Scene

__all__ = ["RIM_EXCLUSION_PX", "TruthGrid", "crystal_rows", "truth_grid", "write_maps"]

RIM_EXCLUSION_PX = 2.0  # b: the outer band left out of the rim
UNSCANNED = 255
_CHUNK = 512
_SIZE_CLASSES = (
    (1.0e2, 1.0e3, "microlite"),
    (1.0e3, 1.0e4, "microphenocryst"),
    (1.0e4, np.inf, "phenocryst"),
)


@dataclass(frozen=True, slots=True)
class TruthGrid:
    window: Window
    tile_boxes_um: NDArray[np.float64]  # (tiles, 4): xmin, ymin, xmax, ymax of true pixel centres

    def scanned(self, window: Window) -> NDArray[np.bool_]:
        xs, ys = window.grid_um()
        mask = np.zeros((window.rows, window.cols), dtype=bool)
        wx0, wy0, wx1, wy1 = window.bounds_um
        boxes = self.tile_boxes_um
        near = (boxes[:, 0] <= wx1 + 1) & (boxes[:, 2] >= wx0 - 1)
        near &= (boxes[:, 1] <= wy1 + 1) & (boxes[:, 3] >= wy0 - 1)
        for xmin, ymin, xmax, ymax in boxes[near]:
            mask |= (
                (xs >= xmin - 0.5) & (xs <= xmax + 0.5) & (ys >= ymin - 0.5) & (ys <= ymax + 0.5)
            )
        return mask


def truth_grid(plan: Plan) -> TruthGrid:
    rows, cols = plan.preset.tile_shape
    px = plan.preset.pixel_size_um
    half = np.array([(cols - 1) / 2 * px, (rows - 1) / 2 * px])
    centres = np.array([t.true_um for t in plan.tiles])
    boxes = np.concatenate([centres - half, centres + half], axis=1)
    x0, y0 = np.floor(boxes[:, 0].min()), np.floor(boxes[:, 1].min())
    x1, y1 = np.ceil(boxes[:, 2].max()), np.ceil(boxes[:, 3].max())
    window = Window(float(x0), float(y0), int((y1 - y0) / px) + 1, int((x1 - x0) / px) + 1, px)
    return TruthGrid(window, boxes)


def write_maps(
    scene: Scene, grid: TruthGrid, table: MaterialTable, detector: BseDetector, path: Path
) -> None:
    """Write phase, instances, mgnumber and noise-free BSE as zarr arrays, chunk by chunk."""
    import zarr

    shape = (grid.window.rows, grid.window.cols)
    root = zarr.open_group(str(path), mode="w")
    arrays = {
        "phase": root.create_array(
            "phase", shape=shape, chunks=(_CHUNK, _CHUNK), dtype="uint8", fill_value=UNSCANNED
        ),
        "instances": root.create_array(
            "instances", shape=shape, chunks=(_CHUNK, _CHUNK), dtype="uint32", fill_value=0
        ),
        "mgnumber": root.create_array(
            "mgnumber", shape=shape, chunks=(_CHUNK, _CHUNK), dtype="float32", fill_value=np.nan
        ),
        "bse": root.create_array(
            "bse", shape=shape, chunks=(_CHUNK, _CHUNK), dtype="float32", fill_value=np.nan
        ),
    }
    root.attrs.update(
        {
            "origin_x_um": grid.window.x0_um,
            "origin_y_um": grid.window.y0_um,
            "pixel_size_um": grid.window.pixel_size_um,
            "phases": {str(int(p)): p.name.lower() for p in Phase},
        }
    )
    px = grid.window.pixel_size_um
    for r0 in range(0, shape[0], _CHUNK):
        for c0 in range(0, shape[1], _CHUNK):
            win = Window(
                grid.window.x0_um + c0 * px,
                grid.window.y0_um + r0 * px,
                min(_CHUNK, shape[0] - r0),
                min(_CHUNK, shape[1] - c0),
                px,
            )
            rendered = scene.render(win)
            scanned = grid.scanned(win)
            sl = (slice(r0, r0 + win.rows), slice(c0, c0 + win.cols))
            arrays["phase"][sl] = np.where(scanned, rendered.phase, UNSCANNED)
            arrays["instances"][sl] = np.where(scanned, rendered.crystal_id, 0)
            arrays["mgnumber"][sl] = np.where(scanned, rendered.mg_number, np.nan)
            bse = detector.dn(table.lookup(table.eta, rendered.phase, rendered.x))
            arrays["bse"][sl] = np.where(scanned, bse, np.nan).astype(np.float32)


def crystal_rows(
    scene: Scene, grid: TruthGrid, table: MaterialTable, detector: BseDetector
) -> list[dict[str, object]]:
    """One row per crystal inside the scanned area, with Contract 2's columns and provenance."""
    black = float(detector.dn(table.eta[Phase.RESIN, 0]))
    rows = []
    for crystal in scene.crystals:
        row = _crystal_row(crystal, grid, table, detector, black)
        if row is not None:
            rows.append(row)
    return rows


def _crystal_row(
    crystal: Crystal, grid: TruthGrid, table: MaterialTable, detector: BseDetector, black: float
) -> dict[str, object] | None:
    px = grid.window.pixel_size_um
    xmin, ymin, xmax, ymax = crystal.bbox_um
    gx0, gy0 = grid.window.x0_um, grid.window.y0_um
    c0, r0 = int(np.floor((xmin - gx0) / px)) - 2, int(np.floor((ymin - gy0) / px)) - 2
    c1, r1 = int(np.ceil((xmax - gx0) / px)) + 2, int(np.ceil((ymax - gy0) / px)) + 2
    win = Window(gx0 + c0 * px, gy0 + r0 * px, r1 - r0 + 1, c1 - c0 + 1, px)
    phase = np.full((win.rows, win.cols), Phase.GLASS, dtype=np.uint8)
    x = np.zeros((win.rows, win.cols), dtype=np.float32)
    ids = np.zeros((win.rows, win.cols), dtype=np.uint32)
    xs, ys = win.grid_um()
    Scene._draw_crystal(crystal, win, xs, ys, phase, x, ids)
    inside_grid = _inside(win, grid.window)
    scanned = grid.scanned(win) & inside_grid
    footprint = (ids == crystal.crystal_id) & scanned
    area = float(footprint.sum()) * px * px
    if area == 0:
        return None
    touches = bool(((ids == crystal.crystal_id) & ~scanned).any())
    d = distance_transform_edt(np.pad(footprint, 1))[1:-1, 1:-1] * px
    d_max = float(d.max())
    own = footprint & (phase == crystal.phase)
    core = own & (d > d_max / 2)
    rim = own & (d > RIM_EXCLUSION_PX * px) & (d <= d_max / 2)
    bse = detector.dn(table.lookup(table.eta, phase, x)) - black
    ratio = float(bse[core].mean() / bse[rim].mean()) if core.any() and rim.any() else float("nan")
    size_class = next((name for lo, hi, name in _SIZE_CLASSES if lo < area <= hi), "")
    zoning = ""
    if size_class == "phenocryst" and np.isfinite(ratio):
        zoning = "normal" if ratio < 0.96 else "reverse" if ratio > 1.04 else "none"

    def mean_x(mask: NDArray[np.bool_]) -> float:
        return float(x[mask].mean()) if mask.any() else float("nan")

    cy, cx = np.argwhere(footprint).mean(axis=0)
    return {
        "crystal_id": crystal.crystal_id,
        "phase": Phase(crystal.phase).name.lower(),
        "population": crystal.population,
        "size_class": size_class,
        "zoning": zoning,
        "area_um2": area,
        "polygon_area_um2": round(polygon_area(crystal.outline_um), 2),
        "centroid_x_um": round(win.x0_um + cx * px, 3),
        "centroid_y_um": round(win.y0_um + cy * px, 3),
        "mg_mean": mean_x(own),
        "mg_core": mean_x(core),
        "mg_rim": mean_x(rim),
        "core_rim_ratio": ratio,
        "touches_edge": touches,
        "profile": crystal.profile.kind,
        "broken": crystal.broken,
        "touching": crystal.touching,
        "cracks": sum(f.phase is Phase.RESIN and len(f.vertices_um) == 4 for f in crystal.features),
        "holes": sum(f.phase is Phase.RESIN and len(f.vertices_um) > 4 for f in crystal.features),
        "hole_in_core": bool((footprint & (phase == Phase.RESIN) & (d > d_max / 2)).any()),
    }


def _inside(win: Window, outer: Window) -> NDArray[np.bool_]:
    xs, ys = win.grid_um()
    x0, y0, x1, y1 = outer.bounds_um
    return (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
