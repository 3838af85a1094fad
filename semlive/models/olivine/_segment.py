"""Sliding-window inference over the mosaic: ``bse/labels/olivine`` and a probability image.

A region (plus a halo of context) is cut into overlapping windows; each window's probabilities
are weighted by a taper that falls toward its edges (so every pixel is decided mostly by windows
that see it with context on all sides; each window's own the mean over the network's views of
it, the window as it is and turned: ``olivine.views``), averaged, and thresholded at the
model's ``dlth``; the crystals are grown to the BSE's edges (:mod:`._outline`), the model's
crystal check (:mod:`._check`) then drops crystals too flat for an olivine, and the edges of
those kept are drawn by the BSE's local grey levels and their holes without a step in grey
filled (:meth:`._outline.Outline.snap`).
Results go to ``mosaic.zarr/bse/labels/olivine`` (uint8, OME-Zarr labels) and
``mosaic.zarr/olivine_probability`` (uint8, probability × 255, for QA), both multiscale on the
grid of ``bse/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from semlive.models._checkpoint import ModelCard, load_model
from semlive.models._device import Runtime, choose_runtime, run_batched
from semlive.models._labels import register_label, require_pyramid, update_pyramid
from semlive.models._networks import architecture
from semlive.settings import OlivineSettings

from ._check import CrystalCheck
from ._landmarks import GreyMapping, mosaic_histogram
from ._outline import Outline

__all__ = [
    "ROTATIONS",
    "OlivineSegmenter",
    "RegionResult",
    "inference_views",
    "sliding_probabilities",
    "view_averaged",
    "warm_up",
    "window_starts",
]

logger = logging.getLogger(__name__)

LABEL_PATH = "bse/labels/olivine"
PROBABILITY_PATH = "olivine_probability"
_STRIDE = 32
# Whole-store segmentation works in blocks of 4480² px: with a 64-px halo and the default
# 1024-px windows overlapping by 128, 5 × 5 windows tile a block exactly (1.31× the pixels;
# 4096² blocks needed the same 25 windows for 0.84× the area).
_BLOCK_PX = 4480
# quarter turns of each view, by the number of views
ROTATIONS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 2), 4: (0, 1, 2, 3)}

Predict = Callable[[NDArray[np.float32]], NDArray[np.float32]]  # (N, h, w) DN -> probabilities


def inference_views(settings: OlivineSettings, runtime: Runtime | None = None) -> int:
    """Views of each window (``olivine.views``; auto: 4 on CUDA, 2 on a CPU that computes
    bfloat16 natively, 1 on other CPUs: about the time one float32 view took), for the
    inference ``runtime`` (default: the one ``settings`` choose)."""
    if settings.views != "auto":
        return settings.views
    if runtime is None:
        runtime = choose_runtime(settings.device, settings.precision)
    if runtime.device.type == "cuda":
        return 4
    return 2 if runtime.precision == "bfloat16" else 1


def view_averaged(predict: Predict, stack: NDArray[np.float32], views: int) -> NDArray[np.float32]:
    """``predict``'s probabilities for a stack of windows (N, h, w), averaged over ``views``
    views of each: the windows turned by :data:`ROTATIONS` quarter turns, and turned back. The
    network was trained on patches turned and flipped, yet one view's errors are partly its
    own: where views disagree, their mean is the better guess."""
    turns = ROTATIONS[views]
    total = np.zeros(stack.shape, np.float32)
    for k in turns:
        turned = np.ascontiguousarray(np.rot90(stack, k, axes=(1, 2)))
        total += np.rot90(predict(turned), -k, axes=(1, 2))
    out: NDArray[np.float32] = total / np.float32(len(turns))
    return out


def window_starts(length: int, window: int, overlap: int) -> list[int]:
    """Window origins along one axis: evenly spaced, the last flush with the end."""
    if length <= window:
        return [0]
    step = max(1, window - overlap)
    count = -(-(length - window) // step) + 1
    return [round(i * (length - window) / (count - 1)) for i in range(count)]


def _taper(n: int, ramp: int) -> NDArray[np.float32]:
    i = np.arange(n, dtype=np.float32)
    if ramp <= 0:
        return np.ones(n, np.float32)
    out: NDArray[np.float32] = np.minimum(1.0, np.minimum(i + 0.5, n - i - 0.5) / ramp).astype(
        np.float32
    )
    return out


def sliding_probabilities(
    image: NDArray[np.float32], predict: Predict, window: int, overlap: int, batch: int = 4
) -> NDArray[np.float32]:
    """Probabilities over ``image`` from overlapping windows, averaged with edge tapers
    (``overlap`` 0: plain patch-wise inference, each pixel from exactly one window)."""
    h, w = image.shape
    wh, ww = min(window, h), min(window, w)
    ramp = overlap // 2 if overlap else 0
    weight2d = _taper(wh, ramp)[:, None] * _taper(ww, ramp)[None, :]
    total = np.zeros((h, w), np.float32)
    weights = np.zeros((h, w), np.float32)
    boxes = [(r, c) for r in window_starts(h, wh, overlap) for c in window_starts(w, ww, overlap)]
    for i in range(0, len(boxes), batch):
        chunk = boxes[i : i + batch]
        stack = np.stack([image[r : r + wh, c : c + ww] for r, c in chunk])
        probs = predict(stack)
        for (r, c), p in zip(chunk, probs, strict=True):
            total[r : r + wh, c : c + ww] += p * weight2d
            weights[r : r + wh, c : c + ww] += weight2d
    out: NDArray[np.float32] = (total / np.maximum(weights, np.float32(1e-12))).astype(np.float32)
    return out


@dataclass(frozen=True, slots=True)
class RegionResult:
    bounds: tuple[int, int, int, int]
    olivine_px: int
    scanned_px: int
    seconds: float


def _grey_mapping(level: Any, card: ModelCard, settings: OlivineSettings) -> GreyMapping | None:
    """The mosaic's grey against the model's training tiles' (:mod:`._landmarks`), where it
    is off by more than the drift correction leaves; None where it is not (or cannot be told)."""
    if not settings.grey_landmarks or len(card.grey_landmarks_dn) != 2:
        return None
    reference = (float(card.grey_landmarks_dn[0]), float(card.grey_landmarks_dn[1]))
    histogram = mosaic_histogram(level)
    tolerance = settings.landmark_tolerance_dn
    modes = [x for x, _ in histogram.modes()]
    if all(any(abs(x - r) <= tolerance for x in modes) for r in reference):
        return None  # the training tiles' landmarks are the mosaic's modes: on the same scale
    found = histogram.landmarks()
    if found is None:
        return None
    mapping = GreyMapping.between(reference, found)
    if mapping is None:
        logger.warning(
            "the mosaic's grey landmarks (%.0f, %.0f DN) do not match the model's training "
            "tiles' (%.0f, %.0f DN) by a plausible BSE gain and offset, so the grey is "
            "segmented as it is; if the labels look wrong, check the drift correction against "
            "the standards, or train on this session's EDS tiles",
            *found,
            *reference,
        )
        return None
    shift = mapping.largest_shift_dn((*reference, card.normalisation.mean_dn))
    if shift <= tolerance:
        return None
    logger.warning(
        "the mosaic's BSE is off the model's training scale by gain %.4f, offset %+.0f DN "
        "(up to %.0f DN; its grey landmarks at %.0f and %.0f DN, the training tiles' at %.0f "
        "and %.0f): is the drift correction missing? Segmenting with the grey mapped back "
        "(a model from another kind of rock, whose phases lie elsewhere, may want "
        "olivine.grey_landmarks = false)",
        mapping.gain,
        mapping.offset_dn,
        shift,
        *found,
        *reference,
    )
    return mapping


def warm_up(folder: Path, settings: OlivineSettings) -> None:
    """Load the model in ``folder`` and run it once on a blank window, so that torch's import,
    the network's code and the CPU kernels' set-up (about 2.5 s on 2 cores) are done before the
    first tile waits for its labels."""
    model, _ = load_model(folder)
    runtime = choose_runtime(settings.device, settings.precision)
    network = runtime.prepare(model, inference=True).eval()
    blank = torch.zeros(1, 1, 8 * _STRIDE, 8 * _STRIDE)
    with torch.no_grad(), runtime.autocast():
        network(runtime.tensor(blank))


class OlivineSegmenter:
    """A trained olivine model applied to regions of a store's mosaic."""

    def __init__(self, store: Path, settings: OlivineSettings, name: str = "olivine") -> None:
        import zarr

        self.store, self.settings = store, settings
        model, self.card = load_model(store / "models" / name)
        self.check = CrystalCheck.from_card(self.card.crystal_check)
        self.outline = Outline.from_card(self.card.outline)
        self.runtime: Runtime = choose_runtime(settings.device, settings.precision)
        self.model = self.runtime.prepare(model, inference=True)
        self.views = inference_views(settings, self.runtime)
        arch = architecture(self.card.architecture)
        self.batch = self.runtime.batch_size(settings.window_px, arch.inference_bytes_per_px)
        self.root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="a")
        self.bse: Any = self.root["bse"]
        self.mapping = _grey_mapping(self.root["bse/0"], self.card, settings)
        self.labels, self.probability = _open_outputs(
            self.root, self.card, self.mapping, {"views": self.views, **self.runtime.describe()}
        )
        self.pixels = 0
        self.seconds = 0.0

    # -- the network on a stack of windows ------------------------------------------------
    def predict(self, stack: NDArray[np.float32]) -> NDArray[np.float32]:
        """Probabilities for a stack of windows (N, h, w), averaged over the views."""
        return view_averaged(self._predict_view, stack, self.views)

    @torch.no_grad()
    def _predict_view(self, stack: NDArray[np.float32]) -> NDArray[np.float32]:
        n, h, w = stack.shape
        ph, pw = -h % _STRIDE, -w % _STRIDE
        pad = ((0, 0), (0, ph), (0, pw))
        x = (
            np.pad(stack, pad, mode="reflect")
            if ph < h and pw < w
            else np.pad(stack, pad, mode="edge")
        )
        norm = self.card.normalisation
        x = (x - norm.mean_dn) / norm.std_dn
        out = np.empty((n, h, w), np.float32)

        def step(model: torch.nn.Module, a: int, b: int) -> None:
            xt = self.runtime.tensor(torch.from_numpy(np.ascontiguousarray(x[a:b, None])))
            with self.runtime.autocast():
                logits = model(xt)
            out[a:b] = torch.sigmoid(logits.float())[:, 0, :h, :w].cpu().numpy()

        self.model.eval()
        self.model, self.batch = run_batched(self.runtime, self.model, n, self.batch, step)
        return out

    def probabilities(
        self, image: NDArray[np.float32], overlap: int | None = None
    ) -> NDArray[np.float32]:
        s = self.settings
        return sliding_probabilities(
            image,
            self.predict,
            s.window_px,
            s.overlap_px if overlap is None else overlap,
            self.batch,
        )

    # -- regions of the mosaic -------------------------------------------------------------
    def segment_region(self, bounds: tuple[int, int, int, int]) -> RegionResult:
        """Segment one region (rows r0:r1, cols c0:c1 of level 0) with a halo of context."""
        started = time.perf_counter()
        r0, c0, r1, c1 = bounds
        rows, cols = self.bse["0"].shape
        halo = self.settings.overlap_px // 2  # the windows' taper ramp: context enough
        a0, b0, a1, b1 = (
            max(r0 - halo, 0),
            max(c0 - halo, 0),
            min(r1 + halo, rows),
            min(c1 + halo, cols),
        )
        grey = np.asarray(self.bse["0"][a0:a1, b0:b1], np.float32)
        if self.mapping is not None:
            grey = self.mapping.undo(grey)
        scanned = grey > 0
        inner = (slice(r0 - a0, r1 - a0), slice(c0 - b0, c1 - b0))
        if not scanned[inner].any():
            return RegionResult(bounds, 0, 0, 0.0)
        window = self.probabilities(grey)
        # crystals are grown and judged whole within the region and its halo, then cut to it
        mask = self.outline.apply(grey, window, (window >= self.card.dlth) & scanned)
        label = self.outline.snap(grey, self.check.apply(grey, mask))[inner]
        label = label.astype(np.uint8)
        p = np.where(scanned[inner], window[inner], 0.0)
        self.labels[0][r0:r1, c0:c1] = label
        self.probability[0][r0:r1, c0:c1] = np.rint(p * 255).astype(np.uint8)
        update_pyramid(self.labels, (r0, c0, r1, c1), "nearest")
        update_pyramid(self.probability, (r0, c0, r1, c1), "mean")
        seconds = time.perf_counter() - started
        self.pixels += (r1 - r0) * (c1 - c0)
        self.seconds += seconds
        return RegionResult(bounds, int(label.sum()), int(scanned[inner].sum()), seconds)

    def blocks(self, size: int = _BLOCK_PX) -> Iterator[tuple[int, int, int, int]]:
        """The mosaic in blocks of ``size`` px."""
        rows, cols = self.bse["0"].shape
        for r in range(0, rows, size):
            for c in range(0, cols, size):
                yield r, c, min(r + size, rows), min(c + size, cols)

    def segment_store(
        self, progress: Callable[[int, int, RegionResult], None] | None = None
    ) -> list[RegionResult]:
        """Segment the whole mosaic, in blocks much larger than a live region so that the
        halo of context each block needs costs little (live, regions come one by one)."""
        todo = list(self.blocks())
        results = []
        for i, bounds in enumerate(todo):
            result = self.segment_region(bounds)
            results.append(result)
            if progress is not None:
                progress(i + 1, len(todo), result)
        return results


