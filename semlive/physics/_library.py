"""The mineral library: named minerals, their groups and binary solid-solution series.

The packaged ``minerals.toml`` holds ideal formulas (or oxide analyses for glasses), groups and
densities; :func:`load_library` reads it once. Mixing within a series is molar mixing of formula
units: the moles of each element are mixed, then converted to mass fractions.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from semlive.errors import ConfigError
from semlive.physics._composition import Composition, oxide_atoms
from semlive.physics._elements import atomic_number
from semlive.physics._formula import parse_formula

__all__ = ["Mineral", "MineralLibrary", "load_library"]

_PACKAGED = "minerals.toml"
#: Oxygens per formula unit used to write an oxide analysis (a glass) as a formula.
_GLASS_OXYGENS = 8.0


def _key(name: str) -> str:
    """Lookup key ignoring case, accents, spaces, '-', '_' and brackets ('Ulvöspinel')."""
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(c for c in decomposed.casefold() if c.isalnum() and c.isascii())


@dataclass(frozen=True, slots=True)
class Mineral:
    """A named mineral (or glass, or mounting medium) with its ideal composition."""

    name: str
    formula: str
    group: str
    composition: Composition
    density_g_cm3: float | None = None
    aliases: tuple[str, ...] = ()
    note: str = ""
    #: Atoms per formula unit, the basis of molar mixing (``formula`` rounds these for glasses).
    atoms_per_formula_unit: tuple[tuple[str, float], ...] = ()


def _format_formula(atoms: Mapping[str, float]) -> str:
    """Write atoms per formula unit as a formula, cations by Z then O: ``Na0.25…Si2.46…O8``."""
    parts = []
    ordered = sorted(atoms.items(), key=lambda item: (item[0] == "O", atomic_number(item[0])))
    for symbol, n in ordered:
        count = f"{n:.4f}".rstrip("0").rstrip(".")
        parts.append(symbol if count == "1" else f"{symbol}{count}")
    return "".join(parts)


def _density(name: str, density: Any, source: str) -> float | None:
    """A mineral's density (g/cm³) if given; it must be a positive number."""
    if density is None:
        return None
    if not (isinstance(density, int | float) and math.isfinite(density) and density > 0):
        raise ConfigError(
            f"mineral {name!r} in {source}: expected a positive density in g/cm³, got {density!r}.",
            path=source,
            expected="density > 0",
            got=density,
        )
    return float(density)


def _mineral_from_table(name: str, table: Mapping[str, Any], source: str) -> Mineral:
    """Build one :class:`Mineral` from its TOML table."""
    has_formula, has_oxides = "formula" in table, "oxides_wt" in table
    if has_formula == has_oxides or "group" not in table:
        raise ConfigError(
            f"mineral {name!r} in {source}: expected a 'group' and exactly one of 'formula' or "
            f"'oxides_wt', got keys {sorted(table)}. Fix the table.",
            path=source,
            expected="group + formula|oxides_wt",
            got=sorted(table),
        )
    if has_oxides:
        atoms = oxide_atoms({str(k): float(v) for k, v in table["oxides_wt"].items()})
        scale = _GLASS_OXYGENS / atoms["O"]
        atoms = {s: n * scale for s, n in atoms.items()}
        formula = _format_formula(atoms)
    else:
        formula = str(table["formula"])
        atoms = parse_formula(formula)
    return Mineral(
        name=name,
        formula=formula,
        group=str(table["group"]),
        composition=Composition.from_atoms(atoms),
        density_g_cm3=_density(name, table.get("density"), source),
        aliases=tuple(str(a) for a in table.get("aliases", ())),
        note=str(table.get("note", "")),
        atoms_per_formula_unit=tuple(atoms.items()),
    )


