"""Benchmark olivine segmentation: inference and training throughput, and the accuracy reached.

For each architecture (default: the CPU default, DeepLabV3+-MobileNetV3-Large, and the GPU
default, DeepLabV3+-ResNet50, the paper's backbone): the network alone on 512² windows in
float32, float32 channels-last and bfloat16 autocast, each channels-last variant also with its
batch norms folded into the convolutions as inference prepares it on a CPU (Mpx/s);
sliding-window inference over a real stitched mosaic with the configured windows, once in
float32 with one view (the reference) and once as configured (``auto``: bfloat16 and two views
on a CPU with bfloat16) (Mpx/s, and the time a 1.5 Gpx thin section would take at that rate);
and, unless ``--no-train``, training by ``semlive train``'s code on a `small` session with its
throughput (Mpx/s of patches) and, for each of the two inferences, the IoU / OA reached against
the virtual SEM's truth on the tiles it never saw. Prints one JSON object.

    .venv/bin/python benchmarks/bench_olivine.py [--session DIR | --seed N] [--arch NAME ...]
        [--epochs N] [--no-train | --train-only NAME ...] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import torch

from semlive.calibration import drift_correction
from semlive.models import Runtime, build_network, choose_runtime
from semlive.models.olivine import OlivineSegmenter, evaluate_against_truth, train_olivine
from semlive.settings import AcquisitionSettings, OlivineSettings, Settings
from semlive.streaming import stitch_session
from semlive.virtual_sem import simulate

SECTION_GPX = 1.5


def network_rates(arch: str, device: str, repeats: int) -> dict[str, float]:
    """Mpx/s of the bare network on a batch of 2 × 512² windows, per arithmetic."""
    out = {}
    torch.manual_seed(0)
    base = build_network(arch).eval().to(device)
    x = torch.randn(2, 1, 512, 512, device=device)
    variants: list[tuple[str, bool | str, torch.dtype | None]] = [
        ("float32", False, None),
        ("float32_channels_last", True, None),
    ]
    variants.append(("bfloat16_autocast_channels_last", True, torch.bfloat16))
    if device == "cuda":
        variants.append(("float16_autocast", False, torch.float16))
    if device == "cpu":
        variants.append(("float32_folded_channels_last", "folded", None))
        variants.append(("bfloat16_autocast_folded_channels_last", "folded", torch.bfloat16))
    folded = Runtime(torch.device(device), "float32").prepare(base, inference=True)
    for name, channels_last, dtype in variants:
        model = base.to(memory_format=torch.channels_last) if channels_last else base
        model = folded if channels_last == "folded" else model
        xx = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with (
            torch.inference_mode(),
            torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None),
        ):
            model(xx)  # warm-up (kernel selection)
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(repeats):
                model(xx)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = (time.perf_counter() - started) / repeats
        out[name] = round(x.numel() / seconds / 1e6, 3)
    return out


def stitched(session: Path, store: Path) -> None:
    """Ingest and stitch a finished session with drift correction, as semlive does."""
    fast = AcquisitionSettings(
        observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
    )
    settings = Settings(acquisition=fast)
    for _ in stitch_session(
        session, store, settings, correction=drift_correction(settings.calibration)
    ):
        pass


def stitched_session(session: Path | None, seed: int, work: Path) -> tuple[Path, Path]:
    """The session (``small`` simulated with ``seed`` into ``work`` when none is given) and
    its store, stitched in ``work``."""
    if session is None:
        session = work / "session"
        simulate(session, "small", seed=seed)
    store = work / "store"
    stitched(session, store)
    return session, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a simulated session (default: small, seed 0)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the simulated `small` session (no --session)"
    )
    parser.add_argument("--arch", action="append", help="architecture(s) to measure")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: config)"
    )
    parser.add_argument("--no-train", action="store_true", help="throughput only")
    parser.add_argument(
        "--train-only",
        action="append",
        help="train (and score) only these architectures; the others: throughput only",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runtime = choose_runtime(args.device)
    device = runtime.device.type
    archs = args.arch or ["deeplabv3plus_mobilenet_v3_large", "deeplabv3plus_resnet50"]
    work = Path(tempfile.mkdtemp(prefix="bench-olivine-"))
    session, base_store = stitched_session(args.session, args.seed, work)
    result: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "session": str(session),
        "architectures": {},
    }
    for arch in archs:
        entry: dict[str, object] = {
            "network_mpx_per_s_512": network_rates(arch, device, args.repeats)
        }
        store = work / arch
        shutil.copytree(base_store, store)
        update: dict[str, object] = {"arch": arch, "device": device}
        if args.epochs is not None:
            update["epochs"] = args.epochs
        settings = OlivineSettings().model_copy(update=update)
        no_train = args.no_train or (args.train_only is not None and arch not in args.train_only)
        if no_train:
            settings = settings.model_copy(
                update={"epochs": 1, "patches_per_epoch": settings.batch_size}
            )
        started = time.perf_counter()
        card = train_olivine(store, settings, resume=False)
        entry["training"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "epochs_run": card.training["epochs_run"],
            "train_mpx_per_s": card.training["train_mpx_per_s"],
            "dlth": card.dlth,
            "validation_vs_eds": card.metrics["validation"],
        }
        reference = settings.model_copy(update={"precision": "float32", "views": 1})
        for label, inference in (("float32_one_view", reference), ("configured", settings)):
            segmenter = OlivineSegmenter(store, inference)
            started = time.perf_counter()
            results = segmenter.segment_store()
            seconds = time.perf_counter() - started
            mpx = sum((r[2] - r[0]) * (r[3] - r[1]) for r in (x.bounds for x in results)) / 1e6
            rate = mpx / seconds
            run: dict[str, object] = {
                "window_px": settings.window_px,
                "overlap_px": settings.overlap_px,
                "precision": segmenter.runtime.precision,
                "views": segmenter.views,
                "mosaic_mpx": round(mpx, 2),
                "seconds": round(seconds, 2),
                "mpx_per_s": round(rate, 3),
                "section_1.5_gpx_minutes": round(SECTION_GPX * 1e3 / rate / 60, 1),
            }
            if not no_train:
                truth = evaluate_against_truth(store, session / "_truth")
                assert truth is not None
                run["accuracy_unseen_tiles_vs_truth"] = {
                    "iou": round(truth["overall"]["iou"], 4),
                    "overall_accuracy": round(truth["overall"]["overall_accuracy"], 5),
                    "clinopyroxene_as_olivine": round(truth["clinopyroxene_as_olivine"], 4),
                    "pixels": truth["overall"]["pixels"],
                }
            entry[f"sliding_window_{label}"] = run
        result["architectures"][arch] = entry  # type: ignore[index]
        print(json.dumps({arch: entry}), flush=True)
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
