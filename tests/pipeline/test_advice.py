"""Training-area advice: the learning-curve fit and the decision it gives."""

from __future__ import annotations

import numpy as np
import pytest

from semlive.pipeline._advice import advise, fit_learning_curve

A_TOTAL = 4_000_000.0  # labelled px of a whole simulated section's EDS


B, C = 18.7, 0.45  # a curve that flattens near a quarter of the area, as the paper found


def _true_iou(area):
    return 0.93 - B * np.asarray(area, float) ** -C


def _flattens(target: float) -> float:
    """Where doubling the area gains ``target``: b·A^-c·(1 − 2^-c) = target."""
    return (B * (1 - 2**-C) / target) ** (1 / C)


def test_the_fit_recovers_a_learning_curve():
    area = np.geomspace(50_000, 2_000_000, 6)
    curve, plausible = fit_learning_curve(area, _true_iou(area), noise=0.001)
    assert curve in plausible
    assert curve.c == pytest.approx(0.45, abs=0.03)
    assert curve.a == pytest.approx(0.93, abs=0.01)
    np.testing.assert_allclose(curve.iou(area), _true_iou(area), atol=2e-3)


def test_enough_within_five_percent_of_area_where_the_curve_flattens():
    """EDS area grows through the session; an advice every 2 % of it adds three points
    (a quarter, a half, all of the area) to the curve, whose IoUs scatter by 0.002."""
    target = 0.01
    truly = _flattens(target)
    assert 0.2 * A_TOTAL < truly < 0.3 * A_TOTAL
    rng = np.random.default_rng(0)
    points: list[dict[str, float]] = []
    said = None
    for share in np.arange(0.02, 1.0, 0.02):
        area = share * A_TOTAL
        points += [
            {"labelled_px": a, "iou": float(_true_iou(a) + rng.normal(0, 0.002))}
            for a in (area / 4, area / 2, area)
        ]
        advice = advise(points, int(area), target, area_fraction=share, noise=0.002)
        if advice.enough:
            said = area
            assert "enough EDS" in advice.message
            break
        assert "keep acquiring EDS" in advice.message
    assert said is not None
    assert abs(said - truly) <= 0.05 * A_TOTAL


def test_a_noisy_curve_is_not_called_enough_too_early():
    rng = np.random.default_rng(1)
    area = 0.05 * A_TOTAL
    points = [
        {"labelled_px": a, "iou": float(_true_iou(a) + rng.normal(0, 0.05))}
        for a in (area / 4, area / 2, area)
    ]
    advice = advise(points, int(area), 0.01)
    assert not advice.enough
    assert advice.gain_upper > advice.gain


def test_one_area_is_not_a_curve():
    with pytest.raises(ValueError, match="two or more areas"):
        fit_learning_curve([1e5, 1e5], [0.5, 0.6])
