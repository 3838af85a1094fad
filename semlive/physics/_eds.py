"""EDS spectra: expected (noise-free) spectra, Poisson sampling and element count factors.

An expected spectrum is the detected characteristic lines (Gaussian peaks, integrated over each
channel with erf so the centroid is unbiased) plus the detected Kramers continuum, normalised
to sum 1. The continuum is blurred by the same detector resolution, so its absorption edges
(O K, Mg K, Si K …) and its end at E₀ appear as smooth steps, as in a measured spectrum.
The physics is in :mod:`semlive.physics._emission` (generation and absorption) and
:mod:`semlive.physics._detector` (resolution and efficiency); escape peaks, sum peaks,
incomplete charge collection and secondary fluorescence are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from semlive.errors import ConfigError
from semlive.physics._bse import check_beam_energy
from semlive.physics._composition import Composition
from semlive.physics._detector import EdsDetector
from semlive.physics._elements import check_symbol
from semlive.physics._emission import continuum_emission, line_emission
from semlive.physics._xraydata import element_lines, family_name

__all__ = [
    "SpectrumComponents",
    "element_intensity_factors",
    "expected_spectrum",
    "line_energies_ev",
    "main_family",
    "sample_spectrum",
    "spectrum_components",
]

_DEFAULT_DETECTOR = EdsDetector()


@dataclass(frozen=True, slots=True, eq=False)
class SpectrumComponents:
    """Detected photons per incident electron per steradian in each channel, by origin."""

    characteristic: NDArray[np.float64]
    continuum: NDArray[np.float64]

    @property
    def total(self) -> NDArray[np.float64]:
        """Characteristic + continuum."""
        return self.characteristic + self.continuum

    @property
    def continuum_fraction(self) -> float:
        """Share of the detected counts that is continuum (bremsstrahlung)."""
        return float(self.continuum.sum() / self.total.sum())


def line_energies_ev(element: str) -> dict[str, float]:
    """Energy (eV) of the dominant line of each family of ``element``: ``{'Ka': 6405.2, ...}``.

    Families are Siegbahn groups ('Ka', 'Kb', 'La', 'Lb', 'Lg', 'Ll', 'Ln', 'Ma', 'Mb', …); the
    dominant line is the one with the largest ω·p·n_s (photons per ionised atom, weighted by
    subshell occupancy). Only lines at or above 100 eV are listed; H and He have none.
    """
    lines = element_lines(check_symbol(element), None)
    best: dict[str, tuple[float, float]] = {}
    for k, name in enumerate(lines.names):
        strength = lines.weights[k] * lines.occupancy[lines.shell_of_line[k]]
        family = family_name(name)
        if family not in best or strength > best[family][0]:
            best[family] = (float(strength), float(lines.energies_ev[k]))
    order = sorted(best, key=lambda f: ("KLM".index(f[0]), best[f][1]))
    return {family: best[family][1] for family in order}


@lru_cache(maxsize=64)
def _grid(detector: EdsDetector) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Channel centres and detector efficiency at them (read-only)."""
    centres = detector.energies_ev
    efficiency = detector.efficiency(centres)
    centres.setflags(write=False)
    return centres, efficiency


@lru_cache(maxsize=2048)
def _line_profiles(symbol: str, e0_ev: float, detector: EdsDetector) -> NDArray[np.float64]:
    """Channel-integrated unit Gaussians of each line of ``symbol``, shape (lines, channels)."""
    from scipy.special import erf  # type: ignore[import-untyped, unused-ignore]

    energies = element_lines(symbol, e0_ev).energies_ev
    sigma = detector.fwhm_ev(energies) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    z = (detector.edges_ev[None, :] - energies[:, None]) / (math.sqrt(2.0) * sigma[:, None])
    profiles: NDArray[np.float64] = 0.5 * np.diff(erf(z), axis=1)
    profiles.setflags(write=False)
    return profiles


