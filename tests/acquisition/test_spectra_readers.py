"""The spectra readers (spectra/*.npz, *.msa, *.bcf) parse valid files and refuse bad ones."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semlive.acquisition._spectra_readers import read_bcf, read_msa, read_spectra_npz
from semlive.errors import InputDataError
from semlive.records import SpectraBatch

NPZ_NAME = "spectra/batch.npz"
NPZ_OPTIONS = {
    "channel_offset_ev": -20.0,
    "channel_width_ev": 10.0,
    "channels": None,
    "beam_energy_kev": 20.0,
    "max_values": 1_000_000,
}


def _blake(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _npz(path: Path, **arrays) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())
    return path


def _read_npz(path: Path, **options) -> SpectraBatch:
    return read_spectra_npz(path, NPZ_NAME, **{**NPZ_OPTIONS, **options})


def _valid_arrays(n: int = 6, channels: int = 32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "xy_um": rng.uniform(-500.0, 500.0, (n, 2)),
        "counts": rng.poisson(3.0, (n, channels)).astype(np.uint16),
        "tile": np.array("r001c002"),
    }


# -- npz ------------------------------------------------------------------------------------


def test_npz_round_trip_keeps_values_and_hashes_the_file(tmp_path):
    arrays = _valid_arrays()
    path = _npz(tmp_path / "batch.npz", **arrays)
    batch = _read_npz(path)
    np.testing.assert_array_equal(batch.xy_um, arrays["xy_um"])
    np.testing.assert_array_equal(batch.counts, arrays["counts"])
    assert batch.xy_um.dtype == np.float64
    assert np.issubdtype(batch.counts.dtype, np.integer)
    assert (batch.name, batch.tile, batch.checksum) == (NPZ_NAME, "r001c002", _blake(path))
    assert (batch.channel_offset_ev, batch.channel_width_ev, batch.beam_energy_kev) == (
        -20.0,
        10.0,
        20.0,
    )
    assert batch.bse is None
    assert batch.pixel_size_um is None
    assert not batch.counts.flags.writeable
    assert not batch.xy_um.flags.writeable


def test_npz_without_tile_and_with_integral_float_counts(tmp_path):
    arrays = _valid_arrays()
    floats = arrays["counts"].astype(np.float32)
    path = _npz(tmp_path / "batch.npz", xy_um=arrays["xy_um"], counts=floats)
    batch = _read_npz(path, channels=32)
    assert batch.tile is None
    assert np.issubdtype(batch.counts.dtype, np.integer)
    np.testing.assert_array_equal(batch.counts, arrays["counts"])


def test_npz_of_a_simulated_tiny_session(tmp_path):
    from semlive.virtual_sem import simulate

    session = tmp_path / "s"
    simulate(session, "tiny", seed=0)
    meta = json.loads((session / "session.json").read_text())["spectra"]
    path = session / "spectra" / "field-01.npz"
    batch = read_spectra_npz(
        path,
        "spectra/field-01.npz",
        channel_offset_ev=meta["channel_offset_ev"],
        channel_width_ev=meta["channel_width_ev"],
        channels=meta["channels"],
        beam_energy_kev=meta["kV"],
        max_values=10_000_000,
    )
    n = batch.counts.shape[0]
    assert n >= 100
    assert batch.counts.shape == (n, 2048)
    assert batch.xy_um.shape == (n, 2)
    assert re.fullmatch(r"r\d{3}c\d{3}", batch.tile or "")
    assert batch.counts.sum(axis=1).mean() == pytest.approx(1000, rel=0.05)
    # the spectra lie inside the field of view of the tile they name
    tile = json.loads((session / "tiles" / f"{batch.tile}.json").read_text())
    full = json.loads((session / "session.json").read_text())
    half_um = np.array(full["tile_shape"][::-1]) * full["pixel_size_um"] / 2
    centre = np.array([tile["stage_x_um"], tile["stage_y_um"]])
    assert (np.abs(batch.xy_um - centre) <= half_um).all()


def _object_counts() -> np.ndarray:
    counts = np.empty((6, 32), dtype=object)
    counts[...] = 1
    return counts


def _arrays_with(**changes):
    arrays = _valid_arrays()
    arrays.update(changes)
    return {key: value for key, value in arrays.items() if value is not None}


@pytest.mark.parametrize(
    ("arrays", "options", "message"),
    [
        (_arrays_with(xy_um=None), {}, r"no xy_um array \(arrays found: \['counts', 'tile'\]\)"),
        (
            _arrays_with(xy_um=np.where(np.eye(6, 2) > 0, np.nan, 1.0)),
            {},
            r"xy_um has 2 rows with NaN or infinite coordinates \(first: row 0\)",
        ),
        (_arrays_with(xy_um=np.full((6, 2), "a")), {}, r"xy_um has dtype <U1"),
        (
            _arrays_with(counts=-np.ones((6, 32), dtype=np.int32)),
            {},
            r"counts has negative values",
        ),
        (
            _arrays_with(counts=np.full((6, 32), 0.5)),
            {},
            r"counts has 192 values that are not non-negative whole numbers",
        ),
        (_arrays_with(), {"channels": 2048}, r"counts has 32 channels; expected 2048 channels"),
        (_arrays_with(xy_um=np.zeros((5, 2))), {}, r"xy_um has shape \(5, 2\) for 6 spectra"),
        (_arrays_with(counts=np.zeros((6, 4, 8), np.uint16)), {}, r"counts has 3 dimensions"),
        (_arrays_with(counts=np.zeros((0, 32), np.uint16), xy_um=np.zeros((0, 2))), {}, "(0, 32)"),
        (_arrays_with(counts=_object_counts()), {}, r"counts holds Python objects"),
        (_arrays_with(tile=np.array(["a", "b"])), {}, r"tile has shape \(2,\)"),
        (_arrays_with(), {"max_values": 100}, r"6 × 32 = 192 values; expected at most 100"),
    ],
    ids=[
        "missing-key",
        "nan-xy",
        "string-xy",
        "negative-counts",
        "fractional-counts",
        "wrong-channels",
        "mismatched-n",
        "3d-counts",
        "empty",
        "pickled-object-array",
        "tile-not-scalar",
        "too-many-values",
    ],
)
def test_npz_refusals_name_the_file_and_the_problem(tmp_path, arrays, options, message):
    path = _npz(tmp_path / "batch.npz", **arrays)
    with pytest.raises(InputDataError, match=message) as info:
        _read_npz(path, **options)
    text = str(info.value)
    assert text.startswith(f"{NPZ_NAME}: ")
    assert " — " in text  # what to do follows the dash
    assert "\n" not in text
    assert info.value.path == path


def test_npz_huge_declared_shape_is_refused_from_the_header(tmp_path):
    # members that claim 10^6 spectra of 10^4 channels but hold no data: only headers are read
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("xy_um.npy", _npy_header("<f8", (10**6, 2)))
        archive.writestr("counts.npy", _npy_header("<u2", (10**6, 10**4)))
    path = tmp_path / "batch.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(InputDataError, match=r"1,000,000 × 10,000 = 10,000,000,000 values"):
        _read_npz(path)


def test_npz_member_that_unpacks_too_large_is_refused_before_decompression(tmp_path):
    path = _npz(tmp_path / "batch.npz", xy_um=np.zeros((4000, 2)), counts=np.zeros((4000, 2048)))
    assert path.stat().st_size < 200_000  # zeros compress well: the unpacked size is what counts
    with pytest.raises(InputDataError, match=r"unpacks to [\d,]+ bytes"):
        _read_npz(path, max_values=10_000)


def _npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()  # magic string and header, no data


def test_npz_that_is_not_a_zip_archive(tmp_path):
    path = tmp_path / "batch.npz"
    path.write_bytes(b"PK\x03\x04")  # what a half-written archive looks like
    with pytest.raises(InputDataError, match=r"not a readable \.npz \(zip\) archive"):
        _read_npz(path)


@pytest.fixture(scope="module")
def valid_npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **_valid_arrays())
    return buf.getvalue()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.integers(min_value=0, max_value=4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=4),
)
def test_npz_damaged_files_only_ever_raise_input_data_error(tmp_path, valid_npz_bytes, cut, flips):
    data = bytearray(valid_npz_bytes[: max(cut, 0) or None])
    for position, xor in flips:
        if position < len(data):
            data[position] ^= xor
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    try:
        shape, message = _read_npz(path).counts.shape, ""
    except InputDataError as error:  # any other exception fails the test
        shape, message = None, str(error)
    assert shape == (6, 32) or message.startswith(f"{NPZ_NAME}: ")


# -- msa ------------------------------------------------------------------------------------

MSA_HEADER = """\
#FORMAT      : EMSA/MAS Spectral Data File
#VERSION     : 1.0
#TITLE       : olivine spot 3
#DATE        : 01-JAN-2025
#TIME        : 12:00
#OWNER       : semlive tests
#NPOINTS     : {npoints}
#NCOLUMNS    : 4
#XUNITS      : keV
#YUNITS      : counts
#DATATYPE    : Y
#XPERCHAN    : 0.01
#OFFSET      : -0.2
#SIGNALTYPE  : EDS
#BEAMKV   -kV: 15.0
"""
MSA_DATA = """\
#SPECTRUM    : Spectral Data Starts Here
0, 1, 2, 3,
4, 5, 6, 70000,
#ENDOFDATA   :
"""


def _msa(tmp_path: Path, positions: str, npoints: int = 8, data: str = MSA_DATA) -> Path:
    path = tmp_path / "spot.msa"
    path.write_text(MSA_HEADER.format(npoints=npoints) + positions + data, encoding="latin-1")
    return path


@pytest.mark.parametrize(
    ("positions", "xy_um"),
    [
        ("#XPOSITION   : 12.5\n#YPOSITION   : -3.25\n", [12_500.0, -3_250.0]),  # mm by default
        ("#XPOSITION-um: 12.5\n#YPOSITION-um: -3.25\n", [12.5, -3.25]),
    ],
    ids=["mm-default", "explicit-um"],
)
def test_msa_spectrum_is_read_with_units_converted(tmp_path, positions, xy_um):
    pytest.importorskip("rsciio")
    path = _msa(tmp_path, positions)
    batch = read_msa(path, "spectra/spot.msa", max_values=10_000)
    np.testing.assert_array_equal(batch.counts, [[0, 1, 2, 3, 4, 5, 6, 70000]])
    np.testing.assert_allclose(batch.xy_um, [xy_um])
    assert batch.channel_offset_ev == pytest.approx(-200.0)
    assert batch.channel_width_ev == pytest.approx(10.0)
    assert batch.beam_energy_kev == 15.0
    assert (batch.name, batch.checksum, batch.tile) == ("spectra/spot.msa", _blake(path), None)


@pytest.mark.parametrize(
    ("positions", "npoints", "data", "message"),
    [
        ("", 8, MSA_DATA, r"the position keyword #XPOSITION is missing; expected"),
        ("#XPOSITION: 1\n", 8, MSA_DATA, r"#YPOSITION is missing"),
        ("#XPOSITION: 1\n#YPOSITION: 2\n", 16, MSA_DATA, r"#NPOINTS says 16 but 8 values"),
        ("#XPOSITION-in: 1\n#YPOSITION-in: 2\n", 8, MSA_DATA, r"#XPOSITION is in units 'in'"),
        (
            "#XPOSITION: 1\n#YPOSITION: 2\n",
            2,
            "#SPECTRUM    : Spectral Data Starts Here\n0.5, 1\n",
            r"not non-negative whole numbers",
        ),
    ],
    ids=["no-positions", "no-y", "truncated", "unknown-units", "not-counts"],
)
def test_msa_refusals(tmp_path, positions, npoints, data, message):
    pytest.importorskip("rsciio")
    path = _msa(tmp_path, positions, npoints, data)
    with pytest.raises(InputDataError, match=message) as info:
        read_msa(path, "spectra/spot.msa", max_values=10_000)
    assert str(info.value).startswith("spectra/spot.msa: ")


def test_msa_garbage_is_refused_with_rosettasciios_reason(tmp_path):
    pytest.importorskip("rsciio")
    path = tmp_path / "spot.msa"
    path.write_bytes(b"#SPECTRUM: x\n1 2 3\n")  # no #DATATYPE: rosettasciio cannot read it
    with pytest.raises(InputDataError, match=r"not a readable EMSA/MSA spectrum \(rosettasciio: "):
        read_msa(path, "spectra/spot.msa", max_values=10_000)


# -- bcf (real Bruker files) ----------------------------------------------------------------


def test_bcf_chevkinite_hypermap(shared_data):
    pytest.importorskip("rsciio")
    path = shared_data / "real" / "chevkinite-30x30.bcf"
    batch = read_bcf(path, "real/chevkinite-30x30.bcf", max_values=10_000_000)
    assert batch.counts.shape == (900, 2048)
    assert batch.bse is not None
    assert batch.bse.shape == (30, 30)
    assert batch.bse.dtype == np.uint16
    assert batch.channel_width_ev == pytest.approx(10.0, abs=0.01)
    assert batch.channel_offset_ev == pytest.approx(-472.25, abs=0.01)
    assert batch.beam_energy_kev == 20.0
    assert batch.pixel_size_um == pytest.approx(1.667, abs=0.001)
    assert batch.counts.sum(axis=1).mean() == pytest.approx(20_700, rel=0.01)
    # row-major pixel grid relative to the first pixel, spaced by the pixel size
    px = batch.pixel_size_um
    np.testing.assert_allclose(
        batch.xy_um[[0, 1, 30, 899]], [[0, 0], [px, 0], [0, px], [29 * px] * 2]
    )
    assert batch.checksum == _blake(path)


def test_bcf_p45_sparse_hypermap_takes_the_bse_image(shared_data):
    rsciio_bruker = pytest.importorskip("rsciio.bruker")
    path = shared_data / "real" / "P45-silicate.bcf"
    batch = read_bcf(path, "real/P45-silicate.bcf", max_values=100_000_000)
    assert batch.counts.shape == (75 * 100, 2048)
    assert batch.counts.sum(axis=1).mean() == pytest.approx(22.1, abs=0.1)
    assert batch.pixel_size_um == pytest.approx(8.737, abs=0.001)
    assert batch.beam_energy_kev == 20.0
    images = {
        item["metadata"]["General"]["title"]: item["data"]
        for item in rsciio_bruker.file_reader(str(path), select_type="image")
    }
    assert set(images) == {"BSE", "SE"}
    np.testing.assert_array_equal(batch.bse, images["BSE"])
    assert batch.xy_um[-1] == pytest.approx([99 * 8.7368, 74 * 8.7368], rel=1e-4)


def test_bcf_too_large_is_refused_before_the_cube_is_decoded(shared_data, monkeypatch):
    api = pytest.importorskip("rsciio.bruker._api")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cube was decoded")

    monkeypatch.setattr(api.BCF_reader, "parse_hypermap", no_decoding)
    path = shared_data / "real" / "P45-silicate.bcf"
    with pytest.raises(InputDataError, match=r"7,500 × 2,048 = 15,360,000 values; expected at"):
        read_bcf(path, "real/P45-silicate.bcf", max_values=1_000_000)


def test_not_a_bcf_is_refused_with_a_readable_reason(shared_data):
    pytest.importorskip("rsciio")
    path = shared_data / "real" / "not-a-bcf.bcf"
    with pytest.raises(InputDataError) as info:
        read_bcf(path, "real/not-a-bcf.bcf", max_values=1_000_000)
    text = str(info.value)
    assert text.startswith("real/not-a-bcf.bcf: not a Bruker hypermap: ")
    assert "not SFS container" in text  # rosettasciio's own short reason
    assert "\n" not in text
    assert "Traceback" not in text
    assert str(Path(tempfile.gettempdir())) not in text  # names the file, not the private copy


# -- without rosettasciio -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["bcf", "msa"])
def test_without_rosettasciio_the_error_names_the_formats_extra(tmp_path, monkeypatch, suffix):
    for module in [m for m in sys.modules if m == "rsciio" or m.startswith("rsciio.")]:
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "rsciio", None)
    path = tmp_path / f"map.{suffix}"
    path.write_bytes(b"anything")
    reader = read_bcf if suffix == "bcf" else read_msa
    with pytest.raises(InputDataError, match=re.escape("pip install 'semlive[formats]'")):
        reader(path, f"spectra/map.{suffix}", max_values=1000)


def test_importing_the_readers_does_not_import_rosettasciio(run_python):
    result = run_python(
        "import sys, semlive.acquisition._spectra_readers; print('rsciio' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
