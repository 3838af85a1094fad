"""An energy-dispersive X-ray detector: channels, resolution and efficiency.

Resolution (Fiori & Newbury 1978, Scanning Electron Microsc. I, 401; Goldstein et al. ch. 7):
Fano-limited charge statistics plus electronic noise give

    FWHM(E)² = FWHM(Mn Kα)² + 2.49 · (E − 5895 eV)      (eV²)

(2.49 eV = 8 ln 2 · ε F with ε = 3.76 eV per electron-hole pair in Si and Fano factor
F ≈ 0.115), clipped at :data:`MIN_FWHM_EV` where the formula would go below it.

Efficiency: transmission of a polymer window (polyimide C22H10N2O5, 1.42 g/cm³) with an Al
light-blocking layer and a Si dead layer, times absorption in the Si crystal,

    ε(E) = exp(−μ_w t_w − μ_Al t_Al − μ_Si t_dead) · (1 − exp(−μ_Si t_Si)),

with μ from xraydb's Elam tables. The support grid's shadow (a constant factor) is ignored.
Channel k is centred at ``channel_offset_ev + k · channel_width_ev`` (HyperSpy's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from semlive.errors import ConfigError
from semlive.physics._elements import xraydb_module
from semlive.physics._xraydata import MIN_LINE_ENERGY_EV

__all__ = ["MIN_FWHM_EV", "EdsDetector"]

#: Smallest peak FWHM (eV) the resolution model returns.
MIN_FWHM_EV = 25.0
_MN_KA_EV = 5895.0
_FANO_SLOPE_EV = 2.49
_FWHM_RANGE_EV = (110.0, 160.0)


def _require(ok: bool, field: str, expected: str, got: object) -> None:
    if not ok:
        raise ConfigError(
            f"EdsDetector.{field}: expected {expected}, got {got!r}. Fix the detector settings.",
            field=field,
            expected=expected,
            got=got,
        )


@dataclass(frozen=True, slots=True)
class EdsDetector:
    """A silicon drift detector with a polymer window (defaults: 130 eV, 10 eV × 2048 ch)."""

    fwhm_mn_ka_ev: float = 130.0
    channel_offset_ev: float = 0.0
    channel_width_ev: float = 10.0
    channels: int = 2048
    takeoff_angle_deg: float = 35.0
    window_polymer_um: float = 0.3
    window_al_um: float = 0.04
    dead_layer_um: float = 0.03
    crystal_thickness_mm: float = 0.45

    def __post_init__(self) -> None:
        low, high = _FWHM_RANGE_EV
        fwhm = self.fwhm_mn_ka_ev
        _require(low <= fwhm <= high, "fwhm_mn_ka_ev", f"{low}-{high} eV at Mn Kα", fwhm)
        offset = self.channel_offset_ev
        _require(math.isfinite(offset), "channel_offset_ev", "a finite number", offset)
        width = self.channel_width_ev
        _require(0.5 <= width <= 100.0, "channel_width_ev", "0.5-100 eV", width)
        n = self.channels
        _require(isinstance(n, int) and 16 <= n <= 65536, "channels", "an integer 16-65536", n)
        takeoff = self.takeoff_angle_deg
        _require(5.0 <= takeoff <= 90.0, "takeoff_angle_deg", "5-90 degrees", takeoff)
        for name in ("window_polymer_um", "window_al_um", "dead_layer_um"):
            value = getattr(self, name)
            _require(0.0 <= value <= 10.0, name, "0-10 µm", value)
        crystal = self.crystal_thickness_mm
        _require(0.01 <= crystal <= 5.0, "crystal_thickness_mm", "0.01-5 mm", crystal)

    @property
    def energies_ev(self) -> NDArray[np.float64]:
        """Channel-centre energies (eV), shape ``(channels,)``."""
        steps = np.arange(self.channels, dtype=np.float64)
        centres: NDArray[np.float64] = self.channel_offset_ev + self.channel_width_ev * steps
        return centres

    @property
    def edges_ev(self) -> NDArray[np.float64]:
        """Channel boundaries (eV), shape ``(channels + 1,)``."""
        steps = np.arange(self.channels + 1, dtype=np.float64) - 0.5
        edges: NDArray[np.float64] = self.channel_offset_ev + self.channel_width_ev * steps
        return edges

    def fwhm_ev(self, energy_ev: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """Peak FWHM (eV) at ``energy_ev``: √(FWHM_Mn² + 2.49 (E − 5895)), at least 25 eV."""
        squared = self.fwhm_mn_ka_ev**2 + _FANO_SLOPE_EV * (np.asarray(energy_ev) - _MN_KA_EV)
        return np.sqrt(np.maximum(squared, MIN_FWHM_EV**2))

    def channel_of(self, energy_ev: float) -> int:
        """Index of the channel whose centre is nearest ``energy_ev`` (may be out of range)."""
        return round((energy_ev - self.channel_offset_ev) / self.channel_width_ev)

    def efficiency(self, energy_ev: float | NDArray[np.float64]) -> NDArray[np.float64]:
        """Detection efficiency ε(E) in [0, 1]; zero below 100 eV."""
        energies = np.asarray(energy_ev, dtype=np.float64)
        return _efficiency(self, tuple(float(e) for e in energies.ravel())).reshape(energies.shape)


@lru_cache(maxsize=256)
def _efficiency(detector: EdsDetector, energies: tuple[float, ...]) -> NDArray[np.float64]:
    """Cached ε(E) of ``detector`` at ``energies`` (read-only)."""
    xdb = xraydb_module()
    e = np.array(energies, dtype=np.float64)
    clipped = np.maximum(e, MIN_LINE_ENERGY_EV)
    um = 1e-4  # cm per µm
    optical_depth = (
        xdb.material_mu("C22H10N2O5", clipped, density=1.42) * detector.window_polymer_um * um
        + xdb.material_mu("Al", clipped, density=2.699) * detector.window_al_um * um
        + xdb.material_mu("Si", clipped, density=2.33) * detector.dead_layer_um * um
    )
    mu_si = xdb.material_mu("Si", clipped, density=2.33)
    absorbed = -np.expm1(-mu_si * detector.crystal_thickness_mm * 0.1)
    result = np.where(e >= MIN_LINE_ENERGY_EV, np.exp(-optical_depth) * absorbed, 0.0)
    result.setflags(write=False)
    return result
