"""The phases of the phantom and their physics, tabulated along each phase's solid solution.

Every pixel of the phantom is a phase code plus one composition coordinate ``x`` in [0, 1]:
olivine mg# (molar Fo), clinopyroxene Mg/(Mg+Fe) of the Di–Hd part, plagioclase An, the glass's
share of rhyolitic melt, titanomagnetite's magnetite share, Cr-spinel's spinel share. The BSE
backscatter yield, the mean atomic number, the EDS element intensities and the expected
spectrum of a pixel all come from :mod:`semlive.physics` through this table, sampled every
0.01 in ``x`` and interpolated linearly between samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from semlive.physics import (
    Composition,
    EdsDetector,
    backscatter_yield,
    expected_spectrum,
    line_energies_ev,
    load_library,
    main_family,
    mean_atomic_number,
    spectrum_components,
)

__all__ = ["MaterialTable", "Phase", "material_table", "phase_composition"]

X_STEPS = 100  # composition samples per phase: x = 0, 0.01, ..., 1
_EDS_STRIDE = 5  # EDS window counts computed every 0.05 in x


class Phase(IntEnum):
    """Phase codes of the truth phase map (``_truth/maps.zarr/phase``)."""

    RESIN = 0  # epoxy in vesicles, holes and cracks
    OLIVINE = 1
    CLINOPYROXENE = 2
    PLAGIOCLASE = 3
    GLASS = 4
    TITANOMAGNETITE = 5
    CR_SPINEL = 6


def phase_composition(phase: Phase, x: float) -> Composition:
    """The composition of ``phase`` at composition coordinate ``x``."""
    lib = load_library()
    if phase is Phase.RESIN:
        return lib.mineral("epoxy").composition
    if phase is Phase.OLIVINE:  # natural olivine carries ~0.2 wt% CaO
        cao = Composition.from_formula("CaO")
        return Composition.mix([(lib.solid_solution("olivine", x), 0.998), (cao, 0.002)])
    if phase is Phase.CLINOPYROXENE:  # Di–Hd with the Al, Ti, Na of basaltic augite
        augite = lib.mineral("augite").composition
        return Composition.mix([(lib.solid_solution("cpx", x), 0.75), (augite, 0.25)])
    if phase is Phase.PLAGIOCLASE:  # with the ~0.5 wt% FeO of volcanic plagioclase
        feo = Composition.from_formula("FeO")
        return Composition.mix([(lib.solid_solution("plagioclase", x), 0.995), (feo, 0.005)])
    if phase is Phase.GLASS:
        andesitic = lib.mineral("basaltic_andesite_glass").composition
        rhyolitic = lib.mineral("rhyolitic_glass").composition
        return Composition.mix([(andesitic, 1.0 - x), (rhyolitic, x)])
    if phase is Phase.TITANOMAGNETITE:
        return lib.solid_solution("titanomagnetite", x)
    return lib.solid_solution("spinel_cr", x)


@dataclass(frozen=True)
class MaterialTable:
    """Per-phase tables along ``x``: BSE yield, mean Z and EDS element intensities."""

    elements: tuple[str, ...]
    beam_energy_kev: float
    eta: NDArray[np.float64]  # (phases, X_STEPS + 1)
    zbar: NDArray[np.float64]  # (phases, X_STEPS + 1)
    intensity: NDArray[np.float64]  # (phases, X_STEPS + 1, elements): peak counts in the window
    continuum: NDArray[np.float64]  # (phases, X_STEPS + 1, elements): continuum in the window
    _spectra: dict[tuple[int, int, EdsDetector], NDArray[np.float64]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def lookup(
        self, table: NDArray[np.float64], phase: NDArray[np.uint8], x: NDArray[np.floating]
    ) -> NDArray[np.float64]:
        """Interpolate ``table`` (phases, X, ...) at every pixel's phase and ``x``."""
        pos = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * X_STEPS
        lo = np.minimum(pos.astype(np.intp), X_STEPS - 1)
        frac = pos - lo
        p = phase.astype(np.intp)
        a, b = table[p, lo], table[p, lo + 1]
        if table.ndim == 3:
            frac = frac[..., None]
        out: NDArray[np.float64] = a + (b - a) * frac
        return out

    def expected_spectrum(
        self, phase: int, x_index: int, detector: EdsDetector
    ) -> NDArray[np.float64]:
        """Expected (normalised) spectrum of a phase at ``x = x_index / X_STEPS``."""
        key = (phase, x_index, detector)
        if key not in self._spectra:
            comp = phase_composition(Phase(phase), x_index / X_STEPS)
            self._spectra[key] = expected_spectrum(comp, detector, self.beam_energy_kev)
        return self._spectra[key]


MAP_DETECTOR = EdsDetector()  # the detector behind the element maps: 130 eV at Mn Kα


@lru_cache(maxsize=8)
def material_table(elements: tuple[str, ...], beam_energy_kev: float) -> MaterialTable:
    """Build (once per element list and beam energy) the tables of every phase.

    An element map counts the photons in a window of ±1 FWHM around the element's main line,
    in photons per incident electron and steradian: ``intensity`` holds the characteristic
    photons (its peak and any overlapping peak), ``continuum`` the bremsstrahlung under them.
    """
    n_phases = len(Phase)
    eta = np.zeros((n_phases, X_STEPS + 1))
    zbar = np.zeros_like(eta)
    intensity = np.zeros((n_phases, X_STEPS + 1, len(elements)))
    continuum = np.zeros_like(intensity)
    windows = [_map_window(el, beam_energy_kev) for el in elements]
    # BSE yield is exact on every sample; the EDS window counts, smooth in x and costly, are
    # computed every 0.05 and interpolated linearly in between
    coarse = np.arange(0, X_STEPS + 1, _EDS_STRIDE)
    fine = np.arange(X_STEPS + 1)
    for phase in Phase:
        for k in fine:
            comp = phase_composition(phase, k / X_STEPS)
            eta[phase, k] = backscatter_yield(comp, beam_energy_kev)
            zbar[phase, k] = mean_atomic_number(comp)
        peaks, under = [], []
        for k in coarse:
            parts = spectrum_components(
                phase_composition(phase, k / X_STEPS), MAP_DETECTOR, beam_energy_kev
            )
            peaks.append([parts.characteristic[w].sum() for w in windows])
            under.append([parts.continuum[w].sum() for w in windows])
        for e in range(len(elements)):
            intensity[phase, :, e] = np.interp(fine, coarse, np.array(peaks)[:, e])
            continuum[phase, :, e] = np.interp(fine, coarse, np.array(under)[:, e])
    return MaterialTable(elements, beam_energy_kev, eta, zbar, intensity, continuum)


def _map_window(element: str, beam_energy_kev: float) -> slice:
    """Channels within ±1 FWHM of ``element``'s main line (its map's energy window)."""
    family = main_family(element, beam_energy_kev)
    energy = line_energies_ev(element)[f"{family}a"]
    half = float(MAP_DETECTOR.fwhm_ev(energy))
    edges = np.array([energy - half, energy + half]) - MAP_DETECTOR.channel_offset_ev
    lo, hi = (edges / MAP_DETECTOR.channel_width_ev).astype(int)
    return slice(int(lo), int(hi) + 1)
