"""SIGKILL at random moments, then restart: the same ledger as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from semlive.virtual_sem import simulate

SPEED = 110.0  # the tiny session's ~0.63 simulated hours take ~20 s


def _ingest(session, store):
    env = {
        **os.environ,
        "SEMLIVE_ACQUISITION__POLL_INTERVAL_S": "0.05",
        "SEMLIVE_ACQUISITION__QUARANTINE_AFTER_S": "1.0",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from semlive.cli import run; run()",
            "-q",
            "ingest",
            str(session),
            "--store",
            str(store),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _live(session, faults):
    writer = threading.Thread(
        target=simulate, args=(session, "tiny", 21), kwargs={"faults": faults, "speed": SPEED}
    )
    writer.start()
    while not session.exists():
        time.sleep(0.01)
    return writer


@pytest.mark.slow
def test_sigkill_at_random_moments_then_restart(tmp_path, ledger_snapshot):
    # Not "rewrite": whether a reader that is down sees a version before it is replaced depends
    # on when it is down, so the superseded rows legitimately differ; the rewrite is covered by
    # the live test in test_ingest.py.
    faults = (
        "duplicate",
        "late-sidecar",
        "truncated",
        "corrupt",
        "slow-write",
        "rename",
        "missing-sidecar",
        "bad-sidecar",
        "out-of-order",
        "foreign",
    )
    reference = tmp_path / "reference"
    writer = _live(reference, faults)
    assert _ingest(reference, tmp_path / "reference-store").wait(timeout=120) == 0
    writer.join()

    session, store = tmp_path / "killed", tmp_path / "killed-store"
    writer = _live(session, faults)
    rng = np.random.default_rng(0)
    kills = 0
    while writer.is_alive():  # kill and restart for as long as the SEM writes
        process = _ingest(session, store)
        time.sleep(rng.uniform(0.2, 1.2))  # some die starting up, most mid-work
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
    writer.join()
    assert _ingest(session, store).wait(timeout=120) == 0
    assert kills >= 20
    assert ledger_snapshot(store) == ledger_snapshot(tmp_path / "reference-store")
