"""BSE grey level → olivine mg#, calibrated on microprobe (EPMA) profiles.

Following Leichter et al. (2022), with the registration they did by hand made automatic:

1. Registration: EPMA coordinates come from another instrument, offset by a few µm. One offset
   (dx, dy) common to all profiles is searched on a grid (0.5 µm, then 0.1 µm) within
   ``epma_search_um``, maximising the R² of the pooled linear relation between the profiles' mg#
   and the drift-corrected BSE sampled under them (bilinear, 3×3 mean); then each profile may
   slide along its own line by up to 2 µm. Profiles whose points mostly fall outside the scanned
   mosaic (or off olivine, when the olivine labels exist) are reported and skipped.
2. Outliers: LocalOutlierFactor on (row, col, BSE), each feature standardised per profile, as
   in the paper; flagged points are replaced by interpolation along the profile.
3. The fit: mg# = slope · BSE + intercept by least squares on the training profiles, refitted
   once without points further than 3.5 robust standard deviations from the line; the
   held-out profiles test it. Metrics as the paper defines them: R², RMSE, RMSE10 (the outer
   10 % of each profile's points excluded), and the shifted RMSE (each profile's mean residual
   removed first: what is left once a constant shift, e.g. drift, is taken out).
4. A fit that is not monotonic decreasing, or that predicts mg# outside the plausible range
   over the observed BSE range, is refused with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from semlive.records import EpmaProfile

__all__ = [
    "MgFit",
    "MosaicImage",
    "ProfileResult",
    "fit_mgnumber",
    "lof_outliers",
    "refused_fit",
]

Float = NDArray[np.float64]
_MIN_INSIDE = 0.5  # share of a profile's points that must fall on the scanned mosaic


@dataclass(frozen=True, slots=True)
class MosaicImage:
    """Level 0 of a mosaic image with its stage transform (pixel (r, c) centre at
    (tx + s·c, ty + s·r))."""

    array: Any  # a zarr array or numpy array (rows, cols)
    scale_um: float
    translation_um: tuple[float, float]  # (ty, tx)
    labels: Any | None = None  # olivine labels on the same grid, when present

    def to_pixels(self, xy_um: Float) -> Float:
        ty, tx = self.translation_um
        return np.column_stack(
            [(xy_um[:, 1] - ty) / self.scale_um, (xy_um[:, 0] - tx) / self.scale_um]
        )

    def window(self, rc: Float, margin: int) -> tuple[Float, tuple[int, int], Any | None]:
        """The mosaic around pixel positions ``rc`` (float), 3×3-mean smoothed; its origin."""
        from scipy.ndimage import uniform_filter

        rows, cols = self.array.shape
        r0 = int(max(np.floor(rc[:, 0].min()) - margin, 0))
        c0 = int(max(np.floor(rc[:, 1].min()) - margin, 0))
        r1 = int(min(np.ceil(rc[:, 0].max()) + margin + 1, rows))
        c1 = int(min(np.ceil(rc[:, 1].max()) + margin + 1, cols))
        if r1 <= r0 or c1 <= c0:
            return np.zeros((0, 0)), (r0, c0), None
        raw = np.asarray(self.array[r0:r1, c0:c1], dtype=np.float64)
        smooth = uniform_filter(raw, 3, mode="nearest")
        smooth[raw == 0] = np.nan  # unscanned
        labels = None if self.labels is None else np.asarray(self.labels[r0:r1, c0:c1])
        return smooth, (r0, c0), labels


@dataclass(frozen=True, slots=True)
class ProfileResult:
    name: str
    points: int
    used: bool
    reason: str = ""
    held_out: bool = False
    along_shift_um: float = 0.0
    outliers: int = 0
    rmse: float | None = None  # of this profile under the final fit


@dataclass(frozen=True, slots=True)
class MgFit:
    """The BSE → mg# regression, its registration and its test."""

    slope: float  # mg# per DN of drift-corrected BSE
    intercept: float
    offset_um: tuple[float, float]  # added to EPMA (x, y) to land on the mosaic
    registration_r2: float
    bse_range: tuple[float, float]  # BSE of the training points
    train: dict[str, float]
    test: dict[str, float]
    profiles: tuple[ProfileResult, ...]
    refused: str = ""  # why the fit is not usable (empty: usable)
    series: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # for the figures

    def mg(self, bse: NDArray[np.generic]) -> Float:
        result: Float = self.slope * np.asarray(bse, dtype=np.float64) + self.intercept
        return result


def lof_outliers(features: Float, neighbours: int = 20) -> NDArray[np.bool_]:
    """LocalOutlierFactor on standardised features; True where a point is an outlier."""
    from sklearn.neighbors import LocalOutlierFactor

    n = len(features)
    if n < 6:
        return np.zeros(n, dtype=bool)
    spread = features.std(axis=0)
    scaled = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    lof = LocalOutlierFactor(n_neighbors=min(neighbours, n - 1))
    flagged: NDArray[np.bool_] = lof.fit_predict(scaled) == -1
    return flagged


