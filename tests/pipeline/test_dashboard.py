"""The dashboard: every panel from a real status, a compact view in a small terminal, and
`semlive run` driven in a real terminal (tmux)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from rich.console import Console

from semlive.catalogue import summarize
from semlive.dashboard import render
from semlive.pipeline import Pipeline
from semlive.settings import Settings

SMALL_AT_40 = ("--preset", "small", "--speed", "40")
PANELS = (
    "tile plan",
    "ingest and jobs",
    "stitching QC and drift",
    "segmentation QA and EDS advice",
    "catalogue",
    "recent events",
)


def _text(status: dict, width: int, height: int) -> str:
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(render(status, width, height))
    return console.export_text()


def test_every_panel_from_a_stitched_store_and_a_compact_view(small_session, small_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(small_store, store)
    pipeline = Pipeline(small_session, store, Settings())
    pipeline.catalogue = summarize([])
    pipeline.recent.append("19:00:00 tile r000c000 taken and placed")
    status = pipeline.snapshot()
    assert status["stitching"]["tiles_placed"] == 36
    assert status["drift"]["standards_measured"] > 0
    big = _text(status, 150, 45)
    for title in PANELS:
        assert title in big
    assert "36 tiles placed" in big
    small = _text(status, 70, 20)
    assert "tile plan" not in small
    assert small.startswith("semlive scanning")


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


@pytest.mark.long
def test_semlive_run_in_a_terminal_shows_the_panels_updating(fast_config, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (Debian package tmux; make test-long installs it)")
    session, store = tmp_path / "session", tmp_path / "store"
    simulate = subprocess.Popen(
        [sys.executable, "-m", "semlive", "simulate", str(session), *SMALL_AT_40],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not (session / "session.json").is_file():
        time.sleep(0.2)
    name = f"semlive-test-{os.getpid()}"
    command = (  # without the test runner's COLUMNS and LINES: the terminal's own size
        f"env -u COLUMNS -u LINES {sys.executable} -m semlive run {session} --store {store} "
        f"--config {fast_config}; "
        "echo EXITED $?; sleep 60"
    )
    _tmux("new-session", "-d", "-s", name, "-x", "160", "-y", "50", command)
    try:
        screens = []
        for _ in range(3):
            time.sleep(12)
            screens.append(_tmux("capture-pane", "-p", "-t", name))
        for title in PANELS:
            assert title in screens[-1], screens[-1]
        assert len(set(screens)) == 3  # it redraws as the session goes on
        tiles = [int(re.search(r"tiles\s+(\d+) \(", s).group(1)) for s in screens]
        assert tiles == sorted(tiles)
        assert tiles[-1] > tiles[0]
        _tmux("resize-window", "-t", name, "-x", "80", "-y", "20")
        time.sleep(2)
        assert _tmux("capture-pane", "-p", "-t", name).lstrip().startswith("semlive ")
        _tmux("send-keys", "-t", name, "C-c")
        deadline = time.time() + 60
        while "EXITED" not in (screen := _tmux("capture-pane", "-p", "-t", name)):
            assert time.time() < deadline, screen
            time.sleep(0.5)
        assert "EXITED 130" in screen
        assert (store / "ledger.sqlite").is_file()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], check=False, timeout=30)
        simulate.kill()
        simulate.wait()
