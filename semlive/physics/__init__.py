"""Physics of the virtual SEM: compositions, minerals, BSE yield and EDS spectra.

Importing this package is cheap: xraydb (about 2 s to import) and scipy are imported on first
use, and every X-ray data look-up is cached.

* :class:`Composition` — mass fractions of elements (from formulas, oxides, mixtures).
* :class:`Mineral`, :class:`MineralLibrary`, :func:`load_library` — the packaged mineral table
  with groups and binary solid-solution series (molar mixing of formula units).
* :func:`mean_atomic_number`, :func:`backscatter_yield` — Z̄ and η (Reuter 1972, Castaing's rule).
* :class:`EdsDetector`, :func:`expected_spectrum`, :func:`sample_spectrum`,
  :func:`line_energies_ev`, :func:`element_intensity_factors` — EDS spectra and element maps.
"""

from semlive.physics._bse import backscatter_yield, element_backscatter, mean_atomic_number
from semlive.physics._composition import Composition
from semlive.physics._detector import EdsDetector
from semlive.physics._eds import (
    SpectrumComponents,
    element_intensity_factors,
    expected_spectrum,
    line_energies_ev,
    main_family,
    sample_spectrum,
    spectrum_components,
)
from semlive.physics._formula import parse_formula
from semlive.physics._library import Mineral, MineralLibrary, load_library

__all__ = [
    "Composition",
    "EdsDetector",
    "Mineral",
    "MineralLibrary",
    "SpectrumComponents",
    "backscatter_yield",
    "element_backscatter",
    "element_intensity_factors",
    "expected_spectrum",
    "line_energies_ev",
    "load_library",
    "main_family",
    "mean_atomic_number",
    "parse_formula",
    "sample_spectrum",
    "spectrum_components",
]
