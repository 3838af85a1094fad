"""Importing semlive must stay cheap: no torch, rich, typer or zarr, no threads."""

import json

HEAVY = ["torch", "torchvision", "rich", "typer", "zarr", "matplotlib", "dask", "sklearn"]


def test_import_semlive_loads_no_heavy_library(run_python):
    result = run_python(
        "import sys, threading, json, semlive\n"
        f"print(json.dumps({{'heavy': [m for m in {HEAVY!r} if m in sys.modules],"
        " 'threads': threading.active_count()}))"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"heavy": [], "threads": 1}


def test_semlive_exposes_version_and_error_root(run_python):
    result = run_python("import semlive; print(semlive.__version__, semlive.SemliveError.__name__)")
    assert result.returncode == 0, result.stderr
    version, root = result.stdout.split()
    assert version.count(".") == 2
    assert root == "SemliveError"
