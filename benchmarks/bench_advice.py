"""Training-area advice against the true learning curve (issue 10).

On a simulated session with EDS maps on every tile (``semlive simulate OUT --eds-every 1``),
the EDS tiles are split as ``semlive train`` splits them (validation by spatial blocks). The
olivine network is trained, by the training code of ``semlive train`` and of the live advice job
(no crystal check: the curve is of the network), on the first n training tiles in acquisition
order, for every n the advice below needs. Each model gives two numbers on the validation
tiles, which no model trains on:

- its IoU against their EDS labels: what the live advice sees;
- its IoU against the virtual SEM's truth: the true learning curve.

The true curve is fitted (``fit_learning_curve``) through every point, and it flattens where
doubling the training area gains less than ``pipeline.advice_target_gain``. The advice is then
replayed as the live job gives it while the EDS area grows: at each step of ``--step`` tiles,
the network trained on all tiles so far and on their first quarter and half, the points of the
earlier advice kept (``history``), ``advise`` with the configured target and noise. The first
step whose verdict is "enough" is compared with where the true curve flattens, both as a
share of the section's scanned area. Each training is reported on stderr as it ends and
kept in ``STORE/advice-curve.json`` (keyed by
the training settings), so an interrupted run goes on where it stopped. Prints one JSON object.

    .venv/bin/python benchmarks/bench_advice.py SESSION STORE [--config FILE] [--epochs N]
        [--step K] [--first K]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_olivine import stitched  # a sibling script: python benchmarks/bench_advice.py

from semlive.calibration import mosaic_image
from semlive.models.olivine import (
    IGNORE,
    TrainingData,
    load_training_data,
    score_model,
    train_olivine,
)
from semlive.pipeline._advice import advice_subsets, advise, fit_learning_curve
from semlive.settings import Settings, load_settings
from semlive.streaming import truth_on_mosaic


def truth_tiles(store: Path, session: Path, tiles: list[Any]) -> list[Any]:
    """The validation tiles with the truth's olivine as their labels (where EDS labelled)."""
    phase = truth_on_mosaic(store, session / "_truth")["phase"]
    out = []
    for tile in tiles:
        (a0, b0), (h, w) = tile.origin, tile.label.shape
        truth = phase[a0 : a0 + h, b0 : b0 + w]
        label = np.where(truth == 1, 1, 0).astype(np.uint8)
        label[(tile.label == IGNORE) | (truth == 255)] = IGNORE
        out.append(dataclasses.replace(tile, label=label))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("session", type=Path)
    parser.add_argument("store", type=Path)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="olivine.epochs (default: config)")
    parser.add_argument("--step", type=int, default=2, help="EDS tiles between two advices")
    parser.add_argument(
        "--first", type=int, default=None, help="tiles of the first advice (default: config)"
    )
    args = parser.parse_args()

    settings = load_settings(args.config) if args.config else Settings()
    update: dict[str, Any] = {"crystal_check": False}  # as the advice job trains
    if args.epochs is not None:
        update["epochs"] = args.epochs
    olivine = settings.olivine.model_copy(update=update)
    pipeline = settings.pipeline
    if not (args.store / "mosaic.zarr").exists():
        stitched(args.session, args.store)

    data = load_training_data(args.store, olivine)
    ordered = sorted(data.train, key=lambda t: (t.acquired_at, t.name))
    validation = data.validation
    truths = truth_tiles(args.store, args.session, validation)
    scanned = int(np.count_nonzero(np.asarray(mosaic_image(args.store).array[:]) > 0))
    first = args.first or pipeline.train_first_eds_tiles

    steps = list(range(first, len(ordered) + 1, args.step))
    if steps[-1] != len(ordered):
        steps.append(len(ordered))
    sizes = sorted({k for n in steps for k in advice_subsets(n)})

    cache_file = args.store / "advice-curve.json"
    key = hashlib.sha256(olivine.model_dump_json().encode()).hexdigest()[:16]
    cache = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    trained = cache.setdefault(key, {})
    for k in sizes:
        if str(k) in trained:
            continue
        subset = ordered[:k]
        started = time.perf_counter()
        name = f".curve-{k}"
        shutil.rmtree(args.store / "models" / name, ignore_errors=True)
        card = train_olivine(
            args.store, olivine, name, resume=False, data=TrainingData(subset, validation, {})
        )
        truth = score_model(args.store / "models" / name, truths, olivine)
        shutil.rmtree(args.store / "models" / name, ignore_errors=True)
        trained[str(k)] = {
            "tiles": k,
            "labelled_px": sum(t.labelled for t in subset),
            "olivine_px": sum(t.olivine for t in subset),
            "val_iou": card.metrics["validation"]["iou"],
            "truth_iou": round(truth.iou, 5),
            "epochs_run": card.training.get("epochs_run"),
            "seconds": round(time.perf_counter() - started, 1),
        }
        cache_file.write_text(json.dumps(cache, indent=1))
        print(json.dumps(trained[str(k)]), file=sys.stderr, flush=True)

    points = [trained[str(k)] for k in sizes]
    target, noise = pipeline.advice_target_gain, pipeline.advice_noise_iou
    area = np.array([p["labelled_px"] for p in points], float)
    curve, _ = fit_learning_curve(area, [p["truth_iou"] for p in points], noise)
    flattens_px = (curve.b * (1 - 2.0**-curve.c) / target) ** (1 / curve.c) if curve.b else 0.0

    history: list[dict[str, float]] = []
    advices = []
    said = None
    for n in steps:
        new = [
            {"labelled_px": trained[str(k)]["labelled_px"], "iou": trained[str(k)]["val_iou"]}
            for k in advice_subsets(n)
            if trained[str(k)]["olivine_px"] > 0
        ]
        history = [*history, *new]
        labelled = trained[str(n)]["labelled_px"]
        if len({p["labelled_px"] for p in history}) < 2:
            continue
        advice = advise(history, labelled, target, labelled / scanned, noise)
        advices.append(
            {
                "tiles": n,
                "area_fraction": round(labelled / scanned, 4),
                "enough": advice.enough,
                "gain": round(advice.gain, 4),
                "gain_upper": round(advice.gain_upper, 4),
            }
        )
        if advice.enough and said is None:
            said = labelled
    result = {
        "session": str(args.session),
        "epochs": olivine.epochs,
        "training_tiles": len(ordered),
        "validation_tiles": len(validation),
        "scanned_px": scanned,
        "target_gain": target,
        "noise_iou": noise,
        "curve_points": points,
        "true_curve": {
            "a": round(curve.a, 4),
            "b": round(curve.b, 4),
            "c": curve.c,
            "rms": round(curve.residual, 4),
        },
        "true_flattening_px": round(flattens_px),
        "true_flattening_fraction": round(flattens_px / scanned, 4),
        "advices": advices,
        "enough_at_px": said,
        "enough_at_fraction": None if said is None else round(said / scanned, 4),
        "difference_fraction": None if said is None else round((said - flattens_px) / scanned, 4),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
