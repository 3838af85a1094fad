"""Any arrival order, duplicate writes and delays end in the same ledger (Hypothesis)."""

import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semlive.acquisition import Ingestor
from semlive.settings import AcquisitionSettings
from semlive.virtual_sem import simulate

POLLING = AcquisitionSettings(
    observer="polling",
    poll_interval_s=0.01,
    settle_polls=1,
    parse_retries=2,
    quarantine_after_s=0.0,
)


def _snapshot(store: Path):
    db = sqlite3.connect(store / "ledger.sqlite")
    try:
        files = sorted(db.execute("SELECT path, kind, item, size, checksum, state FROM files"))
        tiles = sorted(db.execute("SELECT * FROM tiles"))
    finally:
        db.close()
    return files, tiles


@pytest.fixture(scope="module")
def session_files(tmp_path_factory):
    """The files of a tiny session (in acquisition order) and the ledger of taking them all."""
    folder = tmp_path_factory.mktemp("tiny") / "session"
    simulate(folder, "tiny", seed=6)
    files = {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "_truth" not in p.parts and p.name != "DONE"
    }
    store = tmp_path_factory.mktemp("reference")
    with Ingestor(folder, store, POLLING) as ingestor:
        list(ingestor.run())
    return files, _snapshot(store)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_arrival_order_gives_the_same_ledger(session_files, data):
    files, reference = session_files
    names = sorted(files)
    order = data.draw(st.permutations(names), label="order")
    polls = data.draw(
        st.lists(st.integers(0, 2), min_size=len(names), max_size=len(names)),
        label="polls after each file",
    )
    again = data.draw(st.sets(st.sampled_from(names), max_size=4), label="written twice")
    with tempfile.TemporaryDirectory() as tmp:
        session, store = Path(tmp) / "session", Path(tmp) / "store"
        session.mkdir()
        with Ingestor(session, store, POLLING) as ingestor:
            for name, n_polls in zip(order, polls, strict=True):
                target = session / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(files[name])
                for _ in range(n_polls):
                    ingestor.poll()
                if name in again:
                    target.write_bytes(files[name])
            (session / "DONE").write_bytes(b"")
            list(ingestor.run())
        assert _snapshot(store) == reference
