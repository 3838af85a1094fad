"""Pairwise registration of neighbouring tiles on their nominal overlap.

For tiles A and B with a nominal offset (from the commanded stage positions), each tile is
cropped to the region that can overlap the other when the stage erred by up to ``max_shift_px``.
The crops are windowed (Hann) and whitened (phase correlation); the strongest peaks and their
wrap-around alternatives give candidate shifts, each scored by the normalised cross-correlation
(NCC) of the pixels that really overlap at that shift. The best candidate is refined to
sub-pixel precision by upsampled cross-correlation of the aligned overlap (a matrix-multiply
DFT). Whether a pair is trusted is decided elsewhere, against the NCC that non-overlapping
strips reach (:func:`noise_scores`, ASHLAR's permutation test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["PairShift", "noise_scores", "register_pair"]

Float = NDArray[np.float64]
_UPSAMPLE = 20


@dataclass(frozen=True, slots=True)
class PairShift:
    """Where B's pixel (0, 0) lies in A's pixel frame (rows, cols; sub-pixel)."""

    dy: float
    dx: float
    ncc: float  # of the overlapping pixels at the found shift
    overlap_px: int

    @property
    def shift(self) -> tuple[float, float]:
        return self.dy, self.dx


def _crops(
    shape: tuple[int, int], offset: tuple[int, int], margin: int
) -> tuple[tuple[slice, slice], tuple[slice, slice], tuple[int, int]] | None:
    """Equal-size regions of A and B that can overlap; and B-crop's origin in A-crop's frame."""
    rows, cols = shape
    oy, ox = offset
    a_slices, b_slices, start = [], [], []
    for size, o in ((rows, oy), (cols, ox)):
        lo, hi = max(0, o - margin), min(size, o + size + margin)  # A-range B may reach
        if hi - lo < 4:
            return None
        b_lo, b_hi = max(0, -o - margin), min(size, size - o + margin)  # B-range A may reach
        length = min(hi - lo, b_hi - b_lo)
        if o >= 0:  # B lies after A along this axis: A's far end, B's near end
            a_slices.append(slice(hi - length, hi))
            b_slices.append(slice(b_lo, b_lo + length))
            start.append(o - (hi - length) + b_lo)
        else:
            a_slices.append(slice(lo, lo + length))
            b_slices.append(slice(b_hi - length, b_hi))
            start.append(o - lo + (b_hi - length))
    return (a_slices[0], a_slices[1]), (b_slices[0], b_slices[1]), (start[0], start[1])


def _box_sums(
    image: Float,
    r0: NDArray[np.intp],
    r1: NDArray[np.intp],
    c0: NDArray[np.intp],
    c1: NDArray[np.intp],
) -> Float:
    """Sums of ``image`` over many rectangles [r0, r1) × [c0, c1), from its integral image."""
    integral = np.zeros((image.shape[0] + 1, image.shape[1] + 1))
    integral[1:, 1:] = image.cumsum(axis=0).cumsum(axis=1)
    result: Float = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
    return result


def _ncc_window(
    a: Float, b: Float, dys: NDArray[np.intp], dxs: NDArray[np.intp]
) -> tuple[Float, Float]:
    """NCC of the overlap, and its size, for B's pixel (0, 0) at A's (dy, dx), for all dy × dx.

    The cross term comes from one FFT correlation; the overlap sums from integral images
    (Padfield's masked normalised correlation, restricted to the search window).
    """
    from scipy.signal import fftconvolve

    (ha, wa), (hb, wb) = a.shape, b.shape
    dy, dx = dys[:, None], dxs[None, :]
    ar0, ar1 = np.clip(dy, 0, ha), np.clip(dy + hb, 0, ha)
    ac0, ac1 = np.clip(dx, 0, wa), np.clip(dx + wb, 0, wa)
    valid = (ar1 > ar0) & (ac1 > ac0)
    ar1, ac1 = np.maximum(ar1, ar0), np.maximum(ac1, ac0)
    br0, br1 = np.clip(ar0 - dy, 0, hb), np.clip(ar1 - dy, 0, hb)
    bc0, bc1 = np.clip(ac0 - dx, 0, wb), np.clip(ac1 - dx, 0, wb)
    n = np.maximum((ar1 - ar0) * (ac1 - ac0), 1).astype(np.float64)
    sa, sa2 = _box_sums(a, ar0, ar1, ac0, ac1), _box_sums(a * a, ar0, ar1, ac0, ac1)
    sb, sb2 = _box_sums(b, br0, br1, bc0, bc1), _box_sums(b * b, br0, br1, bc0, bc1)
    full = fftconvolve(a.astype(np.float32), b[::-1, ::-1].astype(np.float32), mode="full")
    cross = full[np.clip(dy + hb - 1, 0, ha + hb - 2), np.clip(dx + wb - 1, 0, wa + wb - 2)]
    cov = cross - sa * sb / n
    var = np.maximum(sa2 - sa * sa / n, 0) * np.maximum(sb2 - sb * sb / n, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ncc = np.where(valid & (var > 0), cov / np.sqrt(var), -1.0)
    return ncc, np.where(valid, n, 0.0)


def register_pair(
    a: NDArray[np.generic],
    b: NDArray[np.generic],
    nominal: tuple[float, float],
    max_shift_px: float,
    min_overlap_px: int = 2000,
) -> PairShift | None:
    """Find B's offset from A near ``nominal`` (rows, cols in px); None without enough overlap.

    Every integer placement within ``max_shift_px`` of the nominal one is scored by the NCC of
    the pixels that overlap there — first on 2×-binned crops over the whole range, then at full
    resolution within ±2 px of the coarse best — and the best is refined to sub-pixel precision.
    """
    n = (round(nominal[0]), round(nominal[1]))
    margin = int(np.ceil(max_shift_px))
    crops = _crops((a.shape[0], a.shape[1]), n, margin)
    if crops is None:
        return None
    a_sl, b_sl, start = crops
    ca = np.asarray(a[a_sl], dtype=np.float64)
    cb = np.asarray(b[b_sl], dtype=np.float64)
    coarse = _coarse_shift(ca, cb, start, margin, min_overlap_px)
    if coarse is None:
        return None
    dys = np.arange(coarse[0] - 2, coarse[0] + 3)
    dxs = np.arange(coarse[1] - 2, coarse[1] + 3)
    ncc, count = _ncc_direct(ca, cb, dys, dxs)
    scores = np.where(count >= min_overlap_px, ncc, -1.0)
    if scores.max() <= -1.0:
        return None
    ky, kx = np.unravel_index(int(np.argmax(scores)), scores.shape)
    dy, dx = int(dys[ky]), int(dxs[kx])
    fy, fx = _refine(ca, cb, dy, dx)
    best, size = float(scores[ky, kx]), int(count[ky, kx])
    return PairShift(n[0] + dy + fy - start[0], n[1] + dx + fx - start[1], best, size)


def _ncc_direct(
    a: Float, b: Float, dys: NDArray[np.intp], dxs: NDArray[np.intp]
) -> tuple[Float, Float]:
    """NCC and overlap size for a few placements: sums from integral images, the cross term
    as a direct dot product (no FFT)."""
    (ha, wa), (hb, wb) = a.shape, b.shape
    dy, dx = np.meshgrid(dys, dxs, indexing="ij")
    ar0, ar1 = np.clip(dy, 0, ha), np.clip(dy + hb, 0, ha)
    ac0, ac1 = np.clip(dx, 0, wa), np.clip(dx + wb, 0, wa)
    valid = (ar1 - ar0 >= 2) & (ac1 - ac0 >= 2)
    ar1, ac1 = np.maximum(ar1, ar0), np.maximum(ac1, ac0)
    br0, br1, bc0, bc1 = ar0 - dy, ar1 - dy, ac0 - dx, ac1 - dx
    n = np.maximum((ar1 - ar0) * (ac1 - ac0), 1).astype(np.float64)
    sa, sa2 = _box_sums(a, ar0, ar1, ac0, ac1), _box_sums(a * a, ar0, ar1, ac0, ac1)
    sb, sb2 = _box_sums(b, br0, br1, bc0, bc1), _box_sums(b * b, br0, br1, bc0, bc1)
    cross = np.zeros_like(n)
    for i, j in zip(*np.nonzero(valid), strict=True):
        pa = a[ar0[i, j] : ar1[i, j], ac0[i, j] : ac1[i, j]]
        pb = b[br0[i, j] : br1[i, j], bc0[i, j] : bc1[i, j]]
        cross[i, j] = np.einsum("ij,ij->", pa, pb)
    cov = cross - sa * sb / n
    var = np.maximum(sa2 - sa * sa / n, 0) * np.maximum(sb2 - sb * sb / n, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ncc = np.where(valid & (var > 0), cov / np.sqrt(var), -1.0)
    return ncc, np.where(valid, n, 0.0)


def _bin2(image: Float) -> Float:
    rows, cols = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    binned: Float = image[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    return binned


def _coarse_shift(
    a: Float, b: Float, start: tuple[int, int], margin: int, min_overlap_px: int
) -> tuple[int, int] | None:
    """The best integer shift (full-resolution units) found on 2×-binned crops."""
    ba, bb = _bin2(a), _bin2(b)
    half = margin // 2 + 1
    dys = np.arange(start[0] // 2 - half, start[0] // 2 + half + 1)
    dxs = np.arange(start[1] // 2 - half, start[1] // 2 + half + 1)
    ncc, count = _ncc_window(ba, bb, dys, dxs)
    scores = np.where(count >= min_overlap_px / 4, ncc, -1.0)
    if scores.max() <= -1.0:
        return None
    ky, kx = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return 2 * int(dys[ky]), 2 * int(dxs[kx])


def _refine(a: Float, b: Float, dy: int, dx: int) -> tuple[float, float]:
    """Sub-pixel correction of an integer shift: the cross-correlation of the aligned overlap,
    sampled every 1/20 px within ±0.75 px of zero by a matrix-multiply DFT (the upsampling of
    Guizar-Sicairos et al. 2008, without a full-size inverse transform)."""
    from scipy.fft import fft2

    ay0, ax0 = max(0, dy), max(0, dx)
    ay1, ax1 = min(a.shape[0], dy + b.shape[0]), min(a.shape[1], dx + b.shape[1])
    pa = a[ay0:ay1, ax0:ax1]
    pb = b[ay0 - dy : ay1 - dy, ax0 - dx : ax1 - dx]
    if min(pa.shape) < 8:
        return 0.0, 0.0
    product = fft2(pa) * np.conj(fft2(pb))
    steps = (np.arange(int(np.ceil(1.5 * _UPSAMPLE))) - int(0.75 * _UPSAMPLE)) / _UPSAMPLE
    rows = np.exp(2j * np.pi * np.outer(steps, np.fft.fftfreq(pa.shape[0])))
    cols = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(pa.shape[1]), steps))
    correlation = np.abs(rows @ product @ cols)
    ky, kx = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    fy, fx = float(steps[ky]), float(steps[kx])
    if abs(fy) >= 0.75 or abs(fx) >= 0.75:  # the peak must stay near the integer one
        return 0.0, 0.0
    return fy, fx


def noise_scores(
    strips: list[tuple[NDArray[np.generic], NDArray[np.generic]]],
    nominal: tuple[float, float],
    max_shift_px: float,
) -> list[float]:
    """NCC that registration reaches on pairs of tiles that do not overlap at all."""
    scores = []
    for a, b in strips:
        result = register_pair(a, b, nominal, max_shift_px)
        if result is not None:
            scores.append(result.ncc)
    return scores
