"""Typed events acquisition emits, in acquisition order where it is known."""

from __future__ import annotations

from dataclasses import dataclass

from semlive.records import (
    EdsMaps,
    EpmaProfile,
    SessionInfo,
    SpectraBatch,
    StandardMeasurement,
    TileImage,
    TileSidecar,
)

__all__ = [
    "EdsReady",
    "EpmaProfileReady",
    "Event",
    "FileQuarantined",
    "SessionDone",
    "SessionOpened",
    "SpectraReady",
    "StandardMeasured",
    "TileReady",
]


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session: SessionInfo


@dataclass(frozen=True, slots=True)
class TileReady:
    """A BSE tile and its sidecar are both complete; ``version`` > 1 means it was re-acquired
    (a later stage must redo that tile)."""

    sidecar: TileSidecar
    image: TileImage
    version: int


@dataclass(frozen=True, slots=True)
class EdsReady:
    tile: str
    maps: EdsMaps


@dataclass(frozen=True, slots=True)
class SpectraReady:
    batch: SpectraBatch


@dataclass(frozen=True, slots=True)
class StandardMeasured:
    measurement: StandardMeasurement
    eds: EdsMaps | None


@dataclass(frozen=True, slots=True)
class EpmaProfileReady:
    profile: EpmaProfile


@dataclass(frozen=True, slots=True)
class FileQuarantined:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class SessionDone:
    """DONE arrived and every file has been taken, quarantined or reported incomplete."""

    counts: dict[str, int]


Event = (
    SessionOpened
    | TileReady
    | EdsReady
    | SpectraReady
    | StandardMeasured
    | EpmaProfileReady
    | FileQuarantined
    | SessionDone
)
