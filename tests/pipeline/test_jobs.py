"""Jobs: idempotent, recorded in the ledger, and a bad input is a recorded failure."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time

from semlive.pipeline import JobSpec, Pipeline, run_job
from semlive.pipeline._jobs import TileGate
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


def test_training_waits_at_the_tile_gate_while_a_tile_waits_for_its_labels():
    gate = TileGate("test-gate")
    wait = TileGate.wait_hook(gate.run)
    assert wait is not None
    assert TileGate.wait_hook(None) is None
    assert TileGate.wait_hook("no such run") is None  # a Dask worker: never waits
    wait(None)  # open: returns at once
    gate.tiles_waiting(True)
    stepped = threading.Event()
    step = threading.Thread(target=lambda: (wait(None), stepped.set()), daemon=True)
    step.start()
    assert not stepped.wait(0.5)  # the training step waits
    gate.tiles_waiting(False)
    assert stepped.wait(30)
    gate.tiles_waiting(True)
    stepped.clear()
    step = threading.Thread(target=lambda: (wait(None), stepped.set()), daemon=True)
    step.start()
    assert not stepped.wait(0.5)
    gate.close()  # the run ends: a waiting training goes on, and the gate is gone
    assert stepped.wait(30)
    assert TileGate.wait_hook(gate.run) is None


def test_the_gate_closes_while_the_segment_lane_holds_a_tile_job(
    small_session, small_store, tmp_path
):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    pipeline = Pipeline(small_session, store, Settings())
    gate = pipeline._gate.event
    assert gate.is_set()
    region = pipeline._spec("segment", "0-0", model="none", bounds=[0, 0, 8, 8], tiles=[])
    tile = pipeline._spec("segment_tile", "t", model="none", bounds=[0, 0, 8, 8], tiles=["t"])
    pipeline._submit("segment", region)
    assert gate.is_set()  # a region alone: training shares the CPU with it
    pipeline._submit("segment", tile)
    assert not gate.is_set()  # a tile queued behind the region: training waits
    while pipeline._busy():  # both fail (no model "none"): recorded, the lane empties
        pipeline._reap()
        time.sleep(0.01)
    assert gate.is_set()
    assert [f["kind"] for f in pipeline.failures] == ["segment", "segment_tile"]
    pipeline._gate.close()


def test_a_new_model_replaces_the_one_in_use_only_when_it_segments_better(tmp_path, stitch):
    """A training job with a model in use scores both on the validation tiles that model did
    not train on and publishes the better one."""
    from semlive.virtual_sem import simulate

    simulate(tmp_path / "session", "tiny", seed=1)
    store = stitch(tmp_path / "session", tmp_path / "store")
    quick = {
        "olivine": {
            "patch_px": 64,
            "batch_size": 2,
            "patches_per_epoch": 4,
            "min_labelled_px": 1_000,
            "min_olivine_px": 10,
        }
    }

    def train(epochs: int, current: str | None) -> dict:
        settings = Settings.model_validate(
            {**quick, "olivine": {**quick["olivine"], "epochs": epochs}}
        )
        spec = JobSpec(
            "train", "olivine", str(store), settings.model_dump_json(), {"current": current}
        )
        return run_job(spec)

    first = train(1, None)
    assert first["model"] == first["trained"]
    assert first["compared"] is None
    second = train(3, first["model"])
    compared = second["compared"]
    assert compared["tiles"] >= 1  # the first model's validation tiles: it did not train on them
    better = compared["trained_iou"] >= compared["current_iou"]
    assert second["model"] == (second["trained"] if better else first["model"])
    published = (store / "models" / "olivine" / "card.json").read_bytes()
    assert published == (store / "models" / second["model"] / "card.json").read_bytes()
