"""Figures of the catalogue (after Leichter et al. 2022, Figs. 9, 11 and 12) and the report.

``report.html`` is one self-contained page: styles inline, every figure embedded as a PNG data
URI, no script and no link to anything outside it, so it opens offline and can be mailed.
"""

from __future__ import annotations

import base64
import html
import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from semlive.catalogue._catalogue import CRYSTALS_PATH, SIZE_CLASSES, Catalogue
from semlive.catalogue._export import grey_of

__all__ = ["write_figures", "write_report"]

_CLASS_COLOURS = {
    "microlite": "#3b8bd9",
    "microphenocryst": "#f0a030",
    "phenocryst": "#d2342b",
}
_OVERVIEW_MAX_PX = 1600


def write_figures(store: Path, catalogue: Catalogue, folder: Path) -> dict[str, Path]:
    """The size distribution, mg# histograms and the two section overviews, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rows = catalogue.rows
    out: dict[str, Path] = {}

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    areas = np.array([r["area_um2"] for r in rows], np.float64)
    if areas.size:
        bins = np.logspace(np.log10(max(areas.min(), 1.0)), np.log10(areas.max()) + 1e-9, 40)
        for name in SIZE_CLASSES:
            mine = [r["area_um2"] for r in rows if r["size_class"] == name]
            ax.hist(
                mine, bins=bins.tolist(), color=_CLASS_COLOURS[name], label=f"{name} ({len(mine)})"
            )
        ax.set_xscale("log")
        ax.legend()
    ax.set_xlabel("crystal area (µm², inside the outer outline)")
    ax.set_ylabel("crystals")
    ax.set_title("Olivine size distribution")
    out["size_distribution"] = _save(fig, folder / "size_distribution.png")

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), dpi=110, sharex=True)
    bins_mg = np.linspace(0.5, 1.0, 51)
    for ax, name in zip(axes, SIZE_CLASSES, strict=True):
        mine = [r for r in rows if r["size_class"] == name]
        if name == "phenocryst":
            for key, colour in (("mg_core", "#7a1f1a"), ("mg_rim", "#f08a80")):
                values = _finite([r[key] for r in mine])
                ax.hist(values, bins=bins_mg.tolist(), color=colour, alpha=0.75, label=key[3:])
            ax.legend()
        else:
            ax.hist(
                _finite([r["mg_mean"] for r in mine]),
                bins=bins_mg.tolist(),
                color=_CLASS_COLOURS[name],
            )
        ax.set_title(f"{name}s ({len(mine)})")
        ax.set_xlabel("mg#")
    axes[0].set_ylabel("crystals")
    out["mg_histograms"] = _save(fig, folder / "mg_histograms.png")

    level, grey, labels, mg = _overview_layers(store, catalogue)
    extent = _extent(catalogue, level, grey.shape)
    fig, ax = plt.subplots(figsize=(8, 8 * grey.shape[0] / max(grey.shape[1], 1)), dpi=110)
    ax.imshow(grey, cmap="gray", extent=extent, interpolation="nearest")
    if labels is not None:
        classes = np.zeros(len(rows) + 1, np.uint8)
        for r in rows:
            classes[r["crystal_id"]] = 1 + SIZE_CLASSES.index(r["size_class"])
        coloured = np.ma.masked_equal(classes[np.clip(labels, 0, len(rows))], 0)
        cmap = matplotlib.colors.ListedColormap([_CLASS_COLOURS[c] for c in SIZE_CLASSES])
        ax.imshow(coloured, cmap=cmap, vmin=0.5, vmax=3.5, extent=extent, interpolation="nearest")
        handles = [matplotlib.patches.Patch(color=_CLASS_COLOURS[c], label=c) for c in SIZE_CLASSES]
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_xlabel("stage x (µm)")
    ax.set_ylabel("stage y (µm)")
    ax.set_title("Olivine crystals by size class")
    out["overview_classes"] = _save(fig, folder / "overview_classes.png")

    fig, ax = plt.subplots(figsize=(8.6, 8 * grey.shape[0] / max(grey.shape[1], 1)), dpi=110)
    ax.imshow(grey, cmap="gray", extent=extent, interpolation="nearest")
    if mg is not None and np.isfinite(mg).any():
        lo, hi = np.nanpercentile(mg, (1, 99))
        image = ax.imshow(
            np.ma.masked_invalid(mg),
            cmap="viridis",
            vmin=lo,
            vmax=hi,
            extent=extent,
            interpolation="nearest",
        )
        fig.colorbar(image, ax=ax, shrink=0.7, label="mg#")
    ax.set_xlabel("stage x (µm)")
    ax.set_ylabel("stage y (µm)")
    ax.set_title("Olivine mg# map")
    out["overview_mgnumber"] = _save(fig, folder / "overview_mgnumber.png")
    return out


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if np.isfinite(v)]


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _overview_layers(
    store: Path, catalogue: Catalogue
) -> tuple[int, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """BSE, crystal labels and mg# at the coarsest pyramid level that keeps detail, thinned to at
    most ``_OVERVIEW_MAX_PX`` on a side."""
    import zarr

    root: Any = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    datasets = root["bse"].attrs["ome"]["multiscales"][0]["datasets"]
    level = len(datasets) - 1
    for k in range(len(datasets)):
        if max(root["bse"][str(k)].shape) <= 2 * _OVERVIEW_MAX_PX:
            level = k
            break
    bse = np.asarray(root["bse"][str(level)][:])
    step = max(1, -(-max(bse.shape) // _OVERVIEW_MAX_PX))
    grey = grey_of(bse[::step, ::step])
    labels = (
        np.asarray(root[CRYSTALS_PATH][str(level)][::step, ::step])
        if CRYSTALS_PATH in root
        else None
    )
    mg = np.asarray(root["mgnumber"][str(level)][::step, ::step]) if "mgnumber" in root else None
    return 2**level * step, grey, labels, mg


def _extent(
    catalogue: Catalogue, factor: int, shape: tuple[int, ...]
) -> tuple[float, float, float, float]:
    s = catalogue.layers.scale_um
    ty, tx = catalogue.layers.translation_um
    x0, y0 = tx - s / 2, ty - s / 2
    return (x0, x0 + shape[1] * factor * s, y0 + shape[0] * factor * s, y0)


def write_report(store: Path, catalogue: Catalogue, figures: dict[str, Path], path: Path) -> Path:
    """The self-contained HTML report."""
    summary = catalogue.summary()
    for name in ("drift", "calibration_line"):  # written by semlive calibrate
        if (store / "calibration" / f"{name}.png").is_file():
            figures = {**figures, name: store / "calibration" / f"{name}.png"}
    sections = [
        _section("Session", _session_table(store)),
        _section("Catalogue", _catalogue_tables(summary, catalogue)),
        _section("Instrument drift", _drift(store)),
        _section("mg# calibration", _calibration(store)),
        _section("Olivine segmentation", _segmentation(store)),
        _section(
            "Figures",
            "".join(_figure(figures[k], caption) for k, caption in _FIGURES if k in figures),
        ),
        _section("Phenocrysts", _phenocryst_table(catalogue.rows)),
    ]
    page = _PAGE.format(
        title=html.escape(f"semlive report: {store.name}"), body="\n".join(sections)
    )
    path.write_text(page, encoding="utf-8")
    return path


_FIGURES = (
    (
        "overview_classes",
        "Olivine crystals coloured by size class (after Leichter et al., Fig. 9B).",
    ),
    ("overview_mgnumber", "mg# map of the olivine (after Fig. 9A)."),
    ("size_distribution", "Crystal areas per size class, log axis (after Fig. 11)."),
    ("mg_histograms", "mg# per population; phenocryst cores and rims apart (after Fig. 12)."),
    ("drift", "Standards over the session and the fitted drift."),
    ("calibration_line", "BSE → mg# regression on the microprobe profiles."),
)

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 1.6em; }}
table {{ border-collapse: collapse; margin: .6em 0; }}
td, th {{ border: 1px solid #ddd; padding: .2em .6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: .9em; }} .note {{ color: #555; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"""


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not np.isfinite(value):
            return "–"
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _session_table(store: Path) -> str:
    ledger = store / "ledger.sqlite"
    if not ledger.is_file():
        return '<p class="note">No ledger in this store.</p>'
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        tiles, eds, first, last = db.execute(
            "SELECT COUNT(*), COUNT(eds_checksum), MIN(acquired_at), MAX(acquired_at) FROM tiles"
        ).fetchone()
        states = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    finally:
        db.close()
    rows = [
        ["session folder", meta.get("session_dir", "")],
        ["store", str(store)],
        ["tiles", tiles],
        ["tiles with EDS maps", eds],
        ["first tile", first or ""],
        ["last tile", last or ""],
        ["session complete (DONE)", meta.get("done") == "1"],
        ["files ingested", states.get("ingested", 0)],
        ["files quarantined", states.get("quarantined", 0)],
    ]
    return _table(["", ""], rows)


