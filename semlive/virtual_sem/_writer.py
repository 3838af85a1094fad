"""Write a simulated session folder in acquisition order, at a chosen pace, with faults.

Pace: a file acquired ``h`` simulated hours into the session is written ``h·3600 / speed``
wall-clock seconds after the start (``speed=None``: as fast as possible). Faults, each on its own
tiles, chosen from the seed:

=================  ===============================================================  ==========
fault              what the SEM side does                                           expect
=================  ===============================================================  ==========
slow-write         writes a tile in four parts with pauses (half-written file seen)  ingest
rename             writes ``NAME.tmp`` and renames it into place                    ingest
truncated          the tile's TIFF stops half-way                                   quarantine
corrupt            the tile's TIFF has garbage where its header should be           quarantine
duplicate          rewrites a tile at the end with identical bytes                  duplicate
rewrite            re-acquires a tile at the end (new noise, new time)              supersede
out-of-order       two consecutive tiles arrive swapped                             ingest
missing-sidecar    a tile's sidecar never arrives                                   incomplete
late-sidecar       a tile's sidecar arrives only at the end of the session           ingest
foreign            unrelated and temporary files appear in the folder               ignore
bad-sidecar        a sidecar names another tile and has a non-numeric position      quarantine
=================  ===============================================================  ==========

Every file written is logged to ``_truth/writer_log.jsonl`` with its fault and the outcome a
correct reader should reach (the ``expect`` column); ``DONE`` is written last.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from semlive.virtual_sem._session import Item, VirtualSession, json_bytes

__all__ = ["FAULTS", "SessionWriter"]

FAULTS = (
    "slow-write",
    "rename",
    "truncated",
    "corrupt",
    "duplicate",
    "rewrite",
    "out-of-order",
    "missing-sidecar",
    "late-sidecar",
    "foreign",
    "bad-sidecar",
)
_CONTENT_FAULTS = (
    "truncated",
    "corrupt",
    "duplicate",
    "rewrite",
    "missing-sidecar",
    "late-sidecar",
    "bad-sidecar",
)
_FOREIGN = {
    "Thumbs.db": b"\x00" * 64,
    "notes.txt": b"operator: started the overnight run\n",
    "tiles/~r000c000.tif": b"lock",
    "tiles/.DS_Store": b"\x00\x00\x00\x01Bud1",
    "spectra/field-99.npz.part": b"PK\x03\x04",
    "tiles/overview.png": b"\x89PNG\r\n\x1a\n",
}


@dataclass
class SessionWriter:
    session: VirtualSession
    out: Path
    speed: float | None = None  # None: as fast as possible
    faults: tuple[str, ...] = ()
    log: list[dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._targets = self._choose_targets()
        self._late: list[Item] = []
        self._repeats: list[Item] = []
        self._start = time.monotonic()

    def _choose_targets(self) -> dict[str, list[str]]:
        """Which tiles each fault hits: content faults on distinct tiles, the rest anywhere."""
        tiles = [t.name for t in self.session.plan.tiles]
        rng = np.random.default_rng([self.session.plan.seed & 0xFFFFFFFF, 77])
        order = list(rng.permutation(len(tiles)))
        targets: dict[str, list[str]] = {}
        if "out-of-order" in self.faults:
            i = next((i for i in order if i > 0), None)
            if i is not None:
                order.remove(i)
                order.remove(i - 1) if i - 1 in order else None
                targets["out-of-order"] = [tiles[i - 1], tiles[i]]
        for fault in (f for f in _CONTENT_FAULTS if f in self.faults):
            targets[fault] = [tiles[order.pop()]] if order else []
        for fault in ("slow-write", "rename"):
            if fault in self.faults:
                picks = rng.choice(len(tiles), min(2, len(tiles)), replace=False)
                targets[fault] = [tiles[int(i)] for i in picks]
        return targets

    def _faults_of(self, item: Item) -> str:
        """Every fault that touches this file, joined by '+' ('' for none)."""
        names = []
        if item.tile is not None and item.kind in ("tile", "eds", "sidecar"):
            names = [f for f in ("out-of-order", "missing-sidecar") if self._hit(f, item.tile)]
            if item.kind == "tile":
                names += [f for f in ("slow-write", "rename") if self._hit(f, item.tile)]
        return "+".join(names)

    def _hit(self, fault: str, tile: str | None) -> bool:
        return tile is not None and tile in self._targets.get(fault, [])

    # -- writing -------------------------------------------------------------------------
    def run(self) -> None:
        if "foreign" in self.faults:
            for name, data in list(_FOREIGN.items())[:2]:
                self._write(
                    Item(0.0, name, "foreign", None, partial(bytes, data)), "foreign", "ignore"
                )
        foreign_rest = list(_FOREIGN.items())[2:] if "foreign" in self.faults else []
        for item in self._ordered(self.session.items()):
            if foreign_rest and item.kind == "sidecar":
                name, data = foreign_rest.pop()
                self._write(
                    Item(item.hours, name, "foreign", None, partial(bytes, data)),
                    "foreign",
                    "ignore",
                )
            self._emit(item)
        for item in self._repeats:
            self._repeat(item)
        for item in self._late:
            self._write(item, "late-sidecar", "ingest")

    def _ordered(self, items: Iterator[Item]) -> Iterator[Item]:
        """Swap the files of the out-of-order pair; everything else in acquisition order."""
        pair = self._targets.get("out-of-order", [])
        held: list[Item] = []
        for item in items:
            if pair and item.tile == pair[0]:
                held.append(item)
                continue
            yield item
            if pair and item.tile == pair[1] and item.kind == "sidecar":
                yield from held
                held.clear()
        yield from held

    def _emit(self, item: Item) -> None:
        tile = item.tile
        if item.kind == "sidecar" and self._hit("missing-sidecar", tile):
            return
        if item.kind == "sidecar" and self._hit("late-sidecar", tile):
            self._late.append(item)
            return
        if item.kind == "sidecar" and self._hit("bad-sidecar", tile):
            bad = json.loads(item.make())
            bad.update(tile="r999c999", stage_x_um="NaN")
            self._write(
                Item(item.hours, item.path, item.kind, tile, lambda: json_bytes(bad)),
                "bad-sidecar",
                "quarantine",
            )
            return
        if item.kind == "tile" and self._hit("truncated", tile):
            data = item.make()
            self._write(
                Item(item.hours, item.path, item.kind, tile, lambda: data[: len(data) // 2]),
                "truncated",
                "quarantine",
            )
            return
        if item.kind == "tile" and self._hit("corrupt", tile):
            garbled = bytearray(item.make())
            garbled[:16] = b"this is no TIFF!"
            self._write(
                Item(item.hours, item.path, item.kind, tile, partial(bytes, garbled)),
                "corrupt",
                "quarantine",
            )
            return
        self._write(item, self._faults_of(item), self._expect(item))
        if item.kind == "sidecar" and (self._hit("duplicate", tile) or self._hit("rewrite", tile)):
            self._repeats.append(item)  # the SEM goes back to it at the end of the session

    def _expect(self, item: Item) -> str:
        if item.kind in ("tile", "eds", "sidecar") and item.tile is not None:
            if self._hit("missing-sidecar", item.tile):
                return "incomplete"
            if (
                self._hit("bad-sidecar", item.tile)
                or self._hit("truncated", item.tile)
                or self._hit("corrupt", item.tile)
            ):
                return "quarantine"
        return "ingest"

    def _repeat(self, sidecar: Item) -> None:
        """Write a tile again: the same bytes (duplicate) or a re-acquisition (rewrite)."""
        plan = self.session.plan
        index = next(i for i, t in enumerate(plan.tiles) if t.name == sidecar.tile)
        tile = plan.tiles[index]
        when = plan.end_hours
        rendered = self.session.render_tile(tile)
        if self._hit("duplicate", tile.name):
            data = self.session.tile_bse(tile, rendered, index)
            again = json.loads(sidecar.make())
            fault, expect = "duplicate", "duplicate"
        else:
            data = self.session.tile_bse(tile, rendered, index, version=1)
            again = self.session.sidecar(tile, hours=when)
            fault, expect = "rewrite", "supersede"
        base = sidecar.path[: -len(".json")]
        self._write(Item(when, f"{base}.tif", "tile", tile.name, lambda: data), fault, expect)
        self._write(
            Item(when, sidecar.path, "sidecar", tile.name, lambda: json_bytes(again)),
            fault,
            expect,
        )

    def _write(self, item: Item, fault: str, expect: str) -> None:
        self._wait(item.hours)
        data = item.make()
        target = self.out / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if "slow-write" in fault.split("+"):
            with target.open("wb") as f:
                for part in np.array_split(np.frombuffer(data, dtype=np.uint8), 4):
                    f.write(part.tobytes())
                    f.flush()
                    time.sleep(0.05 if self.speed is None else min(2.0, 5.0 / self.speed))
        elif "rename" in fault.split("+"):
            temp = target.with_name(target.name + ".tmp")
            temp.write_bytes(data)
            os.replace(temp, target)
        else:  # in place, as most SEM software writes
            target.write_bytes(data)
        self.log.append(
            {
                "path": item.path,
                "kind": item.kind,
                "tile": item.tile,
                "bytes": len(data),
                "acquired_hours": round(item.hours, 6),
                "fault": fault,
                "expect": expect,
            }
        )

    def _wait(self, hours: float) -> None:
        if self.speed is None:
            return
        delay = self._start + hours * 3600 / self.speed - time.monotonic()
        if delay > 0:
            time.sleep(delay)
