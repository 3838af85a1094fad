"""Fixtures for acquisition tests: run an ingestor fast, and snapshot a ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from semlive.acquisition import Ingestor
from semlive.settings import AcquisitionSettings


@pytest.fixture
def fast_settings() -> AcquisitionSettings:
    """Quick polls for tests; files written by the simulator settle after one unchanged scan."""
    return AcquisitionSettings(
        poll_interval_s=0.02, settle_polls=1, parse_retries=2, quarantine_after_s=0.0
    )


@pytest.fixture
def ingest_all(fast_settings):
    """Run an ingestor on a finished session until SessionDone; return its events."""

    def _run(session: Path, store: Path, settings: AcquisitionSettings | None = None) -> list:
        with Ingestor(session, store, settings or fast_settings) as ingestor:
            return list(ingestor.run())

    return _run


@pytest.fixture
def ledger_snapshot():
    """The ledger without timestamps or row ids: what must not depend on timing."""

    def _snapshot(store: Path) -> dict[str, list[tuple]]:
        db = sqlite3.connect(store / "ledger.sqlite")
        try:
            files = sorted(
                db.execute("SELECT path, kind, item, size, checksum, state, reason FROM files")
            )
            tiles = sorted(db.execute("SELECT * FROM tiles"))
        finally:
            db.close()
        return {"files": files, "tiles": tiles}

    return _snapshot
