"""Exports of the catalogue: tables, polygons, crystal images, figures and the HTML report.

Everything is written into a temporary folder beside the destination and renamed into place at
the end, so a crash never leaves a half catalogue: the destination holds the previous complete
export or the new one.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.catalogue._catalogue import Catalogue, build_catalogue
from semlive.catalogue._instances import Components
from semlive.catalogue._measure import COLUMNS, Layers, Window, block_groups, group_windows
from semlive.catalogue._pool import task_map, worker_count
from semlive.settings import CatalogueSettings

__all__ = ["ExportReport", "export_catalogue", "polygon_of", "write_tables"]

_CROP_MARGIN_PX = 12
_CROP_MIN_PX = 160  # panels are enlarged (nearest neighbour) to at least this height
_OUTLINE_RGB = (255, 196, 0)


@dataclass(frozen=True, slots=True)
class ExportReport:
    folder: Path
    catalogue: Catalogue
    files: dict[str, Path]
    seconds: dict[str, float]


def export_catalogue(
    store: Path, settings: CatalogueSettings, out: Path | None = None
) -> ExportReport:
    """Build the catalogue of ``store`` and write every export into ``out`` (default
    ``STORE/catalogue``), atomically."""
    from semlive.catalogue._report import write_figures, write_report

    target = (out if out is not None else store / "catalogue").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    catalogue = build_catalogue(store, settings)
    seconds = dict(catalogue.seconds)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        started = time.perf_counter()
        files = write_tables(catalogue.rows, temp)
        seconds["tables"] = time.perf_counter() - started
        started = time.perf_counter()
        files["geojson"] = _write_shapes(catalogue, settings, temp, crops=settings.crops)
        seconds["polygons_and_crops"] = time.perf_counter() - started
        started = time.perf_counter()
        figures = write_figures(store, catalogue, temp / "figures")
        seconds["figures"] = time.perf_counter() - started
        (temp / "summary.json").write_text(json.dumps(catalogue.summary(), indent=2))
        files["summary"] = temp / "summary.json"
        files["report"] = write_report(store, catalogue, figures, temp / "report.html")
        _replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return ExportReport(
        target,
        catalogue,
        {k: target / v.relative_to(temp) for k, v in files.items()},
        seconds,
    )


def _replace(temp: Path, target: Path) -> None:
    """Rename ``temp`` to ``target``; an earlier export is moved aside first, then removed."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{time.time_ns()}.old")
        target.rename(old)
    temp.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_tables(rows: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    """``crystals.csv`` and ``crystals.parquet`` with the catalogue's columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    csv_path, parquet_path = folder / "crystals.csv", folder / "crystals.parquet"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(_csv_row(r) for r in rows)
    types = {
        "crystal_id": pa.int64(),
        "size_class": pa.string(),
        "zoning": pa.string(),
        "touches_edge": pa.bool_(),
        "core_px": pa.int64(),
        "rim_px": pa.int64(),
        "tiles": pa.string(),
        "first_acquired_at": pa.string(),
        "last_acquired_at": pa.string(),
    }
    schema = pa.schema([(c, types.get(c, pa.float64())) for c in COLUMNS])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), parquet_path)
    return {"csv": csv_path, "parquet": parquet_path}


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def polygon_of(
    window: Window, scale_um: float, translation_um: tuple[float, float]
) -> list[list[float]]:
    """The crystal's outer outline in stage µm: a closed ring, counter-clockwise in (x, y),
    through the pixel-edge midpoints (within half a pixel of the pixels' outer edges)."""
    from skimage.measure import find_contours

    padded = np.pad(window.filled, 1).astype(np.float32)
    contours = find_contours(padded, 0.5)
    ring = max(contours, key=len)  # holes are filled: one outer ring (4-connected crystals)
    ring = _corners(ring)
    ty, tx = translation_um
    rows = ring[:, 0] - 1 + window.origin[0]
    cols = ring[:, 1] - 1 + window.origin[1]
    xy = np.stack([tx + scale_um * cols, ty + scale_um * rows], axis=1)
    x, y = xy[:, 0], xy[:, 1]
    if float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1])) < 0:
        xy = xy[::-1]
    if not np.array_equal(xy[0], xy[-1]):
        xy = np.vstack([xy, xy[:1]])
    return [[round(float(a), 3), round(float(b), 3)] for a, b in xy]


def _corners(ring: NDArray[np.float64]) -> NDArray[np.float64]:
    """The ring without the points where it runs straight on (exact: no point moves)."""
    step = np.diff(ring, axis=0, prepend=ring[-2:-1])  # the ring is closed: ring[0] == ring[-1]
    turn = np.abs(step[:, 0] * np.roll(step[:, 1], -1) - step[:, 1] * np.roll(step[:, 0], -1))
    keep = turn > 1e-9
    keep[0] = keep[-1] = True
    return ring[keep]


