"""Label images on the mosaic's grid (OME-Zarr labels under ``mosaic.zarr/bse/labels``) and
their pyramids, shared by the olivine segmenter and GDLS."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["register_label", "require_pyramid", "update_pyramid"]


def register_label(root: Any, name: str) -> None:
    """List ``name`` in ``bse/labels``' OME-Zarr ``labels`` (once)."""
    labels_group = root.require_group("bse/labels")
    names = list(labels_group.attrs.get("ome", {}).get("labels", []))
    if name not in names:
        labels_group.attrs["ome"] = {"version": "0.5", "labels": [*names, name]}


def require_pyramid(
    root: Any,
    path: str,
    like: list[Any],
    meta: dict[str, Any],
    provenance: dict[str, Any],
    dtype: str = "uint8",
) -> list[Any]:
    """Open, or create on the grid of ``like`` (the levels of ``bse``), the pyramid at
    ``path``; its attributes are set to ``meta`` (OME) and ``provenance`` (semlive)."""
    group = root.require_group(path)
    arrays = []
    for k, level in enumerate(like):
        if str(k) in group:
            arrays.append(group[str(k)])
            continue
        arrays.append(
            group.create_array(
                str(k),
                shape=level.shape,
                chunks=level.chunks,
                dtype=dtype,
                fill_value=0,
                dimension_names=["y", "x"],
            )
        )
    group.attrs["ome"] = meta
    group.attrs["semlive"] = provenance
    return arrays


def update_pyramid(levels: list[Any], box: tuple[int, int, int, int], how: str) -> None:
    """Recompute the coarse levels over ``box`` (level-0 rows/cols) from level 0: ``how`` is
    "nearest" (labels) or "mean" (uint8 images)."""
    r0, c0, r1, c1 = box
    for k in range(1, len(levels)):
        r0, c0 = r0 // 2, c0 // 2
        r1, c1 = min(-(-r1 // 2), levels[k].shape[0]), min(-(-c1 // 2), levels[k].shape[1])
        below = np.asarray(levels[k - 1][2 * r0 : 2 * r1, 2 * c0 : 2 * c1])
        if how == "nearest":
            block = below[::2, ::2]
        else:
            padded = np.pad(below, ((0, below.shape[0] % 2), (0, below.shape[1] % 2)), mode="edge")
            block = np.rint(
                padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).mean(axis=(1, 3))
            ).astype(np.uint8)
        levels[k][r0:r1, c0:c1] = block[: r1 - r0, : c1 - c0]
