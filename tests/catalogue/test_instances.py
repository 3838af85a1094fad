"""Crystal instances across blocks: one crystal, one id, wherever block borders cut it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import label

from semlive.catalogue import find_components
from semlive.catalogue._instances import blocks, label_block


def _partition(labels: np.ndarray) -> set[frozenset[int]]:
    """The components as sets of flat pixel indices (labels' values do not matter)."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    values = flat[order]
    cuts = np.flatnonzero(np.diff(values)) + 1
    return {frozenset(g.tolist()) for g in np.split(order, cuts) if flat[g[0]] > 0}


def _mosaic_labels(mask: np.ndarray, block: int) -> np.ndarray:
    """The merged component of every pixel, from find_components's records."""
    c = find_components(mask, block)
    out = np.zeros(mask.shape, np.int64)
    for b, (r0, c0, r1, c1) in enumerate(blocks(mask.shape, block)):
        local, _ = label_block(mask[r0:r1, c0:c1])
        out[r0:r1, c0:c1] = np.where(local > 0, c.of_part[local + c.offsets[b] - 1] + 1, 0)
    return out


def test_a_spiral_crossing_many_blocks_is_one_component():
    mask = np.zeros((300, 300), bool)
    # a square spiral, 3 px wide, that leaves and re-enters blocks of 64 px many times
    r, c, step = 150, 150, 8
    moves = [(0, 1), (1, 0), (0, -1), (-1, 0)]
    for turn in range(1, 31):
        dr, dc = moves[(turn - 1) % 4]
        for _ in range(step):
            mask[r - 1 : r + 2, c - 1 : c + 2] = True
            r, c = r + dr, c + dc
        step += 4 if turn % 2 == 0 else 0
    mask[10:20, 10:20] = True  # and a separate crystal
    comps = find_components(mask, 64)
    assert len(comps) == 2
    assert comps.pixels.sum() == mask.sum()
    big = int(np.argmax(comps.pixels))
    rr, cc = np.nonzero(mask & (label(mask)[0] == label(mask)[0][150, 150]))
    assert tuple(comps.box[big]) == (rr.min(), cc.min(), rr.max() + 1, cc.max() + 1)
    # numbered in raster order of their first pixel: the small square comes first
    assert tuple(comps.seed[0]) == (10, 10)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    density=st.floats(0.35, 0.6),
    block=st.sampled_from([8, 16, 24, 64]),
)
def test_blockwise_labels_equal_whole_image_labels(seed, density, block):
    rng = np.random.default_rng(seed)
    mask = rng.random((70, 90)) < density
    whole, n = label(mask)
    merged = _mosaic_labels(mask, block)
    assert _partition(merged) == _partition(whole)
    comps = find_components(mask, block)
    assert len(comps) == n
    assert sorted(comps.pixels.tolist()) == sorted(np.bincount(whole.ravel())[1:].tolist())


def test_corner_contact_is_two_crystals():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    mask[5:8, 5:8] = True  # touches the first only at a corner
    assert len(find_components(mask, 5)) == 2


@pytest.mark.parametrize("block", [4, 7, 100])
def test_empty_mask_has_no_components(block):
    comps = find_components(np.zeros((20, 30), bool), block)
    assert len(comps) == 0
