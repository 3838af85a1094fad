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

__all__ = ["MIN_GAIN", "CrystalCheck", "crystal_spreads", "fit_crystal_check"]

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


def crystal_spreads(
    grey: NDArray[np.floating], mask: NDArray[np.bool_], check: CrystalCheck
) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Connected crystals of ``mask`` (0 = background) and each one's interior BSE spread
    (index 0 and crystals too small to judge: +inf)."""
    crystals, n = ndi.label(mask)
    scanned = (grey > 0).astype(np.float32)
    # normalised convolution: unscanned pixels (0 DN) do not darken the crystals beside them
    sigma = check.smooth_sigma_px
    weight = ndi.gaussian_filter(scanned, sigma)
    smooth = ndi.gaussian_filter(np.asarray(grey, np.float32) * scanned, sigma)
    smooth /= np.maximum(weight, np.float32(1e-6))
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


def fit_crystal_check(
    tiles: Iterable[
        tuple[NDArray[np.floating], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.bool_]]
    ],
    check: CrystalCheck | None = None,
) -> tuple[CrystalCheck, dict[str, float]]:
    """The threshold that maximises the IoU of the checked masks against the EDS labels over
    the labelled pixels of the EDS tiles, and the IoU without and with it. ``tiles`` yields
    (BSE, the network's mask, EDS olivine label, labelled pixels) per tile, one at a time."""
    base = check or CrystalCheck()
    spreads: list[NDArray[np.float64]] = []
    tps: list[NDArray[np.float64]] = []
    fps: list[NDArray[np.float64]] = []
    tp = fp = fn = 0.0
    for grey, mask, label, seen in tiles:
        crystals, spread = crystal_spreads(grey, mask, base)
        n = spread.size
        hit = crystals[mask & seen & label]
        miss = crystals[mask & seen & ~label]
        tp += hit.size
        fp += miss.size
        fn += float(np.count_nonzero(~mask & seen & label))
        judged = np.isfinite(spread)
        spreads.append(spread[judged])
        tps.append(np.bincount(hit, minlength=n)[judged].astype(np.float64))
        fps.append(np.bincount(miss, minlength=n)[judged].astype(np.float64))
    spread = np.concatenate(spreads) if spreads else np.empty(0)
    order = np.argsort(spread, kind="stable")
    spread = spread[order]
    lost = np.concatenate([[0.0], np.cumsum(np.concatenate(tps)[order])]) if tps else np.zeros(1)
    cut = np.concatenate([[0.0], np.cumsum(np.concatenate(fps)[order])]) if fps else np.zeros(1)
    # dropping the k flattest crystals: tp - lost[k], fp - cut[k], fn + lost[k]
    union = tp + fp + fn - cut
    iou = np.divide(tp - lost, union, out=np.zeros_like(union), where=union > 0)
    # a threshold can only fall between two different spreads (ties go together), above 0
    between = np.ones(iou.size, bool)
    between[1:-1] = spread[1:] > spread[:-1]
    between[1:] &= spread > 0
    iou[~between] = -np.inf
    iou[0] = iou[0] if np.isfinite(iou[0]) else 0.0
    k = int(np.argmax(iou))
    scores = {"eds_iou_without": float(iou[0]), "eds_iou_with": float(iou[k]), "judged": len(order)}
    if k == 0 or iou[k] - iou[0] < MIN_GAIN:
        return replace(base, max_core_std_dn=0.0), {
            **scores,
            "eds_iou_with": float(iou[0]),
            "dropped": 0,
        }
    above = spread[k] if k < spread.size else spread[k - 1] * 1.1
    threshold = float(0.5 * (spread[k - 1] + above))
    return replace(base, max_core_std_dn=threshold), {**scores, "dropped": k}
