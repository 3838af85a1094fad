"""Acquisition and stitching together, for ``semlive stitch`` (and later the pipeline)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import (
    EdsReady,
    FileQuarantined,
    Ingestor,
    Ledger,
    SessionDone,
    SessionOpened,
    SpectraReady,
    StandardMeasured,
    TileReady,
)
from semlive.acquisition import _readers as rd
from semlive.records import SessionInfo
from semlive.settings import Settings
from semlive.streaming._stitcher import (
    Correction,
    RegionChanged,
    RegionComplete,
    SpectraMoved,
    SpectraPlaced,
    Stitcher,
    TilePlaced,
)

__all__ = ["stitch_session"]

StitchEvent = (
    TileReady
    | FileQuarantined
    | StandardMeasured
    | RegionComplete
    | RegionChanged
    | SpectraReady
    | SpectraPlaced
    | SpectraMoved
    | TilePlaced
    | SessionDone
    | object  # what the correction reports (drift alerts)
)
Reader = Callable[[str], NDArray[np.generic]]
_log = logging.getLogger(__name__)
_MOVED_PX = 0.25  # a batch whose points moved farther than this is reported moved


def stitch_session(
    session_dir: Path,
    store: Path,
    settings: Settings,
    *,
    once: bool = False,
    correction: Callable[[SessionInfo, Ledger], Correction] | None = None,
    stop: Any = None,
    show_tiles: bool = False,
) -> Iterator[StitchEvent]:
    """Ingest and stitch a session, live or finished; resumes what a store already holds.

    ``correction`` makes the tiles' drift correction for the session (given its description
    and the ledger); standard measurements are passed to it as they arrive. Spectra batches
    are passed on as they arrive (:class:`SpectraReady`), again with their points' mosaic
    positions once the tile they were acquired in is placed (:class:`SpectraPlaced`; batches
    without a tile: once any tile is), and as :class:`SpectraMoved` whenever a re-solve moves
    them, before the region events of that step. A restart passes on again the batches taken
    before it (:class:`SpectraReady`, then placed as above), so their consumer misses none.
    ``stop`` (a :class:`threading.Event`) ends the loop at the next scan once it is set. With
    ``show_tiles`` each placed tile's pixels are written at once and reported
    (:class:`TilePlaced`, before the region events of its step), for work that need not wait
    for its region to complete.
    """
    with Ingestor(session_dir, store, settings.acquisition) as ingestor:
        stitcher: Stitcher | None = None
        spectra = _Spectra()
        for event in ingestor.run(once=once, stop=stop):
            if isinstance(event, SessionOpened):
                read_tile, read_maps = _readers(ingestor)
                corrector = (
                    None if correction is None else correction(event.session, ingestor.ledger)
                )
                stitcher = Stitcher(
                    store,
                    event.session,
                    ingestor.ledger,
                    settings.streaming,
                    read_tile,
                    read_maps,
                    corrector,
                )
                for ready, eds in _already_ready(ingestor):  # a restart: tiles taken before
                    if stop is not None and stop.is_set():
                        return
                    steps = stitcher.add(ready)
                    if eds is not None:
                        stitcher.add_eds(eds)
                    if show_tiles:
                        yield stitcher.show_tile(ready.sidecar.tile, restored=True)
                    yield from steps
                for taken in _spectra_taken(ingestor):  # and the spectra batches taken before
                    yield taken
                    if spectra.arrive(taken):
                        yield from spectra.place(stitcher)
            elif isinstance(event, TileReady) and stitcher is not None:
                yield event
                steps = stitcher.add(event)
                if show_tiles:
                    yield stitcher.show_tile(event.sidecar.tile)
                yield from spectra.around(stitcher, steps)
            elif isinstance(event, FileQuarantined):
                yield event
            elif isinstance(event, StandardMeasured) and stitcher is not None:
                yield event
                if stitcher.correction is not None:
                    yield from stitcher.correction.add(event)
                    yield from spectra.around(stitcher, stitcher.recorrect())
            elif isinstance(event, EdsReady) and stitcher is not None:
                stitcher.add_eds(event)
            elif isinstance(event, SpectraReady):
                yield event
                if spectra.arrive(event) and stitcher is not None:
                    yield from spectra.place(stitcher)
            elif isinstance(event, SessionDone) and stitcher is not None:
                yield from spectra.around(stitcher, stitcher.finish())
                spectra.warn_unplaced()
                yield event
        if once and stitcher is not None and not ingestor.finished:
            stitcher.flush()


class _Spectra:
    """Where the session's spectra batches lie on the mosaic, kept current as tiles move.

    Only positions are kept for the batches already placed, not their counts. A restart
    places the batches that arrive after it; those placed before it are not followed any
    more (their consumer keeps the positions it was given)."""

    def __init__(self) -> None:
        self.unplaced: list[SpectraReady] = []
        self.placed: dict[str, tuple[NDArray[np.float64], str | None, NDArray[np.float64]]] = {}

    def arrive(self, event: SpectraReady) -> bool:
        """Take a batch; False for a hypermap, whose positions are relative to its map."""
        if event.batch.bse is not None:
            _log.info(
                "%s: a hypermap's pixel positions are relative to the map, not on the stage; "
                "it is not placed on the mosaic (segment it with: semlive gdls FILE)",
                event.batch.name,
            )
            return False
        self.unplaced.append(event)
        return True

    def place(self, stitcher: Stitcher) -> Iterator[SpectraPlaced]:
        """The batches whose tile is placed now, with their mosaic positions."""
        for event in list(self.unplaced):
            batch = event.batch
            at = stitcher.mosaic_px(batch.xy_um, batch.tile)
            if at is not None:
                self.unplaced.remove(event)
                self.placed[batch.name] = (batch.xy_um, batch.tile, at)
                yield SpectraPlaced(batch, at)

    def around(self, stitcher: Stitcher, events: Sequence[StitchEvent]) -> Iterator[StitchEvent]:
        """The batches a step of the stitcher moved (first), that step's events, then the
        batches it placed."""
        for name, (xy_um, tile, at) in list(self.placed.items()):
            now = stitcher.mosaic_px(xy_um, tile)
            if now is not None and float(np.abs(now - at).max()) > _MOVED_PX:
                self.placed[name] = (xy_um, tile, now)
                yield SpectraMoved(name, now)
        yield from events
        yield from self.place(stitcher)

    def warn_unplaced(self) -> None:
        for event in self.unplaced:
            _log.warning(
                "%s: its tile %s was never placed, so its spectra are not on the mosaic",
                event.batch.name,
                event.batch.tile,
            )


def _readers(ingestor: Ingestor) -> tuple[Reader, Reader]:
    """Re-read a tile's image or EDS maps from the session folder (the source of truth)."""
    session = ingestor.session
    assert session is not None
    limit = ingestor.settings.max_image_pixels

    def read_tile(name: str) -> NDArray[np.generic]:
        data = (ingestor.root / "tiles" / f"{name}.tif").read_bytes()
        image: NDArray[np.generic] = rd.read_tile(
            data, f"tiles/{name}.tif", name, session, limit
        ).image
        return image

    def read_maps(name: str) -> NDArray[np.generic]:
        data = (ingestor.root / "tiles" / f"{name}.eds.tif").read_bytes()
        maps: NDArray[np.generic] = rd.read_eds(
            data, f"tiles/{name}.eds.tif", name, session, limit, session.tile_shape
        ).counts
        return maps

    return read_tile, read_maps


