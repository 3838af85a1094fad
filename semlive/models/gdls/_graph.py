"""The GDLS graph over sparse EDS points and its components (Juránek et al.).

Points are joined to their Delaunay neighbours (the Voronoi ridges between their cells); edges
longer than ``max_edge_factor`` × the sampling distance are dropped (the paper says 2×, the
authors' code keeps edges below 1.5×, the default here). An edge is cut where the BSE differs,
δ_b = |b_i − b_j| / full scale > τ_b, or the spectra differ, δ_z = ‖z_i − z_j‖ > τ_z (z: the
embeddings). The connected components of what is left are the segments' seeds.

One low-count spectrum says little, so semlive cuts the graph finely (a small τ_z), joins specks
to their most similar neighbour (:func:`merge_small`) and then merges touching segments whose
*summed* spectra are statistically alike (:func:`merge_regions`): a G-test of homogeneity on the
sums, the test a TIMA-style phase search applies to high-count spectra. Sums of hundreds of
spectra tell apart zones that single spectra cannot (columbite domains 4 wt% Ta apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PointGraph",
    "delaunay_edges",
    "homogeneity",
    "merge_regions",
    "merge_small",
    "point_components",
]


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
    pairs = _unique_pairs(pairs.astype(np.int64))
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
    support: int = 0,
) -> PointGraph:
    """Cut the edges where BSE or spectra differ; components of the rest.

    ``support`` > 0 also cuts an edge that fewer than ``support`` triangles of uncut edges hold
    (points both ends are joined to). One noisy pair of spectra that happens to look alike
    across a boundary then no longer joins the two sides; it takes two such pairs around one
    point. 0 is the published rule."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(bse)
    i, j = edges[:, 0], edges[:, 1]
    delta_b = np.abs(bse[i] - bse[j]) / full_scale
    delta_z = np.linalg.norm(embeddings[i] - embeddings[j], axis=1)
    kept = (delta_b <= tau_b) & (delta_z <= tau_z)
    if support > 0:
        a, b = i[kept], j[kept]
        joined = coo_matrix((np.ones(2 * len(a)), (np.r_[a, b], np.r_[b, a])), shape=(n, n))
        joined = joined.tocsr()
        common = (joined @ joined).tocsr()  # common[i, j]: points joined to both i and j
        kept &= np.asarray(common[i, j]).ravel() >= support
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
    max_rounds: int = 256,
) -> PointGraph:
    """Components of fewer than ``min_points`` points joined to the touching component most
    like them: the smallest mean δ_z/τ_z + δ_b/τ_b between the components' means.

    Low-count spectra are noisy: a point whose every edge is cut by noise alone is a segment of
    its own under the published rule. Merging such specks into their most similar neighbour
    keeps every segment the graph found at ``min_points`` or more and removes the specks.

    A speck joins a component of ``min_points`` or more at once; two specks join only when
    each is the other's choice, so specks never chain across a boundary (speck A into speck B
    into speck C on the other side) within one round."""
    groups = _Groups.of(graph, embeddings, bse, full_scale)
    for _ in range(max_rounds):
        small = groups.sizes < min_points
        touching = groups.touching
        a, c = np.r_[touching[:, 0], touching[:, 1]], np.r_[touching[:, 1], touching[:, 0]]
        a, c = a[small[a]], c[small[a]]
        if not len(a):
            break
        mean_z, mean_b = groups.means()
        cost = np.linalg.norm(mean_z[a] - mean_z[c], axis=1) / tau_z
        cost += np.abs(mean_b[a] - mean_b[c]) / tau_b
        order = np.lexsort((cost, a))
        first = np.r_[True, a[order][1:] != a[order][:-1]]
        speck, choice = a[order][first], c[order][first]  # each speck and its choice
        best = np.full(groups.count, -1)
        best[speck] = choice
        accept = ~small[choice] | (best[choice] == speck)
        if not accept.any():
            break
        groups.join(speck[accept], choice[accept])
    return PointGraph(graph.edges, graph.kept, groups.component)


