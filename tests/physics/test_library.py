"""The packaged mineral library."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from semlive.errors import ConfigError
from semlive.physics import Composition, Mineral, MineralLibrary, load_library

REQUIRED = [
    "forsterite", "fayalite", "diopside", "hedenbergite", "augite", "aegirine", "jadeite",
    "enstatite", "ferrosilite", "anorthite", "albite", "basaltic_glass", "basaltic_andesite_glass",
    "rhyolitic_glass", "magnetite", "ulvöspinel", "titanomagnetite", "chromite",
    "magnesiochromite", "spinel", "hercynite", "ilmenite", "hematite", "andradite", "grossular",
    "almandine", "pyrope", "spessartine", "columbite-(Fe)", "tantalite-(Fe)", "quartz",
    "orthoclase", "sanidine", "fluorapatite", "pyrite", "pyrrhotite", "chalcopyrite",
    "pentlandite", "calcite", "dolomite", "zircon", "rutile", "titanite", "biotite", "muscovite",
    "hornblende", "kaolinite", "halite", "fluorite", "barite", "monazite-(Ce)", "chevkinite-(Ce)",
    "epoxy",
]  # fmt: skip
SERIES = {
    "olivine": ("forsterite", "fayalite"),
    "plagioclase": ("anorthite", "albite"),
    "cpx": ("diopside", "hedenbergite"),
    "opx": ("enstatite", "ferrosilite"),
    "garnet_ug": ("grossular", "andradite"),
    "columbite": ("columbite-(Fe)", "tantalite-(Fe)"),
    "titanomagnetite": ("magnetite", "ulvöspinel"),
    "spinel_cr": ("spinel", "chromite"),
}


@pytest.fixture(scope="module")
def library() -> MineralLibrary:
    return load_library()


def test_library_is_cached_and_large(library: MineralLibrary) -> None:
    assert load_library() is library
    assert len(library) >= 60
    assert len(library.names()) == len(library)
    for name in REQUIRED:
        assert name in library, name


def test_every_mineral_is_consistent(library: MineralLibrary) -> None:
    for mineral in library:
        assert isinstance(mineral, Mineral)
        assert math.fsum(mineral.composition.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(f > 0.0 for f in mineral.composition.values())
        reparsed = Composition.from_formula(mineral.formula)
        for symbol in mineral.composition.elements:
            # glasses write their oxide-derived formula rounded to 4 decimals
            assert reparsed.mass_fraction(symbol) == pytest.approx(
                mineral.composition.mass_fraction(symbol), rel=2e-3, abs=1e-5
            ), (mineral.name, symbol)
        assert mineral.density_g_cm3 is not None
        assert 0.9 < mineral.density_g_cm3 < 10.0
        assert mineral.group


def test_forsterite_mg_fraction(library: MineralLibrary) -> None:
    fo = library.mineral("forsterite")
    assert fo.formula == "Mg2SiO4"
    assert fo.group == "olivine"
    assert fo.composition.mass_fraction("Mg") == pytest.approx(0.3455, abs=1e-4)


def test_basaltic_glass_matches_its_oxides(library: MineralLibrary) -> None:
    glass = library.mineral("basaltic glass").composition
    oxides = {"SiO2": 50.5, "TiO2": 1.8, "Al2O3": 14.5, "FeO": 11.0, "MnO": 0.2, "MgO": 7.0,
              "CaO": 11.0, "Na2O": 2.7, "K2O": 0.5, "P2O5": 0.2}  # fmt: skip
    direct = Composition.from_oxides(oxides)
    for symbol in direct.elements:
        assert glass.mass_fraction(symbol) == pytest.approx(direct.mass_fraction(symbol), rel=1e-9)
    # 50.5 wt% SiO2 of a 99.4 % total → Si mass fraction 0.5080 · 28.0855/60.0843
    assert glass.mass_fraction("Si") == pytest.approx(50.5 / 99.4 * 28.0855 / 60.0843, rel=1e-4)


@pytest.mark.parametrize(("series", "members"), SERIES.items())
def test_solid_solution_endpoints_are_end_members(
    library: MineralLibrary, series: str, members: tuple[str, str]
) -> None:
    assert library.series_endmembers(series) == members
    first, second = (library.mineral(m).composition for m in members)
    for x, expected in ((1.0, first), (0.0, second)):
        got = library.solid_solution(series, x)
        assert got.elements == expected.elements
        for symbol in expected.elements:
            assert got.mass_fraction(symbol) == pytest.approx(
                expected.mass_fraction(symbol), abs=1e-12
            )


def test_olivine_solid_solution_is_molar(library: MineralLibrary) -> None:
    fo80 = library.solid_solution("olivine", 0.8)
    atoms = fo80.atomic_fractions()
    assert atoms["Mg"] / (atoms["Mg"] + atoms["Fe"]) == pytest.approx(0.8, abs=1e-12)
    mass = 1.6 * 24.305 + 0.4 * 55.845 + 28.0855 + 4 * 15.9994
    assert fo80.mass_fraction("Fe") == pytest.approx(0.4 * 55.845 / mass, rel=1e-4)
    mixed = library.mix_molar({"forsterite": 0.8, "fayalite": 0.2})
    assert mixed.as_dict() == pytest.approx(fo80.as_dict(), rel=1e-12)
    # fractions are normalised to their sum
    scaled = library.mix_molar({"forsterite": 4, "fayalite": 1})
    assert scaled.as_dict() == pytest.approx(fo80.as_dict(), rel=1e-12)


def test_plagioclase_an50_has_equal_ca_and_na_atoms(library: MineralLibrary) -> None:
    an50 = library.solid_solution("plagioclase", 0.5).atomic_fractions()
    assert an50["Ca"] == pytest.approx(an50["Na"], rel=1e-12)


def test_lookup_ignores_case_accents_and_punctuation(library: MineralLibrary) -> None:
    assert library.mineral("Ulvospinel").name == "ulvöspinel"
    assert library.mineral("columbite-Fe").name == "columbite-(Fe)"
    assert library.mineral("TANTALITE (Fe)").name == "tantalite-(Fe)"
    assert library.mineral("K-feldspar").name == "orthoclase"
    assert library.mineral("basaltic andesite glass").name == "basaltic_andesite_glass"


def test_unknown_mineral_names_close_matches(library: MineralLibrary) -> None:
    with pytest.raises(ConfigError, match="forsterite") as info:
        library.mineral("forsterit")
    assert info.value.got == "forsterit"
    with pytest.raises(ConfigError, match="solid_solution"):
        library.mineral("olivine")
    with pytest.raises(ConfigError, match="names"):
        library.mineral("unobtainium")


def test_groups_and_bad_series_arguments(library: MineralLibrary) -> None:
    olivines = [m.name for m in library.group("Olivine")]
    assert {"forsterite", "fayalite"} <= set(olivines)
    assert "glass" in library.groups()
    with pytest.raises(ConfigError, match="spinel"):
        library.group("spinels")
    with pytest.raises(ConfigError, match="olivine"):
        library.solid_solution("olivin", 0.5)
    with pytest.raises(ConfigError):
        library.solid_solution("olivine", 1.2)
    with pytest.raises(ConfigError):
        library.mix_molar({"forsterite": -0.1})


def test_library_from_dict_validates_tables() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        MineralLibrary.from_dict({"minerals": {"x": {"group": "g"}}})
    with pytest.raises(ConfigError, match="collides"):
        MineralLibrary.from_dict(
            {
                "minerals": {
                    "a-b": {"group": "g", "formula": "O"},
                    "ab": {"group": "g", "formula": "C"},
                }
            }
        )
    with pytest.raises(ConfigError, match="density"):
        MineralLibrary.from_dict({"minerals": {"a": {"group": "g", "formula": "O", "density": -1}}})
    with pytest.raises(ConfigError, match="2 end-members"):
        MineralLibrary.from_dict(
            {
                "minerals": {"a": {"group": "g", "formula": "O"}},
                "series": {"s": {"endmembers": ["a"]}},
            }
        )


def test_load_library_reports_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[minerals\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_library(path)
