"""Where a network runs and in which arithmetic; batches sized from free memory; OOM fallback.

``auto`` picks CUDA when torch sees a GPU, else the CPU. On CUDA inference runs under bfloat16
(or float16) autocast. On the CPU a network prepared for inference has its batch norms folded
into the convolutions before it and runs on channels-last tensors, under bfloat16 autocast
where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), else in float32: with the batch
norms folded, bfloat16 ran DeepLabV3+ MobileNetV3 twice as fast as float32 on our 2-core CPU
(3.9 against 2.0 Mpx/s; unfolded, each batch norm between two bfloat16 convolutions ate the
gain), with no loss of accuracy (see ``benchmarks/bench_olivine.py``). A CUDA out-of-memory
error halves the batch and retries; at a batch of one it moves the network to the CPU with a
warning.
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

__all__ = ["Runtime", "choose_runtime", "native_bfloat16", "run_batched"]

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

    def prepare(self, model: nn.Module, inference: bool = False) -> nn.Module:
        """``model`` on the device; for ``inference`` on the CPU, in eval mode with its batch
        norms folded into the convolutions before them (a copy; ``model`` itself is only put
        in eval mode, its batch norms kept for training)."""
        model = model.to(self.device)
        if self.device.type == "cpu":
            if inference:
                model = _folded(model)
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def describe(self) -> dict[str, str]:
        return {"device": self.device.type, "precision": self.precision}

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
        precision = "bfloat16" if dev.type == "cuda" or native_bfloat16() else "float32"
    return Runtime(dev, precision)


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere torch
    emulates it, slower than float32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # torch.cpu; absent: no
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _folded(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with each batch norm that follows a convolution (and
    only it) folded into that convolution, or ``model`` itself in eval mode where torch.fx
    cannot trace it."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    try:
        traced = torch.fx.symbolic_trace(copy.deepcopy(model))
    except Exception as error:  # a network fx cannot trace still runs, unfolded
        logger.debug("batch norms left unfolded (%s: %s)", type(error).__name__, error)
        return model
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        source = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and len(source.users) == 1
            and isinstance(modules[node.target], nn.BatchNorm2d)
            and isinstance(modules[source.target], nn.Conv2d)
            and modules[node.target].track_running_stats
        ):
            continue
        conv = fuse_conv_bn_eval(modules[source.target], modules[node.target])
        parent, _, name = str(source.target).rpartition(".")
        setattr(traced.get_submodule(parent) if parent else traced, name, conv)
        modules[source.target] = conv
        node.replace_all_uses_with(source)
        traced.graph.erase_node(node)
    traced.graph.lint()
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


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
            model = runtime.prepare(model, inference=True)
            continue
        start = stop
    return model, batch
