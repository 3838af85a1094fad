"""The groundmass of a basaltic andesite: glass, plagioclase laths, pyroxene and oxide microlites.

It is procedural: the sample plane is cut into cells of :data:`CELL_UM`, and each cell's
microlites come from a generator seeded by (scene seed, cell), so any window renders the same
groundmass wherever and in whatever order it is asked for, without holding the section in memory.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from semlive.virtual_sem._geometry import Window, fill_rectangles
from semlive.virtual_sem._materials import Phase

__all__ = ["CELL_UM", "render_groundmass"]

CELL_UM = 64.0
_MAX_REACH_UM = 30.0  # half the longest microlite: cells this far outside a window still draw in it

# (phase, coverage of the groundmass, length range µm (log-uniform), aspect range, x range)
_MICROLITES = (
    (Phase.PLAGIOCLASE, 0.36, (8.0, 48.0), (3.0, 9.0), (0.50, 0.72)),
    (Phase.CLINOPYROXENE, 0.07, (4.0, 16.0), (1.5, 3.5), (0.62, 0.80)),
    (Phase.TITANOMAGNETITE, 0.035, (1.5, 6.0), (1.0, 1.4), (0.35, 0.75)),
)


def render_groundmass(
    window: Window, seed: int, phase: NDArray[np.uint8], x: NDArray[np.float32]
) -> None:
    """Fill ``phase`` and ``x`` (window-shaped) with glass and microlites."""
    phase[...] = Phase.GLASS
    x[...] = _glass_x(window, seed)
    xmin, ymin, xmax, ymax = window.bounds_um
    cells_x = _cell_range(xmin, xmax)
    cells_y = _cell_range(ymin, ymax)
    for kind, spec in enumerate(_MICROLITES):
        parts = [_cell_laths(seed, kind, spec, ix, iy) for ix in cells_x for iy in cells_y]
        laths = np.concatenate(parts, axis=0)
        rr, cc, owner = fill_rectangles(laths[:, :5], window)
        phase[rr, cc] = spec[0]
        x[rr, cc] = laths[owner, 5]


def _cell_range(lo: float, hi: float) -> range:
    first = int(np.floor((lo - _MAX_REACH_UM) / CELL_UM))
    return range(first, int(np.floor((hi + _MAX_REACH_UM) / CELL_UM)) + 1)


def _cell_laths(
    seed: int,
    kind: int,
    spec: tuple[Phase, float, tuple[float, float], tuple[float, float], tuple[float, float]],
    ix: int,
    iy: int,
) -> NDArray[np.float64]:
    """The microlites of one cell: columns centre x, centre y, length, width, angle, x."""
    _, coverage, (lmin, lmax), (amin, amax), (xlo, xhi) = spec
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 7919 + kind, ix & 0xFFFFFFFF, iy & 0xFFFFFFFF])
    mean_area = _mean_lath_area(lmin, lmax, amin, amax)
    count = rng.poisson(-np.log(1.0 - coverage) * CELL_UM**2 / mean_area)
    lengths = np.exp(rng.uniform(np.log(lmin), np.log(lmax), count))
    widths = lengths / rng.uniform(amin, amax, count)
    centres = (np.array([ix, iy]) + rng.random((count, 2))) * CELL_UM
    angles = rng.uniform(0, np.pi, count)
    values = rng.uniform(xlo, xhi, count)
    return np.column_stack([centres, lengths, widths, angles, values])


def _mean_lath_area(lmin: float, lmax: float, amin: float, amax: float) -> float:
    """E[length²/aspect] for log-uniform length and uniform aspect."""
    e_l2 = (lmax**2 - lmin**2) / (2 * np.log(lmax / lmin))
    e_inv_a = np.log(amax / amin) / (amax - amin)
    return float(e_l2 * e_inv_a)


def _glass_x(window: Window, seed: int) -> NDArray[np.float32]:
    """A smooth field of the glass's evolution (share of rhyolitic melt), 0.35–0.75.

    A sum of six plane waves; each is separable, sin(a·x + b·y + s) =
    sin(a·x)·cos(b·y + s) + cos(a·x)·sin(b·y + s), so it costs two outer products.
    """
    rng = np.random.default_rng([seed & 0xFFFFFFFF, 4099])
    periods = rng.uniform(40.0, 400.0, 6)
    angles = rng.uniform(0, 2 * np.pi, 6)
    shifts = rng.uniform(0, 2 * np.pi, 6)
    px = window.pixel_size_um
    xs = window.x0_um + px * np.arange(window.cols)
    ys = window.y0_um + px * np.arange(window.rows)
    field = np.zeros((window.rows, window.cols), dtype=np.float64)
    for period, angle, shift in zip(periods, angles, shifts, strict=True):
        a, b = 2 * np.pi / period * np.cos(angle), 2 * np.pi / period * np.sin(angle)
        field += np.outer(np.cos(b * ys + shift), np.sin(a * xs))
        field += np.outer(np.sin(b * ys + shift), np.cos(a * xs))
    return (0.55 + 0.2 * field / 6).astype(np.float32)
