"""The files of a simulated session agree with Contract 1 and with their ground truth."""

import csv
import json
from datetime import datetime

import numpy as np
import pytest
import tifffile

from semlive.virtual_sem import simulate


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_session_json_and_sidecars_follow_contract_1(small_session):
    meta = json.loads((small_session / "session.json").read_text())
    assert meta["format"] == "semlive.session/1"
    assert meta["stage_axes"] == {"x": "+col", "y": "+row"}
    rows, cols = meta["tile_shape"]
    for sid, std in meta["standards"].items():
        assert {"description", "mean_z", "bse_reference"} <= set(std), sid
    sidecars = sorted((small_session / "tiles").glob("r*.json"))
    assert len(sidecars) == meta["grid"]["rows"] * meta["grid"]["cols"]
    times = []
    for path in sidecars:
        side = json.loads(path.read_text())
        assert side["tile"] == path.name[:-5]
        assert side["kind"] == "bse"
        when = datetime.fromisoformat(side["acquired_at"])
        assert when.utcoffset() is not None
        times.append((side["row"], side["col"], when))
        assert tifffile.imread(path.with_suffix(".tif")).shape == (rows, cols)
    # serpentine: acquisition time grows along each row in alternating directions
    first_row = sorted((c, t) for r, c, t in times if r == 0)
    assert [t for _, t in first_row] == sorted(t for _, t in first_row)
    second_row = sorted((c, t) for r, c, t in times if r == 1)
    assert [t for _, t in second_row] == sorted((t for _, t in second_row), reverse=True)


def test_tiles_sit_at_their_true_stage_positions(small_session, read_truth_map):
    """The tile matches the truth BSE at its true position, not at its nominal one."""
    truth = json.loads((small_session / "_truth" / "truth.json").read_text())["mosaic"]
    bse = read_truth_map(small_session, "bse")
    row = next(r for r in _rows(small_session / "_truth" / "tiles.csv") if r["tile"] == "r002c003")
    tile = tifffile.imread(small_session / "tiles" / "r002c003.tif").astype(float)

    def ncc(x_um, y_um):
        r0 = round(y_um - (tile.shape[0] - 1) / 2 - truth["origin_y_um"])
        c0 = round(x_um - (tile.shape[1] - 1) / 2 - truth["origin_x_um"])
        crop = bse[r0 : r0 + tile.shape[0], c0 : c0 + tile.shape[1]]
        return np.corrcoef(crop.ravel(), tile.ravel())[0, 1]

    at_true = ncc(float(row["true_x_um"]), float(row["true_y_um"]))
    at_nominal = ncc(float(row["nominal_x_um"]), float(row["nominal_y_um"]))
    assert at_true > 0.9
    assert at_true > at_nominal + 0.05


def test_sparse_spectra_are_poisson_counts_at_known_points(small_session):
    meta = json.loads((small_session / "session.json").read_text())
    batches = sorted((small_session / "spectra").glob("*.npz"))
    assert len(batches) == 2
    tiles = {r["tile"]: r for r in _rows(small_session / "_truth" / "tiles.csv")}
    for batch in batches:
        with np.load(batch) as data:
            xy, counts, tile = data["xy_um"], data["counts"], str(data["tile"])
        with np.load(small_session / "_truth" / "spectra" / batch.name) as truth:
            true_xy, share = truth["xy_um"], truth["share"]
        assert xy.shape == (counts.shape[0], 2)
        assert counts.shape[1] == meta["spectra"]["channels"]
        assert abs(counts.sum(axis=1).mean() - 1000) < 10
        assert counts.sum(axis=1).std() == pytest.approx(np.sqrt(1000), rel=0.15)
        # reported positions are in the tile's reported frame; the truth is shifted by its error
        shift = np.array(
            [
                float(tiles[tile]["true_x_um"]) - float(tiles[tile]["nominal_x_um"]),
                float(tiles[tile]["true_y_um"]) - float(tiles[tile]["nominal_y_um"]),
            ]
        )
        np.testing.assert_allclose(true_xy - xy, np.broadcast_to(shift, xy.shape), atol=1e-3)
        assert share.min() > 0.0
        assert share.max() <= 1.0 + 1e-9
        assert np.mean(share < 0.999) > 0.02  # boundary mixing happens


def test_epma_profiles_carry_noise_and_the_instrument_offset(small_session):
    truth = json.loads((small_session / "_truth" / "truth.json").read_text())
    profiles = sorted((small_session / "epma").glob("*.csv"))
    assert len(profiles) == 4
    residuals = []
    for path in profiles:
        measured = np.loadtxt(path, delimiter=",", skiprows=1)
        with np.load(small_session / "_truth" / "epma" / path.with_suffix(".npz").name) as t:
            true_xy, true_mg = t["xy_um"], t["mg_number"]
        assert len(measured) >= 10
        offset = (measured[:, :2] - true_xy).mean(axis=0)
        np.testing.assert_allclose(offset, truth["epma_offset_um"], atol=0.1)
        residuals.append(measured[:, 2] - true_mg)
    assert np.std(np.concatenate(residuals)) == pytest.approx(0.003, rel=0.3)


def _standard_levels(session, standard):
    levels = []
    for path in sorted((session / "standards").glob(f"{standard}-*.tif")):
        if path.name.endswith(".eds.tif"):
            continue
        side = json.loads(path.with_suffix(".json").read_text())
        levels.append((side["acquired_at"], float(np.median(tifffile.imread(path)))))
    return levels


def test_standards_show_the_drift_of_the_truth(tmp_path):
    for k in (0, 1):
        simulate(tmp_path / f"s{k}", "tiny", seed=4, session=k)
    levels = {}
    for k in (0, 1):
        session = tmp_path / f"s{k}"
        meta = json.loads((session / "session.json").read_text())
        drift = json.loads((session / "_truth" / "truth.json").read_text())["drift"]
        start = datetime.fromisoformat(
            json.loads((session / "_truth" / "truth.json").read_text())["start"]
        )
        for sid, std in meta["standards"].items():
            for when, level in _standard_levels(session, sid):
                hours = (datetime.fromisoformat(when) - start).total_seconds() / 3600
                gain = drift["gain0"] * (1 + drift["gain_per_h"] * hours)
                offset = drift["offset0_dn"] + drift["offset_per_h_dn"] * hours
                assert level == pytest.approx(gain * std["bse_reference"] + offset, rel=0.01)
                levels.setdefault((k, sid), []).append(level)
    jump = np.mean(levels[(1, "FAY")]) / np.mean(levels[(0, "FAY")])
    assert abs(jump - 1) > 0.05  # a 20-day gap shifts the scale (Leichter et al. 2022)
    # the same sample: crystals inside both scans are the same crystals with the same zoning
    inside = [
        {
            r["crystal_id"]: (r["profile"], r["mg_core"])
            for r in _rows(tmp_path / s / "_truth" / "crystals.csv")
            if r["touches_edge"] == "False"
        }
        for s in ("s0", "s1")
    ]
    common = set(inside[0]) & set(inside[1])
    assert len(common) > 10
    assert all(inside[0][c] == inside[1][c] for c in common)