def _already_ready(ingestor: Ingestor) -> Iterator[tuple[TileReady, EdsReady | None]]:
    session = ingestor.session
    assert session is not None
    limit = ingestor.settings.max_image_pixels
    tiles = ingestor.ledger.tiles()  # in acquisition order, as they first came
    order = sorted(tiles, key=lambda n: (datetime.fromisoformat(tiles[n][4]), n))
    for name in order:
        version = tiles[name][5]
        image = (ingestor.root / "tiles" / f"{name}.tif").read_bytes()
        side = (ingestor.root / "tiles" / f"{name}.json").read_bytes()
        ready = TileReady(
            rd.read_sidecar(side, f"tiles/{name}.json", name, session),
            rd.read_tile(image, f"tiles/{name}.tif", name, session, limit),
            version,
        )
        eds = None
        if ingestor.ledger.tile_checksums(name)[2] is not None:
            data = (ingestor.root / "tiles" / f"{name}.eds.tif").read_bytes()
            maps = rd.read_eds(
                data, f"tiles/{name}.eds.tif", name, session, limit, session.tile_shape
            )
            eds = EdsReady(name, maps)
        yield ready, eds


def _spectra_taken(ingestor: Ingestor) -> Iterator[SpectraReady]:
    """The spectra batches a restarted store already took, read again from the session folder
    (a batch that cannot be read any more is logged and left out)."""
    from semlive.acquisition import FileKind
    from semlive.errors import InputDataError

    for row in ingestor.ledger.rows():
        if row.kind != FileKind.SPECTRA or row.state != "ingested":
            continue
        try:
            yield SpectraReady(ingestor.read_spectra(row.path))
        except (OSError, InputDataError) as exc:
            _log.warning("%s: taken before the restart but not readable now: %s", row.path, exc)
