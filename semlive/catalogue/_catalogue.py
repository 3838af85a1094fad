"""The catalogue of a store: find the crystals, measure them, write ``bse/labels/crystals``."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.catalogue._instances import Components, blocks, find_components, label_block
from semlive.catalogue._measure import (
    Layers,
    Measured,
    TileFootprints,
    black_level,
    measure,
    open_layers,
)
from semlive.catalogue._pool import TaskMap, task_map, worker_count
from semlive.errors import InputDataError
from semlive.settings import CatalogueSettings

__all__ = ["CRYSTALS_PATH", "Catalogue", "build_catalogue", "live_summary", "summarize"]

log = logging.getLogger(__name__)

CRYSTALS_PATH = "bse/labels/crystals"
SIZE_CLASSES = ("microlite", "microphenocryst", "phenocryst")
ZONINGS = ("normal", "reverse", "none")


@dataclass(slots=True)
class Catalogue:
    """Every crystal of a store's olivine mask, measured (``rows``, Contract 2's columns first)."""

    rows: list[dict[str, Any]]
    layers: Layers
    components: Components
    ids: dict[int, int]  # component → crystal_id, for components that are one crystal
    splits: dict[int, tuple[tuple[int, int], NDArray[np.uint32]]]  # component → window labels
    black_level_dn: float
    seconds: dict[str, float] = field(default_factory=dict)
    workers: int = 1  # processes the blocks ran in

    def summary(self) -> dict[str, Any]:
        return summarize(self.rows)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per size class and zoning, areas and an mg# histogram (what the dashboard shows)."""
    classes = Counter(r["size_class"] for r in rows)
    zoning = Counter(r["zoning"] for r in rows if r["size_class"] == "phenocryst")
    mg = np.array([r["mg_mean"] for r in rows], dtype=np.float64)
    mg = mg[np.isfinite(mg)]
    counts, edges = np.histogram(mg, bins=20, range=(0.5, 1.0))
    return {
        "crystals": len(rows),
        "size_classes": {c: classes.get(c, 0) for c in SIZE_CLASSES},
        "phenocryst_zoning": {z: zoning.get(z, 0) for z in ZONINGS},
        "touching_edge": sum(bool(r["touches_edge"]) for r in rows),
        "olivine_area_um2": float(sum(r["area_um2"] for r in rows)),
        "mg_histogram": {"edges": edges.round(3).tolist(), "counts": counts.tolist()},
    }


def live_summary(
    store: Path,
    settings: CatalogueSettings,
    regions: list[tuple[int, int, int, int]] | None = None,
) -> dict[str, Any]:
    """:func:`summarize` over the crystals that lie wholly inside the completed regions
    (``(r0, c0, r1, c1)`` mosaic pixels, as ``RegionComplete.bounds``; None: the whole mosaic).
    Reads the store only: the label image and the exports are left as they are."""
    catalogue = build_catalogue(store, settings, write_labels=False)
    s = catalogue.layers.scale_um
    ty, tx = catalogue.layers.translation_um
    rows = catalogue.rows
    if regions is not None:
        boxes = np.asarray(regions, np.int64).reshape(-1, 4)  # disjoint grid cells

        def inside(row: dict[str, Any]) -> bool:
            r0 = round((row["bbox_y_min_um"] - ty) / s + 0.5)
            c0 = round((row["bbox_x_min_um"] - tx) / s + 0.5)
            r1 = round((row["bbox_y_max_um"] - ty) / s + 0.5)
            c1 = round((row["bbox_x_max_um"] - tx) / s + 0.5)
            h = np.clip(np.minimum(boxes[:, 2], r1) - np.maximum(boxes[:, 0], r0), 0, None)
            w = np.clip(np.minimum(boxes[:, 3], c1) - np.maximum(boxes[:, 1], c0), 0, None)
            return bool(int((h * w).sum()) == (r1 - r0) * (c1 - c0))

        rows = [r for r in rows if inside(r)]
    summary = summarize(rows)
    summary["regions"] = None if regions is None else len(regions)
    return summary


def build_catalogue(
    store: Path, settings: CatalogueSettings, write_labels: bool = True
) -> Catalogue:
    """Find and measure every olivine crystal of ``store``; write ``bse/labels/crystals``."""
    import zarr

    path = store / "mosaic.zarr"
    try:
        root: Any = zarr.open_group(str(path), mode="r+" if write_labels else "r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise InputDataError(
            f"{store} has no mosaic (mosaic.zarr); expected a store written by semlive "
            "stitch or semlive run — stitch the session first",
            path=store,
        ) from None
    if "bse/labels/olivine" not in root:
        raise InputDataError(
            f"{store} has no olivine labels (mosaic.zarr/bse/labels/olivine); the catalogue "
            "is made from them — train and segment first (semlive train, semlive segment)",
            path=store,
        )
    seconds: dict[str, float] = {}
    layers = open_layers(root)
    workers = worker_count(settings.workers, len(list(blocks(layers.shape, settings.block_px))))
    with task_map(workers) as map_:
        started = time.perf_counter()
        components = find_components(layers.olivine, settings.block_px, map_)
        seconds["instances"] = time.perf_counter() - started
        black = black_level(root, settings)
        tiles = _tiles(store, layers)
        started = time.perf_counter()
        measured = measure(layers, components, settings, black, tiles, map_)
        seconds["measure"] = time.perf_counter() - started
        if write_labels:
            started = time.perf_counter()
            write_crystal_labels(root, layers, components, measured, settings.block_px, map_)
            seconds["labels"] = time.perf_counter() - started
    log.info(
        "catalogue: %d crystals from %d olivine components (black level %.0f DN, %d worker%s)",
        len(measured.rows),
        len(components),
        black,
        workers,
        "" if workers == 1 else "s",
    )
    return Catalogue(
        measured.rows, layers, components, measured.ids, measured.splits, black, seconds, workers
    )


