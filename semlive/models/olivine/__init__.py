"""Olivine segmentation (Leichter et al. 2022), live.

Labels come from EDS element maps by the paper's rules (:func:`olivine_labels`); a DeepLabV3
network (:mod:`semlive.models`'s registry) learns BSE → olivine from the EDS-covered tiles
(:func:`train_olivine`), and :class:`OlivineSegmenter` segments completed regions of the mosaic
with overlapping sliding windows into ``bse/labels/olivine``.
"""

from semlive.models.olivine._check import (
    CrystalCheck,
    CrystalFeatures,
    crystal_features,
    fit_crystal_check,
)
from semlive.models.olivine._data import (
    IGNORE,
    LOOKALIKE,
    LabelledTile,
    TrainingData,
    load_training_data,
)
from semlive.models.olivine._evaluate import (
    agreement_with_eds,
    eds_tile_mask,
    evaluate_against_truth,
    region_metrics,
)
from semlive.models.olivine._outline import Outline
from semlive.models.olivine._rules import (
    RuleSet,
    load_rule_set,
    olivine_labels,
    refine_labels,
    rule_thresholds,
)
from semlive.models.olivine._segment import (
    LABEL_PATH,
    PROBABILITY_PATH,
    ROTATIONS,
    OlivineSegmenter,
    RegionResult,
    inference_views,
    sliding_probabilities,
    view_averaged,
    warm_up,
    window_starts,
)
from semlive.models.olivine._train import (
    FittedSegmentation,
    TrainProgress,
    default_architecture,
    fit_segmentation,
    score_model,
    train_olivine,
)

__all__ = [
    "IGNORE",
    "LABEL_PATH",
    "LOOKALIKE",
    "PROBABILITY_PATH",
    "ROTATIONS",
    "CrystalCheck",
    "CrystalFeatures",
    "FittedSegmentation",
    "LabelledTile",
    "OlivineSegmenter",
    "Outline",
    "RegionResult",
    "RuleSet",
    "TrainProgress",
    "TrainingData",
    "agreement_with_eds",
    "crystal_features",
    "default_architecture",
    "eds_tile_mask",
    "evaluate_against_truth",
    "fit_crystal_check",
    "fit_segmentation",
    "inference_views",
    "load_rule_set",
    "load_training_data",
    "olivine_labels",
    "refine_labels",
    "region_metrics",
    "rule_thresholds",
    "score_model",
    "sliding_probabilities",
    "train_olivine",
    "view_averaged",
    "warm_up",
    "window_starts",
]
