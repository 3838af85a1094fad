"""Backscattered-electron yield and mean atomic number."""

from __future__ import annotations

import numpy as np
import pytest

from semlive.errors import ConfigError
from semlive.physics import (
    Composition,
    backscatter_yield,
    element_backscatter,
    load_library,
    mean_atomic_number,
)


@pytest.mark.parametrize(
    ("z", "eta"), [(6, 0.064083), (14, 0.164422), (26, 0.279452), (79, 0.486996)]
)
def test_reuter_polynomial_at_20_kev(z: int, eta: float) -> None:
    # η = −0.0254 + 0.016 Z − 1.86e−4 Z² + 8.3e−7 Z³ (Reuter 1972), evaluated by hand
    assert element_backscatter(z, 20.0) == pytest.approx(eta, abs=1e-6)


def test_hydrogen_is_clipped_at_zero_and_energy_dependence_is_mild() -> None:
    assert element_backscatter(1) == 0.0
    for z in (8, 14, 26, 79):
        ratio = element_backscatter(z, 10.0) / element_backscatter(z, 20.0)
        assert 0.9 < ratio < 1.2
    # Hunger & Küchler: light elements backscatter more at low kV, heavy ones less
    assert element_backscatter(6, 10.0) > element_backscatter(6, 20.0)
    assert element_backscatter(79, 10.0) < element_backscatter(79, 20.0)
    with pytest.raises(ConfigError, match="beam energy"):
        element_backscatter(26, 0.2)


def test_compound_is_mass_fraction_weighted() -> None:
    comp = Composition.from_formula("Fe2SiO4")
    expected = sum(
        c * element_backscatter(z) for c, z in zip(comp.values(), (8, 14, 26), strict=True)
    )
    assert backscatter_yield(comp) == pytest.approx(expected, rel=1e-12)
    assert mean_atomic_number(comp) == pytest.approx(
        sum(c * z for c, z in zip(comp.values(), (8, 14, 26), strict=True)), rel=1e-12
    )


def test_bse_orderings_are_physical() -> None:
    lib = load_library()
    eta = {n: backscatter_yield(lib.mineral(n).composition) for n in lib.names()}
    # Quartz, albite and forsterite have nearly the same Z̄ (10.80, 10.71, 10.58) and so
    # nearly the same η; everything else orders by Z̄.
    silicates = [eta["quartz"], eta["albite"], eta["forsterite"]]
    assert max(silicates) - min(silicates) < 0.005
    assert eta["epoxy"] < min(silicates)
    assert max(silicates) < eta["anorthite"] < eta["diopside"] < eta["augite"]
    assert eta["augite"] < eta["fayalite"] < eta["ilmenite"] < eta["magnetite"]
    assert eta["magnetite"] < eta["tantalite-(Fe)"]


def test_olivine_eta_rises_monotonically_and_linearly_with_fe() -> None:
    lib = load_library()
    mg_numbers = np.linspace(0.60, 0.95, 36)
    eta = np.array([backscatter_yield(lib.solid_solution("olivine", x)) for x in mg_numbers])
    assert np.all(np.diff(eta) < 0.0)  # more Fe (lower mg#) → brighter
    all_x = np.linspace(0.0, 1.0, 21)
    full = [backscatter_yield(lib.solid_solution("olivine", x)) for x in all_x]
    assert np.all(np.diff(full) < 0.0)
    slope, intercept = np.polyfit(mg_numbers, eta, 1)
    residual = eta - (slope * mg_numbers + intercept)
    r_squared = 1.0 - residual.var() / eta.var()
    assert r_squared >= 0.995, r_squared
    assert -0.12 < slope < -0.05  # η(Fo60) − η(Fo95) ≈ 0.03
