"""Where the pipeline's jobs run: threads of this process, or a Dask cluster.

Both take a job function and its :class:`JobSpec` and give back a future. The pipeline keeps at
most one job of each lane running (a lane writes one part of the store), so the executors need
no ordering of their own. Local workers are daemon threads: a stop (Ctrl-C) does not wait for a
long training to end (its epochs are saved; it resumes on the next start), and torch releases
the GIL, so inference, training and GDLS overlap on a multi-core CPU.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from semlive.errors import UsageError
from semlive.pipeline._jobs import JobSpec
from semlive.pipeline._system import release_free_memory

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "open_executor"]

log = logging.getLogger(__name__)

JobFunction = Callable[[JobSpec], dict[str, Any]]


class Handle(Protocol):
    def done(self) -> bool: ...
    def result(self) -> Any: ...


class Executor(Protocol):
    name: str

    def submit(self, lane: str, function: JobFunction, spec: JobSpec) -> Handle: ...
    def close(self) -> None: ...


class LocalExecutor:
    """One daemon worker thread per lane."""

    name = "local"

    def __init__(self) -> None:
        self._queues: dict[str, queue.SimpleQueue[Any]] = {}

    def submit(self, lane: str, function: JobFunction, spec: JobSpec) -> Future[dict[str, Any]]:
        if lane not in self._queues:
            self._queues[lane] = queue.SimpleQueue()
            threading.Thread(
                target=_work, args=(self._queues[lane],), name=f"semlive-{lane}", daemon=True
            ).start()
        future: Future[dict[str, Any]] = Future()
        self._queues[lane].put((future, function, spec))
        return future

    def close(self) -> None:
        for q in self._queues.values():
            q.put(None)


def _work(jobs: queue.SimpleQueue[Any]) -> None:
    while (item := jobs.get()) is not None:
        future, function, spec = item
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(function(spec))
        except BaseException as exc:  # handed to the pipeline, which reports it
            future.set_exception(exc)
        del item, future, function, spec  # the job's buffers go before the heap is trimmed
        try:
            release_free_memory()
        except Exception:  # never the lane's end: the next jobs must still run
            log.exception("could not return freed memory to the system")


class DaskExecutor:
    """Jobs on a Dask cluster: at ``address``, or a LocalCluster of this machine's cores."""

    name = "dask"

    def __init__(self, address: str | None = None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(
                "--dask needs Dask's distributed package, which is not installed; install it "
                "(pip install 'dask[distributed]', or semlive's 'dask' extra)"
            ) from None
        self.cluster: Any = None
        if address in (None, "", "local"):
            # torch as many threads as in this process (Dask sets 1): float sums, and so the
            # trained model, depend on the thread count
            threads = str(os.cpu_count() or 1)
            env = {
                k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
            }
            self.cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=1,
                threads_per_worker=4,
                processes=True,
                dashboard_address=None,
                env=env,
            )
            self.client: Any = Client(self.cluster)  # type: ignore[no-untyped-call]
        else:
            try:
                self.client = Client(address, timeout=30)  # type: ignore[no-untyped-call]
            except OSError as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {address} ({exc}); expected an address "
                    "like tcp://host:8786 of a running scheduler — start one "
                    "(dask scheduler) or give --dask local"
                ) from None
        self.address = str(self.client.scheduler.address)

    def submit(self, lane: str, function: JobFunction, spec: JobSpec) -> Any:
        key = f"{spec.kind}-{spec.key}-{uuid.uuid4().hex}"
        return self.client.submit(function, spec, pure=False, key=key)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def open_executor(dask: str | None) -> Executor:
    """The local executor, or Dask when ``dask`` is given ("local": a LocalCluster)."""
    if dask is None:
        return LocalExecutor()
    return DaskExecutor(dask)
