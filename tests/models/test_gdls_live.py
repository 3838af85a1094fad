"""Live GDLS: a simulated session's spectra fields segmented as the stitching completes the
regions under them, into ``bse/labels/gdls`` and ``STORE/gdls/segments.csv``; a restart and a
re-fused region give the same result, nothing duplicated."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import zarr

from semlive.models.gdls import GDLS_LABELS, SEGMENTS_CSV, LiveGdls
from semlive.settings import Settings
from semlive.streaming import RegionChanged, SpectraPlaced, stitch_session

_PHASES = {1: "olivine", 3: "plagioclase", 4: "glass", 0: "epoxy"}


@pytest.fixture(scope="module")
def live_store(small_session, tmp_path_factory):
    store = tmp_path_factory.mktemp("gdls-live") / "store"
    live = LiveGdls(store)
    placed, segmented = [], []
    for event in stitch_session(small_session, store, Settings()):
        if isinstance(event, SpectraPlaced):
            placed.append(event.batch.name)
        segmented += live.handle(event)
    # the last run of each field (a field whose tile a re-solve moved is segmented again)
    segmented = list({s.field: s for s in segmented}.values())
    return store, placed, segmented


def _table(store):
    with (store / SEGMENTS_CSV).open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_each_spectra_field_is_segmented_once_its_regions_are_complete(live_store, small_session):
    store, placed, segmented = live_store
    assert sorted(placed) == sorted(
        f"spectra/{p.name}" for p in (small_session / "spectra").glob("*.npz")
    )
    assert sorted(f"spectra/{s.field}.npz" for s in segmented) == sorted(placed)
    assert sum(s.segments for s in segmented) == len(_table(store))
    root = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    labels = root[GDLS_LABELS]
    assert "gdls" in root["bse/labels"].attrs["ome"]["labels"]
    assert labels["0"].dtype == np.uint32
    assert labels["0"].shape == root["bse/0"].shape
    assert len(labels) == len(root["bse"].attrs["ome"]["multiscales"][0]["datasets"])
    rows = _table(store)
    level0 = np.asarray(labels["0"][...])
    assert {int(r["segment"]) for r in rows} == set(np.unique(level0[level0 > 0]).tolist())
    assert sum(s.segments for s in segmented) == len(rows)
    # the segments of one field are its own range of ids
    for field in segmented:
        ids = [int(r["segment"]) for r in rows if r["field"] == field.field]
        assert min(ids) == field.first_id
        assert max(ids) == field.first_id + field.segments - 1


def test_kept_positions_follow_the_final_tile_placements(live_store, small_session):
    """Each field's points sit where the final placement of their tile puts them, re-solves
    after their arrival included (SpectraMoved)."""
    import json
    import sqlite3

    store, _, segmented = live_store
    session = json.loads((small_session / "session.json").read_text())
    rows, cols = session["tile_shape"]
    pixel = session["pixel_size_um"]
    with sqlite3.connect(store / "ledger.sqlite") as db:
        placed = {
            t: (r, c) for t, r, c in db.execute("SELECT tile, row_px, col_px FROM placements")
        }
    for field in segmented:
        batch = np.load(small_session / "spectra" / f"{field.field}.npz")
        tile = str(batch["tile"])
        side = json.loads((small_session / "tiles" / f"{tile}.json").read_text())
        r0, c0 = placed[tile]
        expected = np.stack(
            [
                r0 + (rows - 1) / 2 + (batch["xy_um"][:, 1] - side["stage_y_um"]) / pixel,
                c0 + (cols - 1) / 2 + (batch["xy_um"][:, 0] - side["stage_x_um"]) / pixel,
            ],
            axis=1,
        )
        with np.load(store / "gdls" / "fields" / f"{field.field}.npz") as data:
            np.testing.assert_allclose(data["mosaic_px"], expected, atol=0.26)


def test_live_segments_follow_the_phases_of_the_truth(live_store, small_session):
    """Each spectrum point's segment, against the truth phase under the point: segments are
    pure, and the olivine points lie in segments named olivine."""
    store, _, segmented = live_store
    root = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    level0 = np.asarray(root[GDLS_LABELS]["0"][...])
    phase_of = {int(r["segment"]): r["phase"] for r in _table(store)}
    pure = total = olivine = olivine_named = 0
    for field in segmented:
        with np.load(store / "gdls" / "fields" / f"{field.field}.npz") as data:
            at = np.rint(data["mosaic_px"]).astype(int)
        truth = np.load(small_session / "_truth" / "spectra" / f"{field.field}.npz")["phase"]
        segment = level0[at[:, 0], at[:, 1]]
        assert np.all(segment > 0)
        for s in np.unique(segment):
            pure += np.bincount(truth[segment == s]).max()
        total += len(segment)
        is_olivine = truth == 1
        olivine += int(is_olivine.sum())
        olivine_named += sum(phase_of[int(s)].startswith("olivine") for s in segment[is_olivine])
    assert pure >= 0.75 * total
    assert olivine > 100
    assert olivine_named >= 0.9 * olivine


def test_a_restart_and_a_re_fused_region_change_nothing(live_store, tmp_path):
    import shutil

    store, _, segmented = live_store
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    before = _table(copy)
    root = zarr.open_group(str(copy / "mosaic.zarr"), mode="r")
    labels_before = np.asarray(root[GDLS_LABELS]["0"][...])
    live = LiveGdls(copy)  # a restart: the kept fields and the state
    assert live.run_ready() == []  # nothing left to do
    field = segmented[0]
    again = live.handle(RegionChanged((0, 0), field.bounds_px))  # re-fused under the field
    assert [f.field for f in again] == [field.field]
    assert again[0].first_id == field.first_id
    after = _table(copy)
    assert len(after) == len(before)
    assert after == before  # the same segments, phases and numbers
    root = zarr.open_group(str(copy / "mosaic.zarr"), mode="r")
    np.testing.assert_array_equal(np.asarray(root[GDLS_LABELS]["0"][...]), labels_before)


def test_a_field_that_cannot_be_segmented_is_recorded_and_the_rest_goes_on(live_store, tmp_path):
    import json
    import shutil

    from semlive.records import SpectraBatch

    store, _, segmented = live_store
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    with np.load(copy / "gdls" / "fields" / f"{segmented[0].field}.npz") as data:
        at, counts = data["mosaic_px"], data["counts"]
    # every spectrum of the batch reported at one stage position: one pixel on the mosaic
    piled = np.repeat(at[:1], len(at), axis=0)
    batch = SpectraBatch(
        name="spectra/piled.npz", xy_um=np.zeros_like(piled), counts=counts,
        channel_offset_ev=0.0, channel_width_ev=10.0, beam_energy_kev=20.0, tile=None,
        bse=None, pixel_size_um=None, checksum="0" * 32,
    )  # fmt: skip
    live = LiveGdls(copy)
    assert live.handle(SpectraPlaced(batch, piled)) == []
    state = json.loads((copy / "gdls" / "state.json").read_text())
    assert f"1 of its {len(at)} spectra lie on the mosaic" in state["fields"]["piled"]["error"]
    assert _table(copy) == _table(store)  # the segments of the other fields are untouched


def test_a_field_that_now_has_more_segments_takes_a_fresh_range(live_store, tmp_path):
    import shutil

    store, _, segmented = live_store
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    live = LiveGdls(copy, min_points=3)  # smaller segments: more of them than before
    field = segmented[0]
    again = live.handle(RegionChanged((0, 0), field.bounds_px))
    assert again[0].segments > field.segments
    assert again[0].first_id > max(f.first_id + f.segments - 1 for f in segmented)
    rows = _table(copy)
    ids = [int(r["segment"]) for r in rows]
    assert len(ids) == len(set(ids))  # no id twice
    root = zarr.open_group(str(copy / "mosaic.zarr"), mode="r")
    level0 = np.asarray(root[GDLS_LABELS]["0"][...])
    assert set(ids) == set(np.unique(level0[level0 > 0]).tolist())  # the old range cleared
    assert len(rows) == again[0].segments + sum(f.segments for f in segmented[1:])
