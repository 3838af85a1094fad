"""CPU and memory of this process (and its children), from /proc and resource, for the status."""

from __future__ import annotations

import ctypes
import os
import resource
import time
from functools import cache

__all__ = ["SystemMeter", "release_free_memory", "return_large_buffers"]

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
LARGE_BUFFER_BYTES = 16 * 2**20  # lower costs a training step time (mapping fresh pages)


class SystemMeter:
    """CPU use since the last reading, resident and peak memory."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = self._cpu_seconds()

    @staticmethod
    def _cpu_seconds() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def read(self) -> dict[str, float]:
        wall, cpu = time.monotonic(), self._cpu_seconds()
        share = (cpu - self._cpu) / max(wall - self._wall, 1e-6)
        self._wall, self._cpu = wall, cpu
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "cpu_percent": round(100 * share, 1),
            "cores": float(os.cpu_count() or 1),
            "rss_gb": round(_rss_bytes() / 2**30, 3),
            "peak_rss_gb": round(peak_kib * 1024 / 2**30, 3),
            "cpu_seconds": round(cpu, 1),
        }


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@cache
def _glibc(name: str, argtypes: tuple[type, ...]) -> ctypes._NamedFuncPointer | None:
    """The C library's function ``name`` (returning int), or None where it has none (glibc's
    ``malloc_trim`` and ``mallopt`` are missing on macOS, musl, Windows)."""
    try:
        function = ctypes.CDLL(None)[name]
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes, function.restype = list(argtypes), ctypes.c_int
    return function


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    return _glibc("malloc_trim", (ctypes.c_size_t,))


def return_large_buffers(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Have glibc give every buffer of ``threshold`` bytes or more its own mapping, returned
    to the system when freed (``mallopt(M_MMAP_THRESHOLD)``; elsewhere a no-op, False).

    By default glibc raises that threshold each time such a buffer is freed, up to 32 MiB,
    after which a training step's largest activations come from the heap and stay resident
    between passes. Measured on ``section``'s 300 EDS tiles, the training job's peak was 1.44
    GB by default and 1.35 GB with 16 MiB, at the same speed; 4 MiB gave 1.30 GB and 1 MiB
    1.25 GB, but a step took 17 % and 29 % longer (fresh pages mapped every pass)."""
    mallopt = _glibc("mallopt", (ctypes.c_int, ctypes.c_int))
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere a
    no-op). A job's large buffers (training tiles, activations, region windows) are freed
    when it ends, but glibc keeps the freed pages in the arena of the thread that used them:
    over a section the run's own process grew to 2.7 GB of which the export needed 0.35."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
