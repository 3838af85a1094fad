"""Stitching simulated sessions against their ground truth; the OME-Zarr mosaic it writes."""

import csv
import itertools
import json
import random

import numpy as np
import pytest
import zarr

from semlive.acquisition import Ingestor, Ledger, SessionOpened, TileReady
from semlive.cli import main
from semlive.settings import AcquisitionSettings, Settings, StreamingSettings
from semlive.streaming import RegionComplete, Stitcher, stitch_session

FAST = AcquisitionSettings(
    observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
)


def _truth_positions(session):
    with open(session / "_truth" / "tiles.csv", newline="") as f:
        return {
            r["tile"]: (float(r["true_x_um"]), float(r["true_y_um"])) for r in csv.DictReader(f)
        }


def _placement_error_px(placed, truth):
    """RMS placement error after removing the common offset (the anchor is a convention)."""
    d = np.array([np.subtract(placed[t], truth[t]) for t in placed])
    d -= d.mean(axis=0)
    return float(np.sqrt((d**2).sum(axis=1).mean()))


@pytest.fixture(scope="module")
def ready_events(small_session, tmp_path_factory):
    store = tmp_path_factory.mktemp("ingest")
    with Ingestor(small_session, store, FAST) as ingestor:
        events = list(ingestor.run())
    session = next(e.session for e in events if isinstance(e, SessionOpened))
    return session, [e for e in events if isinstance(e, TileReady)]


def _stitch(session, events, store):
    ledger = Ledger(store / "ledger.sqlite")
    stitcher = Stitcher(store, session, ledger, StreamingSettings())
    regions = []
    for event in events:
        regions += stitcher.add(event)
    regions += stitcher.finish()
    placed = stitcher.placements_um()
    ledger.close()
    return placed, regions


def test_placement_error_is_below_half_a_pixel(small_session, ready_events, tmp_path):
    session, events = ready_events
    placed, _ = _stitch(session, events, tmp_path)
    truth = _truth_positions(small_session)
    assert len(placed) == 36
    nominal = {e.sidecar.tile: (e.sidecar.stage_x_um, e.sidecar.stage_y_um) for e in events}
    assert _placement_error_px(nominal, truth) > 3.0  # the stage really erred
    assert _placement_error_px(placed, truth) <= 0.5


def test_any_arrival_order_gives_the_same_placement(ready_events, tmp_path):
    session, events = ready_events
    first, regions = _stitch(session, events, tmp_path / "a")
    shuffled = list(events)
    random.Random(4).shuffle(shuffled)
    second, _ = _stitch(session, shuffled, tmp_path / "b")
    for tile in first:
        assert np.hypot(*np.subtract(first[tile], second[tile])) <= 0.1
    completed = [r.region for r in regions if isinstance(r, RegionComplete)]
    assert len(completed) == len(set(completed))  # each region completes once


def test_the_mosaic_is_valid_ome_zarr_and_puts_pixels_where_the_stage_was(
    small_session, ready_events, tmp_path
):
    from ome_zarr_models.v05.image import Image

    session, events = ready_events
    placed, _ = _stitch(session, events, tmp_path)
    group = zarr.open_group(str(tmp_path / "mosaic.zarr"), mode="r")
    Image.from_zarr(group["bse"])
    transforms = group["bse"].attrs["ome"]["multiscales"][0]["datasets"][0][
        "coordinateTransformations"
    ]
    scale = transforms[0]["scale"][0]
    ty, tx = transforms[1]["translation"]
    level0 = group["bse"]["0"]
    # the centre pixel of a tile in the middle of the mosaic: mosaic value == tile value
    event = next(e for e in events if e.sidecar.tile == "r002c002")
    x_um, y_um = placed["r002c002"]
    tile = event.image.image
    rows, cols = tile.shape
    # the tile lands at whole pixels: its pixel (0, 0) at the rounded placement
    row0 = round((y_um - ty) / scale - (rows - 1) / 2)
    col0 = round((x_um - tx) / scale - (cols - 1) / 2)
    r, c = rows // 2, cols // 2
    np.testing.assert_array_equal(
        level0[row0 + r - 5 : row0 + r + 5, col0 + c - 5 : col0 + c + 5],
        tile[r - 5 : r + 5, c - 5 : c + 5],
    )
    # every coarser level is the rounded 2×2 mean of the one below (edge rows repeated)
    datasets = group["bse"].attrs["ome"]["multiscales"][0]["datasets"]
    levels = [np.asarray(group["bse"][d["path"]][:]) for d in datasets]
    assert len(levels) >= 3
    for below, here in itertools.pairwise(levels):
        src = np.pad(
            below.astype(float), [(0, below.shape[0] % 2), (0, below.shape[1] % 2)], "edge"
        )
        expected = np.rint(src.reshape(here.shape[0], 2, here.shape[1], 2).mean(axis=(1, 3)))
        np.testing.assert_array_equal(here, expected.astype(here.dtype))


