"""Compositions and chemical formulas."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semlive.errors import ConfigError
from semlive.physics import Composition, parse_formula

# Standard atomic weights (IUPAC, as tabulated by xraydb) for hand calculations.
MG, SI, OX = 24.305, 28.0855, 15.9994


def test_forsterite_mass_fractions_match_hand_calculation() -> None:
    comp = Composition.from_formula("Mg2SiO4")
    molar_mass = 2 * MG + SI + 4 * OX
    assert comp.mass_fraction("Mg") == pytest.approx(2 * MG / molar_mass, abs=2e-4)
    assert comp.mass_fraction("Mg") == pytest.approx(0.3455, abs=1e-4)
    assert comp.mass_fraction("Si") == pytest.approx(SI / molar_mass, abs=2e-4)
    assert comp.mass_fraction("Fe") == 0.0
    assert comp.elements == ("O", "Mg", "Si")  # sorted by atomic number
    assert sum(comp.values()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("formula", "atoms"),
    [
        ("(Mg0.9Fe0.1)2SiO4", {"Mg": 1.8, "Fe": 0.2, "Si": 1.0, "O": 4.0}),
        ("Ca0.5Na0.5Al1.5Si2.5O8", {"Ca": 0.5, "Na": 0.5, "Al": 1.5, "Si": 2.5, "O": 8.0}),
        ("KMg3[AlSi3O10](OH)2", {"K": 1, "Mg": 3, "Al": 1, "Si": 3, "O": 12, "H": 2}),
        ("CaSO4·2H2O", {"Ca": 1, "S": 1, "O": 6, "H": 4}),
        ("Ca5(PO4)3F", {"Ca": 5, "P": 3, "O": 12, "F": 1}),
        (" Fe 3 O 4 ", {"Fe": 3, "O": 4}),
        ("C", {"C": 1}),
    ],
)
def test_parse_formula_counts_atoms(formula: str, atoms: dict[str, float]) -> None:
    parsed = parse_formula(formula)
    assert parsed.keys() == atoms.keys()
    for symbol, n in atoms.items():
        assert parsed[symbol] == pytest.approx(n, rel=1e-12)


@pytest.mark.parametrize(
    "formula", ["", "(Mg,Fe)2SiO4", "Mg2SiO4)", "(Mg2SiO4", "Xx2O", "mg2SiO4", "Mg..2", "Mg0"]
)
def test_bad_formula_raises_config_error(formula: str) -> None:
    with pytest.raises(ConfigError):
        Composition.from_formula(formula)


def test_unknown_element_error_suggests_symbol() -> None:
    with pytest.raises(ConfigError, match="Xx"):
        Composition.from_mass_fractions({"Xx": 1.0})


def test_mix_is_mass_weighted() -> None:
    fo = Composition.from_formula("Mg2SiO4")
    fa = Composition.from_formula("Fe2SiO4")
    mixed = Composition.mix([(fo, 3.0), (fa, 1.0)])
    for symbol in ("O", "Mg", "Si", "Fe"):
        expected = 0.75 * fo.mass_fraction(symbol) + 0.25 * fa.mass_fraction(symbol)
        assert mixed.mass_fraction(symbol) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ConfigError):
        Composition.mix([])
    with pytest.raises(ConfigError):
        Composition.mix([(fo, -1.0), (fa, 2.0)])


def test_from_oxides_converts_wt_percent() -> None:
    comp = Composition.from_oxides({"SiO2": 40.0, "MgO": 60.0})
    mgo, sio2 = MG + OX, SI + 2 * OX
    assert comp.mass_fraction("Mg") == pytest.approx(0.6 * MG / mgo, rel=1e-4)
    assert comp.mass_fraction("Si") == pytest.approx(0.4 * SI / sio2, rel=1e-4)


def test_composition_is_immutable_hashable_mapping() -> None:
    a = Composition.from_formula("Mg2SiO4")
    b = Composition.from_formula("SiMg2O4")
    assert a == b
    assert hash(a) == hash(b)
    assert a["Mg"] == a.mass_fraction("Mg")
    with pytest.raises(KeyError):
        a["Fe"]
    assert a.as_dict() == dict(a)
    with pytest.raises(AttributeError):
        a.fractions = ()  # type: ignore[misc]
    atoms = a.atomic_fractions()
    assert atoms["O"] == pytest.approx(4 / 7, rel=1e-12)


def test_direct_construction_requires_normalised_sorted_fractions() -> None:
    with pytest.raises(ConfigError):
        Composition((("Mg", 0.5), ("O", 0.4)))
    with pytest.raises(ConfigError):
        Composition((("Mg", 0.5), ("O", 0.5)))  # not sorted by Z
    assert Composition((("O", 0.5), ("Mg", 0.5))).mass_fraction("Mg") == 0.5


_ELEMENTS = ["H", "C", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "K", "Ca", "Ti", "Fe", "Ce"]
_counts = st.one_of(
    st.integers(min_value=1, max_value=24).map(str),
    st.floats(min_value=0.01, max_value=12.0).map(lambda x: f"{x:.3f}"),
    st.just(""),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_ELEMENTS), _counts), min_size=1, max_size=6))
def test_generated_formulas_give_valid_compositions(parts: list[tuple[str, str]]) -> None:
    formula = "".join(symbol + count for symbol, count in parts)
    comp = Composition.from_formula(formula)
    fractions = list(comp.values())
    assert all(f > 0.0 for f in fractions)
    assert math.fsum(fractions) == pytest.approx(1.0, abs=1e-12)
    atoms: dict[str, float] = {}
    for symbol, count in parts:
        atoms[symbol] = atoms.get(symbol, 0.0) + (float(count) if count else 1.0)
    assert set(comp.elements) == {s for s, n in atoms.items() if n > 0}
    expected = Composition.from_atoms(atoms)
    for symbol in comp.elements:
        assert comp.mass_fraction(symbol) == pytest.approx(expected.mass_fraction(symbol))


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.1, max_value=5.0))
def test_grouped_formula_equals_expanded(x: float, n: float) -> None:
    grouped = Composition.from_formula(f"(Mg{x:.4f}Fe{1 - x:.4f}){n:.3f}SiO4")
    expanded = Composition.from_atoms(
        {"Mg": round(x, 4) * round(n, 3), "Fe": round(1 - x, 4) * round(n, 3), "Si": 1, "O": 4}
    )
    for symbol in expanded.elements:
        assert grouped.mass_fraction(symbol) == pytest.approx(expanded.mass_fraction(symbol))
