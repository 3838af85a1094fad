"""A GDLS field: a folder the virtual SEM writes (field.json, BSE TIFF, spectra .npz) or a
Bruker .bcf whose pixels every STEP are the sparse points."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from semlive.acquisition._field import read_field
from semlive.errors import InputDataError
from semlive.virtual_sem import simulate_field, write_field


@pytest.fixture(scope="module")
def field():
    return simulate_field("olivine", shape=(90, 120), crystals=1, seed=2)


def test_a_written_field_reads_back_point_for_point(field, tmp_path):
    folder = write_field(field, tmp_path / "f")
    data = read_field(folder)
    np.testing.assert_array_equal(data.bse, field.bse)
    np.testing.assert_array_equal(data.rows, field.rows)
    np.testing.assert_array_equal(data.cols, field.cols)
    np.testing.assert_array_equal(data.counts, field.spectra)
    assert data.channel_width_ev == field.detector.channel_width_ev
    assert data.beam_energy_kev == field.beam_energy_kev
    assert data.bse.dtype == np.uint16
    truth = tifffile.imread(folder / "_truth" / "regions.tif")
    np.testing.assert_array_equal(truth, field.truth)
    regions = json.loads((folder / "_truth" / "regions.json").read_text())
    assert regions["material_of_region"] == field.zone_material


def test_spectra_placed_by_the_origin_and_pixel_size(field, tmp_path):
    folder = write_field(field, tmp_path / "f")
    meta = json.loads((folder / "field.json").read_text())
    meta["origin_um"], meta["pixel_size_um"] = [100.0, 50.0], 0.5
    (folder / "field.json").write_text(json.dumps(meta))
    xy = np.stack([100.0 + 0.5 * field.cols, 50.0 + 0.5 * field.rows], axis=1)
    np.savez(folder / "spectra.npz", xy_um=xy, counts=field.spectra)
    data = read_field(folder)
    np.testing.assert_array_equal(data.rows, field.rows)
    np.testing.assert_array_equal(data.cols, field.cols)


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: (f / "field.json").unlink(), "no field.json"),
        (lambda f: (f / "field.json").write_text("{"), "not valid JSON"),
        (lambda f: (f / "field.json").write_text('{"pixel_size_um": 1}'), "missing or malformed"),
        (
            lambda f: (f / "field.json").write_text(
                '{"pixel_size_um": -1, "spectra": {"channel_width_ev": 10}}'
            ),
            "pixel_size_um -1.0",
        ),
        (lambda f: tifffile.imwrite(f / "second.tif", np.zeros((4, 4), np.uint8)), "2 TIFF files"),
        (lambda f: (f / "spectra.npz").unlink(), "no spectra"),
        (
            lambda f: np.savez(f / "spectra.npz", xy_um=[[1e6, 0.0]], counts=[[1, 2]]),
            "1 of 1 spectra lie outside",
        ),
        (
            lambda f: np.savez(
                f / "spectra.npz", xy_um=[[3.0, 3.0], [3.2, 3.0]], counts=[[1], [2]]
            ),
            "fall on a pixel another one already has",
        ),
    ],
)
def test_a_broken_field_is_refused_with_what_to_do(field, tmp_path, spoil, message):
    folder = write_field(field, tmp_path / "f")
    spoil(folder)
    with pytest.raises(InputDataError, match=message) as error:
        read_field(folder)
    assert "expected" in str(error.value)


def test_a_bcf_gives_every_step_th_pixel_as_a_point(shared_data):
    pytest.importorskip("rsciio")
    path = shared_data / "real" / "chevkinite-30x30.bcf"
    dense, sparse = read_field(path, step=1), read_field(path, step=3)
    assert dense.bse.shape == (30, 30)
    assert len(dense.rows) == 900
    assert len(sparse.rows) == 100
    assert set(sparse.rows.tolist()) == set(range(1, 30, 3))  # centred in each 3×3 cell
    flat = sparse.rows * 30 + sparse.cols
    np.testing.assert_array_equal(sparse.counts, dense.counts[flat])
    assert dense.pixel_size_um == pytest.approx(1.667, abs=0.001)
    with pytest.raises(InputDataError, match="step"):
        read_field(path, step=0)
