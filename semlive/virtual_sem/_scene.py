"""The thin-section phantom: a vesicular basaltic andesite at any extent, rendered window by window.

Crystals (olivine, clinopyroxene, plagioclase) and vesicles are placed once, by random sequential
addition on a coarse occupancy grid so they do not overlap (except glomerocrysts, which touch);
the groundmass is procedural (:mod:`._groundmass`). :meth:`Scene.render` rasterises any window
at any sub-pixel position from these objects alone, so memory does not grow with the section.
Phase proportions are targets of the construction: vesicles ``vesicle_fraction`` of the area,
olivine and clinopyroxene ``olivine_fraction`` and ``cpx_fraction`` of the vesicle-free area.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from skimage.draw import polygon as fill_coarse

from semlive.virtual_sem._crystals import (
    Crystal,
    ZoningProfile,
    clip_half_plane,
    make_features,
    make_outline,
)
from semlive.virtual_sem._geometry import (
    Window,
    ellipse,
    fill,
    inward_distance,
    polygon_area,
    rotate,
)
from semlive.virtual_sem._groundmass import _MICROLITES, render_groundmass
from semlive.virtual_sem._materials import Phase

__all__ = ["PhantomSpec", "Rendered", "Scene"]

Float = NDArray[np.float64]
_CELL_UM = 2.0  # occupancy grid used while placing objects


@dataclass(frozen=True, slots=True)
class PhantomSpec:
    """Targets of the phantom (fractions of area) and its crystal populations."""

    vesicle_fraction: float = 0.20
    olivine_fraction: float = 0.085  # of the vesicle-free area
    cpx_fraction: float = 0.09  # of the vesicle-free area, groundmass microlites included
    plagioclase_phenocryst_fraction: float = 0.06
    # share of olivine area per class: phenocryst, microphenocryst, microlite
    olivine_class_shares: tuple[float, float, float] = (0.55, 0.28, 0.17)
    max_crystal_area_um2: float = 1.0e6
    broken_fraction: float = 0.10
    touching_fraction: float = 0.08


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered window: phase code, composition coordinate and crystal id of every pixel."""

    window: Window
    phase: NDArray[np.uint8]
    x: NDArray[np.float32]
    crystal_id: NDArray[np.uint32]  # crystal footprint (outline, features included); 0 elsewhere

    @property
    def mg_number(self) -> NDArray[np.float32]:
        """Olivine mg# per pixel, NaN off olivine."""
        return np.where(self.phase == Phase.OLIVINE, self.x, np.float32(np.nan)).astype(np.float32)


