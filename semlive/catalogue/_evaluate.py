"""A catalogue against a simulated session's truth (``_truth/crystals.csv`` and its maps).

A catalogue crystal matches a true olivine crystal when their olivine pixels overlap with an
intersection over union of at least 0.5 (so a match is one to one). Detection is scored for
crystals of at least ``min_area_um2`` (1,000 µm² in the issue): recall over the true crystals of
that size, precision over the catalogue's crystals of that size.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from semlive.catalogue._catalogue import CRYSTALS_PATH

__all__ = ["evaluate_catalogue", "match_crystals", "use_truth_olivine"]


def use_truth_olivine(store: Path, truth: Path) -> None:
    """Write the truth's olivine (on the mosaic grid) as the store's ``bse/labels/olivine``, every
    pyramid level, so a catalogue can be scored apart from the segmentation. Any network
    probability image is removed: it belongs to the labels being replaced."""
    import zarr

    from semlive.streaming import truth_on_mosaic

    olivine_id = int(next(k for k, v in _phases(truth).items() if v == "olivine"))
    mask = truth_on_mosaic(store, truth, ("phase",))["phase"] == olivine_id
    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r+")
    for path in ("olivine_probability", "bse/labels/olivine"):
        if path in root:
            del root[path]
    group = root.require_group("bse/labels/olivine")
    for k in range(len(root["bse"].attrs["ome"]["multiscales"][0]["datasets"])):
        like = root["bse"][str(k)]
        array = group.create_array(
            str(k), shape=like.shape, chunks=like.chunks, dtype="uint8", fill_value=0
        )
        array[:] = mask[:: 2**k, :: 2**k][: like.shape[0], : like.shape[1]].astype(np.uint8)


def match_crystals(
    store: Path, truth: Path, rows: list[dict[str, Any]]
) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """Matches catalogue crystal_id → true crystal_id, and the true olivine crystals."""
    import zarr

    from semlive.streaming import truth_on_mosaic

    with (truth / "crystals.csv").open(newline="", encoding="utf-8") as f:
        true_rows = [_typed(r) for r in csv.DictReader(f) if r["phase"] == "olivine"]
    maps = truth_on_mosaic(store, truth, ("instances", "phase"))
    olivine_id = int(next(k for k, v in _phases(truth).items() if v == "olivine"))
    true_ids = np.where(maps["phase"] == olivine_id, maps["instances"], 0).astype(np.int64)
    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    ours = np.asarray(root[CRYSTALS_PATH]["0"][:]).astype(np.int64)
    both = (ours > 0) & (true_ids > 0)
    base = int(true_ids.max()) + 1
    keys, overlap = np.unique(ours[both] * base + true_ids[both], return_counts=True)
    our_px = np.bincount(ours.ravel(), minlength=len(rows) + 1)
    true_px = np.bincount(true_ids.ravel(), minlength=base)
    matches: dict[int, int] = {}
    for key, n in zip(keys.tolist(), overlap.tolist(), strict=True):
        a, b = divmod(key, base)
        if n / (our_px[a] + true_px[b] - n) >= 0.5:
            matches[a] = b
    return matches, true_rows


def evaluate_catalogue(
    store: Path, truth: Path, rows: list[dict[str, Any]], min_area_um2: float = 1_000.0
) -> dict[str, Any]:
    """Detection, size class, zoning and core/rim mg# against the truth."""
    matches, true_rows = match_crystals(store, truth, rows)
    by_true = {r["crystal_id"]: r for r in true_rows}
    by_ours = {r["crystal_id"]: r for r in rows}
    matched_true = set(matches.values())
    big_true = [r for r in true_rows if r["area_um2"] >= min_area_um2]
    big_ours = [r for r in rows if r["area_um2"] >= min_area_um2]
    pairs = [(by_ours[a], by_true[b]) for a, b in matches.items() if b in by_true]
    pheno = [(o, t) for o, t in pairs if t["size_class"] == "phenocryst"]
    featured = [(o, t) for o, t in pheno if t["hole_in_core"] or t["cracks"] or t["holes"]]

    def share(items: list[Any], ok: Any) -> float:
        return float(np.mean([ok(i) for i in items])) if items else float("nan")

    def mg_errors(key: str) -> list[float]:
        return [
            abs(o[key] - t[key])
            for o, t in pairs
            if np.isfinite(o[key]) and np.isfinite(t[key]) and t["size_class"] != "microlite"
        ]

    core, rim = mg_errors("mg_core"), mg_errors("mg_rim")
    return {
        "true_crystals": len(true_rows),
        "catalogue_crystals": len(rows),
        "matched": len(pairs),
        "min_area_um2": min_area_um2,
        "recall": share(big_true, lambda r: r["crystal_id"] in matched_true),
        "precision": share(big_ours, lambda r: r["crystal_id"] in matches),
        "size_class_accuracy": share(pairs, lambda p: p[0]["size_class"] == p[1]["size_class"]),
        "zoning_accuracy": share(pheno, lambda p: p[0]["zoning"] == p[1]["zoning"]),
        "phenocrysts": len(pheno),
        "zoning_accuracy_with_cracks_or_holes": share(
            featured, lambda p: p[0]["zoning"] == p[1]["zoning"]
        ),
        "phenocrysts_with_cracks_or_holes": len(featured),
        "phenocrysts_with_hole_in_core": sum(bool(t["hole_in_core"]) for _, t in featured),
        "mg_core_abs_error": _quantiles(core),
        "mg_rim_abs_error": _quantiles(rim),
        "area_relative_error_median": float(
            np.median([abs(o["area_um2"] / t["area_um2"] - 1) for o, t in pairs])
        )
        if pairs
        else float("nan"),
    }


def _quantiles(errors: list[float]) -> dict[str, float]:
    if not errors:
        return {"n": 0, "median": float("nan"), "p95": float("nan"), "max": float("nan")}
    e = np.asarray(errors)
    return {
        "n": len(e),
        "median": float(np.median(e)),
        "p95": float(np.percentile(e, 95)),
        "max": float(e.max()),
        "within_0.01": float(np.mean(e <= 0.01)),
    }


def _phases(truth: Path) -> dict[str, str]:
    import zarr

    attrs: Any = zarr.open_group(str(truth / "maps.zarr"), mode="r").attrs
    return {str(k): str(v) for k, v in attrs["phases"].items()}


def _typed(row: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(row)
    out["crystal_id"] = int(row["crystal_id"])
    for key in ("area_um2", "mg_mean", "mg_core", "mg_rim", "core_rim_ratio"):
        out[key] = float(row[key]) if row[key] not in ("", "nan") else float("nan")
    for key in ("touches_edge", "broken", "touching", "hole_in_core"):
        out[key] = row[key] == "True"
    for key in ("cracks", "holes"):
        out[key] = int(row[key])
    return out
