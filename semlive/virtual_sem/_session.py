"""A simulated session: everything the SEM writes, in acquisition order, made on demand.

:meth:`VirtualSession.items` yields one :class:`Item` per file (Contract 1), each with its
simulated acquisition time, rendering tiles only when their turn comes, so a whole section
streams in bounded memory.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import NDArray

from semlive.physics import EdsDetector
from semlive.virtual_sem._geometry import Window
from semlive.virtual_sem._imaging import BseDetector, eds_maps, spectra_at, standard_image
from semlive.virtual_sem._materials import MaterialTable, Phase, material_table
from semlive.virtual_sem._plan import Plan, Preset, TilePlan, make_plan
from semlive.virtual_sem._scene import Rendered, Scene
from semlive.virtual_sem._truth import TruthGrid, truth_grid

__all__ = ["ELEMENTS", "STANDARDS", "Item", "VirtualSession"]

ELEMENTS = ("Mg", "Fe", "Ca", "Al", "Si", "Na", "K", "Ti", "Cr")
BEAM_KV = 20.0
STANDARD_SHAPE = (64, 64)
# id: (description, phase, x, mg_number or None)
STANDARDS = {
    "SCOL": ("San Carlos olivine (Fo90)", Phase.OLIVINE, 0.90, 0.90),
    "FAY": ("Rockport fayalite (Fo0)", Phase.OLIVINE, 0.0, 0.0),
}


@dataclass(frozen=True, slots=True)
class Item:
    """One file of the session: where it goes, when it is acquired, and how to make it."""

    hours: float
    path: str  # relative to the session folder, '/'-separated
    kind: (
        str  # session, tile, eds, sidecar, standard, standard-eds, standard-sidecar, spectra, epma
    )
    tile: str | None
    make: Callable[[], bytes]


def tiff_bytes(array: NDArray[np.generic]) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, array, photometric="minisblack", metadata=None)
    return buf.getvalue()


def json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode("utf-8")


class VirtualSession:
    """Session ``session`` of the sample made from ``seed`` with the given preset."""

    def __init__(self, preset: Preset | str, seed: int, session: int = 0) -> None:
        self.plan: Plan = make_plan(preset, seed, session)
        self.grid: TruthGrid = truth_grid(self.plan)
        self.scene = Scene(_sample_extent(self.plan), seed)
        self.table: MaterialTable = material_table(ELEMENTS, BEAM_KV)
        self.detector = BseDetector(self.plan.preset.bit_depth)
        self.eds_detector = EdsDetector(
            fwhm_mn_ka_ev=130.0, channel_offset_ev=0.0, channel_width_ev=10.0, channels=2048
        )
        self.truth_records: dict[str, dict[str, NDArray[np.generic]]] = {}
        n, fields = len(self.plan.tiles), self.plan.preset.spectra_fields
        self._field_tiles = {int((k + 1) * n / (fields + 1)): k for k in range(fields)}

    # -- contents ------------------------------------------------------------------------
    def session_json(self) -> dict[str, object]:
        p = self.plan.preset
        return {
            "format": "semlive.session/1",
            "sample": f"virtual basaltic andesite, seed {self.plan.seed}",
            "pixel_size_um": p.pixel_size_um,
            "tile_shape": list(p.tile_shape),
            "grid": {"rows": p.grid[0], "cols": p.grid[1], "overlap_fraction": p.overlap_fraction},
            "stage_axes": {"x": "+col", "y": "+row"},
            "bse": {"bit_depth": p.bit_depth, "kV": BEAM_KV, "probe_nA": 1.5},
            "eds": {"elements": list(ELEMENTS)},
            "spectra": {
                "channel_offset_ev": self.eds_detector.channel_offset_ev,
                "channel_width_ev": self.eds_detector.channel_width_ev,
                "channels": self.eds_detector.channels,
                "kV": BEAM_KV,
            },
            "standards": {sid: self._standard_entry(sid) for sid in STANDARDS},
        }

    def _standard_entry(self, sid: str) -> dict[str, object]:
        description, phase, x, mg = STANDARDS[sid]
        k = round(x * 100)
        entry: dict[str, object] = {
            "description": description,
            "mean_z": round(float(self.table.zbar[phase, k]), 4),
            "bse_reference": round(float(self.detector.dn(self.table.eta[phase, k])), 1),
        }
        if mg is not None:
            entry["mg_number"] = mg
        return entry

    def render_tile(self, tile: TilePlan) -> Rendered:
        rows, cols = self.plan.preset.tile_shape
        px = self.plan.preset.pixel_size_um
        x0 = tile.true_um[0] - (cols - 1) / 2 * px
        y0 = tile.true_um[1] - (rows - 1) / 2 * px
        return self.scene.render(Window(x0, y0, rows, cols, px))

    def tile_rng(self, index: int, purpose: int, version: int = 0) -> np.random.Generator:
        return np.random.default_rng(
            [self.plan.seed & 0xFFFFFFFF, self.plan.session, purpose, index, version]
        )

    def tile_bse(self, tile: TilePlan, rendered: Rendered, index: int, version: int = 0) -> bytes:
        gain, offset = self.plan.drift.bse(tile.hours)
        eta = self.table.lookup(self.table.eta, rendered.phase, rendered.x)
        return tiff_bytes(self.detector.image(eta, gain, offset, self.tile_rng(index, 1, version)))

    def tile_eds(self, tile: TilePlan, rendered: Rendered, index: int) -> bytes:
        maps = eds_maps(
            rendered, self.table, self.plan.drift.eds(tile.hours), self.tile_rng(index, 2)
        )
        return tiff_bytes(maps)

    def sidecar(self, tile: TilePlan, hours: float | None = None) -> dict[str, object]:
        return {
            "tile": tile.name,
            "row": tile.row,
            "col": tile.col,
            "stage_x_um": round(tile.nominal_um[0], 3),
            "stage_y_um": round(tile.nominal_um[1], 3),
            "acquired_at": self.plan.time(tile.hours if hours is None else hours).isoformat(),
            "kind": "bse",
        }

    # -- the stream ----------------------------------------------------------------------
    def items(self) -> Iterator[Item]:
        """Every file of the session in acquisition order (DONE excluded)."""
        yield Item(0.0, "session.json", "session", None, lambda: json_bytes(self.session_json()))
        rounds = list(enumerate(self.plan.standard_hours))
        yield from self._standards(*rounds.pop(0))
        for index, tile in enumerate(self.plan.tiles):
            while rounds and rounds[0][1] <= tile.hours and len(rounds) > 1:
                yield from self._standards(*rounds.pop(0))
            yield from self._tile_items(index, tile)
        for number, hours in rounds:
            yield from self._standards(number, hours)
        from semlive.virtual_sem._epma import epma_items

        yield from epma_items(self)

    def _tile_items(self, index: int, tile: TilePlan) -> Iterator[Item]:
        cache: dict[str, Rendered] = {}

        def rendered() -> Rendered:
            if "r" not in cache:
                cache["r"] = self.render_tile(tile)
            return cache["r"]

        base = f"tiles/{tile.name}"
        yield Item(
            tile.hours,
            f"{base}.tif",
            "tile",
            tile.name,
            lambda: self.tile_bse(tile, rendered(), index),
        )
        if tile.eds:
            yield Item(
                tile.hours,
                f"{base}.eds.tif",
                "eds",
                tile.name,
                lambda: self.tile_eds(tile, rendered(), index),
            )
        yield Item(
            tile.hours, f"{base}.json", "sidecar", tile.name, lambda: json_bytes(self.sidecar(tile))
        )
        if index in self._field_tiles:
            name = f"spectra/field-{self._field_tiles[index] + 1:02d}.npz"
            yield Item(
                tile.hours + 0.001,
                name,
                "spectra",
                tile.name,
                lambda: self._spectra(name, index, tile, rendered()),
            )

    def _spectra(self, name: str, index: int, tile: TilePlan, rendered: Rendered) -> bytes:
        p = self.plan.preset
        rng = self.tile_rng(index, 4)
        rows, cols = p.tile_shape
        size = int(p.spectra_field_um / p.pixel_size_um)
        step = int(p.spectra_spacing_um / p.pixel_size_um)
        r0 = int(rng.integers(4, rows - size - 4))
        c0 = int(rng.integers(4, cols - size - 4))
        rr, cc = np.meshgrid(
            np.arange(r0, r0 + size, step), np.arange(c0, c0 + size, step), indexing="ij"
        )
        rows_pt, cols_pt = rr.ravel(), cc.ravel()
        counts, material, share = spectra_at(
            rendered, rows_pt, cols_pt, self.table, self.eds_detector, p.spectrum_counts, 1.0, rng
        )
        px = p.pixel_size_um
        reported = np.column_stack(
            [
                tile.nominal_um[0] + (cols_pt - (cols - 1) / 2) * px,
                tile.nominal_um[1] + (rows_pt - (rows - 1) / 2) * px,
            ]
        )
        true = np.column_stack(
            [rendered.window.x0_um + cols_pt * px, rendered.window.y0_um + rows_pt * px]
        )
        self.truth_records[name] = {
            "xy_um": true,
            "material": material,
            "share": share,
            "phase": (material // 1000).astype(np.uint8),
            "x": (material % 1000) / 100.0,
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, xy_um=reported, counts=counts, tile=np.array(tile.name))
        return buf.getvalue()

    def _standards(self, number: int, hours: float) -> Iterator[Item]:
        for k, (sid, (_, phase, x, _mg)) in enumerate(STANDARDS.items()):
            t = hours + k * 0.01
            base = f"standards/{sid}-{number + 1:02d}"
            rng = np.random.default_rng(
                [self.plan.seed & 0xFFFFFFFF, self.plan.session, 5, number, k]
            )
            gain, offset = self.plan.drift.bse(t)
            eta = float(self.table.eta[phase, round(x * 100)])
            resin = float(self.table.eta[Phase.RESIN, 0])
            image = standard_image(eta, resin, self.detector, STANDARD_SHAPE, gain, offset, rng)
            yield Item(t, f"{base}.tif", "standard", None, partial(tiff_bytes, image))
            if sid == "SCOL":
                yield Item(
                    t,
                    f"{base}.eds.tif",
                    "standard-eds",
                    None,
                    partial(self._standard_eds, t, phase, x, rng),
                )
            side = {"standard": sid, "acquired_at": self.plan.time(t).isoformat(), "kind": "bse"}
            yield Item(t, f"{base}.json", "standard-sidecar", None, partial(json_bytes, side))

    def _standard_eds(
        self, hours: float, phase: Phase, x: float, rng: np.random.Generator
    ) -> bytes:
        shape = STANDARD_SHAPE
        rendered = Rendered(
            Window(0.0, 0.0, *shape),
            np.full(shape, phase, dtype=np.uint8),
            np.full(shape, x, dtype=np.float32),
            np.zeros(shape, dtype=np.uint32),
        )
        return tiff_bytes(eds_maps(rendered, self.table, self.plan.drift.eds(hours), rng))


def _sample_extent(plan: Plan) -> tuple[float, float, float, float]:
    """The phantom's extent: the nominal mosaic plus a margin beyond any stage error."""
    rows, cols = plan.preset.tile_shape
    px = plan.preset.pixel_size_um
    nominal = np.array([t.nominal_um for t in plan.tiles])
    margin = 60.0
    return (
        float(nominal[:, 0].min() - cols / 2 * px - margin),
        float(nominal[:, 1].min() - rows / 2 * px - margin),
        float(nominal[:, 0].max() + cols / 2 * px + margin),
        float(nominal[:, 1].max() + rows / 2 * px + margin),
    )
