"""The crystal check: crystals too flat for an olivine, in the grey band of its look-alikes,
dropped, with a threshold and band learnt from EDS labels, on synthetic crystals with the
virtual SEM's noise."""

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage as ndi

from semlive.models import build_network
from semlive.models._checkpoint import ModelCard, Normalisation, load_model, save_model
from semlive.models.olivine import CrystalCheck, crystal_features, fit_crystal_check
from semlive.models.olivine._check import MIN_GAIN, MIN_REACH_DN, CrystalFeatures, smoothed

NOISE_DN = 590.0  # the virtual SEM's BSE noise per pixel


def _scene(seed, zoned, flat, small=(), size=(400, 600)):
    """Disks of olivine (zoned: brighter toward the rim by 2,000 DN), of a flat look-alike at
    the same mean grey, and small olivines (too small to judge), on a darker groundmass."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: size[0], : size[1]]
    grey = np.full(size, 24_000.0)
    olivine = np.zeros(size, bool)
    mask = np.zeros(size, bool)
    for (r, c, radius), is_olivine in [(d, True) for d in zoned] + [(d, False) for d in flat]:
        dist = np.hypot(rr - r, cc - c)
        disk = dist <= radius
        level = 28_000 + 2_000 * (dist / radius) if is_olivine else np.full(size, 29_000.0)
        grey[disk] = level[disk]
        mask |= disk
        olivine |= disk & is_olivine
    for r, c, radius in small:
        disk = np.hypot(rr - r, cc - c) <= radius
        grey[disk] = 29_000
        mask |= disk
        olivine |= disk
    grey = ndi.gaussian_filter(grey, 0.6) + rng.normal(0, NOISE_DN, size)
    return grey, mask, olivine


ZONED = [(100, 100, 60), (300, 250, 70), (120, 450, 50)]
FLAT = [(280, 480, 65), (100, 280, 45)]
SMALL = [(350, 60, 6), (30, 560, 5)]


def test_flat_crystals_are_dropped_with_a_threshold_learnt_from_eds_labels():
    grey, mask, olivine = _scene(0, ZONED, FLAT, SMALL)
    check, scores = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    assert check.max_core_std_dn > 0
    assert scores["dropped"] == len(FLAT)
    assert scores["eds_iou_with"] == pytest.approx(1.0)
    assert scores["eds_iou_without"] < 0.8
    # a new scene of the same kinds: the flat crystals go, zoned and small olivines stay
    grey2, mask2, olivine2 = _scene(1, [(200, 150, 80)], [(200, 420, 90)], [(30, 30, 7)])
    kept = check.apply(grey2, mask2)
    assert np.array_equal(kept, olivine2)


def test_the_check_stays_off_where_it_gains_nothing():
    grey, mask, olivine = _scene(2, ZONED, [], SMALL)
    check, scores = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    assert check.max_core_std_dn == 0
    assert scores["dropped"] == 0
    assert np.array_equal(check.apply(grey, mask), mask)  # off: the mask as it is


def test_only_labelled_pixels_count_and_older_cards_judge_no_small_crystal():
    grey, mask, olivine = _scene(3, ZONED, FLAT, SMALL)
    features = crystal_features(grey, mask, CrystalCheck())  # small_depth_px 0: older cards
    crystals, spread = features.crystals, features.spread
    assert np.isinf(spread[0])
    small = [crystals[r, c] for r, c, _ in SMALL]
    assert np.isinf(spread[small]).all()
    flat = [crystals[r, c] for r, c, _ in FLAT]
    zoned = [crystals[r, c] for r, c, _ in ZONED]
    assert spread[flat].max() < spread[zoned].min()
    # EDS labels only on the left half, which holds no flat crystal: nothing to learn there
    known = np.zeros_like(mask)
    known[:, :230] = True
    check, _ = fit_crystal_check([(grey, mask, olivine, known)])
    assert check.max_core_std_dn == 0


def test_the_card_carries_the_check_and_older_cards_have_none(tmp_path):
    model = build_network("deeplabv3plus_mobilenet_v3_large")
    card = ModelCard("deeplabv3plus_mobilenet_v3_large", Normalisation(25_000.0, 3_000.0), 0.4)
    save_model(tmp_path / "old", model, card)
    path = tmp_path / "old" / "card.json"
    older = json.loads(path.read_text())
    del older["crystal_check"]  # a card written before the check existed
    path.write_text(json.dumps(older))
    assert load_model(tmp_path / "old")[1].crystal_check == {}
    for check in (
        CrystalCheck(140.5),  # no band: the flatness alone decides
        CrystalCheck(140.5, band_low_dn=29_000.0, band_high_dn=30_100.0),
        CrystalCheck(140.5, band_low_dn=29_000.0),  # open above
        CrystalCheck(140.5, band_low_dn=29_000.0, band_high_dn=30_100.0, small_depth_px=1.5),
    ):
        save_model(tmp_path / "new", model, replace(card, crystal_check=check.as_dict()))
        loaded = load_model(tmp_path / "new")[1]
        json.loads((tmp_path / "new" / "card.json").read_text(), parse_constant=pytest.fail)
        assert CrystalCheck.from_card(loaded.crystal_check) == check


def _iou(mask, label):
    return (mask & label).sum() / (mask | label).sum()


def test_the_fit_reports_what_applying_it_gives_even_with_tied_crystals():
    grey, mask, olivine = _scene(4, ZONED, FLAT, SMALL)
    check, scores = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    assert _iou(check.apply(grey, mask), olivine) == pytest.approx(scores["eds_iou_with"])
    # two identical flat crystals, one labelled olivine: no threshold falls between them
    twin = grey.copy()
    twin[:, 300:] = grey[:, :300]
    twin_mask = np.concatenate([mask[:, :300], mask[:, :300]], axis=1)
    labels = np.concatenate([olivine[:, :300], mask[:, :300]], axis=1)  # the copy: all olivine
    check, scores = fit_crystal_check([(twin, twin_mask, labels, np.ones_like(twin_mask))])
    assert _iou(check.apply(twin, twin_mask), labels) == pytest.approx(scores["eds_iou_with"])


def test_unscanned_pixels_do_not_make_a_flat_crystal_look_zoned():
    grey, mask, olivine = _scene(5, ZONED, FLAT, SMALL)
    check, _ = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    r, c, _ = FLAT[0]
    strip = np.zeros_like(grey)
    strip[r - 7 : r + 7] = grey[r - 7 : r + 7]  # only a 14-row strip across it was scanned
    features = crystal_features(strip, mask & (strip > 0), check)
    crystals, spread = features.crystals, features.spread
    # smoothing 0 DN in would spread it to ~1,100 DN, far above the threshold (~210)
    assert spread[crystals[r, c]] < check.max_core_std_dn
    assert not check.apply(strip, mask & (strip > 0))[r, c]


def test_cracks_do_not_make_a_flat_crystal_look_zoned():
    """Resin in cracks (the virtual SEM's 3,400 DN, 1-2 px wide) inside a flat look-alike, the
    network's mask bridging them: the crystal reads as flat, at its own grey level, as uncracked
    (with the cracks in its statistics, its spread read 2,300 DN)."""
    grey, mask, olivine = _scene(6, ZONED, FLAT, SMALL)
    check, _ = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    r, c, radius = FLAT[0]
    whole = crystal_features(grey, mask, check)
    before = whole.crystals[r, c]
    cracked = grey.copy()
    for offset, width in ((-20, 1), (5, 2), (25, 1)):
        rows = slice(r + offset, r + offset + width)
        cracked[rows, c - radius + 8 : c + radius - 8] = 3_400
    cracked = np.where(mask, ndi.gaussian_filter(cracked, 0.6), grey)
    features = crystal_features(cracked, mask, check)
    after = features.crystals[r, c]
    assert features.spread[after] < check.max_core_std_dn
    assert features.mean[after] == pytest.approx(whole.mean[before], abs=60)
    assert not check.apply(cracked, mask)[r, c]
    # the cracks lie inside the interior the check reads: with them, it would read as zoned
    rr, cc = np.mgrid[: grey.shape[0], : grey.shape[1]]
    interior = np.hypot(rr - r, cc - c) < 0.7 * radius
    assert smoothed(cracked, check.smooth_sigma_px)[interior].std() > 10 * features.spread[after]


def _crystals(seed, disks, size=(360, 900)):
    """Disks (row, col, radius, core DN, rim DN, olivine?) on a glass groundmass of 25,000 DN,
    the grey level changing linearly from core to rim, with the beam's blur and noise."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: size[0], : size[1]]
    grey = np.full(size, 25_000.0)
    mask = np.zeros(size, bool)
    olivine = np.zeros(size, bool)
    for r, c, radius, core, rim, is_olivine in disks:
        dist = np.hypot(rr - r, cc - c)
        disk = dist <= radius
        grey[disk] = (core + (rim - core) * dist / radius)[disk]
        mask |= disk
        olivine |= disk & is_olivine
    grey = ndi.gaussian_filter(grey, 0.6) + rng.normal(0, NOISE_DN, size)
    return grey, mask, olivine


def test_look_alikes_are_dropped_only_in_their_grey_band():
    """Flat olivines darker and brighter than the look-alikes are kept: the band is learnt
    from where the EDS labels put the flat look-alikes, halfway to the nearest flat olivine."""
    training = [
        (90, 90, 60, 27_000, 27_000, True),  # flat olivine, Mg-rich
        (90, 260, 55, 31_000, 31_000, True),  # flat olivine, Fe-rich
        (90, 440, 60, 28_000, 30_600, True),  # zoned olivine across the look-alikes' band
        (90, 620, 55, 29_300, 29_300, False),  # flat look-alikes
        (90, 800, 60, 29_800, 29_800, False),
        (260, 150, 60, 27_400, 27_400, True),
        (260, 450, 50, 29_550, 29_550, False),
    ]
    grey, mask, olivine = _crystals(6, training)
    check, scores = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    assert scores["eds_iou_with"] == pytest.approx(1.0)
    assert scores["dropped"] == 3
    assert 27_400 < check.band_low_dn < 29_300
    assert 29_800 < check.band_high_dn < 31_000
    # the flatness alone cannot do it: the flat olivines would go with the look-alikes
    flat_only = replace(check, band_low_dn=-np.inf, band_high_dn=np.inf)
    assert _iou(flat_only.apply(grey, mask), olivine) < 0.7
    # a new scene: flat olivines outside the band and a zoned one across it stay
    grey2, mask2, olivine2 = _crystals(
        7,
        [
            (100, 100, 70, 27_600, 27_600, True),
            (100, 300, 50, 30_800, 30_800, True),
            (100, 520, 80, 30_400, 28_200, True),  # reversely zoned
            (260, 300, 70, 29_450, 29_450, False),
            (260, 700, 60, 29_900, 29_900, False),
        ],
    )
    assert np.array_equal(check.apply(grey2, mask2), olivine2)
    assert "whose interior mean BSE is" in check.describe()


def test_small_crystals_are_judged_by_the_band_alone():
    """Crystals too small to show zoning count as flat: small look-alikes in the band learnt on
    the larger crystals go, small olivines outside it stay; the fit turns this on only where it
    gains, and a card written before (small_depth_px 0) keeps them all."""
    large = [
        (90, 90, 60, 27_000, 27_000, True),  # flat olivines, Mg- and Fe-rich
        (90, 260, 55, 31_000, 31_000, True),
        (90, 440, 60, 28_000, 30_600, True),  # zoned olivine across the band
        (90, 620, 55, 29_300, 29_300, False),  # flat look-alikes
        (90, 800, 60, 29_800, 29_800, False),
    ]
    small_olivine = [(250, 100, 5, 27_000, 27_000, True), (250, 300, 6, 31_000, 31_000, True)]
    small_lookalike = [(250, 500, 5, 29_500, 29_500, False), (300, 700, 6, 29_600, 29_600, False)]
    grey, mask, olivine = _crystals(12, large + small_olivine + small_lookalike)
    check, scores = fit_crystal_check([(grey, mask, olivine, np.ones_like(mask))])
    assert check.small_depth_px > 0
    assert scores["small_dropped"] == len(small_lookalike)
    assert scores["dropped"] == 2 + len(small_lookalike)
    assert scores["eds_iou_with"] == pytest.approx(1.0)
    features = crystal_features(grey, mask, check)
    small = [features.crystals[r, c] for r, c, *_ in small_olivine + small_lookalike]
    assert features.small[small].all()
    assert np.isinf(features.spread[small]).all()
    expected = [d[3] for d in small_olivine + small_lookalike]
    assert features.mean[small] == pytest.approx(expected, abs=400)
    assert "count as flat" in check.describe()
    # a new scene: the small look-alike goes, the small olivines stay
    grey2, mask2, olivine2 = _crystals(
        13,
        [
            (100, 100, 70, 27_600, 27_600, True),
            (100, 300, 50, 29_450, 29_450, False),
            (250, 100, 5, 27_200, 27_200, True),
            (250, 300, 6, 30_900, 30_900, True),
            (250, 500, 5, 29_550, 29_550, False),
        ],
    )
    assert np.array_equal(check.apply(grey2, mask2), olivine2)
    assert replace(check, small_depth_px=0.0).apply(grey2, mask2)[250, 500]  # older cards
    # where the small crystals in the band are olivine, judging them would lose: not on
    labels = olivine | np.isin(features.crystals, small)
    check, scores = fit_crystal_check([(grey, mask, labels, np.ones_like(mask))])
    assert check.max_core_std_dn > 0
    assert scores["dropped"] == 2
    assert check.small_depth_px == 0
    assert scores["small_dropped"] == 0
    # a crystal with too few pixels that deep is not judged: a 2-px-wide sliver
    sliver = np.zeros((40, 40), bool)
    sliver[10:30, 19:21] = True
    sliver_grey = np.where(sliver, 29_500.0, 25_000.0)
    assert not crystal_features(sliver_grey, sliver, CrystalCheck(small_depth_px=1.5)).small.any()


def test_the_crystal_mean_is_of_its_own_pixels_not_its_surroundings():
    """A small crystal's mean grey is not pulled toward the groundmass around it."""
    grey, mask, _ = _crystals(8, [(50, 50, 6, 29_500, 29_500, False)], size=(100, 100))
    features = crystal_features(grey, mask, CrystalCheck(min_core_px=5))
    (crystal,) = np.unique(features.crystals[mask])
    assert features.mean[crystal] == pytest.approx(29_500, abs=150)
    assert np.isfinite(features.spread[crystal])


def test_the_report_states_the_check_as_the_model_does():
    """The report reads the card without torch, so it words the check itself: the same words."""
    from semlive.catalogue._report import _check_rule

    assert _check_rule({}) == "off"
    for check in (
        CrystalCheck(140.5),
        CrystalCheck(140.5, band_low_dn=29_000.0, band_high_dn=30_100.0),
        CrystalCheck(96.0, band_low_dn=28_975.5),
        CrystalCheck(96.0, band_high_dn=30_975.5),
        CrystalCheck(96.0, band_low_dn=28_975.5, band_high_dn=30_100.0, small_depth_px=1.5),
        CrystalCheck(96.0, band_low_dn=28_975.5, smooth_within=True, rim_core=True),
    ):
        assert _check_rule(check.as_dict()) == check.describe()


def _tallied(spread, mean, tps, fps, fn=0.0):
    """A fit whose tiles' judged crystals are these (spread, mean, olivine px, other px)."""
    from semlive.models.olivine._check import CheckFit

    fit = CheckFit()
    fit.spreads, fit.means = [np.asarray(spread, float)], [np.asarray(mean, float)]
    fit.tps, fit.fps = [np.asarray(tps, float)], [np.asarray(fps, float)]
    fit.smalls = [np.zeros(len(spread), bool)]
    fit.tp, fit.fp, fit.fn = float(np.sum(tps)), float(np.sum(fps)), fn
    return fit


def test_the_band_is_the_best_there_is_even_with_crystals_tied_in_grey():
    """Against every band over the crystals' mean grey levels, at the fit's spread threshold:
    none does better (ties in mean grey go together, and the reported IoU is the rule's)."""
    rng = np.random.default_rng(9)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        mean = rng.integers(0, 4, n).astype(float)  # many ties
        spread = np.full(n, 50.0)
        tps, fps = rng.integers(0, 20, n), rng.integers(0, 20, n)
        fit = _tallied(spread, mean, tps, fps, fn=float(rng.integers(0, 30)))
        check, scores = fit.result()
        assert fit.iou(check) == pytest.approx(scores["eds_iou_with"])
        levels = np.unique(mean)
        best = fit.iou(CrystalCheck())
        for i, low in enumerate(levels):
            for high in levels[i:]:
                best = max(best, fit.iou(CrystalCheck(100.0, band_low_dn=low, band_high_dn=high)))
        if check.max_core_std_dn:
            assert scores["eds_iou_with"] >= best - 0.001 - 1e-9  # the plateau's tolerance
        else:  # off: no band gains MIN_GAIN
            assert best < scores["eds_iou_without"] + MIN_GAIN + 1e-9


def test_a_fit_without_olivine_switches_nothing_on_and_divides_by_nothing():
    fit = _tallied([50.0, 60.0], [29_000.0, 29_500.0], [0, 0], [30, 40])
    check, scores = fit.result()
    assert check.max_core_std_dn == 0
    assert scores["eds_iou_with"] == 0


def test_the_band_reaches_past_its_look_alikes_by_their_spacing_not_halfway():
    """Every edge in the gap between the last look-alike and the nearest flat olivine does as
    well on the EDS tiles; off them, the band stops one mean spacing of the look-alikes beyond
    the outermost (a sample of n falls short of its population's edge by about its range over
    n − 1), so a flat olivine just beyond that, which halfway would drop, is kept."""
    lookalikes = [29_000.0, 29_200.0, 29_400.0, 29_600.0]
    mean = [27_000.0, *lookalikes, 32_000.0]  # flat olivines far below and above
    tps, fps = [500, 0, 0, 0, 0, 500], [0, 300, 300, 300, 300, 0]
    check, scores = _tallied([50.0] * 6, mean, tps, fps).result()
    assert scores["eds_iou_with"] == pytest.approx(1.0)
    assert (check.band_low_dn, check.band_high_dn) == (28_800.0, 29_800.0)
    unseen = CrystalFeatures(
        np.empty(0, np.int32),
        np.array([np.inf, 50.0, 50.0, 50.0]),
        np.array([0.0, 28_400.0, 28_850.0, 29_750.0]),  # a flat olivine; two look-alikes
        np.zeros(4, bool),
    )
    assert check.drops(unseen).tolist() == [False, False, True, True]
    # a flat olivine nearer than the spacing: halfway to it, as before
    mean[-1] = 29_700.0
    check, _ = _tallied([50.0] * 6, mean, tps, fps).result()
    assert check.band_high_dn == 29_650.0
    # a single look-alike says nothing of the spread: the least reach, a mean's scatter
    fit = _tallied([50.0] * 3, [27_000.0, 29_000.0, 32_000.0], [500, 0, 500], [0, 300, 0])
    check, _ = fit.result()
    assert (check.band_low_dn, check.band_high_dn) == (29_000.0 - MIN_REACH_DN, 29_100.0)


def test_unzoned_olivines_amid_the_look_alikes_keep_a_gap_in_the_band():
    """Large flat olivines whose grey lies among the look-alikes': one band would drop them
    or keep half of the look-alikes; two runs around them (a band with a gap) drop all the
    look-alikes and keep them. A small one costs less than ``MIN_GAIN`` to drop: no gap."""
    from semlive.catalogue._report import _check_rule

    mean = [27_000.0, 29_000.0, 29_100.0, 29_200.0, 29_380.0, 29_420.0, 29_600.0, 29_700.0]
    mean += [32_000.0]
    fps = [0, 3_000, 3_000, 3_000, 0, 0, 3_000, 3_000, 0]
    tps = [5_000, 0, 0, 0, 3_000, 3_000, 0, 0, 5_000]
    fit = _tallied([50.0] * len(mean), mean, tps, fps)
    check, scores = fit.result()
    assert scores["eds_iou_with"] == pytest.approx(1.0)
    assert (check.band_low_dn, check.band_high_dn) == (28_900.0, 29_800.0)
    assert (check.gap_low_dn, check.gap_high_dn) == (29_290.0, 29_510.0)
    assert "but not 29,290–29,510 DN" in check.describe()
    assert _check_rule(check.as_dict()) == check.describe()
    unseen = CrystalFeatures(
        np.empty(0, np.int32),
        np.array([np.inf, 50.0, 50.0, 50.0]),
        np.array([0.0, 29_050.0, 29_400.0, 29_650.0]),
        np.zeros(4, bool),
    )
    assert check.drops(unseen).tolist() == [False, True, False, True]
    loaded = CrystalCheck.from_card(json.loads(json.dumps(check.as_dict())))
    assert loaded == check
    # the same olivines small: dropping them costs less than the gap must gain
    tps[4] = tps[5] = 10
    check, _ = _tallied([50.0] * len(mean), mean, tps, fps).result()
    reach = 700.0 / 6  # 7 means over 700 DN
    edges = (check.band_low_dn, check.band_high_dn)
    assert edges == pytest.approx((29_000 - reach, 29_700 + reach))
    assert check.gap_low_dn > check.gap_high_dn  # none
    assert "but not" not in check.describe()


def test_a_gap_that_one_olivine_pays_for_is_not_taken():
    """One large flat olivine amid the look-alikes' grey on the EDS tiles: a gap around it
    would be fitted to that crystal alone (without it, no gap gains anything), and off the
    tiles it keeps the look-alikes of its grey. The band is fitted as if it were not there:
    its edges from the look-alikes' spacing alone, no gap, the olivine dropped on the tiles."""
    mean = [27_000.0, 29_000.0, 29_100.0, 29_200.0, 29_400.0, 29_600.0, 29_700.0, 32_000.0]
    fps = [0, 3_000, 3_000, 3_000, 0, 3_000, 3_000, 0]
    tps = [5_000, 0, 0, 0, 6_000, 0, 0, 5_000]
    fit = _tallied([50.0] * len(mean), mean, tps, fps)
    check, scores = fit.result()
    assert check.gap_low_dn > check.gap_high_dn  # none
    # 5 look-alikes over 700 DN: 175 DN beyond the outermost
    assert (check.band_low_dn, check.band_high_dn) == (28_825.0, 29_875.0)
    assert scores["dropped"] == 5 + 1
    assert scores["eds_iou_with"] == pytest.approx(fit.iou(check))
    assert scores["eds_iou_with"] == pytest.approx(10_000 / 16_000)


def test_the_best_two_runs_are_the_best_there_are():
    """The two-run search against every pair of runs apart (and every single run)."""
    from semlive.models.olivine._check import _best_runs

    rng = np.random.default_rng(4)
    for _ in range(300):
        values = rng.normal(0, 1, int(rng.integers(1, 10)))
        n = values.size
        runs = [(a, b) for a in range(n) for b in range(a + 1, n + 1)]
        best = max([0.0] + [values[a:b].sum() for a, b in runs])
        for a, b in runs:
            for c, d in runs:
                if c > b:
                    best = max(best, values[a:b].sum() + values[c:d].sum())
        found = _best_runs(values, two=True)
        assert sum(values[a:b].sum() for a, b in found) == pytest.approx(best)
        assert len(found) <= 2
        assert all(a < b for a, b in found)
        if len(found) == 2:
            assert found[0][1] < found[1][0]  # apart: a kept crystal between
        single = _best_runs(values, two=False)
        assert sum(values[a:b].sum() for a, b in single) == pytest.approx(
            max([0.0] + [values[a:b].sum() for a, b in runs])
        )


def test_the_lowest_threshold_that_does_as_well_with_a_margin_over_the_noise():
    """Of the spread thresholds that do as well on the EDS tiles, the lowest (an olivine just
    above the flat crystals off the tiles can be a large phenocryst), but never one that a
    flat crystal's noise reaches: at least twice the median spread of those it drops."""
    # flat look-alikes at 80-100 DN, a 1-px one at 300 (dropping it gains nearly nothing),
    # olivines at 600 and 900: the thresholds from 200 to 450 do as well, the lowest is taken
    fit = _tallied(
        [80.0, 90.0, 100.0, 300.0, 600.0, 900.0],
        [29_500.0] * 6,
        [0, 0, 0, 0, 5_000, 5_000],
        [2_000, 2_000, 2_000, 1, 0, 0],
    )
    check, _ = fit.result()
    assert check.max_core_std_dn == pytest.approx(200.0)
    # look-alikes at 80-90 DN and a 1-px one at 92: 91 DN would do as well but lies within the
    # flat crystals' noise, so the threshold above the 92 is taken
    fit = _tallied(
        [80.0, 85.0, 90.0, 92.0, 600.0],
        [29_500.0] * 5,
        [0, 0, 0, 0, 5_000],
        [2_000, 2_000, 2_000, 1, 0],
    )
    check, _ = fit.result()
    assert check.max_core_std_dn > 2 * 85.0
    assert check.max_core_std_dn < 600.0


def test_a_small_flat_crystal_beside_a_bright_neighbour_reads_flat():
    """Smoothed within the crystals, a small crystal's interior does not take in the grey of
    the groundmass or of the oxide beside it: it reads as flat as a large one (smoothed over
    everything, its spread reads more than twice its noise)."""
    grey, mask, _ = _crystals(10, [(50, 50, 8, 29_500, 29_500, False)], size=(100, 100))
    grey[:, 59:] += 20_000.0  # an oxide against it
    within = crystal_features(grey, mask, CrystalCheck(min_core_px=10, smooth_within=True))
    over_all = crystal_features(grey, mask, CrystalCheck(min_core_px=10))
    (crystal,) = np.unique(within.crystals[mask])
    noise_floor = NOISE_DN / (2 * np.sqrt(np.pi) * 2.0)  # white noise under a σ-2 Gaussian
    assert within.spread[crystal] < 1.5 * noise_floor
    assert over_all.spread[crystal] > 2 * noise_floor


def test_zoning_is_read_from_rim_against_core_too():
    """A large olivine zoned gently toward its rim: its interior spread (taken away from the rim)
    reads nearly as flat as a look-alike's, but its rim's mean grey differs from its core's by
    far more than a flat crystal's (whose rim and core differ by a mean's scatter)."""
    grey, mask, _ = _crystals(
        14,
        [(100, 100, 70, 29_000, 29_700, True), (100, 300, 70, 29_300, 29_300, False)],
        size=(200, 400),
    )
    spread_only = CrystalCheck(200.0, smooth_within=True)
    both = replace(spread_only, rim_core=True)
    alone, with_rim = crystal_features(grey, mask, spread_only), crystal_features(grey, mask, both)
    zoned, flat = alone.crystals[100, 100], alone.crystals[100, 300]
    assert alone.spread[zoned] < 200 < with_rim.spread[zoned]
    assert with_rim.spread[flat] == pytest.approx(alone.spread[flat])  # the spread, larger
    assert with_rim.spread[flat] < 200
    assert not spread_only.apply(grey, mask)[100, 100]  # dropped as flat
    kept = both.apply(grey, mask)
    assert kept[100, 100]
    assert not kept[100, 300]


def test_smoothing_within_the_crystals_on_crops_as_on_the_whole_image():
    """Smoothed crystal by crystal on crops with the Gaussian's reach: the same values as over
    the whole image, crystals at its edge and crystals side by side included."""
    from semlive.models.olivine._check import _smoothed_within, cleared

    grey, mask, _ = _scene(15, ZONED, FLAT, SMALL)
    grey, mask = np.roll(grey, (-80, -70), axis=(0, 1)), np.roll(mask, (-80, -70), axis=(0, 1))
    mask[200:204, :] |= True  # a strip joining some, across the image
    clear = cleared(grey)
    crystals, _ = ndi.label(mask)
    whole = smoothed(np.where(mask, clear, np.float32(0)), 2.0)
    crops = _smoothed_within(clear, mask, crystals, 2.0)
    np.testing.assert_allclose(crops[mask], whole[mask], rtol=1e-6)
