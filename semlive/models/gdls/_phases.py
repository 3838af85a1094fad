"""Phases of GDLS segments: each segment's summed spectrum matched to the mineral library.

A segment holds hundreds of low-count spectra; their sum has the counts of a TIMA phase search
(10⁵–10⁶), so it is matched as TIMA matches: against the expected spectrum of every library
mineral and of each solid-solution series every ``series_step`` (semlive.physics), by Poisson
deviance on 100-eV bins. The best single phase is reported with its misfit (deviance per degree
of freedom: about 1 when the phase explains the sum to within counting noise).

A segment on a boundary sums spectra of two phases. It is reported as *mixed* when a mixture of
two library phases of different series (each at least 15 % of the counts) explains the sum much
better than any one phase: its deviance is below half the best single phase's. Phases EDS cannot
tell apart (quartz and cristobalite: one composition) are one entry, named by both.

Real spectra differ from the simulated library (detector efficiency, background), so on real
data the misfit is larger and the name is the nearest library phase, not an identification.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from semlive.models.gdls._band import coarse_bins

if TYPE_CHECKING:
    from semlive.models.gdls._segment import GdlsResult

__all__ = [
    "PhaseLibrary",
    "PhaseMatch",
    "cell_text",
    "match_phases",
    "phase_areas",
    "phase_library",
    "segment_table",
    "write_segment_table",
]

_MIXED_GAIN = 0.5  # a mixture must halve the best single phase's deviance
_MIXED_SHARE = 0.15  # and hold at least this share of each phase
_SHARES = np.round(np.arange(_MIXED_SHARE, 1.0 - _MIXED_SHARE + 1e-9, 0.05), 2)
_CANDIDATES = 12  # best single phases tried in pairs


@dataclass(frozen=True, slots=True)
class PhaseLibrary:
    """Expected spectrum shapes, binned: ``spectra[m]`` sums to 1 and belongs to ``names[m]``."""

    names: tuple[str, ...]
    spectra: NDArray[np.float64]  # (phases, bins)
    families: tuple[frozenset[str], ...]  # series (and mineral) each phase belongs to
    beam_energy_kev: float


@dataclass(frozen=True, slots=True)
class PhaseMatch:
    """The library phase of one segment's summed spectrum."""

    phase: str
    misfit: float  # deviance per degree of freedom of the best single phase
    mixed: bool  # a two-phase mixture explains it much better (a boundary segment)
    second_phase: str  # the other phase of the best mixture ('' when there is none)
    share: float  # share of ``phase``'s counts in the best mixture (1.0 when not mixed)
    counts: float  # counts of the summed spectrum


def _series_name(series: str, first: str, x: float) -> str:
    return f"{series} ({first} {round(100 * x)} %)"


@lru_cache(maxsize=4)
def phase_library(beam_energy_kev: float = 20.0, series_step: float = 0.05) -> PhaseLibrary:
    """The packaged mineral library and its solid-solution series every ``series_step``, as
    expected spectra on the band at ``beam_energy_kev``."""
    from semlive.models.gdls._materials import band_detector
    from semlive.physics import expected_spectrum, load_library

    library = load_library()
    detector = band_detector()
    entries: list[tuple[str, frozenset[str], Any]] = []
    for name in library.names():
        member_of = {s for s, pair in library.series.items() if name in pair}
        entries.append((name, frozenset({name, *member_of}), library.mineral(name).composition))
    for series in sorted(library.series):
        first, _ = library.series_endmembers(series)
        for x in np.arange(series_step, 1.0 - series_step / 2, series_step):
            composition = library.solid_solution(series, float(x))
            entries.append(
                (_series_name(series, first, float(x)), frozenset({series}), composition)
            )
    shapes = coarse_bins(
        np.stack([expected_spectrum(c, detector, beam_energy_kev) for _, _, c in entries])
    )
    shapes /= shapes.sum(axis=1, keepdims=True)
    # phases EDS cannot tell apart (quartz and cristobalite) become one entry named by both
    names: list[str] = []
    families: list[frozenset[str]] = []
    kept: list[int] = []
    for index, (name, family, _) in enumerate(entries):
        same = [k for k, j in enumerate(kept) if np.abs(shapes[j] - shapes[index]).max() < 1e-9]
        if same:
            names[same[0]] += f" / {name}"
            families[same[0]] |= family
        else:
            names.append(name)
            families.append(family)
            kept.append(index)
    binned = shapes[kept]
    binned.setflags(write=False)
    return PhaseLibrary(tuple(names), binned, tuple(families), beam_energy_kev)


def _deviance(counts: NDArray[np.float64], shapes: NDArray[np.float64]) -> NDArray[np.float64]:
    """Poisson deviance of each row of ``counts`` (S, bins) against each shape (M, bins) scaled
    to its total: (S, M)."""
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.where(counts > 0, counts * np.log(counts), 0.0).sum(axis=1, keepdims=True)
    log_shapes = np.log(np.maximum(shapes, 1e-12))
    deviance: NDArray[np.float64] = 2.0 * (
        own - total * np.log(np.maximum(total, 1.0)) - counts @ log_shapes.T
    )
    return np.maximum(deviance, 0.0)


