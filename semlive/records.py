"""Frozen value objects that flow between the layers of semlive.

Each is validated once, where it is made (the acquisition readers), and carries its units in
its field names. Arrays inside them are never written to after construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EdsMaps",
    "EpmaProfile",
    "SessionInfo",
    "SpectraBatch",
    "StandardMeasurement",
    "StandardSpec",
    "TileImage",
    "TileSidecar",
]


@dataclass(frozen=True, slots=True)
class StandardSpec:
    """A standard declared in session.json."""

    standard_id: str
    description: str
    mean_z: float | None = None
    mg_number: float | None = None
    bse_reference_dn: float | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """session.json, validated (Contract 1)."""

    sample: str
    pixel_size_um: float
    tile_shape: tuple[int, int]  # rows, cols
    grid_rows: int | None
    grid_cols: int | None
    overlap_fraction: tuple[float, float] | None  # rows, cols
    bse_bit_depth: int
    beam_energy_kev: float | None
    probe_current_na: float | None
    eds_elements: tuple[str, ...]
    spectra_channel_offset_ev: float | None
    spectra_channel_width_ev: float | None
    spectra_channels: int | None
    standards: tuple[StandardSpec, ...]
    checksum: str


@dataclass(frozen=True, slots=True)
class TileSidecar:
    """tiles/<tile>.json: where and when a BSE tile was acquired."""

    tile: str
    row: int
    col: int
    stage_x_um: float  # commanded stage position of the tile centre
    stage_y_um: float
    acquired_at: datetime  # with its UTC offset
    checksum: str


@dataclass(frozen=True, slots=True)
class TileImage:
    """tiles/<tile>.tif: one BSE tile."""

    tile: str
    image: NDArray[np.uint8] | NDArray[np.uint16]
    checksum: str


@dataclass(frozen=True, slots=True)
class EdsMaps:
    """tiles/<tile>.eds.tif or standards/<m>.eds.tif: one count map per element."""

    name: str
    elements: tuple[str, ...]
    counts: NDArray[np.integer]  # (elements, rows, cols)
    checksum: str


@dataclass(frozen=True, slots=True)
class SpectraBatch:
    """Sparse or dense EDS spectra at stage positions (spectra/*.npz, .msa, .bcf)."""

    name: str
    xy_um: NDArray[np.float64]  # (N, 2) stage x, y of each spectrum
    counts: NDArray[np.integer]  # (N, channels)
    channel_offset_ev: float
    channel_width_ev: float
    beam_energy_kev: float | None
    tile: str | None  # the tile whose field of view they were acquired in, where known
    bse: NDArray[np.integer] | None  # a BSE image acquired with them (Bruker hypermaps)
    pixel_size_um: float | None  # of ``bse`` and of a dense spectrum grid
    checksum: str


@dataclass(frozen=True, slots=True)
class StandardMeasurement:
    """standards/<m>.tif with its sidecar: a BSE image of a declared standard."""

    name: str
    standard_id: str
    acquired_at: datetime
    image: NDArray[np.uint8] | NDArray[np.uint16]
    checksum: str


@dataclass(frozen=True, slots=True)
class EpmaProfile:
    """epma/<profile>.csv: microprobe mg# along a line, in stage coordinates."""

    name: str
    xy_um: NDArray[np.float64]  # (N, 2)
    mg_number: NDArray[np.float64]  # (N,)
    checksum: str
