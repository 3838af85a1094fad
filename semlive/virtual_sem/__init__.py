"""A simulated SEM that writes a realistic session folder (Contract 1), with ground truth.

The sample is a vesicular basaltic andesite phantom (:mod:`._scene`) rendered through the
physics of :mod:`semlive.physics`; the acquisition (tile plan, stage error, drift, EDS frames,
spectra, standards, microprobe profiles) follows :mod:`._plan`. :func:`simulate` writes it all in
acquisition order at a chosen pace, with faults on request, and the ground truth in
``OUT/_truth/``.
"""

from semlive.virtual_sem._fields import FIELD_KINDS, Field, simulate_field, write_field
from semlive.virtual_sem._plan import (
    PRESETS,
    SESSION_GAIN_JUMP,
    SESSION_OFFSET_JUMP_DN,
    Preset,
)
from semlive.virtual_sem._simulate import SimulationSummary, simulate
from semlive.virtual_sem._writer import FAULTS

__all__ = [
    "FAULTS",
    "FIELD_KINDS",
    "PRESETS",
    "SESSION_GAIN_JUMP",
    "SESSION_OFFSET_JUMP_DN",
    "Field",
    "Preset",
    "SimulationSummary",
    "simulate",
    "simulate_field",
    "write_field",
]
