"""Memory and throughput of live stitching on a large session (the `section` preset).

Runs acquisition + stitching (`stitch_session`) over a finished session folder, sampling the
resident memory every 100 tiles, then acquisition alone on the same folder into another store;
stitching time is the difference. Prints one JSON object. Simulate the session first:

    .venv/bin/semlive simulate /tmp/section --preset section
    .venv/bin/python benchmarks/bench_stitch_memory.py /tmp/section
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from semlive.acquisition import Ingestor, TileReady
from semlive.settings import AcquisitionSettings, Settings
from semlive.streaming import stitch_session


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    session = Path(sys.argv[1])
    folder = Path(tempfile.mkdtemp(prefix="bench-stitch-mem-"))
    acquisition = AcquisitionSettings(
        observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
    )
    try:
        samples, tiles = [], 0
        started = time.perf_counter()
        for event in stitch_session(
            session, folder / "stitched", Settings(acquisition=acquisition)
        ):
            if isinstance(event, TileReady):
                tiles += 1
                if tiles % 100 == 0:
                    samples.append({"tiles": tiles, "rss_mb": round(rss_mb(), 1)})
        both = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        with Ingestor(session, folder / "ingest-only", acquisition) as ingestor:
            for _ in ingestor.run():
                pass
        ingest = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "benchmark": "streaming.stitch_memory",
                    "session": str(session),
                    "tiles": tiles,
                    "ingest_and_stitch_s": both,
                    "ingest_only_s": ingest,
                    "stitch_tiles_per_s": tiles / max(both - ingest, 1e-9),
                    "peak_rss_mb": peak,
                    "rss_every_100_tiles": samples,
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