@dataclass(frozen=True, slots=True)
class _Shapes:
    """One group of crystals to outline (and crop): a task of :func:`_write_shapes`."""

    layers: Layers
    components: Components
    group: list[int]
    ids: dict[int, int]  # component → crystal_id, for components that are one crystal
    splits: dict[int, tuple[tuple[int, int], NDArray[np.uint32]]]
    rows: dict[int, dict[str, Any]]  # by crystal_id
    mg_range: tuple[float, float]
    crops: Path | None  # the crops folder, or None for no crops


def _write_shapes(
    catalogue: Catalogue, settings: CatalogueSettings, folder: Path, crops: bool
) -> Path:
    """``crystals.geojson`` (and the crops), one pass over the crystals' windows, a group of
    crystals per task."""
    layers = catalogue.layers
    mg_values = np.array([r["mg_mean"] for r in catalogue.rows], np.float64)
    finite = mg_values[np.isfinite(mg_values)]
    mg_range = (
        (float(np.floor(finite.min() * 50) / 50), float(np.ceil(finite.max() * 50) / 50))
        if finite.size
        else (0.6, 0.95)
    )
    if mg_range[1] - mg_range[0] < 0.04:
        mg_range = (mg_range[0] - 0.02, mg_range[1] + 0.02)
    by_id = {r["crystal_id"]: r for r in catalogue.rows}
    members = sorted({*catalogue.ids, *catalogue.splits})
    tasks = []
    for group in block_groups(catalogue.components, members, settings.block_px):
        ids = {k: catalogue.ids[k] for k in group if k in catalogue.ids}
        splits = {k: catalogue.splits[k] for k in group if k in catalogue.splits}
        crystal_ids = [*ids.values()]
        for _, split in splits.values():
            crystal_ids += np.unique(split[split > 0]).tolist()
        rows = {i: by_id[i] for i in crystal_ids}
        crops_folder = folder / "crops" if crops else None
        tasks.append(
            _Shapes(layers, catalogue.components, group, ids, splits, rows, mg_range, crops_folder)
        )
    features: dict[int, dict[str, Any]] = {}
    with task_map(worker_count(settings.workers, len(tasks))) as map_:
        for part in map_(_shapes_of_group, tasks):
            features.update(part)
    collection = {
        "type": "FeatureCollection",
        "name": "crystals",
        "semlive": {
            "units": "micrometre",
            "frame": "SEM stage (x right, y as the stage's y)",
            "pixel_size_um": layers.scale_um,
        },
        "features": [features[k] for k in sorted(features)],
    }
    path = folder / "crystals.geojson"
    path.write_text(json.dumps(collection, allow_nan=False))
    return path


def _shapes_of_group(task: _Shapes) -> dict[int, dict[str, Any]]:
    """The GeoJSON features of a group's crystals, by crystal_id; their crops written."""
    scale_um, translation_um = task.layers.scale_um, task.layers.translation_um
    features = {}
    for crystal_id, w in _crystal_windows(task):
        row = task.rows[crystal_id]
        ring = polygon_of(w, scale_um, translation_um)
        properties = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()
        }
        features[crystal_id] = {
            "type": "Feature",
            "id": crystal_id,
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": properties,
        }
        if task.crops is not None:
            name = row["size_class"] + (f"-{row['zoning']}" if row["zoning"] else "")
            path = task.crops / name / f"{crystal_id}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop_image(w, row, scale_um, task.mg_range).save(path, compress_level=1)
    return features


def _crystal_windows(task: _Shapes) -> Iterator[tuple[int, Window]]:
    """Each crystal of a group (``crystal_id``, its window), touching crystals one by one."""
    from scipy.ndimage import binary_fill_holes

    for w in group_windows(task.layers, task.components, task.group, margin=_CROP_MARGIN_PX):
        if w.component in task.ids:
            yield task.ids[w.component], w
            continue
        (o0, o1), split = task.splits[w.component]
        labels = np.zeros(w.crystal.shape, np.uint32)
        r, c = o0 - w.origin[0], o1 - w.origin[1]
        labels[r : r + split.shape[0], c : c + split.shape[1]] = split
        for crystal_id in np.unique(split[split > 0]).tolist():
            crystal = labels == crystal_id
            yield crystal_id, replace(w, crystal=crystal, filled=binary_fill_holes(crystal))


