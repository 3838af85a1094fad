"""Acquisition and stitching together, for ``semlive stitch`` (and later the pipeline)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from semlive.acquisition import (
    EdsReady,
    FileQuarantined,
    Ingestor,
    SessionDone,
    SessionOpened,
    TileReady,
)
from semlive.acquisition import _readers as rd
from semlive.settings import Settings
from semlive.streaming._stitcher import RegionChanged, RegionComplete, Stitcher

__all__ = ["stitch_session"]

StitchEvent = TileReady | FileQuarantined | RegionComplete | RegionChanged | SessionDone


def stitch_session(
    session_dir: Path, store: Path, settings: Settings, *, once: bool = False
) -> Iterator[StitchEvent]:
    """Ingest and stitch a session, live or finished; resumes what a store already holds."""
    with Ingestor(session_dir, store, settings.acquisition) as ingestor:
        stitcher: Stitcher | None = None
        for event in ingestor.run(once=once):
            if isinstance(event, SessionOpened):
                stitcher = Stitcher(
                    store,
                    event.session,
                    ingestor.ledger,
                    settings.streaming,
                    _tile_reader(ingestor),
                )
                for ready in _already_ready(ingestor):  # a restart: tiles taken before
                    yield from stitcher.add(ready)
            elif isinstance(event, TileReady) and stitcher is not None:
                yield event
                yield from stitcher.add(event)
            elif isinstance(event, FileQuarantined):
                yield event
            elif isinstance(event, EdsReady) and stitcher is not None:
                stitcher.add_eds(event)
            elif isinstance(event, SessionDone) and stitcher is not None:
                yield from stitcher.finish()
                yield event
        if once and stitcher is not None and not ingestor.finished:
            stitcher.flush()


def _tile_reader(ingestor: Ingestor):  # type: ignore[no-untyped-def]
    def read(name: str):  # type: ignore[no-untyped-def]
        data = (ingestor.root / "tiles" / f"{name}.tif").read_bytes()
        assert ingestor.session is not None
        return rd.read_tile(
            data, f"tiles/{name}.tif", name, ingestor.session, ingestor.settings.max_image_pixels
        ).image

    return read


def _already_ready(ingestor: Ingestor) -> Iterator[TileReady]:
    session = ingestor.session
    assert session is not None
    for name, (*_, version) in sorted(ingestor.ledger.tiles().items()):
        image = (ingestor.root / "tiles" / f"{name}.tif").read_bytes()
        side = (ingestor.root / "tiles" / f"{name}.json").read_bytes()
        yield TileReady(
            rd.read_sidecar(side, f"tiles/{name}.json", name, session),
            rd.read_tile(
                image, f"tiles/{name}.tif", name, session, ingestor.settings.max_image_pixels
            ),
            version,
        )
