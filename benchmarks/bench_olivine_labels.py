"""Benchmark the olivine training labels against the virtual SEM's truth.

The EDS-rule labels of every EDS tile (what ``semlive train`` learns from), made with
``olivine.refine_px`` = 0 (the raw rule), 1, 2 and 3 (edges moved onto the BSE edges), scored
against the truth's olivine: IoU, the false positives and negatives, and how many of the false
negatives lie within 2 px of a crystal edge. Prints one JSON object.

    .venv/bin/python benchmarks/bench_olivine_labels.py [--session DIR] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_olivine import stitched  # run as a script: benchmarks/ is on sys.path
from scipy.ndimage import distance_transform_edt

from semlive.models import Confusion, confusion
from semlive.models.olivine import IGNORE, load_training_data
from semlive.settings import OlivineSettings
from semlive.streaming import truth_on_mosaic
from semlive.virtual_sem import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a simulated session (default: small, 0)")
    parser.add_argument("--store", type=Path, help="its stitched store, if already made")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-olivine-labels-"))
    session = args.session
    if session is None:
        session = work / "session"
        simulate(session, "small", seed=0)
    store = args.store
    if store is None or not (store / "mosaic.zarr").exists():
        store = store or work / "store"
        stitched(session, store)
    phase = truth_on_mosaic(store, session / "_truth", ("phase",))["phase"]
    olivine = phase == 1
    edge = distance_transform_edt(olivine) <= 2
    labels: dict[str, object] = {}
    for refine_px in (0, 1, 2, 3):
        started = time.perf_counter()
        data = load_training_data(store, OlivineSettings(refine_px=refine_px))
        total, fn_at_edge = Confusion(), 0
        for tile in data.train + data.validation:
            (r0, c0), (h, w) = tile.origin, tile.label.shape
            box = (slice(r0, r0 + h), slice(c0, c0 + w))
            valid = (tile.label != IGNORE) & (phase[box] != 255)
            label = tile.label == 1
            total = total + confusion(label, olivine[box], valid)
            fn_at_edge += int((valid & ~label & olivine[box] & edge[box]).sum())
        labels[f"refine_px={refine_px}"] = {
            **total.as_dict(),
            "fn_within_2px_of_an_edge": fn_at_edge,
            "seconds": round(time.perf_counter() - started, 1),
        }
    print(json.dumps({"session": str(session), "labels": labels}, indent=2))


if __name__ == "__main__":
    main()
