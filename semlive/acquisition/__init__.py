"""Acquisition: watch a live session folder and ingest every complete file exactly once.

:class:`Ingestor` scans the folder (file-system events as a wake-up hint, rescans as the
truth), reads each complete file with the readers of Contract 1, records it in the ledger
(``STORE/ledger.sqlite``) and yields typed events for the pipeline.
"""

from semlive.acquisition._contract import FileKind, classify, is_ignored
from semlive.acquisition._events import (
    EdsReady,
    EpmaProfileReady,
    Event,
    FileQuarantined,
    SessionDone,
    SessionOpened,
    SpectraReady,
    StandardMeasured,
    TileReady,
)
from semlive.acquisition._ingest import Ingestor, default_store, status_of
from semlive.acquisition._ledger import FileRow, Ledger, LedgerError

__all__ = [
    "EdsReady",
    "EpmaProfileReady",
    "Event",
    "FileKind",
    "FileQuarantined",
    "FileRow",
    "Ingestor",
    "Ledger",
    "LedgerError",
    "SessionDone",
    "SessionOpened",
    "SpectraReady",
    "StandardMeasured",
    "TileReady",
    "classify",
    "default_store",
    "is_ignored",
    "status_of",
]
