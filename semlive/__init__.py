"""semlive: a live companion for scanning-electron-microscope thin-section sessions.

Importing the package is cheap: it touches no disk, GPU, network or thread, and imports no
heavy library (torch, zarr, rich). The subpackages carry the work; see DESIGN.md in the docs
for the data flow.
"""

from semlive._version import __version__
from semlive.errors import (
    ConfigError,
    InputDataError,
    SemliveError,
    UsageError,
)

__all__ = [
    "ConfigError",
    "InputDataError",
    "SemliveError",
    "UsageError",
    "__version__",
]
