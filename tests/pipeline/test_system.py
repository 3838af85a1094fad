"""The run's process gives freed memory back to the system after each job."""

import json

import pytest

from semlive.pipeline._system import _malloc_trim

# A job in a worker thread allocates many mid-sized buffers (as training tiles and activations
# do), keeps a scattering of small ones, and frees the rest: glibc keeps the freed pages in that
# thread's arena until they are trimmed.
JOB_IN_A_THREAD = """
import json, threading
import numpy as np
from semlive.pipeline._executor import LocalExecutor
from semlive.pipeline._jobs import JobSpec
from semlive.pipeline._system import _rss_bytes

def rss_mb():
    return _rss_bytes() / 2**20

kept = []
def job(spec):
    np.ones(200_000)  # a freed 1.6 MB buffer: glibc serves smaller ones from its heap
    buffers = []
    for i in range(1000):  # ~0.5 GB in 480 kB pieces, with a 16 kB one kept after every 40th
        buffers.append(np.ones(60_000))
        if i % 40 == 0:
            kept.append(np.ones(2_000))
    del buffers
    return {"rss_mb": rss_mb()}

executor = LocalExecutor()
after_job = executor.submit("train", job, JobSpec("x", "x", "", "{}", {})).result()["rss_mb"]
executor.close()  # the worker trims after handing the result over, then ends
for thread in threading.enumerate():
    if thread.name.startswith("semlive-"):
        thread.join(timeout=60)
print(json.dumps({"after_job": after_job, "after_trim": rss_mb()}))
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="no glibc malloc_trim on this system")
def test_a_jobs_freed_memory_goes_back_after_the_job(run_python):
    result = run_python(JOB_IN_A_THREAD)
    assert result.returncode == 0, result.stderr
    rss = json.loads(result.stdout.splitlines()[-1])
    assert rss["after_trim"] < 0.5 * rss["after_job"], rss


# A training step's pattern: large buffers (activations) allocated and freed pass after pass,
# with smaller ones kept between them. Once glibc has raised its mmap threshold above them (it does
# on the first free of a large buffer), they come from the heap and stay resident between
# passes; with the threshold fixed they go back to the system as they are freed.
ACTIVATIONS = """
import json, os
import numpy as np
from semlive.pipeline._system import _rss_bytes, return_large_buffers

if os.environ["THRESHOLD"] == "fixed":
    assert return_large_buffers()
np.ones(3_750_000)  # a freed 30 MB buffer: by default the threshold rises to 30 MB
kept = []
buffers = []
for i in range(15):  # 300 MB in 20 MB pieces, with a 1 MB one kept after each (larger than
    buffers.append(np.ones(2_500_000))  # the holes imports leave in the heap: it lands here)
    kept.append(np.ones(125_000))
peak = _rss_bytes()
del buffers
print(json.dumps({"peak": peak, "after": _rss_bytes()}))
"""


@pytest.mark.skipif(_malloc_trim() is None, reason="not glibc")
def test_large_buffers_go_back_as_they_are_freed(run_python):
    given_back = {}
    for mode in ("default", "fixed"):
        result = run_python(ACTIVATIONS, THRESHOLD=mode)
        assert result.returncode == 0, result.stderr
        rss = json.loads(result.stdout.splitlines()[-1])
        given_back[mode] = (rss["peak"] - rss["after"]) / 2**20  # MiB
    assert given_back["fixed"] > 250, given_back  # nearly all of the 286 MiB
    assert given_back["default"] < 50, given_back  # kept in the heap: what the setting is for
