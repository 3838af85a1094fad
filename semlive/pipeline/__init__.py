"""The live session: acquisition events → stitching → jobs, with a status for the dashboard.

:class:`Pipeline` runs ``semlive run``: stitching in one thread, and jobs (olivine training and
inference, GDLS, calibration, the catalogue) in lanes on a local or a Dask executor, each job
idempotent and recorded in the ledger so a restart redoes only what was not done.
"""

from semlive.pipeline._evaluate import evaluate_store
from semlive.pipeline._executor import DaskExecutor, Executor, LocalExecutor, open_executor
from semlive.pipeline._jobs import JobBook, JobSpec, run_job
from semlive.pipeline._run import STATUS_FILE, Pipeline, RunResult
from semlive.pipeline._status import TILE_STATES, ledger_status

__all__ = [
    "STATUS_FILE",
    "TILE_STATES",
    "DaskExecutor",
    "Executor",
    "JobBook",
    "JobSpec",
    "LocalExecutor",
    "Pipeline",
    "RunResult",
    "evaluate_store",
    "ledger_status",
    "open_executor",
    "run_job",
]
