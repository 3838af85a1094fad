"""Shared fixtures for the semlive test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def run_python():
    """Run a Python snippet in a fresh interpreter (clean sys.modules) and return the result."""

    def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, **env},
            timeout=240,
            check=False,
        )

    return _run


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that need it skip with the reason if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real SEM files not found at {SHARED_DATA} (shared/ beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_session(tmp_path_factory) -> Path:
    """A `small` session (36 tiles) simulated once for the whole test run, seed 0."""
    from semlive.virtual_sem import simulate

    out = tmp_path_factory.mktemp("small") / "session"
    simulate(out, "small", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_faulty_session(tmp_path_factory) -> Path:
    """A `tiny` session with every fault kind, simulated once, seed 3."""
    from semlive.virtual_sem import simulate

    out = tmp_path_factory.mktemp("tiny-faults") / "session"
    simulate(out, "tiny", seed=3, faults=("all",))
    return out


@pytest.fixture(scope="session")
def read_truth_map():
    """Read a whole truth map of a simulated session: ``read_truth_map(session, "phase")``."""
    import zarr

    def _read(session: Path, name: str):
        return zarr.open_group(str(session / "_truth" / "maps.zarr"), mode="r")[name][...]

    return _read


def stitch_corrected(session: Path, store: Path) -> Path:
    """Ingest and stitch ``session`` into ``store`` with drift correction, as semlive does."""
    from semlive.calibration import drift_correction
    from semlive.settings import AcquisitionSettings, Settings
    from semlive.streaming import stitch_session

    fast = AcquisitionSettings(
        observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
    )
    settings = Settings(acquisition=fast)
    for _ in stitch_session(
        session, store, settings, correction=drift_correction(settings.calibration)
    ):
        pass
    return store


@pytest.fixture(scope="session")
def small_store(small_session, tmp_path_factory) -> Path:
    """``small_session`` stitched with drift correction (read-only: copy it to write)."""
    return stitch_corrected(small_session, tmp_path_factory.mktemp("small-store") / "store")


@pytest.fixture(scope="session")
def stitch():
    """``stitch(session, store)``: ingest and stitch with drift correction."""
    return stitch_corrected
