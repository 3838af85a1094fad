"""The crystal catalogue: every olivine crystal found, typed, zoned, measured and exported.

:func:`build_catalogue` labels the olivine mask into crystals across the whole mosaic (block by
block, merged across block borders, never a whole-section array in memory), measures each one
(area, size class, shape, mg# of core and rim, core/rim BSE ratio and zoning, confidence, the
tiles it came from) and writes ``bse/labels/crystals``. :func:`export_catalogue` writes the
tables, polygons, crystal images, figures and the HTML report (after Leichter et al. 2022,
section 5.4), atomically. :func:`evaluate_catalogue` scores a catalogue against a simulated
session's truth.
"""

from semlive.catalogue._catalogue import (
    CRYSTALS_PATH,
    Catalogue,
    build_catalogue,
    live_summary,
    summarize,
)
from semlive.catalogue._evaluate import evaluate_catalogue, match_crystals, use_truth_olivine
from semlive.catalogue._export import ExportReport, export_catalogue, polygon_of, write_tables
from semlive.catalogue._instances import Components, find_components
from semlive.catalogue._measure import COLUMNS

__all__ = [
    "COLUMNS",
    "CRYSTALS_PATH",
    "Catalogue",
    "Components",
    "ExportReport",
    "build_catalogue",
    "evaluate_catalogue",
    "export_catalogue",
    "find_components",
    "live_summary",
    "match_crystals",
    "polygon_of",
    "summarize",
    "use_truth_olivine",
    "write_tables",
]
