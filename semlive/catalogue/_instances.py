"""Crystal instances: connected components of the olivine mask across the whole mosaic.

The mask is labelled block by block (``scipy.ndimage.label``, 4-connected, so two crystals that
touch only at a pixel corner stay apart, as the polygons of the GeoJSON do); components that
meet across a block border are merged with a union–find over the border pixels only
(``scipy.sparse.csgraph.connected_components`` on the equivalences). Nothing of the size of the
mosaic is ever held: a block, its four border lines, and one small record per component.
Labelling a block is deterministic, so the second pass that writes ``bse/labels/crystals``
labels each block again instead of keeping the first pass's labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.catalogue._pool import TaskMap

__all__ = ["Components", "blocks", "find_components", "label_block"]

Int = NDArray[np.int64]


def blocks(shape: tuple[int, int], size: int) -> Iterator[tuple[int, int, int, int]]:
    """``(r0, c0, r1, c1)`` of the blocks that tile ``shape``, row by row."""
    rows, cols = shape
    for r0 in range(0, rows, size):
        for c0 in range(0, cols, size):
            yield r0, c0, min(r0 + size, rows), min(c0 + size, cols)


def label_block(mask: NDArray[np.bool_]) -> tuple[NDArray[np.int32], int]:
    """4-connected labels of a block (1..n) and n."""
    from scipy.ndimage import label

    labels, n = label(mask)
    return labels.astype(np.int32, copy=False), int(n)


@dataclass(frozen=True, slots=True)
class Components:
    """The mosaic's components after merging across blocks.

    ``of_part[k]`` is the component of part k, where the parts are the block-local components
    in block order (``offsets[b] + local label − 1`` for block b); every per-component array is
    indexed by component. ``seed`` is the first pixel of the component in raster order.
    """

    offsets: Int  # first part index of each block (blocks in the order of `blocks`)
    of_part: Int
    pixels: Int
    box: Int  # (n, 4): r0, c0, r1, c1 (exclusive)
    seed: Int  # (n, 2): row, col

    def __len__(self) -> int:
        return len(self.pixels)


def find_components(mask: Any, block_px: int, map_: TaskMap = map) -> Components:
    """Connected components of ``mask > 0`` (a 2-D array or zarr array), block by block.

    ``map_`` runs the blocks (:func:`~semlive.catalogue._pool.task_map`; pass a process map
    only with a zarr array, which travels to the workers as a reference, not as pixels).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    shape = (int(mask.shape[0]), int(mask.shape[1]))
    spans = list(blocks(shape, block_px))
    offsets: list[int] = []
    parts: list[NDArray[np.int64]] = []  # per block: (n, 7) pixels, box, seed row/col
    edges: list[NDArray[np.int64]] = []
    bottom: dict[tuple[int, int], NDArray[np.int64]] = {}  # last row's part ids, by block
    right: dict[tuple[int, int], NDArray[np.int64]] = {}
    total = 0
    results = map_(_block_parts, [(mask, span) for span in spans])
    for (r0, c0, _, _), block in zip(spans, results, strict=True):
        offsets.append(total)
        if block.n:
            parts.append(block.records)
        top, last_row, left_col, last_col = (
            np.where(line > 0, line.astype(np.int64) + (total - 1), -1) for line in block.lines
        )
        key = (r0 // block_px, c0 // block_px)
        above, left = bottom.pop((key[0] - 1, key[1]), None), right.pop((key[0], key[1] - 1), None)
        for mine, theirs in ((top, above), (left_col, left)):
            if theirs is not None:
                both = (mine >= 0) & (theirs >= 0)
                edges.append(np.stack([mine[both], theirs[both]], axis=1))
        bottom[key], right[key] = last_row, last_col
        total += block.n
    if total == 0:
        empty = np.zeros((0,), np.int64)
        return Components(
            np.asarray(offsets, np.int64), empty, empty, empty.reshape(0, 4), empty.reshape(0, 2)
        )
    record = np.concatenate(parts)
    pairs = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(total, total))
    _, raw = connected_components(graph, directed=False)
    # number the components by their first pixel in raster order (stable from run to run)
    first = record[:, 5] * shape[1] + record[:, 6]
    n = int(raw.max()) + 1
    seed_flat = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(seed_flat, raw, first)
    order = np.argsort(seed_flat, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    of_part = rank[raw]
    pixels = np.bincount(of_part, weights=record[:, 0], minlength=n).astype(np.int64)
    box = np.empty((n, 4), np.int64)
    box[:, :2] = np.iinfo(np.int64).max
    box[:, 2:] = -1
    for j in (0, 1):
        np.minimum.at(box[:, j], of_part, record[:, 1 + j])
        np.maximum.at(box[:, 2 + j], of_part, record[:, 3 + j])
    seed_sorted = seed_flat[order]
    seed = np.stack([seed_sorted // shape[1], seed_sorted % shape[1]], axis=1)
    return Components(np.asarray(offsets, np.int64), of_part, pixels, box, seed)


@dataclass(frozen=True, slots=True)
class _BlockParts:
    """One block's local components: their records and the labels along its four edges."""

    n: int
    records: NDArray[np.int64]  # (n, 7): pixels, box (r0, c0, r1, c1), first pixel (row, col)
    lines: tuple[NDArray[np.int32], ...]  # first row, last row, first column, last column


def _block_parts(task: tuple[Any, tuple[int, int, int, int]]) -> _BlockParts:
    mask, (r0, c0, r1, c1) = task
    labels, n = label_block(np.asarray(mask[r0:r1, c0:c1]) > 0)
    lines = (labels[0], labels[-1], labels[:, 0], labels[:, -1])
    return _BlockParts(n, _part_records(labels, n, r0, c0), tuple(x.copy() for x in lines))


def _part_records(labels: NDArray[np.int32], n: int, r0: int, c0: int) -> NDArray[np.int64]:
    """Per local label: pixel count, box (r0, c0, r1, c1) and first pixel, in mosaic pixels."""
    from scipy.ndimage import find_objects

    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    out = np.empty((n, 7), np.int64)
    out[:, 0] = counts
    for k, sl in enumerate(find_objects(labels, max_label=n)):
        rows, cols = sl  # ndimage.label numbers consecutively: no label is missing
        top = labels[rows.start, cols]
        first_col = cols.start + int(np.argmax(top == k + 1))
        out[k, 1:] = (
            rows.start + r0,
            cols.start + c0,
            rows.stop + r0,
            cols.stop + c0,
            rows.start + r0,
            first_col + c0,
        )
    return out
