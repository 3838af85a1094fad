"""EDS spectra: peak positions and widths, continuum, Poisson sampling, element factors."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from semlive.errors import ConfigError
from semlive.physics import (
    Composition,
    EdsDetector,
    MineralLibrary,
    element_intensity_factors,
    expected_spectrum,
    line_energies_ev,
    load_library,
    main_family,
    sample_spectrum,
    spectrum_components,
)

DETECTOR = EdsDetector()


@pytest.fixture(scope="module")
def library() -> MineralLibrary:
    return load_library()


def _peak(spectrum: NDArray[np.float64], det: EdsDetector, near_ev: float) -> tuple[int, float]:
    """(channel of the maximum within ±60 eV of ``near_ev``, Gaussian-interpolated centre)."""
    energies = det.energies_ev
    window = np.flatnonzero(np.abs(energies - near_ev) <= 60.0)
    k = int(window[np.argmax(spectrum[window])])
    ym, y0, yp = np.log(spectrum[k - 1 : k + 2])
    delta = 0.5 * (ym - yp) / (ym - 2.0 * y0 + yp)
    return k, float(energies[k] + delta * det.channel_width_ev)


def _doublet_fwhm(
    spectrum: NDArray[np.float64], det: EdsDetector, ka_ev: float, kb_ev: float
) -> float:
    """FWHM from a least-squares fit of two channel-integrated Gaussians (Kα + Kβ, common σ)."""
    from scipy.optimize import curve_fit  # type: ignore[import-untyped, unused-ignore]
    from scipy.special import erf  # type: ignore[import-untyped, unused-ignore]

    edges = det.edges_ev
    window = np.flatnonzero((det.energies_ev > ka_ev - 200.0) & (det.energies_ev < kb_ev + 200.0))
    lo, hi = edges[window], edges[window + 1]

    def model(_: object, a: float, b: float, sigma: float, shift: float) -> NDArray[np.float64]:
        def binned(centre: float) -> NDArray[np.float64]:
            z = np.sqrt(2.0) * sigma
            area: NDArray[np.float64] = 0.5 * (
                erf((hi - centre - shift) / z) - erf((lo - centre - shift) / z)
            )
            return area

        return a * binned(ka_ev) + b * binned(kb_ev)

    peak = spectrum[window].max()
    params, _ = curve_fit(model, None, spectrum[window] / peak, p0=(1.0, 0.05, 30.0, 0.0))
    return float(2.0 * np.sqrt(2.0 * np.log(2.0)) * abs(params[2]))


def _fwhm(spectrum: NDArray[np.float64], det: EdsDetector, near_ev: float) -> float:
    """FWHM of the peak near ``near_ev`` from a log-parabola fit above 30 % of its height."""
    k, _ = _peak(spectrum, det, near_ev)
    lo, hi = k, k
    while spectrum[lo - 1] > 0.3 * spectrum[k]:
        lo -= 1
    while spectrum[hi + 1] > 0.3 * spectrum[k]:
        hi += 1
    x = det.energies_ev[lo : hi + 1] - det.energies_ev[k]
    curvature = np.polyfit(x, np.log(spectrum[lo : hi + 1]), 2)[0]
    variance = -1.0 / (2.0 * curvature) - det.channel_width_ev**2 / 12.0  # undo the binning
    return float(2.0 * np.sqrt(2.0 * np.log(2.0) * variance))


@pytest.mark.parametrize(
    ("mineral", "element", "line", "tabulated_ev"),
    [
        ("diopside", "Mg", "Ka", 1253.6),
        ("diopside", "Si", "Ka", 1740.0),
        ("diopside", "Ca", "Ka", 3691.7),
        ("fayalite", "Fe", "Ka", 6403.8),
        ("fayalite", "Fe", "La", 705.0),
        ("albite", "Na", "Ka", 1041.0),
        ("orthoclase", "K", "Ka", 3313.8),
        ("quartz", "O", "Ka", 524.9),
    ],
)
def test_peaks_sit_at_tabulated_line_energies(
    library: MineralLibrary, mineral: str, element: str, line: str, tabulated_ev: float
) -> None:
    spectrum = expected_spectrum(library.mineral(mineral).composition, DETECTOR)
    channel, centre = _peak(spectrum, DETECTOR, tabulated_ev)
    assert abs(DETECTOR.energies_ev[channel] - tabulated_ev) <= DETECTOR.channel_width_ev
    assert abs(centre - tabulated_ev) <= DETECTOR.channel_width_ev
    assert abs(line_energies_ev(element)[line] - tabulated_ev) <= 5.0


def test_line_energies_come_from_xraydb() -> None:
    import xraydb  # type: ignore[import-untyped, unused-ignore]

    fe = line_energies_ev("Fe")
    assert fe["Ka"] == pytest.approx(xraydb.xray_lines("Fe")["Ka1"].energy)
    assert fe["La"] == pytest.approx(xraydb.xray_lines("Fe")["La1"].energy)
    assert list(fe)[:2] == ["Ka", "Kb"]
    assert "Ma" in line_energies_ev("Ta")
    assert line_energies_ev("H") == {}


@pytest.mark.parametrize("fwhm_mn", [125.0, 135.0])
def test_peak_widths_follow_configured_resolution(library: MineralLibrary, fwhm_mn: float) -> None:
    det = EdsDetector(fwhm_mn_ka_ev=fwhm_mn)
    assert float(det.fwhm_ev(5895.0)) == pytest.approx(fwhm_mn)
    expected_si = np.sqrt(fwhm_mn**2 + 2.49 * (1739.6 - 5895.0))  # Fiori & Newbury form
    assert float(det.fwhm_ev(1739.6)) == pytest.approx(expected_si)
    quartz = spectrum_components(library.mineral("quartz").composition, det).characteristic
    # Si Kβ sits 97 eV above Kα, so fit both peaks
    assert _doublet_fwhm(quartz, det, 1739.6, 1837.0) == pytest.approx(expected_si, abs=3.0)
    oxygen = float(det.fwhm_ev(524.9))
    assert _fwhm(quartz, det, 524.9) == pytest.approx(oxygen, abs=3.0)
    fayalite = spectrum_components(library.mineral("fayalite").composition, det).characteristic
    assert _fwhm(fayalite, det, 6400.0) == pytest.approx(float(det.fwhm_ev(6400.0)), abs=3.0)


def test_widths_differ_between_resolutions(library: MineralLibrary) -> None:
    fayalite = library.mineral("fayalite").composition
    widths = []
    for fwhm_mn in (125.0, 135.0):
        det = EdsDetector(fwhm_mn_ka_ev=fwhm_mn)
        widths.append(_fwhm(spectrum_components(fayalite, det).characteristic, det, 6400.0))
    shift = 2.49 * (6400.0 - 5895.0)
    formula = np.sqrt(135.0**2 + shift) - np.sqrt(125.0**2 + shift)
    assert widths[1] - widths[0] == pytest.approx(formula, abs=1.0)


def test_fwhm_is_clipped_to_a_positive_minimum() -> None:
    det = EdsDetector(fwhm_mn_ka_ev=110.0)
    assert np.all(det.fwhm_ev(np.array([100.0, 277.0, 525.0])) >= 25.0)


def test_expected_spectrum_is_normalised_and_returns_copies(library: MineralLibrary) -> None:
    comp = library.mineral("augite").composition
    first = expected_spectrum(comp, DETECTOR)
    assert first.dtype == np.float64
    assert first.shape == (DETECTOR.channels,)
    assert first.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(first >= 0.0)
    first[:] = 0.0
    assert expected_spectrum(comp, DETECTOR).sum() == pytest.approx(1.0, abs=1e-12)


def test_nothing_above_the_beam_energy(library: MineralLibrary) -> None:
    comp = library.mineral("fayalite").composition
    spectrum = expected_spectrum(comp, DETECTOR, beam_energy_kev=10.0)
    # only the detector's Gaussian blur (±4σ) reaches past the Duane-Hunt limit E₀
    assert spectrum[DETECTOR.energies_ev > 10_400.0].sum() == 0.0
    assert spectrum[DETECTOR.energies_ev > 10_000.0].sum() < 1e-5
    # Fe K (edge 7112 eV) is not excited at 6 kV; Fe L is.
    low = spectrum_components(comp, DETECTOR, beam_energy_kev=6.0).characteristic
    assert low[np.abs(DETECTOR.energies_ev - 6400.0) < 100.0].sum() == 0.0
    assert main_family("Fe", 6.0) == "L"
    assert main_family("Fe", 20.0) == "K"
    assert main_family("Ba", 20.0) == "L"


def test_characteristic_lines_dominate_the_continuum(library: MineralLibrary) -> None:
    parts = spectrum_components(library.mineral("forsterite").composition, DETECTOR)
    # Kramers continuum vs first-principles line yields: about a third of the counts at 20 kV
    assert 0.15 < parts.continuum_fraction < 0.45
    total = parts.total
    mg_peak = total[DETECTOR.channel_of(1253.6)]
    background = parts.continuum[DETECTOR.channel_of(1253.6)]
    assert mg_peak / background > 30.0
    wide = EdsDetector(channels=4096)  # 0-41 keV
    beyond = spectrum_components(library.mineral("forsterite").composition, wide).continuum
    assert beyond[wide.energies_ev >= 20_500.0].sum() < 1e-12 * beyond.sum()
    assert beyond[wide.energies_ev >= 19_000.0].sum() > 0.0
    assert parts.continuum[DETECTOR.energies_ev < 100.0].sum() < 1e-3 * parts.continuum.sum()
    doubled = spectrum_components(
        library.mineral("forsterite").composition, DETECTOR, continuum_scale=2.0
    )
    assert doubled.continuum.sum() == pytest.approx(2.0 * parts.continuum.sum())


def test_heavier_matrix_has_more_continuum(library: MineralLibrary) -> None:
    fo = spectrum_components(library.mineral("forsterite").composition, DETECTOR)
    mt = spectrum_components(library.mineral("magnetite").composition, DETECTOR)
    k = DETECTOR.channel_of(3000.0)
    assert mt.continuum[k] > 1.4 * fo.continuum[k]  # Kramers: ∝ Z̄ (21.0 vs 10.6)


def test_element_factors_match_the_spectrum(library: MineralLibrary) -> None:
    comp = library.mineral("forsterite").composition
    factors = element_intensity_factors(comp, 20.0)
    assert set(factors) == {"O", "Mg", "Si"}
    characteristic = spectrum_components(comp, DETECTOR).characteristic
    # only K lines (and a negligible Si L) are emitted: the factors account for all of it
    assert sum(factors.values()) == pytest.approx(characteristic.sum(), rel=0.01)
    assert element_intensity_factors(library.mineral("epoxy").composition)["H"] == 0.0


def test_fe_factor_tracks_olivine_composition(library: MineralLibrary) -> None:
    x = np.linspace(0.0, 1.0, 11)
    comps = [library.solid_solution("olivine", v) for v in x]
    fe = np.array(
        [
            element_intensity_factors(c)["Fe"] if v < 1.0 else 0.0
            for c, v in zip(comps, x, strict=True)
        ]
    )
    mg = np.array([element_intensity_factors(c).get("Mg", 0.0) for c in comps])
    assert np.all(np.diff(fe) < 0.0)
    assert np.all(np.diff(mg) > 0.0)
    c_fe = np.array([c.mass_fraction("Fe") for c in comps])
    r = np.corrcoef(c_fe, fe)[0, 1]
    assert r > 0.99


def test_sampled_counts_are_poisson(library: MineralLibrary) -> None:
    det = EdsDetector(channel_width_ev=20.0, channels=1024)
    expected = expected_spectrum(library.solid_solution("olivine", 0.85), det)
    rng = np.random.default_rng(1234)
    samples = sample_spectrum(expected, np.full(20_000, 1_000), rng)
    assert samples.shape == (20_000, det.channels)
    assert np.issubdtype(samples.dtype, np.integer)
    totals = samples.sum(axis=1)
    assert totals.mean() == pytest.approx(1_000.0, abs=1.0)  # 5 standard errors
    assert totals.var() == pytest.approx(1_000.0, rel=0.05)  # Poisson total, not fixed
    mean = samples.mean(axis=0)
    var = samples.var(axis=0, ddof=1)
    busy = mean > 5.0
    assert busy.sum() > 10
    dispersion = var[busy] / mean[busy]
    assert dispersion.mean() == pytest.approx(1.0, abs=0.02)
    assert np.all(np.abs(dispersion - 1.0) < 0.1)
    assert np.allclose(mean, 1_000.0 * expected, atol=0.1 + 5 * np.sqrt(1_000 * expected / 20_000))


def test_sample_spectrum_shapes_and_validation(library: MineralLibrary) -> None:
    rng = np.random.default_rng(0)
    expected = expected_spectrum(library.mineral("quartz").composition, DETECTOR)
    stack = np.stack([expected, expected])
    assert sample_spectrum(expected, 100, rng).shape == (DETECTOR.channels,)
    assert sample_spectrum(stack, 100, rng).shape == (2, DETECTOR.channels)
    assert sample_spectrum(stack, np.array([10, 1_000]), rng).shape == (2, DETECTOR.channels)
    assert sample_spectrum(expected, 100, rng, dtype=np.int32).dtype == np.int32
    assert sample_spectrum(expected, 0, rng).sum() == 0
    with pytest.raises(ConfigError):
        sample_spectrum(expected, -1, rng)
    with pytest.raises(ConfigError):
        sample_spectrum(-expected, 10, rng)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fwhm_mn_ka_ev": 100.0},
        {"fwhm_mn_ka_ev": 170.0},
        {"channels": 0},
        {"channel_width_ev": 0.0},
    ],
)
def test_detector_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="EdsDetector"):
        EdsDetector(**kwargs)  # type: ignore[arg-type]


def test_detector_channels_and_efficiency() -> None:
    det = EdsDetector(channel_offset_ev=-100.0, channel_width_ev=5.0, channels=4096)
    assert det.energies_ev[0] == -100.0
    assert det.energies_ev[20] == 0.0
    assert det.edges_ev[1] - det.edges_ev[0] == 5.0
    assert det.channel_of(1740.0) == 368
    eff = det.efficiency(np.array([50.0, 525.0, 1740.0, 6400.0, 19_000.0]))
    assert eff[0] == 0.0
    assert 0.3 < eff[1] < 0.9  # O Kα through a polymer window
    assert eff[2] > 0.9
    assert eff[3] > 0.95
    assert eff[4] < eff[3]  # thin crystal transmits hard X-rays


def test_bad_beam_energy_and_composition_without_lines() -> None:
    with pytest.raises(ConfigError, match="beam energy"):
        expected_spectrum(Composition.from_formula("SiO2"), DETECTOR, beam_energy_kev=80.0)
    hydrogen = Composition.from_formula("H2")
    det = EdsDetector(channel_offset_ev=25_000.0)  # nothing below 20 keV on this axis
    with pytest.raises(ConfigError, match="no detected"):
        expected_spectrum(hydrogen, det)
