"""GDLS on one field: embed the spectra, build and cut the point graph, label every pixel.

:func:`segment_field` takes a BSE image, the pixels of the EDS points and their spectra (any
channel grid; re-binned onto the embedding band), and returns the dense segments with the
graph and the time each step took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from torch import nn

from semlive.models.gdls._band import to_band
from semlive.models.gdls._dense import dense_labels
from semlive.models.gdls._embedding import embed
from semlive.models.gdls._graph import PointGraph, delaunay_edges, merge_small, point_components

__all__ = ["OWN_TAU_Z", "PUBLISHED_TAU_Z", "GdlsResult", "sample_distance_of", "segment_field"]

OWN_TAU_Z = 0.3  # semlive's embedding (garnet field: K 39, ASA 0.991; 0.4 merges zones)
PUBLISHED_TAU_Z = 0.5  # the authors' embedding (garnet field: K 38, ASA 0.990)


@dataclass(frozen=True, slots=True)
class GdlsResult:
    labels: NDArray[np.int32]  # segment of every pixel (0: farther than the sample distance)
    graph: PointGraph
    embeddings: NDArray[np.float32]
    sample_distance_px: float
    seconds: dict[str, float] = field(default_factory=dict)


def sample_distance_of(rows: NDArray[np.intp], cols: NDArray[np.intp]) -> float:
    """The points' sampling distance: the median distance to the nearest other point."""
    from scipy.spatial import cKDTree

    points = np.stack([rows, cols], axis=1).astype(np.float64)
    distance, _ = cKDTree(points).query(points, k=2)
    return float(np.median(distance[:, 1]))


def segment_field(
    bse: NDArray[np.integer],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
    spectra: NDArray[np.integer],
    channel_offset_ev: float,
    channel_width_ev: float,
    embedding: nn.Module | None = None,
    tau_b: float = 0.02,
    tau_z: float | None = None,
    method: Literal["watershed", "random_walker"] = "watershed",
    full_scale: float = 65535.0,
    max_edge_factor: float = 1.5,
    min_points: int = 20,
    bse_smooth_px: float = 1.0,
) -> GdlsResult:
    """Segments of a field from its BSE and sparse spectra (thresholds τ_b, τ_z).

    The BSE is smoothed (Gaussian, ``bse_smooth_px``) before it is read at the points, so δ_b
    compares local levels rather than single noisy pixels; components of fewer than
    ``min_points`` points are merged into their most similar neighbour (1: the published rule,
    no merging). ``embedding``: semlive's own (the packaged one by default) or the published
    network; ``tau_z`` defaults to the value measured for it on the simulated fields (0.3 for
    ours, 0.5 for the published one: their distances are not on the same scale)."""
    from scipy.ndimage import gaussian_filter

    from semlive.models.gdls._embedding import SpectrumEmbedding
    from semlive.models.gdls._ours import packaged_embedding

    if embedding is None:
        embedding = packaged_embedding()
    if tau_z is None:
        tau_z = PUBLISHED_TAU_Z if isinstance(embedding, SpectrumEmbedding) else OWN_TAU_Z

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    band = to_band(spectra, channel_offset_ev, channel_width_ev)
    z = embed(embedding, band)
    seconds["embedding"] = time.perf_counter() - started
    started = time.perf_counter()
    distance = sample_distance_of(rows, cols)
    points = np.stack([rows, cols], axis=1).astype(np.float64)
    edges = delaunay_edges(points, distance, max_edge_factor)
    image = np.asarray(bse, np.float64)
    level = gaussian_filter(image, bse_smooth_px) if bse_smooth_px > 0 else image
    at_points = level[rows, cols]
    graph = point_components(edges, at_points, z, tau_b, tau_z, full_scale)
    if min_points > 1:
        graph = merge_small(graph, at_points, z, tau_b, tau_z, min_points, full_scale)
    seconds["graph"] = time.perf_counter() - started
    started = time.perf_counter()
    labels = dense_labels(bse, rows, cols, graph.component, distance, method, edges)
    seconds["dense"] = time.perf_counter() - started
    return GdlsResult(labels, graph, z, distance, seconds)
