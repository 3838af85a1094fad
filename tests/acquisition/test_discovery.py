"""Discovery with file-system events and with polling alone, and its readiness ladder."""

import shutil
import threading
import time

import pytest

from semlive.acquisition import Ingestor, SessionOpened, TileReady
from semlive.settings import AcquisitionSettings
from semlive.virtual_sem import simulate


@pytest.mark.parametrize("observer", ["auto", "polling"])
def test_a_live_session_is_taken_with_events_or_polling_alone(tmp_path, observer):
    session = tmp_path / "session"
    writer = threading.Thread(target=simulate, args=(session, "tiny", 8), kwargs={"speed": 600.0})
    writer.start()
    while not session.exists():
        time.sleep(0.01)
    settings = AcquisitionSettings(
        observer=observer, poll_interval_s=0.05, settle_polls=2, quarantine_after_s=1.0
    )
    with Ingestor(session, tmp_path / "store", settings) as ingestor:
        assert ingestor.watcher.uses_events is (observer == "auto")
        events = list(ingestor.run())
        diagnosis = (ingestor.ledger.counts(), ingestor.ledger.quarantined())
    writer.join()
    tiles = sorted(e.sidecar.tile for e in events if isinstance(e, TileReady))
    assert len(tiles) == 9, (tiles, diagnosis)


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(data)


def test_a_close_after_write_event_makes_a_file_ready_without_waiting(tmp_path):
    """With events a file closed after writing is read on the next scan; polling waits."""
    source = tmp_path / "source"
    simulate(source, "tiny", seed=1)
    data = (source / "session.json").read_bytes()
    for observer, scans_needed in (("auto", 1), ("polling", 5)):
        session = tmp_path / observer
        session.mkdir()
        settings = AcquisitionSettings(observer=observer, settle_polls=4, poll_interval_s=0.01)
        with Ingestor(session, tmp_path / f"{observer}-store", settings) as ingestor:
            ingestor.poll()
            _write(session / "session.json", data)
            time.sleep(0.3)  # let the event arrive
            scans = 0
            while True:
                scans += 1
                if any(isinstance(e, SessionOpened) for e in ingestor.poll()):
                    break
                assert scans < 10
        assert scans == scans_needed, observer


def test_a_half_written_file_is_not_taken_until_it_settles(tmp_path):
    source = tmp_path / "source"
    simulate(source, "tiny", seed=1)
    session = tmp_path / "session"
    session.mkdir()
    shutil.copy(source / "session.json", session / "session.json")
    tile = (source / "tiles" / "r000c000.tif").read_bytes()
    settings = AcquisitionSettings(
        observer="polling", settle_polls=2, poll_interval_s=0.01, parse_retries=2
    )
    with Ingestor(session, tmp_path / "store", settings) as ingestor:
        opened = [e for _ in range(3) for e in ingestor.poll()]
        assert [type(e) for e in opened] == [SessionOpened]
        (session / "tiles").mkdir()
        with (session / "tiles" / "r000c000.tif").open("wb") as f:
            for part in range(4):  # the SEM is still writing: the size changes every scan
                f.write(tile[part * len(tile) // 4 : (part + 1) * len(tile) // 4])
                f.flush()
                assert ingestor.poll() == []
        shutil.copy(source / "tiles" / "r000c000.json", session / "tiles" / "r000c000.json")
        events = []
        for _ in range(4):
            events += ingestor.poll()
        assert [type(e) for e in events] == [TileReady]
        assert ingestor.ledger.counts()["quarantined"] == 0
