"""Cached X-ray data from :mod:`xraydb`: emission lines, edges, fluorescence yields, μ/ρ.

Line energies and relative emission probabilities per initial vacancy are those of xraydb
(Elam, Ravel & Sieber 2002, Radiat. Phys. Chem. 63, 121); subshell fluorescence yields ω are
xraydb's edge ``fyield`` values; mass attenuation coefficients μ/ρ are xraydb's Elam tables.
Only K, L1-3 and M1-5 vacancies are used, and only lines at or above
:data:`MIN_LINE_ENERGY_EV` (below it an EDS detector sees nothing and the tables are
unreliable). Coster-Kronig transfers between subshells are neglected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.physics._elements import check_symbol, xraydb_module

__all__ = [
    "MIN_LINE_ENERGY_EV",
    "SHELL_OCCUPANCY",
    "ElementLines",
    "element_lines",
    "family_name",
    "mass_attenuation",
]

#: Lowest photon energy the models emit or detect (eV).
MIN_LINE_ENERGY_EV = 100.0

#: Electrons in a filled subshell (the n_s of the Bethe ionisation cross-section).
SHELL_OCCUPANCY: dict[str, int] = {
    "K": 2, "L1": 2, "L2": 2, "L3": 4, "M1": 2, "M2": 2, "M3": 4, "M4": 4, "M5": 6,
}  # fmt: skip

_FAMILY = re.compile(r"^[KLM][a-z]+")


def family_name(line: str) -> str:
    """Line family of an IUPAC/Siegbahn line name: ``'Ka1'`` → ``'Ka'``, ``'Lb2,15'`` → ``'Lb'``."""
    match = _FAMILY.match(line)
    return match.group(0) if match else line


def _frozen(values: list[float] | NDArray[np.float64]) -> NDArray[np.float64]:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class ElementLines:
    """The emission lines of one element that a beam of energy ``e0_ev`` can excite.

    Per line: name, energy, initial vacancy (shell), and ``weight`` = ω_shell · p_line, the
    photons emitted per vacancy of that shell. Per shell: edge energy and occupancy.
    """

    symbol: str
    names: tuple[str, ...]
    energies_ev: NDArray[np.float64]
    weights: NDArray[np.float64]
    shell_of_line: NDArray[np.intp]
    shells: tuple[str, ...]
    edge_energies_ev: NDArray[np.float64]
    occupancy: NDArray[np.float64]

    @property
    def families(self) -> tuple[str, ...]:
        """Shell family (``'K'``, ``'L'`` or ``'M'``) of each line."""
        return tuple(self.shells[i][0] for i in self.shell_of_line)

    def __len__(self) -> int:
        return len(self.names)


def _shell_lines(lines: dict[str, Any], shell: str) -> list[tuple[str, float, float]]:
    """(name, energy, emission probability) of the detectable lines from a ``shell`` vacancy."""
    return [
        (name, float(line.energy), float(line.intensity))
        for name, line in lines.items()
        if line.initial_level == shell
        and line.energy >= MIN_LINE_ENERGY_EV
        and line.intensity > 0.0
    ]


@lru_cache(maxsize=1024)
def element_lines(symbol: str, e0_ev: float | None = None) -> ElementLines:
    """Lines of ``symbol`` excited by electrons of energy ``e0_ev`` (all lines when None).

    A subshell contributes only if its edge energy is below ``e0_ev`` and its fluorescence
    yield is positive; a line only if its energy is at least :data:`MIN_LINE_ENERGY_EV`.
    """
    xdb = xraydb_module()
    edges = xdb.xray_edges(check_symbol(symbol))
    lines = xdb.xray_lines(symbol)
    shells: list[str] = []
    names, energies, weights, shell_index = [], [], [], []
    for shell in SHELL_OCCUPANCY:
        edge = edges.get(shell)
        if edge is None or edge.fyield <= 0.0 or (e0_ev is not None and edge.energy >= e0_ev):
            continue
        members = _shell_lines(lines, shell)
        if not members:
            continue
        shells.append(shell)
        for name, energy, probability in members:
            names.append(name)
            energies.append(energy)
            weights.append(float(edge.fyield) * probability)
            shell_index.append(len(shells) - 1)
    return ElementLines(
        symbol=symbol,
        names=tuple(names),
        energies_ev=_frozen(energies),
        weights=_frozen(weights),
        shell_of_line=np.array(shell_index, dtype=np.intp),
        shells=tuple(shells),
        edge_energies_ev=_frozen([float(edges[s].energy) for s in shells]),
        occupancy=_frozen([float(SHELL_OCCUPANCY[s]) for s in shells]),
    )


@lru_cache(maxsize=8192)
def _mass_attenuation_cached(absorber: str, energies: tuple[float, ...]) -> NDArray[np.float64]:
    clipped = np.maximum(np.array(energies, dtype=np.float64), MIN_LINE_ENERGY_EV)
    if clipped.size == 0:
        return _frozen(clipped)
    return _frozen(xraydb_module().mu_elam(check_symbol(absorber), clipped, kind="total"))


def mass_attenuation(absorber: str, energies_ev: NDArray[np.float64]) -> NDArray[np.float64]:
    """Mass attenuation coefficient μ/ρ (cm²/g) of element ``absorber`` at ``energies_ev``.

    Energies below :data:`MIN_LINE_ENERGY_EV` are evaluated at that energy. Results are cached
    per (absorber, energies) and returned read-only.
    """
    return _mass_attenuation_cached(absorber, tuple(float(e) for e in np.ravel(energies_ev)))
