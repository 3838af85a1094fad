"""The mosaic writer: OME-Zarr 0.5 (zarr v3) multiscale images in ``STORE/mosaic.zarr``.

``bse/`` holds level 0 at full resolution and 2× mean-downsampled levels, axes (y, x) in
micrometres; level 0's translation is the stage position of pixel (0, 0)'s centre, so pixel
(r, c) sits at stage (tx + s·c, ty + s·r) (Contract 2). Tiles are fused by nearest centre: each
mosaic pixel takes the value of the placed tile whose centre is nearest, so there is no blending
ghost; ``eds/`` (c, y, x) holds the EDS-covered tiles' element maps the same way, with the
element symbols as channel labels. Tiles are placed at whole pixels (their sub-pixel placement
is kept in the ledger). Every write covers whole chunks, and only the pyramid chunks above
changed chunks are recomputed. The arrays are allocated from the plan with a margin and stay
sparse on disk until written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MosaicGeometry", "MosaicWriter", "TileOnMosaic"]

CHUNK = 512
_PENDING_CHUNKS = 64  # level-0 chunks whose pyramid update may wait for update_pyramid()


@dataclass(frozen=True, slots=True)
class MosaicGeometry:
    shape: tuple[int, int]  # rows, cols of level 0
    origin_um: tuple[float, float]  # stage x, y of level-0 pixel (0, 0)'s centre
    pixel_size_um: float
    levels: int

    def multiscales(self, name: str, channels: bool = False) -> dict[str, Any]:
        """OME-Zarr 0.5 ``multiscales`` entry; with ``channels`` the axes are (c, y, x)."""
        s, (tx, ty) = self.pixel_size_um, self.origin_um
        lead_scale, lead_shift = ([1.0], [0.0]) if channels else ([], [])
        datasets = []
        for k in range(self.levels):
            f = 2**k
            shift = s * (f - 1) / 2  # a level-k pixel is the mean of f×f level-0 pixels
            transforms = [
                {"type": "scale", "scale": [*lead_scale, s * f, s * f]},
                {"type": "translation", "translation": [*lead_shift, ty + shift, tx + shift]},
            ]
            datasets.append({"path": str(k), "coordinateTransformations": transforms})
        axes: list[dict[str, str]] = [
            {"name": a, "type": "space", "unit": "micrometer"} for a in ("y", "x")
        ]
        if channels:
            axes.insert(0, {"name": "c", "type": "channel"})
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
    """The one writer of ``mosaic.zarr``'s images (one process writes a store)."""

    def __init__(self, path: Path, geometry: MosaicGeometry, dtype: str = "uint16") -> None:
        import zarr

        self.geometry = geometry
        self.root: Any = zarr.open_group(str(path), mode="a", zarr_format=3)
        self.bse: Any
        if "bse" in self.root:  # a restart: the mosaic keeps the geometry it was made with
            self.bse = self.root["bse"]
            self.geometry = _geometry_of(self.bse)
            origin = self.bse.attrs.get("semlive", {}).get("origin_um")
            if origin is not None:  # the frame before anchoring (the translation is anchored)
                self.geometry = replace(
                    self.geometry, origin_um=(float(origin[0]), float(origin[1]))
                )
        else:
            self.bse = self._create("bse", (), dtype)
            self.bse.attrs["ome"] = {
                "version": "0.5",
                "multiscales": [self.geometry.multiscales("bse")],
            }
            # the frame's origin before any anchoring: a restart places tiles in this frame
            self.bse.attrs["semlive"] = {"origin_um": list(self.geometry.origin_um)}
        self.levels: list[Any] = [self.bse[str(k)] for k in range(self.geometry.levels)]
        self.eds_levels: list[Any] = []
        # level-1 pieces of level-0 chunks written but not yet carried up the pyramid
        self._pending: dict[int, tuple[list[Any], dict[tuple[int, int], NDArray[np.generic]]]] = {}

    def _create(self, name: str, lead: tuple[int, ...], dtype: str) -> Any:
        group = self.root.create_group(name)
        shape = self.geometry.shape
        names = ["c", "y", "x"] if lead else ["y", "x"]
        for k in range(self.geometry.levels):
            group.create_array(
                str(k),
                shape=(*lead, *shape),
                chunks=(*(1,) * len(lead), CHUNK, CHUNK),
                dtype=dtype,
                fill_value=0,
                compressors=_compressors(lead),
                dimension_names=names,
            )
            shape = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
        return group

    def open_eds(self, elements: tuple[str, ...]) -> None:
        """Create (or open) ``eds/``: one count map per element, axes (c, y, x)."""
        if "eds" in self.root:
            eds = self.root["eds"]
        else:
            eds = self._create("eds", (len(elements),), "uint16")
            channels = [
                {
                    "label": el,
                    "color": "FFFFFF",
                    "active": True,
                    "coefficient": 1.0,
                    "family": "linear",
                    "inverted": False,
                    "window": {"min": 0.0, "max": 65535.0, "start": 0.0, "end": 255.0},
                }
                for el in elements
            ]
            eds.attrs["ome"] = {
                "version": "0.5",
                "multiscales": [self.geometry.multiscales("eds", True)],
                "omero": {"channels": channels},
            }
        self.eds_levels = [eds[str(k)] for k in range(self.geometry.levels)]

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
        """Rewrite whole level-0 BSE chunks from the tiles over them, then their pyramid."""
        self._fuse_into(self.levels, chunks, tiles, image_of)

    def fuse_eds(
        self,
        chunks: set[tuple[int, int]],
        tiles: list[TileOnMosaic],
        maps_of: Callable[[str], NDArray[np.generic]],
    ) -> None:
        """Rewrite ``eds/`` chunks from the EDS-covered tiles over them (nearest centre)."""
        self._fuse_into(self.eds_levels, chunks, tiles, maps_of)

    def _fuse_into(
        self,
        levels: list[Any],
        chunks: set[tuple[int, int]],
        tiles: list[TileOnMosaic],
        source: Callable[[str], NDArray[np.generic]],
    ) -> None:
        lead = levels[0].shape[:-2]
        pending = self._pending.setdefault(id(levels[0]), (levels, {}))[1]
        for cy, cx in sorted(chunks):
            block = _fused(self.geometry, cy, cx, tiles, source, levels[0].dtype, lead)
            levels[0][(..., *_chunk_slices(self.geometry, cy, cx))] = block
            pending[(cy, cx)] = _downsample(block)
            if len(pending) >= _PENDING_CHUNKS:  # memory stays bounded
                _pyramid(pending, levels)
                pending.clear()

    def update_pyramid(self) -> None:
        """Carry the level-0 chunks written since the last update up the coarser levels."""
        for levels, pending in self._pending.values():
            if pending:
                _pyramid(pending, levels)
                pending.clear()

    def set_anchor(self, offset_px: tuple[float, float]) -> None:
        """Move the stage anchor of every image by a common sub-pixel offset (rows, cols).

        The pixels stay where they are; only ``coordinateTransformations`` change, so the
        placements' mean deviation from nominal stays zero without rewriting the mosaic.
        """
        g = self.geometry
        shifted = MosaicGeometry(
            g.shape,
            (
                g.origin_um[0] - g.pixel_size_um * offset_px[1],
                g.origin_um[1] - g.pixel_size_um * offset_px[0],
            ),
            g.pixel_size_um,
            g.levels,
        )
        self.bse.attrs["ome"] = {"version": "0.5", "multiscales": [shifted.multiscales("bse")]}
        if "eds" in self.root:
            attrs = dict(self.root["eds"].attrs["ome"])
            attrs["multiscales"] = [shifted.multiscales("eds", True)]
            self.root["eds"].attrs["ome"] = attrs