def _open_outputs(
    root: Any,
    card: ModelCard,
    mapping: GreyMapping | None = None,
    inference: dict[str, Any] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Create (or open) the label image and the probability image, on ``bse/``'s grid."""
    bse = root["bse"]
    multiscales = bse.attrs["ome"]["multiscales"][0]
    levels = [bse[d["path"]] for d in multiscales["datasets"]]
    register_label(root, "olivine")
    label_meta = {
        "version": "0.5",
        "multiscales": [{**multiscales, "name": "olivine"}],
        "image-label": {
            "version": "0.5",
            "colors": [
                {"label-value": 0, "rgba": [0, 0, 0, 0]},
                {"label-value": 1, "rgba": [60, 200, 60, 160]},
            ],
            "properties": [{"label-value": 1, "class": "olivine"}],
            "source": {"image": "../../"},
        },
    }
    prob_meta = {"version": "0.5", "multiscales": [{**multiscales, "name": PROBABILITY_PATH}]}
    provenance = {
        "model": card.architecture,
        "dlth": card.dlth,
        "outline": card.outline,
        "crystal_check": card.crystal_check,
        "grey_mapping": None
        if mapping is None
        else {"gain": round(mapping.gain, 5), "offset_dn": round(mapping.offset_dn, 1)},
        "inference": inference or {},
        "scale": "probability × 255",
    }
    return (
        require_pyramid(root, LABEL_PATH, levels, label_meta, provenance),
        require_pyramid(root, PROBABILITY_PATH, levels, prob_meta, provenance),
    )
