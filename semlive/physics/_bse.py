"""Backscattered-electron yield and mean atomic number of a composition.

Element backscatter coefficient, Reuter's fit to measured η at 20-30 keV:

    η(Z) = −0.0254 + 0.016·Z − 1.86·10⁻⁴·Z² + 8.3·10⁻⁷·Z³

W. Reuter (1972), Proc. 6th Int. Conf. on X-ray Optics and Microanalysis, Univ. Tokyo Press,
p. 121 (also Reimer, *Scanning Electron Microscopy*, 2nd ed. 1998, eq. 4.1). The fit is slightly
negative for hydrogen; element values are clipped at 0.

Beam-energy dependence (optional, mild): Hunger & Küchler (1979), phys. stat. sol. (a) 56, K45,
give η(Z, E) = E^m · C(Z) with m = 0.1382 − 0.9211/√Z (E in keV). Their energy factor is applied
as a ratio to the 20 keV value,

    η(Z, E₀) = η_Reuter(Z) · (E₀ / 20 keV)^m(Z),

so that E₀ = 20 keV returns Reuter's value exactly; light elements backscatter less, heavy ones
slightly more, at higher beam energy.

Compound: Castaing's mass-fraction rule η = Σ cᵢ ηᵢ (K. F. J. Heinrich, 1966, in *The Electron
Microprobe*, Wiley, p. 159), and the mean atomic number Z̄ = Σ cᵢ Zᵢ.
"""

from __future__ import annotations

import math

from semlive.errors import ConfigError
from semlive.physics._composition import Composition
from semlive.physics._elements import atomic_number

__all__ = [
    "BEAM_ENERGY_RANGE_KEV",
    "backscatter_yield",
    "check_beam_energy",
    "element_backscatter",
    "mean_atomic_number",
]

#: Beam energies (keV) for which the Hunger & Küchler factor was fitted (4–40 keV), widened a
#: little for low-kV imaging.
BEAM_ENERGY_RANGE_KEV = (1.0, 40.0)
_REFERENCE_KEV = 20.0


def check_beam_energy(beam_energy_kev: float) -> float:
    """Return the beam energy (keV) as float if inside :data:`BEAM_ENERGY_RANGE_KEV`, else raise."""
    low, high = BEAM_ENERGY_RANGE_KEV
    if not (math.isfinite(beam_energy_kev) and low <= beam_energy_kev <= high):
        raise ConfigError(
            f"expected a beam energy between {low} and {high} keV, got {beam_energy_kev!r}. "
            "Give the accelerating voltage in kV (e.g. 15 or 20).",
            field="beam_energy_kev",
            expected=BEAM_ENERGY_RANGE_KEV,
            got=beam_energy_kev,
        )
    return float(beam_energy_kev)


def element_backscatter(z: int, beam_energy_kev: float = _REFERENCE_KEV) -> float:
    """Backscatter coefficient η of a pure element of atomic number ``z`` (Reuter 1972 × H&K)."""
    e0 = check_beam_energy(beam_energy_kev)
    eta = -0.0254 + 0.016 * z - 1.86e-4 * z**2 + 8.3e-7 * z**3
    exponent = 0.1382 - 0.9211 / math.sqrt(z)
    return max(eta, 0.0) * math.pow(e0 / _REFERENCE_KEV, exponent)


def backscatter_yield(comp: Composition, beam_energy_kev: float = _REFERENCE_KEV) -> float:
    """Backscatter coefficient η = Σ cᵢ ηᵢ(E₀) of ``comp`` (Castaing's rule)."""
    return sum(
        c * element_backscatter(atomic_number(s), beam_energy_kev) for s, c in comp.fractions
    )


def mean_atomic_number(comp: Composition) -> float:
    """Mass-fraction weighted mean atomic number Z̄ = Σ cᵢ Zᵢ."""
    return sum(c * atomic_number(s) for s, c in comp.fractions)
