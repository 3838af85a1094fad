"""Training-area advice: is the EDS acquired so far enough to train the olivine network?

EDS maps are slow to acquire (about five times a BSE tile). Leichter et al. (2022) found,
after the fact, that about a quarter of the section's area was enough; semlive says so during
the session. Each time the network is trained, it is trained again on nested subsets of the
same training tiles (a quarter, a half) and every model is scored on the same held-out tiles.
The points (labelled area, validation IoU) are fitted with the usual learning curve
IoU(A) = a − b·A^(−c) (c from a grid, a and b by least squares), and the gain predicted from
doubling the labelled area, IoU(2A) − IoU(A), is compared with ``pipeline.advice_target_gain``
together with its uncertainty: the one-sided 80 % bound of the most pessimistic curve the
points do not rule out (a retrained network's IoU scatters by about a point, so three or four
points leave the exponent loose, and the advice errs towards acquiring more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Advice", "LearningCurve", "advice_subsets", "advise", "fit_learning_curve"]

_EXPONENTS = np.round(np.arange(0.2, 1.01, 0.05), 3)  # learning curves of segmentation
_Z80 = 0.8416  # one-sided 80 % normal quantile


def advice_subsets(tiles: int, with_all: bool = True) -> list[int]:
    """How many of ``tiles`` training tiles (the first, in acquisition order) each training of
    one advice takes: a quarter, a half, and all of them (``with_all``; without it, when the
    training on all of them is already done), each size once."""
    sizes = {max(1, round(share * tiles)) for share in (0.25, 0.5)} - {tiles}
    return sorted(sizes | {tiles}) if with_all else sorted(sizes)


@dataclass(frozen=True, slots=True)
class LearningCurve:
    """IoU(A) = a − b·A^(−c), with A in labelled pixels."""

    a: float
    b: float
    c: float
    residual: float  # RMS of the fit (IoU)
    b_se: float  # standard error of b (the gain scales with it)

    def iou(self, area: ArrayLike) -> Any:
        return self.a - self.b * np.asarray(area, np.float64) ** -self.c

    def doubling_gain(self, area: float) -> tuple[float, float]:
        """IoU(2A) − IoU(A) and its standard error."""
        factor = area**-self.c * (1 - 2.0**-self.c)
        return self.b * factor, self.b_se * factor


def _fit_at(x: Any, y: Any, c: float, noise: float) -> tuple[LearningCurve, float]:
    """a and b by least squares at a fixed exponent c; the curve and its sum of squares."""
    z = x**-c
    design = np.stack([np.ones_like(x), -z], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    a, b = float(coef[0]), max(float(coef[1]), 0.0)  # the curve rises or stays flat
    sse = float(((y - (a - b * z)) ** 2).sum())
    sigma2 = max(sse / max(len(x) - 2, 1), noise**2)  # a few points may fit exactly
    spread = float(((z - z.mean()) ** 2).sum())
    b_se = math.sqrt(sigma2 / spread) if spread > 0 else float("inf")
    return LearningCurve(a, b, c, math.sqrt(sse / len(x)), b_se), sse


def fit_learning_curve(
    area: ArrayLike, iou: ArrayLike, noise: float = 0.01
) -> tuple[LearningCurve, list[LearningCurve]]:
    """The learning curve through (labelled area, IoU) points (two or more areas), and every
    curve whose exponent the points do not rule out (its sum of squares within
    1.64·σ² of the best, σ at least ``noise``: how much the IoU of a retrained network
    scatters)."""
    x = np.asarray(area, np.float64)
    y = np.asarray(iou, np.float64)
    if len(np.unique(x)) < 2:
        raise ValueError(f"a learning curve needs two or more areas, got {x.tolist()}")
    fits = [_fit_at(x, y, float(c), noise) for c in _EXPONENTS]
    best, best_sse = min(fits, key=lambda f: f[1])
    sigma2 = max(best_sse / max(len(x) - 2, 1), noise**2)
    plausible = [curve for curve, sse in fits if sse <= best_sse + 1.64 * sigma2]
    return best, plausible


@dataclass(frozen=True, slots=True)
class Advice:
    enough: bool
    message: str
    gain: float  # predicted IoU gain from doubling the labelled area
    gain_upper: float  # its one-sided 80 % upper bound
    confidence: float  # probability that the gain is below the target
    labelled_px: int
    area_fraction: float | None  # labelled tiles / planned tiles
    curve: list[dict[str, float]]  # the measured points

    def as_dict(self) -> dict[str, Any]:
        return {
            "enough": self.enough,
            "verdict": "enough" if self.enough else "keep acquiring EDS",
            "message": self.message,
            "gain": round(self.gain, 5),
            "gain_upper": round(self.gain_upper, 5),
            "confidence": round(self.confidence, 3),
            "labelled_px": self.labelled_px,
            "area_fraction": None if self.area_fraction is None else round(self.area_fraction, 4),
            "curve": self.curve,
        }


def advise(
    points: list[dict[str, float]],
    labelled_px: int,
    target_gain: float,
    area_fraction: float | None = None,
    noise: float = 0.01,
) -> Advice:
    """The advice from measured points ``{"labelled_px", "iou"}`` at the current area: enough
    when even the most pessimistic plausible curve predicts, at 80 % confidence, less than
    ``target_gain`` from doubling the area."""
    best, plausible = fit_learning_curve(
        [p["labelled_px"] for p in points], [p["iou"] for p in points], noise
    )
    gain, _se = best.doubling_gain(float(labelled_px))
    bounds = [(g, s) for g, s in (c.doubling_gain(float(labelled_px)) for c in plausible)]
    upper = max(g + _Z80 * s for g, s in bounds)
    worst_gain, worst_se = max(bounds, key=lambda b: b[0] + _Z80 * b[1])
    confidence = 0.5 * (1 + math.erf((target_gain - worst_gain) / (max(worst_se, 1e-9) * 2**0.5)))
    enough = upper < target_gain
    where = "" if area_fraction is None else f", {area_fraction:.0%} of the planned tiles"
    points_text = f"{100 * gain:.1f} IoU points (80 % bound {100 * upper:.1f})"
    if enough:
        message = (
            f"enough EDS: doubling the labelled area ({labelled_px / 1e6:.2f} Mpx{where}) is "
            f"predicted to gain {points_text}, below {100 * target_gain:.1f}; "
            f"{confidence:.0%} confident — BSE alone can do the rest"
        )
    else:
        message = (
            f"keep acquiring EDS: doubling the labelled area ({labelled_px / 1e6:.2f} Mpx{where}) "
            f"is predicted to gain {points_text}; the target is below {100 * target_gain:.1f}"
        )
    return Advice(enough, message, gain, upper, confidence, labelled_px, area_fraction, points)