@dataclass(slots=True)
class _Groups:
    """Components being merged: each one's summed point features, size and summed BSE (of full
    scale), and the pairs of components that touch."""

    component: NDArray[np.int64]  # of each point
    sums: NDArray[np.float64]
    sizes: NDArray[np.float64]
    level: NDArray[np.float64]
    touching: NDArray[np.int64]

    @classmethod
    def of(
        cls,
        graph: PointGraph,
        features: NDArray[np.floating],
        bse: NDArray[np.float64],
        full_scale: float,
    ) -> _Groups:
        from scipy.sparse import csr_matrix

        component = graph.component.astype(np.int64)
        count = graph.count
        points = np.arange(len(component))
        members = csr_matrix((np.ones(len(component)), (component, points)), (count, len(points)))
        return cls(
            component,
            np.asarray(members @ np.asarray(features, np.float64)),
            np.bincount(component, minlength=count).astype(np.float64),
            np.bincount(component, np.asarray(bse, np.float64) / full_scale, count).astype(
                np.float64
            ),
            _touching_pairs(component, graph.edges),
        )

    @property
    def count(self) -> int:
        return len(self.sizes)

    def means(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Mean features and mean BSE of each component."""
        return self.sums / self.sizes[:, None], self.level / self.sizes

    def join(self, src: NDArray[np.int64], dst: NDArray[np.int64]) -> None:
        """Merge each component ``src[k]`` with ``dst[k]``."""
        from scipy.sparse import coo_matrix, csr_matrix
        from scipy.sparse.csgraph import connected_components

        joined = coo_matrix((np.ones(len(src)), (src, dst)), shape=(self.count, self.count))
        count, group = connected_components(joined, directed=False)
        into = csr_matrix(
            (np.ones(len(group)), (group, np.arange(len(group)))), (count, len(group))
        )
        self.component = group[self.component].astype(np.int64)
        self.sums = np.asarray(into @ self.sums)
        self.sizes = np.bincount(group, self.sizes, count).astype(np.float64)
        self.level = np.bincount(group, self.level, count).astype(np.float64)
        self.touching = _touching_pairs(group.astype(np.int64), self.touching)


def _touching_pairs(group: NDArray[np.int64], pairs: NDArray[np.int64]) -> NDArray[np.int64]:
    """The distinct pairs (i < j) of groups that ``pairs`` join."""
    joined = group[pairs]
    return _unique_pairs(joined[joined[:, 0] != joined[:, 1]])


def _unique_pairs(pairs: NDArray[np.int64]) -> NDArray[np.int64]:
    """The distinct unordered pairs, as rows (i < j) in increasing order."""
    if not len(pairs):
        return pairs.reshape(0, 2)
    low, high = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    size = int(high.max()) + 1
    keys = np.unique(low * size + high)
    out: NDArray[np.int64] = np.stack(np.divmod(keys, size), axis=1)
    return out


def homogeneity(first: NDArray[np.float64], second: NDArray[np.float64]) -> NDArray[np.float64]:
    """G-test statistic per degree of freedom that two count spectra (rows of ``first`` and
    ``second``, binned) come from one spectrum shape: about 1 for one material, growing with
    the difference and the counts. Bins with fewer than 5 counts in the pair are left out."""
    total_a = first.sum(axis=1, keepdims=True)
    total_b = second.sum(axis=1, keepdims=True)
    pooled = (first + second) / np.maximum(total_a + total_b, 1.0)
    used = (first + second) >= 5
    with np.errstate(divide="ignore", invalid="ignore"):
        term_a = np.where(first > 0, first * np.log(first / (total_a * pooled)), 0.0)
        term_b = np.where(second > 0, second * np.log(second / (total_b * pooled)), 0.0)
    statistic = 2.0 * np.where(used, term_a + term_b, 0.0).sum(axis=1)
    freedom = np.maximum(used.sum(axis=1) - 1, 1)
    result: NDArray[np.float64] = statistic / freedom
    return result


def merge_regions(
    graph: PointGraph,
    spectra: NDArray[np.floating],
    bse: NDArray[np.float64],
    tau_b: float,
    tau_g: float,
    full_scale: float = 65535.0,
    max_rounds: int = 256,
) -> PointGraph:
    """Touching components whose summed ``spectra`` (points × bins) and mean BSE are alike are
    merged, most alike first: the G-test statistic per degree of freedom of the sums
    (:func:`homogeneity`) plus (δ_b / τ_b)² of the mean BSE must be below ``tau_g``.

    Both terms matter: in the columbite field, BSE tells the Nb/Ta domains apart a little
    (δ_b ≈ 0.016 against τ_b = 0.02) where the spectra alone merge a few small pieces wrongly;
    the sum of the two beats either (benchmarks/bench_gdls.py).

    Each round merges disjoint pairs only (every component at most once, in order of the
    statistic) and then recomputes the sums, so a chain of slightly different zones is not
    joined in one sweep as single linkage would join it."""
    if graph.count < 2:
        return graph
    groups = _Groups.of(graph, spectra, bse, full_scale)
    for _ in range(max_rounds):
        _, mean_b = groups.means()
        touching = groups.touching
        delta_b = np.abs(mean_b[touching[:, 0]] - mean_b[touching[:, 1]])
        pairs, delta_b = touching[delta_b <= tau_b], delta_b[delta_b <= tau_b]
        sums = groups.sums
        statistic = homogeneity(sums[pairs[:, 0]], sums[pairs[:, 1]]) + (delta_b / tau_b) ** 2
        below = statistic < tau_g
        candidates = pairs[below][np.argsort(statistic[below])]
        if not len(candidates):
            break
        taken = np.zeros(groups.count, np.bool_)
        chosen = []
        for p, q in candidates:
            if not (taken[p] or taken[q]):
                taken[p] = taken[q] = True
                chosen.append((p, q))
        src, dst = np.array(chosen).T
        groups.join(src, dst)
    return PointGraph(graph.edges, graph.kept, groups.component)
