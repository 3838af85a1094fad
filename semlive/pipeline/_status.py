"""The run's status: one JSON-able dict with everything the dashboard shows.

Written to ``STORE/status.json`` every ``pipeline.status_interval_s`` (``semlive status`` reads
it), printed as one line each time with ``--headless``, and drawn by the dashboard.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semlive.acquisition import Ledger, LedgerError, status_of
from semlive.calibration import calibration_status

if TYPE_CHECKING:
    from semlive.pipeline._run import Pipeline

__all__ = ["TILE_STATES", "ledger_status", "snapshot"]

# one character a tile on the minimap
TILE_STATES = {
    "planned": ".",
    "stitched": "s",
    "eds": "e",
    "segmented": "o",
    "segmented_eds": "O",
    "quarantined": "x",
}


def _quantiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {
        "n": len(a),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
        "max": round(float(a.max()), 3),
    }


def _grid(p: Pipeline) -> dict[str, Any]:
    rows = max([p.plan["rows"], *[t.get("row", -1) + 1 for t in p.tiles.values()]])
    cols = max([p.plan["cols"], *[t.get("col", -1) + 1 for t in p.tiles.values()]])
    cells = [[TILE_STATES["planned"]] * cols for _ in range(rows)]
    counts = dict.fromkeys(TILE_STATES, 0)
    for tile in p.tiles.values():
        if "row" not in tile:
            continue
        state = tile.get("state", "stitched")
        if state == "stitched" and tile.get("eds"):
            state = "eds"
        elif state == "segmented" and tile.get("eds"):
            state = "segmented_eds"
        counts[state] = counts.get(state, 0) + 1
        cells[tile["row"]][tile["col"]] = TILE_STATES[state]
    counts["planned"] = max(rows * cols - sum(v for k, v in counts.items() if k != "planned"), 0)
    return {"rows": rows, "cols": cols, "cells": ["".join(r) for r in cells], "counts": counts}


def ledger_status(store: Path, ledger: Ledger) -> dict[str, Any]:
    """What the ledger says (files, quarantine, stitching, drift, mg# fit)."""
    out: dict[str, Any] = dict(status_of(ledger))
    with contextlib.suppress(LedgerError):  # no standards yet
        out.update(calibration_status(store, ledger) or {})
    return out


def snapshot(p: Pipeline) -> dict[str, Any]:
    now = time.monotonic()
    elapsed = now - p.started
    grid = _grid(p)
    arrivals = list(p.arrivals)
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) * 60 if len(arrivals) > 2 else None
    planned = p.plan["rows"] * p.plan["cols"]
    left = max(planned - p.counts["tiles"], 0) if planned else None
    eta = None if not rate or left is None or p.sem_done else round(left / rate * 60, 1)
    book = p._ensure_book()  # the run's own connection, not a new one each tick
    ledger = {} if book is None else ledger_status(p.store, book.ledger)
    done_regions = [b for b, m in p.regions.items() if m is not None and m == p.model]
    lanes = {
        name: {
            "pending": len(lane.pending),
            "running": None
            if lane.running is None
            else {
                "kind": lane.running[0].kind,
                "key": lane.running[0].key,
                "seconds": round(now - lane.running[2], 1),
            },
        }
        for name, lane in p._lanes.items()
    }
    stitching = ledger.get("stitching")
    segmentation: dict[str, Any] = {
        "model": None if p.model is None else p.model_info,
        "regions_complete": len(p.regions),
        "regions_segmented": len(done_regions),
        "tile_latency_s": _quantiles(p.latencies),
        "region_latency_s": _quantiles(p.region_latencies),
    }
    segmentation.update(p.segmentation_totals())
    return {
        "format": "semlive.status/1",
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "session": {
            "folder": str(p.session_dir),
            "store": str(p.store),
            "sample": p.plan.get("sample"),
            "started_at": p.started_at,
            "elapsed_s": round(elapsed, 1),
            "sem_done": p.sem_done,
            "finalising": p.finalising and not p.finished,
            "finished": p.finished,
            "eta_s": eta,
        },
        "tiles": grid,
        "ingest": {
            **p.counts,
            "files": ledger.get("files", {}),
            "tiles_per_min": None if rate is None else round(rate, 2),
            "backlog": {"events": p._events.qsize(), "jobs": p._waiting()},
            "quarantined_files": ledger.get("quarantined", [])[-5:],
        },
        "lanes": lanes,
        "jobs": {} if book is None else book.counts(),
        "stitching": stitching,
        "drift": ledger.get("drift"),
        "mgnumber": ledger.get("mgnumber"),
        "segmentation": segmentation,
        "advice": p.advice,
        "gdls": p.gdls,
        "catalogue": p.catalogue,
        "calibration": p.calibration,
        "export": None
        if p.export is None
        else {"report": p.export.get("report"), "csv": p.export.get("csv")},
        "failures": p.failures[-5:],
        "recent": list(p.recent),
        "system": p._meter.read(),
    }
