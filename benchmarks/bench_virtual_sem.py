"""Benchmark the virtual SEM: wall time and peak memory of `semlive simulate` per preset.

Each preset runs in its own process (so peak RSS is that run's alone) at full speed
(no pacing), into a temporary folder that is removed afterwards. Prints one JSON object.

    .venv/bin/python benchmarks/bench_virtual_sem.py [--presets tiny small section]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from semlive.virtual_sem import simulate
t = time.perf_counter()
s = simulate(sys.argv[1], sys.argv[2], seed=0)
print(json.dumps({"seconds": time.perf_counter() - t, "files": s.files, "tiles": s.tiles,
                  "eds_tiles": s.eds_tiles, "olivine_crystals": s.crystals,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(preset: str) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-"))
    try:
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder / "s"), preset],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["process_seconds"] = time.perf_counter() - started
        size = sum(p.stat().st_size for p in (folder / "s").rglob("*") if p.is_file())
        result["session_mb"] = size / 2**20
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small", "section"])
    args = parser.parse_args()
    report = {
        "benchmark": "virtual_sem.simulate",
        "cpu_count": __import__("os").cpu_count(),
        "presets": {p: run(p) for p in args.presets},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
