"""Segmentation metrics as Leichter et al. (2022) define them.

IoU = TP / (TP + FP + FN) of the positive class; overall accuracy OA = (TP + TN) / N. Counts
are kept as a :class:`Confusion` so that per-region figures add up to the overall one exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Confusion", "confusion"]


@dataclass(frozen=True, slots=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def pixels(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        union = self.tp + self.fp + self.fn
        return float(self.tp / union) if union else float("nan")

    @property
    def overall_accuracy(self) -> float:
        return float((self.tp + self.tn) / self.pixels) if self.pixels else float("nan")

    def as_dict(self) -> dict[str, float | int]:
        return {
            "iou": self.iou,
            "overall_accuracy": self.overall_accuracy,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def confusion(
    predicted: NDArray[np.bool_], truth: NDArray[np.bool_], valid: NDArray[np.bool_] | None = None
) -> Confusion:
    """Pixel counts of a binary prediction against the truth, over ``valid`` pixels."""
    p, t = np.asarray(predicted, bool), np.asarray(truth, bool)
    if valid is not None:
        p, t = p[valid], t[valid]
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p & ~t))
    fn = int(np.count_nonzero(~p & t))
    return Confusion(tp, fp, fn, int(p.size) - tp - fp - fn)
