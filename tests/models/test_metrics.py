"""IoU and overall accuracy as the paper defines them; per-region counts add up."""

import numpy as np
import pytest

from semlive.models import Confusion, confusion
from semlive.models.olivine import region_metrics


def test_iou_and_overall_accuracy_on_known_counts():
    predicted = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    truth = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)
    cf = confusion(predicted, truth)
    assert (cf.tp, cf.fp, cf.fn, cf.tn) == (2, 1, 1, 4)
    assert cf.iou == pytest.approx(2 / 4)
    assert cf.overall_accuracy == pytest.approx(6 / 8)
    assert np.isnan(Confusion().iou)


def test_region_metrics_sum_to_the_overall_figure():
    rng = np.random.default_rng(0)
    truth = rng.random((1500, 2100)) < 0.1
    predicted = truth ^ (rng.random(truth.shape) < 0.02)
    valid = np.ones(truth.shape, bool)
    valid[:, :300] = False
    out = region_metrics(predicted, truth, valid)
    assert len(out["regions"]) == 2 * 3
    assert sum(r["tp"] for r in out["regions"]) == out["overall"]["tp"]
    assert out["overall"]["pixels"] == int(valid.sum())
    assert out["overall"]["iou"] == pytest.approx(confusion(predicted, truth, valid).iou)
