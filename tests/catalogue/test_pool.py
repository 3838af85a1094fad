"""Catalogue blocks spread over processes: worker counts, order, and a pool that dies."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import pytest

from semlive.catalogue._pool import AUTO_MAX_WORKERS, task_map, worker_count


def test_worker_count_follows_the_setting_the_cores_and_the_tasks():
    cores = len(os.sched_getaffinity(0))
    assert worker_count("auto", 100) == min(cores, AUTO_MAX_WORKERS)
    assert worker_count(3, 100) == 3
    assert worker_count(3, 2) == 2
    assert worker_count("auto", 1) == 1
    assert worker_count(4, 0) == 1


def test_results_come_back_in_task_order_and_errors_reach_the_caller():
    with task_map(2) as map_:
        assert list(map_(abs, [-3, 2, -1, 0, -7])) == [3, 2, 1, 0, 7]
        with pytest.raises(ValueError, match="invalid literal"):
            list(map_(int, ["1", "x"]))
        assert list(map_(abs, [-5])) == [5]  # the pool lives on after a task's error


@pytest.mark.timeout(120)
def test_killed_workers_leave_their_tasks_to_this_process(caplog):
    def kill_workers():
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    with caplog.at_level(logging.WARNING), task_map(2) as map_:
        threading.Timer(2.0, kill_workers).start()  # during the spawn or while tasks sleep
        results = list(map_(time.sleep, [3.0, 3.0, 0.0, 0.0]))
        later = list(map_(abs, [-1, -2]))  # the pool is gone: this runs here at once
    assert results == [None] * 4
    assert later == [1, 2]
    assert "worker processes stopped" in caplog.text
    assert caplog.text.count("worker processes stopped") == 1
