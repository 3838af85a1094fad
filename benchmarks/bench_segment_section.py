"""Benchmark whole-mosaic olivine segmentation at thin-section scale.

Stitches a session (default: the `section` preset, 1,200 tiles, simulated once) with drift
correction, puts a model in its store (copied from ``--models`` — a store's ``models/`` folder —
or else trained for one short epoch), and times
``OlivineSegmenter.segment_store()`` with the configured windows. Prints one JSON object:
mosaic and scanned Mpx, seconds, Mpx/s, the minutes a 1.5 Gpx thin section would take at that
rate, and peak RSS.

    .venv/bin/python benchmarks/bench_segment_section.py [--session DIR] [--store DIR]
        [--models STORE/models] [--precision float32|bfloat16] [--views 1|2|4]

``--precision`` and ``--views`` override ``olivine.precision`` and ``olivine.views`` (default:
auto, as configured): the float32 one-view reference against the default, in the same run.

Give ``--models`` a trained model (``semlive train`` on any `small` store will do): the outline
grows crystals over the pixels the network gives at least 0.02 and the crystal check judges the
crystals, so their cost follows what the network finds. The one-epoch model finds "maybe"
everywhere (2026-12-07: 0.43 Mpx/s, 58 min a section, against 1.04 Mpx/s, 24 min, with a trained
model on the same store).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bench_olivine import stitched  # run as a script: benchmarks/ is on sys.path

from semlive.models.olivine import OlivineSegmenter, train_olivine
from semlive.settings import OlivineSettings
from semlive.virtual_sem import simulate

SECTION_GPX = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a session (default: simulate `section`)")
    parser.add_argument("--store", type=Path, help="a stitched store to reuse")
    parser.add_argument("--models", type=Path, help="a models/ folder holding `olivine`")
    parser.add_argument("--precision", choices=["auto", "float32", "bfloat16"], default="auto")
    parser.add_argument("--views", choices=["auto", "1", "2", "4"], default="auto")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-segment-"))
    result: dict[str, object] = {}
    store = args.store
    if store is None or not (store / "mosaic.zarr").exists():
        session = args.session
        if session is None:
            session = work / "session"
            simulate(session, "section", seed=0)
        store = store or work / "store"
        started = time.perf_counter()
        stitched(session, store)
        result["stitch_seconds"] = round(time.perf_counter() - started, 1)
    views = args.views if args.views == "auto" else int(args.views)
    settings_olivine = OlivineSettings(precision=args.precision, views=views)
    if not (store / "models" / "olivine").exists():
        if args.models is not None:
            shutil.copytree(args.models, store / "models", dirs_exist_ok=True)
        else:  # untrained: the outline's and the check's share is not a trained model's
            quick = settings_olivine.model_copy(update={"epochs": 1, "patches_per_epoch": 8})
            train_olivine(store, quick)
    segmenter = OlivineSegmenter(store, settings_olivine)
    started = time.perf_counter()
    blocks = segmenter.segment_store()
    seconds = time.perf_counter() - started
    mosaic = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (r.bounds for r in blocks)) / 1e6
    scanned = sum(r.scanned_px for r in blocks) / 1e6
    rate = mosaic / seconds
    result.update(
        {
            "architecture": segmenter.card.architecture,
            "device": segmenter.runtime.device.type,
            "precision": segmenter.runtime.precision,
            "views": segmenter.views,
            "window_px": settings_olivine.window_px,
            "overlap_px": settings_olivine.overlap_px,
            "blocks": len(blocks),
            "mosaic_mpx": round(mosaic, 1),
            "scanned_mpx": round(scanned, 1),
            "seconds": round(seconds, 1),
            "mpx_per_s": round(rate, 3),
            "section_1.5_gpx_minutes": round(SECTION_GPX * 1e3 / rate / 60, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
    )
    print(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
