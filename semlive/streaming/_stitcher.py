"""The streaming stitcher: each tile placed as it arrives, the mosaic kept readable throughout.

:meth:`Stitcher.add` registers a new tile against its placed grid neighbours, places it (from
its trusted links, or from the stage model when none is trusted), writes the mosaic chunks it
touches and reports regions that became complete. Every ``resolve_every`` tiles, and at the
end, all tiles are re-placed by the global solve; chunks of tiles that moved are re-fused, and a
completed region whose tiles moved by more than ``region_tolerance_px`` is reported again as
changed. Pairs and placements are kept in the ledger (stitching QC).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import EdsReady, Ledger, StandardMeasured, TileReady
from semlive.records import SessionInfo, SpectraBatch, TileImage, TileSidecar
from semlive.settings import StreamingSettings
from semlive.streaming._mosaic import CHUNK, MosaicGeometry, MosaicWriter, TileOnMosaic
from semlive.streaming._registration import PairShift, noise_scores, register_pair
from semlive.streaming._solver import Link, solve

__all__ = [
    "Correction",
    "RegionChanged",
    "RegionComplete",
    "SpectraMoved",
    "SpectraPlaced",
    "Stitcher",
]

logger = logging.getLogger(__name__)

_EDS_CACHE = 12  # EDS maps are ~9× a BSE tile: keep few, re-read the rest from the session
REGION_TOLERANCE_PX = 0.5  # a completed region whose tiles move more than this is re-emitted
_SCHEMA = """
CREATE TABLE IF NOT EXISTS placements (
    tile TEXT PRIMARY KEY, row_px REAL NOT NULL, col_px REAL NOT NULL, x_um REAL NOT NULL,
    y_um REAL NOT NULL, linked INTEGER NOT NULL, residual_px REAL NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    a TEXT NOT NULL, b TEXT NOT NULL, dy_px REAL, dx_px REAL, ncc REAL, overlap_px INTEGER,
    accepted INTEGER NOT NULL, reason TEXT, PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS regions (ry INTEGER, rx INTEGER, state TEXT, PRIMARY KEY (ry, rx));
"""


class Correction(Protocol):
    """Puts a BSE tile on the reference scale before it is fused (drift correction); the
    calibration layer provides it. ``version`` changes whenever its corrections change."""

    version: int

    def __call__(self, sidecar: TileSidecar, image: NDArray[np.generic]) -> NDArray[np.generic]: ...

    def add(self, event: StandardMeasured) -> Sequence[object]:
        """Take a standard measurement; what to report (alerts)."""
        ...


@dataclass(frozen=True, slots=True)
class RegionComplete:
    region: tuple[int, int]
    bounds_px: tuple[int, int, int, int]  # row0, col0, row1, col1 of level 0


@dataclass(frozen=True, slots=True)
class SpectraPlaced:
    """A batch of spectra and where its points lie on the mosaic (level-0 row, col px)."""

    batch: SpectraBatch
    mosaic_px: NDArray[np.float64]  # (N, 2)


@dataclass(frozen=True, slots=True)
class SpectraMoved:
    """A placed batch's points moved on the mosaic (its tile was placed anew by a re-solve)."""

    name: str  # the batch's name, as in SpectraPlaced.batch.name
    mosaic_px: NDArray[np.float64]  # (N, 2), level-0 row, col px


@dataclass(frozen=True, slots=True)
class TilePlaced:
    """A tile is placed and its pixels are on the mosaic (before its region is complete)."""

    name: str
    bounds_px: tuple[int, int, int, int]  # row0, col0, row1, col1 of level 0
    grid: tuple[int, int]  # the tile's row and column in the acquisition grid
    restored: bool = False  # taken before a restart (not a new arrival)


@dataclass(frozen=True, slots=True)
class RegionChanged:
    region: tuple[int, int]
    bounds_px: tuple[int, int, int, int]


@dataclass(slots=True)
class _Tile:
    index: int
    sidecar: TileSidecar
    nominal: tuple[float, float]  # row, col of pixel (0, 0) in the mosaic, as commanded
    position: tuple[float, float]  # as placed
    linked: bool = False


class Stitcher:
    """Stitching of one session into one store."""

    def __init__(
        self,
        store: Path,
        session: SessionInfo,
        ledger: Ledger,
        settings: StreamingSettings | None = None,
        read_tile: Callable[[str], NDArray[np.generic]] | None = None,
        read_eds: Callable[[str], NDArray[np.generic]] | None = None,
        correction: Correction | None = None,
    ) -> None:
        self.store, self.session, self.ledger = store, session, ledger
        self.correction = correction
        self._correction_version = correction.version if correction is not None else 0
        self.settings = settings or StreamingSettings()
        self.read_tile = read_tile
        self.read_eds = read_eds
        self._eds: set[str] = set()  # tiles with EDS maps
        self._eds_cache: OrderedDict[str, NDArray[np.generic]] = OrderedDict()
        self._eds_dirty: set[tuple[int, int]] = set()
        ledger.ensure_tables(_SCHEMA)
        self.tiles: dict[str, _Tile] = {}
        self._at: dict[tuple[int, int], str] = {}  # grid (row, col) -> tile
        self.links: dict[tuple[str, str], Link] = {}
        self._links_of: dict[str, set[tuple[str, str]]] = {}
        self._saved: dict[str, tuple[float, float, bool, float]] = {}
        self._waiting: dict[tuple[int, int], set[tuple[int, int]]] | None = None
        self._cache: OrderedDict[str, NDArray[np.generic]] = OrderedDict()
        self._writer: MosaicWriter | None = None
        self._threshold: float | None = None
        self._threshold_at = 0  # tiles placed when the noise threshold was last measured
        self._pending_pairs: dict[tuple[str, str], PairShift | None] = {}
        self._complete: dict[tuple[int, int], dict[str, tuple[float, float]]] = {}
        self._since_solve = 0
        self._dirty: set[tuple[int, int]] = set()
        self._flushed_at = time.monotonic()
        self.max_shift_px = self.settings.max_shift_um / session.pixel_size_um

    # -- geometry --------------------------------------------------------------------------
    def _geometry_from(self, side: TileSidecar) -> MosaicGeometry:
        s = self.session
        rows, cols = s.tile_shape
        ov = s.overlap_fraction or (0.1, 0.1)
        step = (rows * (1 - ov[0]) * s.pixel_size_um, cols * (1 - ov[1]) * s.pixel_size_um)
        grid = (s.grid_rows or side.row + 1, s.grid_cols or side.col + 1)
        margin = 64
        x0 = side.stage_x_um - side.col * step[1] - (cols - 1) / 2 * s.pixel_size_um
        y0 = side.stage_y_um - side.row * step[0] - (rows - 1) / 2 * s.pixel_size_um
        origin = (x0 - margin * s.pixel_size_um, y0 - margin * s.pixel_size_um)
        shape = (
            int(np.ceil((grid[0] - 1) * step[0] / s.pixel_size_um)) + rows + 2 * margin,
            int(np.ceil((grid[1] - 1) * step[1] / s.pixel_size_um)) + cols + 2 * margin,
        )
        levels = 1
        while max(shape) / 2**levels >= CHUNK / 2:
            levels += 1
        return MosaicGeometry(shape, origin, s.pixel_size_um, levels)

    def _nominal(self, side: TileSidecar) -> tuple[float, float]:
        g = self.writer.geometry
        rows, cols = self.session.tile_shape
        s = g.pixel_size_um
        return (
            (side.stage_y_um - g.origin_um[1]) / s - (rows - 1) / 2,
            (side.stage_x_um - g.origin_um[0]) / s - (cols - 1) / 2,
        )

    @property
    def writer(self) -> MosaicWriter:
        assert self._writer is not None
        return self._writer

    # -- adding tiles ------------------------------------------------------------------------
    def add(self, event: TileReady) -> list[RegionComplete | RegionChanged]:
        side = event.sidecar
        if self._writer is None:
            dtype = "uint8" if self.session.bse_bit_depth == 8 else "uint16"
            self._writer = MosaicWriter(
                self.store / "mosaic.zarr", self._geometry_from(side), dtype
            )
        self._remember(side.tile, event.image)
        previous = self.tiles.get(side.tile)
        nominal = self._nominal(side)
        tile = _Tile(
            len(self.tiles) if previous is None else previous.index, side, nominal, nominal
        )
        self.tiles[side.tile] = tile
        self._at[(side.row, side.col)] = side.tile
        if self._waiting is not None:
            for waiting in self._waiting.values():
                waiting.discard((side.row, side.col))
        self._register(tile)
        tile.position, tile.linked = self._place_locally(tile)
        moved = {side.tile: previous.position} if previous is not None else {}
        self._write_tiles([side.tile], moved)
        self._since_solve += 1
        events: list[RegionComplete | RegionChanged] = []
        closing = self._completable(done=False)
        every = self.settings.resolve_every
        if self._since_solve >= every or (closing and self._since_solve >= max(1, every // 4)):
            events += self.resolve()  # every K tiles, and before a region closes
        events += self._announce(closing)
        if time.monotonic() - self._flushed_at >= self.settings.flush_interval_s:
            self.flush(eds_chunks=self._chunks_of_regions(closing))  # the live view
        elif events:  # a region is announced only once its pixels are written
            regions = self._chunks_of_regions([e.region for e in events])
            self.flush(bse_chunks=regions, eds_chunks=regions)
        return events

    def _chunks_of_regions(self, regions: list[tuple[int, int]]) -> set[tuple[int, int]]:
        k = self.settings.region_chunks
        return {(ry * k + i, rx * k + j) for ry, rx in regions for i in range(k) for j in range(k)}

    def add_eds(self, event: EdsReady) -> None:
        """EDS element maps of a placed tile: written into ``eds/`` at the next flush."""
        if event.tile not in self.tiles:
            return
        if not self.writer.eds_levels:
            self.writer.open_eds(self.session.eds_elements)
        self._eds.add(event.tile)
        self._keep(self._eds_cache, event.tile, event.maps.counts, limit=_EDS_CACHE)
        self._eds_dirty |= self.writer.chunks_of([self._on_mosaic(event.tile)])

    def maps(self, name: str) -> NDArray[np.generic]:
        if name not in self._eds_cache:
            if self.read_eds is None:
                raise KeyError(f"EDS maps of {name} are not cached and no reader was given")
            self._keep(self._eds_cache, name, self.read_eds(name), limit=_EDS_CACHE)
        return self._eds_cache[name]

    def _keep(
        self,
        cache: OrderedDict[str, NDArray[np.generic]],
        name: str,
        array: NDArray[np.generic],
        limit: int | None = None,
    ) -> None:
        cache[name] = array
        cache.move_to_end(name)
        while len(cache) > (limit or self.settings.tile_cache):
            cache.popitem(last=False)

    def _remember(self, name: str, image: TileImage | NDArray[np.generic]) -> None:
        array = image.image if isinstance(image, TileImage) else image
        # without a reader nothing can be re-read: every tile stays in memory
        self._keep(self._cache, name, array, limit=None if self.read_tile else len(self.tiles) + 1)

    def image(self, name: str) -> NDArray[np.generic]:
        if name not in self._cache:
            if self.read_tile is None:
                raise KeyError(f"tile {name} is not cached and no reader was given")
            self._remember(name, self.read_tile(name))
        return self._cache[name]

    def _corrected(self, name: str) -> NDArray[np.generic]:
        """The tile as fused into ``bse/``: drift-corrected when a correction is given."""
        image = self.image(name)
        if self.correction is None:
            return image
        return self.correction(self.tiles[name].sidecar, image)

    def recorrect(self) -> list[RegionComplete | RegionChanged]:
        """The correction changed: re-fuse every tile; completed regions are re-emitted."""
        if self.correction is None or self.correction.version == self._correction_version:
            return []
        self._correction_version = self.correction.version
        if self._writer is None:
            return []
        self._dirty |= self.writer.chunks_of([self._on_mosaic(n) for n in self.tiles])
        events: list[RegionComplete | RegionChanged] = [
            RegionChanged(region, self._region_bounds(*region)) for region in self._complete
        ]
        if events:
            chunks = self._chunks_of_regions([e.region for e in events])
            self.flush(bse_chunks=chunks, eds_chunks=set())
        return events

    def _neighbours(self, tile: _Tile) -> list[_Tile]:
        r, c = tile.sidecar.row, tile.sidecar.col
        wanted = ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
        return [self.tiles[self._at[rc]] for rc in wanted if rc in self._at]

    def _register(self, tile: _Tile) -> None:
        for other in self._neighbours(tile):
            a, b = sorted((other, tile), key=lambda t: (t.sidecar.row, t.sidecar.col))
            nominal = (b.nominal[0] - a.nominal[0], b.nominal[1] - a.nominal[1])
            shift = register_pair(
                self.image(a.sidecar.tile),
                self.image(b.sidecar.tile),
                nominal,
                self.max_shift_px,
                self.settings.min_overlap_px,
            )
            self._record_pair(a, b, shift)

    def threshold(self) -> float:
        """NCC that pairs must beat: above what non-overlapping strips reach (permutation test)."""
        if self._threshold is None or (
            len(self.tiles) in (8, 32) and self._threshold_at != len(self.tiles)
        ):
            self._threshold = self._noise_threshold()
            self._threshold_at = len(self.tiles)
        return self._threshold

    def _noise_threshold(self) -> float:
        tiles = sorted(self.tiles.values(), key=lambda t: t.index)
        rows, cols = self.session.tile_shape
        ov = self.session.overlap_fraction or (0.1, 0.1)
        strips = []
        for i, a in enumerate(tiles):
            for b in tiles[i + 2 :: 3]:  # tiles that do not touch a
                if abs(a.sidecar.row - b.sidecar.row) > 1 or abs(a.sidecar.col - b.sidecar.col) > 1:
                    strips.append((self.image(a.sidecar.tile), self.image(b.sidecar.tile)))
            if len(strips) >= 24:
                break
        nominal_h = (0.0, cols * (1 - ov[1]))
        nominal_v = (rows * (1 - ov[0]), 0.0)
        scores = noise_scores(strips[::2], nominal_h, self.max_shift_px)
        scores += noise_scores(strips[1::2], nominal_v, self.max_shift_px)
        return float(max(np.percentile(scores, 99) + 0.05, 0.2)) if scores else 0.3

    def _record_pair(self, a: _Tile, b: _Tile, shift: PairShift | None) -> None:
        key = (a.sidecar.tile, b.sidecar.tile)
        self._pending_pairs[key] = shift
        self._decide_pairs()

    def _decide_pairs(self) -> None:
        if len(self.tiles) < 4 and self._threshold is None:
            return  # too early to know what noise looks like: decide when more tiles are in
        threshold = self.threshold()
        rows = []
        for (na, nb), shift in self._pending_pairs.items():
            a, b = self.tiles[na], self.tiles[nb]
            accepted, reason = shift is not None and shift.ncc > threshold, ""
            if shift is None:
                reason = "overlap too small to register"
            elif not accepted:
                reason = f"NCC {shift.ncc:.3f} not above the noise threshold {threshold:.3f}"
            if accepted and shift is not None:
                self.links[(na, nb)] = Link(a.index, b.index, shift.shift, max(shift.ncc, 1e-3))
                self._links_of.setdefault(na, set()).add((na, nb))
                self._links_of.setdefault(nb, set()).add((na, nb))
            else:
                self.links.pop((na, nb), None)
                self._links_of.get(na, set()).discard((na, nb))
                self._links_of.get(nb, set()).discard((na, nb))
            rows.append(
                (
                    na,
                    nb,
                    None if shift is None else shift.dy,
                    None if shift is None else shift.dx,
                    None if shift is None else shift.ncc,
                    None if shift is None else shift.overlap_px,
                    int(accepted),
                    reason,
                )
            )
        self._pending_pairs = {}
        with self.ledger.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO pairs VALUES (?,?,?,?,?,?,?,?)", rows)

    def _place_locally(self, tile: _Tile) -> tuple[tuple[float, float], bool]:
        """From the trusted links to placed neighbours, else from the stage model."""
        estimates, weights = [], []
        for na, nb in self._links_of.get(tile.sidecar.tile, set()):
            link = self.links[(na, nb)]
            other = self.tiles[nb if na == tile.sidecar.tile else na]
            sign = 1.0 if nb == tile.sidecar.tile else -1.0
            estimates.append(np.array(other.position) + sign * np.array(link.offset))
            weights.append(link.weight)
        if estimates:
            pos = np.average(np.array(estimates), axis=0, weights=weights)
            return (float(pos[0]), float(pos[1])), True
        placed = [
            t for t in self.tiles.values() if t.linked and t.sidecar.row % 2 == tile.sidecar.row % 2
        ]
        if placed:
            dev = np.mean([np.subtract(t.position, t.nominal) for t in placed], axis=0)
            return (tile.nominal[0] + float(dev[0]), tile.nominal[1] + float(dev[1])), False
        return tile.nominal, False

    # -- global solve, writing, regions -------------------------------------------------------
    def resolve(self, anchored: bool = False) -> list[RegionComplete | RegionChanged]:
        """Re-place every tile by the global solve; re-fuse what moved. The solve keeps the
        frame where the tiles are (a live mosaic stays still), or with ``anchored`` puts it
        where Contract 2 anchors it (mean deviation from nominal zero), which depends only on
        the tiles and their links, not on the order they came in or on restarts."""
        self._since_solve = 0
        if self._pending_pairs:
            self._decide_pairs()
        order = sorted(self.tiles.values(), key=lambda t: t.index)
        index = {t.sidecar.tile: i for i, t in enumerate(order)}
        nominal = np.array([t.nominal for t in order])
        warm = np.array([t.position for t in order])
        links = [
            Link(index[na], index[nb], lk.offset, lk.weight) for (na, nb), lk in self.links.items()
        ]
        direction = np.array([t.sidecar.row % 2 for t in order])
        placement = solve(
            nominal, links, direction, self.settings.max_residual_px, None if anchored else warm
        )
        previous = {t.sidecar.tile: t.position for t in order}
        # the solve keeps the frame still (warm): a re-solve only re-fuses tiles that really
        # moved relative to the others
        for i, t in enumerate(order):
            pos = placement.positions[i]
            t.position = (float(pos[0]), float(pos[1]))
            t.linked = bool(placement.linked[i])
        moved = [n for n, p in previous.items() if _rounded(p) != _rounded(self.tiles[n].position)]
        logger.debug("re-solve moved %d of %d tiles on the mosaic", len(moved), len(previous))
        self._write_tiles(moved, {n: previous[n] for n in moved})
        self._save_placements(placement.residual_px, order)
        self.writer.set_anchor(self.anchor_px())
        changed = self._changed_regions(previous)
        if changed:  # re-fused before they are announced again
            chunks = self._chunks_of_regions([e.region for e in changed])
            self.flush(bse_chunks=chunks, eds_chunks=chunks)
        return changed

    def anchor_px(self) -> tuple[float, float]:
        """Mean deviation of the placed tiles from nominal (rows, cols px): reported stage
        positions and the mosaic's translation subtract it (Contract 2's anchoring)."""
        if not self.tiles:
            return 0.0, 0.0
        d = np.mean([np.subtract(t.position, t.nominal) for t in self.tiles.values()], axis=0)
        return float(d[0]), float(d[1])

    def _on_mosaic(self, name: str, position: tuple[float, float] | None = None) -> TileOnMosaic:
        t = self.tiles[name]
        row, col = _rounded(position or t.position)
        rows, cols = self.session.tile_shape
        return TileOnMosaic(
            name, row, col, (rows, cols), (row + (rows - 1) / 2, col + (cols - 1) / 2)
        )

    def _write_tiles(self, names: list[str], old: dict[str, tuple[float, float]]) -> None:
        """Mark the chunks under these tiles (where they are and where they were) for fusing."""
        new = self.writer.chunks_of([self._on_mosaic(n) for n in names])
        new |= self.writer.chunks_of([self._on_mosaic(n, p) for n, p in old.items()])
        self._dirty |= new
        if any(n in self._eds for n in names):
            self._eds_dirty |= new

    def flush(
        self,
        bse_chunks: set[tuple[int, int]] | None = None,
        eds_chunks: set[tuple[int, int]] | None = None,
    ) -> None:
        """Fuse marked chunks once, from all tiles over them, and update the pyramid.

        BSE chunks are fused where ``bse_chunks`` says (the chunks of regions being announced),
        or all marked ones when it is None (the live view). EDS maps (nine channels a chunk,
        costly) are fused only where ``eds_chunks`` says, or everywhere when it is None.
        """
        if self._writer is None:
            return
        todo = self._dirty if bse_chunks is None else self._dirty & bse_chunks
        if todo:
            over = [self._on_mosaic(n) for n in sorted(self.tiles)]  # ties: by name, in any history
            relevant = [t for t in over if self.writer.chunks_of([t]) & todo]
            self.writer.fuse(todo, relevant, self._corrected)
            self._dirty -= todo
        todo = self._eds_dirty if eds_chunks is None else self._eds_dirty & eds_chunks
        if todo:
            over = [self._on_mosaic(n) for n in sorted(self._eds)]
            relevant = [t for t in over if self.writer.chunks_of([t]) & todo]
            self.writer.fuse_eds(todo, relevant, self.maps)
            self._eds_dirty -= todo
        if bse_chunks is None:  # the live view: coarser levels too
            self.writer.update_pyramid()
            self._flushed_at = time.monotonic()

    def _save_placements(self, residuals: NDArray[np.float64], order: list[_Tile]) -> None:
        anchor = self.anchor_px()
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        data = []
        for t, res in zip(order, residuals, strict=True):
            x_um, y_um = self._stage_um(t, anchor)
            key = (round(x_um, 4), round(y_um, 4), t.linked, round(float(res), 4))
            if self._saved.get(t.sidecar.tile) == key:
                continue  # unchanged since the last save
            self._saved[t.sidecar.tile] = key
            row = (
                t.sidecar.tile,
                t.position[0],
                t.position[1],
                x_um,
                y_um,
                int(t.linked),
                float(res),
                now,
            )
            data.append(row)
        with self.ledger.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO placements VALUES (?,?,?,?,?,?,?,?)", data)

    def _region_bounds(self, ry: int, rx: int) -> tuple[int, int, int, int]:
        size = self.settings.region_chunks * CHUNK
        rows, cols = self.writer.geometry.shape
        return ry * size, rx * size, min((ry + 1) * size, rows), min((rx + 1) * size, cols)

    def _completable(self, done: bool) -> list[tuple[int, int]]:
        """Regions all of whose planned tiles (with a halo) are placed, or all after DONE."""
        if self._writer is None:
            return []
        if self._waiting is None:
            self._waiting = self._planned_blockers()
        size = self.settings.region_chunks * CHUNK
        rows, cols = self.writer.geometry.shape
        regions = [(ry, rx) for ry in range(-(-rows // size)) for rx in range(-(-cols // size))]
        planned = self.session.grid_rows is not None and self.session.grid_cols is not None
        return [
            region
            for region in regions
            if region not in self._complete
            and (done or (planned and not self._waiting.get(region)))
        ]

    def _planned_blockers(self) -> dict[tuple[int, int], set[tuple[int, int]]]:
        """For each region, the planned tiles (row, col) not yet placed that reach into it
        (nominal footprint grown by the stage error and the halo)."""
        s = self.session
        waiting: dict[tuple[int, int], set[tuple[int, int]]] = {}
        if s.grid_rows is None or s.grid_cols is None or not self.tiles:
            return waiting
        anchor = next(iter(self.tiles.values()))
        rows, cols = s.tile_shape
        ov = s.overlap_fraction or (0.1, 0.1)
        step = (rows * (1 - ov[0]), cols * (1 - ov[1]))
        size = self.settings.region_chunks * CHUNK
        reach = self.settings.halo_px + self.max_shift_px
        for r in range(s.grid_rows):
            for c in range(s.grid_cols):
                if (r, c) in self._at:
                    continue
                y = anchor.nominal[0] + (r - anchor.sidecar.row) * step[0]
                x = anchor.nominal[1] + (c - anchor.sidecar.col) * step[1]
                for ry in range(int((y - reach) // size), int((y + rows + reach) // size) + 1):
                    for rx in range(int((x - reach) // size), int((x + cols + reach) // size) + 1):
                        waiting.setdefault((ry, rx), set()).add((r, c))
        return waiting

    def _announce(self, regions: list[tuple[int, int]]) -> list[RegionComplete | RegionChanged]:
        events: list[RegionComplete | RegionChanged] = []
        for region in regions:
            bounds = self._region_bounds(*region)
            self._complete[region] = self._positions_in(*bounds)
            events.append(RegionComplete(region, bounds))
        return events

    def _positions_in(self, r0: int, c0: int, r1: int, c1: int) -> dict[str, tuple[float, float]]:
        rows, cols = self.session.tile_shape
        return {
            n: t.position
            for n, t in self.tiles.items()
            if t.position[0] < r1
            and t.position[0] + rows > r0
            and t.position[1] < c1
            and t.position[1] + cols > c0
        }

    def _changed_regions(
        self, previous: dict[str, tuple[float, float]]
    ) -> list[RegionComplete | RegionChanged]:
        events: list[RegionComplete | RegionChanged] = []
        for region, positions in self._complete.items():
            shift = max(
                (
                    float(np.hypot(*np.subtract(self.tiles[n].position, p)))
                    for n, p in positions.items()
                ),
                default=0.0,
            )
            if shift > REGION_TOLERANCE_PX:
                bounds = self._region_bounds(*region)
                self._complete[region] = self._positions_in(*bounds)
                events.append(RegionChanged(region, bounds))
        return events

    def finish(self) -> list[RegionComplete | RegionChanged]:
        """The session is DONE: a last global solve in the anchored frame (the same final
        mosaic however the session was interrupted), then every remaining region completes."""
        events = self.resolve(anchored=True) if self.tiles else []
        events += self._announce(self._completable(done=True))
        self.flush()
        return events

    def mosaic_px(
        self, xy_um: NDArray[np.float64], tile: str | None = None
    ) -> NDArray[np.float64] | None:
        """Level-0 mosaic position (row, col px) of stage positions ``xy_um`` (N, 2).

        Through the tile they were acquired in, where known, so its placement corrects the
        stage error; else through the mean placement (the anchor). None while that tile (or
        any tile) is not placed yet."""
        if self._writer is None or (tile is not None and tile not in self.tiles):
            return None
        g = self.writer.geometry
        if tile is not None:
            t = self.tiles[tile]
            shift = (t.position[0] - t.nominal[0], t.position[1] - t.nominal[1])
        else:
            shift = self.anchor_px()
        xy = np.asarray(xy_um, np.float64).reshape(-1, 2)
        rows = (xy[:, 1] - g.origin_um[1]) / g.pixel_size_um + shift[0]
        cols = (xy[:, 0] - g.origin_um[0]) / g.pixel_size_um + shift[1]
        return np.stack([rows, cols], axis=1)

    def show_tile(self, name: str, restored: bool = False) -> TilePlaced:
        """Write the chunks under a placed tile now (not waiting for the live view's flush)
        and say where it lies."""
        tile = self._on_mosaic(name)
        self.flush(bse_chunks=self.writer.chunks_of([tile]))
        side = self.tiles[name].sidecar
        return TilePlaced(name, tile.box(), (side.row, side.col), restored)

    def placements_um(self) -> dict[str, tuple[float, float]]:
        """Placed stage position (x, y µm) of each tile's centre (mean deviation zero)."""
        return {n: self._stage_um(t, self.anchor_px()) for n, t in self.tiles.items()}

    def _stage_um(self, t: _Tile, anchor: tuple[float, float]) -> tuple[float, float]:
        g = self.writer.geometry
        rows, cols = self.session.tile_shape
        return (
            g.origin_um[0] + g.pixel_size_um * (t.position[1] - anchor[1] + (cols - 1) / 2),
            g.origin_um[1] + g.pixel_size_um * (t.position[0] - anchor[0] + (rows - 1) / 2),
        )


def _rounded(position: tuple[float, float]) -> tuple[int, int]:
    return round(position[0]), round(position[1])
