"""The pipeline's jobs: each one idempotent, recorded in the ledger, runnable anywhere.

A job is a plain function of a :class:`JobSpec` (picklable, so a Dask worker can run it as well
as a local thread) that reads its inputs from the store, works out a fingerprint of them and
skips the work when the ledger's ``jobs`` table already holds it done with the same
fingerprint. Otherwise it is marked running, done, and marked done with its result, each in
one transaction. A job killed midway stays ``running`` and runs again on the next start; a job
whose inputs changed (a re-fused region, a new model, more EDS frames) runs again because its
fingerprint differs. The store is the only state jobs share.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import Ledger
from semlive.errors import InputDataError
from semlive.pipeline._gate import TileGate
from semlive.settings import Settings

__all__ = ["JOBS_SCHEMA", "MODEL_NAME", "PUBLISHED_MODEL", "JobBook", "JobSpec", "run_job"]

log = logging.getLogger(__name__)

MODEL_NAME = "olivine"  # the published model of a run: STORE/models/olivine
PUBLISHED_MODEL = "pipeline.model"  # ledger meta: the training result behind it
START_MODEL_PREFIX = ".olivine-start-"  # STORE/models/<this><digest>: pipeline.start_model
JOBS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed')),
    attempts INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    started TEXT NOT NULL,
    finished TEXT,
    seconds REAL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS series (
    name TEXT NOT NULL,
    at TEXT NOT NULL,
    value TEXT NOT NULL
)
"""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One unit of work: ``kind`` names the function, ``key`` what it works on."""

    kind: str
    key: str
    store: str
    settings: str  # Settings as JSON (picklable, versionless)
    args: dict[str, Any] = field(default_factory=dict)


class JobBook:
    """The ``jobs`` and ``series`` tables of a store's ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        ledger.ensure_tables(JOBS_SCHEMA)

    def done_with(self, kind: str, key: str, inputs: str) -> dict[str, Any] | None:
        """The result of ``kind``/``key`` if it is done with these inputs, else None."""
        row = self.ledger._db.execute(
            "SELECT result FROM jobs WHERE kind = ? AND key = ? AND inputs = ? AND state = 'done'",
            (kind, key, inputs),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0] or "{}"))

    def start(self, kind: str, key: str, inputs: str) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT INTO jobs (kind, key, inputs, state, attempts, started) "
                "VALUES (?, ?, ?, 'running', 1, ?) ON CONFLICT (kind, key) DO UPDATE SET "
                "inputs = excluded.inputs, state = 'running', started = excluded.started, "
                "attempts = CASE WHEN jobs.inputs = excluded.inputs THEN jobs.attempts + 1 "
                "ELSE 1 END, error = NULL",
                (kind, key, inputs, _now()),
            )

    def finish(
        self, kind: str, key: str, inputs: str, result: dict[str, Any], seconds: float
    ) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'done', result = ?, finished = ?, seconds = ? "
                "WHERE kind = ? AND key = ? AND inputs = ?",
                (json.dumps(result, default=float), _now(), round(seconds, 3), kind, key, inputs),
            )

    def fail(self, kind: str, key: str, inputs: str, error: str) -> None:
        with self.ledger.transaction() as db:
            db.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished = ? "
                "WHERE kind = ? AND key = ? AND inputs = ?",
                (error, _now(), kind, key, inputs),
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """Jobs per kind and state."""
        out: dict[str, dict[str, int]] = {}
        for kind, state, n in self.ledger._db.execute(
            "SELECT kind, state, count(*) FROM jobs GROUP BY kind, state"
        ):
            out.setdefault(kind, {})[state] = n
        return out

    def results(self, kind: str) -> dict[str, dict[str, Any]]:
        """The results of the done jobs of a kind, by key."""
        rows = self.ledger._db.execute(
            "SELECT key, result FROM jobs WHERE kind = ? AND state = 'done'", (kind,)
        )
        return {key: dict(json.loads(result or "{}")) for key, result in rows}

    def failures(self) -> list[dict[str, str]]:
        rows = self.ledger._db.execute(
            "SELECT kind, key, error FROM jobs WHERE state = 'failed' ORDER BY finished"
        )
        return [{"kind": k, "key": key, "error": e or ""} for k, key, e in rows]

    def record(self, name: str, value: Any) -> None:
        """Append a point to a metrics series (drift, latency, advice, ...)."""
        with self.ledger.transaction() as db:
            db.execute(
                "INSERT INTO series VALUES (?, ?, ?)",
                (name, _now(), json.dumps(value, default=float)),
            )

    def series(self, name: str) -> list[tuple[str, Any]]:
        rows = self.ledger._db.execute(
            "SELECT at, value FROM series WHERE name = ? ORDER BY rowid", (name,)
        )
        return [(at, json.loads(value)) for at, value in rows]


