"""Crystal outlines: the network's part of a crystal grown to the edges the BSE shows, on
synthetic crystals with the virtual SEM's noise."""

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from semlive.models.olivine import Outline

NOISE_DN = 590.0  # the virtual SEM's BSE noise per pixel
SIZE = (300, 400)


def _scene(seed):
    """A normally zoned olivine (core 27,000 DN, rim 30,000) on a groundmass of 24,000 DN with
    bright oxide specks; the network's probability: 0.9 on the crystal's core half, 0.15 on its
    outer half and on a 12-px band of groundmass beside it ("maybe"), 0.1 on a speck-free
    groundmass crystal of olivine's grey that touches nothing the network found, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: SIZE[0], : SIZE[1]]
    grey = np.full(SIZE, 24_000.0)
    for r, c in rng.integers(0, SIZE, size=(150, 2)):
        grey[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = 40_000
    dist = np.hypot((rr - 150) / 1.0, (cc - 150) / 1.6)
    crystal = dist <= 80
    grey[crystal] = (27_000 + 3_000 * dist / 80)[crystal]
    lookalike = np.hypot(rr - 150, cc - 340) <= 30
    grey[lookalike] = 28_500
    grey = ndi.gaussian_filter(grey, 0.6) + rng.normal(0, NOISE_DN, SIZE)
    grey[:, :8] = 0  # unscanned
    p = np.zeros(SIZE, np.float32)
    p[(dist <= 92) & (cc >= 8)] = 0.15
    p[dist <= 40] = 0.9
    p[lookalike] = 0.1
    return grey, p, crystal, lookalike


def test_a_crystal_found_in_part_is_grown_to_its_edge():
    grey, p, crystal, lookalike = _scene(0)
    mask = p >= 0.4
    assert (mask & crystal).sum() < 0.3 * crystal.sum()
    grown = Outline(low=0.02).apply(grey, p, mask)
    iou = (grown & crystal).sum() / (grown | crystal).sum()
    assert iou > 0.97
    # the groundmass the network was unsure of stays out, and so does the look-alike
    beside = (p > 0) & ~crystal & ~lookalike
    assert (grown & beside).sum() < 0.05 * beside.sum()
    assert not grown[lookalike].any()


def test_growing_only_adds_pixels_the_network_thinks_possible():
    grey, p, *_ = _scene(1)
    mask = p >= 0.4
    grown = Outline(low=0.2).apply(grey, p, mask)  # the outer half is below 0.2
    assert np.array_equal(grown, mask)
    grown = Outline(low=0.02).apply(grey, p, mask)
    assert np.all(grown[mask])  # nothing of the mask is removed
    assert not grown[p < 0.02].any()  # nothing the network rules out is added
    assert not grown[grey <= 0].any()


def test_off_leaves_the_mask_as_it_is():
    grey, p, *_ = _scene(2)
    mask = p >= 0.4
    assert Outline().apply(grey, p, mask) is mask
    assert Outline().as_dict() == {}
    assert Outline.from_card(Outline(low=0.02).as_dict()) == Outline(low=0.02)
    assert "off" in Outline().describe()


def test_crystals_grown_in_crops_as_on_the_whole_image():
    """Each maybe-area is grown on a crop with a margin: the same as one watershed of the
    whole image, crystals at the image's edge included."""
    grey, p, *_ = _scene(3)
    p = np.roll(p, (-120, -100), axis=(0, 1))  # a maybe-area cut by the image's edge
    grey = np.roll(grey, (-120, -100), axis=(0, 1))
    mask = p >= 0.4
    outline = Outline(low=0.02)
    grown = outline.apply(grey, p, mask)
    gradient = ndi.gaussian_gradient_magnitude(grey.astype(np.float32), outline.smooth_sigma_px)
    maybe = (p >= 0.02) & (grey > 0)
    reach = ndi.binary_dilation(maybe)
    markers = np.where(mask, 1, np.where(reach & ~maybe, 2, 0)).astype(np.int32)
    whole = watershed(gradient, markers, mask=reach) == 1
    assert grown.sum() > mask.sum()
    assert np.array_equal(grown, whole | mask)


def test_the_report_states_the_outline_as_the_model_does():
    """The report reads the card without torch, so it words the outline itself: the same words."""
    from semlive.catalogue._report import _outline_rule

    for outline in (Outline(), Outline(low=0.02), Outline(low=0.05, smooth_sigma_px=2.0)):
        assert _outline_rule(outline.as_dict()) == outline.describe()
