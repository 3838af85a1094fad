"""The live drift tracker: standards in, drift model and control chart in the ledger, tiles out
corrected.

A :class:`DriftTracker` is what the stitcher calls to put a BSE tile on the reference scale
before it is fused (the raw tile in the session folder stays the source of truth). Each standard
measurement is reduced to a level, stored in the ledger's ``standards`` table with its control
limits, and the drift model is refitted; the fitted rounds go to the ``drift`` table. A standard
outside its limits gives a :class:`DriftAlert`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import Ledger, StandardMeasured
from semlive.calibration._drift import (
    DriftAlert,
    DriftModel,
    DriftRound,
    DriftState,
    FailedRound,
    StandardLevel,
    correct_bse,
    fit_round,
    group_rounds,
    measure_standard,
    session_references,
)
from semlive.records import SessionInfo, TileSidecar
from semlive.settings import CalibrationSettings

__all__ = ["DriftTracker", "drift_correction", "load_levels"]

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS standards (
    measurement TEXT PRIMARY KEY, standard TEXT NOT NULL, acquired_at TEXT NOT NULL,
    bse_dn REAL NOT NULL, sigma_dn REAL NOT NULL, pixels INTEGER NOT NULL, eds_counts REAL,
    reference_dn REAL, deviation REAL, lower_limit_dn REAL, upper_limit_dn REAL,
    alert INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drift (
    at TEXT PRIMARY KEY, gain REAL, offset_dn REAL, gain_sigma REAL, offset_sigma_dn REAL,
    mode TEXT NOT NULL, standards TEXT NOT NULL, eds_scale REAL, failed TEXT);
"""


def load_levels(ledger: Ledger) -> list[StandardLevel]:
    """The standard levels a store's ledger holds (empty when it has none)."""
    ledger.ensure_tables(_SCHEMA)
    with ledger.transaction() as db:
        rows = db.execute(
            "SELECT measurement, standard, acquired_at, bse_dn, sigma_dn, pixels, eds_counts "
            "FROM standards ORDER BY acquired_at"
        ).fetchall()
    return [
        StandardLevel(m, s, datetime.fromisoformat(t), lv, sd, n, eds)
        for m, s, t, lv, sd, n, eds in rows
    ]


