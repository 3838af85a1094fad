"""Parse chemical formulas into atoms per formula unit.

Grammar (whitespace is ignored)::

    formula := part (DOT [number] part)*        DOT is '·', '•' or '*'   (CaSO4·2H2O)
    part    := item+
    item    := (Element | '(' part ')' | '[' part ']') [number]
    number  := digits with an optional decimal fraction (2, 0.5, 1.25, .5)

Examples: ``Mg2SiO4``, ``(Mg0.9Fe0.1)2SiO4``, ``Ca0.5Na0.5Al1.5Si2.5O8``,
``KMg3[AlSi3O10](OH)2``, ``CaSO4·2H2O``. Site lists with commas and no proportions
(``(Mg,Fe)2SiO4``) are rejected: write the proportions out.
"""

from __future__ import annotations

from semlive.errors import ConfigError
from semlive.physics._elements import check_symbol

__all__ = ["parse_formula"]

_OPEN_TO_CLOSE = {"(": ")", "[": "]"}
_DOTS = frozenset("·•*")


class _Parser:
    """Recursive-descent parser over one formula string."""

    def __init__(self, text: str) -> None:
        self.original = text
        self.text = "".join(text.split())
        self.pos = 0

    def fail(self, what: str) -> ConfigError:
        return ConfigError(
            f"cannot parse chemical formula {self.original!r}: {what} at character {self.pos} "
            f"of {self.text!r}. Expected element symbols with optional numeric subscripts, "
            "parentheses for groups and '·' for adducts, e.g. '(Mg0.9Fe0.1)2SiO4' or "
            "'CaSO4·2H2O'; write site proportions out instead of '(Mg,Fe)'.",
            expected="chemical formula",
            got=self.original,
        )

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def number(self, default: float) -> float:
        start = self.pos
        while self.peek().isdigit() or self.peek() == ".":
            self.pos += 1
        token = self.text[start : self.pos]
        if not token:
            return default
        if token.count(".") > 1 or token == ".":
            raise self.fail(f"malformed number {token!r}")
        return float(token)

    def element(self) -> str:
        start = self.pos
        self.pos += 1
        if self.peek().islower():
            self.pos += 1
        symbol = self.text[start : self.pos]
        try:
            return check_symbol(symbol)
        except ConfigError:
            self.pos = start
            raise self.fail(f"unknown element {symbol!r}") from None

    def part(self, closing: str) -> dict[str, float]:
        atoms: dict[str, float] = {}
        while (char := self.peek()) and char != closing and char not in _DOTS:
            if char in _OPEN_TO_CLOSE:
                self.pos += 1
                inner = self.part(_OPEN_TO_CLOSE[char])
                if self.peek() != _OPEN_TO_CLOSE[char]:
                    raise self.fail(f"missing {_OPEN_TO_CLOSE[char]!r}")
                self.pos += 1
            elif char.isupper():
                inner = {self.element(): 1.0}
            else:
                raise self.fail(f"unexpected {char!r}")
            count = self.number(1.0)
            for symbol, n in inner.items():
                atoms[symbol] = atoms.get(symbol, 0.0) + n * count
        if not atoms:
            raise self.fail("empty group")
        return atoms

    def formula(self) -> dict[str, float]:
        atoms = self.part("")
        while self.peek() in _DOTS and self.peek():
            self.pos += 1
            factor = self.number(1.0)
            for symbol, n in self.part("").items():
                atoms[symbol] = atoms.get(symbol, 0.0) + n * factor
        if self.pos != len(self.text):
            raise self.fail(f"unexpected {self.peek()!r}")
        return atoms


def parse_formula(formula: str) -> dict[str, float]:
    """Atoms per formula unit of ``formula``: ``'(Mg0.9Fe0.1)2SiO4'`` → Mg 1.8, Fe 0.2, Si 1, O 4.

    Elements with a zero count (``Fe0``) are dropped.

    Raises:
        ConfigError: the formula is empty, malformed or names an unknown element.
    """
    atoms = _Parser(formula).formula()
    return {symbol: n for symbol, n in atoms.items() if n > 0.0}
