"""Jobs: idempotent, recorded in the ledger, and a bad input is a recorded failure."""

from __future__ import annotations

import shutil
import sqlite3

from semlive.pipeline import JobSpec, run_job
from semlive.settings import Settings


def _rows(store):
    db = sqlite3.connect(store / "ledger.sqlite")
    try:
        return db.execute("SELECT kind, key, state, attempts, error FROM jobs").fetchall()
    finally:
        db.close()


def test_a_job_done_with_the_same_inputs_is_not_run_again(small_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    spec = JobSpec("calibrate", "store", str(store), Settings().model_dump_json())
    first = run_job(spec)
    assert not first["skipped"]
    assert first["drift_mode"].startswith("gain and offset")
    made = (store / "calibration" / "mgnumber_fit.json").stat().st_mtime_ns
    again = run_job(spec)
    assert again["skipped"]
    assert again["drift_mode"] == first["drift_mode"]
    assert (store / "calibration" / "mgnumber_fit.json").stat().st_mtime_ns == made
    assert _rows(store) == [("calibrate", "store", "done", 1, None)]


def test_unusable_inputs_are_a_recorded_failure_with_the_reason(small_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    spec = JobSpec("train", "olivine", str(store), Settings().model_dump_json(), {"tiles": []})
    result = run_job(spec)
    assert "no EDS-mapped tiles" in result["failed"]
    [(kind, key, state, _, error)] = _rows(store)
    assert (kind, key, state) == ("train", "olivine", "failed")
    assert "acquire some" in error
