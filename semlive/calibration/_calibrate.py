"""``semlive calibrate STORE``: refit drift and the mg# regression, write the mg# map.

Writes ``STORE/calibration/``: ``drift.json`` (the rounds and how the correction works),
``mgnumber_fit.json`` (the regression, its registration and metrics, per profile), and the
figures ``drift.png``, ``calibration_line.png``, ``residuals.png`` and ``profiles.png``; and
``mosaic.zarr/mgnumber/`` (float32 mg#, NaN off olivine and on LOF-flagged cracks and holes).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.acquisition import Ledger
from semlive.acquisition import _readers as rd
from semlive.calibration._mgnumber import MgFit, MosaicImage, fit_mgnumber, refused_fit
from semlive.calibration._tracker import DriftTracker
from semlive.errors import InputDataError
from semlive.records import EpmaProfile, SessionInfo
from semlive.settings import CalibrationSettings

__all__ = [
    "CalibrationReport",
    "calibrate_store",
    "calibration_status",
    "crack_pixels",
    "mosaic_image",
    "write_mgnumber_map",
]

logger = logging.getLogger(__name__)

LOF_THRESHOLD = 1.5  # local outlier factor above which a pixel is a crack or hole


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    drift: dict[str, object]
    fit: MgFit
    mgnumber_pixels: int  # olivine pixels given an mg# in the map
    folder: Path


def session_of(store: Path, ledger: Ledger, session_dir: Path | None) -> tuple[Path, SessionInfo]:
    folder = session_dir or Path(ledger.meta("session_dir") or "")
    if not (folder / "session.json").is_file():
        raise InputDataError(
            f"cannot find the session folder of {store} (looked in {folder or 'nothing'}); "
            "give it with --session",
            path=folder,
        )
    return folder, rd.read_session((folder / "session.json").read_bytes())


def mosaic_image(store: Path) -> MosaicImage:
    import zarr

    path = store / "mosaic.zarr"
    try:
        root: Any = zarr.open_group(str(path), mode="r")
        bse: Any = root["bse"]
    except (FileNotFoundError, KeyError):
        raise InputDataError(
            f"{path} has no bse/ mosaic yet; stitch the session first (semlive stitch)",
            path=path,
        ) from None
    transforms = bse.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    scale = float(transforms[0]["scale"][-1])
    ty, tx = (float(v) for v in transforms[1]["translation"][-2:])
    labels = None
    if "labels" in bse and "olivine" in bse["labels"]:
        labels = bse["labels"]["olivine"]["0"]
    return MosaicImage(bse["0"], scale, (ty, tx), labels)


def _profiles(folder: Path, ledger: Ledger) -> list[EpmaProfile]:
    with ledger.transaction() as db:
        rows = db.execute(
            "SELECT DISTINCT path FROM files WHERE kind = 'epma' AND state = 'ingested'"
        ).fetchall()
    profiles = []
    for (path,) in rows:
        try:
            profiles.append(rd.read_epma((folder / path).read_bytes(), path))
        except (OSError, InputDataError) as exc:
            logger.warning("EPMA profile %s skipped: %s", path, exc)
    return profiles


def calibrate_store(
    store: Path, settings: CalibrationSettings, session_dir: Path | None = None
) -> CalibrationReport:
    """Refit the drift model and the mg# regression of a store; write figures and the map."""
    ledger = Ledger(store / "ledger.sqlite")
    try:
        folder, session = session_of(store, ledger, session_dir)
        tracker = DriftTracker(session, ledger, settings)
        drift = tracker.summary()
        profiles = _profiles(folder, ledger)
    finally:
        ledger.close()
    image = mosaic_image(store)
    out = store / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.json").write_text(tracker.model.to_json())
    if not profiles:
        fit = refused_fit("the session has no EPMA profile (epma/*.csv) to calibrate mg# with")
    else:
        fit = fit_mgnumber(
            image,
            profiles,
            search_um=settings.epma_search_um,
            holdout_fraction=settings.holdout_fraction,
            lof_neighbours=settings.lof_neighbours,
            mg_range=settings.mg_range,
        )
    record = asdict(fit)
    record.pop("series")
    (out / "mgnumber_fit.json").write_text(json.dumps(record, indent=2, default=float))
    _figures(out, tracker, fit)
    pixels = 0
    if not fit.refused:
        pixels = write_mgnumber_map(store, image, fit, settings)
    return CalibrationReport(drift, fit, pixels, out)


