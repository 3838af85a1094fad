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

# Issue 7 asks IoU >= 0.90 and OA >= 99 % on unseen tiles. Not reached yet. With the default recipe
# (refined labels, narrow gain/offset augmentation, steps in passes of 4, the last epoch's weights)
# and this test's 8 epochs the network alone calls about 40 % of clinopyroxene olivine (its BSE
# overlaps olivine's) and finds only part of many olivines (the part whose grey it trusts). The
# outline grows each crystal it finds to the BSE's edges over the pixels it gives at least 0.02; the
# crystal check (flat crystals in the grey band of the session's clinopyroxene dropped, learnt on
# the EDS tiles from the network's crystals and the clinopyroxene the EDS rules find there; cracks
# and holes left out of a crystal's interior; crystals too small to show zoning judged by the band
# alone; the band's edges no farther past the clinopyroxene than its spacing in grey, and a gap in
# it where unzoned olivines lie amid it (not where one alone pays for it); the spread smoothed
# within the crystals, zoning read as interior spread or rim against core, whichever is larger; of
# the thresholds that do as well, the lowest clear of the noise) removes most of the clinopyroxene,
# and the crystals kept have their edges drawn by the BSE's local grey levels, cracks cleared, holes
# without a step in grey filled (Outline.snap). The network is refit for 2 epochs on all 9 EDS tiles
# (dlth, outline and check chosen before): with 2 tiles held out, a composition only they hold is
# otherwise never learnt. The same code, seed and data train to a different network on different
# machines (float rounding in the CPU kernels grows over the epochs). On the machine of 2026-12-07
# (fourth session), the `semlive train` networks of seeds 0-4: IoU 0.856 / 0.828 / 0.865 / 0.840 /
# 0.798 (fifth session: 0.881 / 0.829 / 0.865 / 0.900 / 0.798, seed 0 with no gap fitted around one
# lone flat olivine of its EDS tiles, seed 3 with its phenocryst's Mg-rich core filled; the fourth
# session began at 0.850 / 0.824 / 0.856 / 0.832 / 0.586: seed 4's 58k-px zoned olivine, 441 DN of
# spread, fell under the middle of the thresholds that did as well); fresh seeds 5 and 6: 0.839 and
# 0.694 (seed 6's network misses whole crystals). What is left: whole crystals the network gives
# under 0.02 (microlites, some microphenocrysts), clinopyroxene and unzoned olivines of the same
# grey, and olivines whose zoning falls under a threshold set by odd crystals on a few EDS tiles.
# Sixth session: segmenting averages two views of each window (as it is and turned 180°;
# bfloat16 on this CPU), and dlth and the check are fitted on the same: seeds 0-4 0.892 / 0.850 /
# 0.885 / 0.904 / 0.805, fresh seeds 5-7 0.867 / 0.704 / 0.601.
# These floors guard what is reached, below the spread measured between seeds and machines; the
# issue stays open (see the closing note).
IOU_FLOOR, OA_FLOOR, CPX_CEILING, ROBUST_DROP = 0.76, 0.98, 0.10, 0.02
EPOCHS = 8  # ~5 min on 2 CPU cores, and 2 of refit; `semlive train` defaults to 40 (~21 min)


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


@pytest.mark.xfail(strict=True, reason="issue 7 open: IoU 0.60-0.90, OA 0.97-0.99, see note")
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
    window, overlap = 256, 128  # small windows: many borders, where context is cut
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

    # the two schemes' probabilities scored by their log loss against the truth (a proper
    # score: no threshold). Compared by the IoU at one threshold, or by the mean IoU over the
    # thresholds 0.05-0.95, the sign depended on the training run (averaged probabilities are
    # less extreme, which the mean over thresholds penalises): on the machine of 2026-12-07
    # this fixture's model gave a mean IoU of 0.532 sliding (overlap 64) against 0.547
    # patch-wise, where four models of earlier machines had sliding ahead. Log loss at the
    # borders, patch-wise against sliding with overlap 128 (64), seeds 0/1/2 of this recipe on
    # that machine: 0.1166 / 0.1076 / 0.1268 against 0.1110 / 0.0806 / 0.1255 (0.1214 /
    # 0.0813 / 0.1318); see the closing note
    def log_loss(p):
        p = np.clip(p[band], 1e-6, 1 - 1e-6)
        return float(-np.mean(np.where(truth[band] == 1, np.log(p), np.log1p(-p))))

    assert log_loss(slide) < log_loss(patch)


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
