"""Baselines that semlive's segmentations are compared with.

* :func:`tima_watershed` — the TIMA-like segmentation of a field: element maps from the sparse
  spectra, a multichannel (Di Zenzo) gradient with the BSE, and a marker watershed whose
  markers are the regions where that gradient stays below an adjustable threshold.
"""

from semlive.models.baselines._tima import MAP_ELEMENTS, element_maps, tima_watershed

__all__ = ["MAP_ELEMENTS", "element_maps", "tima_watershed"]
