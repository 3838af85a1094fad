"""Tiles first: training gives way to tile segmentation on a shared CPU.

While a placed tile waits for its labels, the training and advice jobs (threads of the same
process, with the local executor) wait between optimiser steps, so on a small CPU a tile is not
segmented beside a minute of training. A job never waits longer in all than it has worked, so
training goes on at half speed or better however fast tiles come. The gate is found by the
run's id in this process: a job run on a Dask worker (another process) finds none and never
waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["TileGate"]


class TileGate:
    """Open while no tile waits for its labels; registered under ``run`` until :meth:`close`."""

    _open: ClassVar[dict[str, threading.Event]] = {}

    def __init__(self, run: str) -> None:
        self.run = run
        self.event = TileGate._open.setdefault(run, threading.Event())
        self.event.set()

    def tiles_waiting(self, waiting: bool) -> None:
        if waiting:
            self.event.clear()
        else:
            self.event.set()

    def close(self) -> None:
        self.event.set()  # a training still waiting goes on
        TileGate._open.pop(self.run, None)

    @classmethod
    def wait_hook(cls, run: str | None) -> Callable[[Any], None] | None:
        """A training progress callback (one call per step) that waits while ``run``'s tiles
        wait, for no longer in all than the job has worked; None where there is no gate."""
        event = None if run is None else cls._open.get(run)
        if event is None:
            return None
        started = time.monotonic()
        waited = 0.0

        def wait(_progress: Any) -> None:
            nonlocal waited
            worked = time.monotonic() - started - waited
            if event.is_set() or worked <= waited:
                return
            before = time.monotonic()
            event.wait(worked - waited)
            waited += time.monotonic() - before

        return wait
