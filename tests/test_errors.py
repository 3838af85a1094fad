import pytest

from semlive.errors import ConfigError, InputDataError, SemliveError, UsageError, exit_code_for


@pytest.mark.parametrize(
    ("error", "builtin", "code"),
    [
        (UsageError("bad option"), ValueError, 2),
        (ConfigError("bad value", field="log.level"), ValueError, 2),
        (InputDataError("bad tile", path="tiles/r000c000.tif"), ValueError, 3),
        (SemliveError("other"), Exception, 1),
    ],
)
def test_errors_map_to_exit_codes_and_builtins(error, builtin, code):
    assert isinstance(error, builtin)
    assert isinstance(error, SemliveError)
    assert exit_code_for(error) == code


def test_unexpected_exceptions_exit_1():
    assert exit_code_for(KeyError("x")) == 1


def test_error_keeps_its_context():
    error = InputDataError("tile too large", path="tiles/a.tif", expected=(512, 338), got=(9, 9))
    assert error.path is not None
    assert error.path.name == "a.tif"
    assert (error.expected, error.got) == ((512, 338), (9, 9))
    assert str(error) == "tile too large"
