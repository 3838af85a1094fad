"""Single fields for spectral segmentation: BSE, sparse low-count spectra, and the truth.

A field like those of Juránek et al. (GDLS): a BSE image (1 px = ``pixel_size_um``), EDS
spectra at a square grid of points ``step_px`` apart ("dot mapping", 3× coarser than the BSE)
at ``counts`` counts each, and the truth: which zone of which grain or crystal every pixel
belongs to. A matrix of grains (Voronoi cells of a few phases) holds zoned crystals:

* ``garnet`` — almandine-rich cores and rims with ~3.5 wt% less Fe (pyrope for almandine) in
  quartz, plagioclase and biotite: the zones differ in chemistry far more than in BSE;
* ``columbite`` — columbite–tantalite crystals whose domains differ by ~4 wt% Ta, in albite,
  quartz and muscovite;
* ``olivine`` — olivine Fo85 cores and Fo76 rims in plagioclase, augite and basaltic glass.

Each spectrum mixes the materials under a Gaussian excitation footprint (boundary points are
mixtures), then is Poisson-sampled. BSE is formed as in the virtual SEM (:class:`BseDetector`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from semlive.physics import (
    Composition,
    EdsDetector,
    backscatter_yield,
    expected_spectrum,
    load_library,
    sample_spectrum,
)
from semlive.virtual_sem._geometry import euhedral_prism, octagon, rectangle, rotate
from semlive.virtual_sem._imaging import EDS_PSF_PX, BseDetector, footprint, shares

__all__ = ["FIELD_KINDS", "Field", "simulate_field", "write_field"]

FIELD_KINDS = ("garnet", "columbite", "olivine")


@dataclass(frozen=True, slots=True)
class Field:
    kind: str
    bse: NDArray[np.uint16]  # (rows, cols)
    rows: NDArray[np.intp]  # (N,) pixel of each EDS point
    cols: NDArray[np.intp]
    spectra: NDArray[np.uint16]  # (N, detector.channels)
    detector: EdsDetector
    truth: NDArray[np.int32]  # every pixel's region (a connected piece of one material), 1..
    zone_material: list[str]  # material name of zone k at index k − 1
    step_px: int
    pixel_size_um: float
    beam_energy_kev: float


Recipe = tuple[list[tuple[str, Composition, float]], str, list[tuple[str, Composition]]]


def _recipes(kind: str) -> Recipe:
    """The matrix materials (name, composition, weight), the crystal shape, and the crystals'
    zones from core to rim."""
    lib = load_library()
    if kind == "garnet":
        matrix = [
            ("quartz", lib.mineral("quartz").composition, 0.45),
            ("plagioclase An30", lib.solid_solution("plagioclase", 0.3), 0.35),
            ("biotite", lib.mineral("biotite").composition, 0.2),
        ]
        zones = [
            (
                "garnet core Alm70",
                lib.mix_molar({"almandine": 0.7, "pyrope": 0.2, "grossular": 0.1}),
            ),
            (
                "garnet rim Alm60",
                lib.mix_molar({"almandine": 0.6, "pyrope": 0.3, "grossular": 0.1}),
            ),
        ]
        return matrix, "round", zones
    if kind == "columbite":
        matrix = [
            ("albite", lib.mineral("albite").composition, 0.45),
            ("quartz", lib.mineral("quartz").composition, 0.35),
            ("muscovite", lib.mineral("muscovite").composition, 0.2),
        ]
        zones = [
            ("columbite Cb75", lib.solid_solution("columbite", 0.75)),
            ("columbite Cb70", lib.solid_solution("columbite", 0.70)),
        ]
        return matrix, "tabular", zones
    if kind == "olivine":
        matrix = [
            ("plagioclase An60", lib.solid_solution("plagioclase", 0.6), 0.45),
            ("augite", lib.mineral("augite").composition, 0.3),
            ("basaltic glass", lib.mineral("basaltic_glass").composition, 0.25),
        ]
        zones = [
            ("olivine Fo85", lib.solid_solution("olivine", 0.85)),
            ("olivine Fo76", lib.solid_solution("olivine", 0.76)),
        ]
        return matrix, "prism", zones
    raise ValueError(f"unknown field kind {kind!r}; expected one of {FIELD_KINDS}")


def simulate_field(
    kind: str,
    shape: tuple[int, int] = (500, 500),
    step_px: int = 3,
    counts: float = 1000.0,
    crystals: int = 6,
    seed: int = 0,
    detector: EdsDetector | None = None,
    beam_energy_kev: float = 20.0,
) -> Field:
    """A simulated field of ``kind`` (see the module's description)."""
    from scipy.ndimage import distance_transform_edt
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    detector = detector or EdsDetector()
    matrix, shape_kind, zones = _recipes(kind)
    rows, cols = shape
    # matrix grains: Voronoi cells of random seeds, each of one matrix material
    grains = max(8, rows * cols // 45**2)
    centres = rng.uniform(0, 1, (grains, 2)) * [rows, cols]
    rr, cc = np.mgrid[0:rows, 0:cols]
    _, cell = cKDTree(centres).query(np.stack([rr.ravel(), cc.ravel()], axis=1))
    weights = np.array([w for _, _, w in matrix])
    grain_material = rng.choice(len(matrix), size=grains, p=weights / weights.sum())
    materials = [(name, comp) for name, comp, _ in matrix] + zones
    zone_of = cell.reshape(rows, cols).astype(np.int32) + 1  # zones 1..grains: the grains
    material_of_zone = [int(m) for m in grain_material]  # index into `materials`
    for _ in range(crystals):
        mask = _crystal_mask(shape, shape_kind, rng)
        if mask.sum() < 400:
            continue
        mask &= ~np.isin(zone_of, np.arange(grains + 1, len(material_of_zone) + 1))  # no overlap
        depth = distance_transform_edt(mask)
        rim_px = rng.uniform(0.3, 0.5) * depth.max()
        core = mask & (depth > rim_px)
        for zone_mask, z in ((core, 0), (mask & ~core, 1)):
            if zone_mask.any():
                material_of_zone.append(len(matrix) + z)
                zone_of[zone_mask] = len(material_of_zone)
    material_index = np.array([0, *material_of_zone])[zone_of]
    # touching grains of one material look the same in BSE and EDS: the truth is the map of
    # materials (crystal zones included), split into its connected pieces
    truth = _split_disconnected(material_index)
    eta_of = np.array([backscatter_yield(c, beam_energy_kev) for _, c in materials])
    gain, offset = _contrast(BseDetector(16), eta_of)
    bse = BseDetector(16).image(eta_of[material_index], gain, offset, rng).astype(np.uint16)
    prow = np.arange(step_px // 2, rows, step_px)
    pcol = np.arange(step_px // 2, cols, step_px)
    prr, pcc = (a.ravel() for a in np.meshgrid(prow, pcol, indexing="ij"))
    library = np.stack([expected_spectrum(c, detector, beam_energy_kev) for _, c in materials])
    under_r, under_c, spread = footprint(prr, pcc, material_index.shape, EDS_PSF_PX)
    mix = shares(material_index[under_r, under_c], spread, len(materials))
    spectra = sample_spectrum(mix @ library, counts, rng)
    return Field(
        kind,
        bse,
        prr.astype(np.intp),
        pcc.astype(np.intp),
        np.minimum(spectra, 65535).astype(np.uint16),
        detector,
        truth,
        [materials[material_index[truth == k][0]][0] for k in range(1, int(truth.max()) + 1)],
        step_px,
        1.0,
        beam_energy_kev,
    )


def write_field(field: Field, folder: Path) -> Path:
    """Write ``field`` as a GDLS field folder (docs/session-folder.md, "A GDLS field"):
    ``field.json``, ``bse.tif``, ``spectra.npz`` and the truth in ``_truth/`` (``regions.tif``
    and ``regions.json``: the material of each region). Returns the folder."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "pixel_size_um": field.pixel_size_um,
        "origin_um": [0.0, 0.0],
        "spectra": {
            "channel_offset_ev": field.detector.channel_offset_ev,
            "channel_width_ev": field.detector.channel_width_ev,
            "kV": field.beam_energy_kev,
        },
    }
    (folder / "field.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tifffile.imwrite(folder / "bse.tif", field.bse)
    xy_um = np.stack([field.cols, field.rows], axis=1) * field.pixel_size_um
    np.savez_compressed(
        folder / "spectra.npz", xy_um=xy_um.astype(np.float64), counts=field.spectra
    )
    truth = folder / "_truth"
    truth.mkdir(exist_ok=True)
    tifffile.imwrite(truth / "regions.tif", field.truth.astype(np.uint32))
    regions = {"kind": field.kind, "material_of_region": field.zone_material}
    (truth / "regions.json").write_text(json.dumps(regions, indent=2) + "\n", encoding="utf-8")
    return folder


def _contrast(detector: BseDetector, eta: NDArray[np.float64]) -> tuple[float, float]:
    """Gain and offset that put the field's darkest material at 15 % of full scale and its
    brightest at 85 %, as an operator sets brightness and contrast."""
    low, high = detector.dn(float(eta.min())), detector.dn(float(eta.max()))
    gain = 0.7 * detector.full_scale / max(float(high - low), 1.0)
    return gain, 0.15 * detector.full_scale - gain * float(low)


def _crystal_mask(shape: tuple[int, int], kind: str, rng: np.random.Generator) -> NDArray[np.bool_]:
    from skimage.draw import polygon

    rows, cols = shape
    size = rng.uniform(0.12, 0.25) * min(rows, cols)
    if kind == "prism":
        outline = euhedral_prism(rng.uniform(1.3, 2.2), 1.0, rng.uniform(0.15, 0.4))
    elif kind == "tabular":
        outline = rectangle(rng.uniform(1.2, 2.5), 1.0)
    else:
        outline = octagon(1.0, rng.uniform(1.0, 1.2))
    outline = outline / np.abs(outline).max() * size
    centre = rng.uniform(0.15, 0.85, 2) * [cols, rows]
    outline = rotate(outline, rng.uniform(0, np.pi), (0.0, 0.0)) + centre
    mask = np.zeros(shape, bool)
    r, c = polygon(outline[:, 1], outline[:, 0], shape)
    mask[r, c] = True
    return mask


def _split_disconnected(zone_of: NDArray[np.integer]) -> NDArray[np.int32]:
    """Truth regions: the 4-connected pieces of each material, numbered 1.. in raster order."""
    from scipy.ndimage import label
    from skimage.segmentation import relabel_sequential

    pieces = np.zeros(zone_of.shape, np.int64)
    total = 0
    for z in np.unique(zone_of):
        lab, n = label(zone_of == z)
        pieces[lab > 0] = lab[lab > 0] + total
        total += n
    out: NDArray[np.int32] = relabel_sequential(pieces)[0].astype(np.int32)
    return out
