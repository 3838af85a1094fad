"""Chemical compositions as mass fractions of elements.

A :class:`Composition` is an immutable, hashable mapping ``element symbol -> mass fraction``
whose fractions are positive and sum to one. Hashability lets the X-ray models cache their
results per composition.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from semlive.errors import ConfigError
from semlive.physics._elements import atomic_mass, atomic_number, check_symbol
from semlive.physics._formula import parse_formula

__all__ = ["Composition"]

#: Tolerance on the sum of mass fractions of a directly constructed Composition.
_SUM_TOLERANCE = 1e-9


def _scaled(amounts: Mapping[str, float], what: str) -> dict[str, float]:
    """Check ``amounts`` (non-negative, finite, positive total); return them scaled to sum 1.

    Zero entries are dropped; keys are not interpreted.
    """
    total = 0.0
    for key, value in amounts.items():
        if not math.isfinite(value) or value < 0.0:
            raise ConfigError(
                f"expected a non-negative finite {what} for every entry, got {key}={value!r}. "
                "Fix the amount or drop the entry.",
                expected=f"{what} >= 0",
                got=value,
            )
        total += float(value)
    if total <= 0.0:
        raise ConfigError(
            f"expected at least one positive {what}, got {dict(amounts)!r}. "
            "Give at least one entry a positive amount.",
            expected=f"positive total {what}",
            got=dict(amounts),
        )
    return {key: float(value) / total for key, value in amounts.items() if value > 0.0}


def _normalised(amounts: Mapping[str, float], what: str) -> tuple[tuple[str, float], ...]:
    """Element amounts scaled to sum 1, sorted by atomic number, without zero entries."""
    for symbol in amounts:
        check_symbol(symbol)
    scaled = _scaled(amounts, what)
    return tuple(sorted(scaled.items(), key=lambda item: atomic_number(item[0])))


@dataclass(frozen=True, slots=True)
class Composition(Mapping[str, float]):
    """Mass fractions of elements, sorted by atomic number, positive and summing to one.

    Build one with :meth:`from_formula`, :meth:`from_mass_fractions`, :meth:`from_atoms`,
    :meth:`from_oxides` or :meth:`mix`; ``comp["Mg"]`` raises ``KeyError`` for an absent
    element, :meth:`mass_fraction` returns 0.0 for it.
    """

    fractions: tuple[tuple[str, float], ...]
    _index: dict[str, float] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index = dict(self.fractions)
        ordered = sorted(index, key=atomic_number)
        bad = (
            len(index) != len(self.fractions)
            or list(index) != ordered
            or any(not (0.0 < v <= 1.0) for v in index.values())
            or abs(sum(index.values()) - 1.0) > _SUM_TOLERANCE
        )
        if bad:
            raise ConfigError(
                "expected unique elements sorted by atomic number with positive mass fractions "
                f"summing to 1, got {self.fractions!r}. Build compositions with "
                "Composition.from_mass_fractions(), which normalises for you.",
                expected="normalised mass fractions",
                got=self.fractions,
            )
        object.__setattr__(self, "_index", index)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_mass_fractions(cls, fractions: Mapping[str, float]) -> Composition:
        """Composition from mass fractions or weight percents (normalised to sum 1)."""
        return cls(_normalised(fractions, "mass fraction"))

    @classmethod
    def from_atoms(cls, atoms: Mapping[str, float]) -> Composition:
        """Composition from atom counts (moles) per formula unit: mass_i = n_i · A_i."""
        moles = dict(_normalised(atoms, "atom count"))
        return cls.from_mass_fractions({s: n * atomic_mass(s) for s, n in moles.items()})

    @classmethod
    def from_formula(cls, formula: str) -> Composition:
        """Composition of a chemical formula such as ``'(Mg0.9Fe0.1)2SiO4'``."""
        return cls.from_atoms(parse_formula(formula))

    @classmethod
    def from_oxides(cls, oxides_wt: Mapping[str, float]) -> Composition:
        """Composition from an oxide analysis in wt% (``{'SiO2': 50.1, 'FeO': 9.8, ...}``).

        The analysis is normalised to 100 % (volatile-free); each oxide formula is parsed.
        """
        return cls.from_atoms(oxide_atoms(oxides_wt))

    @classmethod
    def mix(cls, weights: Sequence[tuple[Composition, float]]) -> Composition:
        """Mass-weighted mixture: c_i = Σ_k w_k c_ik / Σ_k w_k (weights are mass proportions)."""
        if not weights:
            raise ConfigError(
                "expected at least one (Composition, weight) pair to mix, got none.",
                expected="non-empty sequence",
                got=list(weights),
            )
        scaled = _scaled({str(k): w for k, (_, w) in enumerate(weights)}, "mixing weight")
        mass: dict[str, float] = {}
        for k, (comp, _) in enumerate(weights):
            weight = scaled.get(str(k), 0.0)
            for symbol, fraction in comp.fractions:
                mass[symbol] = mass.get(symbol, 0.0) + weight * fraction
        return cls.from_mass_fractions(mass)

    # -- mapping protocol ---------------------------------------------------------------------
    def __getitem__(self, symbol: str) -> float:
        return self._index[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self.fractions)

    def __repr__(self) -> str:
        body = ", ".join(f"{s}={v:.5g}" for s, v in self.fractions)
        return f"Composition({body})"

    # -- queries ------------------------------------------------------------------------------
    @property
    def elements(self) -> tuple[str, ...]:
        """Element symbols present, in order of atomic number."""
        return tuple(s for s, _ in self.fractions)

    def mass_fraction(self, symbol: str) -> float:
        """Mass fraction of ``symbol``; 0.0 when the element is absent."""
        return self._index.get(symbol, 0.0)

    def as_dict(self) -> dict[str, float]:
        """A plain ``{symbol: mass fraction}`` dict (a copy)."""
        return dict(self._index)

    def atomic_fractions(self) -> dict[str, float]:
        """Atom (mole) fractions x_i = (c_i/A_i) / Σ_j (c_j/A_j)."""
        moles = {s: c / atomic_mass(s) for s, c in self.fractions}
        total = sum(moles.values())
        return {s: n / total for s, n in moles.items()}


def oxide_atoms(oxides_wt: Mapping[str, float]) -> dict[str, float]:
    """Moles of each element in 100 g of an oxide analysis (normalised to 100 wt%)."""
    if not oxides_wt:
        raise ConfigError(
            "expected an oxide analysis such as {'SiO2': 50.0, 'MgO': 10.0}, got nothing.",
            expected="oxide wt% table",
            got=dict(oxides_wt),
        )
    atoms: dict[str, float] = {}
    for oxide, fraction in _scaled(oxides_wt, "oxide wt%").items():
        unit = parse_formula(oxide)
        molar_mass = sum(n * atomic_mass(s) for s, n in unit.items())
        for symbol, n in unit.items():
            atoms[symbol] = atoms.get(symbol, 0.0) + 100.0 * fraction * n / molar_mass
    return atoms
