"""Where a network runs and in which arithmetic; batches sized from free memory; OOM fallback.

``auto`` picks CUDA when torch sees a GPU, else the CPU. On CUDA inference runs under bfloat16
(or float16) autocast; on the CPU in float32 with channels-last tensors, which measured faster
on our 2-core CPU than bfloat16 autocast for both DeepLabV3 variants (see
``benchmarks/bench_olivine.py``). A CUDA out-of-memory error halves the batch and retries; at a
batch of one it moves the network to the CPU with a warning.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch
from torch import nn

__all__ = ["Runtime", "choose_runtime", "run_batched"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Precision = Literal["auto", "float32", "bfloat16", "float16"]

_MAX_BATCH = 32
_MAX_BATCH_CPU = 2


@dataclass(slots=True)
class Runtime:
    device: torch.device
    precision: Literal["float32", "bfloat16", "float16"]

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[
            self.precision
        ]

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        dtype = self.autocast_dtype
        if dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=dtype):
            yield

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def tensor(self, array: torch.Tensor) -> torch.Tensor:
        x = array.to(self.device, non_blocking=True)
        if self.device.type == "cpu" and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def batch_size(self, window_px: int, bytes_per_px: int) -> int:
        """Windows per batch that fit in half the free memory of the device."""
        need = max(1, window_px * window_px * bytes_per_px)
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            most = _MAX_BATCH
        else:  # a CPU gains nothing from more windows at once, and a laptop's memory is shared
            free, most = _available_ram(), _MAX_BATCH_CPU
        return int(max(1, min(most, (free // 2) // need)))


def choose_runtime(device: str = "auto", precision: Precision = "auto") -> Runtime:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        logger.warning("device cuda asked for but torch sees no GPU; running on the CPU")
        device = "cpu"
    dev = torch.device(device)
    if precision == "auto":
        precision = "bfloat16" if dev.type == "cuda" else "float32"
    return Runtime(dev, precision)


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return int(pages * size // 4)


def run_batched(
    runtime: Runtime,
    model: nn.Module,
    count: int,
    batch: int,
    step: Callable[[nn.Module, int, int], None],
) -> tuple[nn.Module, int]:
    """Call ``step(model, start, stop)`` over ``range(count)`` in batches; on CUDA out of memory
    halve the batch and retry, and at one window move to the CPU. Returns the model and batch
    size in use at the end (the caller keeps them for the next call)."""
    start = 0
    while start < count:
        stop = min(count, start + batch)
        try:
            step(model, start, stop)
        except torch.OutOfMemoryError:
            if runtime.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            if batch > 1:
                batch //= 2
                logger.warning("GPU out of memory; retrying with %d windows a batch", batch)
                continue
            logger.warning("GPU out of memory even for one window; continuing on the CPU")
            runtime.device, runtime.precision = torch.device("cpu"), "float32"
            model = runtime.prepare(model)
            continue
        start = stop
    return model, batch