@dataclass(slots=True)
class _Prepared:
    profile: EpmaProfile
    window: Float
    origin: tuple[int, int]
    labels: Any | None
    rc: Float  # pixel positions of the points, before any offset
    direction: Float  # unit vector along the profile (rows, cols)


def _sample(p: _Prepared, rc: Float) -> Float:
    from scipy.ndimage import map_coordinates

    local = rc - np.array(p.origin, dtype=np.float64)
    values: Float = map_coordinates(p.window, local.T, order=1, mode="constant", cval=np.nan)
    return values


def _r2(x: Float, y: Float) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.std(x[ok]) == 0:
        return -np.inf
    return float(np.corrcoef(x[ok], y[ok])[0, 1] ** 2)


def _metrics(profiles: list[tuple[Float, Float]]) -> dict[str, float]:
    """R², RMSE, RMSE10 and shifted RMSE of (predicted, measured) pairs per profile."""
    if not profiles:
        return {}
    pred = np.concatenate([p for p, _ in profiles])
    meas = np.concatenate([m for _, m in profiles])
    inner, shifted = [], []
    for p, m in profiles:
        k = int(np.floor(0.1 * len(p)))
        inner.append((p - m)[k : len(p) - k])
        shifted.append((p - m) - (p - m).mean())
    residual = pred - meas
    total = float(((meas - meas.mean()) ** 2).sum())
    return {
        "points": float(len(pred)),
        "r2": 1 - float((residual**2).sum()) / total if total > 0 else float("nan"),
        "rmse": float(np.sqrt((residual**2).mean())),
        "rmse10": float(np.sqrt((np.concatenate(inner) ** 2).mean())),
        "shifted_rmse": float(np.sqrt((np.concatenate(shifted) ** 2).mean())),
    }


def fit_mgnumber(
    image: MosaicImage,
    profiles: list[EpmaProfile],
    *,
    search_um: float = 10.0,
    holdout_fraction: float = 0.25,
    lof_neighbours: int = 20,
    mg_range: tuple[float, float] = (0.5, 1.0),
) -> MgFit:
    """Register the profiles, remove outliers, fit BSE → mg# and test it (see the module)."""
    results: dict[str, ProfileResult] = {}
    prepared: list[_Prepared] = []
    margin = int(np.ceil(search_um / image.scale_um)) + 4
    for profile in sorted(profiles, key=lambda p: p.name):
        rc = image.to_pixels(profile.xy_um)
        window, origin, labels = image.window(rc, margin)
        p = _Prepared(profile, window, origin, labels, rc, _direction(rc))
        reason = _why_unusable(p)
        if reason:
            results[profile.name] = ProfileResult(profile.name, len(rc), False, reason)
        else:
            prepared.append(p)
    if not prepared:
        return refused_fit("no EPMA profile lies on the scanned olivine of the mosaic", results)

    offset_px, reg_r2 = _register(prepared, search_um / image.scale_um)
    along = {p.profile.name: _along_shift(p, offset_px, prepared) for p in prepared}
    held = _held_out([p.profile.name for p in prepared], holdout_fraction)
    series: dict[str, dict[str, list[float]]] = {}
    data: dict[str, tuple[Float, Float, int]] = {}
    for p in prepared:
        rc = p.rc + offset_px + along[p.profile.name] * p.direction
        bse = _sample(p, rc)
        mg = p.profile.mg_number.astype(np.float64)
        ok = np.isfinite(bse)
        flagged = np.zeros(len(bse), dtype=bool)
        flagged[ok] = lof_outliers(np.column_stack([rc[ok], bse[ok]]), lof_neighbours)
        good = ok & ~flagged
        index = np.arange(len(bse))
        if good.sum() >= 2:
            bse = np.interp(index, index[good], bse[good])  # outliers replaced by interpolation
        data[p.profile.name] = (bse, mg, int(flagged.sum()))

    train = [n for n in data if n not in held]
    x = np.concatenate([data[n][0] for n in train])
    y = np.concatenate([data[n][1] for n in train])
    slope, intercept = _robust_line(x, y)
    lo, hi = float(np.percentile(x, 1)), float(np.percentile(x, 99))
    refused = ""
    predicted = (slope * lo + intercept, slope * hi + intercept)
    if slope >= 0:
        refused = (
            f"mg# rises with BSE (slope {slope:+.3g} per DN): not monotonic decreasing as "
            "olivine must be; check the profiles and the mosaic"
        )
    elif min(predicted) < mg_range[0] or max(predicted) > mg_range[1]:
        refused = (
            f"the fit predicts mg# {min(predicted):.3f}–{max(predicted):.3f} over the observed "
            f"BSE {lo:.0f}–{hi:.0f} DN, outside the plausible {mg_range[0]}–{mg_range[1]}"
        )
    per: dict[str, tuple[Float, Float]] = {}
    for name, (bse, mg, flagged_n) in data.items():
        pred = slope * bse + intercept
        per[name] = (pred, mg)
        series[name] = {"bse": bse.tolist(), "measured": mg.tolist(), "predicted": pred.tolist()}
        results[name] = ProfileResult(
            name,
            len(mg),
            True,
            "",
            name in held,
            float(along[name] * image.scale_um),
            flagged_n,
            float(np.sqrt(((pred - mg) ** 2).mean())),
        )
    offset_um = (float(offset_px[1] * image.scale_um), float(offset_px[0] * image.scale_um))
    return MgFit(
        float(slope),
        float(intercept),
        offset_um,
        reg_r2,
        (lo, hi),
        _metrics([per[n] for n in train]),
        _metrics([per[n] for n in held]),
        tuple(results[p.name] for p in sorted(profiles, key=lambda p: p.name)),
        refused,
        series,
    )


