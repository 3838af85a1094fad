"""The catalogue's blocks spread over processes.

Blocks of the mosaic are labelled, measured and written independently of each other, so on a
machine with several cores each goes to its own process; the results are gathered in block
order, so a parallel catalogue is identical to a serial one. Processes are spawned, not forked:
the caller may hold zarr's I/O thread and the live pipeline's threads, which a fork would copy
in an unknown state. Each process holds one block at a time, so memory grows with the number of
workers and the block size, never with the section.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

__all__ = ["AUTO_MAX_WORKERS", "TaskMap", "task_map", "worker_count"]

log = logging.getLogger(__name__)

# "auto" uses the cores this process may run on, up to this many (each worker holds a block)
AUTO_MAX_WORKERS = 4

TaskMap = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def worker_count(setting: int | Literal["auto"], tasks: int) -> int:
    """Processes to use for ``tasks`` independent tasks: the setting, or the available cores
    (at most :data:`AUTO_MAX_WORKERS`) for ``"auto"``; never more than the tasks."""
    if setting == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        wanted = min(cores or os.cpu_count() or 1, AUTO_MAX_WORKERS)
    else:
        wanted = setting
    return max(1, min(wanted, tasks))


@contextmanager
def task_map(workers: int) -> Iterator[TaskMap]:
    """A ``map`` over ``workers`` spawned processes (the builtin ``map`` for one): results come
    back in the order of the tasks; a task's exception is raised in the caller. Should the
    processes die (killed, out of memory, or a script without the ``__main__`` guard that
    spawning needs), the tasks not yet done run in this process, with a warning."""
    if workers <= 1:
        yield map
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    broken = False

    def ordered(function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        nonlocal broken
        tasks = list(tasks)
        done = 0
        if not broken:
            try:
                for result in pool.map(function, tasks):
                    yield result
                    done += 1
            except BrokenProcessPool as exc:
                broken = True
                log.warning(
                    "the %d worker processes stopped (%s); going on in this process. Workers "
                    "are spawned, so a script must run semlive under "
                    '`if __name__ == "__main__":`; catalogue.workers = 1 does without them',
                    workers,
                    exc,
                )
        for task in tasks[done:]:
            yield function(task)

    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        yield ordered
