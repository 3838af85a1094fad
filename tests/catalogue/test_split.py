"""Touching crystals are split at their neck; single crystals are not cut."""

from __future__ import annotations

import numpy as np
from skimage.draw import polygon

from semlive.catalogue._split import split_touching


def _prism(shape, centre, length, width, angle, tip=0.3):
    """An olivine-like euhedral prism (a hexagon with pointed ends)."""
    half_l, half_w = length / 2, width / 2
    pts = np.array(
        [
            (-half_l, 0),
            (-half_l * (1 - tip), -half_w),
            (half_l * (1 - tip), -half_w),
            (half_l, 0),
            (half_l * (1 - tip), half_w),
            (-half_l * (1 - tip), half_w),
        ]
    )
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = pts @ rot.T + centre
    mask = np.zeros(shape, bool)
    rr, cc = polygon(pts[:, 1], pts[:, 0], shape)
    mask[rr, cc] = True
    return mask


def test_two_overlapping_prisms_are_split_in_two():
    a = _prism((200, 260), (90, 100), 110, 60, 0.3)
    b = _prism((200, 260), (170, 110), 80, 50, 1.4)
    labels = split_touching(a | b, min_px=100, neck_ratio=0.7)
    assert labels.max() == 2
    for truth in (a & ~b, b & ~a):  # each part holds one crystal (its own pixels)
        _, counts = np.unique(labels[truth], return_counts=True)
        assert counts.max() / counts.sum() > 0.9


def test_single_elongated_prisms_are_not_cut():
    for angle in (0.0, 0.5, 1.2):
        for length, width in ((200, 40), (120, 70), (60, 25)):
            mask = _prism((260, 260), (130, 130), length, width, angle)
            assert split_touching(mask, min_px=100, neck_ratio=0.7).max() == 1


def test_a_filled_crack_does_not_split_a_crystal():
    mask = _prism((200, 200), (100, 100), 150, 80, 0.2)
    mask[99:101, 45:155] = False  # a crack inside, most of the way along the crystal
    mask[80:110, 120:122] = False  # and one across it
    from scipy.ndimage import binary_fill_holes

    assert split_touching(binary_fill_holes(mask), min_px=100, neck_ratio=0.7).max() == 1


def test_a_tiny_bump_stays_with_its_crystal():
    mask = _prism((200, 200), (100, 100), 120, 60, 0.0)
    mask[20:28, 95:103] = True  # a bump below the minimum size, joined by a thin bridge
    mask[28:72, 98:100] = True  # bump and bridge: 152 px, below a 200-px minimum
    labels = split_touching(mask, min_px=200, neck_ratio=0.7)
    assert labels.max() == 1
