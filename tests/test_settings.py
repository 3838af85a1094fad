from pathlib import Path

import pytest

from semlive.errors import ConfigError
from semlive.settings import Settings, format_non_defaults, load_settings, render_toml

CONFIG = Path(__file__).resolve().parents[1] / "config" / "semlive.toml"


def test_documented_config_matches_the_schema():
    assert CONFIG.read_text(encoding="utf-8") == render_toml(), (
        "config/semlive.toml differs from the schema; regenerate it with "
        "`semlive config --defaults > config/semlive.toml`"
    )
    assert load_settings(CONFIG, environ={}) == Settings()


def test_every_field_has_a_description():
    for section_name, section in Settings.model_fields.items():
        assert section.description, section_name
        for name, field in section.annotation.model_fields.items():
            assert field.description, f"{section_name}.{name}"


def test_layers_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "semlive.toml"
    config.write_text('[log]\nlevel = "warning"\n', encoding="utf-8")
    assert load_settings(config, environ={}).log.level == "warning"
    env = {"SEMLIVE_LOG__LEVEL": "error"}
    assert load_settings(config, environ=env).log.level == "error"
    flags = {"log.level": "debug"}
    assert load_settings(config, environ=env, overrides=flags).log.level == "debug"


def test_bad_value_names_field_value_source_and_allowed(tmp_path):
    config = tmp_path / "semlive.toml"
    config.write_text('[log]\nlevel = "loud"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    message = str(info.value)
    assert info.value.field == "log.level"
    assert "'loud'" in message
    assert str(config) in message
    assert "'debug'" in message
    assert "\n" not in message


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="SEMLIVE_LOG__LEVEL"):
        load_settings(environ={"SEMLIVE_LOG__LEVEL": "7"})


def test_unknown_setting_suggests_the_close_name(tmp_path):
    config = tmp_path / "semlive.toml"
    config.write_text('[log]\nlevl = "debug"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean 'level'"):
        load_settings(config, environ={})


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[log\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_printing_shows_only_non_defaults():
    assert format_non_defaults(Settings()) == ""
    changed = load_settings(environ={"SEMLIVE_LOG__LEVEL": "debug"})
    assert format_non_defaults(changed) == '[log]\nlevel = "debug"\n'
