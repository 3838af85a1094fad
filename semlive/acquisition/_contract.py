"""Which file of the session folder is what (Contract 1), and which names are never read.

Temp names (``*.tmp``, ``*.part``, ``*.partial``, ``~*``, dot-files) and the simulator's
``_truth/`` are ignored outright; any other file outside the contract is ``UNKNOWN`` (recorded
as ignored, so a person can see it was noticed).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import PurePosixPath

__all__ = ["FileKind", "classify", "is_ignored", "stem_of"]

_TEMP_SUFFIXES = (".tmp", ".part", ".partial")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


class FileKind(StrEnum):
    SESSION = "session"
    DONE = "done"
    TILE = "tile"
    EDS = "eds"
    SIDECAR = "sidecar"
    STANDARD = "standard"
    STANDARD_EDS = "standard-eds"
    STANDARD_SIDECAR = "standard-sidecar"
    SPECTRA = "spectra"
    EPMA = "epma"
    UNKNOWN = "unknown"


# order in which the files of one acquisition step are taken (image, maps, then sidecar)
KIND_ORDER = {k: i for i, k in enumerate(FileKind)}


def is_ignored(relpath: str) -> bool:
    """True for temp names, dot-files, and anything under ``_truth/``."""
    parts = PurePosixPath(relpath).parts
    if not parts or parts[0] == "_truth":
        return True
    return any(p.startswith((".", "~")) or p.endswith(_TEMP_SUFFIXES) for p in parts)


def stem_of(name: str) -> str:
    """``r003c017`` for ``r003c017.tif``, ``r003c017.eds.tif`` and ``r003c017.json``."""
    for suffix in (".eds.tif", ".tif", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def classify(relpath: str) -> tuple[FileKind, str | None]:
    """The kind of a (not ignored) file and the tile or standard measurement it belongs to."""
    parts = PurePosixPath(relpath).parts
    if len(parts) == 1:
        return {"session.json": (FileKind.SESSION, None), "DONE": (FileKind.DONE, None)}.get(
            parts[0], (FileKind.UNKNOWN, None)
        )
    if len(parts) != 2:
        return FileKind.UNKNOWN, None
    folder, name = parts
    stem = stem_of(name)
    if folder in ("tiles", "standards") and _NAME.match(stem):
        kinds = {
            "tiles": (FileKind.TILE, FileKind.EDS, FileKind.SIDECAR),
            "standards": (FileKind.STANDARD, FileKind.STANDARD_EDS, FileKind.STANDARD_SIDECAR),
        }[folder]
        for suffix, kind in zip(
            (".eds.tif", ".tif", ".json"), (kinds[1], kinds[0], kinds[2]), strict=True
        ):
            if name.endswith(suffix):
                return kind, stem
    if folder == "spectra" and name.lower().endswith((".npz", ".msa", ".bcf")):
        return FileKind.SPECTRA, None
    if folder == "epma" and name.lower().endswith(".csv"):
        return FileKind.EPMA, None
    return FileKind.UNKNOWN, None
