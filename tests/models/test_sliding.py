"""Sliding windows: full coverage, exact averaging, the views of a window, and the
out-of-memory fallback."""

import itertools
import logging

import numpy as np
import pytest
import torch

from semlive.models._device import Runtime, choose_runtime, run_batched
from semlive.models.olivine import (
    ROTATIONS,
    inference_views,
    sliding_probabilities,
    view_averaged,
    window_starts,
)
from semlive.settings import OlivineSettings


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


@pytest.mark.parametrize("views", sorted(ROTATIONS))
def test_views_are_turned_back_onto_the_window(views):
    """A 'network' that sees each pixel alone answers the same from every view, so the mean
    of the views, each turned back, is its answer, on windows that are not square too."""
    rng = np.random.default_rng(1)
    stack = rng.random((3, 40, 56)).astype(np.float32)
    shapes = []

    def predict(windows):
        shapes.append(windows.shape)
        return np.square(windows)

    np.testing.assert_allclose(view_averaged(predict, stack, views), np.square(stack), rtol=1e-6)
    assert len(shapes) == views
    assert ((3, 56, 40) in shapes) == (views == 4)  # quarter turns swap the sides


def test_views_average_out_what_one_orientation_alone_sees():
    """A 'network' biased toward the left of what it is shown: one view leans left, the
    window and its half turn together do not lean."""
    stack = np.zeros((1, 8, 10), np.float32)

    def predict(windows):
        ramp = np.linspace(1.0, 0.0, windows.shape[2], dtype=np.float32)
        return np.broadcast_to(ramp, windows.shape).copy()

    one = view_averaged(predict, stack, 1)[0]
    np.testing.assert_allclose(one, np.tile(np.linspace(1.0, 0.0, 10), (8, 1)), rtol=1e-6)
    np.testing.assert_allclose(view_averaged(predict, stack, 2), 0.5, rtol=1e-6)
    np.testing.assert_allclose(view_averaged(predict, stack[:, :, :8], 4), 0.5, rtol=1e-6)


def test_views_by_default_as_many_as_the_device_affords():
    auto = OlivineSettings()
    cpu = torch.device("cpu")
    assert inference_views(auto, Runtime(cpu, "float32")) == 1
    assert inference_views(auto, Runtime(cpu, "bfloat16")) == 2
    assert inference_views(auto, Runtime(torch.device("cuda"), "bfloat16")) == 4
    assert inference_views(OlivineSettings(views=4), Runtime(cpu, "float32")) == 4
    assert inference_views(auto) == inference_views(auto, choose_runtime())  # this machine's


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