class DriftTracker:
    """Drift of one session, kept up to date as standards arrive."""

    def __init__(
        self,
        session: SessionInfo,
        ledger: Ledger,
        settings: CalibrationSettings | None = None,
    ) -> None:
        self.session, self.ledger = session, ledger
        self.settings = settings or CalibrationSettings()
        ledger.ensure_tables(_SCHEMA)
        self.levels: dict[str, StandardLevel] = {lv.name: lv for lv in load_levels(ledger)}
        self.references, self.eds_references, self.reference_source = self._references()
        self.model = DriftModel()
        self.version = 0
        self.full_scale = float(2**session.bse_bit_depth - 1)
        self._refit()

    # -- references -------------------------------------------------------------------------
    def _references(self) -> tuple[dict[str, float], dict[str, float], str]:
        """BSE (and EDS) reference levels: session.json, else a reference store, else the first
        round of this session."""
        declared = session_references(self.session)
        store = self.settings.reference_store
        first: list[StandardLevel] = []
        source = ""
        if store:
            path = Path(store) / "ledger.sqlite"
            if path.exists():
                other = Ledger(path)
                try:
                    rounds = group_rounds(load_levels(other), self.settings.round_gap_h)
                finally:
                    other.close()
                first, source = (rounds[0] if rounds else []), f"reference store {store}"
            else:
                logger.warning("reference store %s has no ledger; using this session", store)
        if not first:
            rounds = group_rounds(list(self.levels.values()), self.settings.round_gap_h)
            first = rounds[0] if rounds else []
            source = "first round of standards of this session"
        bse = declared or _mean_by_standard(first, "bse")
        return bse, _mean_by_standard(first, "eds"), "session.json" if declared else source

    # -- standards in -----------------------------------------------------------------------
    def add(self, event: StandardMeasured) -> list[DriftAlert]:
        """Take one standard measurement; the alerts it raises (empty when within limits)."""
        level = measure_standard(event.measurement, event.eds)
        self.levels[level.name] = level
        # references from this session's first round are known once it is measured
        if not self.references or (level.eds_counts is not None and not self.eds_references):
            self.references, self.eds_references, self.reference_source = self._references()
        alert = self._alert(level)
        self._store(level, alert)
        self._refit()
        if alert is not None:
            logger.warning("%s", alert.message())
        return [alert] if alert is not None else []

    def _alert(self, level: StandardLevel) -> DriftAlert | None:
        reference = self.references.get(level.standard_id)
        if not reference:
            return None
        deviation = (level.bse_dn - reference) / reference
        limit = self.settings.drift_limit
        if abs(deviation) <= limit:
            return None
        return DriftAlert(level.name, level.standard_id, level.acquired_at, deviation, limit)

    def _store(self, level: StandardLevel, alert: DriftAlert | None) -> None:
        reference = self.references.get(level.standard_id)
        limit = self.settings.drift_limit
        row = (
            level.name,
            level.standard_id,
            level.acquired_at.isoformat(),
            level.bse_dn,
            level.sigma_dn,
            level.pixels,
            level.eds_counts,
            reference,
            None if not reference else (level.bse_dn - reference) / reference,
            None if not reference else reference * (1 - limit),
            None if not reference else reference * (1 + limit),
            int(alert is not None),
        )
        with self.ledger.transaction() as db:
            db.execute("INSERT OR REPLACE INTO standards VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)

    def _refit(self) -> None:
        rounds: list[DriftRound] = []
        failed: list[FailedRound] = []
        for group in group_rounds(list(self.levels.values()), self.settings.round_gap_h):
            fit = fit_round(group, self.references, self.eds_references)
            (rounds if isinstance(fit, DriftRound) else failed).append(fit)  # type: ignore[arg-type]
        model = DriftModel(tuple(rounds), tuple(failed))
        if model != self.model:
            self.model = model
            self.version += 1
            self._store_rounds()

    def _store_rounds(self) -> None:
        rows: list[tuple[object, ...]] = [
            (
                r.at.isoformat(),
                r.gain,
                r.offset_dn,
                r.gain_sigma,
                r.offset_sigma_dn,
                r.mode,
                ",".join(r.standards),
                r.eds_scale,
                None,
            )
            for r in self.model.rounds
        ]
        rows += [
            (
                f.at.isoformat(),
                None,
                None,
                None,
                None,
                "failed",
                ",".join(f.standards),
                None,
                f.reason,
            )
            for f in self.model.failed
        ]
        with self.ledger.transaction() as db:
            db.execute("DELETE FROM drift")
            db.executemany("INSERT OR REPLACE INTO drift VALUES (?,?,?,?,?,?,?,?,?)", rows)

    # -- tiles out ------------------------------------------------------------------------------
    def state(self, when: datetime) -> DriftState:
        return self.model.at(when)

    def __call__(self, sidecar: TileSidecar, image: NDArray[np.generic]) -> NDArray[np.generic]:
        """The tile on the reference scale (for the mosaic's ``bse/``)."""
        state = self.model.at(sidecar.acquired_at)
        if state.how == "uncorrected":
            return image
        return correct_bse(image, state, self.full_scale)

    def eds_scale(self, when: datetime) -> float:
        """EDS counts at ``when`` relative to the reference (multiply thresholds by it)."""
        return self.model.at(when).eds_scale

    def summary(self) -> dict[str, object]:
        """For ``semlive status``."""
        return summarise(self.model, self.reference_source, list(self.levels.values()))


def summarise(
    model: DriftModel, reference_source: str, levels: list[StandardLevel]
) -> dict[str, object]:
    return {
        "mode": model.mode,
        "references": reference_source,
        "measurements": len(levels),
        "rounds": [
            {
                "at": r.at.isoformat(),
                "gain": round(r.gain, 5),
                "offset_dn": round(r.offset_dn, 1),
                "fit": r.mode,
                "eds_scale": None if r.eds_scale is None else round(r.eds_scale, 4),
            }
            for r in model.rounds
        ],
        "failed": [{"at": f.at.isoformat(), "reason": f.reason} for f in model.failed],
    }


def _mean_by_standard(levels: list[StandardLevel], what: str) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for lv in levels:
        v = lv.bse_dn if what == "bse" else lv.eds_counts
        if v is not None:
            values.setdefault(lv.standard_id, []).append(v)
    return {k: float(np.mean(v)) for k, v in values.items()}


def drift_correction(
    settings: CalibrationSettings,
) -> Callable[[SessionInfo, Ledger], DriftTracker]:
    """The drift tracker of a session, made when the session opens (``stitch_session``'s
    ``correction``): every tile is fused on the reference scale."""

    def make(session: SessionInfo, ledger: Ledger) -> DriftTracker:
        return DriftTracker(session, ledger, settings)

    return make
