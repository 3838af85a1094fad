"""Segmentation against ground truth, as Stutz et al. (2018) define the measures GDLS reports.

Only valid pixels count (``valid``; by default, pixels labelled in both images). Segments are
the labels > 0 of the segmentation, truth regions the labels > 0 of the truth.

* ASA, achievable segmentation accuracy: each segment given its best truth region, the share of
  pixels then right (1 is best).
* UE, undersegmentation error (Neubert and Protzel's form): for each truth region and each
  segment overlapping it, the smaller of the overlap and the segment's part outside the region,
  summed over all and divided by the pixels (0 is best).
* Boundary recall and precision: truth boundary pixels within ``tolerance_px`` of a segment
  boundary, and segment boundary pixels within ``tolerance_px`` of a truth boundary.
* K: the number of segments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["segmentation_scores"]


def segmentation_scores(
    segments: NDArray[np.integer],
    truth: NDArray[np.integer],
    valid: NDArray[np.bool_] | None = None,
    tolerance_px: int = 2,
) -> dict[str, Any]:
    from scipy.sparse import coo_matrix

    valid = (segments > 0) & (truth > 0) if valid is None else valid & (segments > 0) & (truth > 0)
    s = segments[valid].astype(np.int64)
    t = truth[valid].astype(np.int64)
    n = int(valid.sum())
    shape = (int(s.max(initial=0)) + 1, int(t.max(initial=0)) + 1)
    overlap = coo_matrix((np.ones(n), (s, t)), shape=shape).tocsr()  # segment × truth pixels
    segment_size = np.asarray(overlap.sum(axis=1)).ravel()
    asa = float(overlap.max(axis=1).toarray().sum()) / n if n else float("nan")
    coo = overlap.tocoo()
    outside = segment_size[coo.row] - coo.data
    ue = float(np.minimum(coo.data, outside).sum()) / n if n else float("nan")
    seg_edge = _boundary(segments) & valid
    true_edge = _boundary(truth) & valid
    recall = _within(true_edge, seg_edge, tolerance_px)
    precision = _within(seg_edge, true_edge, tolerance_px)
    return {
        "asa": asa,
        "undersegmentation_error": ue,
        "boundary_recall": recall,
        "boundary_precision": precision,
        "segments": int(np.unique(s).size),
        "pixels": n,
    }


def _boundary(labels: NDArray[np.integer]) -> NDArray[np.bool_]:
    """Pixels with a 4-neighbour of another label."""
    edge = np.zeros(labels.shape, bool)
    down = labels[1:, :] != labels[:-1, :]
    right = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    edge[:, 1:] |= right
    edge[:, :-1] |= right
    return edge


def _within(source: NDArray[np.bool_], target: NDArray[np.bool_], tolerance: int) -> float:
    """Share of ``source`` pixels within ``tolerance`` (Chebyshev) of a ``target`` pixel."""
    from scipy.ndimage import binary_dilation

    if not source.any():
        return float("nan")
    if not target.any():
        return 0.0
    near = binary_dilation(target, np.ones((2 * tolerance + 1,) * 2, bool))
    return float((source & near).sum() / source.sum())
