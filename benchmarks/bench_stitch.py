"""Benchmark stitching against ASHLAR and m2stitch (MIST) on the same simulated tiles.

Prints one JSON object: placement error against the virtual SEM's truth (RMS over all tiles,
after removing the common offset, in pixels) and wall time of each method, with the ratios, and
semlive's incremental throughput (tiles/s: registration, placement, mosaic writes and re-solves,
tiles fed as they would arrive). The peers run in their own environment:

    python3 -m venv .venv-peers && .venv-peers/bin/pip install ashlar m2stitch
    .venv/bin/python benchmarks/bench_stitch.py --peer-python .venv-peers/bin/python \\
        [--preset small]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from semlive.acquisition import Ingestor, Ledger, SessionOpened, TileReady
from semlive.settings import AcquisitionSettings, StreamingSettings
from semlive.streaming import Stitcher
from semlive.virtual_sem import simulate


def rms_error_px(
    centres: dict[str, tuple[float, float]],
    truth: dict[str, tuple[float, float]],
    pixel_size_um: float,
) -> float:
    d = np.array([np.subtract(centres[t], truth[t]) for t in truth]) / pixel_size_um
    d -= d.mean(axis=0)
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def ours(session: Path, folder: Path) -> tuple[dict[str, tuple[float, float]], dict[str, float]]:
    settings = AcquisitionSettings(
        observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
    )
    with Ingestor(session, folder / "ingest", settings) as ingestor:
        events = list(ingestor.run())
    info = next(e.session for e in events if isinstance(e, SessionOpened))
    tiles = [e for e in events if isinstance(e, TileReady)]
    ledger = Ledger(folder / "store" / "ledger.sqlite")
    stitcher = Stitcher(folder / "store", info, ledger, StreamingSettings())
    started = time.perf_counter()
    for event in tiles:
        stitcher.add(event)
    stitcher.finish()
    seconds = time.perf_counter() - started
    ledger.close()
    placed = {k: (y, x) for k, (x, y) in stitcher.placements_um().items()}
    return placed, {
        "seconds": seconds,
        "tiles_per_s": len(tiles) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def peers(session: Path, python: str | None) -> dict[str, object]:
    if not python or not Path(python).exists():
        return {"skipped": "no --peer-python environment with ashlar and m2stitch"}
    script = Path(__file__).with_name("_stitch_peers.py")
    out = subprocess.run(
        [python, str(script), str(session)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peer-python", default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-stitch-"))
    try:
        session = folder / "session"
        simulate(session, args.preset, seed=args.seed)
        with open(session / "_truth" / "tiles.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        truth = {r["tile"]: (float(r["true_y_um"]), float(r["true_x_um"])) for r in rows}
        nominal = {r["tile"]: (float(r["nominal_y_um"]), float(r["nominal_x_um"])) for r in rows}
        px = json.loads((session / "session.json").read_text())["pixel_size_um"]
        placed, timing = ours(session, folder)
        report: dict[str, object] = {
            "benchmark": "streaming.stitch",
            "preset": args.preset,
            "tiles": len(truth),
            "stage_only_error_px": rms_error_px(nominal, truth, px),
            "semlive": {"error_px": rms_error_px(placed, truth, px), **timing},
        }
        others = peers(session, args.peer_python)
        for name in ("ashlar", "m2stitch"):
            entry = others.get(name) if isinstance(others, dict) else None
            if isinstance(entry, dict) and "centres_yx_um" in entry:
                centres = dict(
                    zip(others["tiles"], map(tuple, entry["centres_yx_um"]), strict=True)
                )  # type: ignore[call-overload]
                error = rms_error_px(centres, truth, px)
                report[name] = {
                    "error_px": error,
                    "seconds": entry["seconds"],
                    "error_ratio_semlive_over_peer": report["semlive"]["error_px"] / error,  # type: ignore[index]
                    "time_ratio_semlive_over_peer": timing["seconds"] / entry["seconds"],
                }
            else:
                report[name] = entry or others
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