# -- running a job -------------------------------------------------------------------------


@contextmanager
def _book(store: Path) -> Iterator[JobBook]:
    ledger = Ledger(store / "ledger.sqlite")
    try:
        yield JobBook(ledger)
    finally:
        ledger.close()


def run_job(spec: JobSpec) -> dict[str, Any]:
    """Run one job (or find it done): its result, with ``skipped`` True when it was done."""
    store = Path(spec.store)
    settings = Settings.model_validate_json(spec.settings)
    try:
        fingerprint, work = _KINDS[spec.kind](store, settings, spec.args)
    except InputDataError as exc:  # its inputs are not usable (yet): recorded, the session goes on
        with _book(store) as book:
            if not book.results(spec.kind).get(spec.key):  # a done row is kept
                book.start(spec.kind, spec.key, "unusable")
                book.fail(spec.kind, spec.key, "unusable", str(exc))
        log.warning("%s %s: %s", spec.kind, spec.key, exc)
        return {"failed": str(exc), "skipped": False}
    with _book(store) as book:
        previous = book.done_with(spec.kind, spec.key, fingerprint)
        if previous is not None:
            return {**previous, "skipped": True}
        book.start(spec.kind, spec.key, fingerprint)
    started = time.perf_counter()
    try:
        result = work()
    except InputDataError as exc:  # bad input: recorded with its reason, the session goes on
        with _book(store) as book:
            book.fail(spec.kind, spec.key, fingerprint, str(exc))
        log.warning("%s %s: %s", spec.kind, spec.key, exc)
        return {"failed": str(exc), "skipped": False}
    except Exception as exc:  # recorded, then reported by the pipeline
        with _book(store) as book:
            book.fail(spec.kind, spec.key, fingerprint, f"{type(exc).__name__}: {exc}")
        raise
    seconds = time.perf_counter() - started
    with _book(store) as book:
        book.finish(spec.kind, spec.key, fingerprint, result, seconds)
    return {**result, "seconds": round(seconds, 3), "skipped": False}


Work = Callable[[], dict[str, Any]]


def _digest(*parts: bytes | str | NDArray[Any]) -> str:
    """A digest of ``parts``; arrays are hashed through their buffer, without a copy (a
    section's EDS tiles are some 0.4 GB)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(np.ascontiguousarray(part).data)
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x00")
    return h.hexdigest()


def _model_id(store: Path, name: str) -> str:
    folder = store / "models" / name
    card = (folder / "card.json").read_bytes()
    return _digest(name, card, str((folder / "weights.safetensors").stat().st_size))


# -- olivine: training ---------------------------------------------------------------------


def _training_digest(data: Any, settings: Settings) -> str:
    """The fingerprint of a training: its settings, every tile's data and the split."""
    parts: list[bytes | str | NDArray[Any]] = [settings.olivine.model_dump_json()]
    for tile in [*data.train, *data.validation]:
        parts += [tile.name, tile.bse, tile.label]
    parts.append(json.dumps(data.split, sort_keys=True, default=str))
    return _digest(*parts)


