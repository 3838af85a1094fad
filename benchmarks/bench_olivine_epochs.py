"""Benchmark how much olivine's accuracy on unseen tiles depends on the epoch training ends at.

Trains once by `semlive train`'s code on a `small` session and keeps the network of each of the
last ``--last`` epochs (the resumable state each epoch writes, ``training/state.safetensors``).
For each of them: dlth, the outline and the crystal check fitted on the EDS tiles as training
fits them (:func:`fit_segmentation`), the mosaic segmented as `semlive segment` segments it,
and the IoU / OA against the virtual SEM's truth on the tiles it never saw; beside them, the
validation loss and IoU training saw for that epoch, and the model training keeps (the last
epoch, refit on all EDS tiles). The spread over epochs whose validation figures barely differ
is the noise any single training's figure carries. Prints one JSON object.

    .venv/bin/python benchmarks/bench_olivine_epochs.py [--session DIR | --seed N]
        [--epochs N] [--last K]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from bench_olivine import stitched_session
from safetensors.torch import load_file, save_file

from semlive.models import build_network, choose_runtime, save_model
from semlive.models.olivine import (
    OlivineSegmenter,
    TrainProgress,
    evaluate_against_truth,
    fit_segmentation,
    load_training_data,
    train_olivine,
)
from semlive.settings import OlivineSettings


def scored(store: Path, truth: Path, settings: OlivineSettings, name: str) -> dict[str, float]:
    OlivineSegmenter(store, settings, name).segment_store()
    result = evaluate_against_truth(store, truth)
    assert result is not None
    return {
        "iou": round(result["overall"]["iou"], 4),
        "oa": round(result["overall"]["overall_accuracy"], 4),
        "cpx_as_olivine": round(result["clinopyroxene_as_olivine"], 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a simulated session (default: small)")
    parser.add_argument("--seed", type=int, default=0, help="the simulated session's seed")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    parser.add_argument("--last", type=int, default=10, help="epochs kept and scored")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-olivine-epochs-"))
    try:
        session, store = stitched_session(args.session, args.seed, work)
        settings = OlivineSettings(epochs=args.epochs)
        data = load_training_data(store, settings)
        state = store / "models" / "olivine" / "training" / "state.safetensors"
        snapshots = work / "snapshots"
        snapshots.mkdir()
        first = args.epochs - args.last + 1

        def keep(p: TrainProgress) -> None:  # called once per epoch with its validation loss
            if p.val_loss is not None and p.epoch >= first:
                weights = {k: v for k, v in load_file(str(state)).items() if k[:6] == "model."}
                save_file(weights, str(snapshots / f"{p.epoch}.safetensors"))

        started = time.perf_counter()
        card = train_olivine(store, settings, progress=keep, resume=False, data=data)
        train_s = time.perf_counter() - started
        truth = session / "_truth"
        runtime = choose_runtime(settings.device, "float32")  # as training fits
        history = {int(h["epoch"]): h for h in card.metrics["history"]}
        rows = []
        for epoch in range(first, args.epochs + 1):
            tensors = load_file(str(snapshots / f"{epoch}.safetensors"))
            network = build_network(card.architecture)
            network.load_state_dict(
                {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
            )
            network = runtime.prepare(network).eval()
            fitted = fit_segmentation(network, data, card.normalisation, settings, runtime)
            snapshot = replace(
                card,
                dlth=fitted.dlth,
                outline=fitted.outline.as_dict(),
                crystal_check=fitted.check.as_dict() if fitted.check.max_core_std_dn else {},
            )
            save_model(store / "models" / "snapshot", network, snapshot)
            row = {
                "epoch": epoch,
                "val_loss": round(history[epoch]["val_loss"], 4),
                "val_iou_at_0.5": round(history[epoch]["val_iou"], 4),
                "dlth": fitted.dlth,
                **scored(store, truth, settings, "snapshot"),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        ious = [r["iou"] for r in rows]
        lowest = min(rows, key=lambda r: r["val_loss"])
        print(
            json.dumps(
                {
                    "benchmark": "olivine_epochs",
                    "session": str(session),
                    "device": runtime.device.type,
                    "torch": torch.__version__,
                    "epochs": args.epochs,
                    "train_s": round(train_s, 1),
                    "architecture": card.architecture,
                    "epochs_scored": rows,
                    "unseen_iou": {
                        "min": min(ious),
                        "max": max(ious),
                        "mean": round(statistics.fmean(ious), 4),
                        "sd": round(statistics.stdev(ious), 4) if len(ious) > 1 else 0.0,
                    },
                    "epoch_of_lowest_val_loss": {"epoch": lowest["epoch"], "iou": lowest["iou"]},
                    "kept": {
                        "what": "last epoch, refit on all EDS tiles",
                        "refit_epochs": settings.refit_epochs,
                        **scored(store, truth, settings, "olivine"),
                    },
                },
                indent=1,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
