"""The crystal check: predicted crystals whose interior BSE is too flat for an olivine.

Clinopyroxene's BSE grey level lies inside olivine's range, so a network that sees a patch of
it often cannot tell the two apart pixel by pixel. The crystals differ as wholes: olivine
phenocrysts are zoned (their grey level changes from core to rim as Fe/Mg does), augite much
less. The check measures each connected crystal of the network's mask by the spread of its
interior BSE (the standard deviation of the Gaussian-smoothed grey level over the pixels at
least ``core_depth_px`` and ``core_fraction`` of the crystal's largest depth inside it: away
from the rim, where the mask's edge and the beam's blur mix the neighbours in) and drops
crystals flatter than a threshold.

The threshold is not set by hand: it is chosen on the session's own EDS tiles, where the EDS
labels say which predicted crystals are olivine, as the one that maximises the IoU against those
labels (the same way ``dlth`` is chosen). Where no threshold gains at least
``MIN_GAIN`` IoU there, the check stays off. Crystals with fewer than ``min_core_px`` interior
pixels (microlites, whose zoning cannot be seen) are always kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

__all__ = [
    "MIN_GAIN",
    "CheckFit",
    "CrystalCheck",
    "crystal_spreads",
    "fit_crystal_check",
    "smoothed",
]

MIN_GAIN = 0.005  # IoU against the EDS labels that the check must gain to be switched on


@dataclass(frozen=True, slots=True)
class CrystalCheck:
    """Drop predicted crystals whose interior BSE spread is below ``max_core_std_dn``
    (0: the check is off)."""

    max_core_std_dn: float = 0.0
    smooth_sigma_px: float = 2.0
    core_depth_px: float = 3.0
    core_fraction: float = 0.3
    min_core_px: int = 100

    @classmethod
    def from_card(cls, values: dict[str, float]) -> CrystalCheck:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def apply(self, grey: NDArray[np.floating], mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """``mask`` without its crystals flatter than the threshold."""
        if self.max_core_std_dn <= 0 or not mask.any():
            return mask
        crystals, spread = crystal_spreads(grey, mask, self)
        flat = spread < self.max_core_std_dn
        out: NDArray[np.bool_] = mask & ~flat[crystals]
        return out


def smoothed(grey: NDArray[np.floating], sigma: float) -> NDArray[np.float32]:
    """The BSE smoothed by a Gaussian of ``sigma`` px, by normalised convolution: unscanned
    pixels (0 DN) do not darken the crystals beside them."""
    scanned = (grey > 0).astype(np.float32)
    weight = ndi.gaussian_filter(scanned, sigma)
    out: NDArray[np.float32] = ndi.gaussian_filter(np.asarray(grey, np.float32) * scanned, sigma)
    out /= np.maximum(weight, np.float32(1e-6))
    return out


def crystal_spreads(
    grey: NDArray[np.floating],
    mask: NDArray[np.bool_],
    check: CrystalCheck,
    smooth: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Connected crystals of ``mask`` (0 = background) and each one's interior BSE spread
    (index 0 and crystals too small to judge: +inf); ``smooth``: :func:`smoothed` ``grey``,
    when already made."""
    crystals, n = ndi.label(mask)
    if smooth is None:
        smooth = smoothed(grey, check.smooth_sigma_px)
    depth = ndi.distance_transform_edt(mask, return_indices=False).astype(np.float32)
    inside = np.full(n + 1, np.inf, np.float32)
    if n:
        deepest = ndi.maximum(depth, crystals, np.arange(1, n + 1))
        inside[1:] = np.maximum(check.core_depth_px, check.core_fraction * np.asarray(deepest))
    core = depth >= inside[crystals]
    ids = crystals[core]
    values = smooth[core].astype(np.float64)
    count = np.bincount(ids, minlength=n + 1).astype(np.float64)
    total = np.bincount(ids, values, minlength=n + 1)
    squares = np.bincount(ids, values * values, minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        spread = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    spread[count < check.min_core_px] = np.inf
    spread[0] = np.inf
    return crystals, spread


class CheckFit:
    """Tallies, tile by tile, what dropping each judged crystal would do to the IoU against
    the EDS labels; :meth:`result` then chooses the threshold."""

    def __init__(self, check: CrystalCheck | None = None) -> None:
        self.base = check or CrystalCheck()
        self.spreads: list[NDArray[np.float64]] = []
        self.tps: list[NDArray[np.float64]] = []
        self.fps: list[NDArray[np.float64]] = []
        self.tp = self.fp = self.fn = 0.0

    def add(
        self,
        grey: NDArray[np.floating],
        mask: NDArray[np.bool_],
        label: NDArray[np.bool_],
        known: NDArray[np.bool_],
        smooth: NDArray[np.float32] | None = None,
    ) -> None:
        """One tile: its BSE, the network's mask, the EDS olivine label, the labelled pixels."""
        crystals, spread = crystal_spreads(grey, mask, self.base, smooth)
        n = spread.size
        hit = crystals[mask & known & label]
        miss = crystals[mask & known & ~label]
        self.tp += hit.size
        self.fp += miss.size
        self.fn += float(np.count_nonzero(~mask & known & label))
        judged = np.isfinite(spread)
        self.spreads.append(spread[judged])
        self.tps.append(np.bincount(hit, minlength=n)[judged].astype(np.float64))
        self.fps.append(np.bincount(miss, minlength=n)[judged].astype(np.float64))

    def result(self) -> tuple[CrystalCheck, dict[str, float]]:
        """The threshold that maximises the IoU over the tiles added (off where none gains
        ``MIN_GAIN``), and the IoU without and with it."""
        tp, fp, fn, base = self.tp, self.fp, self.fn, self.base
        spread = np.concatenate(self.spreads) if self.spreads else np.empty(0)
        order = np.argsort(spread, kind="stable")
        spread = spread[order]
        tps = np.concatenate(self.tps) if self.tps else np.empty(0)
        fps = np.concatenate(self.fps) if self.fps else np.empty(0)
        lost = np.concatenate([[0.0], np.cumsum(tps[order])])
        cut = np.concatenate([[0.0], np.cumsum(fps[order])])
        # dropping the k flattest crystals: tp - lost[k], fp - cut[k], fn + lost[k]
        union = tp + fp + fn - cut
        iou = np.divide(tp - lost, union, out=np.zeros_like(union), where=union > 0)
        # a threshold can only fall between two different spreads (ties go together), above 0
        between = np.ones(iou.size, bool)
        between[1:-1] = spread[1:] > spread[:-1]
        between[1:] &= spread > 0
        iou[~between] = -np.inf
        k = int(np.argmax(iou))
        scores = {
            "eds_iou_without": float(iou[0]),
            "eds_iou_with": float(iou[k]),
            "judged": len(order),
        }
        if k == 0 or iou[k] - iou[0] < MIN_GAIN:
            return replace(base, max_core_std_dn=0.0), {
                **scores,
                "eds_iou_with": float(iou[0]),
                "dropped": 0,
            }
        above = spread[k] if k < spread.size else spread[k - 1] * 1.1
        threshold = float(0.5 * (spread[k - 1] + above))
        return replace(base, max_core_std_dn=threshold), {**scores, "dropped": k}


def fit_crystal_check(
    tiles: Iterable[
        tuple[NDArray[np.floating], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]
    ],
    check: CrystalCheck | None = None,
) -> tuple[CrystalCheck, dict[str, float]]:
    """The threshold that maximises the IoU of the checked masks against the EDS labels over
    the labelled pixels of the EDS tiles, and the IoU without and with it. ``tiles`` yields
    (BSE, the network's mask, EDS olivine label, labelled pixels) per tile, one at a time."""
    fit = CheckFit(check)
    for grey, mask, label, known in tiles:
        fit.add(grey, mask, label, known)
    return fit.result()
