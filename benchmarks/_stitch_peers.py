"""Run ASHLAR's EdgeAligner and m2stitch (MIST) on a session's tiles; print JSON positions.

Runs in the peers' own environment (they pin other library versions than semlive):
    python3 -m venv .venv-peers && .venv-peers/bin/pip install ashlar m2stitch
    .venv-peers/bin/python benchmarks/_stitch_peers.py SESSION
Positions are tile centres in stage µm minus an arbitrary common offset.
"""

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import tifffile


def load(session):
    with open(session / "_truth" / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["tile"] for r in rows]
    images = [tifffile.imread(session / "tiles" / f"{n}.tif") for n in names]
    nominal = np.array([[float(r["nominal_y_um"]), float(r["nominal_x_um"])] for r in rows])
    grid = np.array([[int(r["row"]), int(r["col"])] for r in rows])
    meta = json.loads((session / "session.json").read_text())
    return names, images, nominal, grid, meta["pixel_size_um"]


def run_ashlar(images, nominal, pixel_size):
    from ashlar import reg

    shape = np.array(images[0].shape)
    pixel_size_ = pixel_size

    class Metadata(reg.Metadata):
        _num_images = len(images)
        num_channels = 1
        pixel_size = pixel_size_
        pixel_dtype = images[0].dtype

        def tile_position(self, i):
            return nominal[i] / pixel_size - (shape - 1) / 2

        def tile_size(self, i):
            return shape

    class Reader(reg.Reader):
        metadata = Metadata()

        def read(self, series, c):
            return images[series]

    started = time.perf_counter()
    aligner = reg.EdgeAligner(
        Reader(), channel=0, max_shift=32, filter_sigma=0, do_make_thumbnail=False
    )
    aligner.run()
    seconds = time.perf_counter() - started
    centres = (aligner.positions + (shape - 1) / 2) * pixel_size
    return centres, seconds


def run_m2stitch(images, grid):
    import m2stitch

    started = time.perf_counter()
    result, _ = m2stitch.stitch_images(
        np.array(images),
        rows=list(grid[:, 0]),
        cols=list(grid[:, 1]),
        row_col_transpose=False,
        ncc_threshold=0.1,
    )  # its default 0.5 finds no pair here
    seconds = time.perf_counter() - started
    shape = np.array(images[0].shape)
    corners = result[["y_pos", "x_pos"]].to_numpy(dtype=float)
    return corners + (shape - 1) / 2, seconds


def main():
    session = Path(sys.argv[1])
    names, images, nominal, grid, pixel_size = load(session)
    out = {"tiles": names}
    for name, runner in (
        ("ashlar", lambda: run_ashlar(images, nominal, pixel_size)),
        ("m2stitch", lambda: run_m2stitch(images, grid)),
    ):
        try:
            centres, seconds = runner()
            out[name] = {"centres_yx_um": centres.tolist(), "seconds": seconds}
        except Exception as exc:  # a peer failing is a result to report, not a crash
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