def _robust_line(x: Float, y: Float, clip: float = 3.5) -> tuple[float, float]:
    """Least-squares line, refitted without points further than ``clip`` robust standard
    deviations from it (what LOF along each profile left: points at rims, cracks)."""
    keep = np.isfinite(x) & np.isfinite(y)
    slope, intercept = np.polyfit(x[keep], y[keep], 1)
    for _ in range(5):
        residual = y - (slope * x + intercept)
        sigma = 1.4826 * float(np.median(np.abs(residual[keep])))
        now = np.isfinite(x) & np.isfinite(y) & (np.abs(residual) <= clip * max(sigma, 1e-6))
        if now.sum() < 3 or (now == keep).all():
            break
        keep = now
        slope, intercept = np.polyfit(x[keep], y[keep], 1)
    return float(slope), float(intercept)


def refused_fit(reason: str, results: dict[str, ProfileResult] | None = None) -> MgFit:
    """A fit that could not be made, and why."""
    nan = float("nan")
    return MgFit(
        nan, nan, (0.0, 0.0), nan, (nan, nan), {}, {}, tuple((results or {}).values()), reason
    )


def _direction(rc: Float) -> Float:
    d = rc[-1] - rc[0]
    norm = float(np.hypot(*d))
    return d / norm if norm > 0 else np.array([0.0, 1.0])


def _why_unusable(p: _Prepared) -> str:
    if p.window.size == 0:
        return "does not intersect the mosaic"
    inside = np.isfinite(_sample(p, p.rc))
    if inside.mean() < _MIN_INSIDE:
        return f"only {inside.mean():.0%} of its points lie on the scanned mosaic"
    if p.labels is not None:
        local = np.rint(p.rc - np.array(p.origin)).astype(int)
        valid = (local >= 0).all(axis=1) & (local < np.array(p.labels.shape)).all(axis=1)
        on = np.zeros(len(local), dtype=bool)
        on[valid] = p.labels[local[valid, 0], local[valid, 1]] > 0
        if on.mean() < _MIN_INSIDE:
            return f"only {on.mean():.0%} of its points lie on olivine"
    return ""


def _register(prepared: list[_Prepared], search_px: float) -> tuple[Float, float]:
    """The common offset (rows, cols px) maximising the pooled R² of mg# against BSE."""
    mg = np.concatenate([p.profile.mg_number for p in prepared])

    def score(offset: Float) -> float:
        bse = np.concatenate([_sample(p, p.rc + offset) for p in prepared])
        return _r2(bse, mg)

    best, best_score = np.zeros(2), score(np.zeros(2))
    for step, extent in ((0.5, search_px), (0.1, 0.5)):
        centre = best.copy()
        steps = np.arange(-extent, extent + step / 2, step)
        for dy in steps:
            for dx in steps:
                candidate = centre + np.array([dy, dx])
                s = score(candidate)
                if s > best_score:
                    best, best_score = candidate, s
    return best, best_score


def _along_shift(p: _Prepared, offset: Float, prepared: list[_Prepared]) -> float:
    """Slide one profile along its line (±2 px) to best fit the line of the others."""
    others = [q for q in prepared if q is not p]
    if not others:
        return 0.0
    x = np.concatenate([_sample(q, q.rc + offset) for q in others])
    y = np.concatenate([q.profile.mg_number for q in others])
    ok = np.isfinite(x)
    if ok.sum() < 3:
        return 0.0
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    best, best_err = 0.0, np.inf
    for s in np.arange(-2.0, 2.05, 0.1):
        bse = _sample(p, p.rc + offset + s * p.direction)
        good = np.isfinite(bse)
        if good.sum() < 3:
            continue
        err = float(np.median((slope * bse[good] + intercept - p.profile.mg_number[good]) ** 2))
        if err < best_err - 1e-12:
            best, best_err = float(s), err
    return best


def _held_out(names: list[str], fraction: float) -> set[str]:
    """Every k-th profile (by name) is kept out of the fit; none when fewer than two."""
    if len(names) < 2 or fraction <= 0:
        return set()
    count = max(1, round(fraction * len(names)))
    count = min(count, len(names) - 1)
    step = len(names) / count
    return {names[int(i * step + step / 2)] for i in range(count)}
