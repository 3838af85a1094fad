"""Where a trained olivine model goes wrong, against the virtual SEM's truth (prints JSON).

For a segmented store (``semlive train`` then ``semlive segment``) of a simulated session, on the
tiles the network never saw:

- ``labels``: the store's olivine labels as ``semlive evaluate`` scores them, with the missed
  olivine (FN) by crystal population and by distance from the crystal's edge, and the false
  olivine (FP) by the true phase (clinopyroxene, mostly) and by crystal population;
- ``thresholds``: the network alone and with the model's crystal check, at several thresholds
  (the card's ``dlth`` is chosen on the EDS tiles, training tiles included);
- ``oracle``: the network's connected crystals at each threshold kept where most of a crystal
  is truly olivine: about the IoU a perfect crystal classifier would reach on this network's
  outlines (a majority vote per crystal).

The model is the store's ``models/olivine`` (the one that made the labels), run with the default
settings; it opens the mosaic as ``semlive segment`` does, which rewrites the labels' provenance
attributes with the same model's (nothing else is written).

    .venv/bin/python benchmarks/bench_olivine_errors.py STORE SESSION/_truth
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from semlive.models import confusion
from semlive.models.olivine import (
    LABEL_PATH,
    OlivineSegmenter,
    eds_tile_mask,
    sliding_probabilities,
)
from semlive.models.olivine._check import CrystalCheck
from semlive.settings import OlivineSettings
from semlive.streaming import truth_on_mosaic
from semlive.virtual_sem._materials import Phase

THRESHOLDS = (0.2, 0.3, 0.5, 0.7)


def _by_population(
    instances: NDArray[np.integer], mask: NDArray[np.bool_], population: dict[int, str]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for crystal, n in zip(*np.unique(instances[mask], return_counts=True), strict=True):
        key = population.get(int(crystal), "groundmass microlites")
        out[key] = out.get(key, 0) + int(n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("truth", type=Path, help="the simulated session's _truth folder")
    args = parser.parse_args()
    import zarr

    truth = truth_on_mosaic(args.store, args.truth, ("phase", "instances"))
    phase, instances = truth["phase"], truth["instances"]
    with (args.truth / "crystals.csv").open(newline="", encoding="utf-8") as handle:
        population = {int(r["crystal_id"]): r["population"] for r in csv.DictReader(handle)}
    valid = (phase != 255) & ~eds_tile_mask(args.store, phase.shape)
    olivine = phase == 1
    root: Any = zarr.open_group(str(args.store / "mosaic.zarr"), mode="r")
    labels = np.asarray(root[LABEL_PATH]["0"][:]) > 0
    missed, false = ~labels & olivine & valid, labels & ~olivine & valid
    inside = ndi.distance_transform_edt(olivine)
    bands = {"1 px": (0, 1), "2 px": (1, 2), "3-5 px": (2, 5), "deeper": (5, np.inf)}
    edges = {k: int((missed & (inside > a) & (inside <= b)).sum()) for k, (a, b) in bands.items()}
    report: dict[str, Any] = {
        "store": str(args.store),
        "labels": {
            **confusion(labels, olivine, valid).as_dict(),
            "fn_by_population": _by_population(instances, missed, population),
            "olivine_by_population": _by_population(instances, olivine & valid, population),
            "fn_by_distance_inside_the_edge": edges,
            "fp_by_phase": {
                Phase(int(p)).name.lower(): int((false & (phase == p)).sum())
                for p in np.unique(phase[false])
            },
            "fp_clinopyroxene_by_population": _by_population(
                instances, false & (phase == 2), population
            ),
        },
    }
    settings = OlivineSettings()
    segmenter = OlivineSegmenter(args.store, settings)
    image = np.asarray(segmenter.bse["0"][:], np.float32)
    p = sliding_probabilities(image, segmenter.predict, settings.window_px, settings.overlap_px)
    card = json.loads((args.store / "models" / "olivine" / "card.json").read_text())
    check = CrystalCheck.from_card(card["crystal_check"])
    cpx = valid & (phase == 2)
    report["card"] = {"dlth": card["dlth"], "crystal_check": card["crystal_check"]}
    report["thresholds"], report["oracle"] = [], []
    for threshold in THRESHOLDS:
        mask = (p >= threshold) & (image > 0)
        alone, checked = (
            confusion(mask, olivine, valid),
            confusion(check.apply(image, mask), olivine, valid),
        )
        report["thresholds"].append(
            {
                "threshold": threshold,
                "network": alone.as_dict(),
                "clinopyroxene_as_olivine": round(float((mask & cpx).sum() / max(cpx.sum(), 1)), 4),
                "with_check": checked.as_dict(),
            }
        )
        crystals, n = ndi.label(mask)
        share = ndi.mean(olivine.astype(np.float32), crystals, np.arange(1, n + 1))
        keep = np.concatenate([[False], np.asarray(share) > 0.5])
        oracle = confusion(keep[crystals], olivine, valid)
        report["oracle"].append({"threshold": threshold, "crystals": n, **oracle.as_dict()})
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
