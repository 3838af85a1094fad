"""Fixtures of the live-session tests: a fast training configuration and runs of `semlive run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Training cut to a few short epochs so a whole `small` session runs in a few minutes; the
# pipeline's behaviour (jobs, restarts, executors) does not depend on how well the model is
# trained, and the accuracy of a fully trained model is issue 7's test. The sessions are
# simulated before the run; replay_live trains them as if they were being acquired.
FAST = """
[acquisition]
observer = "polling"
poll_interval_s = 0.05
settle_polls = 1

[olivine]
epochs = 6
patches_per_epoch = 64
batch_size = 8
patch_px = 192

[pipeline]
replay_live = true
train_first_eds_tiles = 3
catalogue_interval_s = 5.0
status_interval_s = 0.5
advice = false
"""


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "fast.toml"
    path.write_text(FAST, encoding="utf-8")
    return path


def semlive_run(
    session: Path, store: Path, config: Path, *extra: str, **popen: object
) -> subprocess.Popen[str]:
    """`semlive run --headless --exit-when-done` in a fresh process."""
    command = [sys.executable, "-m", "semlive", "run", str(session), "--store", str(store)]
    command += ["--config", str(config), "--headless", "--exit-when-done", *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(command, text=True, env=env, **popen)  # type: ignore[call-overload]


@pytest.fixture(scope="session")
def reference_run(small_session, fast_config, tmp_path_factory) -> Path:
    """`small_session` run once, uninterrupted, by the local executor: its store."""
    store = tmp_path_factory.mktemp("reference") / "store"
    log = store.parent / "run.jsonl"
    with log.open("w") as out:
        process = semlive_run(small_session, store, fast_config, stdout=out, stderr=subprocess.PIPE)
        _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return store
