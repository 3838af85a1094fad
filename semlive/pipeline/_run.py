"""``semlive run``: a live session from the SEM's folder to the catalogue.

One thread ingests and stitches (:func:`semlive.streaming.stitch_session`, the store's single
writer of the mosaic) and hands its events through a bounded queue to the pipeline's loop, which
turns them into jobs (:mod:`semlive.pipeline._jobs`) in lanes: ``segment`` (olivine labels, a
tile at once and each region again once it is complete), ``train`` (the olivine network, each
time the EDS-mapped tiles have grown enough), ``gdls`` (spectra fields), ``catalogue`` (live
counts, then calibration and the export). At most one job of a lane runs at a time, and at most
``pipeline.max_pending_jobs`` wait; beyond that the loop stops taking events, the queue fills
and stitching pauses: the SEM's files wait in its folder, nothing is dropped. Every job is in
the ledger, so a restart (after Ctrl-C or a kill) redoes exactly what was not done. Tiles come
first: while a placed tile waits for its labels, training waits between its steps (a local
executor's jobs share the CPU; see :class:`TileGate`).

A new model replaces the one in use only if it segments the validation tiles that one did not
train on better. On DONE, with every queue empty, the run finalises: the last training on all
EDS tiles (compared with ``pipeline.start_model`` only, so the end does not depend on when the
live trainings happened), every region segmented by the model it leaves in use, calibration
(drift, mg# map) and the catalogue export. A session already finished when the run starts (DONE
in its folder) is not trained live, since its regions would only be segmented again by the
final model: it is trained once, at the end (``pipeline.replay_live`` replays it as if live).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from semlive.acquisition import (
    FileQuarantined,
    Ledger,
    LedgerError,
    SessionDone,
    SpectraReady,
    StandardMeasured,
    TileReady,
)
from semlive.calibration import DriftAlert, drift_correction
from semlive.errors import InputDataError
from semlive.pipeline._executor import Executor, Handle, LocalExecutor
from semlive.pipeline._gate import TileGate
from semlive.pipeline._jobs import (
    MODEL_NAME,
    PUBLISHED_MODEL,
    START_MODEL_PREFIX,
    JobBook,
    JobSpec,
    run_job,
)
from semlive.pipeline._system import SystemMeter, return_large_buffers
from semlive.settings import Settings
from semlive.streaming import (
    RegionChanged,
    RegionComplete,
    SpectraMoved,
    SpectraPlaced,
    TilePlaced,
    stitch_session,
    sync_transforms,
)

__all__ = ["STATUS_FILE", "Pipeline", "RunResult"]

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"
_END = object()
_LANES = ("segment", "train", "gdls", "catalogue")


@dataclass(slots=True)
class RunResult:
    """How a run ended."""

    finished: bool  # finalised: the catalogue and report are written
    stopped: bool  # stopped by the user (Ctrl-C) before that
    status: dict[str, Any]
    report: str | None = None


@dataclass(slots=True)
class _Lane:
    name: str
    pending: deque[JobSpec] = field(default_factory=deque)
    running: tuple[JobSpec, Handle, float] | None = None


class Pipeline:
    """The live session: stitching in a thread, the jobs in lanes, the status on the side."""

    def __init__(
        self,
        session_dir: Path,
        store: Path,
        settings: Settings,
        executor: Executor | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.session_dir, self.settings = Path(session_dir).absolute(), settings
        self.store = Path(store).absolute()  # jobs may run on other machines (Dask)
        self.executor = executor if executor is not None else LocalExecutor()
        self.on_status = on_status
        self.stop = threading.Event()
        self._settings_json = settings.model_dump_json()
        self._events: queue.Queue[Any] = queue.Queue(maxsize=settings.pipeline.event_queue)
        self._lanes = {name: _Lane(name) for name in _LANES}
        self._gate = TileGate(f"{os.getpid()}-{id(self)}")
        self._meter = SystemMeter()
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        # what the loop knows
        self.plan = _plan(self.session_dir)
        self.tiles: dict[str, dict[str, Any]] = {}  # name -> row, col, state, arrived, box
        self.regions: dict[tuple[int, int, int, int], str | None] = {}  # bounds -> model done
        self.model: str | None = None
        self.model_info: dict[str, Any] | None = None
        self.start_name: str | None = None  # pipeline.start_model, as copied into the store
        self.start_info: dict[str, Any] | None = None
        self.tried_at_eds = 0
        self.advised_at_eds = 0  # EDS tiles at the last advice asked for
        self.sem_done = False
        self.done_before = False  # the session was finished when this run started
        self.finished = False
        self.finalising = False
        self.catalogue: dict[str, Any] | None = None
        self.catalogue_at = 0.0
        self.catalogue_regions = 0
        self.gdls: dict[str, Any] = {"fields": 0, "segments": 0}
        self.export: dict[str, Any] | None = None
        self.calibration: dict[str, Any] | None = None
        self.latencies: list[float] = []
        self.region_latencies: list[float] = []
        self.region_announced: dict[tuple[int, int, int, int], float] = {}
        self.recent: deque[str] = deque(maxlen=12)
        self.counts = {"tiles": 0, "quarantined": 0, "standards": 0, "spectra": 0, "alerts": 0}
        self.arrivals: deque[float] = deque(maxlen=64)
        self.failures: list[dict[str, str]] = []
        self.pixels: dict[str, tuple[int, int, int]] = {}  # region/tile -> olivine, scanned, unsure
        self.advice: dict[str, Any] | None = None
        self._status_at = 0.0
        self._error: BaseException | None = None
        self._ledger: Ledger | None = None
        self._book: JobBook | None = None
        self._events_log: Any = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self, exit_when_done: bool = True) -> RunResult:
        """Run until the session is finalised (``exit_when_done``) or :attr:`stop` is set."""
        self.store.mkdir(parents=True, exist_ok=True)
        _check_no_other_writer(self.store)
        return_large_buffers()  # a training step's activations go back when freed
        self._recover()
        self._start_model()
        if self.model is not None and self.executor.name == "local":  # the first tile need
            # not wait for torch and the model to load; here, before the lanes start (the
            # warm-up once ran in a thread of its own and raced the first tile job's import)
            _warm_up(self.store / "models" / self.model, self.settings)
        replay = self.settings.pipeline.replay_live
        self.done_before = (self.session_dir / "DONE").is_file() and not replay
        if self.done_before:
            self._log_event(
                "train",
                "the session was finished before this run: the olivine model is trained once, "
                "on every EDS tile, when all tiles are stitched (no live retraining)",
            )
        producer = threading.Thread(target=self._produce, name="semlive-stitch", daemon=True)
        producer.start()
        try:
            self._loop()
            if self._error is not None:
                raise self._error
            if self.sem_done and not self.stop.is_set():
                self._finalise()
                self.finished = not self.stop.is_set()
            while not exit_when_done and not self.stop.is_set():
                self._tick(force=False)
                self.stop.wait(0.2)
        finally:
            self.stop.set()
            self._gate.close()
            producer.join(timeout=30)
            status = self._tick(force=True)
            self.close()
        report = None if self.export is None else self.export.get("report")
        return RunResult(self.finished, not self.finished, status, report)

    def close(self) -> None:
        """Release what the pipeline holds: the training gate, the events log, the ledger and
        the executor (:meth:`run` ends with it; a pipeline driven by hand calls it)."""
        self._gate.close()
        if self._events_log is not None:
            self._events_log.close()
            self._events_log = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger, self._book = None, None
        self.executor.close()

    def _produce(self) -> None:
        """The stitching thread: every event of the session into the bounded queue."""
        try:
            events = stitch_session(
                self.session_dir,
                self.store,
                self.settings,
                correction=drift_correction(self.settings.calibration),
                stop=self.stop,
                show_tiles=True,
            )
            for event in events:
                while not self.stop.is_set():
                    try:
                        self._events.put(event, timeout=0.2)  # blocks: backpressure
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the loop, which raises it
            self._error = exc
        finally:
            self._put_end()

    def _put_end(self) -> None:
        while True:
            try:
                self._events.put(_END, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    with contextlib.suppress(queue.Empty):
                        self._events.get_nowait()  # stopping: make room for the end

    def _loop(self) -> None:
        while not self.stop.is_set():  # stopping: nothing new is started
            self._reap()
            if self._waiting() >= self.settings.pipeline.max_pending_jobs:
                self._maybe_train()  # the train lane goes on
                self._tick(force=False)  # backpressure: the queue fills, stitching waits
                time.sleep(0.05)
                continue
            try:
                item = self._events.get(timeout=0.1)
            except queue.Empty:
                item = None
            if item is _END:
                break
            if item is not None:
                self._on_event(item)
            self._maybe_train()
            self._maybe_count_catalogue()
            self._tick(force=False)

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        now = time.monotonic()
        if isinstance(event, TileReady):
            if not self.plan["rows"]:  # session.json may come after semlive started
                self.plan = _plan(self.session_dir)
            side = event.sidecar
            tile = self.tiles.setdefault(side.tile, {"row": side.row, "col": side.col})
            tile.update(state="stitched", arrived=now, segmented=None)
            self.counts["tiles"] += 1
            self.arrivals.append(now)
            self._log_event("tile", f"tile {side.tile} taken and placed", tile=side.tile)
        elif isinstance(event, TilePlaced):
            tile = self.tiles.setdefault(event.name, {"state": "stitched", "segmented": None})
            tile.update(box=event.bounds_px, row=event.grid[0], col=event.grid[1])
            if event.restored:  # taken before a restart: its region's job covers it
                tile["model_ready"] = False
                self.counts["tiles"] += 1
            elif self.model is not None:
                self._segment_tile(event.name)
        elif isinstance(event, RegionComplete | RegionChanged):
            bounds = tuple(int(v) for v in event.bounds_px)
            box = (bounds[0], bounds[1], bounds[2], bounds[3])
            self.regions[box] = None
            self.region_announced[box] = now
            verb = "complete" if isinstance(event, RegionComplete) else "re-fused"
            self._log_event("region", f"region {event.region} {verb}", region=list(event.region))
            if self.model is not None:
                self._segment_region(box)
            self._to_gdls(event)
        elif isinstance(event, SpectraPlaced | SpectraMoved):
            self._to_gdls(event)
        elif isinstance(event, SpectraReady):
            self.counts["spectra"] += 1
            self._log_event("spectra", f"spectra {event.batch.name} taken")
        elif isinstance(event, FileQuarantined):
            self.counts["quarantined"] += 1
            name = event.path.removeprefix("tiles/").split(".", 1)[0]
            if event.path.startswith("tiles/"):
                self.tiles.setdefault(name, {}).update(state="quarantined")
            self._log_event("quarantined", f"quarantined {event.path}: {event.reason}")
        elif isinstance(event, StandardMeasured):
            self.counts["standards"] += 1
            m = event.measurement
            self._log_event("standard", f"standard {m.standard_id} measured")
        elif isinstance(event, DriftAlert):
            self.counts["alerts"] += 1
            self._log_event("alert", event.message())
        elif isinstance(event, SessionDone):
            self.sem_done = True
            self._log_event("done", "the SEM finished (DONE); finalising once the queues empty")

    def _to_gdls(self, event: Any) -> None:
        if not self.settings.pipeline.gdls:
            return
        lane = self._lanes["gdls"]
        if lane.pending:  # one job takes every event waiting
            lane.pending[-1].args["events"].append(event)
        else:
            lane.pending.append(self._spec("gdls", "fields", events=[event]))
        self._dispatch(lane)

    # -- jobs -------------------------------------------------------------------------------

    def _spec(self, kind: str, key: str, **args: Any) -> JobSpec:
        return JobSpec(kind, key, str(self.store), self._settings_json, args)

    def _submit(self, lane_name: str, spec: JobSpec) -> None:
        lane = self._lanes[lane_name]
        if any(p.kind == spec.kind and p.key == spec.key for p in lane.pending):
            lane.pending = deque(
                p for p in lane.pending if not (p.kind == spec.kind and p.key == spec.key)
            )
        if spec.kind == "segment_tile":  # a tile goes before the regions waiting
            ahead = next(
                (i for i, p in enumerate(lane.pending) if p.kind != "segment_tile"),
                len(lane.pending),
            )
            lane.pending.insert(ahead, spec)
        else:
            lane.pending.append(spec)
        self._dispatch(lane)

    def _dispatch(self, lane: _Lane) -> None:
        if lane.running is None and lane.pending:
            spec = lane.pending.popleft()
            lane.running = (spec, self.executor.submit(lane.name, run_job, spec), time.monotonic())
        if lane.name == "segment":  # training waits while a tile waits for its labels
            queued = [*lane.pending, *([lane.running[0]] if lane.running else [])]
            self._gate.tiles_waiting(any(spec.kind == "segment_tile" for spec in queued))

    def _waiting(self) -> int:
        return sum(len(lane.pending) for lane in self._lanes.values())

    def _busy(self) -> bool:
        return any(lane.running is not None or lane.pending for lane in self._lanes.values())

    def _reap(self) -> None:
        for lane in self._lanes.values():
            if lane.running is None or not lane.running[1].done():
                continue
            spec, handle, _ = lane.running
            lane.running = None
            try:
                result = handle.result()
            except Exception as exc:  # a job's own failure: recorded, the session goes on
                log.exception("%s %s failed", spec.kind, spec.key)
                result = {"failed": f"{type(exc).__name__}: {exc}"}
            self._on_result(spec, result)
            self._dispatch(lane)

    def _on_result(self, spec: JobSpec, result: dict[str, Any]) -> None:
        now = time.monotonic()
        if "failed" in result:
            self.failures.append({"kind": spec.kind, "key": spec.key, "error": result["failed"]})
            self._log_event("failed", f"{spec.kind} {spec.key}: {result['failed']}")
            return
        if spec.kind == "advice":
            self.advice = result
            self._log_event("advice", str(result["message"]))
            if self._book is not None and not result.get("skipped"):
                self._book.record("advice", {k: v for k, v in result.items() if k != "seconds"})
        elif spec.kind == "train":
            kept = result["model"] != result.get("trained", result["model"])
            started = result["model"] == self.start_name and self.start_info is not None
            used = self.start_info if started else self.model_info
            if kept and used is not None:  # the model in use, and its figures, stay
                last = {k: v for k, v in result.items() if k not in ("model", "seconds")}
                self.model_info = {**used, "last_training": last}
            else:
                self.model_info = result
            if self.settings.pipeline.advice and not self.finalising and not result.get("skipped"):
                self._advise(spec.args.get("tiles"), full=result)
            compared = result.get("compared")
            if kept and compared and not result.get("skipped"):
                self._log_event(
                    "model",
                    f"olivine model trained on {result['eds_tiles']} EDS tiles, not used: "
                    f"{result['model']} segments this session's {compared['tiles']} validation "
                    f"tiles as well or better (IoU {compared['current_iou']:.3f} against "
                    f"{compared['trained_iou']:.3f})",
                )
            elif result["model"] != self.model:
                self._log_event(
                    "model",
                    f"olivine model trained on {result['eds_tiles']} EDS tiles: validation "
                    f"IoU {result['val_iou']:.3f}",
                )
            if result["model"] != self.model:
                self.model = str(result["model"])
                self._resegment()
        elif spec.kind in ("segment", "segment_tile"):
            if result.get("model") != self.model:
                return  # an older model's labels: a newer job follows
            if spec.kind == "segment":
                box = tuple(spec.args["bounds"])
                bounds = (box[0], box[1], box[2], box[3])
                self.regions[bounds] = self.model
                announced = self.region_announced.pop(bounds, None)
                if announced is not None and not result.get("skipped"):
                    self.region_latencies.append(now - announced)
            self.pixels[f"{spec.kind}:{spec.key}"] = (
                int(result.get("olivine_px", 0)),
                int(result.get("scanned_px", 0)),
                int(result.get("uncertain_px", 0)),
            )
            names = spec.args.get("tiles", [])
            for name in names:
                tile = self.tiles.get(name, {})
                if tile.get("segmented") is None:
                    tile["segmented"] = now
                    tile["state"] = "segmented"
                    if tile.get("model_ready") and "arrived" in tile:
                        self.latencies.append(now - tile["arrived"])
        elif spec.kind == "gdls":
            for entry in result.get("fields", []):
                self.gdls["fields"] += 1
                self.gdls["segments"] += int(entry["segments"])
                self._log_event(
                    "gdls", f"GDLS: field {entry['field']} in {entry['segments']} segments"
                )
        elif spec.kind == "live_catalogue":
            self.catalogue = result
        elif spec.kind == "calibrate":
            self.calibration = result
        elif spec.kind == "export":
            self.export = result
            self.catalogue = result["summary"]

    def _segment_tile(self, name: str) -> None:
        """A tile's own box at once (its region is segmented again once complete). Never over
        a complete region: its labels, made with the context around it, stay as they are."""
        tile = self.tiles[name]
        box = tile.get("box")
        if box is None or self.model is None or any(_overlaps(box, r) for r in self.regions):
            return
        tile.setdefault("model_ready", True)
        spec = self._spec("segment_tile", name, model=self.model, bounds=list(box), tiles=[name])
        self._submit("segment", spec)

    def _segment_region(self, box: tuple[int, int, int, int]) -> None:
        inside = [n for n, t in self.tiles.items() if "box" in t and _overlaps(t["box"], box)]
        key = f"{box[0]}-{box[1]}"
        self._submit(
            "segment", self._spec("segment", key, model=self.model, bounds=list(box), tiles=inside)
        )

    def _resegment(self) -> None:
        """A new model: every complete region again, and the tiles still waiting for theirs."""
        for box in self.regions:
            self._segment_region(box)
        for name, tile in self.tiles.items():
            placed = tile.get("box")
            if placed is not None and not any(_overlaps(placed, r) for r in self.regions):
                tile["model_ready"] = False  # arrived before the model: no latency figure
                self._segment_tile(name)

    def _eds_ready(self) -> list[str]:
        """The EDS-mapped tiles whose regions are all complete (their maps are fused)."""
        book = self._ensure_book()
        if book is None:
            return []
        mapped = "SELECT tile FROM tiles WHERE eds_checksum IS NOT NULL"
        ready = []
        for (name,) in book.ledger._db.execute(mapped).fetchall():
            tile = self.tiles.get(name)
            if tile is None:
                continue
            tile["eds"] = True
            box = tile.get("box")
            if box is not None and _covered(box, self.regions):
                ready.append(name)
        return sorted(ready)

    def _advise(self, tiles: list[str] | None, full: dict[str, Any] | None = None) -> None:
        """Ask for the training-area advice at these EDS tiles (``full``: the training on all of
        them just done; without it the advice trains on them too)."""
        self.advised_at_eds = len(tiles) if tiles is not None else self.tried_at_eds
        history = [] if self.advice is None else list(self.advice.get("curve", []))
        spec = self._spec(
            "advice",
            "eds",
            tiles=tiles,
            full=full,
            planned=self.plan["rows"] * self.plan["cols"],
            history=history,
            run=self._gate.run,
        )
        self._submit("train", spec)

    def _maybe_train(self, final: bool = False) -> None:
        lane = self._lanes["train"]
        if lane.running is not None or lane.pending or (self.done_before and not final):
            return
        p = self.settings.pipeline
        ready = self._eds_ready()
        eds = len(ready)
        if final:
            due = eds > 0
        elif self.tried_at_eds == 0:
            due = eds >= p.train_first_eds_tiles
        else:
            due = eds >= self.tried_at_eds * p.retrain_growth
        if not due and self._advice_due(eds):
            self._log_event("advice", f"training-area advice at {eds} EDS tiles")
            self._advise(ready)
            return
        if due:
            self.tried_at_eds = max(eds, 1)
            self._log_event("train", f"training the olivine model on {eds} EDS tiles")
            # the final model is compared with the start model only, not with the live ones
            # (which depend on when trainings happened): the end does not depend on the way
            current = self.start_name if final else self.model
            spec = self._spec("train", MODEL_NAME, tiles=ready, run=self._gate.run, current=current)
            self._submit("train", spec)

    def _advice_due(self, eds: int) -> bool:
        """An advice between trainings: EDS tiles grown by ``pipeline.advice_every`` of the
        planned tiles since the last advice, a model trained, and no 'enough' said yet."""
        p = self.settings.pipeline
        if not p.advice or not p.advice_every or self.model is None or self.finalising:
            return False
        if self.tried_at_eds == 0 or (self.advice is not None and self.advice.get("enough")):
            return False
        planned = int(self.plan["rows"]) * int(self.plan["cols"])
        if planned == 0:  # no grid in session.json: the advice comes after trainings only
            return False
        step = max(1, math.ceil(p.advice_every * planned))
        return eds >= self.advised_at_eds + step

    def _maybe_count_catalogue(self) -> None:
        lane = self._lanes["catalogue"]
        interval = self.settings.pipeline.catalogue_interval_s
        if lane.running is not None or lane.pending or self.model is None:
            return
        done = [list(b) for b, m in self.regions.items() if m == self.model]
        if len(done) == self.catalogue_regions or time.monotonic() - self.catalogue_at < interval:
            return
        self.catalogue_at, self.catalogue_regions = time.monotonic(), len(done)
        self._submit("catalogue", self._spec("live_catalogue", "live", regions=done))

    def _drain(self) -> None:
        while self._busy():
            self._reap()
            self._tick(force=False)
            time.sleep(0.05)
            if self.stop.is_set():
                return

    def _finalise(self) -> None:
        """DONE and the queues empty: last training, every region, calibration, export (a
        stop in between leaves the rest to the next run)."""
        self.finalising = True
        self._drain()
        self._maybe_train(final=True)
        self._drain()
        if self.stop.is_set():
            return
        if self.model is None:
            self._log_event(
                "failed",
                "no olivine model could be trained (see the training failure above); the "
                "mosaic, calibration and GDLS are written but there is no catalogue",
            )
        else:
            for box in self.regions:
                self._segment_region(box)
            self._drain()
            if self.stop.is_set():
                return
        synced = sync_transforms(self.store / "mosaic.zarr")  # no writer at work now
        if synced:
            log.info("stage transforms of %s brought in line with bse/", ", ".join(synced))
        self._submit("catalogue", self._spec("calibrate", "store"))
        self._drain()
        if self.model is not None and not self.stop.is_set():
            self._submit("catalogue", self._spec("export", "catalogue"))
            self._drain()
        if self.stop.is_set():
            return
        self._log_event(
            "finished",
            "session finalised: catalogue and report written"
            if self.export is not None
            else "session finalised without a catalogue (no olivine model)",
        )

    # -- what the run knows ------------------------------------------------------------------

    def segmentation_totals(self) -> dict[str, Any]:
        """Olivine and uncertain shares of what the current model segmented (regions, then
        the tiles not yet in a complete region)."""
        regions = [v for k, v in self.pixels.items() if k.startswith("segment:")]
        olivine, scanned, unsure = (sum(v[i] for v in regions) for i in range(3))
        return {
            "scanned_px": scanned,
            "olivine_share": None if not scanned else round(olivine / scanned, 4),
            "uncertain_share": None if not scanned else round(unsure / scanned, 4),
        }

    def _recover(self) -> None:
        """A restart: the model and training progress of the run before it."""
        book = self._ensure_book()
        if book is None:
            return
        published = book.ledger.meta(PUBLISHED_MODEL)
        trained = None if published is None else json.loads(published)
        if trained and (self.store / "models" / str(trained["model"]) / "card.json").is_file():
            self.model, self.model_info = str(trained["model"]), trained
            self.tried_at_eds = int(trained["eds_tiles"])
            self._log_event("model", f"resuming with the olivine model {self.model}")
        # the last advice given (a killed advice job leaves its row unfinished; the series
        # keeps every advice given)
        advice = book.results("advice").get("eds")
        if not advice:
            given = book.series("advice")
            advice = given[-1][1] if given else None
        self.advised_at_eds = self.tried_at_eds
        if advice:
            self.advice = advice
            self.advised_at_eds = int(advice.get("eds_tiles") or self.tried_at_eds)

    def _start_model(self) -> None:
        """``pipeline.start_model``: an earlier session's model, until this one trains a
        better one."""
        if not self.settings.pipeline.start_model:
            return
        source = Path(self.settings.pipeline.start_model).expanduser()
        complete = (source / "card.json").is_file() and (source / "weights.safetensors").is_file()
        name = f"{START_MODEL_PREFIX}{_short_digest(source)}" if complete else None
        if self.model is not None:  # resumed with a model of this session's
            self.start_name = name
            return
        if name is None:
            raise InputDataError(
                f"pipeline.start_model {source} is not a model folder; expected "
                "weights.safetensors and card.json (STORE/models/olivine of an earlier "
                "session) — give one, or leave start_model empty",
                path=source,
            )
        card = json.loads((source / "card.json").read_text(encoding="utf-8"))
        target = self.store / "models" / name
        if not (target / "card.json").is_file():
            target.mkdir(parents=True, exist_ok=True)
            for part in ("weights.safetensors", "card.json"):
                shutil.copyfile(source / part, target / part)
        val = card.get("metrics", {}).get("validation", {})
        self.model = self.start_name = name
        self.model_info = self.start_info = {
            "model": name,
            "eds_tiles": 0,
            "training_tiles": len(card.get("training_tiles", [])),
            "labelled_px": 0,
            "epochs": card.get("training", {}).get("epochs_run"),
            "dlth": card.get("dlth"),
            "val_iou": val.get("iou", float("nan")),
            "val_overall_accuracy": val.get("overall_accuracy", float("nan")),
            "from": str(source),
        }
        self._log_event("model", f"segmenting with {source} until this session trains its own")

    def _ensure_book(self) -> JobBook | None:
        if self._book is None and (self.store / "ledger.sqlite").is_file():
            try:
                self._ledger = Ledger(self.store / "ledger.sqlite")
                self._book = JobBook(self._ledger)
            except LedgerError:
                return None
        return self._book

    def _log_event(self, kind: str, message: str, **fields: Any) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.recent.append(f"{at[11:19]} {message}")
        if self._events_log is None:
            self._events_log = (self.store / EVENTS_FILE).open("a", encoding="utf-8")
        self._events_log.write(json.dumps({"at": at, "kind": kind, "message": message, **fields}))
        self._events_log.write("\n")
        self._events_log.flush()

    def _tick(self, force: bool) -> dict[str, Any]:
        now = time.monotonic()
        if not force and now - self._status_at < self.settings.pipeline.status_interval_s:
            return {}
        self._status_at = now
        status = self.snapshot()
        path = self.store / STATUS_FILE
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(status, default=float) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        if self.on_status is not None:
            self.on_status(status)
        return status

    def snapshot(self) -> dict[str, Any]:
        """Everything the dashboard shows, as plain JSON-able data."""
        from semlive.pipeline._status import snapshot  # it reads this module's Pipeline

        return snapshot(self)


def _warm_up(folder: Path, settings: Settings) -> None:
    from semlive.models.olivine import warm_up

    try:
        warm_up(folder, settings.olivine)
    except Exception as exc:  # the first tile's job loads it again, and reports what fails
        log.debug("warming up %s failed: %s", folder, exc)


def _short_digest(folder: Path) -> str:
    import hashlib

    return hashlib.blake2b((folder / "card.json").read_bytes(), digest_size=6).hexdigest()


def _check_no_other_writer(store: Path) -> None:
    """Refuse at once (before writing anything) when another semlive writes the store."""
    import fcntl

    with (store / ".writer.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LedgerError(
                f"another semlive process is writing the store {store}; only one writer per "
                "store — stop it or use another --store",
                path=store,
            ) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def _covered(box: Any, regions: Any) -> bool:
    """Whether the disjoint ``regions`` cover ``box`` whole."""
    area = 0
    for r in regions:
        h = min(box[2], r[2]) - max(box[0], r[0])
        w = min(box[3], r[3]) - max(box[1], r[1])
        area += max(h, 0) * max(w, 0)
    return bool(area >= (box[2] - box[0]) * (box[3] - box[1]))


def _overlaps(a: Any, b: Any) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _plan(session_dir: Path) -> dict[str, Any]:
    """The tile grid the SEM plans (session.json's optional grid), for the minimap."""
    try:
        info = json.loads((session_dir / "session.json").read_text(encoding="utf-8"))
        grid = info.get("grid") or {}
        return {"rows": int(grid["rows"]), "cols": int(grid["cols"]), "sample": info.get("sample")}
    except (OSError, ValueError, KeyError, TypeError):
        return {"rows": 0, "cols": 0, "sample": None}
