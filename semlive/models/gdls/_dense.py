"""Dense labelling: every pixel of the field given the segment of the EDS points' components.

Two methods, both seeded by the components of :mod:`._graph` at the points' pixels; pixels
farther than ``sample_distance`` from every point stay unlabelled (0), as in the authors' code.

* ``"watershed"`` (the default): a marker watershed of the BSE gradient magnitude, grown from
  the points, so boundaries between segments follow BSE edges and, where the BSE is flat, fall
  between the points of different segments. One pass whatever the number of segments.
* ``"random_walker"`` (the published reference, as the authors' code does it): the components
  are greedily coloured so that touching components differ (a handful of colours), a random
  walker (scikit-image, ``mode='bf'``, beta 0.01, on BSE/65536·10) assigns every pixel a colour,
  and each colour's regions are split again by 4-connected labelling (touching components never
  share a colour, so they come apart again). Its cost grows with pixels × colours, and its weak
  edge weighting puts boundaries between the points rather than on the BSE edges.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["DENSE_METHODS", "dense_labels", "greedy_colouring"]

DENSE_METHODS = ("watershed", "random_walker")


def dense_labels(
    bse: NDArray[np.floating] | NDArray[np.integer],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    component: NDArray[np.int64],
    sample_distance: float,
    method: Literal["watershed", "random_walker"] = "watershed",
    edges: NDArray[np.int64] | None = None,
) -> NDArray[np.int32]:
    """Segment labels 1..K for every pixel within ``sample_distance`` of a point, else 0."""
    from scipy.ndimage import distance_transform_edt

    image = np.asarray(bse, np.float64)
    near = np.ones(image.shape, bool)
    near[rows, cols] = False
    reach = distance_transform_edt(near) <= sample_distance
    if method == "watershed":
        return _watershed(image, rows, cols, component, reach)
    if method == "random_walker":
        if edges is None:
            raise ValueError("the random walker needs the points' edges to colour components")
        return _random_walker(image, rows, cols, component, reach, edges)
    raise ValueError(f"unknown dense method {method!r}; expected one of {DENSE_METHODS}")


def _watershed(
    image: NDArray[np.float64],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    component: NDArray[np.int64],
    reach: NDArray[np.bool_],
) -> NDArray[np.int32]:
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    markers = np.zeros(image.shape, np.int32)
    markers[rows, cols] = component + 1
    gradient = sobel(image)
    out: NDArray[np.int32] = watershed(gradient, markers, mask=reach).astype(np.int32)
    return out


def greedy_colouring(n: int, edges: NDArray[np.int64]) -> NDArray[np.int64]:
    """Colours 0..C−1 of ``n`` nodes such that the ends of every edge differ (largest degree
    first, each node the smallest colour its coloured neighbours leave free)."""
    neighbours: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges.tolist():
        if a != b:
            neighbours[a].add(b)
            neighbours[b].add(a)
    colour = np.full(n, -1, np.int64)
    for node in sorted(range(n), key=lambda k: -len(neighbours[k])):
        taken = {int(colour[m]) for m in neighbours[node] if colour[m] >= 0}
        c = 0
        while c in taken:
            c += 1
        colour[node] = c
    return colour


def _random_walker(
    image: NDArray[np.float64],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    component: NDArray[np.int64],
    reach: NDArray[np.bool_],
    edges: NDArray[np.int64],
) -> NDArray[np.int32]:
    from scipy.ndimage import label
    from skimage.segmentation import random_walker

    # components touch where a Delaunay edge joins them (cut edges included)
    a, b = component[edges[:, 0]], component[edges[:, 1]]
    touching = np.unique(np.stack([a[a != b], b[a != b]], axis=1), axis=0)
    colour = greedy_colouring(int(component.max()) + 1, touching)
    markers = np.zeros(image.shape, np.int32)
    markers[~reach] = -1  # inactive
    markers[rows, cols] = colour[component] + 1
    data = image / 65536.0 * 10.0
    colours = np.unique(colour).size
    if colours == 1:
        painted = np.where(reach, 1, 0).astype(np.int32)
    else:
        painted = random_walker(data, markers, beta=0.01, mode="bf")
    out = np.zeros(image.shape, np.int32)
    total = 0
    for c in range(1, colours + 1):
        regions, n = label((painted == c) & reach)
        out[regions > 0] = regions[regions > 0] + total
        total += n
    return out
