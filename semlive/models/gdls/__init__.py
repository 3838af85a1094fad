"""GDLS: graph-based deep-learning segmentation of sparse EDS spectra with BSE (Juránek et al.).

* :func:`to_band` — any spectrum re-binned onto the embedding network's band (200 eV up,
  10 eV channels, 1,536 values).
* :class:`SpectrumEmbedding` — the published embedding network in torch, layer for layer;
  :func:`load_keras_embedding` reads the authors' trained Keras HDF5 file without TensorFlow;
  :func:`embed` runs it.
* :class:`FastEmbedding`, :func:`load_embedding`, :func:`train_embedding` — semlive's own
  embedding (a small MLP on binned, square-rooted spectra, trained with a batch-hard triplet
  loss on simulated materials; shipped in ``embedding/``, made by
  ``semlive gdls train-embedding``): better than the published one on held-out materials and
  about 60× faster.
* :func:`segment_field` — GDLS on one field: the graph of the EDS points (Delaunay neighbours
  cut where BSE or embeddings differ, :mod:`._graph`), specks merged, touching segments whose
  summed spectra and BSE agree merged (a G-test of homogeneity), and a dense labelling
  (:mod:`._dense`: a marker watershed of the BSE gradient, or the authors' random walker).
* :func:`segment_table`, :func:`match_phases` — one row per segment with its phase: the
  segment's summed spectrum matched to the mineral library (:mod:`._phases`), mixed boundary
  segments flagged.
* :class:`LiveGdls` — live: each spectra field of a session segmented once the mosaic under it
  is complete, into ``mosaic.zarr/bse/labels/gdls`` and ``STORE/gdls/segments.csv``.
* :func:`segmentation_scores` — ASA, undersegmentation error, boundary recall and precision, K.
* :func:`evaluate_embedding` — same-vs-different-material ROC AUC and nearest-neighbour
  retrieval of an embedding on held-out simulated materials (:mod:`._materials`).
"""

from semlive.models.gdls._band import (
    BAND_CHANNELS,
    BAND_OFFSET_EV,
    BAND_WIDTH_EV,
    STAT_BIN,
    band_centres_ev,
    coarse_bins,
    to_band,
)
from semlive.models.gdls._dense import DENSE_METHODS, dense_labels, greedy_colouring
from semlive.models.gdls._embedding import (
    EmbeddingConfig,
    SpectrumEmbedding,
    embed,
    load_keras_embedding,
)
from semlive.models.gdls._evaluate import evaluate_embedding
from semlive.models.gdls._graph import (
    PointGraph,
    delaunay_edges,
    homogeneity,
    merge_regions,
    merge_small,
    point_components,
)
from semlive.models.gdls._live import GDLS_LABELS, SEGMENTS_CSV, FieldSegmented, LiveGdls
from semlive.models.gdls._metrics import segmentation_scores
from semlive.models.gdls._ours import (
    EmbeddingCard,
    EmbeddingTraining,
    FastEmbedding,
    load_embedding,
    save_embedding,
    train_embedding,
)
from semlive.models.gdls._phases import (
    PhaseLibrary,
    PhaseMatch,
    match_phases,
    phase_areas,
    phase_library,
    segment_table,
    write_segment_table,
)
from semlive.models.gdls._segment import GdlsResult, sample_distance_of, segment_field

__all__ = [
    "BAND_CHANNELS",
    "BAND_OFFSET_EV",
    "BAND_WIDTH_EV",
    "DENSE_METHODS",
    "GDLS_LABELS",
    "SEGMENTS_CSV",
    "STAT_BIN",
    "EmbeddingCard",
    "EmbeddingConfig",
    "EmbeddingTraining",
    "FastEmbedding",
    "FieldSegmented",
    "GdlsResult",
    "LiveGdls",
    "PhaseLibrary",
    "PhaseMatch",
    "PointGraph",
    "SpectrumEmbedding",
    "band_centres_ev",
    "coarse_bins",
    "delaunay_edges",
    "dense_labels",
    "embed",
    "evaluate_embedding",
    "greedy_colouring",
    "homogeneity",
    "load_embedding",
    "load_keras_embedding",
    "match_phases",
    "merge_regions",
    "merge_small",
    "phase_areas",
    "phase_library",
    "point_components",
    "sample_distance_of",
    "save_embedding",
    "segment_field",
    "segment_table",
    "segmentation_scores",
    "to_band",
    "train_embedding",
    "write_segment_table",
]
