"""Benchmark: GDLS on the real Bruker hypermaps in ../shared/data/real, a subsampled grid as
the sparse points.

Usage::

    .venv/bin/python benchmarks/bench_gdls_real.py [--data ../shared/data/real] [--step 1 2 3]

For each hypermap and step: the number of segments and points, the time, the phases by area
(each segment's summed spectrum matched to the mineral library) and, as a reference GDLS has no
access to, k-means (k = 4) on every pixel's full spectrum: the adjusted Rand index between the
GDLS segments' phases and the k-means clusters over the pixels, and each cluster's main GDLS
phase. Prints one JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

FILES = ("chevkinite-30x30.bcf", "P45-silicate.bcf")


def main() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from semlive.acquisition._field import read_field
    from semlive.models.gdls import (
        coarse_bins,
        phase_areas,
        phase_library,
        segment_field,
        segment_table,
        to_band,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/real"))
    parser.add_argument("--step", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--min-points", type=int, default=5)
    args = parser.parse_args()
    library = phase_library(20.0)
    for name in FILES:
        dense = read_field(args.data / name, step=1)
        band = to_band(dense.counts, dense.channel_offset_ev, dense.channel_width_ev)
        shape = coarse_bins(band)
        features = np.sqrt(shape / np.maximum(shape.sum(axis=1, keepdims=True), 1))
        clusters = KMeans(4, n_init=10, random_state=0).fit_predict(features)
        for step in args.step:
            field = read_field(args.data / name, step=step)
            started = time.perf_counter()
            result = segment_field(
                field.bse, field.rows, field.cols, field.counts, field.channel_offset_ev,
                field.channel_width_ev, min_points=args.min_points,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            table = segment_table(result, field.bse, library)
            phase_of = dict(zip(table["segment"].tolist(), table["phase"].tolist(), strict=True))
            labels = result.labels.ravel()[dense.rows * field.bse.shape[1] + dense.cols]
            phases = np.array([phase_of.get(int(k), "") for k in labels])
            covered = labels > 0
            per_cluster: dict[str, Any] = {}
            for k in range(4):
                inside = covered & (clusters == k)
                names, counts = np.unique(phases[inside], return_counts=True)
                per_cluster[f"cluster {k} ({int((clusters == k).sum())} px)"] = (
                    {"main_phase": str(names[counts.argmax()]),
                     "share": round(float(counts.max() / counts.sum()), 3)}
                    if len(counts) else {}
                )  # fmt: skip
            report = {
                "file": name,
                "step": step,
                "points": len(field.rows),
                "counts_per_point": round(float(np.asarray(field.counts).sum(axis=1).mean()), 1),
                "segments": len(table["segment"]),
                "seconds": round(seconds, 3),
                "phases_by_area": [
                    {
                        "phase": p,
                        "share": round(px / max(int(table["pixels"].sum()), 1), 3),
                        "segments": n,
                        "mixed_share": round(mixed / px, 3),
                    }
                    for p, px, n, mixed in phase_areas(table)
                ],
                "kmeans_ari": round(
                    float(adjusted_rand_score(clusters[covered], phases[covered])), 3
                ),
                "kmeans_clusters": per_cluster,
            }
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
