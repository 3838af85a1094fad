"""Instrument drift from standard measurements, and the correction of BSE tiles by it.

Each standard measurement gives a robust BSE level (the mean of the pixels within four robust
standard deviations of the median, so polishing pits and dust do not count) with its standard
error, and EDS counts per pixel when its maps came along. Measurements taken close together in
time form a *round*; each round is fitted as ``measured = gain · reference + offset`` by
weighted least squares over its standards (two or more contrasting standards), or as an offset
alone with one. Between rounds gain and offset are interpolated linearly in time; after the last
round they are extrapolated along the last two rounds (flagged), with one round they are held.
A round that cannot be fitted is a :class:`FailedRound` value, not an exception.

Reference levels come from ``session.json`` (``standards.<id>.bse_reference``), else from a
reference store (the first session of the sample), else from the first round of this session,
so several sessions of one section land on one scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from semlive.records import EdsMaps, SessionInfo, StandardMeasurement

__all__ = [
    "DriftAlert",
    "DriftModel",
    "DriftRound",
    "DriftState",
    "FailedRound",
    "StandardLevel",
    "correct_bse",
    "fit_round",
    "group_rounds",
    "measure_standard",
]

ROUND_GAP_H = 0.5  # measurements closer than this (hours) belong to one round
MIN_CONTRAST = 0.05  # a gain needs standards whose references differ by this fraction


@dataclass(frozen=True, slots=True)
class StandardLevel:
    """One standard measurement reduced to a level."""

    name: str
    standard_id: str
    acquired_at: datetime
    bse_dn: float
    sigma_dn: float  # standard error of the level
    pixels: int  # pixels kept
    eds_counts: float | None = None  # mean net counts per pixel, all elements together


def measure_standard(measurement: StandardMeasurement, eds: EdsMaps | None = None) -> StandardLevel:
    """Robust BSE level of a standard image (pits and dust excluded) and its standard error."""
    values = np.asarray(measurement.image, dtype=np.float64).ravel()
    keep = _robust_keep(values)
    kept = values[keep]
    sigma = float(kept.std(ddof=1) / np.sqrt(kept.size)) if kept.size > 1 else float("inf")
    counts = None
    if eds is not None:
        total = np.asarray(eds.counts, dtype=np.float64).sum(axis=0).ravel()
        counts = float(total[keep].mean()) if total.size == keep.size else float(total.mean())
    return StandardLevel(
        measurement.name,
        measurement.standard_id,
        measurement.acquired_at,
        float(kept.mean()),
        sigma,
        int(kept.size),
        counts,
    )


def _robust_keep(values: NDArray[np.float64]) -> NDArray[np.bool_]:
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    if spread == 0:
        return np.ones(values.shape, dtype=bool)
    keep: NDArray[np.bool_] = np.abs(values - median) <= 4 * spread
    return keep


@dataclass(frozen=True, slots=True)
class DriftRound:
    """Gain and offset fitted to one round of standard measurements."""

    at: datetime  # mean acquisition time of the round
    gain: float
    offset_dn: float
    gain_sigma: float
    offset_sigma_dn: float
    mode: Literal["gain-offset", "offset"]
    standards: tuple[str, ...]  # measurement names
    eds_scale: float | None = None  # EDS counts relative to the reference round


@dataclass(frozen=True, slots=True)
class FailedRound:
    """A round that could not be fitted, and why (a value, not an exception)."""

    at: datetime
    reason: str
    standards: tuple[str, ...]


def group_rounds(
    levels: list[StandardLevel], gap_h: float = ROUND_GAP_H
) -> list[list[StandardLevel]]:
    """Measurements in time order, split where more than ``gap_h`` hours pass between two."""
    ordered = sorted(levels, key=lambda lv: lv.acquired_at)
    rounds: list[list[StandardLevel]] = []
    for level in ordered:
        if rounds and _hours(rounds[-1][-1].acquired_at, level.acquired_at) <= gap_h:
            rounds[-1].append(level)
        else:
            rounds.append([level])
    return rounds


def fit_round(
    levels: list[StandardLevel],
    references: dict[str, float],
    eds_references: dict[str, float] | None = None,
) -> DriftRound | FailedRound:
    """``measured = gain · reference + offset`` over one round, weighted by the levels' errors.

    Two or more standards whose references differ by :data:`MIN_CONTRAST` give gain and offset;
    otherwise the gain is 1 and only the offset is fitted. Repeated measurements of one standard
    in a round are averaged.
    """
    at = _mean_time([lv.acquired_at for lv in levels])
    names = tuple(lv.name for lv in levels)
    usable = [lv for lv in levels if lv.standard_id in references and np.isfinite(lv.sigma_dn)]
    if not usable:
        known = ", ".join(sorted(references)) or "none"
        got = ", ".join(sorted({lv.standard_id for lv in levels}))
        return FailedRound(at, f"no reference level for {got} (references known: {known})", names)
    ref = np.array([references[lv.standard_id] for lv in usable])
    measured = np.array([lv.bse_dn for lv in usable])
    sigma = np.array([max(lv.sigma_dn, 1e-6) for lv in usable])
    eds_scale = _eds_scale(usable, eds_references)
    contrast = (ref.max() - ref.min()) / max(float(np.abs(ref).mean()), 1e-9)
    if len(set(lv.standard_id for lv in usable)) >= 2 and contrast >= MIN_CONTRAST:
        design = np.column_stack([ref, np.ones_like(ref)]) / sigma[:, None]
        cov = np.linalg.inv(design.T @ design)
        gain, offset = cov @ design.T @ (measured / sigma)
        if not np.isfinite(gain) or gain <= 0:
            return FailedRound(at, f"fitted gain {gain:.4g} is not positive", names)
        return DriftRound(
            at,
            float(gain),
            float(offset),
            float(np.sqrt(cov[0, 0])),
            float(np.sqrt(cov[1, 1])),
            "gain-offset",
            names,
            eds_scale,
        )
    weights = 1 / sigma**2
    offset = float(np.sum(weights * (measured - ref)) / weights.sum())
    return DriftRound(
        at, 1.0, offset, 0.0, float(np.sqrt(1 / weights.sum())), "offset", names, eds_scale
    )


def _eds_scale(levels: list[StandardLevel], references: dict[str, float] | None) -> float | None:
    if not references:
        return None
    ratios = [
        lv.eds_counts / references[lv.standard_id]
        for lv in levels
        if lv.eds_counts is not None and references.get(lv.standard_id)
    ]
    return float(np.mean(ratios)) if ratios else None


@dataclass(frozen=True, slots=True)
class DriftState:
    """Gain and offset at one moment, and how they were obtained."""

    gain: float
    offset_dn: float
    eds_scale: float
    how: Literal["interpolated", "extrapolated", "held", "uncorrected"]


@dataclass(frozen=True, slots=True)
class DriftAlert:
    """A standard measured outside its control limits."""

    measurement: str
    standard_id: str
    acquired_at: datetime
    deviation: float  # (measured − reference) / reference
    limit: float

    def message(self) -> str:
        return (
            f"standard {self.standard_id} ({self.measurement}) reads {self.deviation:+.2%} "
            f"from its reference, beyond the ±{self.limit:.2%} control limit: the instrument "
            "has drifted; tiles are corrected, but check the beam and detector settings"
        )


@dataclass(frozen=True, slots=True)
class DriftModel:
    """Gain and offset over a session, from its fitted rounds."""

    rounds: tuple[DriftRound, ...] = ()
    failed: tuple[FailedRound, ...] = field(default=())

    @property
    def mode(self) -> str:
        """What the correction can do, in words (for status and the dashboard)."""
        if not self.rounds:
            return "uncorrected: no usable standard measurement"
        modes = {r.mode for r in self.rounds}
        kind = "gain and offset" if modes == {"gain-offset"} else "offset only"
        if len(self.rounds) == 1:
            return f"{kind}, one round of standards: held constant (measure standards at the end)"
        return f"{kind}, {len(self.rounds)} rounds of standards"

    def at(self, when: datetime) -> DriftState:
        rounds = self.rounds
        if not rounds:
            return DriftState(1.0, 0.0, 1.0, "uncorrected")
        if len(rounds) == 1:
            r = rounds[0]
            return DriftState(r.gain, r.offset_dn, r.eds_scale or 1.0, "held")
        times = [r.at for r in rounds]
        if when <= times[0]:
            i, how = 0, "extrapolated" if when < times[0] else "interpolated"
        elif when >= times[-1]:
            i, how = len(rounds) - 2, "extrapolated" if when > times[-1] else "interpolated"
        else:
            i = max(k for k, t in enumerate(times) if t <= when)
            i, how = min(i, len(rounds) - 2), "interpolated"
        a, b = rounds[i], rounds[i + 1]
        span = _hours(a.at, b.at)
        f = _hours(a.at, when) / span if span > 0 else 0.0
        eds_a, eds_b = a.eds_scale or 1.0, b.eds_scale or 1.0
        return DriftState(
            a.gain + f * (b.gain - a.gain),
            a.offset_dn + f * (b.offset_dn - a.offset_dn),
            eds_a + f * (eds_b - eds_a),
            how,  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        def encode(obj: DriftRound | FailedRound) -> dict[str, object]:
            data = asdict(obj)
            data["at"] = obj.at.isoformat()
            return data

        return json.dumps(
            {
                "mode": self.mode,
                "rounds": [encode(r) for r in self.rounds],
                "failed": [encode(r) for r in self.failed],
            },
            indent=2,
        )


def correct_bse(
    image: NDArray[np.generic], state: DriftState, full_scale: float
) -> NDArray[np.generic]:
    """A BSE tile on the reference scale: ``(raw − offset) / gain``, rounded, same dtype."""
    raw = np.asarray(image, dtype=np.float32)
    corrected = (raw - np.float32(state.offset_dn)) / np.float32(state.gain)
    result: NDArray[np.generic] = np.clip(np.rint(corrected), 0, full_scale).astype(image.dtype)
    return result


def session_references(session: SessionInfo) -> dict[str, float]:
    """Reference BSE levels declared in session.json."""
    return {
        s.standard_id: float(s.bse_reference_dn)
        for s in session.standards
        if s.bse_reference_dn is not None
    }


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


def _mean_time(times: list[datetime]) -> datetime:
    first = min(times)
    return first + (sum(((t - first) for t in times), first - first) / len(times))
