"""Benchmark acquisition: ingest throughput and the delay from a tile's close to TileReady.

1. Throughput: ingest a finished `small` session folder (every file) into a new store.
2. Latency: the virtual SEM writes a `small` session at --speed 50 while the ingestor watches
   it with the default settings (1 s rescans, 2 settle polls), once with file-system events and
   once with polling alone; the delay of each tile is the time TileReady was emitted minus the
   modification time of its sidecar (the last file of the tile).

    .venv/bin/python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from semlive.acquisition import Ingestor, TileReady
from semlive.settings import AcquisitionSettings
from semlive.virtual_sem import simulate


def throughput(folder: Path) -> dict[str, float]:
    session = folder / "finished"
    simulate(session, "small", seed=0)
    files = sum(1 for p in session.rglob("*") if p.is_file() and "_truth" not in p.parts)
    settings = AcquisitionSettings(
        observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
    )
    started = time.perf_counter()
    with Ingestor(session, folder / "store-finished", settings) as ingestor:
        list(ingestor.run())
    seconds = time.perf_counter() - started
    return {"files": files, "seconds": seconds, "files_per_s": files / seconds}


def latency(folder: Path, observer: str, speed: float) -> dict[str, float]:
    session = folder / f"live-{observer}"
    writer = threading.Thread(target=simulate, args=(session, "small", 0), kwargs={"speed": speed})
    writer.start()
    while not session.exists():
        time.sleep(0.01)
    delays = []
    settings = AcquisitionSettings(observer=observer)
    with Ingestor(session, folder / f"store-{observer}", settings) as ing:
        for event in ing.run():
            if isinstance(event, TileReady):
                sidecar = session / "tiles" / f"{event.sidecar.tile}.json"
                delays.append(time.time() - sidecar.stat().st_mtime)
    writer.join()
    d = np.array(delays)
    return {
        "tiles": len(d),
        "median_s": float(np.median(d)),
        "p95_s": float(np.percentile(d, 95)),
        "max_s": float(d.max()),
    }


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        report = {
            "benchmark": "acquisition.ingest",
            "throughput_finished_small": throughput(folder),
            "latency_small_speed50_events": latency(folder, "auto", 50.0),
            "latency_small_speed50_polling": latency(folder, "polling", 50.0),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
