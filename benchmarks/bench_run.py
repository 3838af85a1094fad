"""`semlive run` end to end: real-time factor, peak memory, latency (prints JSON).

Two ways:

- on a finished session (``--session DIR``, e.g. one written by ``semlive simulate OUT --preset
  section --instant``): the run processes it as fast as it can; the real-time factor is its wall
  time over the session's acquisition time (from ``_truth/writer_log.jsonl``, what a real SEM
  would take); the goal of issue 10 is ≤ 0.1 and ≤ 2 GB on the ``section`` preset;
- live (``--simulate PRESET --speed X``): the virtual SEM writes the session at X× real time
  while the run goes on beside it; the figures of interest are the tile latency (arrival →
  labels written, once a model exists) and how long after DONE the run ends.

Peak memory is the largest sum of resident memory over the run's process tree (the run, the
catalogue's worker processes), sampled every 0.5 s from /proc; ``peak_rss_main_gb`` is the run's
own process, and ``peak_during`` the jobs running (from the last status line) at each peak.

    .venv/bin/python benchmarks/bench_run.py --session /tmp/section --store /tmp/section-run
    .venv/bin/python benchmarks/bench_run.py --simulate small --speed 20 --config fast.toml
    .venv/bin/python benchmarks/bench_run.py --simulate small --speed 20 --sample-session 1 \
        --config start.toml   # [pipeline] start_model = an earlier session's models/olivine
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes of ``pid`` and all its descendants, and of ``pid`` alone."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    total, own, todo = 0, 0, [pid]
    page = os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as handle:
                rss = int(handle.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            rss = 0
        total += rss
        own = rss if p == pid else own
        todo += children.get(p, [])
    return total, own


def _acquisition_s(session: Path) -> float | None:
    log = session / "_truth" / "writer_log.jsonl"
    if not log.is_file():
        return None
    hours = [json.loads(line)["acquired_hours"] for line in log.read_text().splitlines()]
    return max(hours) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a finished session folder")
    parser.add_argument("--simulate", help="simulate this preset live instead (tiny, small, ...)")
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sample-session",
        type=int,
        default=0,
        help="with --simulate: the session number of the sample (1 = 20 days after 0; give "
        "session 0's model as pipeline.start_model in --config to measure tile latency)",
    )
    parser.add_argument("--store", type=Path, help="store folder (default: a temporary one)")
    parser.add_argument("--config", type=Path)
    parser.add_argument("--dask", help="run the jobs on Dask (an address, or local)")
    parser.add_argument(
        "--status-log",
        type=Path,
        help="write every status line of the run here, with the process tree's resident "
        "memory (tree_rss_gb) at that moment: a timeline of jobs and memory",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    simulator = None
    if args.simulate:
        session = work / "session"
        pace = ["--preset", args.simulate, "--seed", str(args.seed), "--speed", str(args.speed)]
        pace += ["--session", str(args.sample_session)]
        simulator = subprocess.Popen(
            [sys.executable, "-m", "semlive", "simulate", str(session), *pace],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not (session / "session.json").is_file():
            time.sleep(0.1)
    else:
        session = args.session
    store = args.store or work / "store"
    if store.exists():
        shutil.rmtree(store)
    command = [sys.executable, "-m", "semlive", "run", str(session), "--store", str(store)]
    command += ["--headless", "--exit-when-done"]
    if args.config:
        command += ["--config", str(args.config)]
    if args.dask:
        command += ["--dask", args.dask]
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    peak = {"tree": 0, "main": 0}
    peak_during: dict[str, list[str]] = {}
    running: list[list[str]] = [[]]  # the jobs of the last status line
    done_at: list[float] = []

    def sample() -> None:
        while process.poll() is None:
            for name, rss in zip(("tree", "main"), _tree_rss(process.pid), strict=True):
                if rss > peak[name]:
                    peak[name], peak_during[name] = rss, running[0]
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    last: dict = {}
    status_log = None if args.status_log is None else args.status_log.open("w")
    assert process.stdout is not None
    for line in process.stdout:
        try:
            last = json.loads(line)
        except ValueError:
            continue
        if status_log is not None:
            tree, own = _tree_rss(process.pid)
            rss = {"tree_rss_gb": round(tree / 2**30, 3), "main_rss_gb": round(own / 2**30, 3)}
            status_log.write(json.dumps({**last, **rss}) + "\n")
        lanes = (last.get("lanes") or {}).values()
        running[0] = [f"{r['kind']} {r['key']}" for lane in lanes if (r := lane.get("running"))]
        if last.get("session", {}).get("sem_done") and not done_at:
            done_at.append(time.monotonic())
    code = process.wait()
    if status_log is not None:
        status_log.close()
    wall = time.monotonic() - started
    sampler.join()
    if simulator is not None:
        simulator.wait()
    acquisition = _acquisition_s(session)
    db = sqlite3.connect(store / "ledger.sqlite")
    try:
        by_kind = {
            kind: {"jobs": n, "seconds": round(s or 0.0, 1)}
            for kind, n, s in db.execute(
                "SELECT kind, count(*), sum(seconds) FROM jobs GROUP BY kind"
            )
        }
        tiles = db.execute("SELECT count(*) FROM placements").fetchone()[0]
    finally:
        db.close()
    seg = last.get("segmentation", {})
    out = {
        "session": str(session),
        "live_speed": args.speed if args.simulate else None,
        "executor": "dask" if args.dask else "local",
        "exit_code": code,
        "tiles": tiles,
        "wall_s": round(wall, 1),
        "acquisition_s": None if acquisition is None else round(acquisition, 1),
        "real_time_factor": None if not acquisition else round(wall / acquisition, 4),
        "after_done_s": None if not done_at else round(time.monotonic() - done_at[0], 1),
        "peak_rss_gb": round(peak["tree"] / 2**30, 3),
        "peak_rss_main_gb": round(peak["main"] / 2**30, 3),
        "peak_during": peak_during,
        "cpu_s": last.get("system", {}).get("cpu_seconds"),
        "jobs": by_kind,
        "tile_latency_s": seg.get("tile_latency_s"),
        "region_latency_s": seg.get("region_latency_s"),
        "model": seg.get("model"),
        "crystals": (last.get("catalogue") or {}).get("crystals"),
        "advice": (last.get("advice") or {}).get("message"),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