@lru_cache(maxsize=64)
def _response_kernel(detector: EdsDetector) -> NDArray[np.float64]:
    """Detector response as weights (2K+1, channels): row K + d spreads channel k into k + d.

    Each source channel's photons are spread by a Gaussian of the detector's FWHM at that
    energy, integrated over the target channels and truncated at ±4σ of the widest peak.
    """
    from scipy.special import erf  # type: ignore[import-untyped, unused-ignore]

    centres, _ = _grid(detector)
    sigma = detector.fwhm_ev(np.maximum(centres, 0.0)) / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    reach = math.ceil(4.0 * float(sigma.max()) / detector.channel_width_ev)
    offsets = np.arange(-reach, reach + 2, dtype=np.float64) - 0.5  # target channel edges
    z = offsets[:, None] * detector.channel_width_ev / (math.sqrt(2.0) * sigma[None, :])
    weights: NDArray[np.float64] = 0.5 * np.diff(erf(z), axis=0)
    weights /= weights.sum(axis=0, keepdims=True)
    weights.setflags(write=False)
    return weights


def _smear(values: NDArray[np.float64], detector: EdsDetector) -> NDArray[np.float64]:
    """``values`` per channel as the detector records them (energy-dependent Gaussian blur)."""
    weights = _response_kernel(detector)
    reach = (weights.shape[0] - 1) // 2
    n = values.size
    out = np.zeros_like(values)
    for row in range(weights.shape[0]):
        d = row - reach
        spread = values * weights[row]
        if d >= 0:
            out[d:] += spread[: n - d]
        else:
            out[:d] += spread[-d:]
    return out


def _detected_lines(
    comp: Composition, symbol: str, e0_kev: float, detector: EdsDetector
) -> NDArray[np.float64]:
    """Detected photons per electron per sr of each line of ``symbol`` in ``comp``."""
    emitted = line_emission(comp, symbol, e0_kev, detector.takeoff_angle_deg)
    if emitted.size == 0:
        return emitted
    return emitted * detector.efficiency(element_lines(symbol, e0_kev * 1e3).energies_ev)


def _check_scale(continuum_scale: float) -> float:
    if not (math.isfinite(continuum_scale) and 0.0 <= continuum_scale <= 100.0):
        raise ConfigError(
            f"expected continuum_scale between 0 and 100 (1 = Kramers' law as documented), got "
            f"{continuum_scale!r}.",
            field="continuum_scale",
            expected="0 <= continuum_scale <= 100",
            got=continuum_scale,
        )
    return float(continuum_scale)


def spectrum_components(
    comp: Composition,
    detector: EdsDetector,
    beam_energy_kev: float = 20.0,
    *,
    continuum_scale: float = 1.0,
) -> SpectrumComponents:
    """Detected characteristic and continuum spectra of ``comp`` (absolute, per electron·sr).

    ``continuum_scale`` multiplies the Kramers continuum (1.0 = the documented constant), a
    knob for matching the peak-to-background ratio of a real instrument.
    """
    e0_kev = check_beam_energy(beam_energy_kev)
    scale = _check_scale(continuum_scale)
    centres, efficiency = _grid(detector)
    characteristic = np.zeros(detector.channels, dtype=np.float64)
    for symbol in comp.elements:
        amplitudes = _detected_lines(comp, symbol, e0_kev, detector)
        if amplitudes.size:
            characteristic += amplitudes @ _line_profiles(symbol, e0_kev * 1e3, detector)
    emitted = continuum_emission(comp, centres, e0_kev, detector.takeoff_angle_deg)
    continuum = _smear(emitted * efficiency * (detector.channel_width_ev * scale), detector)
    return SpectrumComponents(characteristic=characteristic, continuum=continuum)


@lru_cache(maxsize=4096)
def _expected_cached(
    comp: Composition, detector: EdsDetector, e0_kev: float, continuum_scale: float
) -> NDArray[np.float64]:
    total = spectrum_components(comp, detector, e0_kev, continuum_scale=continuum_scale).total
    norm = total.sum()
    if not norm > 0.0:
        raise ConfigError(
            f"{comp!r} gives no detected X-rays at {e0_kev} keV on channels "
            f"{detector.edges_ev[0]:.0f}-{detector.edges_ev[-1]:.0f} eV. Check the beam "
            "energy and the detector's channel range.",
            expected="a composition that emits in the detector range",
            got=repr(comp),
        )
    spectrum: NDArray[np.float64] = total / norm
    spectrum.setflags(write=False)
    return spectrum


