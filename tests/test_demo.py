from semlive.cli import main


def test_demo_simulates_a_small_session_and_says_what_it_did(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    said = capsys.readouterr().out
    assert "36 BSE tiles" in said
    assert "not built yet" in said
    assert (tmp_path / "demo" / "DONE").exists()
