"""Grey landmarks: the modes of a section's BSE histogram, and the gain and offset between two."""

import numpy as np
import pytest
import zarr

from semlive.models.olivine import _landmarks
from semlive.models.olivine._landmarks import (
    GreyHistogram,
    GreyMapping,
    grey_landmarks,
    mosaic_histogram,
)

RESIN, GROUNDMASS, OLIVINE, OXIDE = 3_400.0, 25_000.0, 28_000.0, 46_000.0


def section(shares, rng, n=400_000, noise=600.0):
    """Grey levels of a section with these shares of resin, groundmass, olivine and oxide,
    each phase its level plus Gaussian noise, and a tenth unscanned (0)."""
    levels = np.array([RESIN, GROUNDMASS, OLIVINE, OXIDE])
    phase = rng.choice(4, size=n, p=np.asarray(shares) / sum(shares))
    grey = levels[phase] + rng.normal(0, noise, n)
    grey[rng.random(n) < 0.1] = 0
    return np.clip(grey, 0, None).astype(np.float32)


def test_the_landmarks_are_the_modes_whatever_each_phase_covers():
    rng = np.random.default_rng(0)
    for shares in ([0.2, 0.6, 0.15, 0.05], [0.05, 0.5, 0.4, 0.05], [0.4, 0.3, 0.25, 0.05]):
        low, high = grey_landmarks([section(shares, rng)])
        assert low == pytest.approx(RESIN, abs=25)
        assert high == pytest.approx(GROUNDMASS, abs=25)


def test_the_histogram_adds_arrays_as_one():
    rng = np.random.default_rng(1)
    grey = section([0.2, 0.6, 0.15, 0.05], rng)
    whole, parts = GreyHistogram(), GreyHistogram()
    whole.add(grey)
    for part in np.array_split(grey, 7):
        parts.add(part)
    assert np.array_equal(whole.counts, parts.counts)
    assert whole.landmarks() == parts.landmarks()


def test_a_session_shift_is_measured_and_undone():
    rng = np.random.default_rng(2)
    grey = section([0.2, 0.6, 0.15, 0.05], rng)
    reference = grey_landmarks([grey])
    for gain, offset in ((1.075, 300.0), (0.925, -300.0)):
        shifted = np.where(grey > 0, grey * gain + offset, 0).astype(np.float32)
        mapping = GreyMapping.between(reference, grey_landmarks([shifted]))
        assert mapping.gain == pytest.approx(gain, abs=0.002)
        assert mapping.offset_dn == pytest.approx(offset, abs=40)
        back = mapping.undo(shifted)
        assert np.array_equal(back == 0, grey == 0)  # unscanned stays unscanned
        # olivine's grey back within what the drift correction leaves
        olivine = np.abs(grey - OLIVINE) < 1_000
        assert np.abs(back[olivine] - grey[olivine]).max() < 60
        assert mapping.largest_shift_dn((*reference, OLIVINE)) > 2_000


def test_no_landmarks_without_two_modes_and_no_mapping_without_a_plausible_gain():
    rng = np.random.default_rng(3)
    assert grey_landmarks([rng.normal(25_000, 600, 100_000)]) is None  # one phase
    assert grey_landmarks([np.full(5_000, 25_000.0)]) is None  # too few pixels
    assert grey_landmarks([np.zeros(100_000)]) is None  # nothing scanned
    assert GreyMapping.between((3_400.0, 25_000.0), (3_400.0, 40_000.0)) is None  # gain 1.69
    same = GreyMapping.between((3_400.0, 25_000.0), (3_400.0, 25_000.0))
    assert same.largest_shift_dn((3_400.0, 25_000.0, 28_000.0)) == pytest.approx(0.0)


def test_a_mosaics_histogram_from_chunks_spread_over_rows_and_columns(monkeypatch):
    rng = np.random.default_rng(4)
    grey = section([0.2, 0.6, 0.15, 0.05], rng, n=1_280 * 1_280).reshape(1_280, 1_280)
    grey[:, :256] = 0  # an unscanned margin: a band of chunks alone would see nothing
    level = _level(grey)
    whole = mosaic_histogram(level)  # under the budget: every chunk
    assert whole.landmarks() == grey_landmarks([grey])
    monkeypatch.setattr(_landmarks, "_SAMPLE_PX", 9 * 256 * 256)  # 9 of the 25 chunks
    reads = []
    sampled = mosaic_histogram(_Counting(level, reads))
    assert len(reads) == 9
    assert len({r.start for r, _ in reads}) == 3  # three chunk rows
    assert len({c.start for _, c in reads}) == 3  # and three chunk columns, not one band
    assert sampled.landmarks() == pytest.approx(whole.landmarks(), abs=30)


def test_a_section_on_the_training_scale_is_not_mapped_whatever_its_highest_modes():
    """An olivine-rich mosaic has olivine, not the groundmass, as its second landmark; its
    modes still include the training tiles' landmarks, so it is left as it is."""
    from semlive.models import ModelCard, Normalisation
    from semlive.models.olivine._segment import _grey_mapping
    from semlive.settings import OlivineSettings

    rng = np.random.default_rng(5)
    training = grey_landmarks([section([0.2, 0.6, 0.15, 0.05], rng)])
    rich = section([0.1, 0.2, 0.65, 0.05], rng, n=1_024 * 1_024).reshape(1_024, 1_024)
    assert grey_landmarks([rich])[1] == pytest.approx(OLIVINE, abs=50)
    norm = Normalisation(25_000.0, 3_000.0)
    card = ModelCard("deeplabv3plus_mobilenet_v3_large", norm, 0.4, grey_landmarks_dn=[*training])
    settings = OlivineSettings()
    assert _grey_mapping(_level(rich), card, settings) is None
    shifted = np.where(rich > 0, rich * 1.075 + 300, 0).astype(np.float32)
    moved = section([0.2, 0.6, 0.15, 0.05], rng, n=1_024 * 1_024).reshape(1_024, 1_024)
    moved = np.where(moved > 0, moved * 1.075 + 300, 0).astype(np.float32)
    mapping = _grey_mapping(_level(moved), card, settings)
    assert mapping.gain == pytest.approx(1.075, abs=0.003)
    # an uncorrected olivine-rich mosaic: its two landmarks are not the training tiles' phases
    # and their gain (1.22) is no plausible BSE change, so it is not mapped either
    assert _grey_mapping(_level(shifted), card, settings) is None


class _Counting:
    """A zarr array that records which blocks are read."""

    def __init__(self, array, reads):
        self.array, self.reads = array, reads
        self.shape, self.chunks = array.shape, array.chunks

    def __getitem__(self, key):
        self.reads.append(key)
        return self.array[key]


def _level(grey):
    """``grey`` as a mosaic level: a zarr array in chunks of 256²."""
    level = zarr.create_array(
        store=zarr.storage.MemoryStore(), shape=grey.shape, chunks=(256, 256), dtype="float32"
    )
    level[:] = grey
    return level
