"""The TIMA-like watershed of a field (the baseline GDLS is compared with in Juránek et al.).

1. Element maps: each spectrum's counts in a window (± one detector FWHM at the line, 130 eV at
   Mn Kα scaled as √E) around the main line of each of :data:`MAP_ELEMENTS`, as a share of the
   spectrum's counts; interpolated linearly from the points onto the BSE grid.
2. The multichannel gradient of Di Zenzo (1986): the largest eigenvalue of the summed structure
   tensor of the channels (each element map and the BSE scaled to unit spread; Sobel
   derivatives after a Gaussian of ``sigma_px``), its square root as the gradient magnitude.
3. A marker watershed of that gradient; the markers are the connected regions where the gradient
   is below ``threshold`` (a fraction of its 99th percentile), so a higher threshold gives fewer,
   larger segments.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAP_ELEMENTS", "element_maps", "tima_watershed"]

MAP_ELEMENTS = (
    "O", "Na", "Mg", "Al", "Si", "P", "K", "Ca", "Ti",
    "Cr", "Mn", "Fe", "Zr", "Nb", "Ta", "Ba", "Ce",
)  # fmt: skip


def element_maps(
    spectra: NDArray[np.integer],
    channel_offset_ev: float,
    channel_width_ev: float,
    beam_energy_kev: float = 20.0,
) -> tuple[NDArray[np.float64], list[str]]:
    """Per point, each element's share of the counts in its line window: ``(N, elements)``."""
    from semlive.physics import line_energies_ev, main_family

    counts = np.asarray(spectra, np.float64)
    channels = counts.shape[1]
    centres = channel_offset_ev + channel_width_ev * np.arange(channels)
    totals = np.maximum(counts.sum(axis=1), 1.0)
    columns, names = [], []
    for element in MAP_ELEMENTS:
        family = main_family(element, beam_energy_kev)
        lines = line_energies_ev(element)
        energy = lines.get(f"{family}a") if family else None
        if energy is None or not centres[0] <= energy <= centres[-1]:
            continue
        half = 130.0 * math.sqrt(energy / 5898.7) / 2 + channel_width_ev / 2
        window = np.abs(centres - energy) <= half
        columns.append(counts[:, window].sum(axis=1) / totals)
        names.append(element)
    table: NDArray[np.float64] = np.stack(columns, axis=1)
    return table, names


def tima_watershed(
    bse: NDArray[np.integer] | NDArray[np.floating],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    spectra: NDArray[np.integer],
    channel_offset_ev: float,
    channel_width_ev: float,
    threshold: float = 0.2,
    sigma_px: float = 1.0,
    beam_energy_kev: float = 20.0,
) -> NDArray[np.int32]:
    """Segments 1..K of the field (every pixel labelled)."""
    from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator
    from scipy.ndimage import gaussian_filter, label
    from skimage.filters import sobel_h, sobel_v
    from skimage.segmentation import watershed

    image = np.asarray(bse, np.float64)
    shape = image.shape
    maps, _ = element_maps(spectra, channel_offset_ev, channel_width_ev, beam_energy_kev)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    grid = np.indices(shape).reshape(2, -1).T
    dense = LinearNDInterpolator(points, maps)(grid)
    missing = np.isnan(dense[:, 0])
    if missing.any():  # outside the points' hull
        dense[missing] = NearestNDInterpolator(points, maps)(grid[missing])
    channels = [dense[:, k].reshape(shape) for k in range(maps.shape[1])] + [image]
    jxx = np.zeros(shape)
    jyy = np.zeros(shape)
    jxy = np.zeros(shape)
    for channel in channels:
        spread = float(np.std(channel))
        if spread == 0:
            continue
        smooth = gaussian_filter(channel / spread, sigma_px)
        gx, gy = sobel_v(smooth), sobel_h(smooth)
        jxx += gx * gx
        jyy += gy * gy
        jxy += gx * gy
    largest = (jxx + jyy) / 2 + np.sqrt(((jxx - jyy) / 2) ** 2 + jxy**2)
    gradient = np.sqrt(largest)
    scale = float(np.percentile(gradient, 99)) or 1.0
    markers, found = label(gradient < threshold * scale)
    if found == 0:  # a threshold below every gradient value: one segment from the minimum
        markers.flat[int(np.argmin(gradient))] = 1
    out: NDArray[np.int32] = watershed(gradient, markers).astype(np.int32)
    return out
