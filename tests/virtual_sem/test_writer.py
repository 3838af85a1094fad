"""The session writer: determinism, faults, pacing, refusal of bad options, DONE last."""

import contextlib
import json
import threading
import time
from pathlib import Path

import pytest
import tifffile

from semlive.cli import main
from semlive.virtual_sem import FAULTS, simulate


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "_truth" not in p.parts
    }


def test_same_seed_gives_byte_identical_files(tmp_path):
    simulate(tmp_path / "a", "tiny", seed=11)
    simulate(tmp_path / "b", "tiny", seed=11)
    simulate(tmp_path / "c", "tiny", seed=12)
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert len(a) > 30
    assert a["tiles/r001c001.tif"] != c["tiles/r001c001.tif"]
    truth_a = (tmp_path / "a" / "_truth" / "crystals.csv").read_bytes()
    assert truth_a == (tmp_path / "b" / "_truth" / "crystals.csv").read_bytes()


def _log(session: Path) -> list[dict]:
    lines = (session / "_truth" / "writer_log.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_every_fault_kind_appears_when_asked(tiny_faulty_session):
    session = tiny_faulty_session
    log = _log(session)
    faults_of = [set(e["fault"].split("+")) - {""} for e in log]
    assert set().union(*faults_of) == set(FAULTS)
    by_fault = {f: [e for e, fs in zip(log, faults_of, strict=True) if f in fs] for f in FAULTS}
    truncated = session / by_fault["truncated"][0]["path"]
    with pytest.raises(Exception):  # noqa: B017,PT011 - any TIFF reader error is the point
        tifffile.imread(truncated)
    corrupt = session / by_fault["corrupt"][0]["path"]
    assert corrupt.read_bytes()[:4] not in (b"II*\x00", b"MM\x00*")
    bad = json.loads((session / by_fault["bad-sidecar"][0]["path"]).read_text())
    assert bad["stage_x_um"] == "NaN"
    assert by_fault["bad-sidecar"][0]["expect"] == "quarantine"
    missing_tile = json.loads((session / "_truth" / "truth.json").read_text())["faults"][
        "missing-sidecar"
    ][0]
    assert (session / "tiles" / f"{missing_tile}.tif").exists()
    assert not (session / "tiles" / f"{missing_tile}.json").exists()
    duplicates = [e["path"] for e in by_fault["duplicate"]]
    assert all(e["expect"] == "duplicate" for e in by_fault["duplicate"])
    assert {e["path"] for e in log if e["path"] in duplicates and e["fault"] == ""} == set(
        duplicates
    )
    assert all(e["expect"] == "supersede" for e in by_fault["rewrite"])
    assert all(e["expect"] == "ignore" for e in by_fault["foreign"])
    assert (session / "Thumbs.db").exists()
    assert not list(session.rglob("*.tmp"))
    late = by_fault["late-sidecar"][0]
    assert log.index(late) > max(i for i, e in enumerate(log) if e["kind"] == "tile")


def test_out_of_order_tiles_arrive_swapped(tiny_faulty_session):
    log = _log(tiny_faulty_session)
    pair = json.loads((tiny_faulty_session / "_truth" / "truth.json").read_text())["faults"][
        "out-of-order"
    ]
    first = next(i for i, e in enumerate(log) if e["tile"] == pair[0] and e["kind"] == "tile")
    second = next(i for i, e in enumerate(log) if e["tile"] == pair[1] and e["kind"] == "tile")
    assert second < first


def test_slow_write_leaves_a_partial_file_visible(tmp_path):
    out = tmp_path / "s"
    seen: list[tuple[int, int]] = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            for p in (out / "tiles").glob("*.tif") if (out / "tiles").exists() else []:
                with contextlib.suppress(FileNotFoundError):
                    seen.append((p.stat().st_size, hash(p.name)))
            time.sleep(0.002)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        simulate(out, "tiny", seed=5, faults=("slow-write",))
    finally:
        done.set()
        thread.join()
    slow = [e for e in _log(out) if "slow-write" in e["fault"]]
    assert slow
    full = {hash(Path(e["path"]).name): e["bytes"] for e in slow}
    partial = [size for size, name in seen if name in full and 0 < size < full[name]]
    assert partial, "a slowly written tile was never seen half-written"


def test_pace_follows_speed(tmp_path):
    """No file is written before its simulated time, scaled by the speed (a lower bound only:
    the machine may be slower than the SEM, never faster)."""
    speed = 1500.0
    start = time.time()
    simulate(tmp_path / "p", "tiny", seed=2, speed=speed)
    log = {e["path"]: e for e in _log(tmp_path / "p")}
    early = []
    for path, entry in log.items():
        if entry["kind"] == "sidecar":
            written = (tmp_path / "p" / path).stat().st_mtime - start
            early.append(entry["acquired_hours"] * 3600 / speed - written)
    assert len(early) == 9
    assert max(early) < 0.05
    last = max(e["acquired_hours"] for e in log.values())
    assert time.time() - start >= last * 3600 / speed


def test_done_is_written_last(tiny_faulty_session):
    done = (tiny_faulty_session / "DONE").stat().st_mtime_ns
    others = [p.stat().st_mtime_ns for p in tiny_faulty_session.rglob("*") if p.is_file()]
    assert done == max(others)
    assert _log(tiny_faulty_session)[-1]["path"] == "DONE"


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--preset", "huge"], "preset"),
        (["--grid", "0x4"], "--grid"),
        (["--overlap", "1.0"], "--overlap"),
        (["--eds-every", "0"], "--eds-every"),
        (["--faults", "gremlins"], "fault"),
        (["--speed", "-1"], "--speed"),
    ],
)
def test_bad_options_exit_2_naming_the_option(tmp_path, capsys, args, names):
    assert main(["simulate", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert names in err
    assert not (tmp_path / "x" / "DONE").exists()


def test_unwritable_or_nonempty_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["simulate", str(blocker / "session"), "--preset", "tiny"]) == 2
    assert "not writable" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    assert main(["simulate", str(tmp_path / "full"), "--preset", "tiny"]) == 2
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"


def test_simulate_command_writes_a_session(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["simulate", str(out), "--preset", "tiny", "--instant", "--seed", "9"]) == 0
    said = capsys.readouterr().out
    assert "9 BSE tiles" in said
    assert (out / "DONE").exists()
    assert json.loads((out / "session.json").read_text())["grid"]["rows"] == 3


def test_speed_and_instant_exclude_each_other(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "x"), "--speed", "5", "--instant"]) == 2
    assert "--instant" in capsys.readouterr().err


def test_grid_and_overlap_override_the_preset(tmp_path):
    simulate(tmp_path / "g", "tiny", seed=1, grid=(2, 4), overlap_fraction=0.2)
    meta = json.loads((tmp_path / "g" / "session.json").read_text())
    assert meta["grid"] == {"rows": 2, "cols": 4, "overlap_fraction": 0.2}
    assert len(list((tmp_path / "g" / "tiles").glob("r*c*.json"))) == 8


def test_eds_every_sets_how_many_tiles_have_eds_maps(tmp_path):
    every = simulate(tmp_path / "all", "tiny", seed=1, eds_every=1)
    assert every.eds_tiles == every.tiles == 9
    assert len(list((tmp_path / "all" / "tiles").glob("*.eds.tif"))) == 9
    assert simulate(tmp_path / "half", "tiny", seed=1, eds_every=2).eds_tiles == 6  # rows 0, 2