class Scene:
    """Objects of the phantom within ``extent_um`` = (xmin, ymin, xmax, ymax), from ``seed``."""

    def __init__(
        self,
        extent_um: tuple[float, float, float, float],
        seed: int,
        spec: PhantomSpec | None = None,
    ) -> None:
        self.extent_um = extent_um
        self.seed = seed
        self.spec = spec or PhantomSpec()
        self.crystals: list[Crystal] = []
        self.vesicles: list[Float] = []
        self._large_olivines: list[int] = []  # indices of olivine (micro)phenocrysts
        xmin, ymin, xmax, ymax = extent_um
        self._shape = (
            int(np.ceil((ymax - ymin) / _CELL_UM)) + 1,
            int(np.ceil((xmax - xmin) / _CELL_UM)) + 1,
        )
        self._crystal_cells = np.zeros(self._shape, dtype=bool)
        rng = np.random.default_rng([seed & 0xFFFFFFFF, 17])
        self._place_crystals(rng)
        self._place_vesicles(rng, self._crystal_cells)
        del self._crystal_cells
        self._crystal_boxes = np.array([c.bbox_um for c in self.crystals]).reshape(-1, 4)
        self._vesicle_boxes = np.array(
            [(*v.min(axis=0), *v.max(axis=0)) for v in self.vesicles]
        ).reshape(-1, 4)

    @property
    def area_um2(self) -> float:
        xmin, ymin, xmax, ymax = self.extent_um
        return (xmax - xmin) * (ymax - ymin)

    # -- placement -------------------------------------------------------------------------
    def _targets(self) -> dict[Phase, float]:
        s = self.spec
        solid = self.area_um2 * (1 - s.vesicle_fraction)
        cover = _MICROLITES[1][1] * (1 - _MICROLITES[2][1])  # groundmass cpx after oxides
        rest = 1 - s.olivine_fraction - s.plagioclase_phenocryst_fraction
        cpx_crystals = (s.cpx_fraction - rest * cover) / (1 - cover)
        return {
            Phase.OLIVINE: s.olivine_fraction * solid,
            Phase.CLINOPYROXENE: max(cpx_crystals, 0.0) * solid,
            Phase.PLAGIOCLASE: s.plagioclase_phenocryst_fraction * solid,
        }

    def _place_crystals(self, rng: np.random.Generator) -> None:
        largest = min(self.spec.max_crystal_area_um2, self.area_um2 / 60)
        wanted: list[tuple[float, Phase, str]] = []
        for phase, total in self._targets().items():
            wanted += [
                (a, phase, pop) for a, pop in _crystal_sizes(phase, total, largest, self.spec, rng)
            ]
        wanted.sort(key=lambda item: -item[0])
        for area, phase, population in wanted:
            self._place_one(area, phase, population, rng)
        self._top_up(rng)

    def _top_up(self, rng: np.random.Generator) -> None:
        """Add microphenocrysts where breaking, features or crowding left a phase short."""
        for phase, target in self._targets().items():
            achieved = sum(self._solid_area(c) for c in self.crystals if c.phase is phase)
            for _ in range(100_000):
                if target - achieved < 1.0e3:
                    break
                before = len(self.crystals)
                area = float(
                    np.exp(
                        rng.uniform(np.log(1.1e3), np.log(min(9.0e3, target - achieved + 1.1e3)))
                    )
                )
                self._place_one(area, phase, "microphenocryst", rng)
                if len(self.crystals) > before:
                    achieved += self._solid_area(self.crystals[-1])

    def _place_one(
        self, area: float, phase: Phase, population: str, rng: np.random.Generator
    ) -> None:
        outline = make_outline(phase, area, rng)
        touching = (
            phase is Phase.OLIVINE
            and population != "microlite"
            and rng.random() < self.spec.touching_fraction
        )
        xmin, ymin, xmax, ymax = self.extent_um
        for attempt in range(60):
            if touching and attempt < 20 and (partner := self._olivine_partner(rng)) is not None:
                centre = _beside(partner, area, rng)
            else:
                centre = rng.uniform((xmin, ymin), (xmax, ymax))
            shape = outline + centre
            cells = self._cells(shape, shrink=touching)
            if not self._crystal_cells[cells].any():
                self._crystal_cells[self._cells(shape)] = True
                self._add_crystal(shape, phase, population, touching and attempt < 20, rng)
                return

    def _olivine_partner(self, rng: np.random.Generator) -> Crystal | None:
        partners = self._large_olivines
        return self.crystals[partners[rng.integers(len(partners))]] if partners else None

    def _add_crystal(
        self,
        outline: Float,
        phase: Phase,
        population: str,
        touching: bool,
        rng: np.random.Generator,
    ) -> None:
        growth = outline
        first_kinds = ("normal", "reverse", "none")  # every session shows each zoning type
        kind = None
        if phase is Phase.OLIVINE and population == "phenocryst":
            seen = sum(
                self.crystals[i].population == "phenocryst" for i in self._large_olivines[:3]
            )
            kind = first_kinds[(seen + self.seed) % 3] if seen < 3 else None
        broken = (
            phase is Phase.OLIVINE and kind is None and rng.random() < self.spec.broken_fraction
        )
        if broken:
            centre = outline.mean(axis=0)
            normal = rng.normal(size=2)
            normal /= np.hypot(*normal)
            width = np.sqrt(polygon_area(outline))
            outline = clip_half_plane(
                outline, centre - normal * width * rng.uniform(0.15, 0.4), normal
            )
        profile = _zoning(phase, population, outline, rng, kind)
        features = make_features(phase, outline, population, rng)
        crystal_id = len(self.crystals) + 1
        if phase is Phase.OLIVINE and population != "microlite":
            self._large_olivines.append(len(self.crystals))
        self.crystals.append(
            Crystal(
                crystal_id, phase, outline, growth, profile, features, population, broken, touching
            )
        )

    def _place_vesicles(self, rng: np.random.Generator, crystal_cells: NDArray[np.bool_]) -> None:
        xmin, ymin, xmax, ymax = self.extent_um
        target = self.spec.vesicle_fraction * crystal_cells.size
        rmax = max(8.0, min(250.0, (xmax - xmin) / 8, (ymax - ymin) / 8))
        vesicle_cells = np.zeros_like(crystal_cells)
        covered = 0
        for _ in range(200_000):
            if covered >= target:
                break
            radius = float(np.exp(rng.uniform(np.log(3.0), np.log(rmax))))
            wobble = 1 + 0.08 * np.cumsum(rng.normal(size=28)) / np.sqrt(28)
            aspect, angle = rng.uniform(0.55, 1.0), rng.uniform(0, np.pi)
            centre = rng.uniform((xmin, ymin), (xmax, ymax))
            shape = rotate(ellipse(radius, radius * aspect, 28, wobble), angle, tuple(centre))
            reach = radius * float(wobble.max())  # the ellipse that holds the wobbly outline
            cells = self._ellipse_cells(centre, reach, reach * aspect, angle)
            if crystal_cells[cells].any():
                continue
            covered += int((~vesicle_cells[cells]).sum())
            vesicle_cells[cells] = True
            self.vesicles.append(shape)

    def _solid_area(self, crystal: Crystal) -> float:
        """Area of a crystal's own phase inside the extent, less cracks, holes and inclusions."""
        xmin, ymin, xmax, ymax = self.extent_um
        outline = crystal.outline_um
        for point, normal in (
            ((xmin, 0), (1, 0)),
            ((xmax, 0), (-1, 0)),
            ((0, ymin), (0, 1)),
            ((0, ymax), (0, -1)),
        ):
            outline = clip_half_plane(outline, np.array(point, float), np.array(normal, float))
            if len(outline) < 3:
                return 0.0
        inside = polygon_area(outline) / polygon_area(crystal.outline_um)
        features = sum(polygon_area(f.vertices_um) for f in crystal.features)
        return polygon_area(outline) - inside * features

    def _ellipse_cells(
        self, centre: Float, rx: float, ry: float, angle: float
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Occupancy cells whose centres lie inside an ellipse (vectorised, for large shapes)."""
        xmin, ymin = self.extent_um[:2]
        cx, cy = (centre[0] - xmin) / _CELL_UM, (centre[1] - ymin) / _CELL_UM
        a, b = rx / _CELL_UM, ry / _CELL_UM
        r0, r1 = max(int(np.ceil(cy - a)), 0), min(int(np.floor(cy + a)), self._shape[0] - 1)
        c0, c1 = max(int(np.ceil(cx - a)), 0), min(int(np.floor(cx + a)), self._shape[1] - 1)
        if r1 < r0 or c1 < c0:
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        dx, dy = cc - cx, rr - cy
        u = (dx * np.cos(angle) + dy * np.sin(angle)) / a
        v = (-dx * np.sin(angle) + dy * np.cos(angle)) / b
        inside = u * u + v * v <= 1.0
        return rr[inside], cc[inside]

    def _cells(
        self, shape: Float, shrink: bool = False
    ) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        xmin, ymin = self.extent_um[:2]
        centre = shape.mean(axis=0)
        if shrink:  # a glomerocryst may touch its partner: test one cell inside its outline
            shape = centre + (shape - centre) * max(
                0.0, 1 - 2 * _CELL_UM / np.sqrt(polygon_area(shape))
            )
        rr, cc = fill_coarse(
            (shape[:, 1] - ymin) / _CELL_UM, (shape[:, 0] - xmin) / _CELL_UM, self._shape
        )
        return rr, cc

    # -- rendering -------------------------------------------------------------------------
    def render(self, window: Window) -> Rendered:
        """Rasterise the phantom on ``window``."""
        phase = np.empty((window.rows, window.cols), dtype=np.uint8)
        x = np.empty((window.rows, window.cols), dtype=np.float32)
        crystal_id = np.zeros((window.rows, window.cols), dtype=np.uint32)
        render_groundmass(window, self.seed, phase, x)
        for i in _overlapping(self._vesicle_boxes, window):
            rr, cc = fill(self.vesicles[i], window)
            phase[rr, cc] = Phase.RESIN
            x[rr, cc] = 0.0
        xs, ys = window.grid_um()
        for i in _overlapping(self._crystal_boxes, window):
            self._draw_crystal(self.crystals[i], window, xs, ys, phase, x, crystal_id)
        return Rendered(window, phase, x, crystal_id)

    @staticmethod
    def _draw_crystal(
        crystal: Crystal,
        window: Window,
        xs: Float,
        ys: Float,
        phase: NDArray[np.uint8],
        x: NDArray[np.float32],
        crystal_id: NDArray[np.uint32],
    ) -> None:
        rr, cc = fill(crystal.outline_um, window)
        if not rr.size:
            return
        phase[rr, cc] = crystal.phase
        x[rr, cc] = np.clip(crystal.x_at(xs[rr, cc], ys[rr, cc]), 0.0, 1.0)
        crystal_id[rr, cc] = crystal.crystal_id
        for feature in crystal.features:
            fr, fc = fill(feature.vertices_um, window)
            inside = crystal_id[fr, fc] == crystal.crystal_id
            phase[fr[inside], fc[inside]] = feature.phase
            x[fr[inside], fc[inside]] = feature.x


def _overlapping(boxes: Float, window: Window) -> NDArray[np.intp]:
    xmin, ymin, xmax, ymax = window.bounds_um
    hit = (
        (boxes[:, 0] <= xmax)
        & (boxes[:, 2] >= xmin)
        & (boxes[:, 1] <= ymax)
        & (boxes[:, 3] >= ymin)
    )
    return np.flatnonzero(hit)


def _beside(partner: Crystal, area: float, rng: np.random.Generator) -> Float:
    centre = partner.outline_um.mean(axis=0)
    reach = 0.5 * (np.sqrt(polygon_area(partner.outline_um)) + np.sqrt(area))
    angle = rng.uniform(0, 2 * np.pi)
    out: Float = centre + reach * rng.uniform(0.75, 1.1) * np.array([np.cos(angle), np.sin(angle)])
    return out


def _crystal_sizes(
    phase: Phase, total_um2: float, largest: float, spec: PhantomSpec, rng: np.random.Generator
) -> list[tuple[float, str]]:
    """Areas (µm²) and populations summing to ``total_um2``; every olivine class present."""
    if phase is Phase.OLIVINE:
        classes = [
            ("phenocryst", 1.0e4, largest),
            ("microphenocryst", 1.0e3, 1.0e4),
            ("microlite", 1.0e2, 1.0e3),
        ]
        shares = spec.olivine_class_shares
    else:
        classes = [
            ("phenocryst", 1.0e4, largest),
            ("microphenocryst", 1.0e3, 1.0e4),
            ("microlite", 1.5e2, 1.0e3),
        ]
        shares = (0.5, 0.35, 0.15)
    sizes: list[tuple[float, str]] = []
    for (population, lo, hi), share in zip(classes, shares, strict=True):
        lo, budget, placed = lo * 1.02, share * total_um2, 0.0
        hi = max(hi, lo * 1.5)
        while placed < budget or (phase is Phase.OLIVINE and placed == 0):
            area = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if placed > 0 and placed + area - budget > budget - placed:
                area = max(lo, budget - placed)  # the last crystal lands the budget, no overshoot
            sizes.append((area, population))
            placed += area
    return sizes


def _zoning(
    phase: Phase, population: str, outline: Float, rng: np.random.Generator, kind: str | None = None
) -> ZoningProfile:
    """Olivine zoning by population (basaltic andesite); cpx and plagioclase mildly zoned."""
    half_width = float(np.sqrt(polygon_area(outline))) / 2
    if phase is Phase.CLINOPYROXENE:
        core = rng.uniform(0.68, 0.82)
        return ZoningProfile(
            "normal", core, core - rng.uniform(0.0, 0.04), max(2.0, 0.3 * half_width)
        )
    if phase is Phase.PLAGIOCLASE:
        core = rng.uniform(0.62, 0.82)
        return ZoningProfile(
            "oscillatory",
            core,
            core - 0.08,
            max(2.0, 0.3 * half_width),
            amplitude=0.03,
            period_um=max(3.0, half_width / 5),
        )
    if population == "microlite":
        mean = 0.72 if rng.random() < 0.5 else 0.80  # two microlite populations
        core = float(np.clip(rng.normal(mean, 0.012), 0.6, 0.92))
        return ZoningProfile("none", core, core - rng.uniform(0, 0.01), max(1.0, 0.3 * half_width))
    kinds = ["normal", "reverse", "none", "oscillatory", "complex"]
    drawn = str(rng.choice(kinds, p=[0.42, 0.26, 0.22, 0.05, 0.05]))
    kind = drawn if kind is None else kind
    centre = outline.mean(axis=0)
    inradius = float(inward_distance(outline, centre[:1], centre[1:])[0])
    length = max(2.0, inradius * rng.uniform(0.35, 0.8))  # diffused zoning reaches the mid-rim
    if kind == "normal":
        core = rng.uniform(0.80, 0.89)
        return ZoningProfile("normal", core, core - rng.uniform(0.08, 0.16), length)
    if kind == "reverse":
        core = rng.uniform(0.70, 0.78)
        return ZoningProfile("reverse", core, core + rng.uniform(0.08, 0.14), length)
    core = rng.uniform(0.76, 0.86)
    if kind == "none":
        return ZoningProfile("none", core, core + rng.uniform(-0.008, 0.008), length)
    if kind == "oscillatory":
        return ZoningProfile(
            "oscillatory",
            core,
            core,
            length,
            amplitude=0.02,
            period_um=max(4.0, half_width / rng.uniform(3, 6)),
        )
    return ZoningProfile(
        "complex",
        core,
        core - 0.05,
        length,
        amplitude=0.06,
        period_um=half_width * rng.uniform(0.3, 0.5),
    )