def _catalogue_tables(summary: dict[str, Any], catalogue: Catalogue) -> str:
    classes = [[name, n] for name, n in summary["size_classes"].items()]
    zoning = [[name, n] for name, n in summary["phenocryst_zoning"].items()]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in catalogue.seconds.items())
    return (
        f"<p>{summary['crystals']} olivine crystals larger than the minimum area; "
        f"{summary['touching_edge']} touch the mosaic border or an unscanned gap (their size is "
        f"a lower bound). Black level {catalogue.black_level_dn:.0f} DN. Computed in {seconds}."
        "</p>"
        + _table(["size class", "crystals"], classes)
        + _table(["phenocryst zoning", "crystals"], zoning)
    )


def _drift(store: Path) -> str:
    path = store / "calibration" / "drift.json"
    if not path.is_file():
        return '<p class="note">No drift model: the store was not calibrated.</p>'
    drift = json.loads(path.read_text())
    rows = [
        [r.get("at", ""), r.get("gain", float("nan")), r.get("offset_dn", float("nan")), r["mode"]]
        for r in drift.get("rounds", [])
    ]
    return f"<p>{html.escape(str(drift.get('mode', '')))}</p>" + _table(
        ["standards round", "gain", "offset (DN)", "fit"], rows
    )


def _calibration(store: Path) -> str:
    path = store / "calibration" / "mgnumber_fit.json"
    if not path.is_file():
        return '<p class="note">No mg# calibration in this store.</p>'
    fit = json.loads(path.read_text())
    if fit.get("refused"):
        return f"<p>Refused: {html.escape(str(fit['refused']))}</p>"
    rows = [
        [name, part["points"], part["r2"], part["rmse"]]
        for name, part in (("training profiles", fit["train"]), ("held-out", fit["test"]))
        if part
    ]
    return f"<p>mg# = {fit['slope']:.4e} · BSE + {fit['intercept']:.4f}</p>" + _table(
        ["", "points", "R²", "RMSE"], rows
    )


