"""Crystals of the phantom: euhedral outlines, zoning profiles, cracks, holes and inclusions.

A crystal's composition coordinate follows a zoning profile of the distance ``d`` (µm) to the
outline it grew with; a broken crystal keeps the profile of its original outline, so its broken
face exposes the core as in real sections. Diffusion-shaped profiles use an error function,
``x(d) = x_rim + (x_core − x_rim)·erf(d / ℓ)`` (the shape of a diffused step), with a diffusion
length ℓ per crystal.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import erf

from semlive.virtual_sem._geometry import (
    ellipse,
    euhedral_prism,
    inward_distance,
    octagon,
    polygon_area,
    rectangle,
    rotate,
)
from semlive.virtual_sem._materials import Phase

__all__ = [
    "Crystal",
    "Feature",
    "ZoningProfile",
    "clip_half_plane",
    "make_features",
    "make_outline",
]

Float = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ZoningProfile:
    """Composition ``x`` as a function of the distance ``d`` (µm) to the growth outline."""

    kind: str  # "none", "normal", "reverse", "oscillatory", "complex"
    x_core: float
    x_rim: float
    length_um: float  # diffusion length ℓ
    amplitude: float = 0.0  # oscillatory: amplitude of x; complex: mantle offset
    period_um: float = 0.0  # oscillatory: period; complex: mantle depth

    def x_at(self, d_um: Float) -> Float:
        d = np.maximum(d_um, 0.0)
        base: Float = self.x_rim + (self.x_core - self.x_rim) * erf(d / self.length_um)
        if self.kind == "oscillatory":
            base = base + self.amplitude * np.sin(2 * np.pi * d / self.period_um)
        elif self.kind == "complex":  # a reversely zoned mantle between core and rim
            base = base + self.amplitude * np.exp(-(((d - self.period_um) / self.length_um) ** 2))
        return base


@dataclass(frozen=True, slots=True)
class Feature:
    """A polygon drawn over a crystal: a crack or hole (resin) or an inclusion."""

    phase: Phase
    x: float
    vertices_um: Float


@dataclass(frozen=True, slots=True)
class Crystal:
    crystal_id: int
    phase: Phase
    outline_um: Float  # what the section shows (convex)
    growth_outline_um: Float  # the outline the zoning grew with (differs when broken)
    profile: ZoningProfile
    features: tuple[Feature, ...]
    population: str  # "phenocryst", "microphenocryst", "microlite-A", ...
    broken: bool = False
    touching: bool = False

    @property
    def bbox_um(self) -> tuple[float, float, float, float]:
        v = self.outline_um
        return (
            float(v[:, 0].min()),
            float(v[:, 1].min()),
            float(v[:, 0].max()),
            float(v[:, 1].max()),
        )

    def x_at(self, x_um: Float, y_um: Float) -> Float:
        return self.profile.x_at(inward_distance(self.growth_outline_um, x_um, y_um))


def make_outline(phase: Phase, area_um2: float, rng: np.random.Generator) -> Float:
    """A random euhedral section of ``phase`` with the given area, centred on the origin."""
    if phase is Phase.OLIVINE:
        aspect, tip = rng.uniform(1.3, 2.6), rng.uniform(0.15, 0.45)
        shape = euhedral_prism(aspect, 1.0, tip)
    elif phase is Phase.CLINOPYROXENE:
        shape = octagon(1.0, rng.uniform(1.0, 1.6))
    else:  # plagioclase: tabular
        shape = rectangle(rng.uniform(2.0, 4.0), 1.0)
    shape = shape * np.sqrt(area_um2 / polygon_area(shape))
    return rotate(shape, rng.uniform(0, np.pi), (0.0, 0.0))


def clip_half_plane(vertices: Float, point: Float, normal: Float) -> Float:
    """Keep the part of a convex polygon where (p − point)·normal ≥ 0 (Sutherland–Hodgman)."""
    out: list[Float] = []
    side = (vertices - point) @ normal
    for i in range(len(vertices)):
        j = (i + 1) % len(vertices)
        if side[i] >= 0:
            out.append(vertices[i])
        if (side[i] >= 0) != (side[j] >= 0):
            t = side[i] / (side[i] - side[j])
            out.append(vertices[i] + t * (vertices[j] - vertices[i]))
    return np.array(out, dtype=np.float64)


def make_features(
    phase: Phase, outline: Float, population: str, rng: np.random.Generator
) -> tuple[Feature, ...]:
    """Cracks, holes and spinel inclusions inside a crystal, all kept inside its outline."""
    area = polygon_area(outline)
    features: list[Feature] = []
    big = population in ("phenocryst", "microphenocryst")
    if big and rng.random() < (0.55 if phase is Phase.OLIVINE else 0.3):
        for _ in range(rng.integers(1, 4)):
            features += _crack(outline, rng)
    if big and phase is Phase.OLIVINE and rng.random() < 0.4:
        central = population == "phenocryst" and rng.random() < 0.5
        for _ in range(rng.integers(1, 3)):
            features += _hole(outline, area, central, rng)
    if phase is Phase.OLIVINE and area > 400 and rng.random() < 0.3:
        for _ in range(rng.integers(1, 5)):
            features += _inclusion(outline, rng)
    return tuple(features)


def _interior_point(outline: Float, margin_um: float, rng: np.random.Generator) -> Float | None:
    lo, hi = outline.min(axis=0), outline.max(axis=0)
    for _ in range(40):
        p = rng.uniform(lo, hi)
        if inward_distance(outline, p[:1], p[1:])[0] > margin_um:
            return np.asarray(p, dtype=np.float64)
    return None


def _crack(outline: Float, rng: np.random.Generator) -> list[Feature]:
    """A crack: a chain of thin segments between interior points, 2 µm clear of the rim."""
    points = [
        p
        for _ in range(rng.integers(2, 5))
        if (p := _interior_point(outline, 2.5, rng)) is not None
    ]
    width = rng.uniform(0.9, 2.2)
    segments = []
    for a, b in itertools.pairwise(points):
        length = float(np.hypot(*(b - a)))
        if length < 2:
            continue
        centre = (a + b) / 2
        angle = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
        poly = rotate(rectangle(length + width, width), angle, (float(centre[0]), float(centre[1])))
        segments.append(Feature(Phase.RESIN, 0.0, poly))
    return segments


def _hole(outline: Float, area: float, central: bool, rng: np.random.Generator) -> list[Feature]:
    inradius = float(
        inward_distance(outline, outline.mean(axis=0)[:1], outline.mean(axis=0)[1:])[0]
    )
    radius = min(rng.uniform(2.0, 4.0 + 0.04 * np.sqrt(area)), 0.45 * inradius)
    if radius < 1.5:
        return []
    centre = outline.mean(axis=0) + (rng.normal(0, 0.1 * inradius, 2) if central else 0)
    if not central:
        p = _interior_point(outline, radius + 2.0, rng)
        if p is None:
            return []
        centre = p
    wobble = 1 + 0.12 * rng.normal(size=16)
    poly = ellipse(radius, radius * rng.uniform(0.6, 1.0), 16, wobble)
    poly = rotate(poly, rng.uniform(0, np.pi), (float(centre[0]), float(centre[1])))
    return [Feature(Phase.RESIN, 0.0, poly)]


def _inclusion(outline: Float, rng: np.random.Generator) -> list[Feature]:
    size = rng.uniform(2.0, 6.0)
    p = _interior_point(outline, size + 1.0, rng)
    if p is None:
        return []
    poly = rotate(
        rectangle(size, size * rng.uniform(0.7, 1.0)),
        rng.uniform(0, np.pi),
        (float(p[0]), float(p[1])),
    )
    return [Feature(Phase.CR_SPINEL, float(rng.uniform(0.2, 0.5)), poly)]
