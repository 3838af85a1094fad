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

from semlive.models.gdls._band import coarse_bins, to_band
from semlive.models.gdls._dense import dense_labels
from semlive.models.gdls._embedding import embed
from semlive.models.gdls._graph import (
    PointGraph,
    delaunay_edges,
    merge_regions,
    merge_small,
    point_components,
)

__all__ = [
    "OWN_TAU_Z",
    "PUBLISHED_TAU_Z",
    "TAU_G",
    "GdlsResult",
    "sample_distance_of",
    "segment_field",
]

# Measured on the simulated garnet, columbite and olivine fields (benchmarks/bench_gdls.py):
OWN_TAU_Z = 0.15  # semlive's embedding: a fine cut, the region merge joins what belongs together
PUBLISHED_TAU_Z = 0.3  # the authors' embedding (its distances are on a larger scale)
TAU_G = 1.5  # G per degree of freedom below which touching segments' sums are one material


@dataclass(frozen=True, slots=True)
class GdlsResult:
    labels: NDArray[np.int32]  # segment of every pixel (0: farther than the sample distance)
    graph: PointGraph
    embeddings: NDArray[np.float32]
    sample_distance_px: float
    sums: NDArray[np.float32]  # (labels.max(), BAND_CHANNELS): summed spectrum of segment k+1
    points: NDArray[np.int64]  # (labels.max(),): EDS points in segment k+1
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Number of segments."""
        return int(np.count_nonzero(np.bincount(self.labels.ravel())[1:]))


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
    full_scale: float | None = None,
    max_edge_factor: float = 1.5,
    min_points: int = 20,
    bse_smooth_px: float = 1.0,
    tau_g: float | None = TAU_G,
    support: int = 1,
) -> GdlsResult:
    """Segments of a field from its BSE and sparse spectra (thresholds τ_b, τ_z).

    The steps, each with the published rule named where semlive departs from it:

    * the BSE is smoothed (Gaussian, ``bse_smooth_px``) before it is read at the points, so δ_b
      compares local levels rather than single noisy pixels;
    * an edge is kept only below τ_b and τ_z and when it closes ``support`` triangles of kept
      edges (0: the published rule; :func:`point_components`);
    * components of fewer than ``min_points`` points join their most similar neighbour
      (1: no merging, the published rule);
    * touching segments whose summed spectra and BSE agree merge (:func:`merge_regions`, below
      ``tau_g``; ``None``: no region merge, the published rule);
    * a dense labelling: a watershed of the smoothed BSE's gradient, or the authors' random
      walker.

    ``full_scale``: the BSE's largest possible value, which δ_b is a share of (default: from
    its dtype, 255 for uint8, 65535 for uint16 and for float images).
    ``embedding``: semlive's own (the packaged one by default) or the published network;
    ``tau_z`` defaults to the value measured for it on the simulated fields (their distances are
    not on the same scale)."""
    from scipy.ndimage import gaussian_filter

    from semlive.models.gdls._embedding import SpectrumEmbedding
    from semlive.models.gdls._ours import packaged_embedding

    if embedding is None:
        embedding = packaged_embedding()
    if full_scale is None:
        kind = np.asarray(bse).dtype
        full_scale = float(np.iinfo(kind).max) if kind.kind in "iu" else 65535.0
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
    graph = point_components(edges, at_points, z, tau_b, tau_z, full_scale, support)
    if min_points > 1:
        graph = merge_small(graph, at_points, z, tau_b, tau_z, min_points, full_scale)
    if tau_g is not None:
        graph = merge_regions(graph, coarse_bins(band), at_points, tau_b, tau_g, full_scale)
    seconds["graph"] = time.perf_counter() - started
    started = time.perf_counter()
    # the watershed floods the smoothed BSE's gradient; the random walker reads the BSE as the
    # authors' code does
    guide = level if method == "watershed" else bse
    labels = dense_labels(guide, rows, cols, graph.component, distance, method, edges)
    seconds["dense"] = time.perf_counter() - started
    sums, counts = _segment_sums(labels[rows, cols], band, int(labels.max()))
    return GdlsResult(labels, graph, z, distance, sums, counts, seconds)


def _segment_sums(
    at_points: NDArray[np.int32], band: NDArray[np.float32], count: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Summed band spectrum and number of points of segments 1..count."""
    from scipy.sparse import csr_matrix

    inside = at_points > 0
    members = csr_matrix(
        (np.ones(int(inside.sum()), np.float32), (at_points[inside] - 1, np.flatnonzero(inside))),
        shape=(count, len(at_points)),
    )
    sums = np.asarray(members @ band, np.float32)
    return sums, np.bincount(at_points[inside] - 1, minlength=count).astype(np.int64)
