"""Calibration against the virtual SEM's truth: drift, EPMA registration, mg# and cracks."""

import csv
import json
from datetime import datetime, timedelta

import numpy as np
import pytest
import zarr
from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt

from semlive.acquisition import Ledger, StandardMeasured
from semlive.acquisition import _readers as rd
from semlive.calibration import (
    DriftTracker,
    calibrate_store,
    crack_pixels,
    fit_mgnumber,
    fit_round,
    mosaic_image,
)
from semlive.calibration._drift import StandardLevel
from semlive.cli import main
from semlive.records import EpmaProfile, StandardMeasurement
from semlive.settings import AcquisitionSettings, CalibrationSettings, Settings
from semlive.streaming import stitch_session, truth_on_mosaic
from semlive.virtual_sem import simulate

FAST = AcquisitionSettings(
    observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
)


def _stitch(session, store, corrected=True):
    settings = Settings(acquisition=FAST)

    def make(info, ledger):
        return DriftTracker(info, ledger, settings.calibration)

    return list(stitch_session(session, store, settings, correction=make if corrected else None))


def _truth(session):
    return json.loads((session / "_truth" / "truth.json").read_text())


def _mean_stage_error(session):
    """Mean (x, y) of true − nominal tile centres: the mosaic frame is the true frame minus it
    (Contract 2 anchors the placements' mean deviation from nominal at zero)."""
    with open(session / "_truth" / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return np.mean(
        [
            (
                float(r["true_x_um"]) - float(r["nominal_x_um"]),
                float(r["true_y_um"]) - float(r["nominal_y_um"]),
            )
            for r in rows
        ],
        axis=0,
    )


def _truth_on_mosaic(session, store):
    """Truth maps resampled onto the mosaic's level-0 grid (nearest pixel)."""
    return truth_on_mosaic(store, session / "_truth", ("phase", "instances", "mgnumber"))


@pytest.fixture(scope="module")
def calibrated(small_session, tmp_path_factory):
    store = tmp_path_factory.mktemp("calibrated") / "store"
    _stitch(small_session, store)
    report = calibrate_store(store, CalibrationSettings())
    return store, report


def test_drift_recovers_gain_and_offset_at_any_time(small_session, calibrated):
    store, _ = calibrated
    truth = _truth(small_session)
    drift, start = truth["drift"], datetime.fromisoformat(truth["start"])
    ledger = Ledger(store / "ledger.sqlite")
    session = rd.read_session((small_session / "session.json").read_bytes())
    tracker = DriftTracker(session, ledger)
    ledger.close()
    assert len(tracker.model.rounds) == 2
    assert all(r.mode == "gain-offset" for r in tracker.model.rounds)
    reference = float(np.mean(list(tracker.references.values())))
    first, last = tracker.model.rounds[0].at, tracker.model.rounds[-1].at
    hours = (last - start).total_seconds() / 3600
    for h in np.linspace(0, hours, 9):
        state = tracker.state(start + timedelta(hours=float(h)))
        gain = drift["gain0"] * (1 + drift["gain_per_h"] * h)
        offset = drift["offset0_dn"] + drift["offset_per_h_dn"] * h
        assert abs(state.gain / gain - 1) <= 0.005
        assert abs(state.offset_dn - offset) <= 0.005 * reference  # 0.5 % of the level
        eds = drift["eds0"] * (1 + drift["eds_per_h"] * h)
        assert abs(state.eds_scale / eds - 1) <= 0.005
    assert first <= start + timedelta(minutes=5)


def test_mg_number_is_accurate_and_epma_registration_recovers_the_offset(small_session, calibrated):
    store, report = calibrated
    fit = report.fit
    assert not fit.refused
    # registration: EPMA coordinates + offset land on the mosaic (true frame minus the anchor)
    expected = -np.array(_truth(small_session)["epma_offset_um"]) - _mean_stage_error(small_session)
    assert np.hypot(*(np.array(fit.offset_um) - expected)) <= 1.0
    # held-out profiles against the true mg# along them
    held = [p.name for p in fit.profiles if p.held_out]
    assert held
    errors = []
    for name in held:
        stem = name.rsplit("/", 1)[-1].removesuffix(".csv")
        true = np.load(small_session / "_truth" / "epma" / f"{stem}.npz")
        errors.append(np.array(fit.series[name]["predicted"]) - true["mg_number"])
    assert float(np.sqrt(np.mean(np.concatenate(errors) ** 2))) <= 0.006
    # the map, over olivine pixels away from cracks, holes and rims
    truth = _truth_on_mosaic(small_session, store)
    mg = np.asarray(zarr.open_group(str(store / "mosaic.zarr"), mode="r")["mgnumber"]["0"][:])
    clean = distance_transform_edt(truth["phase"] == 1) > 3
    values = mg[clean]
    assert np.isfinite(values).mean() >= 0.9
    ok = np.isfinite(values)
    assert float(np.sqrt(np.mean((values[ok] - truth["mgnumber"][clean][ok]) ** 2))) <= 0.01


def test_lof_removes_cracks_and_holes_inside_olivine(small_session, calibrated):
    store, _ = calibrated
    truth = _truth_on_mosaic(small_session, store)
    with open(small_session / "_truth" / "crystals.csv", newline="") as f:
        crystals = [
            int(r["crystal_id"])
            for r in csv.DictReader(f)
            if r["phase"] == "olivine" and (int(r["cracks"]) or int(r["holes"]))
        ]
    bse = np.asarray(mosaic_image(store).array[:], dtype=np.float64)
    removed = cracks = kept = clean = 0
    for cid in crystals:
        inside = truth["instances"] == cid
        if inside.sum() < 400:
            continue
        rr, cc = np.nonzero(inside)
        window = np.s_[rr.min() : rr.max() + 1, cc.min() : cc.max() + 1]
        mask = inside[window]
        flagged = crack_pixels(bse[window], mask)
        crack = mask & (truth["phase"][window] == 0)
        olivine = binary_erosion(mask & (truth["phase"][window] == 1), iterations=1)
        # the truth is resampled to the mosaic to the nearest pixel and tiles sit at whole
        # pixels, so a crack pixel counts as removed when a flagged pixel is within one pixel
        removed += (binary_dilation(flagged) & crack).sum()
        cracks += crack.sum()
        kept += (~flagged & olivine).sum()
        clean += olivine.sum()
    assert cracks > 100  # the simulated section has cracked and holed olivine
    assert removed / cracks >= 0.9
    assert kept / clean >= 0.95


def test_two_sessions_twenty_days_apart_agree_after_correction(small_session, calibrated, tmp_path):
    store0, report = calibrated
    later = tmp_path / "session1"
    simulate(later, "small", seed=0, session=1)
    store1, raw1 = tmp_path / "store1", tmp_path / "raw1"
    _stitch(later, store1)
    _stitch(later, raw1, corrected=False)
    fit = report.fit
    with open(small_session / "_truth" / "crystals.csv", newline="") as f:
        olivine = [r for r in csv.DictReader(f) if r["phase"] == "olivine"]
    biggest = max(olivine, key=lambda r: float(r["area_um2"]))
    cid = int(biggest["crystal_id"])

    def crystal_mg(session, store):
        truth = _truth_on_mosaic(session, store)
        interior = distance_transform_edt(truth["instances"] == cid) > 4
        interior &= truth["phase"] == 1
        bse = np.asarray(mosaic_image(store).array[:], dtype=np.float64)
        assert interior.sum() > 500
        return float(fit.mg(bse[interior]).mean())

    first = crystal_mg(small_session, store0)
    corrected, uncorrected = crystal_mg(later, store1), crystal_mg(later, raw1)
    assert abs(corrected - first) <= 0.005
    assert abs(uncorrected - first) >= 0.05  # the 20-day jump is real (the paper's ~0.09)


# -- bad input ---------------------------------------------------------------------------------


def _level(name, sid, when, dn):
    return StandardLevel(name, sid, when, dn, 2.0, 4000)


def test_a_round_without_contrast_is_offset_only_and_an_unknown_standard_is_a_failed_value():
    when = datetime(2026, 3, 9, 8, 0).astimezone()
    one = fit_round([_level("SCOL-01", "SCOL", when, 25100.0)], {"SCOL": 25000.0})
    assert one.mode == "offset"
    assert one.gain == 1.0
    assert abs(one.offset_dn - 100.0) < 1e-6
    failed = fit_round([_level("X-01", "X", when, 100.0)], {"SCOL": 25000.0})
    assert "no reference level for X" in failed.reason


def test_no_standards_leaves_tiles_uncorrected_and_says_so(small_session, tmp_path):
    session = rd.read_session((small_session / "session.json").read_bytes())
    ledger = Ledger(tmp_path / "ledger.sqlite")
    tracker = DriftTracker(session, ledger)
    assert tracker.model.mode.startswith("uncorrected")
    image = np.full((4, 4), 30000, dtype=np.uint16)
    side = rd.read_sidecar(
        (small_session / "tiles" / "r000c000.json").read_bytes(),
        "tiles/r000c000.json",
        "r000c000",
        session,
    )
    np.testing.assert_array_equal(tracker(side, image), image)
    # one measurement far from its reference: a drift alert, on the control chart
    rng = np.random.default_rng(0)
    pixels = rng.normal(25009.7 * 1.05, 200, (64, 64)).astype(np.uint16)
    measurement = StandardMeasurement("SCOL-01", "SCOL", side.acquired_at, pixels, "x")
    alerts = tracker.add(StandardMeasured(measurement, None))
    assert len(alerts) == 1
    assert abs(alerts[0].deviation - 0.05) < 0.002
    assert "control limit" in alerts[0].message()
    assert "held constant" in tracker.model.mode  # one round: said, not hidden
    with ledger.transaction() as db:
        assert db.execute("SELECT alert FROM standards").fetchone()[0] == 1
    ledger.close()


def test_profiles_off_the_mosaic_are_skipped_and_unphysical_fits_refused(small_session, calibrated):
    store, _ = calibrated
    image = mosaic_image(store)
    profiles = [
        rd.read_epma(p.read_bytes(), p.name) for p in sorted((small_session / "epma").glob("*.csv"))
    ]
    far = EpmaProfile("far.csv", profiles[0].xy_um + 50_000.0, profiles[0].mg_number, "x")
    fit = fit_mgnumber(image, [*profiles, far])
    skipped = {p.name: p.reason for p in fit.profiles if not p.used}
    assert skipped == {"far.csv": "does not intersect the mosaic"}
    assert not fit.refused
    reversed_ = [EpmaProfile(p.name, p.xy_um, 1.6 - p.mg_number, "x") for p in profiles]
    refused = fit_mgnumber(image, reversed_)
    assert "rises with BSE" in refused.refused


def test_calibrate_and_status_commands_report_drift_and_fit(calibrated, capsys):
    store, _ = calibrated
    assert main(["calibrate", str(store)]) == 0
    out = capsys.readouterr().out
    assert "gain and offset, 2 rounds of standards" in out
    assert "held-out profiles: R²" in out
    for figure in ("drift.png", "calibration_line.png", "residuals.png", "profiles.png"):
        assert (store / "calibration" / figure).stat().st_size > 1000
    assert main(["status", str(store)]) == 0
    out = capsys.readouterr().out
    assert "drift: gain and offset, 2 rounds" in out
    assert "mg# = " in out
    assert main(["status", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["drift"]["standards_measured"] == 4
    assert status["mgnumber"]["test"]["rmse"] < 0.01


def test_a_later_session_takes_its_references_from_the_first_sessions_store(
    small_session, tmp_path
):
    from dataclasses import replace

    declared = rd.read_session((small_session / "session.json").read_bytes())
    bare = replace(
        declared, standards=tuple(replace(s, bse_reference_dn=None) for s in declared.standards)
    )
    when = datetime(2026, 3, 9, 8, 0).astimezone()
    rng = np.random.default_rng(1)

    def measured(name, sid, level, at):
        pixels = rng.normal(level, 150, (64, 64)).astype(np.uint16)
        return StandardMeasured(StandardMeasurement(name, sid, at, pixels, name), None)

    first = Ledger(tmp_path / "first" / "ledger.sqlite")
    tracker = DriftTracker(bare, first)
    tracker.add(measured("SCOL-01", "SCOL", 25000.0, when))
    tracker.add(measured("FAY-01", "FAY", 46000.0, when))
    first.close()
    assert tracker.reference_source == "first round of standards of this session"
    later = Ledger(tmp_path / "later" / "ledger.sqlite")
    settings = CalibrationSettings(reference_store=str(tmp_path / "first"))
    tracker = DriftTracker(bare, later, settings)
    assert tracker.reference_source.startswith("reference store")
    # the later session reads 5 % brighter and 300 DN up: the fit recovers it on one scale
    at = when + timedelta(days=20)
    tracker.add(measured("SCOL-01", "SCOL", 25000.0 * 1.05 + 300, at))
    tracker.add(measured("FAY-01", "FAY", 46000.0 * 1.05 + 300, at))
    later.close()
    (fitted,) = tracker.model.rounds
    assert abs(fitted.gain - 1.05) < 0.002
    assert abs(fitted.offset_dn - 300) < 60
