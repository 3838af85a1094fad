"""Benchmark: GDLS on simulated fields against the TIMA-like watershed, quality and time.

Usage::

    .venv/bin/python benchmarks/bench_gdls.py --keras PATH/gdls-embedding.h5 [--kind garnet ...]

For each field kind (``semlive.virtual_sem`` fields: 500×500 BSE, EDS points every 3 px at
1,000 counts, about 28,000 points): GDLS with semlive's embedding (the watershed dense
labelling, the default, and the authors' random walker), GDLS with the published embedding
(semlive's graph and merge; and the authors' method as published: τ_z 0.5, no triangle
support, speck or region merging, random walker), and the TIMA-like watershed over a range of
thresholds, each scored against the truth (ASA, undersegmentation error, boundary recall and
precision, K) with its time. Prints one JSON object per field.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main() -> None:
    from semlive.models.baselines import tima_watershed
    from semlive.models.gdls import (
        load_embedding,
        load_keras_embedding,
        segment_field,
        segmentation_scores,
    )
    from semlive.virtual_sem._fields import FIELD_KINDS, simulate_field

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras", type=Path, required=True)
    parser.add_argument("--kind", action="append", choices=FIELD_KINDS)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    embeddings = {"ours": load_embedding()[0], "published": load_keras_embedding(args.keras)}
    for kind in args.kind or list(FIELD_KINDS):
        field = simulate_field(kind, seed=args.seed)
        offset, width = field.detector.channel_offset_ev, field.detector.channel_width_ev
        result: dict[str, object] = {
            "kind": kind,
            "shape": list(field.bse.shape),
            "points": len(field.rows),
            "truth_regions": int(field.truth.max()),
        }
        authors = {
            "method": "random_walker",
            "tau_z": 0.5,
            "support": 0,
            "min_points": 1,
            "tau_g": None,
        }
        runs: list[tuple[str, str, dict[str, Any]]] = [
            ("gdls_ours_watershed", "ours", {}),
            ("gdls_ours_random_walker", "ours", {"method": "random_walker"}),
            ("gdls_published_watershed", "published", {}),
            ("gdls_published_as_published", "published", authors),
        ]
        for label, name, options in runs:
            started = time.perf_counter()
            gdls = segment_field(
                field.bse, field.rows, field.cols, field.spectra, offset, width,
                embeddings[name], **options,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            result[label] = {
                **segmentation_scores(gdls.labels, field.truth),
                "seconds": seconds,
                "seconds_by_step": gdls.seconds,
            }
        sweep = []
        for threshold in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
            started = time.perf_counter()
            labels = tima_watershed(
                field.bse, field.rows, field.cols, field.spectra, offset, width, threshold
            )
            seconds = time.perf_counter() - started
            scores = segmentation_scores(labels, field.truth)
            sweep.append({"threshold": threshold, **scores, "seconds": seconds})
        result["tima_watershed"] = sweep
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
