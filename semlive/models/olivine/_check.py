"""The crystal check: predicted crystals that are too flat, in the wrong grey band, for olivine.

Clinopyroxene's BSE grey level lies inside olivine's range, so a network that sees a patch of
it often cannot tell the two apart pixel by pixel. The crystals differ as wholes:

- olivine phenocrysts are zoned (their grey level changes from core to rim as Fe/Mg does),
  augite much less: the *spread* of a crystal's interior BSE (the standard deviation of the
  Gaussian-smoothed grey level over the pixels at least ``core_depth_px`` and ``core_fraction``
  of the crystal's largest depth inside it: away from the rim, where the mask's edge and the
  beam's blur mix the neighbours in; cracks and holes, resin, left out: :func:`cleared`; with
  ``smooth_within``, the smoothing over the crystal's own pixels only, so that a small
  crystal's few interior pixels do not take in its neighbours' grey: smoothed over everything,
  small flat clinopyroxenes on the virtual SEM's `small` read 200-485 DN, large ones 62-120;
  with ``rim_core``, the larger of that and the difference between the mean BSE of the
  crystal's rim and of its core, :func:`_rim_core`: read over many pixels, it tells a gently
  zoned olivine, whose interior spread can fall below that of a clinopyroxene raised by a
  neighbour or a crack, from a flat crystal);
- averaged over a whole crystal, the grey level is precise (the BSE noise of one pixel is
  ~600 DN, of a hundred-pixel mean ~60 DN), and a session's clinopyroxene fills a narrower
  *band* of mean grey than its olivine, which spans its whole Fe/Mg range: the *mean* of the
  crystal's interior BSE.

A crystal is dropped when its spread is below ``max_core_std_dn`` and its mean lies within
[``band_low_dn``, ``band_high_dn``] (unbounded by default: the flatness alone decides) but not
in the band's gap (``gap_low_dn``, ``gap_high_dn``) (none by default). None is set by hand: all
are chosen on the session's own EDS tiles, where the EDS labels say which predicted crystals
are olivine, as those that maximise the IoU against those labels (the way ``dlth`` is chosen; of
the spread thresholds that do within 0.001 as well, the lowest: see :meth:`CheckFit.result`).
Where no choice gains at
least ``MIN_GAIN`` IoU there, the check stays off. A gap (flat olivines kept amid the
look-alikes' grey: unzoned olivines of clinopyroxene's grey) is taken only where it gains
``MIN_GAIN`` over the best band without one, and still does with any one of the olivines it
keeps left out; where one alone pays for it, the threshold and band are chosen as if that
crystal were not there (:meth:`_Tallies.lone_olivine`). The EDS tiles' IoU does not say
where between the last crystal dropped and the first kept an edge should fall: it falls
halfway, but no farther past the crystals dropped than their mean spacing in grey
(:func:`_best_band`).

A crystal with fewer than ``min_core_px`` interior pixels is too small to show zoning (the
groundmass's microlites of both minerals are unzoned) or to measure a spread on. With
``small_depth_px`` > 0 it counts as flat and is judged by its grey alone: dropped when the mean
over its pixels at least ``small_depth_px`` inside it (away from the rim the beam mixes; cracks
and holes left out) lies in the band. The fit turns this on where, with the threshold and band
chosen on the larger crystals, it raises the IoU on the EDS tiles. Small crystals are kept in
cards written before it existed (``small_depth_px`` 0), and so are those with fewer than
``MIN_SMALL_PX`` pixels that deep. (A band of their own, fitted on the EDS tiles' small
crystals, came out wider and dropped more small olivines: on the virtual SEM's `small`, seeds
0/1/2, it raised the IoU on unseen tiles less, see the closing note of 2026-12-07.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

__all__ = [
    "MIN_GAIN",
    "CheckFit",
    "CrystalCheck",
    "CrystalFeatures",
    "cleared",
    "crystal_features",
    "fit_crystal_check",
    "prepare",
    "smoothed",
]

DARK_FRACTION = 0.7  # of the median grey: cracks and holes, left out of a crystal's interior
MIN_GAIN = 0.005  # IoU against the EDS labels that the check must gain to be switched on
MIN_REACH_DN = 100.0  # the band's least reach past its outermost crystal: a mean's scatter
MIN_SMALL_PX = 3  # pixels at small_depth_px that a small crystal's mean grey is taken over
SMALL_DEPTH_PX = 1.5  # the fit's small_depth_px: pixels with every 8-neighbour in the crystal
_SPREAD_CANDIDATES = 64  # spread thresholds tried by the fit (quantiles of the judged crystals)
_PLATEAU_IOU = 0.001  # spread thresholds whose IoU is this close to the best count as as good
RIM_DEPTH_PX = 2.0  # a crystal's rim for the rim-core contrast: from this depth...
RIM_FRACTION = 0.4  # ...to this fraction of its largest depth
CORE_FRACTION = 0.7  # its core: deeper than this fraction of its largest depth
_NOISE_MARGIN = 2.0  # the least spread threshold, over the median spread of the crystals dropped


@dataclass(frozen=True, slots=True)
class CrystalCheck:
    """Drop predicted crystals whose interior BSE spread is below ``max_core_std_dn`` and whose
    interior mean grey lies in [``band_low_dn``, ``band_high_dn``] (0: the check is off) but
    not in its gap (``gap_low_dn``, ``gap_high_dn``) (none by default), and crystals too small
    for a spread whose mean grey ``small_depth_px`` inside them lies there (``small_depth_px``
    0: small crystals are kept)."""

    max_core_std_dn: float = 0.0
    smooth_sigma_px: float = 2.0
    core_depth_px: float = 3.0
    core_fraction: float = 0.3
    min_core_px: int = 100
    band_low_dn: float = -math.inf
    band_high_dn: float = math.inf
    small_depth_px: float = 0.0
    gap_low_dn: float = math.inf  # (gap_low_dn, gap_high_dn): kept inside the band
    gap_high_dn: float = -math.inf
    smooth_within: bool = False  # smoothed over the crystals' own pixels (older cards: all)
    rim_core: bool = False  # zoning also read as rim against core (older cards: spread alone)

    @classmethod
    def from_card(cls, values: dict[str, float]) -> CrystalCheck:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float]:
        """The card's form: an unbounded band edge is left out (JSON has no infinity)."""
        return {k: v for k, v in asdict(self).items() if math.isfinite(v)}

    def apply(self, grey: NDArray[np.number[Any]], mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """``mask`` without its crystals that the check drops."""
        if self.max_core_std_dn <= 0 or not mask.any():
            return mask
        features = crystal_features(grey, mask, self)
        out: NDArray[np.bool_] = mask & ~self.drops(features)[features.crystals]
        return out

    def drops(self, features: CrystalFeatures) -> NDArray[np.bool_]:
        """Per crystal (index 0: the background, never dropped): whether the check drops it."""
        flat = features.spread < self.max_core_std_dn
        if self.small_depth_px > 0:
            flat |= features.small
        band = (self.band_low_dn, self.band_high_dn, self.gap_low_dn, self.gap_high_dn)
        out: NDArray[np.bool_] = flat & _in_band(features.mean, *band)
        return out

    def describe(self) -> str:
        """The rule in words, for logs and the report."""
        if self.max_core_std_dn <= 0:
            return "off"
        band = ""
        if math.isfinite(self.band_low_dn) or math.isfinite(self.band_high_dn):
            band = f" whose interior mean BSE is {_band(self.band_low_dn, self.band_high_dn)} DN"
            if self.gap_low_dn < self.gap_high_dn:
                band += f" but not {_band(self.gap_low_dn, self.gap_high_dn)} DN"
        small = ""
        if self.small_depth_px > 0:
            small = (
                f"; crystals of fewer than {self.min_core_px} interior pixels count as flat"
                f" (their mean BSE taken {self.small_depth_px:g} px inside them)"
            )
        zoning = " and rim-to-core difference" if self.rim_core else ""
        return (
            f"crystals with interior BSE spread{zoning} below {self.max_core_std_dn:,.0f} DN"
            f"{band} dropped{small}"
        )


def _in_band(
    mean: NDArray[np.float64], low: float, high: float, gap_low: float, gap_high: float
) -> NDArray[np.bool_]:
    """Whether each mean grey lies in [low, high] but not in the gap (gap_low, gap_high)."""
    out: NDArray[np.bool_] = (
        (mean >= low) & (mean <= high) & ~((mean > gap_low) & (mean < gap_high))
    )
    return out


def _band(low: float, high: float) -> str:
    return (
        f"{f'{low:,.0f}' if math.isfinite(low) else 'any'}–"
        f"{f'{high:,.0f}' if math.isfinite(high) else 'any'}"
    )


@dataclass(frozen=True, slots=True)
class CrystalFeatures:
    """The connected crystals of a mask (0 = background) and, per crystal (index 0 and
    crystals too small to judge: spread +inf), the spread and mean of its interior BSE; for
    ``small`` crystals (judged by their grey alone), ``mean`` is over their pixels at least
    ``small_depth_px`` inside them."""

    crystals: NDArray[np.int32]
    spread: NDArray[np.float64]
    mean: NDArray[np.float64]
    small: NDArray[np.bool_]

    @property
    def judged(self) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = np.isfinite(self.spread)
        return out


def smoothed(grey: NDArray[np.number[Any]], sigma: float) -> NDArray[np.float32]:
    """The BSE smoothed by a Gaussian of ``sigma`` px, by normalised convolution: unscanned
    pixels (0 DN) do not darken the crystals beside them."""
    scanned = (grey > 0).astype(np.float32)
    weight = ndi.gaussian_filter(scanned, sigma)
    out: NDArray[np.float32] = ndi.gaussian_filter(np.asarray(grey, np.float32) * scanned, sigma)
    out /= np.maximum(weight, np.float32(1e-6))
    return out


def cleared(grey: NDArray[np.number[Any]]) -> NDArray[np.float32]:
    """The BSE with cracks and holes left out: pixels darker than ``DARK_FRACTION`` of the
    scanned pixels' median grey (resin, in a crystal), and their neighbours (the beam's blur
    darkens them too), set to 0 like unscanned ones, so that the interior's statistics and
    :func:`smoothed` leave them out. A crack is no zoning: a flat clinopyroxene crossed by
    cracks read as zoned (interior spread 2,500-4,400 DN on the virtual SEM's `small`)."""
    out = np.asarray(grey, np.float32)
    scanned = out > 0
    if not scanned.any():
        return out
    values = out[scanned]
    floor = DARK_FRACTION * float(np.median(values[:: max(1, values.size // 200_000)]))
    dark = ndi.binary_dilation(scanned & (out < floor))
    return np.where(dark, np.float32(0), out)


Prepared = tuple[NDArray[np.float32], NDArray[np.float32] | None]


def prepare(grey: NDArray[np.number[Any]], check: CrystalCheck) -> Prepared:
    """The BSE as ``check`` reads it: :func:`cleared`, and that smoothed over the whole image
    (None with ``smooth_within``: each crystal is smoothed over its own pixels, by
    :func:`crystal_features`)."""
    clear = cleared(grey)
    return clear, None if check.smooth_within else smoothed(clear, check.smooth_sigma_px)


def crystal_features(
    grey: NDArray[np.number[Any]],
    mask: NDArray[np.bool_],
    check: CrystalCheck,
    prepared: Prepared | None = None,
) -> CrystalFeatures:
    """Each connected crystal of ``mask`` measured over its interior: the pixels at least
    ``core_depth_px`` and ``core_fraction`` of its largest depth inside it, cracks and holes
    left out. The spread is taken on the smoothed BSE (with ``smooth_within``, smoothed over
    ``mask``'s pixels only), the mean on the BSE itself (smoothing would mix the surroundings
    into a small crystal's few interior pixels). A crystal of fewer
    than ``min_core_px`` interior pixels, with ``small_depth_px`` > 0 and at least
    ``MIN_SMALL_PX`` pixels that deep: ``small``, its mean over those. ``prepared``:
    :func:`prepare` of ``grey`` for ``check``, when already made."""
    crystals, n = ndi.label(mask)
    clear, smooth = prepared if prepared is not None else prepare(grey, check)
    if check.smooth_within:
        smooth = _smoothed_within(clear, mask, crystals, check.smooth_sigma_px)
    elif smooth is None:  # prepared for a check that smooths within
        smooth = smoothed(clear, check.smooth_sigma_px)
    depth, deepest = _depths(crystals, n)
    inside = np.full(n + 1, np.inf, np.float32)
    if n:
        inside[1:] = np.maximum(check.core_depth_px, check.core_fraction * deepest)
    core = (depth >= inside[crystals]) & (clear > 0)
    ids = crystals[core]
    values = smooth[core].astype(np.float64)
    count = np.bincount(ids, minlength=n + 1).astype(np.float64)
    total = np.bincount(ids, values, minlength=n + 1)
    squares = np.bincount(ids, values * values, minlength=n + 1)
    raw = np.bincount(ids, clear[core].astype(np.float64), minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        spread = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        level = raw / count
    too_small = count < check.min_core_px
    spread[too_small] = np.inf
    spread[0] = np.inf
    small = np.zeros(n + 1, bool)
    if check.small_depth_px > 0 and too_small[1:].any():
        shallow = (depth >= check.small_depth_px) & (clear > 0) & too_small[crystals]
        some = np.bincount(crystals[shallow], minlength=n + 1).astype(np.float64)
        small = too_small & (some >= MIN_SMALL_PX)  # never the background: no depth
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.where(
                small, np.bincount(crystals[shallow], clear[shallow], minlength=n + 1) / some, level
            )
    if check.rim_core and n:
        spread = np.maximum(spread, _rim_core(clear, mask, crystals, n, depth, deepest))
    return CrystalFeatures(crystals.astype(np.int32, copy=False), spread, level, small)


def _depths(
    crystals: NDArray[np.integer[Any]], n: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Each crystal pixel's Euclidean distance to the nearest pixel outside every crystal (0
    outside), and each crystal's largest (crystals 1..n), crystal by crystal on its box and
    one pixel around: the nearest outside pixel of a pixel lies within that (nearer than the
    box's nearest side), so the values are those of the whole image's transform, at a cost
    that follows the crystals' area."""
    depth = np.zeros(crystals.shape, np.float32)
    deepest = np.zeros(n, np.float32)  # as the whole-image transform gives them
    for index, box in enumerate(ndi.find_objects(crystals), start=1):
        if box is None:
            continue
        outer = _around(box, 1, crystals.shape)
        local = crystals[outer]
        own = local == index
        values = ndi.distance_transform_edt(local > 0)[own].astype(np.float32)
        depth[outer][own] = values
        deepest[index - 1] = values.max()
    return depth, deepest


def _around(box: tuple[slice, ...], margin: int, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` grown by ``margin`` pixels on every side, within ``shape``."""
    return tuple(
        slice(max(s.start - margin, 0), min(s.stop + margin, size))
        for s, size in zip(box, shape, strict=True)
    )


def _smoothed_within(
    clear: NDArray[np.float32],
    mask: NDArray[np.bool_],
    crystals: NDArray[np.integer[Any]],
    sigma: float,
) -> NDArray[np.float32]:
    """:func:`smoothed` of ``clear`` over ``mask``'s pixels only, on each crystal's pixels (0
    elsewhere): crystal by crystal, on a crop with the Gaussian's reach around it, so the cost
    follows the crystals' area, not the image's (the same values as on the whole image)."""
    out = np.zeros(mask.shape, np.float32)
    margin = math.ceil(4 * sigma) + 1  # the Gaussian's reach (scipy truncates at 4 σ)
    for index, box in enumerate(ndi.find_objects(crystals), start=1):
        if box is None:
            continue
        outer = _around(box, margin, mask.shape)
        own = crystals[outer] == index
        local = smoothed(np.where(mask[outer], clear[outer], np.float32(0)), sigma)
        out[outer][own] = local[own]
    return out


def _rim_core(
    clear: NDArray[np.float32],
    mask: NDArray[np.bool_],
    crystals: NDArray[np.integer[Any]],
    n: int,
    depth: NDArray[np.float32],
    deepest: NDArray[np.float32],
) -> NDArray[np.float64]:
    """Per crystal (index 0 too), the difference in mean BSE between its rim (``RIM_DEPTH_PX``
    to ``RIM_FRACTION`` of its largest depth inside it) and its core (deeper than
    ``CORE_FRACTION``), cracks and holes left out: zoning, read over many pixels (0 where
    either is empty)."""
    largest = np.concatenate([[1.0], np.maximum(deepest.astype(np.float64), 1.0)])
    scanned = mask & (clear > 0)  # over these pixels only, as 1-d arrays
    ids, d, grey = crystals[scanned], depth[scanned], clear[scanned].astype(np.float64)
    relative = d / largest[ids]
    rim = (d >= RIM_DEPTH_PX) & (relative < RIM_FRACTION)
    core = relative >= CORE_FRACTION
    out = np.zeros(n + 1, np.float64)
    rim_n = np.bincount(ids[rim], minlength=n + 1)
    core_n = np.bincount(ids[core], minlength=n + 1)
    both = (rim_n > 0) & (core_n > 0)
    rim_mean = np.bincount(ids[rim], grey[rim], minlength=n + 1)
    core_mean = np.bincount(ids[core], grey[core], minlength=n + 1)
    out[both] = np.abs(rim_mean[both] / rim_n[both] - core_mean[both] / core_n[both])
    return out


class CheckFit:
    """Tallies, tile by tile, what dropping each judged crystal would do to the IoU against
    the EDS labels; :meth:`result` then chooses the spread threshold and the grey band, and
    whether to judge the small crystals by that band too. The small crystals are measured as
    ``check`` says (by default, ``SMALL_DEPTH_PX`` inside them, and the spread smoothed within
    the crystals; with ``small_depth_px`` 0, not judged)."""

    def __init__(self, check: CrystalCheck | None = None) -> None:
        self.base = check or CrystalCheck(
            small_depth_px=SMALL_DEPTH_PX, smooth_within=True, rim_core=True
        )
        self.spreads: list[NDArray[np.float64]] = []
        self.means: list[NDArray[np.float64]] = []
        self.tps: list[NDArray[np.float64]] = []
        self.fps: list[NDArray[np.float64]] = []
        self.smalls: list[NDArray[np.bool_]] = []  # judged by the band alone (spread +inf)
        self.tp = self.fp = self.fn = 0.0

    def add(
        self,
        grey: NDArray[np.number[Any]],
        mask: NDArray[np.bool_],
        label: NDArray[np.bool_],
        known: NDArray[np.bool_],
        prepared: Prepared | None = None,
    ) -> None:
        """One tile: its BSE, the network's mask, the EDS olivine label, the labelled pixels
        (``prepared``: :func:`prepare` of the BSE, when already made)."""
        features = crystal_features(grey, mask, self.base, prepared)
        crystals, n = features.crystals, features.spread.size
        hit = crystals[mask & known & label]
        miss = crystals[mask & known & ~label]
        self.tp += hit.size
        self.fp += miss.size
        self.fn += float(np.count_nonzero(~mask & known & label))
        kept = features.judged | features.small
        self.spreads.append(features.spread[kept])
        self.means.append(features.mean[kept])
        self.tps.append(np.bincount(hit, minlength=n)[kept].astype(np.float64))
        self.fps.append(np.bincount(miss, minlength=n)[kept].astype(np.float64))
        self.smalls.append(features.small[kept])

    def _tallies(self) -> tuple[CrystalFeatures, NDArray[np.float64], NDArray[np.float64]]:
        """The crystals added, as features (no image), and their olivine and other pixels."""
        spread, mean, tps, fps = (
            np.concatenate(parts) if parts else np.empty(0)
            for parts in (self.spreads, self.means, self.tps, self.fps)
        )
        small = np.concatenate(self.smalls) if self.smalls else np.empty(0, bool)
        return CrystalFeatures(np.empty(0, np.int32), spread, mean, small), tps, fps

    def iou(self, check: CrystalCheck) -> float:
        """The IoU over the tiles added with ``check`` applied (one of the same judging)."""
        features, tps, fps = self._tallies()
        drop = check.drops(features) if check.max_core_std_dn > 0 else np.zeros(tps.size, bool)
        return _iou_dropping(drop, tps, fps, self.tp, self.tp + self.fp + self.fn)

    def result(self) -> tuple[CrystalCheck, dict[str, float]]:
        """The spread threshold and grey band that maximise the IoU over the tiles added (off
        where none gains ``MIN_GAIN``), small crystals judged by the band too where that raises
        it, and the IoU without and with them.

        Of the thresholds that do within ``_PLATEAU_IOU`` as well, the lowest that is at least
        ``_NOISE_MARGIN`` times the median spread of the crystals it drops (a flat crystal's
        spread is its noise: a look-alike off the EDS tiles may read a little more than the
        most of those on them; with none that high, the highest of them): a few EDS tiles
        leave a wide gap between the flat crystals to drop and the zoned ones to keep, and off
        them the two errors are unequal. The clinopyroxenes that weigh (the large ones) sit at
        the spread's noise floor, those above it are small; an olivine near the threshold can be
        a large phenocryst (an unzoned one merged with its neighbour, or with holes). On the
        virtual SEM's `small` (seeds 0-4), the middle of that gap dropped a 58,000-px olivine at
        441 DN (seed 4: unseen-tile IoU 0.59; with the lowest, 0.78), while the lowest kept
        at most 414 px more clinopyroxene on the other seeds."""
        features, tps, fps = self._tallies()
        spread, mean = features.spread, features.mean  # small crystals: spread +inf, never flat
        tallies = _Tallies(spread, mean, tps, fps, self.tp, self.tp + self.fp + self.fn)
        before = tallies.without
        best, gapped = tallies.fitted(gap=False), tallies.fitted(gap=True)
        if _gap_gains(best, gapped):
            lone = tallies.lone_olivine(gapped)
            if lone is None:
                best = gapped
            else:  # the gap rests on one olivine: the band fitted as if it were not there
                best = tallies.rescored(tallies.left_out(lone).fitted(gap=False))
        judged = int(np.count_nonzero(np.isfinite(spread)))
        scores = {"eds_iou_without": before, "eds_iou_with": best.iou, "judged": judged}
        if best.dropped == 0 or best.iou - before < MIN_GAIN:
            return replace(self.base, max_core_std_dn=0.0, small_depth_px=0.0), {
                **scores,
                "eds_iou_with": before,
                "dropped": 0,
                "small_dropped": 0,
            }
        check = replace(
            self.base,
            max_core_std_dn=best.threshold,
            band_low_dn=best.low,
            band_high_dn=best.high,
            gap_low_dn=best.gap_low,
            gap_high_dn=best.gap_high,
        )
        # the small crystals judged by that band too, where it gains
        alone = replace(check, small_depth_px=0.0)
        with_small, without_small = self.iou(check), self.iou(alone)
        if check.small_depth_px <= 0 or with_small <= without_small:
            return alone, {**scores, "dropped": best.dropped, "small_dropped": 0}
        small_dropped = int(np.count_nonzero(check.drops(features) & features.small))
        return check, {
            **scores,
            "eds_iou_with": with_small,
            "dropped": best.dropped + small_dropped,
            "small_dropped": small_dropped,
        }


class _Tallies(NamedTuple):
    """The EDS tiles' judged crystals (spread, mean grey, olivine and other pixels) and the
    tiles' olivine pixels found (``tp``) and union of olivine found and labelled."""

    spread: NDArray[np.float64]
    mean: NDArray[np.float64]
    tps: NDArray[np.float64]
    fps: NDArray[np.float64]
    tp: float
    union: float

    @property
    def without(self) -> float:
        """The IoU with no crystal dropped."""
        return self.tp / self.union if self.union > 0 else 0.0

    def fitted(self, gap: bool) -> _Choice:
        """The best spread threshold and band (with ``gap``, a band with a gap where two runs
        do better): of the thresholds within ``_PLATEAU_IOU`` of the best IoU, the lowest that
        clears the noise of the crystals it drops (:func:`_clears_noise`); the IoU without
        any where none does better."""
        spread, mean, tps, fps, tp, union = self
        before = self.without
        choices = [
            _best_band(spread < threshold, mean, tps, fps, tp, union, threshold, gap)
            for threshold in _spread_thresholds(spread)
        ]
        top = max((c.iou for c in choices), default=-math.inf)
        if top <= before:
            return _Choice(before, 0, 0, 0, 0)
        plateau = [c for c in choices if c.iou >= top - _PLATEAU_IOU]
        return next((c for c in plateau if _clears_noise(c, spread, mean)), plateau[-1])

    def lone_olivine(self, gapped: _Choice) -> int | None:
        """The olivine the band's gap rests on, if any: one of the flat olivines it keeps
        without which no gap gains ``MIN_GAIN``.

        A gap that one crystal pays for is fitted to that crystal, not to the session's
        olivine: on the virtual SEM's `small` (seed 0), a gap 49 DN wide around one flat
        olivine of the EDS tiles kept an 8,200-px clinopyroxene of unseen tiles and 36 px of
        olivine; with the band fitted as if that olivine were not there, the unseen-tile IoU
        rose from 0.856 to 0.880."""
        flat = self.spread < gapped.threshold
        inside = (self.mean > gapped.gap_low) & (self.mean < gapped.gap_high)
        kept = flat & inside & (self.tps > self.fps)
        for i in np.flatnonzero(kept)[np.argsort(-self.tps[kept])]:
            rest = self.left_out(int(i))
            if not _gap_gains(rest.fitted(gap=False), rest.fitted(gap=True)):
                return int(i)
        return None

    def left_out(self, i: int) -> _Tallies:
        """These tallies with crystal ``i`` left out of the tiles."""
        rest = np.arange(self.spread.size) != i
        tp, fp = float(self.tps[i]), float(self.fps[i])
        return _Tallies(
            self.spread[rest],
            self.mean[rest],
            self.tps[rest],
            self.fps[rest],
            self.tp - tp,
            self.union - tp - fp,
        )

    def rescored(self, choice: _Choice) -> _Choice:
        """``choice`` with its IoU and the crystals it drops counted over these tallies."""
        dropped = _dropped(choice, self.spread, self.mean)
        iou = _iou_dropping(dropped, self.tps, self.fps, self.tp, self.union)
        return replace(choice, iou=iou, dropped=int(dropped.sum()))


def _gap_gains(best: _Choice, gapped: _Choice) -> bool:
    """Whether the band with a gap gains ``MIN_GAIN`` over the best band without one."""
    return gapped.gap_low < gapped.gap_high and gapped.iou >= best.iou + MIN_GAIN


def _iou_dropping(
    dropped: NDArray[np.bool_],
    tps: NDArray[np.float64],
    fps: NDArray[np.float64],
    tp: float,
    union: float,
) -> float:
    """The IoU (TP − T) / (union − F) with the ``dropped`` crystals' pixels taken away."""
    rest = union - fps[dropped].sum()
    return float((tp - tps[dropped].sum()) / rest) if rest > 0 else 0.0


def _dropped(
    choice: _Choice, spread: NDArray[np.float64], mean: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """The crystals ``choice`` drops, as the rule applies (small crystals left to the rule)."""
    band = (choice.low, choice.high, choice.gap_low, choice.gap_high)
    out: NDArray[np.bool_] = (spread < choice.threshold) & _in_band(mean, *band)
    return out


def _clears_noise(choice: _Choice, spread: NDArray[np.float64], mean: NDArray[np.float64]) -> bool:
    """Whether ``choice``'s spread threshold is at least ``_NOISE_MARGIN`` times the median
    spread of the crystals it drops: a flat crystal's spread is its noise, and a look-alike
    off the EDS tiles reads a little more or less than those on them."""
    dropped = _dropped(choice, spread, mean)
    if not dropped.any():
        return True
    return choice.threshold >= _NOISE_MARGIN * float(np.median(spread[dropped]))


@dataclass(frozen=True, slots=True)
class _Choice:
    iou: float
    threshold: float
    low: float
    high: float
    dropped: int
    gap_low: float = math.inf
    gap_high: float = -math.inf


def _spread_thresholds(spread: NDArray[np.float64]) -> NDArray[np.float64]:
    """Spread thresholds worth trying: halfway between neighbouring distinct spreads, at most
    ``_SPREAD_CANDIDATES`` of them (quantiles), and one above all."""
    values = np.unique(spread[(spread > 0) & np.isfinite(spread)])
    if values.size == 0:
        return np.empty(0)
    cuts = np.concatenate([0.5 * (values[1:] + values[:-1]), [values[-1] * 1.1]])
    if cuts.size > _SPREAD_CANDIDATES:
        picks = np.linspace(0, cuts.size - 1, _SPREAD_CANDIDATES).round().astype(int)
        cuts = cuts[np.unique(picks)]
    return cuts


def _best_band(
    flat: NDArray[np.bool_],
    mean: NDArray[np.float64],
    tps: NDArray[np.float64],
    fps: NDArray[np.float64],
    tp: float,
    union: float,
    threshold: float,
    gap: bool = False,
) -> _Choice:
    """Among the crystals flatter than ``threshold``, the run of neighbours in mean grey whose
    dropping gives the highest IoU (TP − T) / (union − F), by Dinkelbach's iteration: for a
    trial IoU λ the best run maximises Σ(λ·f − t), a maximum-sum subarray; λ then rises to
    that run's IoU until it no longer does. With ``gap``, the two runs apart that do best (a
    band with a gap: an unzoned olivine amid the look-alikes' grey kept), where there are two.

    The edges fall halfway to the nearest flat crystals left out (unbounded where none is),
    but no farther beyond the outermost crystal of a run than the mean spacing of its
    crystals' means (its range over its number less one, at least ``MIN_REACH_DN``: how far,
    for an even spread, a sample of that many falls short of its population's edge). The EDS
    tiles' IoU is the same anywhere between; off them, a flat olivine wrongly dropped is often
    a large unzoned crystal (on the virtual SEM's `small`, seed 2: a 74,000-px phenocryst 1 DN
    inside a band edge set halfway), a clinopyroxene wrongly kept one of many smaller ones."""
    index = np.flatnonzero(flat & np.isfinite(mean))
    if index.size == 0 or union <= 0:
        return _Choice(-math.inf, threshold, -math.inf, math.inf, 0)
    # crystals of one mean grey go together: a band cannot fall between them
    m, group = np.unique(mean[index], return_inverse=True)
    t = np.bincount(group, tps[index], minlength=m.size)
    f = np.bincount(group, fps[index], minlength=m.size)
    lam, runs = tp / union, []
    for _ in range(50):
        trial_runs = _best_runs(np.asarray(lam * f - t, np.float64), gap)
        taken = sum(t[a:b].sum() for a, b in trial_runs)
        rest = union - sum(f[a:b].sum() for a, b in trial_runs)
        trial = (tp - taken) / rest if rest > 0 else 0.0
        if not trial_runs or trial <= lam + 1e-12:
            break
        lam, runs = trial, trial_runs
    if not runs:
        return _Choice(-math.inf, threshold, -math.inf, math.inf, 0)
    low, high, gap_low, gap_high = _band_edges(m, runs)
    dropped = flat & _in_band(mean, low, high, gap_low, gap_high)  # as the rule applies
    iou = _iou_dropping(dropped, tps, fps, tp, union)
    return _Choice(iou, threshold, low, high, int(dropped.sum()), gap_low, gap_high)


def _best_runs(values: NDArray[np.float64], two: bool) -> list[tuple[int, int]]:
    """The run [start, stop) of ``values`` with the largest positive sum, or (``two``) the
    two runs apart with it; none where no sum is positive."""
    if values.size == 0:
        return []
    if not two:
        prefix, lowest, gain = _run_sums(values)
        stop = int(np.argmax(gain)) + 1
        if gain[stop - 1] <= 0:
            return []
        return [(int(np.argmax(prefix[:stop] == lowest[stop - 1])), stop)]

    def best_before(v: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.maximum.accumulate(np.concatenate([[0.0], _run_sums(v)[2]]))

    # split where the best run before plus the best run after is largest
    split = int(np.argmax(best_before(values) + best_before(values[::-1])[::-1]))
    left = _best_runs(values[:split], two=False)
    right = [(a + split, b + split) for a, b in _best_runs(values[split:], two=False)]
    runs = left + right
    if len(runs) == 2 and runs[0][1] == runs[1][0]:  # side by side: one run
        runs = [(runs[0][0], runs[1][1])]
    return runs


def _run_sums(
    values: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The prefix sums of ``values``, their running minimum, and the sum of the best run
    stopping at each place."""
    prefix = np.concatenate([[0.0], np.cumsum(values)])
    lowest = np.minimum.accumulate(prefix)
    return prefix, lowest, prefix[1:] - lowest[:-1]


def _band_edges(
    m: NDArray[np.float64], runs: list[tuple[int, int]]
) -> tuple[float, float, float, float]:
    """The band's edges and its gap's (empty with one run) around ``runs`` of ``m``."""
    edges = [_edges(m, start, stop) for start, stop in runs]
    gap_low, gap_high = (edges[0][1], edges[1][0]) if len(edges) == 2 else (math.inf, -math.inf)
    return edges[0][0], edges[-1][1], gap_low, gap_high


def _edges(m: NDArray[np.float64], start: int, stop: int) -> tuple[float, float]:
    """The edges around the run m[start:stop] of distinct mean greys: halfway to the crystals
    left out, no farther than the run's reach beyond its outermost."""
    low = 0.5 * (m[start - 1] + m[start]) if start > 0 else -math.inf
    high = 0.5 * (m[stop - 1] + m[stop]) if stop < m.size else math.inf
    spacing = (m[stop - 1] - m[start]) / (stop - start - 1) if stop - start >= 2 else 0.0
    reach = max(float(spacing), MIN_REACH_DN)
    return max(low, float(m[start]) - reach), min(high, float(m[stop - 1]) + reach)


def fit_crystal_check(
    tiles: Iterable[
        tuple[NDArray[np.floating], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]
    ],
    check: CrystalCheck | None = None,
) -> tuple[CrystalCheck, dict[str, float]]:
    """The spread threshold and grey band that maximise the IoU of the checked masks against
    the EDS labels over the labelled pixels of the EDS tiles, and the IoU without and with
    them. ``tiles`` yields (BSE, the network's mask, EDS olivine label, labelled pixels) per
    tile, one at a time."""
    fit = CheckFit(check)
    for grey, mask, label, known in tiles:
        fit.add(grey, mask, label, known)
    return fit.result()
