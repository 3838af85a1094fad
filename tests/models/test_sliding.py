"""Sliding windows: full coverage, exact averaging, and the out-of-memory fallback."""

import itertools
import logging

import numpy as np
import pytest
import torch

from semlive.models._device import Runtime, run_batched
from semlive.models.olivine import sliding_probabilities, window_starts


@pytest.mark.parametrize(
    ("length", "window", "overlap"),
    [(1000, 256, 64), (256, 256, 64), (100, 256, 0), (1025, 512, 128)],
)
def test_windows_cover_the_axis_with_at_least_the_overlap(length, window, overlap):
    starts = window_starts(length, window, overlap)
    w = min(window, length)
    assert starts[0] == 0
    assert starts[-1] + w == length
    assert all(b - a <= w - overlap for a, b in itertools.pairwise(starts))


def test_position_independent_predictions_are_reproduced_exactly():
    """A pixel-wise 'network' gives the same answer from every window, so the weighted
    average must reproduce it exactly, halo, edges and corners included."""
    rng = np.random.default_rng(0)
    image = rng.random((700, 900)).astype(np.float32)
    calls = []

    def predict(stack):
        calls.append(stack.shape)
        return 1 / (1 + np.exp(-stack))

    out = sliding_probabilities(image, predict, window=256, overlap=64, batch=3)
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-image)), rtol=1e-5)
    assert all(s[1:] == (256, 256) for s in calls)
    assert max(s[0] for s in calls) == 3


def test_out_of_memory_halves_the_batch_then_falls_back_to_the_cpu(caplog):
    runtime = Runtime(torch.device("cpu"), "float32")
    runtime.device = torch.device("cuda")  # what a GPU session looks like to the fallback
    model = torch.nn.Conv2d(1, 1, 1)
    done = []

    def step(m, a, b):
        if runtime.device.type == "cuda" and b - a > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        done.extend(range(a, b))

    with caplog.at_level(logging.WARNING):
        _, batch = run_batched(runtime, model, 9, 8, step)
    assert batch == 2
    assert done == list(range(9))
    assert "retrying with 2 windows" in caplog.text

    def never(m, a, b):
        if runtime.device.type == "cuda":
            raise torch.OutOfMemoryError("CUDA out of memory")
        done.extend(range(a, b))

    done.clear()
    with caplog.at_level(logging.WARNING):
        _, batch = run_batched(runtime, model, 3, 4, never)
    assert runtime.device.type == "cpu"
    assert done == [0, 1, 2]
    assert "continuing on the CPU" in caplog.text
