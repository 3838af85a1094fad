"""The ledger: ``STORE/ledger.sqlite`` (SQLite in WAL mode), the store's memory of every file.

One row per file *version* (path + checksum): pending (seen, not yet read) → ingested |
quarantined | superseded (a later version of the same path replaced it); ``ignored`` for files
outside the session-folder format. Tiles have their own table (the latest image and sidecar of
each). Every change is one transaction, so a crash at any moment leaves a consistent ledger; a
restart re-reads only files whose size or modification time differ from what is recorded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from semlive.errors import SemliveError

__all__ = ["FileRow", "Ledger", "LedgerError"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    item TEXT,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    checksum TEXT,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'ingested', 'quarantined', 'superseded', 'ignored')),
    reason TEXT,
    first_seen TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS files_version ON files (path, ifnull(checksum, ''));
CREATE INDEX IF NOT EXISTS files_state ON files (state);
CREATE TABLE IF NOT EXISTS tiles (
    tile TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
    col INTEGER NOT NULL,
    stage_x_um REAL NOT NULL,
    stage_y_um REAL NOT NULL,
    acquired_at TEXT NOT NULL,
    image_checksum TEXT NOT NULL,
    sidecar_checksum TEXT NOT NULL,
    eds_checksum TEXT,
    version INTEGER NOT NULL
);
"""


class LedgerError(SemliveError, OSError):
    """The ledger cannot be opened or written (unwritable store, another writer, disk full)."""