def _compressors(lead: tuple[int, ...]) -> Any:
    """BSE uncompressed (it hardly compresses, and writing must keep up with the scan); EDS
    count maps, mostly zeros, with fast LZ4."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=1, shuffle="bitshuffle") if lead else None


def _chunk_slices(g: MosaicGeometry, cy: int, cx: int) -> tuple[slice, slice]:
    r0, c0 = cy * CHUNK, cx * CHUNK
    return slice(r0, min(r0 + CHUNK, g.shape[0])), slice(c0, min(c0 + CHUNK, g.shape[1]))


def _fused(
    g: MosaicGeometry,
    cy: int,
    cx: int,
    tiles: list[TileOnMosaic],
    image_of: Callable[[str], NDArray[np.generic]],
    dtype: Any,
    lead: tuple[int, ...] = (),
) -> NDArray[np.generic]:
    """One chunk (all channels): each pixel from the tile whose centre is nearest."""
    rows, cols = _chunk_slices(g, cy, cx)
    r0, r1, c0, c1 = rows.start, rows.stop, cols.start, cols.stop
    block = np.zeros((*lead, r1 - r0, c1 - c0), dtype=dtype)
    best = np.full((r1 - r0, c1 - c0), np.inf, dtype=np.float32)
    yy = np.arange(r0, r1, dtype=np.float32)
    xx = np.arange(c0, c1, dtype=np.float32)
    for t in tiles:
        tr0, tc0, tr1, tc1 = t.box()
        ir0, ic0, ir1, ic1 = max(tr0, r0), max(tc0, c0), min(tr1, r1), min(tc1, c1)
        if ir0 >= ir1 or ic0 >= ic1:
            continue
        win = (slice(ir0 - r0, ir1 - r0), slice(ic0 - c0, ic1 - c0))
        dy2 = (yy[win[0]] - np.float32(t.centre[0])) ** 2
        dx2 = (xx[win[1]] - np.float32(t.centre[1])) ** 2
        d2 = dy2[:, None] + dx2[None, :]
        nearer = d2 < best[win]
        pixels = image_of(t.name)[..., ir0 - tr0 : ir1 - tr0, ic0 - tc0 : ic1 - tc0]
        np.copyto(block[(..., *win)], pixels, where=nearer)
        np.minimum(best[win], d2, out=best[win])
    return block


def _downsample(block: NDArray[np.generic]) -> NDArray[np.generic]:
    """2×2 means (rounded), the last row or column repeated where the size is odd."""
    rows, cols = block.shape[-2], block.shape[-1]
    src = block.astype(np.float32)
    if rows % 2 or cols % 2:
        pad = [(0, 0)] * (src.ndim - 2) + [(0, rows % 2), (0, cols % 2)]
        src = np.pad(src, pad, mode="edge")
    down = src[..., 0::2, 0::2] + src[..., 1::2, 0::2]
    down += src[..., 0::2, 1::2]
    down += src[..., 1::2, 1::2]
    down *= 0.25
    result: NDArray[np.generic] = np.rint(down).astype(block.dtype)
    return result


def _pyramid(pieces: dict[tuple[int, int], NDArray[np.generic]], levels: list[Any]) -> None:
    """Carry rewritten level-0 chunks up the pyramid, from their level-1 pieces.

    A level-0 chunk maps onto an aligned 256² piece of a level-1 chunk, 128² of a level-2 one,
    and so on, and each level is the 2×2 mean of the one below; so the pieces are computed from
    blocks in memory, and each coarser chunk that receives pieces is read once (only when the
    pieces do not cover it), patched and written once. Nothing of the finer levels is read back.
    """
    size = CHUNK
    for k in range(1, len(levels)):
        size //= 2
        if k > 1:
            pieces = {key: _downsample(piece) for key, piece in pieces.items()}
        here = levels[k]
        rows, cols = here.shape[-2], here.shape[-1]
        by_chunk: dict[tuple[int, int], list[tuple[int, int, NDArray[np.generic]]]] = {}
        for (cy, cx), piece in pieces.items():  # chunk (cy, cx)'s piece starts at (cy, cx)·size
            r, c = cy * size, cx * size
            by_chunk.setdefault((r // CHUNK, c // CHUNK), []).append((r, c, piece))
        for (py, px), parts in by_chunk.items():
            r0, c0 = py * CHUNK, px * CHUNK
            r1, c1 = min(r0 + CHUNK, rows), min(c0 + CHUNK, cols)
            covered = sum(p.shape[-2] * p.shape[-1] for _, _, p in parts)
            if covered == (r1 - r0) * (c1 - c0):
                chunk = np.empty((*here.shape[:-2], r1 - r0, c1 - c0), dtype=here.dtype)
            else:
                chunk = np.asarray(here[..., r0:r1, c0:c1])
            for r, c, piece in parts:
                h = min(piece.shape[-2], r1 - r)
                w = min(piece.shape[-1], c1 - c)
                chunk[..., r - r0 : r - r0 + h, c - c0 : c - c0 + w] = piece[..., :h, :w]
            here[..., r0:r1, c0:c1] = chunk


def _geometry_of(group: Any) -> MosaicGeometry:
    multiscale = group.attrs["ome"]["multiscales"][0]
    first = multiscale["datasets"][0]["coordinateTransformations"]
    scale = float(first[0]["scale"][-1])
    ty, tx = (float(v) for v in first[1]["translation"][-2:])
    shape = tuple(int(v) for v in group["0"].shape[-2:])
    return MosaicGeometry((shape[0], shape[1]), (tx, ty), scale, len(multiscale["datasets"]))


def sync_transforms(path: Path) -> list[str]:
    """Give the images derived from ``bse/`` (its labels, ``olivine_probability``,
    ``mgnumber``) ``bse/``'s current coordinate transforms: they share its grid, and the
    stitcher moves its anchor by sub-pixel amounts while a session runs. Call it with no other
    writer at work (the end of a session); returns the images brought in line."""
    import zarr

    root: Any = zarr.open_group(str(path), mode="a")
    if "bse" not in root:
        return []
    datasets = root["bse"].attrs["ome"]["multiscales"][0]["datasets"]
    listed: list[str] = []
    if "bse/labels" in root:  # every label image there, listed (two writers may race to list)
        labels = root["bse/labels"]
        ome = dict(labels.attrs.get("ome", {}))
        listed = list(ome.get("labels", []))
        present = sorted(name for name, _ in labels.groups())
        if set(present) - set(listed):
            listed += [n for n in present if n not in listed]
            labels.attrs["ome"] = {**ome, "version": "0.5", "labels": listed}
    names = [f"bse/labels/{n}" for n in listed]
    names += [n for n in ("olivine_probability", "mgnumber") if n in root]
    done = []
    for name in names:
        if name not in root:
            continue
        group = root[name]
        ome = dict(group.attrs["ome"])
        multiscales = [dict(m) for m in ome["multiscales"]]
        own = multiscales[0]["datasets"]
        multiscales[0]["datasets"] = [
            {
                **d,
                "coordinateTransformations": datasets[min(i, len(datasets) - 1)][
                    "coordinateTransformations"
                ],
            }
            for i, d in enumerate(own)
        ]
        if multiscales != ome["multiscales"]:
            ome["multiscales"] = multiscales
            group.attrs["ome"] = ome
            done.append(name)
    return done
