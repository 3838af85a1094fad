"""Acquisition and stitching together, for ``semlive stitch`` (and later the pipeline)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

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
    SpectraPlaced,
    Stitcher,
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
    | SessionDone
    | object  # what the correction reports (drift alerts)
)
Reader = Callable[[str], NDArray[np.generic]]


def stitch_session(
    session_dir: Path,
    store: Path,
    settings: Settings,
    *,
    once: bool = False,
    correction: Callable[[SessionInfo, Ledger], Correction] | None = None,
) -> Iterator[StitchEvent]:
    """Ingest and stitch a session, live or finished; resumes what a store already holds.

    ``correction`` makes the tiles' drift correction for the session (given its description
    and the ledger); standard measurements are passed to it as they arrive. Spectra batches
    are passed on as they arrive (:class:`SpectraReady`) and again, with their points' mosaic
    positions, once the tile they were acquired in is placed (:class:`SpectraPlaced`; batches
    without a tile: once any tile is).
    """
    with Ingestor(session_dir, store, settings.acquisition) as ingestor:
        stitcher: Stitcher | None = None
        unplaced: list[SpectraReady] = []
        for event in ingestor.run(once=once):
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
                    yield from stitcher.add(ready)
                    if eds is not None:
                        stitcher.add_eds(eds)
            elif isinstance(event, TileReady) and stitcher is not None:
                yield event
                yield from stitcher.add(event)
                yield from _place(stitcher, unplaced)
            elif isinstance(event, FileQuarantined):
                yield event
            elif isinstance(event, StandardMeasured) and stitcher is not None:
                yield event
                if stitcher.correction is not None:
                    yield from stitcher.correction.add(event)
                    yield from stitcher.recorrect()
            elif isinstance(event, EdsReady) and stitcher is not None:
                stitcher.add_eds(event)
            elif isinstance(event, SpectraReady):
                yield event
                unplaced.append(event)
                if stitcher is not None:
                    yield from _place(stitcher, unplaced)
            elif isinstance(event, SessionDone) and stitcher is not None:
                yield from stitcher.finish()
                yield event
        if once and stitcher is not None and not ingestor.finished:
            stitcher.flush()


def _place(stitcher: Stitcher, unplaced: list[SpectraReady]) -> Iterator[SpectraPlaced]:
    """The batches whose tile is placed now, with their mosaic positions (removed from
    ``unplaced``)."""
    for event in list(unplaced):
        at = stitcher.mosaic_px(event.batch.xy_um, event.batch.tile)
        if at is not None:
            unplaced.remove(event)
            yield SpectraPlaced(event.batch, at)


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
    for name, (*_, version) in sorted(ingestor.ledger.tiles().items()):
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