def _tiles(store: Path, layers: Layers) -> TileFootprints:
    from semlive.acquisition import Ledger
    from semlive.calibration._calibrate import session_of

    ledger_path = store / "ledger.sqlite"
    if not ledger_path.is_file():
        return TileFootprints([], np.zeros((0, 4), np.int64), [])
    ledger = Ledger(ledger_path)
    try:
        _, session = session_of(store, ledger, None)
    except InputDataError as exc:
        log.warning("crystals are listed without their tiles: %s", exc)
        return TileFootprints([], np.zeros((0, 4), np.int64), [])
    finally:
        ledger.close()
    return TileFootprints.from_ledger(ledger_path, session.tile_shape)


def write_crystal_labels(
    root: Any,
    layers: Layers,
    components: Components,
    measured: Measured,
    block_px: int,
    map_: TaskMap = map,
) -> None:
    """``bse/labels/crystals``: uint32 instance image (value = crystal_id), OME-Zarr labels with
    a pyramid of nearest-neighbour levels, written block by block (the blocks run by ``map_``).
    """
    bse = root["bse"]
    multiscales = bse.attrs["ome"]["multiscales"][0]
    like = [bse[d["path"]] for d in multiscales["datasets"]]
    if CRYSTALS_PATH in root:
        del root[CRYSTALS_PATH]
    labels_group = root.require_group("bse/labels")
    names = list(labels_group.attrs.get("ome", {}).get("labels", []))
    if "crystals" not in names:
        labels_group.attrs["ome"] = {"version": "0.5", "labels": [*names, "crystals"]}
    group = root.create_group(CRYSTALS_PATH)
    levels = [
        group.create_array(
            str(k),
            shape=level.shape,
            chunks=level.chunks,
            dtype="uint32",
            fill_value=0,
            dimension_names=["y", "x"],
        )
        for k, level in enumerate(like)
    ]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{**multiscales, "name": "crystals"}],
        "image-label": {"version": "0.5", "source": {"image": "../../"}},
    }
    step = 2 ** (len(levels) - 1)
    if block_px % step:  # blocks must align with every pyramid level
        raise ValueError(f"block_px {block_px} must be a multiple of {step}")
    of_component = np.zeros(len(components), np.uint32)
    of_component[list(measured.ids)] = list(measured.ids.values())
    crystal_of_part = of_component[components.of_part]
    spans = list(blocks(layers.shape, block_px))
    ends = [*components.offsets[1:].tolist(), len(components.of_part)]
    tasks = []
    for b, span in enumerate(spans):
        lookup = np.concatenate([[0], crystal_of_part[components.offsets[b] : ends[b]]])
        tasks.append(
            _LabelBlock(
                layers.olivine,
                levels,
                span,
                block_px,
                lookup.astype(np.uint32),
                _splits_over(measured, span),
            )
        )
    for span, coarse in zip(spans, map_(_write_label_block, tasks), strict=True):
        for k, piece in coarse:  # levels whose chunks the block shares with its neighbours
            f = 2**k
            levels[k][span[0] // f : -(-span[2] // f), span[1] // f : -(-span[3] // f)] = piece


@dataclass(frozen=True, slots=True)
class _LabelBlock:
    """One block of ``bse/labels/crystals`` to write: where, the crystal of each local olivine
    label, and the split crystals that reach into it (window origin and labels)."""

    olivine: Any
    levels: list[Any]
    span: tuple[int, int, int, int]
    block_px: int
    lookup: NDArray[np.uint32]
    splits: list[tuple[tuple[int, int], NDArray[np.uint32]]]


def _splits_over(
    measured: Measured, span: tuple[int, int, int, int]
) -> list[tuple[tuple[int, int], NDArray[np.uint32]]]:
    r0, c0, r1, c1 = span
    return [
        (origin, split)
        for origin, split in measured.splits.values()
        if origin[0] < r1
        and origin[0] + split.shape[0] > r0
        and origin[1] < c1
        and origin[1] + split.shape[1] > c0
    ]


def _write_label_block(task: _LabelBlock) -> list[tuple[int, NDArray[np.uint32]]]:
    """Write a block's levels whose chunks it owns; return the others' pieces (level, pixels)
    for the caller to write, so no two processes write one chunk."""
    r0, c0, r1, c1 = task.span
    labels, _ = label_block(np.asarray(task.olivine[r0:r1, c0:c1]) > 0)
    out = task.lookup[labels]
    for (w0, w1), split in task.splits:  # touching crystals, split
        h, w = split.shape
        a0, b0 = max(w0, r0), max(w1, c0)
        a1, b1 = min(w0 + h, r1), min(w1 + w, c1)
        piece = split[a0 - w0 : a1 - w0, b0 - w1 : b1 - w1]
        view = out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
        view[piece > 0] = piece[piece > 0]
    coarse: list[tuple[int, NDArray[np.uint32]]] = []
    if not out.any():
        return coarse
    for k, level in enumerate(task.levels):
        f = 2**k
        pixels = out[::f, ::f]
        if all((task.block_px // f) % chunk == 0 for chunk in level.chunks):  # aligned blocks
            level[r0 // f : -(-r1 // f), c0 // f : -(-c1 // f)] = pixels
        else:
            coarse.append((k, pixels))
    return coarse
