"""One error root for semlive, with subclasses that also inherit the builtin a caller catches.

Every message says what was expected, what arrived, and what to do. The command line maps the
classes to exit codes: :class:`UsageError` and :class:`ConfigError` to 2, :class:`InputDataError`
to 3, anything else to 1 (see :data:`EXIT_CODES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_CODES",
    "ConfigError",
    "InputDataError",
    "SemliveError",
    "UsageError",
    "exit_code_for",
]


class SemliveError(Exception):
    """Root of every error semlive raises on purpose.

    Context (a path, a field, the expected and the received value) is kept as attributes so a
    caller can act on it without parsing the message.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        expected: Any = None,
        got: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else Path(path)
        self.expected = expected
        self.got = got

    def __str__(self) -> str:
        return self.message


class UsageError(SemliveError, ValueError):
    """A command was called wrongly: an unknown option value, an impossible combination."""


class ConfigError(SemliveError, ValueError):
    """A configuration value (file, environment or flag) is outside what the schema allows."""

    def __init__(self, message: str, *, field: str | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.field = field


class InputDataError(SemliveError, ValueError):
    """Input data (a session folder, a tile, a spectrum file) is malformed or inconsistent."""


EXIT_CODES: dict[type[SemliveError], int] = {
    UsageError: 2,
    ConfigError: 2,
    InputDataError: 3,
    SemliveError: 1,
}


def exit_code_for(error: BaseException) -> int:
    """Return the command-line exit code for ``error`` (1 for anything unexpected)."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1
