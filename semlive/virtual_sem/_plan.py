"""Presets and the acquisition plan: tile grid, stage errors, timing, EDS frames, drift.

Times are simulated acquisition times (what a real SEM would take, ~20 s per BSE tile); the
writer maps them to wall-clock time by ``--speed``. Session ``k`` of the same section (same seed,
same sample) starts 20 days after session ``k − 1`` and has its own drift, with a jump in BSE
gain and offset and in EDS sensitivity between sessions, as Leichter et al. (2022) observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import numpy as np

from semlive.errors import UsageError

__all__ = [
    "PRESETS",
    "SESSION_GAIN_JUMP",
    "SESSION_OFFSET_JUMP_DN",
    "Drift",
    "Plan",
    "Preset",
    "TilePlan",
    "make_plan",
    "resolve_preset",
]

SESSION_START = datetime(2026, 3, 9, 8, 0, 0, tzinfo=timezone(timedelta(hours=1)))
DAYS_BETWEEN_SESSIONS = 20.0
STAGE_ORIGIN_UM = (12_000.0, 8_000.0)  # stage position of the sample's first tile centre


SESSION_GAIN_JUMP = 0.075  # BSE gain change between sessions 20 days apart (one session step)
SESSION_OFFSET_JUMP_DN = 300.0  # BSE offset change between sessions 20 days apart


@dataclass(frozen=True, slots=True)
class Preset:
    """Size and content of a simulated session."""

    name: str
    grid: tuple[int, int]  # tile rows, tile cols
    tile_shape: tuple[int, int] = (338, 512)  # pixel rows, cols
    overlap_fraction: float = 0.10
    eds_every: int = 4  # EDS maps on one tile in ``eds_every`` (a spread pattern, ~25 %)
    spectra_fields: int = 2
    spectra_field_um: float = 192.0
    spectra_spacing_um: float = 3.0
    spectrum_counts: int = 1000
    epma_profiles: int = 4
    standard_repeats: int = 2  # measurement rounds of the standards: start, (middle...), end
    bit_depth: int = 16
    pixel_size_um: float = 1.0


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        (3, 3),
        tile_shape=(170, 256),
        spectra_fields=1,
        spectra_field_um=96.0,
        epma_profiles=1,
    ),
    "small": Preset("small", (6, 6)),
    "section": Preset(
        "section",
        (30, 40),
        spectra_fields=6,
        spectra_field_um=256.0,
        epma_profiles=12,
        standard_repeats=4,
    ),
}


@dataclass(frozen=True, slots=True)
class Drift:
    """Instrument drift: measured BSE = gain(t)·true + offset(t); EDS counts × eds(t)."""

    gain0: float
    gain_per_h: float
    offset0_dn: float
    offset_per_h_dn: float
    eds0: float
    eds_per_h: float

    def bse(self, hours: float) -> tuple[float, float]:
        """(gain, offset in DN) at ``hours`` after the session start."""
        return self.gain0 * (
            1 + self.gain_per_h * hours
        ), self.offset0_dn + self.offset_per_h_dn * hours

    def eds(self, hours: float) -> float:
        return self.eds0 * (1 + self.eds_per_h * hours)


@dataclass(frozen=True, slots=True)
class TilePlan:
    name: str
    row: int
    col: int
    nominal_um: tuple[float, float]  # commanded stage x, y of the tile centre
    true_um: tuple[float, float]  # where the stage really was
    hours: float  # acquisition finished, hours after session start
    eds: bool


@dataclass(frozen=True, slots=True)
class Plan:
    preset: Preset
    seed: int
    session: int
    start: datetime
    drift: Drift
    tiles: tuple[TilePlan, ...]
    standard_hours: tuple[float, ...]
    end_hours: float
    epma_offset_um: tuple[float, float]
    stage_step_um: tuple[float, float] = field(default=(0.0, 0.0))

    def time(self, hours: float) -> datetime:
        """The wall-clock time of the SEM ``hours`` into the session, to the second."""
        return self.start + timedelta(seconds=round(hours * 3600))


def resolve_preset(
    name: str,
    grid: tuple[int, int] | None = None,
    overlap_fraction: float | None = None,
    eds_every: int | None = None,
) -> Preset:
    """The preset ``name``, with the tile grid, overlap and EDS frequency replaced where given
    (checked)."""
    if name not in PRESETS:
        raise UsageError(
            f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}",
            expected=list(PRESETS),
            got=name,
        )
    preset = PRESETS[name]
    if grid is not None:
        if len(grid) != 2 or min(grid) < 1:
            raise UsageError(
                f"--grid must be ROWSxCOLS with at least one tile each way; got "
                f"{'x'.join(map(str, grid))}",
                expected=">= 1x1",
                got=grid,
            )
        preset = replace(preset, grid=(int(grid[0]), int(grid[1])))
    if overlap_fraction is not None:
        if not 0.0 <= overlap_fraction < 0.5:
            raise UsageError(
                f"--overlap must be a fraction of the tile in [0, 0.5); got {overlap_fraction}",
                expected="[0, 0.5)",
                got=overlap_fraction,
            )
        preset = replace(preset, overlap_fraction=float(overlap_fraction))
    if eds_every is not None:
        if eds_every < 1:
            raise UsageError(
                f"--eds-every must be 1 or more (EDS maps on one tile in N; 1: every tile); "
                f"got {eds_every}",
                expected=">= 1",
                got=eds_every,
            )
        preset = replace(preset, eds_every=int(eds_every))
    return preset


def make_plan(preset: Preset | str, seed: int, session: int = 0) -> Plan:
    """The acquisition plan of session ``session`` of the sample made from ``seed``."""
    if isinstance(preset, str):
        preset = resolve_preset(preset)
    if session < 0:
        raise UsageError(
            f"--session must be 0 or more; got {session}", expected=">= 0", got=session
        )
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 101, session])
    rows, cols = preset.tile_shape
    step = (
        cols * (1 - preset.overlap_fraction) * preset.pixel_size_um,
        rows * (1 - preset.overlap_fraction) * preset.pixel_size_um,
    )
    tiles, hours = [], 0.25  # standards are measured first
    for r in range(preset.grid[0]):
        order = range(preset.grid[1]) if r % 2 == 0 else reversed(range(preset.grid[1]))
        for c in order:  # serpentine, with backlash against the direction of travel
            eds = (r + 2 * c) % preset.eds_every == 0
            hours += (20.0 + (90.0 if eds else 0.0)) / 3600
            nominal = (STAGE_ORIGIN_UM[0] + c * step[0], STAGE_ORIGIN_UM[1] + r * step[1])
            backlash = 2.0 if r % 2 == 0 else -2.0
            error = np.clip(rng.normal(0.0, 5.0, 2) + np.array([backlash, 0.0]), -15.0, 15.0)
            true = (nominal[0] + float(error[0]), nominal[1] + float(error[1]))
            tiles.append(TilePlan(f"r{r:03d}c{c:03d}", r, c, nominal, true, round(hours, 6), eds))
    end = hours + 0.25
    rounds = preset.standard_repeats
    standards = tuple(float(h) for h in np.linspace(0.0, end, rounds))
    start = SESSION_START + timedelta(days=DAYS_BETWEEN_SESSIONS * session)
    drift = _drift(rng, session)
    offset = rng.uniform(-4.0, 4.0, 2)
    epma_offset = (float(offset[0]), float(offset[1]))
    return Plan(
        preset, seed, session, start, drift, tuple(tiles), standards, end, epma_offset, step
    )


def _drift(rng: np.random.Generator, session: int) -> Drift:
    """Linear drift within a session plus a jump between sessions (~0.09 mg# for a 20-day gap)."""
    jump = session * rng.choice([-1.0, 1.0])
    return Drift(
        gain0=1.0 + SESSION_GAIN_JUMP * jump,
        gain_per_h=float(rng.uniform(-0.006, -0.002)),
        offset0_dn=SESSION_OFFSET_JUMP_DN * jump,
        offset_per_h_dn=float(rng.uniform(10.0, 40.0)),
        eds0=1.0 - 0.08 * abs(jump),
        eds_per_h=float(rng.uniform(-0.008, -0.003)),
    )
