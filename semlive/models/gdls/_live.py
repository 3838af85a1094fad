"""GDLS while the session runs: each spectra field is segmented once the mosaic under it is
complete, into ``mosaic.zarr/bse/labels/gdls`` and ``STORE/gdls/segments.csv``.

The session folder's spectra arrive in batches (``spectra/<batch>.npz``: one field of sparse
points, a dot map). :class:`LiveGdls` keeps each placed batch in ``STORE/gdls/fields/``, so a
restarted session still has it, and on every :class:`RegionComplete` segments the fields whose
points now all lie in complete regions: the BSE under the field is read from the mosaic (drift
corrected), GDLS runs on it (:func:`segment_field`), each segment is named by its phase
(:func:`segment_table`) and both are written. A field's segment ids are its own range of the
uint32 label image, kept when the field is segmented again (a re-fused region, a replaced
batch) unless it then has more segments than the range holds (a fresh range is taken), and its
rows of the table are replaced, so nothing is duplicated.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from torch import nn

from semlive.errors import InputDataError
from semlive.models._labels import register_label, require_pyramid, update_pyramid
from semlive.models.gdls._phases import cell_text, phase_library, segment_table
from semlive.models.gdls._segment import TAU_G, segment_field
from semlive.streaming import RegionChanged, RegionComplete, SpectraMoved, SpectraPlaced

__all__ = ["GDLS_LABELS", "SEGMENTS_CSV", "FieldSegmented", "LiveGdls"]

_log = logging.getLogger(__name__)

GDLS_LABELS = "bse/labels/gdls"
SEGMENTS_CSV = "gdls/segments.csv"
_FIELDS = "gdls/fields"
_STATE = "gdls/state.json"
_MARGIN_PX = 8  # BSE read around the field's points
_MIN_POINTS = 50  # fewer points than this in a batch: not a field (single spectra, .msa)


@dataclass(frozen=True, slots=True)
class FieldSegmented:
    """A spectra field segmented into the store."""

    field: str
    bounds_px: tuple[int, int, int, int]  # row0, col0, row1, col1 of level 0
    segments: int
    first_id: int  # its segments are first_id, first_id + 1, ...
    seconds: float


class LiveGdls:
    """GDLS on each spectra field of a session, as the regions under it complete."""

    def __init__(
        self,
        store: Path,
        embedding: nn.Module | None = None,
        *,
        tau_b: float = 0.02,
        tau_z: float | None = None,
        tau_g: float | None = TAU_G,
        min_points: int = 20,
        method: Literal["watershed", "random_walker"] = "watershed",
    ) -> None:
        self.store = store
        self.embedding = embedding
        self.options: dict[str, Any] = {
            "tau_b": tau_b,
            "tau_z": tau_z,
            "tau_g": tau_g,
            "min_points": min_points,
            "method": method,
        }
        (store / _FIELDS).mkdir(parents=True, exist_ok=True)
        path = store / _STATE
        state = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        self.complete: list[list[int]] = state.get("complete", [])
        self.fields: dict[str, dict[str, Any]] = state.get("fields", {})

    # -- events -----------------------------------------------------------------------------

    def handle(self, event: object) -> list[FieldSegmented]:
        """Take a stitching event; the fields segmented because of it."""
        if isinstance(event, SpectraPlaced):
            self.add(event)
            return self.run_ready()
        if isinstance(event, SpectraMoved):
            self.move(event)
            return self.run_ready()
        if isinstance(event, RegionComplete | RegionChanged):
            return self.region_complete(event.bounds_px, changed=isinstance(event, RegionChanged))
        return []

    def add(self, event: SpectraPlaced) -> None:
        """Keep a placed batch (replacing an earlier one of the same name)."""
        batch = event.batch
        if len(batch.counts) < _MIN_POINTS:
            return
        name = self._name_for(batch.name)
        _atomic_savez(
            self.store / _FIELDS / f"{name}.npz",
            mosaic_px=event.mosaic_px,
            counts=np.asarray(batch.counts),
            calibration=np.array(
                [batch.channel_offset_ev, batch.channel_width_ev, batch.beam_energy_kev or 20.0]
            ),
        )
        entry = self.fields.setdefault(name, {"source": batch.name})
        if entry.get("checksum") != batch.checksum:
            entry.update(checksum=batch.checksum, done=False)
        self._save_state()

    def move(self, event: SpectraMoved) -> None:
        """A kept batch's points moved on the mosaic: keep the new positions; the field is
        segmented again once its regions are complete."""
        name = next((n for n, e in self.fields.items() if e.get("source") == event.name), None)
        if name is None:
            return
        path = self.store / _FIELDS / f"{name}.npz"
        with np.load(path) as data:
            kept = {key: data[key] for key in data.files}
        kept["mosaic_px"] = event.mosaic_px
        _atomic_savez(path, **kept)
        self.fields[name]["done"] = False
        self._save_state()

    def _name_for(self, source: str) -> str:
        """The field's name: its batch's file stem, made unique among the kept fields."""
        stem = _field_name(source)
        name, k = stem, 1
        while name in self.fields and self.fields[name].get("source") != source:
            k += 1
            name = f"{stem}-{k}"
        return name

    def region_complete(
        self, bounds: tuple[int, int, int, int], changed: bool = False
    ) -> list[FieldSegmented]:
        """A region is complete (or was re-fused: ``changed``); segment what became ready."""
        box = [int(v) for v in bounds]
        if box not in self.complete:
            self.complete.append(box)
        if changed:
            for entry in self.fields.values():
                if entry.get("bounds") and _overlap(entry["bounds"], box):
                    entry["done"] = False
        self._save_state()
        return self.run_ready()

    def run_ready(self) -> list[FieldSegmented]:
        """Segment every field not yet segmented whose points all lie in complete regions.

        A field that cannot be segmented (its spectra's calibration is unusable, too few of
        its points on the mosaic) is recorded with the reason in ``state.json`` and logged;
        the other fields and the session go on."""
        import zarr

        pending = sorted(n for n, e in self.fields.items() if not e.get("done"))
        if not pending or not (self.store / "mosaic.zarr").is_dir():
            return []
        bse = zarr.open_group(str(self.store / "mosaic.zarr"), mode="r")["bse"]
        shape = _levels(bse)[0].shape
        done = []
        for name in pending:
            entry = self.fields[name]
            points = self._points(name)
            if points is None or not self._covered(points, shape):
                continue
            try:
                done.append(self.segment(name))
            except InputDataError as exc:
                _log.warning("GDLS: field %s not segmented: %s", name, exc)
                entry.update(done=True, error=str(exc))
                self._save_state()
        return done

    # -- one field ----------------------------------------------------------------------------

    def segment(self, name: str) -> FieldSegmented:
        """Segment one kept field into the label image and the table."""
        import zarr

        started = time.perf_counter()
        with np.load(self.store / _FIELDS / f"{name}.npz") as data:
            at, counts, calibration = data["mosaic_px"], data["counts"], data["calibration"]
        root = zarr.open_group(str(self.store / "mosaic.zarr"), mode="r+")
        bse_levels = _levels(root["bse"])
        height, width = bse_levels[0].shape
        pixel = np.rint(at).astype(np.int64)
        inside = (pixel[:, 0] >= 0) & (pixel[:, 0] < height)
        inside &= (pixel[:, 1] >= 0) & (pixel[:, 1] < width)
        on = np.flatnonzero(inside)
        _, first = np.unique(pixel[on, 0] * width + pixel[on, 1], return_index=True)
        keep = np.zeros(len(pixel), bool)
        keep[on[first]] = True  # on the mosaic, one spectrum a pixel
        if keep.sum() < _MIN_POINTS:
            raise InputDataError(
                f"{int(keep.sum())} of its {len(pixel)} spectra lie on the mosaic, on distinct "
                f"pixels; expected at least {_MIN_POINTS} to segment a field — check the "
                "batch's stage positions (xy_um) against the tiles'",
                got=int(keep.sum()),
            )
        rows, cols, counts = pixel[keep, 0], pixel[keep, 1], counts[keep]
        r0, c0 = max(int(rows.min()) - _MARGIN_PX, 0), max(int(cols.min()) - _MARGIN_PX, 0)
        r1 = min(int(rows.max()) + _MARGIN_PX + 1, height)
        c1 = min(int(cols.max()) + _MARGIN_PX + 1, width)
        bse = np.asarray(bse_levels[0][r0:r1, c0:c1])
        result = segment_field(
            bse, rows - r0, cols - c0, counts, float(calibration[0]), float(calibration[1]),
            self.embedding, **self.options,
        )  # fmt: skip
        table = segment_table(result, bse, phase_library(round(float(calibration[2]), 1)))
        entry = self.fields[name]
        previous = entry.get("bounds")
        labels = self._label_levels(root, bse_levels)
        local = result.labels
        old_first, old_capacity = int(entry.get("first_id") or 0), int(entry.get("capacity", 0))
        if previous and old_first:  # the field's segments of an earlier run are cleared first
            _clear(labels, previous, old_first, old_first + old_capacity - 1)
        if old_first and int(local.max()) <= old_capacity:
            first_id, capacity = old_first, old_capacity  # the same ids as before
        else:  # first time, or more segments than its range holds: a fresh range
            first_id, capacity = self._next_id(), int(local.max())
        block = np.asarray(labels[0][r0:r1, c0:c1])
        block[local > 0] = local[local > 0].astype(np.uint32) + np.uint32(first_id - 1)
        labels[0][r0:r1, c0:c1] = block
        update_pyramid(labels, (r0, c0, r1, c1), "nearest")
        if previous:
            update_pyramid(labels, (previous[0], previous[1], previous[2], previous[3]), "nearest")
        self._write_table(name, table, first_id, (r0, c0))
        entry.update(
            done=True,
            first_id=first_id,
            capacity=capacity,
            bounds=[r0, c0, r1, c1],
            segments=len(table["segment"]),
        )
        self._save_state()
        seconds = time.perf_counter() - started
        return FieldSegmented(name, (r0, c0, r1, c1), len(table["segment"]), first_id, seconds)

    # -- helpers ------------------------------------------------------------------------------

    def _points(self, name: str) -> NDArray[np.float64] | None:
        path = self.store / _FIELDS / f"{name}.npz"
        if not path.is_file():
            return None
        with np.load(path) as data:
            points: NDArray[np.float64] = data["mosaic_px"]
        return points

    def _covered(self, points: NDArray[np.float64], shape: tuple[int, ...]) -> bool:
        """Every point on the mosaic (of ``shape``) lies in a complete region (points off the
        mosaic are left to :meth:`segment`, which refuses a field with too few on it)."""
        height, width = shape
        on = (points[:, 0] > -0.5) & (points[:, 0] < height - 0.5)
        on &= (points[:, 1] > -0.5) & (points[:, 1] < width - 0.5)
        points = points[on]
        covered = np.zeros(len(points), bool)
        for r0, c0, r1, c1 in self.complete:
            rows_in = (points[:, 0] >= r0) & (points[:, 0] < r1)
            covered |= rows_in & (points[:, 1] >= c0) & (points[:, 1] < c1)
        return bool(covered.all())

    def _next_id(self) -> int:
        used = [int(e["first_id"]) + int(e.get("capacity", 0)) for e in self.fields.values()
                if e.get("first_id")]  # fmt: skip
        return max(used, default=1)

    def _label_levels(self, root: Any, bse_levels: list[Any]) -> list[Any]:
        multiscales = root["bse"].attrs["ome"]["multiscales"][0]
        register_label(root, "gdls")
        meta = {
            "version": "0.5",
            "multiscales": [{**multiscales, "name": "gdls"}],
            "image-label": {"version": "0.5", "source": {"image": "../../"}},
        }
        provenance = {"table": SEGMENTS_CSV, "options": self.options}
        return require_pyramid(root, GDLS_LABELS, bse_levels, meta, provenance, dtype="uint32")

    def _write_table(
        self,
        name: str,
        table: dict[str, NDArray[Any]],
        first_id: int,
        origin: tuple[int, int],
    ) -> None:
        path = self.store / SEGMENTS_CSV
        kept: list[dict[str, str]] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                kept = [row for row in csv.DictReader(handle) if row["field"] != name]
        columns = ["segment", "field", *[c for c in table if c != "segment"]]
        new = []
        for k in range(len(table["segment"])):
            row = {c: table[c][k] for c in table}
            row["segment"] = int(table["segment"][k]) + first_id - 1
            row["centroid_row"] = float(table["centroid_row"][k]) + origin[0]
            row["centroid_col"] = float(table["centroid_col"][k]) + origin[1]
            row["field"] = name
            new.append({c: cell_text(row[c]) for c in columns})
        rows = sorted([*kept, *new], key=lambda r: int(r["segment"]))
        temporary = path.with_suffix(".csv.tmp")
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, path)

    def _save_state(self) -> None:
        path = self.store / _STATE
        temporary = path.with_suffix(".json.tmp")
        state = {"complete": self.complete, "fields": self.fields}
        temporary.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)


def _field_name(source: str) -> str:
    """A file-safe field name from the batch's name in the session folder."""
    stem = source.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "field"


def _levels(group: Any) -> list[Any]:
    return [group[d["path"]] for d in group.attrs["ome"]["multiscales"][0]["datasets"]]


def _overlap(a: list[int], b: list[int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clear(levels: list[Any], bounds: list[int], low: int, high: int) -> None:
    """Zero the ids ``low``..``high`` (a field's range) in level 0 over ``bounds``."""
    r0, c0, r1, c1 = bounds
    block = np.asarray(levels[0][r0:r1, c0:c1])
    block[(block >= low) & (block <= high)] = 0
    levels[0][r0:r1, c0:c1] = block


def _atomic_savez(path: Path, **arrays: Any) -> None:
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    os.replace(temporary, path)
