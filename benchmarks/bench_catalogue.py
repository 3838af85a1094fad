"""Benchmark: the crystal catalogue of a stitched store — time, peak memory, time per Gpx.

Usage::

    .venv/bin/python benchmarks/bench_catalogue.py --session SESSION --store STORE [...]

Each store is a stitched simulated session (``semlive stitch``; the ``section`` preset for the
issue's figure). With ``--labels truth`` (the default) the store's olivine mask is set to the
truth's olivine first and the store is calibrated (mg# map), so the catalogue is scored on its
own; with ``--labels store`` the store's own segmentation (``semlive segment``) is used. The
catalogue and every export run in a fresh process, so its peak RSS is the catalogue's own.
Prints one JSON object per store: seconds by phase, s/Gpx, the time for the paper's 1.5 Gpx
section, the peak RSS of the process and of its largest worker (``catalogue.workers``), and the
scores against the truth.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def truth_labels(store: Path, session: Path) -> None:
    """Replace the store's olivine mask by the truth's olivine, then recalibrate (mg# map)."""
    from semlive.calibration import calibrate_store
    from semlive.catalogue import use_truth_olivine
    from semlive.settings import CalibrationSettings

    use_truth_olivine(store, session / "_truth")
    calibrate_store(store, CalibrationSettings(), session)


def measure(store: Path, crops: bool) -> dict[str, object]:
    """Run in a fresh process: the catalogue and its exports, timed, with the peak RSS."""
    from semlive.catalogue import export_catalogue
    from semlive.settings import CatalogueSettings

    settings = CatalogueSettings(crops=crops)
    started = time.perf_counter()
    report = export_catalogue(store, settings)
    total = time.perf_counter() - started
    shape = report.catalogue.layers.shape
    return {
        "mosaic_px": shape[0] * shape[1],
        "crystals": len(report.catalogue.rows),
        "seconds": report.seconds,
        "seconds_total": total,
        "workers": report.catalogue.workers,
        "peak_rss_mb": _peak_rss_mb(),
        # the largest worker's peak (Linux counts what a child inherits at its fork, so this is
        # an upper bound)
        "peak_rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, it does not carry over
    the high-water mark of the process that started this one)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, action="append", required=True)
    parser.add_argument("--store", type=Path, action="append", required=True)
    parser.add_argument("--labels", choices=("truth", "store"), default="truth")
    parser.add_argument("--no-crops", action="store_true")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.store[0], not args.no_crops)))
        return
    import pyarrow.parquet as pq

    from semlive.catalogue import evaluate_catalogue

    for session, store in zip(args.session, args.store, strict=True):
        if args.labels == "truth":
            truth_labels(store, session)
        command = [sys.executable, __file__, "--measure", "--session", str(session)]
        command += ["--store", str(store)] + (["--no-crops"] if args.no_crops else [])
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        rows = pq.read_table(store / "catalogue" / "crystals.parquet").to_pylist()
        scores = evaluate_catalogue(store, session / "_truth", rows)
        catalogue_s = sum(
            v for k, v in figures["seconds"].items() if k in ("instances", "measure", "labels")
        )
        gpx = figures["mosaic_px"] / 1e9
        figures.update(
            {
                "store": str(store),
                "labels": args.labels,
                "catalogue_s_per_gpx": catalogue_s / gpx,
                "all_exports_s_per_gpx": figures["seconds_total"] / gpx,
                "minutes_for_1.5_gpx_catalogue": catalogue_s / gpx * 1.5 / 60,
                "minutes_for_1.5_gpx_with_exports": figures["seconds_total"] / gpx * 1.5 / 60,
                "scores": scores,
            }
        )
        print(json.dumps(figures, default=float))


if __name__ == "__main__":
    main()
