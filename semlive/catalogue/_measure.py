"""Per-crystal measurements: size, shape, mg#, core and rim, zoning, provenance.

Each crystal is measured in a window around its bounding box (one pixel wider, so its outline
and the pixels beyond it are seen), read from the mosaic a block of crystals at a time. Core and
rim follow Contract 2: holes and cracks inside the outer outline are filled first (the fix
Leichter et al. 2022 name for their failed core/rim split), d is the distance of each pixel to
the outer outline, the core is d > d_max/2 and the rim b < d ≤ d_max/2. Means are taken over the
crystal's own olivine pixels, leaving out those next to a hole, crack or inclusion (the BSE
there is a mixture) and, for mg#, the pixels the mg# map marks as outliers (NaN).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.catalogue._instances import Components
from semlive.catalogue._pool import TaskMap
from semlive.catalogue._split import split_touching
from semlive.settings import CatalogueSettings

__all__ = [
    "COLUMNS",
    "Layers",
    "Measured",
    "Part",
    "TileFootprints",
    "Window",
    "black_level",
    "block_groups",
    "group_windows",
    "measure",
    "open_layers",
    "outline_distance",
    "parts_of",
]

log = logging.getLogger(__name__)

Float = NDArray[np.float64]

# Contract 2's columns first, then the rest
COLUMNS = (
    "crystal_id",
    "size_class",
    "zoning",
    "area_um2",
    "centroid_x_um",
    "centroid_y_um",
    "mg_mean",
    "mg_core",
    "mg_rim",
    "core_rim_ratio",
    "touches_edge",
    "mg_median",
    "mg_min",
    "mg_max",
    "olivine_area_um2",
    "equivalent_diameter_um",
    "elongation",
    "bbox_x_min_um",
    "bbox_y_min_um",
    "bbox_x_max_um",
    "bbox_y_max_um",
    "core_px",
    "rim_px",
    "confidence",
    "outlier_fraction",
    "tiles",
    "first_acquired_at",
    "last_acquired_at",
)


@dataclass(frozen=True, slots=True)
class Layers:
    """The mosaic images the catalogue reads (zarr arrays, level 0) and the grid."""

    olivine: Any
    bse: Any
    mgnumber: Any | None
    probability: Any | None
    scale_um: float
    translation_um: tuple[float, float]  # (y, x) stage position of pixel (0, 0)'s centre

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.bse.shape[0]), int(self.bse.shape[1])


def open_layers(root: Any) -> Layers:
    """The layers of an open ``mosaic.zarr`` group (olivine labels required)."""
    from semlive.streaming._mosaic import _geometry_of

    geometry = _geometry_of(root["bse"])
    tx, ty = geometry.origin_um
    return Layers(
        olivine=root["bse/labels/olivine/0"],
        bse=root["bse/0"],
        mgnumber=root["mgnumber/0"] if "mgnumber" in root else None,
        probability=(root["olivine_probability/0"] if "olivine_probability" in root else None),
        scale_um=geometry.pixel_size_um,
        translation_um=(ty, tx),
    )


def black_level(root: Any, settings: CatalogueSettings) -> float:
    """The BSE of empty resin: the configured value, or the median of the darkest 0.5 % of the
    scanned pixels (read on a coarse pyramid level, scan borders left out)."""
    from scipy.ndimage import binary_erosion

    if settings.black_level_dn != "auto":
        return float(settings.black_level_dn)
    datasets = root["bse"].attrs["ome"]["multiscales"][0]["datasets"]
    level = np.asarray(root["bse"][datasets[min(2, len(datasets) - 1)]["path"]][:])
    inner = binary_erosion(level > 0, np.ones((3, 3), bool))
    values = level[inner].astype(np.float64)
    if values.size == 0:
        return 0.0
    dark = values[values <= np.percentile(values, 0.5)]
    return float(np.median(dark))


@dataclass(frozen=True, slots=True)
class TileFootprints:
    """Where each placed tile lies on the mosaic, and when it was acquired."""

    names: list[str]
    boxes: NDArray[np.int64]  # (n, 4): r0, c0, r1, c1
    acquired: list[datetime]

    @classmethod
    def from_ledger(cls, ledger_path: Path, tile_shape: tuple[int, int]) -> TileFootprints:
        import sqlite3

        db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
            rows = (
                db.execute(
                    "SELECT t.tile, p.row_px, p.col_px, t.acquired_at FROM tiles t "
                    "JOIN placements p ON p.tile = t.tile ORDER BY t.acquired_at, t.tile"
                ).fetchall()
                if "placements" in tables
                else []
            )
        finally:
            db.close()
        th, tw = tile_shape
        boxes = np.array(
            [(round(r), round(c), round(r) + th, round(c) + tw) for _, r, c, _ in rows], np.int64
        ).reshape(-1, 4)
        return cls([r[0] for r in rows], boxes, [datetime.fromisoformat(r[3]) for r in rows])

    def over(self, box: tuple[int, int, int, int]) -> list[int]:
        r0, c0, r1, c1 = box
        b = self.boxes
        hit = (b[:, 0] < r1) & (b[:, 2] > r0) & (b[:, 1] < c1) & (b[:, 3] > c0)
        return [int(i) for i in np.flatnonzero(hit)]


@dataclass(frozen=True, slots=True)
class Window:
    """One crystal on the mosaic: a window around it and its masks there."""

    component: int
    origin: tuple[int, int]  # mosaic pixel of the window's (0, 0)
    crystal: NDArray[np.bool_]  # its own olivine pixels
    filled: NDArray[np.bool_]  # inside its outer outline (holes and cracks filled)
    bse: Float
    mg: NDArray[np.float32] | None
    probability: NDArray[np.uint8] | None


def block_groups(components: Components, members: list[int], block_px: int) -> list[list[int]]:
    """The listed components grouped by the block of their box's top-left corner, in block
    order (each group is read from the mosaic as one region)."""
    boxes = components.box
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k in members:
        groups[(int(boxes[k, 0]) // block_px, int(boxes[k, 1]) // block_px)].append(k)
    return [groups[key] for key in sorted(groups)]


def group_windows(
    layers: Layers, components: Components, group: list[int], margin: int = 1
) -> Iterator[Window]:
    """The windows of one group of components, from one region read of each layer."""
    from scipy.ndimage import binary_fill_holes, label

    rows_px, cols_px = layers.shape
    boxes = components.box
    sub = boxes[group]
    g0 = max(int(sub[:, 0].min()) - margin, 0), max(int(sub[:, 1].min()) - margin, 0)
    g1 = (
        min(int(sub[:, 2].max()) + margin, rows_px),
        min(int(sub[:, 3].max()) + margin, cols_px),
    )
    region = (slice(g0[0], g1[0]), slice(g0[1], g1[1]))
    olivine = np.asarray(layers.olivine[region]) > 0
    bse = np.asarray(layers.bse[region], dtype=np.float64)
    mg = None if layers.mgnumber is None else np.asarray(layers.mgnumber[region])
    prob = None if layers.probability is None else np.asarray(layers.probability[region])
    for k in group:
        br0, bc0, br1, bc1 = (int(v) for v in boxes[k])
        w0 = max(br0 - margin, 0), max(bc0 - margin, 0)
        w1 = min(br1 + margin, rows_px), min(bc1 + margin, cols_px)
        win = (slice(w0[0] - g0[0], w1[0] - g0[0]), slice(w0[1] - g0[1], w1[1] - g0[1]))
        # the component is the connected piece of the box holding its first pixel
        inner = np.zeros((w1[0] - w0[0], w1[1] - w0[1]), bool)
        box = (slice(br0 - w0[0], br1 - w0[0]), slice(bc0 - w0[1], bc1 - w0[1]))
        inner[box] = olivine[win][box]
        labels, _ = label(inner)
        seed_r, seed_c = (int(v) for v in components.seed[k])
        crystal = labels == labels[seed_r - w0[0], seed_c - w0[1]]
        yield Window(
            k,
            w0,
            crystal,
            binary_fill_holes(crystal),
            bse[win],
            None if mg is None else mg[win],
            None if prob is None else prob[win],
        )


@dataclass(frozen=True, slots=True)
class Part:
    """A crystal of a component: its own olivine pixels and its outline filled, in the window,
    and the distance (px) of each pixel to that outline when it is already known."""

    crystal: NDArray[np.bool_]
    filled: NDArray[np.bool_]
    distance_px: Float | None = None


def parts_of(w: Window, settings: CatalogueSettings, scale_um: float) -> list[Part]:
    """The crystals of a component window: touching crystals split at their neck."""
    from scipy.ndimage import binary_fill_holes

    d = outline_distance(w.filled)
    labels = split_touching(
        w.filled, settings.min_area_um2 / scale_um**2, settings.neck_ratio, distance=d
    )
    if labels.max() <= 1:
        return [Part(w.crystal, w.filled, d)]
    out = []
    for i in range(1, int(labels.max()) + 1):
        filled = binary_fill_holes(labels == i)
        out.append(Part(w.crystal & filled, filled))
    return out


def outline_distance(filled: NDArray[np.bool_]) -> Float:
    """Distance (px) of each pixel of ``filled`` to its outline (the window's edge counts as
    outside)."""
    from scipy.ndimage import distance_transform_edt

    d: Float = distance_transform_edt(np.pad(filled, 1))[1:-1, 1:-1]
    return d


@dataclass(frozen=True, slots=True)
class Measured:
    """The catalogue rows, and where each crystal is on the mosaic."""

    rows: list[dict[str, Any]]
    ids: dict[int, int]  # component → crystal_id, for components that are one crystal
    splits: dict[int, tuple[tuple[int, int], NDArray[np.uint32]]]  # component → window labels


@dataclass(frozen=True, slots=True)
class _Found:
    """A measured crystal: its first pixel (raster index), component and row; the mask and
    window origin of a crystal split from a component of several."""

    first: int
    component: int
    row: dict[str, Any]
    split: tuple[tuple[int, int], NDArray[np.bool_]] | None


def measure(
    layers: Layers,
    components: Components,
    settings: CatalogueSettings,
    black: float,
    tiles: TileFootprints,
    map_: TaskMap = map,
) -> Measured:
    """Measure every component large enough to be a crystal, splitting touching crystals; the
    groups of components are run by ``map_`` (:func:`~semlive.catalogue._pool.task_map`).

    Crystals are numbered 1..n in raster order of their first pixels.
    """
    s = layers.scale_um
    limit = 2 * settings.block_px
    boxes = components.box
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * s * s
    members = []
    for index in np.flatnonzero(box_area > settings.min_area_um2).tolist():
        r0, c0, r1, c1 = (int(v) for v in boxes[index])
        if max(r1 - r0, c1 - c0) > limit:
            log.warning(
                "an olivine component of %d × %d px at mosaic (%d, %d) is larger than any "
                "crystal (%d px); not catalogued — the olivine mask probably leaks into the "
                "groundmass there",
                r1 - r0,
                c1 - c0,
                r0,
                c0,
                limit,
            )
            continue
        members.append(index)
    tasks = [
        (layers, components, group, settings, black, tiles)
        for group in block_groups(components, members, settings.block_px)
    ]
    found = [f for group in map_(_measure_group, tasks) for f in group]
    found.sort(key=lambda item: item.first)
    rows: list[dict[str, Any]] = []
    ids: dict[int, int] = {}
    splits: dict[int, tuple[tuple[int, int], NDArray[np.uint32]]] = {}
    for crystal_id, f in enumerate(found, start=1):
        f.row["crystal_id"] = crystal_id
        rows.append({c: f.row[c] for c in COLUMNS})
        if f.split is None:
            ids[f.component] = crystal_id
            continue
        origin, mask = f.split
        labels = splits.setdefault(f.component, (origin, np.zeros(mask.shape, np.uint32)))[1]
        labels[mask] = crystal_id
    return Measured(rows, ids, splits)


def _measure_group(
    task: tuple[Layers, Components, list[int], CatalogueSettings, float, TileFootprints],
) -> list[_Found]:
    """Measure one group of components (a task of :func:`measure`)."""
    layers, components, group, settings, black, tiles = task
    cols_px = layers.shape[1]
    found = []
    for w in group_windows(layers, components, group):
        parts = parts_of(w, settings, layers.scale_um)
        for part in parts:
            row = _measure_one(layers, w, part, settings, black, tiles)
            if row is None:
                continue
            rr, cc = np.nonzero(part.crystal)
            first = (int(rr[0]) + w.origin[0]) * cols_px + int(cc[0]) + w.origin[1]
            # a split crystal keeps its own mask (a copy, not a view of the region)
            split = (w.origin, part.crystal.copy()) if len(parts) > 1 else None
            found.append(_Found(first, w.component, row, split))
    return found


def _measure_one(
    layers: Layers,
    w: Window,
    part: Part,
    settings: CatalogueSettings,
    black: float,
    tiles: TileFootprints,
) -> dict[str, Any] | None:
    from scipy.ndimage import binary_dilation, distance_transform_edt

    rows_px, cols_px = layers.shape
    s = layers.scale_um
    crystal, filled, bse = part.crystal, part.filled, w.bse
    area = float(filled.sum()) * s * s
    if area <= settings.min_area_um2:
        return None
    rr, cc = np.nonzero(filled)
    br0, bc0 = int(rr.min()) + w.origin[0], int(cc.min()) + w.origin[1]
    br1, bc1 = int(rr.max()) + 1 + w.origin[0], int(cc.max()) + 1 + w.origin[1]
    at_border = br0 == 0 or bc0 == 0 or br1 == rows_px or bc1 == cols_px
    touches = at_border or bool((binary_dilation(filled) & (bse <= 0)).any())
    d = (part.distance_px if part.distance_px is not None else outline_distance(filled)) * s
    d_max = float(d.max())
    # own olivine pixels clear of anything inside the outline that is not olivine (the BSE
    # and the mg# map mix across a crack or hole for a few pixels)
    inside_other = filled & ~crystal
    clean = crystal
    if inside_other.any():
        clear = distance_transform_edt(~inside_other) > settings.inner_margin_px
        clean = crystal & clear if (crystal & clear & (d > d_max / 2)).any() else crystal
    core = clean & (d > d_max / 2)
    rim = clean & (d > settings.rim_exclusion_px * s) & (d <= d_max / 2)
    ratio = (
        float((bse[core].mean() - black) / (bse[rim].mean() - black))
        if core.any() and rim.any()
        else math.nan
    )
    size_class = _size_class(area, settings)
    zoning = ""
    if size_class == "phenocryst" and math.isfinite(ratio):
        zoning = (
            "normal"
            if ratio < settings.normal_below
            else "reverse"
            if ratio > settings.reverse_above
            else "none"
        )
    cy, cx = rr.mean() + w.origin[0], cc.mean() + w.origin[1]
    ty, tx = layers.translation_um
    ev = np.linalg.eigvalsh(np.cov(np.stack([rr, cc]))) if len(rr) > 2 else np.array([1.0, 1.0])
    elongation = float(np.sqrt(ev[-1] / ev[0])) if ev[0] > 0 else math.inf
    over = tiles.over((br0, bc0, br1, bc1))
    times = sorted(tiles.acquired[i] for i in over)
    return {
        "size_class": size_class,
        "zoning": zoning,
        "area_um2": area,
        "centroid_x_um": tx + s * float(cx),
        "centroid_y_um": ty + s * float(cy),
        **_mg_stats(w.mg, crystal, clean, core, rim),
        "core_rim_ratio": ratio,
        "touches_edge": touches,
        "olivine_area_um2": float(crystal.sum()) * s * s,
        "equivalent_diameter_um": 2 * math.sqrt(area / math.pi),
        "elongation": elongation,
        "bbox_x_min_um": tx + s * (bc0 - 0.5),
        "bbox_y_min_um": ty + s * (br0 - 0.5),
        "bbox_x_max_um": tx + s * (bc1 - 0.5),
        "bbox_y_max_um": ty + s * (br1 - 0.5),
        "core_px": int(core.sum()),
        "rim_px": int(rim.sum()),
        "confidence": (
            math.nan if w.probability is None else float(w.probability[crystal].mean()) / 255
        ),
        "tiles": ";".join(tiles.names[i] for i in over),
        "first_acquired_at": times[0].isoformat() if times else "",
        "last_acquired_at": times[-1].isoformat() if times else "",
    }


def _size_class(area: float, settings: CatalogueSettings) -> str:
    if area > settings.phenocryst_um2:
        return "phenocryst"
    if area > settings.microphenocryst_um2:
        return "microphenocryst"
    return "microlite"


def _mg_stats(
    mg: NDArray[np.float32] | None,
    crystal: NDArray[np.bool_],
    clean: NDArray[np.bool_],
    core: NDArray[np.bool_],
    rim: NDArray[np.bool_],
) -> dict[str, float]:
    names = ("mg_mean", "mg_core", "mg_rim", "mg_median", "mg_min", "mg_max", "outlier_fraction")
    if mg is None:
        return dict.fromkeys(names, math.nan)

    def finite(mask: NDArray[np.bool_]) -> NDArray[np.float32]:
        values = mg[mask]
        return values[np.isfinite(values)]

    whole, inner = finite(crystal), finite(clean)
    return {
        "mg_mean": float(inner.mean()) if inner.size else math.nan,
        "mg_core": float(finite(core).mean()) if finite(core).size else math.nan,
        "mg_rim": float(finite(rim).mean()) if finite(rim).size else math.nan,
        "mg_median": float(np.median(inner)) if inner.size else math.nan,
        "mg_min": float(whole.min()) if whole.size else math.nan,
        "mg_max": float(whole.max()) if whole.size else math.nan,
        "outlier_fraction": 1 - whole.size / max(int(crystal.sum()), 1),
    }
