"""GDLS phases: segments' summed spectra matched to the mineral library, mixed boundary segments,
the segment table; and ``semlive gdls FIELD`` on a field folder the virtual SEM writes."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from semlive.models.gdls import (
    match_phases,
    phase_library,
    segment_field,
    segment_table,
    to_band,
    write_segment_table,
)
from semlive.physics import EdsDetector, expected_spectrum, load_library
from semlive.virtual_sem import simulate_field, write_field


def _sum_of(composition, counts, rng, *, plus=None, share=1.0):
    """A summed spectrum of ``counts`` counts on the embedding band, Poisson-sampled; with
    ``plus``, a sum over a boundary: ``share`` of the counts from ``composition``."""
    detector = EdsDetector()
    shape = share * expected_spectrum(composition, detector, 20.0)
    if plus is not None:
        shape += (1 - share) * expected_spectrum(plus, detector, 20.0)
    band = to_band(shape, detector.channel_offset_ev, detector.channel_width_ev)
    return rng.poisson(band / band.sum() * counts).astype(np.float64)


def test_summed_spectra_are_named_by_their_library_phase():
    rng = np.random.default_rng(0)
    library = load_library()
    sums = np.stack(
        [
            _sum_of(library.mineral("albite").composition, 3e5, rng),
            _sum_of(library.mineral("fluorapatite").composition, 3e5, rng),
            _sum_of(library.solid_solution("olivine", 0.85), 3e5, rng),
            _sum_of(library.mineral("quartz").composition, 3e5, rng),
        ]
    )
    matches = match_phases(sums)
    assert matches[0].phase == "albite"
    assert matches[1].phase == "fluorapatite"
    assert matches[2].phase == "olivine (forsterite 85 %)"
    assert matches[3].phase == "cristobalite / quartz"  # one composition, one entry
    for match in matches:
        assert not match.mixed
        assert match.misfit < 2.0  # explained to within counting noise
        assert match.counts == pytest.approx(3e5, rel=0.01)


def test_a_boundary_segment_is_reported_as_a_mixture_of_its_two_phases():
    rng = np.random.default_rng(1)
    library = load_library()
    olivine = library.solid_solution("olivine", 0.85)
    plagioclase = library.solid_solution("plagioclase", 0.6)
    boundary = _sum_of(olivine, 3e5, rng, plus=plagioclase, share=0.35)
    between = _sum_of(library.solid_solution("olivine", 0.77), 3e5, rng)  # not a library point
    pure = [_sum_of(olivine, 3e5, rng), _sum_of(plagioclase, 3e5, rng)]
    # the boundary segment touches an olivine and a plagioclase segment
    touching = [[2, 3], [], [0], [0]]
    first, second, *_ = match_phases(np.stack([boundary, between, *pure]), touching=touching)
    assert first.mixed
    assert first.phase == "labradorite / plagioclase (anorthite 60 %)"
    assert first.second_phase == "olivine (forsterite 85 %)"
    assert first.share == pytest.approx(0.65, abs=0.051)
    assert not second.mixed
    assert second.phase.startswith("olivine (forsterite")


def test_the_segment_table_names_the_columbite_domains(tmp_path):
    field = simulate_field("columbite", shape=(240, 240), crystals=3, seed=3)
    offset, width = field.detector.channel_offset_ev, field.detector.channel_width_ev
    result = segment_field(field.bse, field.rows, field.cols, field.spectra, offset, width)
    table = segment_table(result, field.bse, phase_library())
    assert len(table["segment"]) == result.count
    assert table["pixels"].sum() == np.count_nonzero(result.labels)
    assert table["points"].sum() == len(field.rows)
    # the phase of each large segment is the library's name for its truth material, or its
    # neighbour one step (5 %) along a solid-solution series
    near = {
        "columbite Cb75": {f"columbite (columbite-(Fe) {x} %)" for x in (70, 75, 80)},
        "columbite Cb70": {f"columbite (columbite-(Fe) {x} %)" for x in (65, 70, 75)},
        "albite": {
            "albite",
            "alkali_feldspar (orthoclase 5 %)",
            "plagioclase (anorthite 5 %)",
        },
        "quartz": {"cristobalite / quartz"},
        "muscovite": {"muscovite"},
    }
    exact = {"columbite Cb75": "columbite (columbite-(Fe) 75 %)"}
    names = np.array(["-", *field.zone_material])
    right = total = on_the_dot = cores = 0
    for segment, phase, pixels, mixed in zip(
        table["segment"], table["phase"], table["pixels"], table["mixed"], strict=True
    ):
        if pixels < 500 or mixed:
            continue
        truth = names[np.bincount(field.truth[result.labels == segment]).argmax()]
        right += pixels * (phase in near[truth])
        total += pixels
        if truth in exact:
            on_the_dot += pixels * (phase == exact[truth])
            cores += pixels
    assert total > 0.8 * table["pixels"].sum()
    assert right >= 0.97 * total
    assert on_the_dot >= 0.85 * cores
    path = write_segment_table(table, tmp_path / "segments.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(table["segment"])
    assert rows[0]["phase"] == table["phase"][0]
    assert int(rows[-1]["segment"]) == table["segment"][-1]


def test_gdls_command_segments_a_field_folder(tmp_path, capsys):
    from semlive.cli import main

    field = simulate_field("garnet", shape=(150, 150), crystals=2, seed=5)
    folder = write_field(field, tmp_path / "field")
    out = tmp_path / "out" / "garnet.tif"
    assert main(["gdls", str(folder), "--tau-z", "0.15", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "segments from 2,500 EDS points" in printed
    assert "phases by area" in printed
    labels = tifffile.imread(out)
    assert labels.shape == field.bse.shape
    assert labels.dtype == np.uint32
    with out.with_suffix(".csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {int(r["segment"]) for r in rows} == set(np.unique(labels[labels > 0]).tolist())
    # `semlive gdls segment FIELD` is the same command; the default output is beside the
    # folder, so the field reads the same the next time
    for _ in range(2):
        assert main(["gdls", "segment", str(folder)]) == 0
    assert (tmp_path / "field-gdls-segments.tif").is_file()
    assert (tmp_path / "field-gdls-segments.csv").is_file()
    # the field's own files are never overwritten
    bse = (folder / "bse.tif").read_bytes()
    for inside in (folder / "bse.tif", folder / "labels.tif"):
        assert main(["gdls", str(folder), "--out", str(inside)]) == 2
        assert "give an --out outside it" in capsys.readouterr().err
    assert (folder / "bse.tif").read_bytes() == bse
    assert not (folder / "labels.tif").exists()
    assert main(["gdls", str(folder), "--out", str(tmp_path / "x.csv")]) == 2
    assert "expected a .tif file" in capsys.readouterr().err


def test_gdls_command_refuses_what_is_not_a_field(tmp_path, capsys):
    from semlive.cli import main

    assert main(["gdls", str(tmp_path / "missing")]) == 3
    error = capsys.readouterr().err
    assert "not a field" in error
    assert ".bcf" in error
    (tmp_path / "empty").mkdir()
    assert main(["gdls", str(tmp_path / "empty")]) == 3
    assert "field.json" in capsys.readouterr().err
    assert main(["gdls", str(tmp_path / "empty"), "--method", "magic"]) == 2


def test_gdls_finds_the_phases_of_the_real_chevkinite_hypermap(shared_data):
    """The real hypermap at about 20,000 counts a pixel: k-means on every pixel's spectrum finds
    four phases (Mg-Fe-Al silicate, Ca-Al-Ti silicate, Ti-Fe-REE chevkinite, Ca-P apatite).
    GDLS, given every second pixel, finds them as distinct library phases."""
    pytest.importorskip("rsciio")
    from sklearn.cluster import KMeans

    from semlive.acquisition._field import read_field

    path = shared_data / "real" / "chevkinite-30x30.bcf"
    dense, field = read_field(path, step=1), read_field(path, step=2)
    result = segment_field(
        field.bse, field.rows, field.cols, field.counts, field.channel_offset_ev,
        field.channel_width_ev, min_points=5,
    )  # fmt: skip
    table = segment_table(result, field.bse, phase_library(20.0))
    phase_of = dict(zip(table["segment"].tolist(), table["phase"].tolist(), strict=True))
    band = to_band(dense.counts, dense.channel_offset_ev, dense.channel_width_ev)
    clusters = KMeans(4, n_init=10, random_state=0).fit_predict(
        np.sqrt(band / band.sum(axis=1, keepdims=True))
    )
    phases = np.array([phase_of.get(int(k), "") for k in result.labels.ravel()])
    main = []
    for k in range(4):
        names, counts = np.unique(phases[clusters == k], return_counts=True)
        main.append(str(names[counts.argmax()]))
        assert counts.max() >= 0.45 * counts.sum()
    assert len(set(main)) == 4  # four clusters, four different phases
    assert "fluorapatite" in main  # the Ca-P apatite
