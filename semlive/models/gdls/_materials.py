"""Materials to train and evaluate spectrum embeddings on, simulated by semlive.physics.

A material is a composition; its expected spectrum on the embedding band comes from
:func:`semlive.physics.expected_spectrum`. The training set holds the mineral library, every
binary solid-solution series sampled finely, and random molar mixtures of two minerals (the
compositional spread of glasses, intergrowths and minerals off their ideal formula). The
held-out set is disjoint: a few library minerals that no training material contains (by
name, seeded), mixtures drawn with another seed, and series points between the training steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from semlive.models.gdls._band import BAND_CHANNELS, BAND_OFFSET_EV, BAND_WIDTH_EV
from semlive.physics import (
    Composition,
    EdsDetector,
    MineralLibrary,
    expected_spectrum,
    load_library,
)

__all__ = [
    "Material",
    "band_detector",
    "expected_spectra",
    "held_out_materials",
    "training_materials",
]

_HELD_OUT_FRACTION = 0.15


@dataclass(frozen=True, slots=True)
class Material:
    name: str
    composition: Composition


def band_detector() -> EdsDetector:
    """A detector whose channels are the embedding band's."""
    return EdsDetector(
        channel_offset_ev=BAND_OFFSET_EV, channel_width_ev=BAND_WIDTH_EV, channels=BAND_CHANNELS
    )


def _split_minerals(library: MineralLibrary, seed: int) -> tuple[list[str], list[str]]:
    """(training, held-out) mineral names; series end-members always train."""
    in_series = {name for pair in library.series.values() for name in pair}
    free = sorted(n for n in library.names() if n not in in_series)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(free, size=round(_HELD_OUT_FRACTION * len(free)), replace=False)
    held = {str(n) for n in drawn}
    return [n for n in library.names() if n not in held], sorted(held)


def training_materials(
    mixtures: int = 2000, series_step: float = 0.02, seed: int = 0
) -> list[Material]:
    """Library minerals (the held-out ones left out), series every ``series_step``, and
    ``mixtures`` random two-mineral mixtures."""
    library = load_library()
    train, _ = _split_minerals(library, seed)
    out = [Material(n, library.mineral(n).composition) for n in train]
    for series in sorted(library.series):
        for x in np.arange(series_step, 1.0, series_step):
            out.append(Material(f"{series}:{x:.3f}", library.solid_solution(series, float(x))))
    rng = np.random.default_rng(seed + 1000)
    for _ in range(mixtures):
        a, b = rng.choice(train, size=2, replace=False)
        f = float(rng.uniform(0.1, 0.9))
        out.append(Material(f"{a}+{b}:{f:.3f}", library.mix_molar({a: f, b: 1 - f})))
    return out


def held_out_materials(mixtures: int = 150, seed: int = 0) -> list[Material]:
    """Materials no training material is: the held-out minerals, mixtures involving them or
    drawn with another seed, and series points halfway between the training steps."""
    library = load_library()
    train, held = _split_minerals(library, seed)
    out = [Material(n, library.mineral(n).composition) for n in held]
    for series in sorted(library.series):
        for x in (0.15, 0.45, 0.75):
            out.append(Material(f"{series}:{x:.3f}", library.solid_solution(series, x)))
    rng = np.random.default_rng(seed + 2000)
    names = train + held
    for _ in range(mixtures):
        a = str(rng.choice(held)) if rng.random() < 0.5 else str(rng.choice(names))
        b = str(rng.choice([n for n in names if n != a]))
        f = float(rng.uniform(0.1, 0.9))
        out.append(Material(f"{a}+{b}:{f:.3f}", library.mix_molar({a: f, b: 1 - f})))
    return out


def expected_spectra(
    materials: list[Material], beam_energy_kev: float = 20.0
) -> NDArray[np.float32]:
    """Expected spectra ``(len(materials), BAND_CHANNELS)``, each summing to 1."""
    detector = band_detector()
    return np.stack(
        [expected_spectrum(m.composition, detector, beam_energy_kev) for m in materials]
    ).astype(np.float32)