def write_mgnumber_map(
    store: Path, image: MosaicImage, fit: MgFit, settings: CalibrationSettings
) -> int:
    """``mosaic.zarr/mgnumber/``: mg# on olivine pixels (the olivine labels when present, else
    the pixels whose mg# falls in the plausible range), NaN elsewhere and on LOF outliers."""
    import zarr

    from semlive.streaming import MosaicGeometry
    from semlive.streaming._mosaic import CHUNK

    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="a")
    bse: Any = root["bse"]
    multiscales = bse.attrs["ome"]["multiscales"][0]
    levels = len(multiscales["datasets"])
    rows, cols = image.array.shape
    ty, tx = image.translation_um
    geometry = MosaicGeometry((rows, cols), (tx, ty), image.scale_um, levels)
    if "mgnumber" in root:
        del root["mgnumber"]
    group = root.create_group("mgnumber")
    shape = (rows, cols)
    arrays = []
    for k in range(levels):
        arrays.append(
            group.create_array(
                str(k),
                shape=shape,
                chunks=(CHUNK, CHUNK),
                dtype="float32",
                fill_value=float("nan"),
                dimension_names=["y", "x"],
            )
        )
        shape = ((shape[0] + 1) // 2, (shape[1] + 1) // 2)
    group.attrs["ome"] = {"version": "0.5", "multiscales": [geometry.multiscales("mgnumber")]}
    group.attrs["semlive"] = {
        "mask": "bse/labels/olivine" if image.labels is not None else "plausible mg# range",
        "slope": fit.slope,
        "intercept": fit.intercept,
    }
    total = 0
    lo, hi = settings.mg_range
    for cy in range(-(-rows // CHUNK)):
        for cx in range(-(-cols // CHUNK)):
            r0, c0 = cy * CHUNK, cx * CHUNK
            r1, c1 = min(r0 + CHUNK, rows), min(c0 + CHUNK, cols)
            raw = np.asarray(image.array[r0:r1, c0:c1], dtype=np.float64)
            if not raw.any():
                continue
            if image.labels is not None:
                mask = np.asarray(image.labels[r0:r1, c0:c1]) > 0
            else:
                mg_raw = fit.mg(raw)
                mask = (raw > 0) & (mg_raw >= lo) & (mg_raw <= hi)
            mask &= ~crack_pixels(raw, mask, settings.lof_neighbours)
            mg = fit.mg(_masked_mean(raw, mask))
            out = np.where(mask, mg, np.nan).astype(np.float32)
            arrays[0][r0:r1, c0:c1] = out
            total += int(mask.sum())
    _nan_pyramid(arrays)
    return total


def _masked_mean(values: NDArray[np.float64], mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """3×3 mean over the pixels of ``mask`` only (shot noise down, no mixing across rims)."""
    from scipy.ndimage import uniform_filter

    weight = uniform_filter(mask.astype(np.float64), 3, mode="constant")
    total = uniform_filter(np.where(mask, values, 0.0), 3, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        result: NDArray[np.float64] = np.where(weight > 0, total / weight, np.nan)
    return result


def calibration_status(store: Path, ledger: Ledger) -> dict[str, object] | None:
    """Drift and mg# fit of a store, for ``semlive status`` (None before any calibration)."""
    from semlive.calibration._tracker import load_levels

    levels = load_levels(ledger)
    with ledger.transaction() as db:
        rounds = db.execute(
            "SELECT at, gain, offset_dn, mode, failed FROM drift ORDER BY at"
        ).fetchall()
        alerts = db.execute("SELECT COUNT(*) FROM standards WHERE alert = 1").fetchone()[0]
    fitted = [r for r in rounds if r[3] != "failed"]
    if not fitted:
        mode = "uncorrected: no usable standard measurement"
    elif len(fitted) == 1:
        mode = (
            f"{fitted[0][3]}, one round of standards: held constant (measure standards at the end)"
        )
    else:
        kind = "offset only" if any(r[3] == "offset" for r in fitted) else "gain and offset"
        mode = f"{kind}, {len(fitted)} rounds"
    status: dict[str, object] = {
        "drift": {
            "mode": mode,
            "standards_measured": len(levels),
            "alerts": int(alerts),
            "rounds": [
                {"at": at, "gain": g, "offset_dn": o, "fit": m, "failed": f}
                for at, g, o, m, f in rounds
            ],
        }
    }
    path = store / "calibration" / "mgnumber_fit.json"
    if path.is_file():
        fit = json.loads(path.read_text())
        status["mgnumber"] = {
            "refused": fit["refused"],
            "slope": fit["slope"],
            "intercept": fit["intercept"],
            "epma_offset_um": fit["offset_um"],
            "test": fit["test"],
            "train": fit["train"],
            "skipped_profiles": [
                {"name": p["name"], "reason": p["reason"]} for p in fit["profiles"] if not p["used"]
            ],
        }
    return status


def crack_pixels(
    bse: NDArray[np.float64],
    mask: NDArray[np.bool_],
    neighbours: int = 20,
    sample: int = 4000,
    threshold: float = LOF_THRESHOLD,
) -> NDArray[np.bool_]:
    """Pixels of ``mask`` that LocalOutlierFactor on (row, col, BSE) flags (cracks, holes).

    Dense cracks and holes would be clusters of their own for a plain LOF, so the factor is
    learned (novelty mode) on a random sample of the pixels whose BSE lies within five robust
    standard deviations of the median — the mineral itself, zoning included — and every pixel
    is then scored against it. Rows and columns are in pixels and BSE in units of the pixel
    noise, so the mineral is a thin, gently sloping sheet and cracks lie far off it. Learning
    on a sample also keeps the map fast (a chunk holds up to a quarter of a million pixels).
    """
    from sklearn.neighbors import LocalOutlierFactor

    rr, cc = np.nonzero(mask)
    flagged = np.zeros(mask.shape, dtype=bool)
    if len(rr) < 2 * neighbours:
        return flagged
    features = np.column_stack([rr, cc, bse[rr, cc]]).astype(np.float64)
    level = features[:, 2]
    median = float(np.median(level))
    spread_bse = 1.4826 * float(np.median(np.abs(level - median)))
    core = np.flatnonzero(np.abs(level - median) <= 5 * max(spread_bse, 1.0))
    if len(core) < 2 * neighbours:
        return flagged
    # rows and columns in pixels; BSE in units of its pixel noise (from neighbouring pixels), so
    # a mineral is a thin smooth sheet (zoning a gentle slope) and a crack lies far off it
    pairs = mask[:, 1:] & mask[:, :-1]
    steps = np.abs(bse[:, 1:] - bse[:, :-1])[pairs]
    noise = 1.4826 * float(np.median(steps)) / np.sqrt(2) if steps.size else 1.0
    features[:, 2] /= max(noise, 1e-6)
    rng = np.random.default_rng(0)
    train = features[rng.choice(core, size=min(sample, len(core)), replace=False)]
    lof = LocalOutlierFactor(n_neighbors=neighbours, novelty=True)
    lof.fit(train)
    outlier = -lof.score_samples(features) > threshold
    flagged[rr[outlier], cc[outlier]] = True
    return flagged


def _nan_pyramid(arrays: list[Any]) -> None:
    from semlive.streaming._mosaic import CHUNK

    for k in range(1, len(arrays)):
        below, here = arrays[k - 1], arrays[k]
        rows, cols = here.shape
        for r0 in range(0, rows, CHUNK):
            for c0 in range(0, cols, CHUNK):
                r1, c1 = min(r0 + CHUNK, rows), min(c0 + CHUNK, cols)
                src = np.asarray(below[2 * r0 : 2 * r1, 2 * c0 : 2 * c1], dtype=np.float32)
                if np.isnan(src).all():
                    continue
                pad = [(0, 2 * (r1 - r0) - src.shape[0]), (0, 2 * (c1 - c0) - src.shape[1])]
                src = np.pad(src, pad, mode="edge")
                blocks = (
                    src.reshape(r1 - r0, 2, c1 - c0, 2)
                    .transpose(0, 2, 1, 3)
                    .reshape(r1 - r0, c1 - c0, 4)
                )
                count = np.isfinite(blocks).sum(axis=-1)
                total = np.nansum(blocks, axis=-1)
                with np.errstate(invalid="ignore", divide="ignore"):
                    here[r0:r1, c0:c1] = np.where(count > 0, total / count, np.nan)


def _figures(out: Path, tracker: DriftTracker, fit: MgFit) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(tracker.levels.values(), key=lambda lv: lv.acquired_at)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for sid in sorted({lv.standard_id for lv in levels}):
        mine = [lv for lv in levels if lv.standard_id == sid]
        ref = tracker.references.get(sid)
        ys = [(lv.bse_dn / ref - 1) * 100 if ref else lv.bse_dn for lv in mine]
        hours = [(lv.acquired_at - levels[0].acquired_at).total_seconds() / 3600 for lv in mine]
        ax.plot(hours, ys, "o-", label=sid)
    limit = tracker.settings.drift_limit * 100
    ax.axhline(limit, color="r", ls="--", lw=0.8)
    ax.axhline(-limit, color="r", ls="--", lw=0.8, label="control limits")
    ax.set_ylabel("standard level − reference (%)")
    ax.set_title(f"Drift: {tracker.model.mode}", fontsize=9)
    ax.legend(fontsize=8)
    ax.set_xlabel(f"hours after {levels[0].acquired_at:%Y-%m-%d %H:%M}" if levels else "hours")
    fig.tight_layout()
    fig.savefig(out / "drift.png", dpi=110)
    plt.close(fig)
    if not fit.series:
        return
    held = {p.name for p in fit.profiles if p.held_out}
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, s in fit.series.items():
        ax.plot(s["bse"], s["measured"], "x" if name in held else ".", label=name, ms=4)
    xs = np.linspace(*fit.bse_range, 10)
    ax.plot(xs, fit.mg(xs), "k-", lw=1, label=f"mg# = {fit.slope:.3e}·BSE + {fit.intercept:.3f}")
    ax.set_xlabel("drift-corrected BSE (DN)")
    ax.set_ylabel("EPMA mg#")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "calibration_line.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3))
    for name, s in fit.series.items():
        res = np.subtract(s["predicted"], s["measured"])
        ax.plot(s["measured"], res, "x" if name in held else ".", ms=4, label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("EPMA mg#")
    ax.set_ylabel("predicted − measured")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "residuals.png", dpi=110)
    plt.close(fig)
    n = len(fit.series)
    fig, axes = plt.subplots(n, 1, figsize=(6, 1.8 * n), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], fit.series.items(), strict=True):
        ax.plot(s["measured"], "k.-", lw=0.8, ms=3, label="EPMA")
        ax.plot(s["predicted"], "r-", lw=1, label="from BSE")
        ax.set_title(name + (" (held out)" if name in held else ""), fontsize=8)
        ax.set_ylabel("mg#", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "profiles.png", dpi=110)
    plt.close(fig)
