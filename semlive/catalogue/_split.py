"""Touching crystals: one olivine component split into crystals where its outline pinches.

Two crystals that grew against each other form one connected component of the mask, and the
outline of the pair narrows where they meet. The component is cut by a watershed of its
distance transform from the maxima that stand ``h`` pixels above their surroundings; a cut is
kept only where it is a neck: shorter than ``neck_ratio`` times the width (twice the largest
inscribed radius) of the thinner side, and each side a crystal in its own right (larger than
the minimum area). Cuts that run across a single crystal (an elongated prism, a crystal with a
crack filled in) are about as long as the crystal is wide, so they are undone.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["split_touching"]


def split_touching(
    filled: NDArray[np.bool_],
    min_px: float,
    neck_ratio: float,
    h_px: float = 1.5,
    distance: NDArray[np.float64] | None = None,
) -> NDArray[np.int32]:
    """Labels 1..n of the crystals inside ``filled`` (n = 1 when nothing is split).

    ``distance``: the distance (px) of each pixel to the outline, when the caller has it.
    """
    from scipy.ndimage import distance_transform_edt, label, maximum_filter
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    single = filled.astype(np.int32)
    if filled.sum() < 2 * min_px:
        return single
    d = distance if distance is not None else distance_transform_edt(np.pad(filled, 1))[1:-1, 1:-1]
    eight = np.ones((3, 3), bool)
    # every h-maximum holds a plateau of local maxima; with one plateau there is one crystal
    # (a cheap test that spares most compact crystals the reconstruction below)
    if label((d == maximum_filter(d, footprint=eight)) & filled, eight)[1] < 2:
        return single
    peaks = h_maxima(d, h_px).astype(bool) & filled
    markers, n = label(peaks, eight)
    if n < 2:
        return single
    parts: NDArray[np.int32] = watershed(-d, markers, mask=filled, connectivity=1).astype(np.int32)
    while (merge := _not_necks(parts, d, min_px, neck_ratio)) is not None:
        parts = merge[parts]
    _, relabelled = np.unique(parts, return_inverse=True)  # 0 stays 0: filled has a background
    out: NDArray[np.int32] = relabelled.reshape(parts.shape).astype(np.int32)
    if not (~filled).any():
        out += 1
    return out


def _not_necks(
    parts: NDArray[np.int32], d: NDArray[np.float64], min_px: float, neck_ratio: float
) -> NDArray[np.int32] | None:
    """A relabelling that merges every pair of adjacent parts whose cut is not a neck (or one
    side of which is too small to be a crystal); None when every cut is a neck."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(parts.max())
    sizes = np.bincount(parts.ravel(), minlength=n + 1)
    radius = np.zeros(n + 1)
    np.maximum.at(radius, parts.ravel(), d.ravel())
    keys = []
    for a, b in ((parts[1:, :], parts[:-1, :]), (parts[:, 1:], parts[:, :-1])):
        cut = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[cut], b[cut]), np.maximum(a[cut], b[cut])
        keys.append(lo.astype(np.int64) * (n + 1) + hi)
    pairs, contact = np.unique(np.concatenate(keys), return_counts=True)
    lo, hi = pairs // (n + 1), pairs % (n + 1)
    width = 2 * np.minimum(radius[lo], radius[hi])
    merge = (contact > neck_ratio * width) | (np.minimum(sizes[lo], sizes[hi]) <= min_px)
    if not merge.any():
        return None
    graph = coo_matrix((np.ones(int(merge.sum())), (lo[merge], hi[merge])), shape=(n + 1, n + 1))
    _, group = connected_components(graph, directed=False)
    # part 0 (background) keeps label 0; the others take their group's number + 1
    out = np.asarray(group, np.int32) + 1
    out[0] = 0
    return out
