"""Streaming: tiles registered and placed as they arrive, into an OME-Zarr mosaic.

:class:`Stitcher` registers each new tile against its placed neighbours (NCC over the stage's
error range, sub-pixel refined), places it, re-solves all placements by weighted least squares
every few tiles, writes ``STORE/mosaic.zarr`` (OME-Zarr 0.5) and reports regions that are
complete or changed. :func:`stitch_session` runs acquisition and stitching together.
"""

from semlive.streaming._evaluate import placement_error_px, truth_on_mosaic
from semlive.streaming._mosaic import MosaicGeometry, MosaicWriter, sync_transforms
from semlive.streaming._registration import PairShift, register_pair
from semlive.streaming._session import stitch_session
from semlive.streaming._solver import Link, Placement, solve
from semlive.streaming._stitcher import (
    Correction,
    RegionChanged,
    RegionComplete,
    SpectraMoved,
    SpectraPlaced,
    Stitcher,
    TilePlaced,
)

__all__ = [
    "Correction",
    "Link",
    "MosaicGeometry",
    "MosaicWriter",
    "PairShift",
    "Placement",
    "RegionChanged",
    "RegionComplete",
    "SpectraMoved",
    "SpectraPlaced",
    "Stitcher",
    "TilePlaced",
    "placement_error_px",
    "register_pair",
    "solve",
    "stitch_session",
    "sync_transforms",
    "truth_on_mosaic",
]