@dataclass(frozen=True, slots=True, eq=False)
class MineralLibrary:
    """Minerals by name, groups and binary solid-solution series (see :func:`load_library`)."""

    minerals: Mapping[str, Mineral]
    series: Mapping[str, tuple[str, str]]
    _lookup: Mapping[str, str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> MineralLibrary:
        """Build a library from parsed TOML (``{'minerals': {...}, 'series': {...}}``)."""
        minerals = {
            n: _mineral_from_table(n, t, source) for n, t in data.get("minerals", {}).items()
        }
        lookup: dict[str, str] = {}
        for mineral in minerals.values():
            for alias in (mineral.name, *mineral.aliases):
                previous = lookup.setdefault(_key(alias), mineral.name)
                if previous != mineral.name:
                    raise ConfigError(
                        f"{source}: name {alias!r} of {mineral.name!r} collides with "
                        f"{previous!r}. Give the minerals distinct names and aliases.",
                        path=source,
                        got=alias,
                    )
        library = cls(minerals=minerals, series={}, _lookup=lookup)
        series = {}
        for series_name, table in data.get("series", {}).items():
            members = tuple(library.mineral(str(m)).name for m in table.get("endmembers", ()))
            if len(members) != 2:
                raise ConfigError(
                    f"series {series_name!r} in {source}: expected 2 end-members, got {members}.",
                    path=source,
                    expected=2,
                    got=members,
                )
            series[str(series_name)] = (members[0], members[1])
        return cls(minerals=minerals, series=series, _lookup=lookup)

    # -- look-ups ------------------------------------------------------------------------------
    def mineral(self, name: str) -> Mineral:
        """The mineral called ``name`` (or one of its aliases); case and punctuation ignored.

        Raises:
            ConfigError: unknown name; the message lists the closest names.
        """
        canonical = self._lookup.get(_key(name))
        if canonical is None:
            raise ConfigError(
                f"unknown mineral {name!r}{_suggest(name, self._lookup)}; expected one of the "
                f"{len(self.minerals)} names listed by MineralLibrary.names(){self._hint(name)}.",
                expected="mineral name",
                got=name,
            )
        return self.minerals[canonical]

    def _hint(self, name: str) -> str:
        """Extra advice when ``name`` is a group or series rather than a mineral."""
        key = _key(name)
        hints = []
        if any(_key(s) == key for s in self.series):
            hints.append(f"solid_solution({name!r}, x) for a member of the series")
        if any(_key(m.group) == key for m in self.minerals.values()):
            hints.append(f"group({name!r}) for the minerals of the group")
        return f" ({name!r} is not a mineral: use {' or '.join(hints)})" if hints else ""

    def names(self) -> list[str]:
        """Canonical mineral names, sorted."""
        return sorted(self.minerals)

    def groups(self) -> list[str]:
        """Group names, sorted."""
        return sorted({m.group for m in self.minerals.values()})

    def group(self, group: str) -> list[Mineral]:
        """Minerals of ``group`` (case-insensitive), sorted by name."""
        members = [m for m in self.minerals.values() if _key(m.group) == _key(group)]
        if not members:
            groups = {_key(g): g for g in self.groups()}
            raise ConfigError(
                f"unknown mineral group {group!r}; expected one of {self.groups()}"
                f"{_suggest(group, groups)}.",
                expected="group name",
                got=group,
            )
        return sorted(members, key=lambda m: m.name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._lookup

    def __iter__(self) -> Iterator[Mineral]:
        return iter(self.minerals[n] for n in self.names())

    def __len__(self) -> int:
        return len(self.minerals)

    # -- mixing --------------------------------------------------------------------------------
    def mix_molar(self, fractions: Mapping[str, float]) -> Composition:
        """Composition of a molar mixture of formula units, e.g. ``{'forsterite': 0.9, ...}``.

        Moles of each element are Σ_k f_k · n_ik (n_ik atoms of element i per formula unit of
        mineral k); the fractions are normalised to their sum.
        """
        atoms: dict[str, float] = {}
        for name, fraction in fractions.items():
            if not (math.isfinite(fraction) and fraction >= 0.0):
                raise ConfigError(
                    f"expected non-negative molar fractions, got {name}={fraction!r}.",
                    expected="fraction >= 0",
                    got=fraction,
                )
            for symbol, n in self.mineral(name).atoms_per_formula_unit:
                atoms[symbol] = atoms.get(symbol, 0.0) + fraction * n
        return Composition.from_atoms(atoms)

    def series_endmembers(self, series: str) -> tuple[str, str]:
        """The two end-member names of ``series`` (first one is x = 1)."""
        found = {_key(s): s for s in self.series}.get(_key(series))
        if found is None:
            raise ConfigError(
                f"unknown solid-solution series {series!r}; expected one of "
                f"{sorted(self.series)}{_suggest(series, {_key(s): s for s in self.series})}.",
                expected="series name",
                got=series,
            )
        return self.series[found]

    def solid_solution(self, series: str, x: float) -> Composition:
        """Composition of ``series`` at molar fraction ``x`` of its FIRST end-member.

        ``solid_solution('olivine', 0.9)`` is Fo90 (x = mg# for olivine); x = 1 and x = 0 give
        the end-members.
        """
        first, second = self.series_endmembers(series)
        if not (math.isfinite(x) and 0.0 <= x <= 1.0):
            raise ConfigError(
                f"expected a molar fraction 0 ≤ x ≤ 1 of {first} in series {series!r}, got {x!r}.",
                expected="0 <= x <= 1",
                got=x,
            )
        return self.mix_molar({first: x, second: 1.0 - x})


def _suggest(name: str, keyed: Mapping[str, str]) -> str:
    """' (did you mean …?)' with up to five close canonical names, or ''."""
    near = difflib.get_close_matches(_key(name), list(keyed), n=5, cutoff=0.6)
    names = list(dict.fromkeys(keyed[k] for k in near))
    return f" (did you mean {', '.join(repr(n) for n in names)}?)" if names else ""


@lru_cache(maxsize=4)
def load_library(path: str | Path | None = None) -> MineralLibrary:
    """The mineral library from the packaged ``minerals.toml`` (or ``path``), cached.

    Raises:
        ConfigError: the file is not valid TOML or a table is inconsistent.
    """
    if path is None:
        text = resources.files("semlive.physics").joinpath(_PACKAGED).read_text(encoding="utf-8")
        source = f"semlive/physics/{_PACKAGED}"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{source} is not valid TOML ({exc}). Fix the file.", path=source, got=str(exc)
        ) from exc
    return MineralLibrary.from_dict(data, source)
