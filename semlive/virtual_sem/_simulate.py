"""``simulate``: write a whole session folder and its ground truth."""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from semlive.errors import UsageError
from semlive.virtual_sem._plan import resolve_preset
from semlive.virtual_sem._session import STANDARDS, VirtualSession
from semlive.virtual_sem._truth import RIM_EXCLUSION_PX, crystal_rows, write_csv, write_maps
from semlive.virtual_sem._writer import FAULTS, SessionWriter

__all__ = ["SimulationSummary", "simulate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    out: Path
    preset: str
    seed: int
    session: int
    files: int
    tiles: int
    eds_tiles: int
    crystals: int
    seconds: float


def simulate(
    out: str | Path,
    preset: str = "small",
    seed: int = 0,
    *,
    speed: float | None = None,
    faults: tuple[str, ...] | list[str] = (),
    session: int = 0,
    grid: tuple[int, int] | None = None,
    overlap_fraction: float | None = None,
    eds_every: int | None = None,
) -> SimulationSummary:
    """Write session ``session`` of the sample ``seed`` into ``out`` (an absent or empty folder).

    ``speed``: simulated time runs ``speed`` times faster than real time (1 = a real SEM,
    ~20 s per BSE tile); None writes as fast as possible. ``faults``: names from
    :data:`~semlive.virtual_sem.FAULTS`, or ``("all",)``.
    """
    started = time.monotonic()
    spec = resolve_preset(preset, grid, overlap_fraction, eds_every)
    chosen = FAULTS if tuple(faults) == ("all",) else tuple(faults)
    unknown = sorted(set(chosen) - set(FAULTS))
    if unknown:
        raise UsageError(
            f"unknown fault {', '.join(unknown)}; expected any of {', '.join(FAULTS)}, or all",
            expected=FAULTS,
            got=unknown,
        )
    out = _prepare(Path(out), speed)
    sem = VirtualSession(spec, seed, session)
    writer = SessionWriter(sem, out, speed, chosen)
    writer.run()
    crystals = _write_truth(sem, writer, out / "_truth")
    writer.log.append(
        {
            "path": "DONE",
            "kind": "done",
            "tile": None,
            "bytes": 0,
            "acquired_hours": sem.plan.end_hours,
            "fault": "",
            "expect": "ingest",
        }
    )
    _write_log(writer.log, out / "_truth" / "writer_log.jsonl")
    (out / "DONE").write_bytes(b"")  # last: a session never looks complete before it is
    tiles = sem.plan.tiles
    summary = SimulationSummary(
        out,
        preset,
        seed,
        session,
        len(writer.log),
        len(tiles),
        sum(t.eds for t in tiles),
        crystals,
        time.monotonic() - started,
    )
    logger.info(
        "simulated %s session %d of seed %d into %s in %.1f s",
        preset,
        session,
        seed,
        out,
        summary.seconds,
    )
    return summary


def _prepare(out: Path, speed: float | None) -> Path:
    if speed is not None and not speed > 0:
        raise UsageError(
            f"--speed must be a positive number (1 = a real SEM); got {speed}",
            expected="> 0",
            got=speed,
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(
            f"OUT {out} exists and is not an empty folder; give a new or empty folder", path=out
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".semlive-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"OUT {out} is not writable ({exc.strerror}); choose a folder you can write to",
            path=out,
        ) from None
    return out


def _write_truth(sem: VirtualSession, writer: SessionWriter, truth: Path) -> int:
    truth.mkdir(parents=True, exist_ok=True)
    plan = sem.plan
    rows = crystal_rows(sem.scene, sem.grid, sem.table, sem.detector)
    write_csv(rows, truth / "crystals.csv")
    write_csv(
        [
            {
                "tile": t.name,
                "row": t.row,
                "col": t.col,
                "nominal_x_um": t.nominal_um[0],
                "nominal_y_um": t.nominal_um[1],
                "true_x_um": round(t.true_um[0], 4),
                "true_y_um": round(t.true_um[1], 4),
                "acquired_at": plan.time(t.hours).isoformat(),
                "eds": t.eds,
            }
            for t in plan.tiles
        ],
        truth / "tiles.csv",
    )
    write_maps(sem.scene, sem.grid, sem.table, sem.detector, truth / "maps.zarr")
    for name, record in sem.truth_records.items():
        target = truth / name
        target.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez_compressed(buf, **record)  # type: ignore[arg-type]
        target.with_suffix(".npz").write_bytes(buf.getvalue())
    window = sem.grid.window
    meta = {
        "format": "semlive.truth/1",
        "preset": plan.preset.name,
        "seed": plan.seed,
        "session": plan.session,
        "start": plan.start.isoformat(),
        "mosaic": {
            "origin_x_um": window.x0_um,
            "origin_y_um": window.y0_um,
            "shape": [window.rows, window.cols],
            "pixel_size_um": window.pixel_size_um,
        },
        "drift": asdict(plan.drift)
        | {
            "model": "bse_measured = gain(t)*bse_true + offset(t), "
            "gain(t) = gain0*(1 + gain_per_h*t_h), offset(t) = "
            "offset0_dn + offset_per_h_dn*t_h; eds counts x "
            "eds0*(1 + eds_per_h*t_h)"
        },
        "epma_offset_um": list(plan.epma_offset_um),
        "standards": {
            sid: {"phase": phase.name.lower(), "x": x}
            for sid, (_, phase, x, _) in STANDARDS.items()
        },
        "rim_exclusion_px": RIM_EXCLUSION_PX,
        "faults": {k: v for k, v in writer._targets.items()},
        "files": {
            "maps.zarr": "phase (uint8, 255 unscanned), instances (uint32 crystal_id), "
            "mgnumber (float32, NaN off olivine), bse (float32 noise-free drift-free DN)",
            "crystals.csv": "every crystal in the scanned area (olivine, clinopyroxene, "
            "plagioclase), Contract 2 columns on the truth",
            "tiles.csv": "nominal and true tile centres",
            "spectra/*.npz": "per point: true "
            "xy_um, dominant material (phase*1000 + x*100), its share, phase, x",
            "epma/*.npz": "true profile points and true mg#",
            "writer_log.jsonl": "every file written, its fault and expected outcome",
        },
    }
    (truth / "truth.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return len([r for r in rows if r["phase"] == "olivine" and r["area_um2"] > 100])  # type: ignore[operator]


def _write_log(log: list[dict[str, object]], path: Path) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in log), encoding="utf-8")
