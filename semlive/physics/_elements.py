"""Element data: symbols, atomic numbers and standard atomic weights.

The numbers come from :mod:`xraydb` (Elam, Ravel & Sieber 2002 tables, IUPAC atomic weights).
xraydb takes about two seconds to import, so it is imported inside the functions that need it
and every look-up is cached: importing :mod:`semlive.physics` stays cheap.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from semlive.errors import ConfigError

__all__ = ["atomic_mass", "atomic_number", "check_symbol", "xraydb_module"]

#: Heaviest element the physics models handle (uranium).
MAX_Z = 92


@lru_cache(maxsize=1)
def xraydb_module() -> Any:
    """Return the :mod:`xraydb` module, imported on first use."""
    import xraydb  # type: ignore[import-untyped, unused-ignore]

    return xraydb


@lru_cache(maxsize=1)
def _symbols() -> tuple[str, ...]:
    """Element symbols H … U in order of atomic number (index 0 is hydrogen)."""
    xdb = xraydb_module()
    return tuple(str(xdb.atomic_symbol(z)) for z in range(1, MAX_Z + 1))


@lru_cache(maxsize=256)
def check_symbol(symbol: str) -> str:
    """Return ``symbol`` if it is a chemical element symbol (H … U, exact case), else raise.

    Raises:
        ConfigError: naming the closest valid symbols.
    """
    symbols = _symbols()
    if symbol in symbols:
        return symbol
    near = difflib.get_close_matches(symbol.capitalize(), symbols, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(near)}?" if near else ""
    raise ConfigError(
        f"expected a chemical element symbol H … U with exact case (e.g. 'Fe'), got {symbol!r}"
        f"{hint} Fix the formula or composition that names it.",
        expected="element symbol",
        got=symbol,
    )


@lru_cache(maxsize=256)
def atomic_number(symbol: str) -> int:
    """Atomic number Z of ``symbol`` (``'Fe'`` → 26)."""
    return _symbols().index(check_symbol(symbol)) + 1


@lru_cache(maxsize=256)
def atomic_mass(symbol: str) -> float:
    """Standard atomic weight of ``symbol`` in g/mol (``'Fe'`` → 55.845)."""
    return float(xraydb_module().atomic_mass(check_symbol(symbol)))
