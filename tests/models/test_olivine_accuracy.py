"""Olivine segmentation against the virtual SEM's truth, on tiles the network never saw.

One model is trained by ``semlive train`` on the `small` session's EDS tiles (9 of 36, ~25 %)
and used by every test here: accuracy on the other tiles (clinopyroxene-rich areas included),
sliding windows against patch-wise inference at window borders, and robustness to the BSE
gain/offset shift between two sessions 20 days apart.
"""

import shutil

import numpy as np
import pytest
import zarr

from semlive.cli import main
from semlive.models import confusion
from semlive.models.olivine import (
    LABEL_PATH,
    OlivineSegmenter,
    eds_tile_mask,
    evaluate_against_truth,
    sliding_probabilities,
    window_starts,
)
from semlive.settings import OlivineSettings
from semlive.streaming import truth_on_mosaic
from semlive.virtual_sem import SESSION_GAIN_JUMP, SESSION_OFFSET_JUMP_DN, simulate

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # the training fixture: ~5 min

# Issue 7 asks IoU >= 0.90 and OA >= 99 % on unseen tiles. Not reached yet. With the default
# recipe (refined labels, narrow gain/offset augmentation, steps in passes of 4, the last
# epoch's weights) and this test's 8 epochs the network alone calls about 40 % of
# clinopyroxene olivine (its BSE overlaps olivine's); the crystal check (flat crystals in the
# grey band of the session's clinopyroxene dropped, learnt on the EDS tiles from the network's
# crystals and the clinopyroxene the EDS rules find there) removes most of it. The same code,
# seed and data train to a different network on different machines (float rounding in the
# CPU kernels grows over the epochs): this fixture's model scored IoU 0.786, OA 0.982,
# clinopyroxene 5.6 % in earlier sessions and 0.746, 0.978, 11.6 % on the machine of 2026-12-06
# (seeds 1 and 2 there: 0.707 and 0.753, against 0.694 and 0.785 before); the check's band is
# learnt from the few clinopyroxenes of the EDS tiles, and on that machine it stopped short of
# the unseen clinopyroxene microphenocrysts at 29.1k-29.4k DN. `semlive train`'s default 40
# epochs reached 0.827 in an earlier session (0.767 and 0.778 on seeds 1 and 2). What is
# left: ~38k px of olivine missed (microlites and microphenocrysts, rims) and 28-43k px called
# olivine (clinopyroxene microphenocrysts, mostly). These floors guard what is reached, below
# the spread measured between machines; the issue stays open (see the closing note).
IOU_FLOOR, OA_FLOOR, CPX_CEILING, ROBUST_DROP = 0.70, 0.97, 0.15, 0.02
EPOCHS = 8  # ~5 min on 2 CPU cores; `semlive train` defaults to 40 (~21 min)


@pytest.fixture(scope="module")
def trained(small_store, tmp_path_factory):
    store = tmp_path_factory.mktemp("olivine") / "store"
    shutil.copytree(small_store, store)
    assert main(["train", str(store), "--epochs", str(EPOCHS)]) == 0
    assert main(["segment", str(store)]) == 0
    return store


@pytest.fixture(scope="module")
def unseen(trained, small_session):
    return evaluate_against_truth(trained, small_session / "_truth")


def test_unseen_tiles_accuracy_against_the_truth(unseen):
    overall = unseen["overall"]
    assert overall["pixels"] > 3_000_000  # three quarters of the mosaic is unseen
    assert overall["iou"] >= IOU_FLOOR
    assert overall["overall_accuracy"] >= OA_FLOOR
    assert unseen["clinopyroxene_as_olivine"] <= CPX_CEILING
    assert len(unseen["regions"]) == 6  # scored per 1024² region, 2 × 3 on `small`
    assert sum(r["tp"] for r in unseen["regions"]) == overall["tp"]


@pytest.mark.xfail(strict=True, reason="issue 7 open: IoU 0.75-0.79 / OA 0.98 reached, see note")
def test_unseen_tiles_reach_the_issues_accuracy(unseen):
    """The issue's bar, kept executable: an unexpected pass fails the run, so whoever reaches
    it turns this into a plain test."""
    overall = unseen["overall"]
    assert overall["iou"] >= 0.90
    assert overall["overall_accuracy"] >= 0.99
    assert unseen["clinopyroxene_as_olivine"] <= 0.05