@dataclass(frozen=True, slots=True)
class FileRow:
    path: str
    kind: str
    item: str | None
    size: int
    mtime_ns: int
    checksum: str | None
    state: str
    reason: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """The SQLite ledger of one store; one writer at a time (a lock file guards it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(
                f"cannot open the ledger {path} ({exc}); expected a writable store "
                "folder — choose another --store",
                path=path,
            ) from None

    def ensure_tables(self, script: str) -> None:
        """Create a later stage's own tables (``CREATE TABLE IF NOT EXISTS`` statements)."""
        with self.transaction() as db:
            for statement in script.split(";"):
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerError(
                f"cannot write the ledger {self.path} ({exc}); check the disk "
                "and that no other semlive writes this store",
                path=self.path,
            ) from None

    # -- reads ---------------------------------------------------------------------------
    def rows(self, path: str | None = None) -> list[FileRow]:
        sql = "SELECT path, kind, item, size, mtime_ns, checksum, state, reason FROM files"
        args: tuple[str, ...] = ()
        if path is not None:
            sql, args = sql + " WHERE path = ?", (path,)
        return [FileRow(*r) for r in self._db.execute(sql + " ORDER BY id", args)]

    def current(self, path: str) -> FileRow | None:
        """The newest non-superseded row of a path."""
        rows = [r for r in self.rows(path) if r.state != "superseded"]
        return rows[-1] if rows else None

    def counts(self) -> dict[str, int]:
        result = dict.fromkeys(("pending", "ingested", "quarantined", "superseded", "ignored"), 0)
        for state, n in self._db.execute("SELECT state, count(*) FROM files GROUP BY state"):
            result[state] = n
        return result

    def quarantined(self) -> list[tuple[str, str]]:
        return list(
            self._db.execute(
                "SELECT path, reason FROM files WHERE state = 'quarantined' ORDER BY id"
            )
        )

    def tiles(self) -> dict[str, tuple[int, int, float, float, str, int]]:
        return {
            r[0]: r[1:]
            for r in self._db.execute(
                "SELECT tile, row, col, stage_x_um, stage_y_um, acquired_at, version FROM tiles"
            )
        }

    def tile_checksums(self, tile: str) -> tuple[str | None, str | None, str | None]:
        """(image, sidecar, EDS maps) checksums recorded for a tile; Nones when not ready."""
        row = self._db.execute(
            "SELECT image_checksum, sidecar_checksum, eds_checksum FROM tiles WHERE tile=?", (tile,)
        ).fetchone()
        return (None, None, None) if row is None else (row[0], row[1], row[2])

    def stitching_summary(self) -> dict[str, Any] | None:
        """Stitching QC from the stages' tables, or None before stitching ran."""
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not {"placements", "pairs"} <= tables:
            return None
        placed, linked, worst = self._db.execute(
            "SELECT count(*), sum(linked), max(residual_px) FROM placements"
        ).fetchone()
        accepted, rejected = self._db.execute(
            "SELECT sum(accepted), count(*) - sum(accepted) FROM pairs"
        ).fetchone()
        worst_tiles = [
            {"tile": t, "residual_px": r}
            for t, r in self._db.execute(
                "SELECT tile, residual_px FROM placements ORDER BY residual_px DESC LIMIT 5"
            )
        ]
        return {
            "tiles_placed": placed,
            "tiles_from_stage_model": placed - (linked or 0),
            "pairs_accepted": accepted or 0,
            "pairs_rejected": rejected or 0,
            "worst_residual_px": worst or 0.0,
            "worst_tiles": worst_tiles,
        }

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- writes (call inside transaction()) -------------------------------------------------
    @staticmethod
    def record(db: sqlite3.Connection, row: FileRow) -> None:
        """Insert or update the version (path, checksum) of a file."""
        now = _now()
        db.execute(
            "INSERT INTO files (path, kind, item, size, mtime_ns, checksum, state, reason, "
            "first_seen, updated) VALUES (?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (path, ifnull(checksum, '')) DO UPDATE SET size=excluded.size, "
            "mtime_ns=excluded.mtime_ns, state=excluded.state, reason=excluded.reason, "
            "updated=excluded.updated",
            (
                row.path,
                row.kind,
                row.item,
                row.size,
                row.mtime_ns,
                row.checksum,
                row.state,
                row.reason,
                now,
                now,
            ),
        )

    @staticmethod
    def supersede(db: sqlite3.Connection, path: str, keep_checksum: str) -> int:
        """Mark older versions of ``path`` superseded (ingested ones, and quarantined ones such
        as a write that stalled half-way and was later completed); returns how many."""
        cur = db.execute(
            "UPDATE files SET state='superseded', reason='replaced by a newer version', "
            "updated=? WHERE path=? AND state IN ('ingested', 'quarantined') "
            "AND ifnull(checksum,'') != ?",
            (_now(), path, keep_checksum),
        )
        return cur.rowcount

    @staticmethod
    def drop_pending(db: sqlite3.Connection, path: str) -> None:
        db.execute("DELETE FROM files WHERE path=? AND checksum IS NULL", (path,))

    @staticmethod
    def set_tile_eds(db: sqlite3.Connection, tile: str, eds_checksum: str) -> None:
        db.execute("UPDATE tiles SET eds_checksum=? WHERE tile=?", (eds_checksum, tile))

    @staticmethod
    def set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    @staticmethod
    def put_tile(
        db: sqlite3.Connection,
        tile: str,
        row: int,
        col: int,
        x_um: float,
        y_um: float,
        acquired_at: str,
        image_checksum: str,
        sidecar_checksum: str,
        eds_checksum: str | None,
    ) -> int:
        """Record a tile's latest image and sidecar; returns its version (1 for the first)."""
        old = db.execute(
            "SELECT version, image_checksum, sidecar_checksum FROM tiles WHERE tile=?", (tile,)
        ).fetchone()
        version = (
            1
            if old is None
            else old[0] + int((old[1], old[2]) != (image_checksum, sidecar_checksum))
        )
        db.execute(
            "INSERT INTO tiles VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(tile) DO UPDATE SET "
            "row=excluded.row, col=excluded.col, stage_x_um=excluded.stage_x_um, "
            "stage_y_um=excluded.stage_y_um, acquired_at=excluded.acquired_at, "
            "image_checksum=excluded.image_checksum, sidecar_checksum=excluded.sidecar_checksum, "
            "eds_checksum=excluded.eds_checksum, version=excluded.version",
            (
                tile,
                row,
                col,
                x_um,
                y_um,
                acquired_at,
                image_checksum,
                sidecar_checksum,
                eds_checksum,
                version,
            ),
        )
        return int(version)
