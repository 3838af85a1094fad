"""The spectrum band of the GDLS embedding network, and resampling any spectrum onto it.

The published network (Juránek et al.) reads 1,536 channels of 10 eV from 200 eV up: channel k
is centred at ``BAND_OFFSET_EV + k · BAND_WIDTH_EV`` (200, 210, …, 15,550 eV), the convention of
the session folder's ``spectra.channel_offset_ev`` / ``channel_width_ev``. A spectrum of another
channel width or offset is re-binned by integrating its counts: the cumulative counts are
interpolated linearly at the band's channel edges, so counts are conserved over the overlap and
a spectrum already on the band's grid is copied exactly. Channels outside the input's range are 0.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from semlive.errors import InputDataError

__all__ = [
    "BAND_CHANNELS",
    "BAND_OFFSET_EV",
    "BAND_WIDTH_EV",
    "STAT_BIN",
    "band_centres_ev",
    "coarse_bins",
    "to_band",
]

BAND_OFFSET_EV = 200.0
BAND_WIDTH_EV = 10.0
BAND_CHANNELS = 1536
STAT_BIN = 10  # band channels per bin (100 eV) where summed spectra are compared statistically


def band_centres_ev() -> NDArray[np.float64]:
    """Centre energy (eV) of each of the band's channels."""
    return BAND_OFFSET_EV + BAND_WIDTH_EV * np.arange(BAND_CHANNELS, dtype=np.float64)


def to_band(
    counts: ArrayLike, channel_offset_ev: float, channel_width_ev: float
) -> NDArray[np.float32]:
    """Spectra ``(..., C)`` whose channel k is centred at ``offset + k · width`` eV, re-binned
    onto the band: ``(..., BAND_CHANNELS)`` float32 counts."""
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim == 0 or values.shape[-1] < 1:
        raise InputDataError(
            f"spectra must have a channel axis (..., channels); got shape {values.shape}",
            got=values.shape,
        )
    if not (math.isfinite(channel_width_ev) and channel_width_ev > 0):
        raise InputDataError(
            f"channel width must be a positive number of eV; got {channel_width_ev}",
            got=channel_width_ev,
        )
    if not math.isfinite(channel_offset_ev):
        raise InputDataError(
            f"channel offset must be a finite number of eV; got {channel_offset_ev}",
            got=channel_offset_ev,
        )
    channels = values.shape[-1]
    same = math.isclose(channel_width_ev, BAND_WIDTH_EV, rel_tol=1e-9)
    shift = (BAND_OFFSET_EV - channel_offset_ev) / BAND_WIDTH_EV
    if same and math.isclose(shift, round(shift), abs_tol=1e-9):
        return _copy_aligned(values, round(shift))
    edges_in = channel_offset_ev + channel_width_ev * (np.arange(channels + 1) - 0.5)
    edges_out = BAND_OFFSET_EV + BAND_WIDTH_EV * (np.arange(BAND_CHANNELS + 1) - 0.5)
    flat = values.reshape(-1, channels)
    cumulative = np.concatenate([np.zeros((flat.shape[0], 1)), np.cumsum(flat, axis=1)], axis=1)
    # the cumulative counts at the output edges, linear within each input channel
    position = np.clip((edges_out - edges_in[0]) / channel_width_ev, 0, channels)
    low = np.minimum(np.floor(position).astype(np.int64), channels - 1)
    fraction = position - low
    at_edges = cumulative[:, low] * (1 - fraction) + cumulative[:, low + 1] * fraction
    out: NDArray[np.float32] = np.diff(at_edges, axis=1).astype(np.float32)
    return out.reshape(*values.shape[:-1], BAND_CHANNELS)


def coarse_bins(band: ArrayLike, width: int = STAT_BIN) -> NDArray[np.float64]:
    """Spectra on the band ``(..., BAND_CHANNELS)`` summed over ``width`` channels at a time
    (the last channels that do not fill a bin are left out): ``(..., BAND_CHANNELS // width)``."""
    values = np.asarray(band, np.float64)
    usable = values.shape[-1] // width * width
    out: NDArray[np.float64] = (
        values[..., :usable].reshape(*values.shape[:-1], -1, width).sum(axis=-1)
    )
    return out


def _copy_aligned(values: NDArray[np.float64], start: int) -> NDArray[np.float32]:
    """Input channel ``start + k`` is band channel k."""
    channels = values.shape[-1]
    out = np.zeros((*values.shape[:-1], BAND_CHANNELS), np.float32)
    lo, hi = max(start, 0), min(start + BAND_CHANNELS, channels)
    if hi > lo:
        out[..., lo - start : hi - start] = values[..., lo:hi]
    return out
