"""Bad input: refused with a reason a person can act on; nothing else is lost."""

import io
import json
import shutil

import numpy as np
import pytest
import tifffile

from semlive.acquisition import FileQuarantined, Ingestor, SpectraReady, TileReady
from semlive.acquisition._readers import read_epma, read_session, read_sidecar, read_tile
from semlive.cli import main
from semlive.errors import InputDataError
from semlive.virtual_sem import simulate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "session"
    simulate(folder, "tiny", seed=2)
    return folder


def _session(tiny):
    return read_session((tiny / "session.json").read_bytes())


def _tiff(array):
    buf = io.BytesIO()
    tifffile.imwrite(buf, array)
    return buf.getvalue()


def test_session_json_refuses_other_stage_axes_and_formats(tiny):
    meta = json.loads((tiny / "session.json").read_text())
    meta["stage_axes"] = {"x": "-col", "y": "+row"}
    with pytest.raises(InputDataError, match=r"stage_axes .* not supported"):
        read_session(json.dumps(meta).encode())
    meta["stage_axes"], meta["format"] = {"x": "+col", "y": "+row"}, "other/2"
    with pytest.raises(InputDataError, match=r"expected 'semlive\.session/1'"):
        read_session(json.dumps(meta).encode())


def test_tiles_of_the_wrong_shape_dtype_or_size_are_refused_before_decoding(tiny):
    session = _session(tiny)
    with pytest.raises(InputDataError, match=r"is 10×10 px, expected 170×256"):
        read_tile(_tiff(np.zeros((10, 10), np.uint16)), "tiles/a.tif", "a", session, 10**8)
    with pytest.raises(InputDataError, match="dtype float32, expected uint8 or uint16"):
        read_tile(_tiff(np.zeros((170, 256), np.float32)), "tiles/a.tif", "a", session, 10**8)
    with pytest.raises(InputDataError, match="above the limit"):
        read_tile(_tiff(np.zeros((170, 256), np.uint16)), "tiles/a.tif", "a", session, 1000)


def test_sidecars_must_agree_with_their_file_and_hold_numbers(tiny):
    session = _session(tiny)
    side = json.loads((tiny / "tiles" / "r000c000.json").read_text())
    with pytest.raises(InputDataError, match="names tile 'r000c000' but the file is 'r000c001'"):
        read_sidecar(json.dumps(side).encode(), "tiles/r000c001.json", "r000c001", session)
    side["stage_x_um"] = float("nan")
    with pytest.raises(InputDataError, match="stage_x_um is nan, expected a finite number"):
        read_sidecar(json.dumps(side).encode(), "tiles/r000c000.json", "r000c000", session)
    side["stage_x_um"], side["acquired_at"] = 1.0, "2026-03-09T08:00:00"
    with pytest.raises(InputDataError, match="no UTC offset"):
        read_sidecar(json.dumps(side).encode(), "tiles/r000c000.json", "r000c000", session)


def test_epma_profiles_need_their_columns_and_fractions():
    with pytest.raises(InputDataError, match="expected x_um, y_um, mg_number"):
        read_epma(b"x,y,fo\n1,2,80\n", "epma/p.csv")
    with pytest.raises(InputDataError, match="mg_number outside 0–1"):
        read_epma(b"x_um,y_um,mg_number\n1,2,80\n3,4,81\n", "epma/p.csv")
    profile = read_epma(b"x_um,y_um,mg_number\n1,2,0.8\n3,4,0.81\n", "epma/p.csv")
    assert profile.xy_um.shape == (2, 2)


def test_a_symlink_out_of_the_session_is_quarantined_and_the_session_goes_on(tiny, tmp_path):
    session = tmp_path / "session"
    shutil.copytree(tiny, session)
    outside = tmp_path / "secret.csv"
    outside.write_text("x_um,y_um,mg_number\n1,2,0.8\n3,4,0.8\n")
    (session / "epma" / "link.csv").symlink_to(outside)
    settings_ = {"poll_interval_s": 0.01, "settle_polls": 1, "quarantine_after_s": 0.0}
    from semlive.settings import AcquisitionSettings

    with Ingestor(session, tmp_path / "store", AcquisitionSettings(**settings_)) as ingestor:
        events = list(ingestor.run())
    quarantined = {e.path: e.reason for e in events if isinstance(e, FileQuarantined)}
    assert "symbolic link" in quarantined["epma/link.csv"]
    assert sum(isinstance(e, TileReady) for e in events) == 9


def test_real_bruker_hypermaps_are_taken_and_a_broken_one_quarantined(tiny, tmp_path, shared_data):
    session = tmp_path / "session"
    shutil.copytree(tiny, session)
    for name in ("chevkinite-30x30.bcf", "P45-silicate.bcf", "not-a-bcf.bcf"):
        shutil.copy(shared_data / "real" / name, session / "spectra" / name)
    from semlive.settings import AcquisitionSettings

    with Ingestor(
        session,
        tmp_path / "store",
        AcquisitionSettings(poll_interval_s=0.01, quarantine_after_s=0.0),
    ) as ing:
        events = list(ing.run())
    batches = {e.batch.name: e.batch for e in events if isinstance(e, SpectraReady)}
    chevkinite = batches["spectra/chevkinite-30x30.bcf"]
    assert chevkinite.counts.shape == (900, 2048)
    assert chevkinite.bse is not None
    assert chevkinite.bse.shape == (30, 30)
    assert chevkinite.channel_width_ev == pytest.approx(10.0, abs=0.01)
    assert batches["spectra/P45-silicate.bcf"].counts.shape == (7500, 2048)
    reasons = {e.path: e.reason for e in events if isinstance(e, FileQuarantined)}
    assert "not a Bruker hypermap" in reasons["spectra/not-a-bcf.bcf"]


def test_ingest_once_and_status_json(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SEMLIVE_ACQUISITION__POLL_INTERVAL_S", "0.01")
    store = tmp_path / "store"
    assert main(["ingest", str(tiny), "--store", str(store), "--once", "--poll"]) == 0
    assert "9 tiles ready" in capsys.readouterr().out
    assert main(["status", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["tiles_ready"] == 9
    assert status["files"]["quarantined"] == 0
    assert status["done"] is True
    assert main(["status", str(tmp_path / "nothing")]) == 3


def test_a_second_writer_on_the_same_store_is_refused(tiny, tmp_path):
    from semlive.acquisition import LedgerError

    with Ingestor(tiny, tmp_path / "store"), pytest.raises(LedgerError, match="only one writer"):
        Ingestor(tiny, tmp_path / "store")
