"""Grey landmarks: the BSE scale of a mosaic against that of the model's training tiles.

The network and its crystal check read BSE in drift-corrected DN: semlive corrects gain and
offset against the standards before anything is segmented. Where that correction is missing or
wrong (a model from an earlier session applied where no standard was measured; the virtual
SEM's sessions 20 days apart differ by 7.5 % gain and 300 DN), olivine's grey moves by 2,000 DN,
further than the training augmentation reaches, and the IoU collapses (0.79 to 0.10 on
`small`).

A section's histogram has landmarks whose positions do not move with what was scanned: the
two highest, well-separated modes of the scanned BSE (on the virtual SEM's basalts, the resin
at ~3,400 DN and the groundmass at ~25,000 DN; glass, plagioclase and resin on real sections).
A mode is where a phase's interior lies, so its position does not depend on how much of each
phase a set of tiles holds: the training tiles' modes and the whole mosaic's agree within
about 10 DN on `small`.
Their two positions give a gain and an offset; the mosaic is mapped back onto the training
tiles' scale only where the training tiles' landmarks are not modes of the mosaic already,
that mapping moves a grey level by more than what the drift correction leaves
(``olivine.landmark_tolerance_dn``), and it is a plausible BSE change (gain 0.85-1.18, offset
within ±3,000 DN). Which two modes are highest does depend on what was scanned (an
olivine-rich part of a section has olivine above the groundmass): the first condition keeps a
mosaic on the training scale from being mapped by such a pair, the gain range keeps most
wrong pairs out (olivine over groundmass is about 1.2). What is left: a mosaic both off the
training scale and with other highest modes than its training tiles may be mapped by a wrong
pair where the gain falls inside the range (with 7.5 % less gain, say); the warning gives the
landmarks found, and ``olivine.grey_landmarks = false`` turns the mapping off.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

__all__ = ["GreyHistogram", "GreyMapping", "grey_landmarks", "mosaic_histogram"]

_BIN_DN = 25
_SMOOTH_DN = 150.0  # a mode a few hundred DN wide (a phase's interior, with its noise)
_SEPARATION = 0.2  # of the 1-99 % range of the grey levels: two modes of different phases
_MIN_HEIGHT = 0.05  # a mode counts from this fraction of the highest one's height
_GAIN_RANGE = (0.85, 1.18)  # sessions 20 days apart: 7.5 % (the virtual SEM)
_OFFSET_RANGE_DN = 3_000.0
_SAMPLE_PX = 16_000_000  # pixels of the mosaic read for its landmarks at most
_TOP_DN = 80_000  # drift-corrected grey may pass the detector's 65,535


class GreyHistogram:
    """Counts of scanned (non-zero) grey levels in bins of 25 DN, added array by array (no copy
    of all the arrays at once)."""

    def __init__(self) -> None:
        self.edges = np.arange(0.0, _TOP_DN + _BIN_DN, _BIN_DN)
        self.counts = np.zeros(self.edges.size - 1, np.int64)

    def add(self, values: NDArray[Any]) -> None:
        v = np.asarray(values).ravel()
        bins = (v[(v > 0) & (v < _TOP_DN)] // _BIN_DN).astype(np.intp)
        self.counts += np.bincount(bins, minlength=self.counts.size)

    def modes(self) -> list[tuple[float, float]]:
        """Every mode of the smoothed histogram at least ``_MIN_HEIGHT`` of the highest's
        height: (position in DN, height), highest first."""
        smooth = ndi.gaussian_filter1d(self.counts.astype(np.float64), _SMOOTH_DN / _BIN_DN)
        inner = smooth[1:-1]
        peaks = np.flatnonzero((inner >= smooth[:-2]) & (inner > smooth[2:])) + 1
        peaks = peaks[np.argsort(-smooth[peaks], kind="stable")]
        if peaks.size == 0:
            return []
        floor = _MIN_HEIGHT * smooth[peaks[0]]
        return [
            (self._centre(smooth, int(i)), float(smooth[i])) for i in peaks if smooth[i] >= floor
        ]

    def landmarks(self) -> tuple[float, float] | None:
        """The two highest modes at least a fifth of the 1-99 % grey range apart, lower
        first, in DN; None where there are not two (or under 10,000 pixels)."""
        total = int(self.counts.sum())
        if total < 10_000:
            return None
        cumulative = np.cumsum(self.counts)
        low, high = (self.edges[np.searchsorted(cumulative, q * total)] for q in (0.01, 0.99))
        modes = self.modes()
        if len(modes) < 2:
            return None
        first = modes[0][0]
        apart = [x for x, _ in modes[1:] if abs(x - first) > _SEPARATION * (high - low)]
        if not apart:
            return None
        one, two = sorted((first, apart[0]))
        return one, two

    def _centre(self, smooth: NDArray[np.float64], i: int) -> float:
        """The mode's position: the parabola through its bin and the two beside it."""
        a, b, c = smooth[i - 1], smooth[i], smooth[i + 1]
        curvature = a - 2 * b + c
        shift = 0.5 * (a - c) / curvature if curvature else 0.0
        return float(self.edges[i] + _BIN_DN / 2 + shift * _BIN_DN)


