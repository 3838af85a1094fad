"""The GDLS graph over sparse EDS points and its components (Juránek et al.).

Points are joined to their Delaunay neighbours (the Voronoi ridges between their cells); edges
longer than ``max_edge_factor`` × the sampling distance are dropped (the paper says 2×, the
authors' code keeps edges below 1.5×, the default here). An edge is cut where the BSE differs,
δ_b = |b_i − b_j| / full scale > τ_b, or the spectra differ, δ_z = ‖z_i − z_j‖ > τ_z (z: the
embeddings). The connected components of what is left are the segments' seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["PointGraph", "delaunay_edges", "merge_small", "point_components"]


@dataclass(frozen=True, slots=True)
class PointGraph:
    """Edges (i, j) between points, and the components left after cutting them."""

    edges: NDArray[np.int64]  # (E, 2), i < j: Delaunay neighbours within the length limit
    kept: NDArray[np.bool_]  # (E,): neither δ_b > τ_b nor δ_z > τ_z
    component: NDArray[np.int64]  # (N,): 0..K−1

    @property
    def count(self) -> int:
        return int(self.component.max()) + 1 if len(self.component) else 0


def delaunay_edges(
    points: NDArray[np.float64], sample_distance: float, max_edge_factor: float = 1.5
) -> NDArray[np.int64]:
    """Delaunay neighbour pairs (i < j) no longer than ``max_edge_factor × sample_distance``."""
    from scipy.spatial import Delaunay

    if len(points) < 3:
        return np.zeros((0, 2), np.int64)
    triangles = Delaunay(points, qhull_options="QJ").simplices
    pairs = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [0, 2]]])
    pairs = np.unique(np.sort(pairs, axis=1), axis=0).astype(np.int64)
    length = np.linalg.norm(points[pairs[:, 0]] - points[pairs[:, 1]], axis=1)
    short: NDArray[np.int64] = pairs[length < max_edge_factor * sample_distance]
    return short


def point_components(
    edges: NDArray[np.int64],
    bse: NDArray[np.float64],
    embeddings: NDArray[np.float32],
    tau_b: float,
    tau_z: float,
    full_scale: float = 65535.0,
) -> PointGraph:
    """Cut the edges where BSE or spectra differ; components of the rest."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(bse)
    i, j = edges[:, 0], edges[:, 1]
    delta_b = np.abs(bse[i] - bse[j]) / full_scale
    delta_z = np.linalg.norm(embeddings[i] - embeddings[j], axis=1)
    kept = (delta_b <= tau_b) & (delta_z <= tau_z)
    graph = coo_matrix((np.ones(int(kept.sum())), (i[kept], j[kept])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return PointGraph(edges, kept, component.astype(np.int64))


def merge_small(
    graph: PointGraph,
    bse: NDArray[np.float64],
    embeddings: NDArray[np.float32],
    tau_b: float,
    tau_z: float,
    min_points: int,
    full_scale: float = 65535.0,
) -> PointGraph:
    """Components of fewer than ``min_points`` points joined to the touching component most
    like them: the smallest mean δ_z/τ_z + δ_b/τ_b between the components' means.

    Low-count spectra are noisy: a point whose every edge is cut by noise alone is a segment of
    its own under the published rule. Merging such specks into their most similar neighbour
    keeps every segment the graph found at ``min_points`` or more and removes the specks."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    component = graph.component.copy()
    z = embeddings.astype(np.float64)
    b = np.asarray(bse, np.float64) / full_scale
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    for _ in range(64):
        count = int(component.max()) + 1
        sizes = np.bincount(component, minlength=count)
        mean_z = np.zeros((count, z.shape[1]))
        np.add.at(mean_z, component, z)
        mean_z /= np.maximum(sizes, 1)[:, None]
        mean_b = np.bincount(component, weights=b, minlength=count) / np.maximum(sizes, 1)
        a, c = component[i], component[j]
        between = a != c
        a, c = np.r_[a[between], c[between]], np.r_[c[between], a[between]]
        small = sizes[a] < min_points
        a, c = a[small], c[small]
        if not len(a):
            break
        cost = np.linalg.norm(mean_z[a] - mean_z[c], axis=1) / tau_z
        cost += np.abs(mean_b[a] - mean_b[c]) / tau_b
        order = np.lexsort((cost, a))
        first = np.r_[True, a[order][1:] != a[order][:-1]]
        pairs = (a[order][first], c[order][first])  # each small component and its choice
        joined = coo_matrix((np.ones(len(pairs[0])), pairs), shape=(count, count))
        _, group = connected_components(joined, directed=False)
        component = group[component]
    return PointGraph(graph.edges, graph.kept, component.astype(np.int64))