def crop_image(
    w: Window, row: dict[str, Any], scale_um: float, mg_range: tuple[float, float]
) -> Any:
    """BSE with the outline, beside the mg# colour map with a scale bar and a colour bar."""
    from PIL import Image, ImageDraw
    from scipy.ndimage import binary_erosion

    bse = w.bse
    scanned = bse[bse > 0]
    lo, hi = np.percentile(scanned, (1, 99.5)) if scanned.size else (0.0, 1.0)
    grey = np.clip((bse - lo) / max(hi - lo, 1.0) * 255, 0, 255).astype(np.uint8)
    outline = w.filled & ~binary_erosion(w.filled)
    left = np.repeat(grey[..., None], 3, axis=2)
    left[outline] = _OUTLINE_RGB
    right = (np.repeat(grey[..., None], 3, axis=2) * 0.35).astype(np.uint8)
    lut = _viridis()
    if w.mg is not None:
        mg = w.mg
        ok = w.crystal & np.isfinite(mg)
        idx = np.clip((mg[ok] - mg_range[0]) / (mg_range[1] - mg_range[0]) * 255, 0, 255)
        right[ok] = lut[idx.astype(np.int64)]
    right[outline] = (255, 255, 255)
    f = max(1, math.ceil(_CROP_MIN_PX / max(bse.shape)))
    panels = [np.kron(p, np.ones((f, f, 1), np.uint8)) for p in (left, right)]
    h, wd = panels[0].shape[:2]
    gap, bar_w, head = 8, 14, 30
    canvas = Image.new("RGB", (2 * wd + 3 * gap + bar_w + 44, h + head + 26), (255, 255, 255))
    canvas.paste(Image.fromarray(panels[0]), (gap, head))
    canvas.paste(Image.fromarray(panels[1]), (2 * gap + wd, head))
    draw = ImageDraw.Draw(canvas)
    draw.font = _font()
    zoning = f", {row['zoning']} zoning" if row["zoning"] else ""
    mg_text = "n/a" if not math.isfinite(row["mg_mean"]) else f"{row['mg_mean']:.3f}"
    draw.text(
        (gap, 3),
        f"#{row['crystal_id']}  {row['size_class']}{zoning}  {row['area_um2']:,.0f} µm²",
        fill=(0, 0, 0),
    )
    draw.text(
        (gap, 15), f"mg# {mg_text}   core/rim BSE {row['core_rim_ratio']:.3f}", fill=(0, 0, 0)
    )
    # scale bar: a round length near a quarter of the panel
    width_um = bse.shape[1] * scale_um
    bar_um = _nice(width_um / 4)
    bar_px = bar_um / scale_um * f
    y = head + h + 8
    draw.rectangle((gap, y, gap + bar_px, y + 4), fill=(0, 0, 0))
    draw.text((gap + bar_px + 6, y - 3), f"{bar_um:g} µm", fill=(0, 0, 0))
    # colour bar beside the mg# panel
    x0 = 3 * gap + 2 * wd
    ramp = np.repeat(lut[::-1][:, None, :], bar_w, axis=1)
    canvas.paste(Image.fromarray(ramp).resize((bar_w, h)), (x0, head))
    draw.text((x0 + bar_w + 3, head - 2), f"{mg_range[1]:.2f}", fill=(0, 0, 0))
    draw.text((x0 + bar_w + 3, head + h - 10), f"{mg_range[0]:.2f}", fill=(0, 0, 0))
    draw.text((x0 - 2, head + h + 6), "mg#", fill=(0, 0, 0))
    return canvas


@functools.cache
def _font() -> Any:
    """DejaVu Sans from matplotlib's data (PIL's own bitmap font has no µ or ²)."""
    import matplotlib
    from PIL import ImageFont

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    return ImageFont.truetype(str(path), 11)


@functools.cache
def _viridis() -> NDArray[np.uint8]:
    from matplotlib import colormaps

    return (colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _nice(value: float) -> float:
    """1, 2 or 5 × 10^k, the largest not above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    k = 10 ** math.floor(math.log10(value))
    return float(max(m * k for m in (1, 2, 5) if m * k <= value))


def grey_of(values: NDArray[Any]) -> NDArray[np.uint8]:
    """A BSE image stretched to 8 bits between its 1st and 99.5th percentiles (0 stays 0)."""
    scanned = values[values > 0]
    if scanned.size == 0:
        return np.zeros(values.shape, np.uint8)
    lo, hi = np.percentile(scanned, (1, 99.5))
    out = np.clip((values.astype(np.float64) - lo) / max(hi - lo, 1.0) * 254 + 1, 1, 255)
    return np.where(values > 0, out, 0).astype(np.uint8)
