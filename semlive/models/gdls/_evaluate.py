"""How well an embedding tells materials apart, on held-out materials at a given count.

Two draws per material at ``counts`` counts: the pairs of one material's draws are positives,
the pairs of two materials' draws negatives; the ROC AUC scores the embedding distance as the
classifier (1: every same-material pair closer than every other pair). Retrieval: each
material's second draw is a query against a gallery of the first draws; accuracy is the share
whose nearest gallery spectrum is its own material's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from semlive.models.gdls._embedding import embed
from semlive.models.gdls._materials import Material, expected_spectra, held_out_materials

__all__ = ["evaluate_embedding"]


def evaluate_embedding(
    model: nn.Module,
    materials: list[Material] | None = None,
    counts: float = 1000.0,
    seed: int = 7,
) -> dict[str, Any]:
    """``roc_auc``, ``retrieval_accuracy`` and ``materials`` (count) on held-out materials."""
    from sklearn.metrics import roc_auc_score

    materials = held_out_materials() if materials is None else materials
    expected = expected_spectra(materials).astype(np.float64)
    rng = np.random.default_rng(seed)
    gallery = embed(model, rng.poisson(expected * counts).astype(np.float32))
    queries = embed(model, rng.poisson(expected * counts).astype(np.float32))
    distance = np.linalg.norm(queries[:, None, :] - gallery[None, :, :], axis=2)
    same = np.eye(len(materials), dtype=bool)
    scores = np.concatenate([-distance[same], -distance[~same]])
    truth = np.concatenate([np.ones(same.sum()), np.zeros((~same).sum())])
    return {
        "materials": len(materials),
        "counts": counts,
        "roc_auc": float(roc_auc_score(truth, scores)),
        "retrieval_accuracy": float(np.mean(distance.argmin(axis=1) == np.arange(len(materials)))),
    }
