"""Shared parts of the spectra readers: the file being read, its refusals, counts checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.errors import InputDataError

__all__ = [
    "FORMATS_EXTRA_HINT",
    "File",
    "as_float",
    "check_counts_shape",
    "integral_counts",
    "readonly",
]

FORMATS_EXTRA_HINT = (
    "reading .bcf/.msa files needs the 'formats' extra: pip install 'semlive[formats]'"
)
_EXACT_FLOAT_INT = 2**53  # float64 holds every integer up to this exactly


@dataclass(frozen=True, slots=True)
class File:
    """The file being read: its path on disk and its name relative to the session folder."""

    path: Path
    name: str

    def refuse(self, problem: str, expected: str, action: str, got: Any = None) -> InputDataError:
        """An error that says what arrived, what was expected and what to do."""
        return InputDataError(
            f"{self.name}: {problem}; expected {expected} — {action}",
            path=self.path,
            expected=expected,
            got=got,
        )


def integral_counts(src: File, what: str, values: NDArray[Any]) -> NDArray[np.integer]:
    """Counts as an integer array: integers as they are, floats only when integral."""
    if values.dtype.kind in "iu":
        counts = np.ascontiguousarray(values)
        if counts.dtype.kind == "i" and counts.size and int(counts.min()) < 0:
            raise src.refuse(
                f"{what} has negative values (minimum {int(counts.min())})",
                "non-negative X-ray counts",
                "re-export the spectra without background subtraction",
                got=int(counts.min()),
            )
        return counts
    floats = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(floats) | (floats < 0) | (floats > _EXACT_FLOAT_INT)
    bad |= floats != np.floor(floats)
    if bad.any():
        first = float(floats.ravel()[np.flatnonzero(bad.ravel())[0]])
        raise src.refuse(
            f"{what} has {int(bad.sum())} values that are not non-negative whole numbers "
            f"(first: {first})",
            "raw X-ray counts (non-negative integers)",
            "export raw counts, not processed intensities",
            got=first,
        )
    return np.ascontiguousarray(floats.astype(np.int64))


def as_float(value: Any) -> float:
    """``value`` as a float, NaN where it is not a number (a keyword the parser left as text)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def readonly(array: NDArray[Any]) -> NDArray[Any]:
    array.flags.writeable = False
    return array


def check_counts_shape(src: File, n: int, c: int, channels: int | None, max_values: int) -> None:
    if n < 1 or c < 1:
        raise src.refuse(
            f"counts has shape ({n}, {c})",
            "at least one spectrum of at least one channel",
            "re-export the batch or remove the empty file",
            got=(n, c),
        )
    if channels is not None and c != channels:
        raise src.refuse(
            f"counts has {c} channels",
            f"{channels} channels as session.json spectra.channels says",
            "fix spectra.channels in session.json or re-export the batch",
            got=c,
        )
    if n * c > max_values:
        raise src.refuse(
            f"counts holds {n:,} × {c:,} = {n * c:,} values",
            f"at most {max_values:,} values (the max_values limit)",
            "acquire smaller batches or raise the max_values limit",
            got=n * c,
        )
