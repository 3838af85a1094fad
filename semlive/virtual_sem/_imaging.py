"""Image formation: BSE tiles, EDS element maps, sparse spectra and standard measurements.

BSE: each pixel's backscatter yield η (from composition) is blurred by the probe (Gaussian,
σ = :data:`BSE_PSF_PX`), sampled as a Poisson number of backscattered electrons out of
:data:`ELECTRONS_PER_PIXEL`, scaled linearly to detector numbers by contrast and brightness
(resin at ~3 % of full scale, magnetite at ~88 %), distorted by the drift gain and offset of the
moment, and quantised. EDS: per-element characteristic intensities from the same compositions,
in each element's energy window (its peak, overlapping peaks, and the continuum under them),
blurred by the wider X-ray excitation volume (σ = :data:`EDS_PSF_PX`), Poisson-sampled with the
dose of the moment, then exported as net counts (the fitted continuum subtracted, clipped at 0)
as SEM software exports element maps; the continuum's Poisson noise stays in them. Spectra: the
expected spectra of the materials under a Gaussian excitation footprint, mixed at boundaries and
Poisson-sampled at a given number of counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter

from semlive.physics import EdsDetector, sample_spectrum
from semlive.virtual_sem._materials import X_STEPS, MaterialTable
from semlive.virtual_sem._scene import Rendered

__all__ = ["BseDetector", "eds_maps", "spectra_at", "standard_image"]

BSE_PSF_PX = 0.6
EDS_PSF_PX = 1.3
ELECTRONS_PER_PIXEL = 40_000.0
# electrons per pixel × detector solid angle (sr): 1.5 nA for 9 ms at 0.03 sr
EDS_DOSE = 2.5e6
ETA_LOW, ETA_HIGH = 0.06, 0.24  # mapped to 3 % and 88 % of full scale


@dataclass(frozen=True, slots=True)
class BseDetector:
    bit_depth: int = 16

    @property
    def full_scale(self) -> float:
        return float(2**self.bit_depth - 1)

    def dn(self, eta: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Noise-free, drift-free detector number of backscatter yield ``eta``."""
        low, high = 0.03 * self.full_scale, 0.88 * self.full_scale
        return np.asarray(low + (np.asarray(eta) - ETA_LOW) * (high - low) / (ETA_HIGH - ETA_LOW))

    def image(
        self, eta: NDArray[np.float64], gain: float, offset_dn: float, rng: np.random.Generator
    ) -> NDArray[np.integer]:
        """A BSE image of the (noise-free) yield map under drift (gain, offset)."""
        blurred = gaussian_filter(eta, BSE_PSF_PX, mode="nearest")
        electrons = rng.poisson(np.clip(blurred, 0, None) * ELECTRONS_PER_PIXEL)
        signal = self.dn(electrons / ELECTRONS_PER_PIXEL)
        measured = gain * signal + offset_dn
        dtype = np.uint16 if self.bit_depth > 8 else np.uint8
        return np.clip(np.rint(measured), 0, self.full_scale).astype(dtype)


def eds_maps(
    rendered: Rendered, table: MaterialTable, sensitivity: float, rng: np.random.Generator
) -> NDArray[np.uint16]:
    """Element count maps (elements, rows, cols) of a rendered window."""
    peak = table.lookup(table.intensity, rendered.phase, rendered.x)
    background = table.lookup(table.continuum, rendered.phase, rendered.x)
    maps = np.empty((len(table.elements), *rendered.phase.shape), dtype=np.uint16)
    for k in range(len(table.elements)):
        line = gaussian_filter(peak[..., k], EDS_PSF_PX, mode="nearest") * EDS_DOSE * sensitivity
        under = (
            gaussian_filter(background[..., k], EDS_PSF_PX, mode="nearest") * EDS_DOSE * sensitivity
        )
        gross = rng.poisson(np.clip(line + under, 0, None))
        maps[k] = np.clip(gross - np.rint(under), 0, 65535)  # net counts, as SEM maps export
    return maps


def spectra_at(
    rendered: Rendered,
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    table: MaterialTable,
    detector: EdsDetector,
    counts: float,
    sigma_px: float,
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint16], NDArray[np.int64], NDArray[np.float64]]:
    """Spectra of the points (rows, cols) of a rendered window, with boundary mixing.

    Returns the counts (N, channels), and for each point its dominant material (phase·1000 +
    x index) and that material's share of the excitation footprint.
    """
    rr, cc, weights = footprint(rows, cols, rendered.phase.shape, sigma_px)
    xi = np.rint(np.clip(rendered.x[rr, cc], 0, 1) * X_STEPS).astype(np.int64)
    material = rendered.phase[rr, cc].astype(np.int64) * 1000 + xi
    codes, inverse = np.unique(material, return_inverse=True)
    mix = shares(inverse.reshape(rr.shape), weights, len(codes))
    library = np.stack(
        [table.expected_spectrum(int(c) // 1000, int(c) % 1000, detector) for c in codes]
    )
    expected = mix @ library
    sampled = sample_spectrum(expected, counts, rng)
    dominant = mix.argmax(axis=1)
    return (
        np.minimum(sampled, 65535).astype(np.uint16),
        codes[dominant],
        mix[np.arange(len(rows)), dominant],
    )


def footprint(
    rows: NDArray[np.integer],
    cols: NDArray[np.integer],
    shape: tuple[int, ...],
    sigma_px: float,
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """The pixels (N, P) under each point's Gaussian excitation footprint (clipped to the
    image) and their weights (P,), summing to 1."""
    reach = int(np.ceil(2.5 * sigma_px))
    offsets = np.arange(-reach, reach + 1)
    dr, dc = np.meshgrid(offsets, offsets, indexing="ij")
    weights = np.exp(-(dr**2 + dc**2) / (2 * sigma_px**2)).ravel()
    weights /= weights.sum()
    rr = np.clip(rows[:, None] + dr.ravel(), 0, shape[0] - 1)
    cc = np.clip(cols[:, None] + dc.ravel(), 0, shape[1] - 1)
    return rr, cc, weights


def shares(
    index: NDArray[np.integer], weights: NDArray[np.float64], count: int
) -> NDArray[np.float64]:
    """Each point's share (N, count) of every material, from the material index of its
    footprint pixels (N, P) and the footprint's weights (P,)."""
    mix = np.zeros((len(index), count))
    points = np.repeat(np.arange(len(index)), weights.size)
    np.add.at(mix, (points, index.ravel()), np.tile(weights, len(index)))
    return mix


def standard_image(
    eta: float,
    resin_eta: float,
    detector: BseDetector,
    shape: tuple[int, int],
    gain: float,
    offset_dn: float,
    rng: np.random.Generator,
) -> NDArray[np.integer]:
    """A BSE image of a homogeneous standard with a few resin-dark polishing pits."""
    field = np.full(shape, eta, dtype=np.float64)
    for _ in range(rng.integers(0, 4)):
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        field[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = resin_eta
    return detector.image(field, gain, offset_dn, rng)
