"""The mosaic writer: OME-Zarr 0.5 (zarr v3) multiscale images in ``STORE/mosaic.zarr``.

``bse/`` holds level 0 at full resolution and 2× mean-downsampled levels, axes (y, x) in
micrometres; level 0's translation is the stage position of pixel (0, 0)'s centre, so pixel
(r, c) sits at stage (tx + s·c, ty + s·r) (Contract 2). Tiles are fused by nearest centre: each
mosaic pixel takes the value of the placed tile whose centre is nearest, so there is no blending
ghost; tiles are placed at whole pixels (their sub-pixel placement is kept in the ledger). Every
write covers whole chunks, and only the pyramid chunks above changed chunks are recomputed. The
arrays are allocated from the plan with a margin and stay sparse on disk until written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MosaicGeometry", "MosaicWriter", "TileOnMosaic"]

CHUNK = 512


@dataclass(frozen=True, slots=True)
class MosaicGeometry:
    shape: tuple[int, int]  # rows, cols of level 0
    origin_um: tuple[float, float]  # stage x, y of level-0 pixel (0, 0)'s centre
    pixel_size_um: float
    levels: int

    def multiscales(self, name: str) -> dict[str, Any]:
        s, (tx, ty) = self.pixel_size_um, self.origin_um
        datasets = []
        for k in range(self.levels):
            f = 2**k
            shift = s * (f - 1) / 2  # a level-k pixel is the mean of f×f level-0 pixels
            datasets.append(
                {
                    "path": str(k),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [s * f, s * f]},
                        {"type": "translation", "translation": [ty + shift, tx + shift]},
                    ],
                }
            )
        axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in ("y", "x")]
        return {"name": name, "axes": axes, "datasets": datasets}


@dataclass(frozen=True, slots=True)
class TileOnMosaic:
    """A placed tile: its level-0 pixel (0, 0) at mosaic (row, col); centre for fusion."""

    name: str
    row: int
    col: int
    shape: tuple[int, int]
    centre: tuple[float, float]

    def box(self) -> tuple[int, int, int, int]:
        return self.row, self.col, self.row + self.shape[0], self.col + self.shape[1]


class MosaicWriter:
    """The one writer of ``mosaic.zarr``'s BSE image (one process writes a store)."""

    def __init__(self, path: Path, geometry: MosaicGeometry, dtype: str = "uint16") -> None:
        import zarr

        self.geometry = geometry
        self.root: Any = zarr.open_group(str(path), mode="a", zarr_format=3)
        self.bse: Any
        if "bse" in self.root:  # a restart: the mosaic keeps the geometry it was made with
            self.bse = self.root["bse"]
            self.geometry = _geometry_of(self.bse)
        else:
            self.bse = self.root.create_group("bse")
            shape = geometry.shape
            for k in range(geometry.levels):
                self.bse.create_array(
                    str(k),
                    shape=shape,
                    chunks=(CHUNK, CHUNK),
                    dtype=dtype,
                    fill_value=0,
                    dimension_names=["y", "x"],
                )
                shape = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
            self.bse.attrs["ome"] = {"version": "0.5", "multiscales": [geometry.multiscales("bse")]}
        self.levels: list[Any] = [self.bse[str(k)] for k in range(self.geometry.levels)]

    def chunks_of(self, tiles: Iterable[TileOnMosaic]) -> set[tuple[int, int]]:
        found = set()
        rows, cols = self.geometry.shape
        for t in tiles:
            r0, c0, r1, c1 = t.box()
            for cy in range(max(r0, 0) // CHUNK, (min(r1, rows) - 1) // CHUNK + 1):
                for cx in range(max(c0, 0) // CHUNK, (min(c1, cols) - 1) // CHUNK + 1):
                    found.add((cy, cx))
        return found

    def fuse(
        self,
        chunks: set[tuple[int, int]],
        tiles: list[TileOnMosaic],
        image_of: Callable[[str], NDArray[np.generic]],
    ) -> None:
        """Rewrite whole level-0 chunks from the tiles over them, then their pyramid."""
        for cy, cx in sorted(chunks):
            self._fuse_chunk(cy, cx, tiles, image_of)
        self._pyramid(chunks)

    def _fuse_chunk(
        self,
        cy: int,
        cx: int,
        tiles: list[TileOnMosaic],
        image_of: Callable[[str], NDArray[np.generic]],
    ) -> None:
        rows, cols = self.geometry.shape
        r0, c0 = cy * CHUNK, cx * CHUNK
        r1, c1 = min(r0 + CHUNK, rows), min(c0 + CHUNK, cols)
        block = np.zeros((r1 - r0, c1 - c0), dtype=self.levels[0].dtype)
        best = np.full(block.shape, np.inf)
        yy, xx = np.mgrid[r0:r1, c0:c1]
        for t in tiles:
            tr0, tc0, tr1, tc1 = t.box()
            ir0, ic0, ir1, ic1 = max(tr0, r0), max(tc0, c0), min(tr1, r1), min(tc1, c1)
            if ir0 >= ir1 or ic0 >= ic1:
                continue
            win = (slice(ir0 - r0, ir1 - r0), slice(ic0 - c0, ic1 - c0))
            d2 = (yy[win] - t.centre[0]) ** 2 + (xx[win] - t.centre[1]) ** 2
            nearer = d2 < best[win]
            pixels = image_of(t.name)[ir0 - tr0 : ir1 - tr0, ic0 - tc0 : ic1 - tc0]
            block[win][nearer] = pixels[nearer]
            best[win][nearer] = d2[nearer]
        self.levels[0][r0:r1, c0:c1] = block

    def _pyramid(self, chunks: set[tuple[int, int]]) -> None:
        changed = chunks
        for k in range(1, len(self.levels)):
            parents = {(cy // 2, cx // 2) for cy, cx in changed}
            below, here = self.levels[k - 1], self.levels[k]
            for py, px in parents:
                r0, c0 = py * CHUNK, px * CHUNK
                r1, c1 = min(r0 + CHUNK, here.shape[0]), min(c0 + CHUNK, here.shape[1])
                src = np.asarray(below[2 * r0 : 2 * r1, 2 * c0 : 2 * c1], dtype=np.float64)
                src = np.pad(
                    src,
                    ((0, 2 * (r1 - r0) - src.shape[0]), (0, 2 * (c1 - c0) - src.shape[1])),
                    mode="edge",
                )
                down = src.reshape(r1 - r0, 2, c1 - c0, 2).mean(axis=(1, 3))
                here[r0:r1, c0:c1] = np.rint(down).astype(here.dtype)
            changed = parents


def _geometry_of(group: Any) -> MosaicGeometry:
    multiscale = group.attrs["ome"]["multiscales"][0]
    first = multiscale["datasets"][0]["coordinateTransformations"]
    scale = float(first[0]["scale"][0])
    ty, tx = (float(v) for v in first[1]["translation"])
    shape = tuple(int(v) for v in group["0"].shape)
    return MosaicGeometry((shape[0], shape[1]), (tx, ty), scale, len(multiscale["datasets"]))