def test_sliding_windows_beat_patch_wise_inference_at_window_borders(trained, small_session):
    settings = OlivineSettings()
    segmenter = OlivineSegmenter(trained, settings)
    window, overlap = 256, 64  # small windows: many borders, where context is cut
    image = np.asarray(segmenter.bse["0"][:], np.float32)
    truth = truth_on_mosaic(trained, small_session / "_truth")["phase"]
    valid = (truth != 255) & (image > 0) & ~eds_tile_mask(trained, image.shape)
    patch = sliding_probabilities(image, segmenter.predict, window, 0, 4)
    slide = sliding_probabilities(image, segmenter.predict, window, overlap, 4)
    # pixels within 16 px of an edge between patch-wise windows
    near = np.zeros(image.shape, bool)
    for axis, length in enumerate(image.shape):
        starts = window_starts(length, window, 0)
        edges = starts[1:] + [s + min(window, length) for s in starts[:-1]]
        for edge in edges:
            index = [slice(None), slice(None)]
            index[axis] = slice(max(edge - 16, 0), edge + 16)
            near[tuple(index)] = True
    band = valid & near
    assert band.sum() > 500_000
    # the two schemes compared over the thresholds 0.05-0.95 (the mean IoU): at any one
    # threshold the difference is about a point and its sign depends on the training run
    # (at metrics.network_dlth, 0.511 against 0.499 for one model of this recipe, 0.469 against
    # 0.476 for another); over the thresholds sliding windows were ahead for every model
    # measured (0.421 against 0.412, 0.432 against 0.399, 0.513 against 0.505, 0.455 against
    # 0.431); see the closing note
    thresholds = np.arange(0.05, 0.96, 0.05)
    at_border_patch = np.mean([confusion(patch >= t, truth == 1, band).iou for t in thresholds])
    at_border_slide = np.mean([confusion(slide >= t, truth == 1, band).iou for t in thresholds])
    assert at_border_slide > at_border_patch


def _iou_after(store, small_session, gain, offset_dn):
    root = zarr.open_group(str(store / "mosaic.zarr"), mode="a")
    level = root["bse/0"]
    raw = np.asarray(level[:], np.float64)
    level[:] = np.where(raw > 0, np.clip(raw * gain + offset_dn, 1, 65535), 0).astype(level.dtype)
    del root[LABEL_PATH]
    assert main(["segment", str(store)]) == 0
    return evaluate_against_truth(store, small_session / "_truth")["overall"]["iou"]


@pytest.mark.parametrize("sign", [1, -1])
def test_a_20_day_session_shift_costs_at_most_two_points(
    trained, unseen, small_session, tmp_path, sign
):
    """The BSE gain and offset jump between two sessions 20 days apart (the virtual SEM's,
    about 0.09 mg#), left uncorrected by the standards. The augmentation is narrow (±2 %,
    ±300 DN: what the drift correction leaves; the paper's wide one, 0.1 and 1500 DN, cost 1-16
    points here) and the crystal check's grey band is in drift-corrected DN, so the network
    alone falls from 0.786 to 0.100 (+7.5 %) and 0.230 (-7.5 %). The segmenter measures the
    shift from the mosaic's grey landmarks against the training tiles' and maps it back
    (0.786 again with either sign, measured on this recipe's model; on the machine of
    2026-12-06, 0.746 unshifted and 0.746 with either sign)."""
    store = tmp_path / "shifted"
    shutil.copytree(trained, store)
    gain, offset = 1 + sign * SESSION_GAIN_JUMP, sign * SESSION_OFFSET_JUMP_DN
    iou = _iou_after(store, small_session, gain, offset)
    assert iou >= unseen["overall"]["iou"] - ROBUST_DROP


@pytest.fixture(scope="module")
def next_session(tmp_path_factory):
    """Session 1 of the same sample, 20 days after the training session."""
    session = tmp_path_factory.mktemp("next") / "session-1"
    simulate(session, "small", seed=0, session=1)
    return session


def _segmented_with(trained, store):
    shutil.copytree(trained / "models", store / "models")
    assert main(["segment", str(store)]) == 0
    return store


def test_the_next_session_drift_corrected_keeps_its_accuracy(
    trained, unseen, next_session, tmp_path, stitch
):
    """Session 1 through semlive's own path (standards correct the drift), segmented with the
    model trained on session 0."""
    store = _segmented_with(trained, stitch(next_session, tmp_path / "store-1"))
    iou = evaluate_against_truth(store, next_session / "_truth")["overall"]["iou"]
    assert iou >= unseen["overall"]["iou"] - ROBUST_DROP


def test_the_next_session_uncorrected_keeps_its_accuracy(trained, unseen, next_session, tmp_path):
    """Session 1 stitched without drift correction (no standards used): its BSE is off the
    training scale by the 20-day jump and the drift since, which the segmenter measures from
    the grey landmarks and maps back. Measured on this recipe's model: IoU 0.790 mapped, 0.230
    as it is (the drift-corrected session: 0.790)."""
    from semlive.settings import AcquisitionSettings, Settings
    from semlive.streaming import stitch_session

    fast = AcquisitionSettings(
        observer="polling", poll_interval_s=0.01, settle_polls=1, quarantine_after_s=0.0
    )
    store = tmp_path / "store-1"
    for _ in stitch_session(next_session, store, Settings(acquisition=fast), correction=None):
        pass
    _segmented_with(trained, store)
    labels = zarr.open_group(str(store / "mosaic.zarr"), mode="r")[LABEL_PATH]
    assert labels.attrs["semlive"]["grey_mapping"]["gain"] < 1  # the jump lowered the gain
    iou = evaluate_against_truth(store, next_session / "_truth")["overall"]["iou"]
    assert iou >= unseen["overall"]["iou"] - ROBUST_DROP
