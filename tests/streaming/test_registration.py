"""Registration and the global solve on constructed shifts (ground truth by construction)."""

import numpy as np
import pytest
from scipy.ndimage import fourier_shift, gaussian_filter

from semlive.streaming import Link, register_pair, solve

ROWS, COLS = 338, 512


def _texture(seed):
    return gaussian_filter(np.random.default_rng(seed).normal(size=(900, 1400)), 2.0)


def _tile(texture, y, x, rng):
    spectrum = fourier_shift(np.fft.fftn(texture), (-(y % 1), -(x % 1)))
    image = np.fft.ifftn(spectrum).real
    yi, xi = int(np.floor(y)), int(np.floor(x))
    return image[yi : yi + ROWS, xi : xi + COLS] + rng.normal(0, 0.05, (ROWS, COLS))


@pytest.mark.parametrize("direction", ["horizontal", "vertical"])
def test_known_sub_pixel_shifts_are_recovered(direction):
    rng = np.random.default_rng(1)
    texture = _texture(1)
    errors = []
    for _ in range(12):
        error = rng.uniform(-28, 28, 2)
        nominal = (0.0, COLS * 0.9) if direction == "horizontal" else (ROWS * 0.9, 0.0)
        truth = np.add(nominal, error)
        a = _tile(texture, 200.0, 200.0, rng)
        b = _tile(texture, 200.0 + truth[0], 200.0 + truth[1], rng)
        found = register_pair(a, b, nominal, max_shift_px=32)
        assert found is not None
        errors.append(np.subtract(found.shift, truth))
        assert found.ncc > 0.8
    rms = float(np.sqrt(np.mean(np.square(errors))))
    assert rms < 0.2, rms


def test_tiles_that_do_not_overlap_score_low():
    rng = np.random.default_rng(2)
    a = _tile(_texture(2), 100.0, 100.0, rng)
    b = _tile(_texture(3), 100.0, 100.0, rng)
    found = register_pair(a, b, (0.0, COLS * 0.9), max_shift_px=32)
    assert found is not None
    assert found.ncc < 0.3


def test_solve_drops_an_inconsistent_link_and_anchors_the_mean():
    nominal = np.array([[0.0, 0.0], [0.0, 460.0], [304.0, 0.0], [304.0, 460.0], [900.0, 900.0]])
    deviation = np.array([[1.0, -2.0], [3.0, 0.5], [-1.5, 2.0], [0.0, 1.0], [0.0, 0.0]])
    true = nominal + deviation
    pairs = [(0, 1), (0, 2), (1, 3), (2, 3)]
    links = [Link(a, b, tuple(true[b] - true[a]), 1.0) for a, b in pairs]
    links.append(Link(0, 3, (true[3, 0] - true[0, 0] + 25.0, true[3, 1] - true[0, 1]), 1.0))
    placement = solve(nominal, links, np.zeros(5, dtype=int), max_residual_px=1.0)
    assert len(placement.dropped) == 1
    assert placement.dropped[0].a == 0 and placement.dropped[0].b == 3  # noqa: PT018
    assert not placement.linked[4]  # tile 4 has no link: placed by the stage model
    relative = placement.positions[:4] - placement.positions[0]
    np.testing.assert_allclose(relative, true[:4] - true[0], atol=1e-6)
    np.testing.assert_allclose((placement.positions - nominal).mean(axis=0), 0.0, atol=1e-9)
