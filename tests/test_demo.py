from semlive.cli import main


def test_demo_simulates_a_small_session_and_says_what_it_did(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    said = capsys.readouterr().out
    assert "36 BSE tiles" in said
    assert "36 tiles placed" in said
    assert "held-out RMSE" in said
    error = float(said.split("placement error against the truth ")[1].split(" px")[0])
    assert error <= 0.5
    assert (tmp_path / "demo" / "DONE").exists()
    assert (tmp_path / "demo.semlive" / "mosaic.zarr" / "bse").is_dir()
