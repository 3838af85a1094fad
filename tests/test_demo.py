import pytest

from semlive.cli import main


@pytest.mark.long
@pytest.mark.timeout(1200)
def test_demo_runs_semlive_beside_a_simulated_session_to_the_report(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--speed", "120", "--headless"]) == 0
    said = capsys.readouterr().out
    assert "against the virtual SEM's ground truth" in said
    error = float(said.split("placement error: ")[1].split(" px")[0])
    assert error <= 0.5
    report = said.split("report (opens offline in a browser): ")[1].strip()
    assert report.endswith("report.html")
    assert (tmp_path / "demo" / "DONE").exists()
    assert (tmp_path / "demo.semlive" / "catalogue" / "report.html").is_file()