def match_phases(
    sums: NDArray[np.floating],
    library: PhaseLibrary | None = None,
    touching: list[list[int]] | None = None,
) -> list[PhaseMatch]:
    """The library phase of each summed spectrum (rows of ``sums``, on the band).

    ``touching[s]``: the rows of the segments that touch segment ``s``. Their best single
    phases join the candidates of ``s``'s mixtures: a boundary segment mixes its neighbours,
    and its sum alone may look more like a third phase (an olivine–plagioclase boundary like a
    basaltic glass) than like either."""
    if library is None:
        library = phase_library()
    counts = coarse_bins(sums)
    if not len(counts):
        return []
    freedom = np.maximum((counts > 0).sum(axis=1) - 1, 1)
    single = _deviance(counts, library.spectra)
    order = np.argsort(single, axis=1)[:, :_CANDIDATES]
    nearest = order[:, 0]
    matches = []
    for s, ranked in enumerate(order):
        best = int(ranked[0])
        around = [] if touching is None else [int(nearest[t]) for t in touching[s]]
        candidates = list(dict.fromkeys([*ranked.tolist(), *around]))
        # a mixture of two points of one series is a point between them, not a boundary
        pairs = [
            (int(a), int(b))
            for k, a in enumerate(candidates)
            for b in candidates[k + 1 :]
            if not library.families[a] & library.families[b]
        ]
        mixed, second, share = False, "", 1.0
        if pairs and counts[s].sum() > 0:
            first_shapes = library.spectra[[a for a, _ in pairs]]
            second_shapes = library.spectra[[b for _, b in pairs]]
            mixes = (
                _SHARES[None, :, None] * first_shapes[:, None, :]
                + (1 - _SHARES[None, :, None]) * second_shapes[:, None, :]
            ).reshape(-1, counts.shape[1])
            deviance = _deviance(counts[s : s + 1], mixes)[0]
            k = int(np.argmin(deviance))
            if deviance[k] < _MIXED_GAIN * single[s, best]:
                a, b = pairs[k // len(_SHARES)]
                share_a = float(_SHARES[k % len(_SHARES)])
                # the larger share is the segment's phase
                best, other, share = (a, b, share_a) if share_a >= 0.5 else (b, a, 1 - share_a)
                mixed, second = True, library.names[other]
        matches.append(
            PhaseMatch(
                phase=library.names[best],
                misfit=float(single[s, int(ranked[0])] / freedom[s]),
                mixed=mixed,
                second_phase=second,
                share=round(share, 2),
                counts=float(counts[s].sum()),
            )
        )
    return matches


def segment_table(
    result: GdlsResult,
    bse: NDArray[np.integer] | NDArray[np.floating],
    library: PhaseLibrary | None = None,
) -> dict[str, NDArray[Any]]:
    """One row per segment of a GDLS result: its label, size, mean BSE, centroid, summed counts
    and library phase (:func:`match_phases`). Columns are arrays of equal length."""
    labels = result.labels
    count = int(labels.max())
    pixels = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    present = np.flatnonzero(pixels > 0)
    flat = labels.ravel()
    rows, cols = np.divmod(np.arange(flat.size), labels.shape[1])
    image = np.asarray(bse, np.float64).ravel()

    def mean_of(values: NDArray[Any]) -> NDArray[np.float64]:
        total = np.bincount(flat, weights=values, minlength=count + 1)[1:]
        mean: NDArray[np.float64] = total[present] / pixels[present]
        return mean

    matches = match_phases(result.sums[present], library, _touching(labels, present + 1))
    return {
        "segment": (present + 1).astype(np.uint32),
        "pixels": pixels[present].astype(np.int64),
        "points": result.points[present],
        "counts": np.array([m.counts for m in matches], np.float64),
        "bse_mean": mean_of(image),
        "centroid_row": mean_of(rows.astype(np.float64)),
        "centroid_col": mean_of(cols.astype(np.float64)),
        "phase": np.array([m.phase for m in matches], dtype=object),
        "misfit": np.array([m.misfit for m in matches], np.float64),
        "mixed": np.array([m.mixed for m in matches], np.bool_),
        "second_phase": np.array([m.second_phase for m in matches], dtype=object),
        "share": np.array([m.share for m in matches], np.float64),
    }


def write_segment_table(table: dict[str, NDArray[Any]], path: Path) -> Path:
    """Write a :func:`segment_table` as CSV (one header line, one row a segment)."""
    import csv

    columns = list(table)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for values in zip(*(table[c] for c in columns), strict=True):
            writer.writerow([cell_text(v) for v in values])
    return path


def cell_text(value: Any) -> str:
    """A table cell as CSV text: booleans ``true``/``false``, floats to 6 significant digits."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def phase_areas(table: dict[str, NDArray[Any]]) -> list[tuple[str, int, int, int]]:
    """(phase, pixels, segments, pixels in mixed segments) by phase, largest first."""
    out: dict[str, list[int]] = {}
    for phase, pixels, mixed in zip(table["phase"], table["pixels"], table["mixed"], strict=True):
        row = out.setdefault(str(phase), [0, 0, 0])
        row[0] += int(pixels)
        row[1] += 1
        row[2] += int(pixels) if mixed else 0
    return sorted(((p, *v) for p, v in out.items()), key=lambda r: -r[1])  # type: ignore[misc]


def _touching(labels: NDArray[np.integer], segments: NDArray[np.integer]) -> list[list[int]]:
    """For each of ``segments`` (label values), the indices into ``segments`` of the segments
    whose pixels touch its own (4-neighbours)."""
    index = np.full(int(labels.max()) + 1, -1)
    index[segments] = np.arange(len(segments))
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], axis=1),
        ]
    )
    pairs = pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs > 0).all(axis=1)]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    out: list[list[int]] = [[] for _ in segments]
    for a, b in index[pairs]:
        out[a].append(int(b))
        out[b].append(int(a))
    return out
