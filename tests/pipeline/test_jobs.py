"""Jobs: idempotent, recorded in the ledger, and a bad input is a recorded failure."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time

from semlive.pipeline import JobSpec, Pipeline, run_job
from semlive.pipeline._gate import TileGate
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

    def step() -> threading.Event:
        stepped = threading.Event()
        threading.Thread(target=lambda: (wait(None), stepped.set()), daemon=True).start()
        return stepped

    gate.tiles_waiting(True)
    assert step().wait(30)  # a job that has not worked yet does not wait
    time.sleep(3.0)  # the job works: it may now wait as long in all
    stepped = step()
    assert not stepped.wait(0.5)  # the training step waits
    gate.tiles_waiting(False)
    assert stepped.wait(30)
    gate.tiles_waiting(True)  # closed for good: the step waits out what is left, then goes on
    assert step().wait(30)
    assert step().wait(30)
    stepped = step()
    gate.close()  # the run ends: a waiting training goes on, and the gate is gone
    assert stepped.wait(30)
    assert TileGate.wait_hook(gate.run) is None


def test_a_tile_goes_before_waiting_regions_and_closes_the_gate(
    small_session, small_store, tmp_path
):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    pipeline = Pipeline(small_session, store, Settings())
    gate = pipeline._gate.event
    assert gate.is_set()

    def spec(kind: str, key: str) -> JobSpec:
        return pipeline._spec(kind, key, model="none", bounds=[0, 0, 8, 8], tiles=[key])

    pipeline._submit("segment", spec("segment", "0-0"))
    pipeline._submit("segment", spec("segment", "0-1024"))
    assert gate.is_set()  # regions alone: training shares the CPU with them
    pipeline._submit("segment", spec("segment_tile", "t"))
    assert not gate.is_set()  # a tile waits: training waits
    lane = pipeline._lanes["segment"]
    assert [(p.kind, p.key) for p in lane.pending] == [("segment_tile", "t"), ("segment", "0-1024")]
    while pipeline._busy():  # all fail (no model "none"): recorded, the lane empties
        pipeline._reap()
        time.sleep(0.01)
    assert gate.is_set()
    assert [f["key"] for f in pipeline.failures] == ["0-0", "t", "0-1024"]
    pipeline.close()  # run() ends with it; this test drove the pipeline by hand


def test_a_new_model_replaces_the_one_in_use_only_when_it_segments_better(tmp_path, stitch):
    """A training job with a model in use scores both on the validation tiles that model did
    not train on, and publishes the new one only if it scores higher."""
    from semlive.virtual_sem import simulate

    simulate(tmp_path / "session", "tiny", seed=1)
    store = stitch(tmp_path / "session", tmp_path / "store")
    models = store / "models"
    quick = {"patch_px": 64, "batch_size": 2, "patches_per_epoch": 4}
    quick |= {"min_labelled_px": 1_000, "min_olivine_px": 10}

    def train(key: str, epochs: int, current: str | None) -> dict:
        settings = Settings.model_validate({"olivine": {**quick, "epochs": epochs}})
        args = {"current": current}
        return run_job(JobSpec("train", key, str(store), settings.model_dump_json(), args))

    def published() -> dict:
        db = sqlite3.connect(store / "ledger.sqlite")
        try:
            (value,) = db.execute("SELECT value FROM meta WHERE key = 'pipeline.model'").fetchone()
        finally:
            db.close()
        return json.loads(value)

    first = train("olivine", 2, None)
    assert first["model"] == first["trained"]
    assert first["compared"] is None
    assert published()["model"] == first["model"]
    # the same model again (its training resumes, finished): a tie keeps the model in use.
    # The model in use is its network before the refit on all tiles (which trained on every
    # tile, so left none to compare on): the new model is scored as that network too
    held_out = models / first["model"] / "training" / "held_out"
    shutil.copytree(held_out, models / "twin")
    again = train("again", 2, "twin")
    assert again["trained"] == first["model"]
    assert again["compared"]["tiles"] >= 1  # validation tiles: "twin" did not train on them
    assert again["compared"]["trained_iou"] == again["compared"]["current_iou"]
    assert again["model"] == "twin"
    assert published()["compared"] is None  # not published: a restart resumes with the first
    # a model in use that finds no olivine: the new one replaces it
    shutil.copytree(held_out, models / "blind")
    card = json.loads((models / "blind" / "card.json").read_text())
    (models / "blind" / "card.json").write_text(json.dumps({**card, "dlth": 2.0}))
    third = train("third", 3, "blind")
    assert third["compared"]["current_iou"] == 0.0
    assert third["compared"]["trained_iou"] > 0.0
    assert third["model"] == third["trained"] != first["model"]
    assert published()["model"] == third["model"]
    olivine = (models / "olivine" / "card.json").read_bytes()
    assert olivine == (models / third["model"] / "card.json").read_bytes()


def test_the_advice_job_trains_the_subsets_it_lacks_and_scores_them_alike(tmp_path, stitch):
    """Between trainings the advice trains on a quarter, a half and all of the EDS tiles;
    after a training it takes that training's network IoU as the point of all of them. Every
    point is scored on the same validation tiles, the earlier advice's points are kept, and
    no subset model is left in the store."""
    from semlive.pipeline._advice import advice_subsets
    from semlive.virtual_sem import simulate

    simulate(tmp_path / "session", "tiny", seed=1, eds_every=1)
    store = stitch(tmp_path / "session", tmp_path / "store")
    quick = {"patch_px": 64, "batch_size": 2, "patches_per_epoch": 4, "epochs": 1}
    quick |= {"min_labelled_px": 1_000, "min_olivine_px": 10}
    settings = Settings.model_validate({"olivine": quick})

    def advice(key: str, **args: object) -> dict:
        return run_job(JobSpec("advice", key, str(store), settings.model_dump_json(), args))

    alone = advice("eds", planned=9)
    training = len(alone["curve"])
    assert 3 <= training <= len(advice_subsets(9))  # of 9 EDS tiles, about 7 train
    assert [p["labelled_px"] for p in alone["curve"]] == sorted(
        p["labelled_px"] for p in alone["curve"]
    )
    assert alone["eds_tiles"] == 9
    assert alone["area_fraction"] == 1.0
    assert alone["verdict"] in ("enough", "keep acquiring EDS")
    largest = alone["curve"][-1]
    full = {"model": "m", "trained": "m", "val_iou": 0.1, "network_val_iou": 0.5}
    after = advice("eds-after", planned=9, full=full, history=alone["curve"])
    assert after["curve"][:training] == alone["curve"]  # the earlier points kept
    new = after["curve"][training:]
    assert new[-1] == {"labelled_px": largest["labelled_px"], "iou": 0.5}  # the network's
    assert [p["labelled_px"] for p in new[:-1]] == [p["labelled_px"] for p in alone["curve"][:-1]]
    assert [p["iou"] for p in new[:-1]] == [p["iou"] for p in alone["curve"][:-1]]  # seeded
    assert not [m for m in (store / "models").iterdir() if m.name.startswith(".advice")]


def test_advice_between_trainings_every_step_of_the_planned_area_until_enough(
    small_session, small_store, tmp_path
):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    pipeline = Pipeline(small_session, store, Settings())
    try:
        assert pipeline.settings.pipeline.advice_every == 0.05  # of 36 planned tiles: 2
        assert not pipeline._advice_due(20)  # no training yet
        pipeline.tried_at_eds = pipeline.advised_at_eds = 4
        assert not pipeline._advice_due(20)  # a training tried, but no model from it
        pipeline.model = "olivine"
        assert not pipeline._advice_due(5)
        assert pipeline._advice_due(6)
        pipeline.advice = {"enough": False}
        assert pipeline._advice_due(6)
        pipeline.advice = {"enough": True}  # said: no more trainings for it between trainings
        assert not pipeline._advice_due(30)
        pipeline.advice = None
        pipeline.finalising = True
        assert not pipeline._advice_due(30)
        pipeline.finalising = False
        off = Settings.model_validate({"pipeline": {"advice_every": 0}})
        pipeline.settings = off
        assert not pipeline._advice_due(30)
    finally:
        pipeline.close()
