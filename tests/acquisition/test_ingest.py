"""Acquisition end to end on simulated sessions: every good file once, every bad one explained."""

import json
import threading
import time
from collections import Counter

from semlive.acquisition import (
    FileQuarantined,
    Ingestor,
    Ledger,
    SessionDone,
    SessionOpened,
    SpectraReady,
    StandardMeasured,
    TileReady,
)
from semlive.acquisition._contract import is_ignored
from semlive.settings import AcquisitionSettings
from semlive.virtual_sem import simulate

_STATE = {
    "ingest": "ingested",
    "quarantine": "quarantined",
    "incomplete": "quarantined",
    "ignore": "ignored",
}


def _expected_states(session, live=True):
    """Final ledger states the writer's log implies, one per file version.

    A reader that only sees the finished folder never sees a version that was later replaced.
    """
    versions: dict[str, list[str]] = {}
    for line in (session / "_truth" / "writer_log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if is_ignored(entry["path"]):
            continue
        states = versions.setdefault(entry["path"], [])
        if entry["expect"] == "duplicate":
            continue
        if entry["expect"] == "supersede":
            if live:
                states[-1] = "superseded"
                states.append("ingested")
        else:
            states.append(_STATE[entry["expect"]])
    return Counter(s for states in versions.values() for s in states)


def _ledger_state(store):
    ledger = Ledger(store / "ledger.sqlite")
    try:
        return ledger.counts(), dict(ledger.quarantined())
    finally:
        ledger.close()


def test_live_faulty_session_ends_with_the_writers_log(tmp_path):
    """The SEM writes with every fault while acquisition watches (events and rescans)."""
    session, store = tmp_path / "session", tmp_path / "store"
    writer = threading.Thread(
        target=simulate, args=(session, "tiny", 3), kwargs={"faults": ("all",), "speed": 400.0}
    )
    writer.start()
    while not (session / "session.json").exists():
        time.sleep(0.01)
    settings = AcquisitionSettings(
        poll_interval_s=0.05, settle_polls=2, parse_retries=3, quarantine_after_s=1.0
    )
    with Ingestor(session, store, settings) as ingestor:
        assert ingestor.watcher.uses_events
        events = list(ingestor.run())
    writer.join()
    counts, reasons = _ledger_state(store)
    expected = _expected_states(session, live=True)
    assert expected["superseded"] == 2  # the re-acquired tile's image and sidecar
    assert {k: counts[k] for k in expected} == dict(expected)
    assert counts["pending"] == 0
    assert isinstance(events[-1], SessionDone)
    assert all(len(r) > 30 for r in reasons.values()), reasons
    faults = json.loads((session / "_truth" / "truth.json").read_text())["faults"]
    versions = [
        e.version
        for e in events
        if isinstance(e, TileReady) and e.sidecar.tile == faults["rewrite"][0]
    ]
    assert versions[0] == 1
    assert max(versions) > 1  # re-acquired: later stages redo it
    duplicate = [
        e for e in events if isinstance(e, TileReady) and e.sidecar.tile == faults["duplicate"][0]
    ]
    assert len(duplicate) == 1


def test_faulty_session_folder_ends_with_the_writers_log(tiny_faulty_session, tmp_path, ingest_all):
    events = ingest_all(tiny_faulty_session, tmp_path / "store")
    counts, reasons = _ledger_state(tmp_path / "store")
    expected = _expected_states(tiny_faulty_session, live=False)
    assert counts["pending"] == 0
    assert {k: counts[k] for k in expected} == dict(expected)
    assert isinstance(events[0], SessionOpened)
    assert isinstance(events[-1], SessionDone)
    assert all(len(r) > 30 and ";" in r for r in reasons.values()), reasons
    quarantined = {e.path for e in events if isinstance(e, FileQuarantined)}
    assert quarantined == set(reasons)
    assert sum(isinstance(e, StandardMeasured) for e in events) == 4
    assert sum(isinstance(e, SpectraReady) for e in events) == 1


def test_each_tile_is_ready_once_unless_reacquired(tiny_faulty_session, tmp_path, ingest_all):
    events = ingest_all(tiny_faulty_session, tmp_path / "store")
    truth = json.loads((tiny_faulty_session / "_truth" / "truth.json").read_text())["faults"]
    ready = Counter(e.sidecar.tile for e in events if isinstance(e, TileReady))
    broken = {
        t for f in ("truncated", "corrupt", "bad-sidecar", "missing-sidecar") for t in truth[f]
    }
    assert not broken & set(ready)
    assert set(ready) == {f"r{r:03d}c{c:03d}" for r in range(3) for c in range(3)} - broken
    assert all(n == 1 for n in ready.values())  # duplicates are not taken twice


def test_a_restart_neither_loses_nor_repeats(
    tiny_faulty_session, tmp_path, ingest_all, ledger_snapshot
):
    store = tmp_path / "store"
    ingest_all(tiny_faulty_session, store)
    before = ledger_snapshot(store)
    again = ingest_all(tiny_faulty_session, store)
    assert ledger_snapshot(store) == before
    assert not [e for e in again if isinstance(e, TileReady | FileQuarantined)]
