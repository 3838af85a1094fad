"""Importing semlive.physics is cheap: xraydb and scipy load on first use only."""

from __future__ import annotations

import json

import semlive.physics as physics


def test_public_api_is_explicit() -> None:
    expected = {
        "Composition", "Mineral", "MineralLibrary", "load_library", "mean_atomic_number",
        "backscatter_yield", "EdsDetector", "expected_spectrum", "sample_spectrum",
        "line_energies_ev", "element_intensity_factors",
    }  # fmt: skip
    assert expected <= set(physics.__all__)
    for name in physics.__all__:
        assert getattr(physics, name).__module__.startswith("semlive.physics")


def test_import_does_not_load_xraydb_or_scipy(run_python) -> None:  # type: ignore[no-untyped-def]
    result = run_python(
        "import sys, json, semlive.physics\n"
        "print(json.dumps([m for m in ('xraydb', 'scipy', 'torch') if m in sys.modules]))"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
