"""Global placement: weighted least squares over the accepted pairwise shifts.

Unknowns are each tile's deviation from its nominal (commanded) position, in pixels. Each
accepted pair says how far B's deviation differs from A's; each connected group of tiles is
anchored so its mean deviation is zero (Contract 2: the mosaic is anchored so the placements'
mean deviation from nominal is zero). After each solve the link with the largest residual is
dropped while it exceeds ``max_residual_px``, and the rest solved again. Tiles with no trusted
link are placed by a stage model fitted to the linked tiles (the mean deviation of tiles scanned
in the same direction, which captures backlash). Each solve is direct (sparse normal equations),
so it costs milliseconds for a whole section.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, identity
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

__all__ = ["Link", "Placement", "solve"]

Float = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Link:
    """Tile ``b`` lies at ``offset`` (rows, cols px) from tile ``a``, trusted with ``weight``."""

    a: int
    b: int
    offset: tuple[float, float]
    weight: float


@dataclass(frozen=True, slots=True)
class Placement:
    positions: Float  # (tiles, 2): row, col of each tile's pixel (0, 0) in the nominal frame
    linked: NDArray[np.bool_]  # placed by links (False: by the stage model)
    residual_px: Float  # (tiles,): largest residual of the tile's kept links
    dropped: tuple[Link, ...]  # links removed as inconsistent


def solve(
    nominal: Float,
    links: list[Link],
    scan_direction: NDArray[np.integer],
    max_residual_px: float = 1.0,
    warm: Float | None = None,
) -> Placement:
    """Place tiles given nominal positions (tiles, 2) and pairwise links.

    ``warm``: the previous positions (tiles, 2); the result is shifted so that they do not move
    on average, which keeps a streaming mosaic still. Without it, the mean deviation from the
    nominal positions is zero.
    """
    n = len(nominal)
    kept = [link for link in links if link.a != link.b]
    dropped: list[Link] = []
    while True:
        deviation, linked = _least_squares(nominal, kept, n)
        residuals = _link_residuals(nominal, deviation, kept)
        if not kept or residuals.max() <= max_residual_px:
            break
        worst = int(np.argmax(residuals))
        dropped.append(kept.pop(worst))
    deviation[~linked] = _stage_model(deviation, linked, scan_direction)[~linked]
    if warm is None:
        deviation -= deviation.mean(axis=0)  # anchored: mean deviation from nominal is zero
    else:  # kept in the previous frame: the tiles placed before do not move on average
        deviation -= (nominal + deviation - warm).mean(axis=0)
    per_tile = np.zeros(n)
    for link, r in zip(kept, residuals if kept else [], strict=False):
        per_tile[link.a] = max(per_tile[link.a], r)
        per_tile[link.b] = max(per_tile[link.b], r)
    return Placement(nominal + deviation, linked, per_tile, tuple(dropped))


def _least_squares(nominal: Float, links: list[Link], n: int) -> tuple[Float, NDArray[np.bool_]]:
    deviation = np.zeros((n, 2))
    linked = np.zeros(n, dtype=bool)
    if not links:
        return deviation, linked
    a = np.array([lk.a for lk in links])
    b = np.array([lk.b for lk in links])
    graph = coo_matrix((np.ones(len(links)), (a, b)), shape=(n, n))
    count, label = connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=count)
    linked = sizes[label] > 1
    w = np.sqrt(np.array([lk.weight for lk in links]))
    rows = np.arange(len(links))
    # the gauge: one tile of each linked group pinned (a sparse row, unlike a row summing the
    # whole group, which would make the normal matrix dense); each group is re-centred after
    _, first_of = np.unique(label, return_index=True)
    first_of = first_of[sizes[label[first_of]] > 1]
    m = coo_matrix(
        (
            np.concatenate([-w, w, np.ones(len(first_of))]),
            (
                np.concatenate([rows, rows, len(links) + np.arange(len(first_of))]),
                np.concatenate([a, b, first_of]),
            ),
        ),
        shape=(len(links) + len(first_of), n),
    ).tocsr()
    # normal equations (a sparse graph Laplacian plus the pins), factorised once for both axes;
    # the tiny ridge only pins tiles without links, which the stage model places afterwards
    normal = (m.T @ m + identity(n, format="csr") * 1e-9).tocsc()
    measured = np.array([lk.offset for lk in links]) - (nominal[b] - nominal[a])
    rhs = np.vstack([w[:, None] * measured, np.zeros((len(first_of), 2))])
    deviation = np.asarray(splu(normal).solve(np.asarray(m.T @ rhs)))
    for axis in (0, 1):  # each linked group: mean deviation zero
        mean = np.bincount(label, deviation[:, axis], minlength=count) / sizes
        deviation[linked, axis] -= mean[label[linked]]
    return deviation, linked


def _link_residuals(nominal: Float, deviation: Float, links: list[Link]) -> Float:
    if not links:
        return np.zeros(0)
    a = np.array([lk.a for lk in links])
    b = np.array([lk.b for lk in links])
    predicted = (nominal[b] + deviation[b]) - (nominal[a] + deviation[a])
    measured = np.array([lk.offset for lk in links])
    result: Float = np.hypot(*(predicted - measured).T)
    return result


def _stage_model(
    deviation: Float, linked: NDArray[np.bool_], scan_direction: NDArray[np.integer]
) -> Float:
    """Mean deviation of the linked tiles scanned in the same direction (backlash), else 0."""
    model = np.zeros_like(deviation)
    for direction in np.unique(scan_direction):
        same = scan_direction == direction
        if (same & linked).sum() >= 2:
            model[same] = deviation[same & linked].mean(axis=0)
    return model
