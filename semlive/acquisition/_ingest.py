"""The ingestor: takes every complete file of a session folder exactly once, into the ledger.

Each scan (:meth:`Ingestor.poll`) settles files (:mod:`._discovery`), reads the ready ones in
acquisition order (modification time, then image before maps before sidecar), records each
outcome in one ledger transaction and returns typed events. A file whose size and mtime match
its ledger row was taken before (a restart) and is not read again; the same content under the
same path is not re-ingested; new content under an ingested path supersedes it. When DONE has
arrived and nothing is left to settle, files that can never complete (a tile without its
sidecar, a sidecar whose image was quarantined) are quarantined with the reason, and
:class:`SessionDone` closes the session.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from semlive.acquisition import _readers as rd
from semlive.acquisition._contract import KIND_ORDER, FileKind, classify
from semlive.acquisition._discovery import FolderWatcher, Settler
from semlive.acquisition._events import (
    EdsReady,
    EpmaProfileReady,
    Event,
    FileQuarantined,
    SessionDone,
    SessionOpened,
    SpectraReady,
    StandardMeasured,
    TileReady,
)
from semlive.acquisition._ledger import FileRow, Ledger, LedgerError
from semlive.errors import InputDataError
from semlive.records import SessionInfo
from semlive.settings import AcquisitionSettings

__all__ = ["Ingestor", "default_store"]

logger = logging.getLogger(__name__)
_TERMINAL = ("ingested", "quarantined", "ignored")
_PAIRED = (
    FileKind.TILE,
    FileKind.EDS,
    FileKind.SIDECAR,
    FileKind.STANDARD,
    FileKind.STANDARD_EDS,
    FileKind.STANDARD_SIDECAR,
)
_PARTNERS = {  # for a tile's or standard's files: (image, maps, sidecar) suffixes per folder
    "tiles": (".tif", ".eds.tif", ".json"),
    "standards": (".tif", ".eds.tif", ".json"),
}


def default_store(session_dir: Path) -> Path:
    """``SESSION.semlive/`` beside the session folder (Contract 2)."""
    return session_dir.parent / f"{session_dir.name}.semlive"


class Ingestor:
    """Acquisition for one session folder into one store (one writer per store)."""

    def __init__(
        self, session_dir: Path, store_dir: Path, settings: AcquisitionSettings | None = None
    ) -> None:
        self.settings = settings or AcquisitionSettings()
        self.root = Path(session_dir).resolve()
        if not self.root.is_dir():
            raise InputDataError(
                f"session folder {session_dir} does not exist or is not a "
                "folder; give the folder the SEM writes into",
                path=session_dir,
            )
        self.store = Path(store_dir)
        self._lock = self._acquire_lock()
        self.ledger = Ledger(self.store / "ledger.sqlite")
        with self.ledger.transaction() as db:  # later commands find the session from the store
            Ledger.set_meta(db, "session_dir", str(self.root))
        self.watcher = FolderWatcher(self.root, self.settings.observer)
        self.settler = Settler(self.settings.settle_polls)
        self.session: SessionInfo | None = None
        self.finished = False
        # bytes of image, maps and sidecar files taken but not yet paired (path -> checksum,
        # bytes); dropped once their tile or standard is complete
        self._fresh: dict[str, tuple[str, bytes]] = {}
        self._polls = 0

    def _acquire_lock(self) -> IO[str]:
        try:
            self.store.mkdir(parents=True, exist_ok=True)
            handle = (self.store / ".writer.lock").open("w")
        except OSError as exc:
            raise LedgerError(
                f"cannot create the store {self.store} ({exc.strerror}); expected "
                "a writable folder — choose another --store",
                path=self.store,
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise LedgerError(
                f"another semlive process is writing the store {self.store}; "
                "only one writer per store — stop it or use another --store",
                path=self.store,
            ) from None
        return handle

    def close(self) -> None:
        self.watcher.close()
        self.ledger.close()
        self._lock.close()

    def __enter__(self) -> Ingestor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ----------------------------------------------------------------------------
    def run(self, *, once: bool = False, stop: Any = None) -> Iterator[Event]:
        """Poll until the session is done (or, with ``once``, until what is there is taken)."""
        quiet = 0
        while not self.finished and not (stop is not None and stop.is_set()):
            emitted = 0
            for event in self.scan_events():  # one at a time: a big folder is not held in memory
                emitted += 1
                yield event
            quiet = 0 if (emitted or self.settler.pending()) else quiet + 1
            settled = not self.settler.pending()
            if once and (settled or (self._polls > self._once_limit() and quiet >= 1)):
                return
            self.watcher.wait(self.settings.poll_interval_s)

    def _once_limit(self) -> int:
        return self.settings.settle_polls + self.settings.parse_retries + 2

    def poll(self) -> list[Event]:
        """One scan: settle, read what is ready, record it; returns the events, in order."""
        return list(self.scan_events())

    def scan_events(self) -> Iterator[Event]:
        """One scan, as :meth:`poll`, yielding each event as soon as it is made."""
        self._polls += 1
        scan = self.watcher.scan()
        ready = self.settler.update(scan, self.watcher.completed())
        ready.sort(key=lambda p: (p != "session.json", scan[p][1], KIND_ORDER[classify(p)[0]], p))
        for path in ready:
            yield from self._take(path, *scan[path])
        if self._done_arrived() and not self.settler.pending():
            yield from self._finish()

    def _done_arrived(self) -> bool:
        row = self.ledger.current("DONE")
        return row is not None and row.state == "ingested"

    # -- one file ----------------------------------------------------------------------------
    def _take(self, path: str, size: int, mtime_ns: int) -> list[Event]:
        state = self.settler.files[path]
        row = self.ledger.current(path)
        if (
            row is not None
            and row.state in _TERMINAL
            and (row.size, row.mtime_ns) == (size, mtime_ns)
        ):
            state.done = True  # taken before (a restart): nothing to read again
            if row.kind == FileKind.SESSION and self.session is None:
                return self._open_session(path, size, mtime_ns)
            if row.state == "ingested" and path.startswith("tiles/") and self.session is not None:
                return self._reconcile_tile(path, row)
            return []
        kind, item = classify(path)
        if size < 0:
            return self._quarantine(
                path,
                kind,
                item,
                0,
                0,
                None,
                "is a symbolic link; semlive "
                "reads only regular files inside the session folder — copy "
                "the file in instead",
            )
        if kind is FileKind.UNKNOWN:
            self._write(
                FileRow(
                    path,
                    kind,
                    item,
                    size,
                    mtime_ns,
                    None,
                    "ignored",
                    "not part of the session-folder format (docs/session-folder.md)",
                )
            )
            state.done = True
            return []
        if kind is not FileKind.SESSION and self.session is None:
            return []  # everything waits for session.json
        data = self._read(path)
        if data is None or len(data) != size:
            return []  # changed since the scan: settle again
        return self._take_bytes(path, kind, item, size, mtime_ns, data)

    def _read(self, path: str) -> bytes | None:
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root):
            return None
        try:
            return target.read_bytes()
        except OSError:
            return None

    def _take_bytes(
        self, path: str, kind: FileKind, item: str | None, size: int, mtime_ns: int, data: bytes
    ) -> list[Event]:
        state = self.settler.files[path]
        checksum = rd.checksum(data)
        known = [r for r in self.ledger.rows(path) if r.checksum == checksum]
        if known and known[-1].state in _TERMINAL:  # the same content again: not re-ingested
            self._write(
                FileRow(
                    path, kind, item, size, mtime_ns, checksum, known[-1].state, known[-1].reason
                )
            )
            state.done = True
            return []
        try:
            events = self._parse(path, kind, item, data)
        except InputDataError as exc:
            state.failures += 1
            state.last_error = str(exc)
            quiet_s = time.monotonic() - state.since
            if (
                state.failures < self.settings.parse_retries
                or quiet_s < self.settings.quarantine_after_s
            ):
                return []  # retry on a later scan while it stays unchanged
            return self._quarantine(path, kind, item, size, mtime_ns, checksum, str(exc))
        except Exception as exc:  # a reader's bug must not stop the session: keep the file aside
            logger.exception("unexpected error reading %s", path)
            reason = (
                f"could not be read because of an internal error ({type(exc).__name__}: "
                f"{exc}); the file is kept — please report this with the file"
            )
            return self._quarantine(path, kind, item, size, mtime_ns, checksum, reason)
        if kind in _PAIRED:  # its partners may come on a later scan: no second read then
            self._fresh[path] = (checksum, data)
        with self.ledger.transaction() as db:
            Ledger.drop_pending(db, path)
            superseded = Ledger.supersede(db, path, checksum)
            Ledger.record(db, FileRow(path, kind, item, size, mtime_ns, checksum, "ingested", None))
        if superseded:
            logger.info(
                "%s was rewritten with new content; the earlier version is superseded", path
            )
        state.done = True
        return events + self._pair(path, kind, item)

    def _quarantine(
        self,
        path: str,
        kind: FileKind,
        item: str | None,
        size: int,
        mtime_ns: int,
        checksum: str | None,
        reason: str,
    ) -> list[Event]:
        self._write(FileRow(path, kind, item, size, mtime_ns, checksum, "quarantined", reason))
        if path in self.settler.files:
            self.settler.files[path].done = True
        logger.warning("quarantined %s: %s", path, reason)
        return [FileQuarantined(path, reason)]

    def _write(self, row: FileRow) -> None:
        with self.ledger.transaction() as db:
            if row.checksum is not None:
                Ledger.drop_pending(db, row.path)
            Ledger.record(db, row)

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self, path: str, kind: FileKind, item: str | None, data: bytes) -> list[Event]:
        """Validate a file; events that need no partner file are returned at once."""
        s, limit = self.session, self.settings.max_image_pixels
        if kind is FileKind.SESSION:
            self.session = rd.read_session(data, path)
            return [SessionOpened(self.session)]
        if kind is FileKind.DONE or s is None:
            return []
        name = str(item)
        if kind is FileKind.TILE:
            rd.read_tile(data, path, name, s, limit)
        elif kind is FileKind.SIDECAR:
            rd.read_sidecar(data, path, name, s)
        elif kind in (FileKind.EDS, FileKind.STANDARD_EDS):
            shape = s.tile_shape if kind is FileKind.EDS else None
            rd.read_eds(data, path, name, s, limit, shape)
        elif kind is FileKind.STANDARD:
            rd.read_standard_image(data, path, limit)
        elif kind is FileKind.STANDARD_SIDECAR:
            rd.read_standard_sidecar(data, path, s)
        elif kind is FileKind.EPMA:
            return [EpmaProfileReady(rd.read_epma(data, path))]
        elif kind is FileKind.SPECTRA:
            return [SpectraReady(self.read_spectra(path))]
        return []

    def read_spectra(self, path: str) -> Any:
        from semlive.acquisition import _spectra_readers as sr

        s = self.session
        assert s is not None
        limit = self.settings.max_spectra_values
        full = self.root / path
        suffix = path.lower().rsplit(".", 1)[-1]
        if suffix == "msa":
            return sr.read_msa(full, path, max_values=limit)
        if suffix == "bcf":
            return sr.read_bcf(full, path, max_values=limit)
        if s.spectra_channel_width_ev is None:
            raise InputDataError(
                f"{path}: spectra arrived but session.json has no spectra "
                "section (channel_offset_ev, channel_width_ev, channels); "
                "declare it",
                path=path,
            )
        return sr.read_spectra_npz(
            full,
            path,
            channel_offset_ev=s.spectra_channel_offset_ev or 0.0,
            channel_width_ev=s.spectra_channel_width_ev,
            channels=s.spectra_channels,
            beam_energy_kev=s.beam_energy_kev,
            max_values=limit,
        )

    def _open_session(self, path: str, size: int, mtime_ns: int) -> list[Event]:
        data = self._read(path)
        if data is None:
            return []
        self.session = rd.read_session(data, path)
        return [SessionOpened(self.session)]

    # -- tiles and standards: an image, optional maps and a sidecar ---------------------------
    def _pair(self, path: str, kind: FileKind, item: str | None) -> list[Event]:
        if item is None or kind not in _PAIRED:
            return []
        folder = path.split("/", 1)[0]
        image, maps, side = (f"{folder}/{item}{suffix}" for suffix in _PARTNERS[folder])
        image_data, maps_data, side_data = (self._ingested_bytes(p) for p in (image, maps, side))
        if image_data is not None and side_data is not None:
            for done in (image, maps, side):  # complete: later updates re-read from disk
                self._fresh.pop(done, None)
        if image_data is None or side_data is None:
            return []
        if kind is FileKind.EDS and maps_data is not None:  # maps after the sidecar: an update
            recorded = self.ledger.tile_checksums(item)[:2]
            if recorded == (rd.checksum(image_data), rd.checksum(side_data)):
                eds = self._maps(maps, item, maps_data)
                with self.ledger.transaction() as db:
                    Ledger.set_tile_eds(db, item, eds.checksum)
                return [EdsReady(item, eds)]
        if folder == "standards":
            return [self._standard(item, image_data, side_data, maps_data)]
        return self._tile_ready(item, image_data, side_data, maps, maps_data)

    def _reconcile_tile(self, path: str, row: FileRow) -> list[Event]:
        """After a crash between recording a file and pairing it, pair it now (once)."""
        item = str(row.item)
        image, maps, side = (f"tiles/{item}{x}" for x in _PARTNERS["tiles"])
        wanted = tuple(self._ingested_checksum(p) for p in (image, side, maps))
        if wanted[0] is None or wanted[1] is None:
            return []
        recorded = self.ledger.tile_checksums(item)
        if recorded == wanted:
            return []
        if recorded[:2] == wanted[:2]:  # only the maps are new
            return self._pair(maps, FileKind.EDS, item) if wanted[2] else []
        return self._pair(side, FileKind.SIDECAR, item)

    def _ingested_checksum(self, path: str) -> str | None:
        row = self.ledger.current(path)
        return row.checksum if row is not None and row.state == "ingested" else None

    def _ingested_bytes(self, path: str) -> bytes | None:
        row = self.ledger.current(path)
        if row is None or row.state != "ingested":
            return None
        fresh = self._fresh.get(path)
        if fresh is not None and fresh[0] == row.checksum:
            return fresh[1]
        data = self._read(path)
        return data if data is not None and rd.checksum(data) == row.checksum else None

    def _maps(self, path: str, item: str, data: bytes | None) -> Any:
        s = self.session
        assert s is not None
        assert data is not None
        shape = s.tile_shape if path.startswith("tiles/") else None
        return rd.read_eds(data, path, item, s, self.settings.max_image_pixels, shape)

    def _tile_ready(
        self,
        tile: str,
        image_data: bytes,
        side_data: bytes,
        maps_path: str,
        maps_data: bytes | None,
    ) -> list[Event]:
        s = self.session
        assert s is not None
        image = rd.read_tile(
            image_data, f"tiles/{tile}.tif", tile, s, self.settings.max_image_pixels
        )
        side = rd.read_sidecar(side_data, f"tiles/{tile}.json", tile, s)
        maps = None if maps_data is None else self._maps(maps_path, tile, maps_data)
        with self.ledger.transaction() as db:
            version = Ledger.put_tile(
                db,
                tile,
                side.row,
                side.col,
                side.stage_x_um,
                side.stage_y_um,
                side.acquired_at.isoformat(),
                image.checksum,
                side.checksum,
                None if maps is None else maps.checksum,
            )
        events: list[Event] = [TileReady(side, image, version)]
        return events + ([EdsReady(tile, maps)] if maps is not None else [])

    def _standard(
        self, item: str, image_data: bytes, side_data: bytes, maps_data: bytes | None
    ) -> StandardMeasured:
        s = self.session
        assert s is not None
        image, maps, side = (f"standards/{item}{x}" for x in _PARTNERS["standards"])
        limit = self.settings.max_image_pixels
        measurement = rd.read_standard(image_data, image, side_data, side, item, s, limit)
        eds = None if maps_data is None else self._maps(maps, item, maps_data)
        return StandardMeasured(measurement, eds)

    # -- the end -------------------------------------------------------------------------------
    def _finish(self) -> list[Event]:
        """DONE is in and nothing settles any more: report what can never complete."""
        self._fresh.clear()
        events: list[Event] = []
        ingested = {r.path: r for r in self.ledger.rows() if r.state == "ingested"}
        for path, row in ingested.items():
            if row.item is None or "/" not in path:
                continue
            folder = path.split("/", 1)[0]
            image, _, side = (
                f"{folder}/{row.item}{x}" for x in _PARTNERS.get(folder, ("", "", ""))
            )
            missing = [p for p in (image, side) if p not in ingested]
            if missing:
                reason = (
                    f"{' and '.join(missing)} never arrived complete (or was quarantined) "
                    "before DONE, so this file cannot be used; re-export that "
                    f"{'tile' if folder == 'tiles' else 'measurement'} if it matters"
                )
                events += self._quarantine(
                    path, FileKind(row.kind), row.item, row.size, row.mtime_ns, row.checksum, reason
                )
        with self.ledger.transaction() as db:
            Ledger.set_meta(db, "done", "1")
        self.finished = True
        return [*events, SessionDone(self.ledger.counts())]

    def status(self) -> dict[str, Any]:
        return status_of(self.ledger)


def status_of(ledger: Ledger) -> dict[str, Any]:
    """What the ledger knows, for ``semlive status --json``."""
    status: dict[str, Any] = {
        "files": ledger.counts(),
        "tiles_ready": len(ledger.tiles()),
        "done": ledger.meta("done") == "1",
        "quarantined": [{"path": p, "reason": r} for p, r in ledger.quarantined()],
    }
    stitching = ledger.stitching_summary()
    if stitching is not None:
        status["stitching"] = stitching
    return status
