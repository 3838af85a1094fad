import subprocess
import sys

import semlive
from semlive.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"semlive {semlive.__version__}"


def test_console_script_runs_as_a_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-c", "from semlive.cli import run; run()", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("semlive ")


def test_malformed_config_exits_2_with_one_line_naming_the_field(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('[log]\nlevel = "loud"\n', encoding="utf-8")
    assert main(["config", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "log.level" in err
    assert "Traceback" not in err


def test_verbose_adds_the_traceback(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text('[log]\nlevel = "loud"\n', encoding="utf-8")
    assert main(["-v", "config", "--config", str(config)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_config_prints_non_defaults(monkeypatch, capsys):
    monkeypatch.setenv("SEMLIVE_LOG__LEVEL", "warning")
    assert main(["config"]) == 0
    assert capsys.readouterr().out == '[log]\nlevel = "warning"\n'