def _train(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """Train on every EDS tile the store holds now; the model's folder is named by the
    fingerprint of its training data, so a killed training resumes its own epochs. The new
    model replaces the one in use (``current``: an earlier training, or an earlier session's
    start model) only if it segments the validation tiles better (:func:`_compare`)."""
    from semlive.models.olivine import load_training_data

    only = None if args.get("tiles") is None else set(args["tiles"])
    data = load_training_data(store, settings.olivine, only)
    fingerprint = _training_digest(data, settings)
    name = f".{MODEL_NAME}-{fingerprint[:12]}"  # by the data: a killed training resumes
    current = args.get("current")
    against = ""  # the job is done with these data against this model in use
    if current and (store / "models" / current / "card.json").is_file():
        against = _model_id(store, current)

    def work() -> dict[str, Any]:
        from semlive.models.olivine import train_olivine

        wait = TileGate.wait_hook(args.get("run"))
        card = train_olivine(store, settings.olivine, name, progress=wait, data=data)
        compared = None if not against else _compare(store, settings, str(current), name, data)
        replaced = compared is None or compared["trained_iou"] > compared["current_iou"]
        val = card.metrics["validation"]
        result = {
            "model": name if replaced else str(current),
            "trained": name,
            "compared": compared,
            "eds_tiles": len(data.train) + len(data.validation),
            "training_tiles": len(card.training_tiles),
            "labelled_px": int(sum(t.labelled for t in data.train)),
            "epochs": card.training["epochs_run"],
            "dlth": card.dlth,
            "val_iou": val["iou"],
            "network_val_iou": card.metrics.get("network_validation", val)["iou"],
            "val_overall_accuracy": val["overall_accuracy"],
        }
        if replaced:  # published, and the model a restart resumes with
            _publish(store / "models" / name, store / "models" / MODEL_NAME)
            ledger = Ledger(store / "ledger.sqlite")
            try:
                with ledger.transaction() as db:
                    Ledger.set_meta(db, PUBLISHED_MODEL, json.dumps(result))
            finally:
                ledger.close()
        return result

    return _digest(fingerprint, against), work


def _compare(
    store: Path, settings: Settings, current: str, trained: str, data: Any
) -> dict[str, Any] | None:
    """The model in use and the one just trained, each as it segments, on the validation tiles
    the model in use did not train on (an earlier session's start model trained on none of
    this session's): None where no such tile is left. The new model is scored as it was
    before its refit on all EDS tiles (``training/held_out``), having never seen these tiles;
    its dlth and crystal check were chosen on them (and, with early stopping, its epoch by
    their loss), so the comparison leans its way: the model in use stays only when it is as
    good."""
    from semlive.models.olivine import score_model

    folder = store / "models" / current  # its card is there: the job's fingerprint read it
    if current == trained:
        return None
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    foreign = current.startswith(START_MODEL_PREFIX)
    seen = set() if foreign else set(card.get("training_tiles", []))
    tiles = [t for t in data.validation if t.name not in seen]
    if not tiles:
        return None
    # the new network as it was before its refit on all EDS tiles, these included
    held_out = store / "models" / trained / "training" / "held_out"
    ours_folder = held_out if (held_out / "card.json").is_file() else store / "models" / trained
    ours = score_model(ours_folder, tiles, settings.olivine)
    theirs = score_model(folder, tiles, settings.olivine)
    return {
        "tiles": len(tiles),
        "trained_iou": round(ours.iou, 4),
        "current_iou": round(theirs.iou, 4),
    }


def _advice(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """The learning curve at the current EDS area: the network trained again on the first
    quarter and half (in acquisition order) of the training tiles, and on all of them unless
    the training just done (``full``) gives that point, every model scored on the same
    held-out tiles; with the points of the earlier advice (``history``), the advice
    (:mod:`._advice`)."""
    from semlive.models.olivine import TrainingData, load_training_data

    only = None if args.get("tiles") is None else set(args["tiles"])
    data = load_training_data(store, settings.olivine, only)
    full = args.get("full")
    # the training this curve point is of, or (between trainings) the data, as a training's
    key = str(full.get("trained", full["model"])) if full else _training_digest(data, settings)
    fingerprint = _digest(
        key, settings.olivine.model_dump_json(), settings.pipeline.model_dump_json()
    )

    def work() -> dict[str, Any]:
        from semlive.models.olivine import train_olivine
        from semlive.pipeline._advice import advice_subsets, advise

        wait = TileGate.wait_hook(args.get("run"))
        ordered = sorted(data.train, key=lambda t: (t.acquired_at, t.name))
        # the curve is of the network's validation IoU: no crystal check to fit
        olivine = settings.olivine.model_copy(update={"crystal_check": False, "refit_epochs": 0})
        points = []
        for size in advice_subsets(len(ordered), with_all=full is None):
            subset = ordered[:size]
            if sum(t.olivine for t in subset) == 0:
                continue
            name = f".advice-{fingerprint[:12]}-{len(subset)}"
            subset_data = TrainingData(subset, data.validation, {})
            card = train_olivine(store, olivine, name, progress=wait, data=subset_data)
            shutil.rmtree(store / "models" / name, ignore_errors=True)
            labelled = sum(t.labelled for t in subset)
            points.append({"labelled_px": labelled, "iou": card.metrics["validation"]["iou"]})
        labelled = sum(t.labelled for t in ordered)
        if full is not None:
            iou = full.get("network_val_iou", full["val_iou"])
            points.append({"labelled_px": labelled, "iou": float(iou)})
        points = [*args.get("history", []), *points]  # the earlier advice's points too
        planned = int(args.get("planned") or 0)
        tiles = len(data.train) + len(data.validation)
        fraction = None if not planned else tiles / planned
        if len({p["labelled_px"] for p in points}) < 2:
            return {
                "enough": False,
                "verdict": "keep acquiring EDS",
                "message": "keep acquiring EDS: too few EDS tiles yet for a learning curve",
                "labelled_px": labelled,
                "area_fraction": fraction,
                "eds_tiles": tiles,
                "curve": points,
            }
        p = settings.pipeline
        advice = advise(points, labelled, p.advice_target_gain, fraction, p.advice_noise_iou)
        return {**advice.as_dict(), "eds_tiles": tiles}

    return fingerprint, work


def _publish(source: Path, target: Path) -> None:
    """Copy a trained model to its published name (weights, then card: each atomic)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("weights.safetensors", "card.json"):
        temporary = target / f"{name}.tmp"
        shutil.copyfile(source / name, temporary)
        os.replace(temporary, target / name)


# -- olivine: one region ---------------------------------------------------------------------

_SEGMENTERS: dict[tuple[str, str], Any] = {}  # per process: a model is loaded once


def _segmenter(store: Path, settings: Settings, model: str) -> Any:
    from semlive.models.olivine import OlivineSegmenter

    key = (str(store), model)
    if key not in _SEGMENTERS:
        for old in [k for k in _SEGMENTERS if k[0] == str(store)]:
            del _SEGMENTERS[old]  # one model per store at a time
        # no grey mapping by landmarks (semlive segment's): the mosaic grows while it is
        # segmented here, so a mapping decided on part of it could differ between runs
        fixed = settings.olivine.model_copy(update={"grey_landmarks": False})
        _SEGMENTERS[key] = OlivineSegmenter(store, fixed, model)
    return _SEGMENTERS[key]


def _segment(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """Olivine labels of one region; its fingerprint: the model and the BSE it sees."""
    import zarr

    model = str(args["model"])
    r0, c0, r1, c1 = (int(v) for v in args["bounds"])
    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    bse = root["bse"]["0"]
    rows, cols = bse.shape
    halo = settings.olivine.overlap_px // 2
    window = np.asarray(
        bse[max(r0 - halo, 0) : min(r1 + halo, rows), max(c0 - halo, 0) : min(c1 + halo, cols)]
    )
    o = settings.olivine
    inference = json.dumps([o.window_px, o.overlap_px, o.device, o.precision])
    fingerprint = _digest(_model_id(store, model), str((r0, c0, r1, c1)), inference, window)

    def work() -> dict[str, Any]:
        segmenter = _segmenter(store, settings, model)
        result = segmenter.segment_region((r0, c0, r1, c1))
        levels: Any = segmenter.probability
        p = np.asarray(levels[0][r0:r1, c0:c1])
        return {
            "model": model,
            "bounds": [r0, c0, r1, c1],
            "olivine_px": result.olivine_px,
            "scanned_px": result.scanned_px,
            "uncertain_px": int(((p > 64) & (p < 191)).sum()),  # probability 0.25-0.75
        }

    return fingerprint, work


# -- GDLS: the spectra fields, in order ------------------------------------------------------


def _gdls(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """Hand stitching events to the store's live GDLS (its state is in STORE/gdls, so the
    events of one store must reach it in order: one GDLS job at a time)."""

    def work() -> dict[str, Any]:
        from semlive.models.gdls import LiveGdls

        live = LiveGdls(store)
        done = []
        for event in args["events"]:
            done += live.handle(event)
        return {
            "fields": [
                {"field": f.field, "segments": f.segments, "seconds": round(f.seconds, 3)}
                for f in done
            ]
        }

    return _digest(str(time.time_ns()), str(os.getpid())), work  # never skipped


# -- calibration, catalogue ------------------------------------------------------------------


def _inputs_of_outputs(store: Path, kinds: tuple[str, ...]) -> str:
    """A fingerprint of what the done jobs of ``kinds`` produced (their inputs)."""
    ledger = Ledger(store / "ledger.sqlite")
    try:
        JobBook(ledger)
        rows = ledger._db.execute(
            f"SELECT kind, key, inputs FROM jobs WHERE state = 'done' AND kind IN "
            f"({', '.join('?' * len(kinds))}) ORDER BY kind, key",
            kinds,
        ).fetchall()
        epma = ledger._db.execute(
            "SELECT path, checksum FROM files WHERE kind = 'epma' AND state = 'ingested' "
            "ORDER BY path"
        ).fetchall()
    finally:
        ledger.close()
    return _digest(json.dumps(rows), json.dumps(epma))


def _calibrate(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """Drift fits, the BSE → mg# regression and the mg# map (over the olivine labels)."""
    fingerprint = _digest(
        _inputs_of_outputs(store, ("segment",)), settings.calibration.model_dump_json()
    )

    def work() -> dict[str, Any]:
        from semlive.calibration import calibrate_store

        report = calibrate_store(store, settings.calibration)
        fit = report.fit
        test = fit.test or fit.train
        return {
            "drift_mode": report.drift.get("mode"),
            "mg_refused": fit.refused,
            "mg_rmse": None if fit.refused or not test else test["rmse"],
            "mg_pixels": report.mgnumber_pixels,
        }

    return fingerprint, work


def _export(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """The final catalogue, its exports and the report."""
    fingerprint = _digest(
        _inputs_of_outputs(store, ("segment", "calibrate")), settings.catalogue.model_dump_json()
    )

    def work() -> dict[str, Any]:
        from semlive.catalogue import export_catalogue

        report = export_catalogue(store, settings.catalogue)
        return {
            "summary": report.catalogue.summary(),
            "report": str(report.files["report"]),
            "csv": str(report.files["csv"]),
        }

    return fingerprint, work


def _live_catalogue(store: Path, settings: Settings, args: dict[str, Any]) -> tuple[str, Work]:
    """Counts of the crystals that lie wholly inside completed regions (reads only)."""

    def work() -> dict[str, Any]:
        from semlive.catalogue import live_summary

        regions = [(int(a), int(b), int(c), int(d)) for a, b, c, d in args["regions"]]
        return live_summary(store, settings.catalogue, regions)

    return _digest(str(time.time_ns()), str(os.getpid())), work  # never skipped


_KINDS: dict[str, Callable[[Path, Settings, dict[str, Any]], tuple[str, Work]]] = {
    "train": _train,
    "advice": _advice,
    "segment": _segment,
    "segment_tile": _segment,
    "gdls": _gdls,
    "calibrate": _calibrate,
    "export": _export,
    "live_catalogue": _live_catalogue,
}