def expected_spectrum(
    comp: Composition,
    detector: EdsDetector,
    beam_energy_kev: float = 20.0,
    *,
    continuum_scale: float = 1.0,
) -> NDArray[np.float64]:
    """Expected EDS spectrum of ``comp``: float64 array (channels,), summing to 1.

    Cached per (composition, detector, beam energy, continuum scale); each call returns a
    fresh copy. See :func:`spectrum_components` for ``continuum_scale``.
    """
    e0_kev = check_beam_energy(beam_energy_kev)
    return _expected_cached(comp, detector, e0_kev, _check_scale(continuum_scale)).copy()


@lru_cache(maxsize=1024)
def main_family(
    element: str, beam_energy_kev: float = 20.0, detector: EdsDetector = _DEFAULT_DETECTOR
) -> str:
    """The line family ('K', 'L' or 'M') used for ``element``'s maps at this beam energy.

    It is the family with the most detected photons from the pure element (so Fe is mapped with
    K at 20 kV, with L at 5 kV; Ba, Ce and Zr with L at 20 kV). '' when nothing is excited.
    """
    e0_kev = check_beam_energy(beam_energy_kev)
    symbol = check_symbol(element)
    pure = Composition.from_mass_fractions({symbol: 1.0})
    detected = _detected_lines(pure, symbol, e0_kev, detector)
    families = element_lines(symbol, e0_kev * 1e3).families
    totals = {f: float(detected[[g == f for g in families]].sum()) for f in set(families)}
    return max(totals, key=lambda f: totals[f]) if totals else ""


def element_intensity_factors(
    comp: Composition,
    beam_energy_kev: float = 20.0,
    detector: EdsDetector | None = None,
) -> dict[str, float]:
    """Detected photons per electron per sr in each element's main family (see main_family).

    An element count map is dose (electrons) × solid angle (sr) × factor; the same line
    physics as :func:`expected_spectrum` underlies it, so factor / total spectrum intensity is
    the share of the spectrum in that element's lines. Elements without lines (H) get 0.0.
    """
    det = _DEFAULT_DETECTOR if detector is None else detector
    e0_kev = check_beam_energy(beam_energy_kev)
    factors: dict[str, float] = {}
    for symbol in comp.elements:
        family = main_family(symbol, e0_kev, det)
        detected = _detected_lines(comp, symbol, e0_kev, det)
        families = element_lines(symbol, e0_kev * 1e3).families
        in_family = np.array([f == family for f in families], dtype=bool)
        factors[symbol] = float(detected[in_family].sum()) if detected.size else 0.0
    return factors


def sample_spectrum(
    expected: ArrayLike,
    counts: int | float | ArrayLike,
    rng: np.random.Generator,
    *,
    dtype: DTypeLike = np.int64,
) -> NDArray[np.integer]:
    """Poisson-sampled spectra: ``rng.poisson(expected * counts[..., None])``.

    ``expected`` has shape (..., channels) with rows summing to 1 (as from
    :func:`expected_spectrum`), so each spectrum's total is Poisson(counts). ``counts`` (a
    scalar or an array broadcastable against ``expected.shape[:-1]``) is the mean total count;
    the result has the broadcast shape + (channels,) and integer ``dtype``.
    """
    lam = np.asarray(expected, dtype=np.float64)
    mean = np.asarray(counts, dtype=np.float64)
    if lam.ndim == 0 or lam.size == 0 or not (np.isfinite(lam.sum()) and lam.min() >= 0.0):
        raise ConfigError(
            "expected spectra must be an array (..., channels) of finite non-negative values, "
            f"got shape {lam.shape}. Pass the output of expected_spectrum().",
            expected="non-negative array (..., channels)",
            got=lam.shape,
        )
    if mean.size == 0 or not (np.isfinite(mean.sum()) and mean.min() >= 0.0):
        raise ConfigError(
            "counts must be finite and non-negative (the mean total count per spectrum).",
            expected="counts >= 0",
            got=mean.shape if mean.ndim else float(mean),
        )
    return rng.poisson(lam * mean[..., None]).astype(dtype, copy=False)