def test_stitch_command_resumes_and_the_store_reopens_while_running(small_session, tmp_path):
    store = tmp_path / "store"
    settings = Settings(acquisition=FAST)
    seen_valid = 0
    for event in stitch_session(small_session, store, settings):
        if isinstance(event, RegionComplete):  # another program opens it mid-session
            group = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
            assert group["bse"]["0"][event.bounds_px[0], event.bounds_px[1]] >= 0
            seen_valid += 1
    assert seen_valid > 0
    placements = _ledger_placements(store)
    assert main(["stitch", str(small_session), "--store", str(store)]) == 0  # a restart
    again = _ledger_placements(store)
    assert set(again) == set(placements)
    for tile, xy in placements.items():
        assert np.hypot(*np.subtract(xy, again[tile])) <= 0.1
    truth = _truth_positions(small_session)
    assert _placement_error_px(again, truth) <= 0.5


def _ledger_placements(store):
    import sqlite3

    db = sqlite3.connect(store / "ledger.sqlite")
    try:
        return {t: (x, y) for t, x, y in db.execute("SELECT tile, x_um, y_um FROM placements")}
    finally:
        db.close()


def test_status_reports_stitching_quality(small_session, tmp_path, capsys):
    store = tmp_path / "store"
    list(stitch_session(small_session, store, Settings(acquisition=FAST)))
    assert main(["status", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    stitching = status["stitching"]
    assert stitching["tiles_placed"] == 36
    assert stitching["pairs_accepted"] >= 55
    assert stitching["worst_residual_px"] < 1.0


def test_eds_maps_land_in_the_mosaic_with_element_labels(small_session, tmp_path, monkeypatch):
    from ome_zarr_models.v05.image import Image

    import semlive.streaming._stitcher as stitcher_module

    # tiny caches: tiles and maps are re-read from the session folder, as in a long session
    monkeypatch.setattr(stitcher_module, "_EDS_CACHE", 2)
    store = tmp_path / "store"
    settings = Settings(acquisition=FAST, streaming=StreamingSettings(tile_cache=8))
    list(stitch_session(small_session, store, settings))
    group = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    Image.from_zarr(group["eds"])
    labels = [c["label"] for c in group["eds"].attrs["ome"]["omero"]["channels"]]
    meta = json.loads((small_session / "session.json").read_text())
    assert labels == meta["eds"]["elements"]
    eds = group["eds"]["0"]
    bse = group["bse"]["0"][...]
    covered = eds[labels.index("Si")] > 0
    # EDS only where EDS frames were acquired (9 of 36 tiles), always on scanned pixels
    assert 0.1 < covered.mean() / (bse > 0).mean() < 0.5
    assert (bse[covered] > 0).all()


def test_a_tile_all_neighbours_reject_is_placed_by_the_stage_model_and_flagged(
    small_session, ready_events, tmp_path
):
    import dataclasses

    session, events = ready_events
    rng = np.random.default_rng(0)
    blank = []
    for event in events:
        if event.sidecar.tile == "r002c003":  # over featureless resin, say
            flat = (30000 + rng.normal(0, 200, event.image.image.shape)).astype(np.uint16)
            event = dataclasses.replace(event, image=dataclasses.replace(event.image, image=flat))
        blank.append(event)
    placed, _ = _stitch(session, blank, tmp_path)
    assert "r002c003" in placed  # never dropped
    import sqlite3

    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        linked = dict(db.execute("SELECT tile, linked FROM placements"))
        rejected = list(
            db.execute(
                "SELECT reason FROM pairs WHERE (a = 'r002c003' OR b = 'r002c003') AND accepted = 0"
            )
        )
    finally:
        db.close()
    assert linked["r002c003"] == 0
    assert len(rejected) == 4
    assert all("noise threshold" in r[0] for r in rejected)
    truth = _truth_positions(small_session)
    others = {t: xy for t, xy in placed.items() if t != "r002c003"}
    assert _placement_error_px(others, {t: truth[t] for t in others}) <= 0.5