def grey_landmarks(arrays: Iterable[NDArray[Any]]) -> tuple[float, float] | None:
    """The grey landmarks of the scanned pixels of ``arrays`` (see :class:`GreyHistogram`)."""
    histogram = GreyHistogram()
    for values in arrays:
        histogram.add(values)
    return histogram.landmarks()


def mosaic_histogram(level: Any) -> GreyHistogram:
    """The grey histogram of a mosaic level (a 2-D zarr array) from whole chunks on a grid of
    chunk rows and columns strided evenly over it (every part of the section, not one band),
    about 16 Mpx read at most."""
    rows, cols = level.shape
    ch, cw = level.chunks[:2]
    grid_rows, grid_cols = -(-rows // ch), -(-cols // cw)
    keep = max(1, _SAMPLE_PX // (ch * cw))
    share = min(1.0, (keep / (grid_rows * grid_cols)) ** 0.5)
    picks = [
        np.unique(np.linspace(0, n - 1, max(1, int(share * n))).round().astype(int))
        for n in (grid_rows, grid_cols)
    ]
    histogram = GreyHistogram()
    for r in picks[0]:
        for c in picks[1]:
            histogram.add(np.asarray(level[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw]))
    return histogram


@dataclass(frozen=True, slots=True)
class GreyMapping:
    """found = gain · reference + offset: the mosaic's grey against the training tiles'."""

    gain: float
    offset_dn: float

    @classmethod
    def between(
        cls, reference: tuple[float, float], found: tuple[float, float]
    ) -> GreyMapping | None:
        """The mapping that carries ``reference``'s landmarks onto ``found``'s, or None where
        it is no plausible BSE change (another pair of modes was found)."""
        if not reference[1] > reference[0]:
            return None
        gain = (found[1] - found[0]) / (reference[1] - reference[0])
        offset = found[0] - gain * reference[0]
        if not _GAIN_RANGE[0] <= gain <= _GAIN_RANGE[1] or abs(offset) > _OFFSET_RANGE_DN:
            return None
        return cls(gain, offset)

    def largest_shift_dn(self, levels: tuple[float, ...]) -> float:
        """How far the mapping moves the grey ``levels`` at most (DN)."""
        return max(abs(self.gain * x + self.offset_dn - x) for x in levels)

    def undo(self, grey: NDArray[np.float32]) -> NDArray[np.float32]:
        """Scanned grey back on the reference's scale; unscanned pixels (0) stay 0."""
        out: NDArray[np.float32] = np.where(
            grey > 0, np.maximum((grey - self.offset_dn) / self.gain, 1.0), 0.0
        ).astype(np.float32)
        return out
