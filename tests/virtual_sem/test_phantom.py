"""The phantom against the Virtual SEM issue's acceptance, on a simulated `small` session."""

import csv
import json

import numpy as np
import pytest
import tifffile
from scipy.ndimage import binary_erosion

OLIVINE, CPX, PLAG, RESIN = 1, 2, 3, 0


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _eds_rule_share(session, phase_code, read_truth_map):
    """Share of the phase's interior pixels (2 px in) meeting the paper's olivine EDS rules."""
    elements = json.loads((session / "session.json").read_text())["eds"]["elements"]
    mg, ca, al = (elements.index(e) for e in ("Mg", "Ca", "Al"))
    tiles = {row["tile"]: row for row in _rows(session / "_truth" / "tiles.csv")}
    truth = json.loads((session / "_truth" / "truth.json").read_text())["mosaic"]
    phase_map = read_truth_map(session, "phase")
    hits = total = 0
    for path in sorted((session / "tiles").glob("*.eds.tif")):
        maps = tifffile.imread(path).astype(float)
        row = tiles[path.name.split(".")[0]]
        r0 = round(float(row["true_y_um"]) - (maps.shape[1] - 1) / 2 - truth["origin_y_um"])
        c0 = round(float(row["true_x_um"]) - (maps.shape[2] - 1) / 2 - truth["origin_x_um"])
        phase = phase_map[r0 : r0 + maps.shape[1], c0 : c0 + maps.shape[2]]
        with np.errstate(divide="ignore", invalid="ignore"):
            rule = (maps[ca] / maps[mg] < 0.1) & (maps[al] / maps[mg] < 0.1) & (maps[mg] > 30)
        interior = binary_erosion(phase == phase_code, iterations=2)
        hits += int(rule[interior].sum())
        total += int(interior.sum())
    return hits / total, total


def test_olivine_meets_the_eds_rules_and_pyroxene_plagioclase_do_not(small_session, read_truth_map):
    olivine, n = _eds_rule_share(small_session, OLIVINE, read_truth_map)
    assert n > 5000
    assert olivine >= 0.95
    for code in (CPX, PLAG):
        share, n = _eds_rule_share(small_session, code, read_truth_map)
        assert n > 5000
        assert share < 0.01


@pytest.fixture(scope="module")
def truth_maps(small_session, read_truth_map):
    return {name: read_truth_map(small_session, name) for name in ("phase", "bse", "mgnumber")}


def test_clinopyroxene_overlaps_olivine_in_bse(truth_maps):
    phase, bse = truth_maps["phase"], truth_maps["bse"]
    lo, hi = np.percentile(bse[phase == OLIVINE], [1, 99])
    cpx = bse[phase == CPX]
    assert np.mean((cpx >= lo) & (cpx <= hi)) >= 0.30


def test_olivine_bse_is_linear_in_mg_number(truth_maps):
    olivine = truth_maps["phase"] == OLIVINE
    mg, bse = truth_maps["mgnumber"][olivine], truth_maps["bse"][olivine]
    assert np.ptp(mg) > 0.15
    r = np.corrcoef(mg, bse)[0, 1]
    assert r**2 >= 0.99
    assert r < 0  # Fe-rich olivine is brighter


def test_phase_proportions_hit_their_targets(truth_maps):
    phase = truth_maps["phase"]
    scanned = phase != 255
    solid = scanned & (phase != RESIN)
    assert abs(np.mean(phase[scanned] == RESIN) - 0.20) <= 0.02
    assert abs(np.sum(phase == OLIVINE) / solid.sum() - 0.085) <= 0.02
    assert abs(np.sum(phase == CPX) / solid.sum() - 0.09) <= 0.02


def test_every_size_class_and_zoning_type_is_present(small_session):
    rows = _rows(small_session / "_truth" / "crystals.csv")
    olivine = [r for r in rows if r["phase"] == "olivine" and float(r["area_um2"]) > 100]
    assert {r["size_class"] for r in olivine} == {"microlite", "microphenocryst", "phenocryst"}
    phenocrysts = [r for r in olivine if r["size_class"] == "phenocryst"]
    assert {r["zoning"] for r in phenocrysts} >= {"normal", "reverse"}
    assert any(r["cracks"] != "0" or r["holes"] != "0" for r in olivine)


def test_truth_zoning_follows_the_core_rim_ratio(small_session):
    rows = _rows(small_session / "_truth" / "crystals.csv")
    for r in rows:
        if r["phase"] == "olivine" and r["size_class"] == "phenocryst":
            ratio = float(r["core_rim_ratio"])
            expected = "normal" if ratio < 0.96 else "reverse" if ratio > 1.04 else "none"
            assert r["zoning"] == expected
            # a normally zoned crystal has a Mg-richer core, a reversely zoned one a Mg-richer rim
            if expected != "none":
                assert (float(r["mg_core"]) > float(r["mg_rim"])) == (expected == "normal")
