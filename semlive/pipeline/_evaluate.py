"""``semlive evaluate``: a store against a simulated session's ground truth, end to end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from semlive.errors import InputDataError
from semlive.settings import Settings

__all__ = ["evaluate_store"]


def evaluate_store(store: Path, truth: Path, settings: Settings) -> dict[str, Any]:
    """Placement, olivine IoU/OA (unseen tiles and all), mg# RMSE, crystals, GDLS; each part
    is None where the store has nothing to score yet."""
    import zarr

    from semlive.streaming import placement_error_px, truth_on_mosaic

    if not (truth / "truth.json").is_file():
        raise InputDataError(
            f"{truth} is not a simulated session's truth (no truth.json); expected "
            "SESSION/_truth of a session written by semlive simulate",
            path=truth,
        )
    if not (store / "mosaic.zarr").is_dir():
        raise InputDataError(
            f"{store} has no mosaic (mosaic.zarr); expected a store written by semlive run",
            path=store,
        )
    scores: dict[str, Any] = {"store": str(store), "truth": str(truth)}
    scores["placement_error_px"] = placement_error_px(store, truth)
    maps = truth_on_mosaic(store, truth, ("phase", "mgnumber"))
    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    scores["olivine"] = _olivine(store, truth)
    scores["mgnumber"] = _mgnumber(root, maps)
    scores["crystals"] = _crystals(store, truth)
    scores["gdls"] = _gdls(root, maps)
    scores["summary"] = _summary(scores)
    return scores


def _olivine(store: Path, truth: Path) -> dict[str, Any] | None:
    from semlive.models.olivine import evaluate_against_truth

    unseen = evaluate_against_truth(store, truth, unseen_only=True)
    if unseen is None:
        return None
    every = evaluate_against_truth(store, truth, unseen_only=False)
    assert every is not None
    return {
        "unseen_tiles": unseen["overall"],
        "all_tiles": every["overall"],
        "clinopyroxene_as_olivine": unseen["clinopyroxene_as_olivine"],
        "regions": unseen["regions"],
    }


def _mgnumber(root: Any, maps: dict[str, Any]) -> dict[str, Any] | None:
    """mg# of the map against the truth on true olivine the map covers."""
    if "mgnumber" not in root or "mgnumber" not in maps:
        return None
    ours = np.asarray(root["mgnumber"]["0"][...], np.float64)
    true = np.asarray(maps["mgnumber"], np.float64)
    on = (maps["phase"] == 1) & np.isfinite(ours) & np.isfinite(true)
    if not on.any():
        return {"pixels": 0, "rmse": None}
    error = ours[on] - true[on]
    return {
        "pixels": int(on.sum()),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(error.mean()),
        "p95_abs": float(np.percentile(np.abs(error), 95)),
    }


def _crystals(store: Path, truth: Path) -> dict[str, Any] | None:
    path = store / "catalogue" / "crystals.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    from semlive.catalogue import evaluate_catalogue

    rows = pq.read_table(path).to_pylist()
    return evaluate_catalogue(store, truth, rows)


def _gdls(root: Any, maps: dict[str, Any]) -> dict[str, Any] | None:
    """GDLS segments against the true phases, where spectra were segmented."""
    if "bse/labels/gdls" not in root:
        return None
    from semlive.models.gdls import segmentation_scores

    segments = np.asarray(root["bse/labels/gdls"]["0"][...])
    phase = np.asarray(maps["phase"])
    known = phase != 255
    truth_ids = np.where(known, phase.astype(np.int64) + 1, 0)
    return segmentation_scores(segments, truth_ids, known & (segments > 0))


def _summary(s: dict[str, Any]) -> list[str]:
    def f(value: Any, spec: str) -> str:
        return (
            "n/a"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else (format(value, spec))
        )

    lines = [f"placement error: {f(s['placement_error_px'], '.2f')} px RMS"]
    o = s["olivine"]
    if o is None:
        lines.append("olivine: no labels yet")
    else:
        u, a = o["unseen_tiles"], o["all_tiles"]
        lines.append(
            f"olivine on unseen tiles: IoU {f(u['iou'], '.3f')}, "
            f"OA {f(u['overall_accuracy'], '.4f')}; all tiles: IoU {f(a['iou'], '.3f')}, "
            f"OA {f(a['overall_accuracy'], '.4f')}; "
            f"clinopyroxene called olivine {f(o['clinopyroxene_as_olivine'], '.1%')}"
        )
    m = s["mgnumber"]
    lines.append(
        "mg#: no map" if m is None else f"mg#: RMSE {f(m.get('rmse'), '.4f')} on {m['pixels']:,} px"
    )
    c = s["crystals"]
    if c is None:
        lines.append("crystals: no catalogue yet")
    else:
        lines.append(
            f"crystals: {c['catalogue_crystals']} found, {c['true_crystals']} true; recall "
            f"{f(c['recall'], '.3f')}, precision {f(c['precision'], '.3f')}, size class "
            f"{f(c['size_class_accuracy'], '.3f')}, zoning {f(c['zoning_accuracy'], '.3f')}"
        )
    g = s["gdls"]
    lines.append(
        "GDLS: no segments"
        if g is None
        else f"GDLS: {g['segments']} segments, ASA {f(g['asa'], '.4f')}, UE "
        f"{f(g['undersegmentation_error'], '.4f')}"
    )
    return lines
