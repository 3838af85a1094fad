"""Calibration: instrument drift tracked against standards, and BSE grey level → olivine mg#.

:class:`DriftTracker` turns standard measurements into a drift model (gain and offset over the
session), keeps the control chart in the ledger, raises :class:`DriftAlert` and corrects each BSE
tile by its acquisition time before it is fused into the mosaic. The mg# regression registers the
microprobe profiles to the corrected mosaic, removes outliers with LocalOutlierFactor, fits BSE →
mg# on part of the profiles, tests it on the rest and writes the mg# map.
"""

from semlive.calibration._calibrate import (
    CalibrationReport,
    calibrate_store,
    calibration_status,
    crack_pixels,
    mosaic_image,
    write_mgnumber_map,
)
from semlive.calibration._drift import (
    DriftAlert,
    DriftModel,
    DriftRound,
    DriftState,
    FailedRound,
    StandardLevel,
    correct_bse,
    fit_round,
    group_rounds,
    measure_standard,
)
from semlive.calibration._mgnumber import (
    MgFit,
    MosaicImage,
    ProfileResult,
    fit_mgnumber,
    lof_outliers,
    refused_fit,
)
from semlive.calibration._tracker import DriftTracker, drift_correction, load_levels

__all__ = [
    "CalibrationReport",
    "DriftAlert",
    "DriftModel",
    "DriftRound",
    "DriftState",
    "DriftTracker",
    "FailedRound",
    "MgFit",
    "MosaicImage",
    "ProfileResult",
    "StandardLevel",
    "calibrate_store",
    "calibration_status",
    "correct_bse",
    "crack_pixels",
    "drift_correction",
    "fit_mgnumber",
    "fit_round",
    "group_rounds",
    "load_levels",
    "lof_outliers",
    "measure_standard",
    "mosaic_image",
    "refused_fit",
    "write_mgnumber_map",
]