def _check_rule(check: dict[str, float]) -> str:
    """The model card's crystal check in words (as ``CrystalCheck.describe`` says it)."""
    if not check:
        return "off"

    def band(low: float | None, high: float | None) -> str:
        return (
            f"{'any' if low is None else f'{low:,.0f}'}–{'any' if high is None else f'{high:,.0f}'}"
        )

    zoning = " and rim-to-core difference" if check.get("rim_core") else ""
    rule = f"crystals with interior BSE spread{zoning} below {check['max_core_std_dn']:,.0f} DN"
    if "band_low_dn" in check or "band_high_dn" in check:
        grey = band(check.get("band_low_dn"), check.get("band_high_dn"))
        rule += f" whose interior mean BSE is {grey} DN"
        if "gap_low_dn" in check and "gap_high_dn" in check:
            rule += f" but not {band(check['gap_low_dn'], check['gap_high_dn'])} DN"
    rule += " dropped"
    if check.get("small_depth_px", 0) > 0:
        rule += (
            f"; crystals of fewer than {check.get('min_core_px', 100):g} interior pixels count"
            f" as flat (their mean BSE taken {check['small_depth_px']:g} px inside them)"
        )
    return rule


def _outline_rule(outline: dict[str, float]) -> str:
    """The model card's outline in words (as ``Outline.describe`` says it)."""
    low, snap = outline.get("low", 0.0), outline.get("snap_sigma_px", 0.0)
    if low <= 0 and snap <= 0:
        return "off"
    words = []
    if low > 0:
        words.append(
            f"crystals grown to the BSE's edges over pixels of probability ≥ {low:g} "
            f"(gradient at σ {outline.get('smooth_sigma_px', 1.5):g} px)"
        )
    if snap > 0:
        words.append(
            f"edges drawn by the local grey levels inside and outside (σ {snap:g} px), "
            "cracks and holes cleared"
        )
        fill = outline.get("fill_sigmas", 0.0)
        if fill > 0:
            words.append(
                f"holes whose edge shows no step in grey (under {fill:g} × the BSE noise) filled"
            )
    return "; ".join(words)


def _segmentation(store: Path) -> str:
    path = store / "models" / "olivine" / "card.json"
    if not path.is_file():
        return '<p class="note">No olivine model card in this store.</p>'
    card = json.loads(path.read_text())
    validation = card.get("metrics", {}).get("validation", {})
    check = card.get("crystal_check") or {}
    scores = card.get("metrics", {}).get("crystal_check", {})
    rows = [
        ["network", card.get("architecture", "")],
        ["threshold dlth", card.get("dlth", float("nan"))],
        ["training tiles", len(card.get("training_tiles", []))],
        ["validation IoU (EDS labels)", validation.get("iou", float("nan"))],
        ["validation overall accuracy", validation.get("overall_accuracy", float("nan"))],
        ["outline", _outline_rule(card.get("outline") or {})],
        ["crystal check", _check_rule(check)],
    ]
    if scores:
        rows.append(
            [
                "IoU on the EDS tiles without / with the check (chosen there)",
                f"{scores['eds_iou_without']:.3f} / {scores['eds_iou_with']:.3f}",
            ]
        )
    return _table(["", ""], rows)


def _phenocryst_table(rows: list[dict[str, Any]]) -> str:
    pheno = [r for r in rows if r["size_class"] == "phenocryst"]
    if not pheno:
        return '<p class="note">No phenocryst.</p>'
    keys = ["crystal_id", "area_um2", "zoning", "mg_core", "mg_rim", "core_rim_ratio"]
    return _table(keys, [[r[k] for k in keys] for r in pheno])
