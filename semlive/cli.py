"""semlive's command line: parse, validate, call the library, return an exit code.

Exit codes: 0 success, 2 bad usage or configuration, 3 bad input data, 1 anything else. Errors
print one line; ``-v`` adds the traceback. Heavy libraries are imported inside the commands, so
``semlive --help`` stays instant.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from semlive import __version__
from semlive.errors import SemliveError, exit_code_for

__all__ = ["app", "main", "run"]

app = typer.Typer(
    name="semlive",
    help="A live companion for SEM thin-section scans: stitches, segments, calibrates and "
    "catalogues olivine while the microscope scans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_LEVELS = ["debug", "info", "warning", "error"]
_verbosity = 0

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML configuration file (see config/semlive.toml).", show_default=False
    ),
]


SessionArgument = Annotated[
    Path, typer.Argument(help="The session folder the SEM writes into.", show_default=False)
]
StoreOption = Annotated[
    Path | None,
    typer.Option(
        help="Store folder (default: SESSION.semlive beside the session).", show_default=False
    ),
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"semlive {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More detail; -v shows tracebacks.")
    ] = 0,
    quiet: Annotated[
        int, typer.Option("--quiet", "-q", count=True, help="Less detail: warnings and errors.")
    ] = 0,
) -> None:
    global _verbosity
    _verbosity = verbose - quiet
    _configure_logging("info")


@app.command("config")
def config_command(
    config: ConfigOption = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Print every field with its default, documented.")
    ] = False,
) -> None:
    """Check a configuration and print what differs from the defaults."""
    from semlive.settings import format_non_defaults, load_settings, render_toml

    if defaults:
        typer.echo(render_toml(), nl=False)
        return
    settings = load_settings(config)
    _configure_logging(settings.log.level)
    text = format_non_defaults(settings)
    typer.echo(text if text else "# every setting has its default value", nl=not text)


@app.command("simulate")
def simulate_command(
    out: Annotated[
        Path,
        typer.Argument(help="New or empty folder to write the session into.", show_default=False),
    ],
    preset: Annotated[
        str,
        typer.Option(
            help="Session size: tiny (3×3 tiles), small (6×6 tiles "
            "of 512×338 px), section (30×40 tiles)."
        ),
    ] = "small",
    seed: Annotated[
        int, typer.Option(help="Seed of the sample; the same seed gives the same files.")
    ] = 0,
    speed: Annotated[
        float | None,
        typer.Option(
            help="Pace: simulated time runs X times faster "
            "than a real SEM (1 = ~20 s per BSE tile). "
            "Default: as fast as possible.",
            show_default=False,
        ),
    ] = None,
    instant: Annotated[
        bool, typer.Option("--instant", help="Write as fast as possible (the default).")
    ] = False,
    faults: Annotated[
        str,
        typer.Option(
            help="Comma-separated faults to inject, or 'all': "
            "slow-write, rename, truncated, corrupt, duplicate, "
            "rewrite, out-of-order, missing-sidecar, late-sidecar, "
            "foreign, bad-sidecar."
        ),
    ] = "",
    session: Annotated[
        int,
        typer.Option(
            help="Session number of the same sample; each later "
            "session is 20 days on, with its own drift."
        ),
    ] = 0,
    grid: Annotated[
        str | None,
        typer.Option(
            help="Tile grid ROWSxCOLS instead of the preset's (e.g. 4x5).", show_default=False
        ),
    ] = None,
    overlap: Annotated[
        float | None,
        typer.Option(
            help="Overlap of neighbouring tiles as a fraction of the tile, in [0, 0.5).",
            show_default=False,
        ),
    ] = None,
    eds_every: Annotated[
        int | None,
        typer.Option(
            help="EDS maps on one tile in N, spread over the grid, instead of the preset's 4 "
            "(~25 %); 1: on every tile.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a simulated SEM session folder (Contract 1) with ground truth in OUT/_truth."""
    from semlive.errors import UsageError
    from semlive.virtual_sem import simulate

    if instant and speed is not None:
        raise UsageError("--speed and --instant exclude each other; give one of them")
    chosen = tuple(f.strip() for f in faults.split(",") if f.strip())
    summary = simulate(
        out,
        preset,
        seed,
        speed=speed,
        faults=chosen,
        session=session,
        grid=_parse_grid(grid),
        overlap_fraction=overlap,
        eds_every=eds_every,
    )
    typer.echo(
        f"wrote {summary.files} files ({summary.tiles} BSE tiles, {summary.eds_tiles} with EDS "
        f"maps) of a {preset} session into {summary.out} in {summary.seconds:.1f} s; "
        f"{summary.crystals} olivine crystals in the truth ({summary.out / '_truth'})"
    )


def _parse_grid(text: str | None) -> tuple[int, int] | None:
    from semlive.errors import UsageError

    if text is None:
        return None
    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--grid must look like ROWSxCOLS (e.g. 4x5); got {text!r}") from None
    return rows, cols


@app.command("ingest")
def ingest_command(
    session: SessionArgument,
    store: StoreOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Take what is there now and exit, instead of watching until DONE."
        ),
    ] = False,
    poll: Annotated[
        bool, typer.Option("--poll", help="Rescans only, no file-system events (network shares).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Run acquisition alone: ingest every complete file of SESSION into the store's ledger."""
    from semlive.acquisition import FileQuarantined, Ingestor, TileReady, default_store
    from semlive.settings import load_settings

    overrides = {"acquisition.observer": "polling"} if poll else {}
    settings = load_settings(config, overrides=overrides)
    _configure_logging(settings.log.level)
    target = store if store is not None else default_store(session)
    tiles = quarantined = 0
    with Ingestor(session, target, settings.acquisition) as ingestor:
        for event in ingestor.run(once=once):
            tiles += isinstance(event, TileReady)
            quarantined += isinstance(event, FileQuarantined)
        status = ingestor.status()
    files = status["files"]
    typer.echo(
        f"{session}: {tiles} tiles ready this run ({status['tiles_ready']} in the store), "
        f"{quarantined} files quarantined this run; ledger {target / 'ledger.sqlite'}: "
        + ", ".join(f"{n} {state}" for state, n in files.items())
        + ("; session DONE" if status["done"] else "")
    )
    for entry in status["quarantined"]:
        typer.echo(f"  quarantined {entry['path']}: {entry['reason']}")


@app.command("stitch")
def stitch_command(
    session: SessionArgument,
    store: StoreOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Stitch what is there now and exit, instead of watching until DONE."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Acquisition and stitching alone: place every tile and write STORE/mosaic.zarr."""
    from semlive.acquisition import TileReady, default_store
    from semlive.calibration import DriftAlert, drift_correction
    from semlive.settings import load_settings
    from semlive.streaming import RegionChanged, RegionComplete, stitch_session

    settings = load_settings(config)
    _configure_logging(settings.log.level)
    target = store if store is not None else default_store(session)
    counts = {"tiles": 0, "complete": 0, "changed": 0}
    alerts = []
    for event in stitch_session(
        session, target, settings, once=once, correction=drift_correction(settings.calibration)
    ):
        counts["tiles"] += isinstance(event, TileReady)
        counts["complete"] += isinstance(event, RegionComplete)
        counts["changed"] += isinstance(event, RegionChanged)
        if isinstance(event, DriftAlert):
            alerts.append(event)
    typer.echo(
        f"{session}: {counts['tiles']} new tiles placed, {counts['complete']} regions "
        f"complete, {counts['changed']} re-fused after a re-solve or a new drift fit; mosaic "
        f"{target / 'mosaic.zarr'}"
    )
    for alert in alerts:
        typer.echo(f"drift alert: {alert.message()}")


@app.command("calibrate")
def calibrate_command(
    store: Annotated[
        Path, typer.Argument(help="A store folder (SESSION.semlive).", show_default=False)
    ],
    session: Annotated[
        Path | None,
        typer.Option(
            help="The session folder (default: the one the store was made from).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Refit drift and the BSE → mg# regression; write STORE/calibration and the mg# map."""
    from semlive.calibration import calibrate_store
    from semlive.errors import InputDataError
    from semlive.settings import load_settings

    settings = load_settings(config)
    _configure_logging(settings.log.level)
    report = calibrate_store(store, settings.calibration, session)
    typer.echo(f"drift: {report.drift['mode']} (references from {report.drift['references']})")
    for r in report.drift["rounds"]:  # type: ignore[attr-defined]
        typer.echo(
            f"  {r['at']}: gain {r['gain']:.5f}, offset {r['offset_dn']:+.1f} DN ({r['fit']})"
        )
    for f in report.drift["failed"]:  # type: ignore[attr-defined]
        typer.echo(f"  {f['at']}: not fitted: {f['reason']}")
    fit = report.fit
    for p in fit.profiles:
        if not p.used:
            typer.echo(f"EPMA {p.name}: skipped, {p.reason}")
    if fit.refused:
        raise InputDataError(f"mg# calibration refused: {fit.refused}", path=store)
    dx, dy = fit.offset_um
    test = fit.test or fit.train
    typer.echo(
        f"EPMA registered with offset ({dx:+.1f}, {dy:+.1f}) µm (R² {fit.registration_r2:.3f}); "
        f"mg# = {fit.slope:.4e}·BSE + {fit.intercept:.4f}; "
        f"{'held-out' if fit.test else 'training'} profiles: R² {test['r2']:.3f}, "
        f"RMSE {test['rmse']:.4f}, RMSE10 {test['rmse10']:.4f}, "
        f"shifted RMSE {test['shifted_rmse']:.4f}"
    )
    typer.echo(
        f"mg# map: {report.mgnumber_pixels} olivine pixels in {store / 'mosaic.zarr' / 'mgnumber'}"
        f"; figures and fits in {report.folder}"
    )


StoreArgument = Annotated[
    Path, typer.Argument(help="A store folder (SESSION.semlive).", show_default=False)
]


@app.command("train")
def train_command(
    store: StoreArgument,
    arch: Annotated[
        str | None,
        typer.Option(
            help="Network: deeplabv3_resnet50 or deeplabv3_mobilenet_v3_large "
            "(default: olivine.arch, auto = ResNet-50 on a GPU, MobileNetV3 on a CPU).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Most epochs (default: olivine.epochs).", show_default=False)
    ] = None,
    name: Annotated[str, typer.Option(help="Model name: STORE/models/NAME.")] = "olivine",
    init_weights: Annotated[
        Path | None,
        typer.Option(
            help="torchvision-format weights to start from (.safetensors or .pth state dict).",
            show_default=False,
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start afresh instead of resuming a stopped run.")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Train the olivine network on the store's EDS-labelled tiles (resumes a stopped run)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from semlive.models.olivine import TrainProgress, train_olivine
    from semlive.settings import load_settings

    overrides: dict[str, object] = {}
    if arch is not None:
        overrides["olivine.arch"] = arch
    if epochs is not None:
        overrides["olivine.epochs"] = epochs
    if init_weights is not None:
        overrides["olivine.init_weights"] = str(init_weights)
    settings = load_settings(config, overrides=overrides)
    _configure_logging(settings.log.level)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, TimeRemainingColumn(), transient=True) as bar:
        epochs_in_all = settings.olivine.epochs + settings.olivine.refit_epochs
        task = bar.add_task("training", total=epochs_in_all, info="")

        def show(p: TrainProgress) -> None:
            done = p.epoch - 1 + p.step / p.steps
            info = f"epoch {p.epoch}/{p.epochs} loss {p.train_loss:.4f}"
            if p.val_loss is not None:
                info += f" val {p.val_loss:.4f}"
            bar.update(task, completed=done, info=info)

        card = train_olivine(store, settings.olivine, name, show, resume=not fresh)
    val = card.metrics["validation"]
    train = card.training
    refit = card.metrics.get("refit")
    typer.echo(
        f"{card.architecture} trained for {train['epochs_run']} epochs in {train['seconds']} s "
        f"on {train['device']} ({len(card.split['train'])} training tiles, "
        f"{len(card.split['validation'])} validation tiles); dlth {card.dlth:.2f}; validation "
        f"against EDS labels: IoU {val['iou']:.3f}, OA {val['overall_accuracy']:.4f}"
        + (
            f"; then {refit['epochs']} epochs on all {refit['tiles']} EDS tiles in "
            f"{refit['seconds']} s"
            if refit
            else ""
        )
    )
    typer.echo(f"model: {store / 'models' / name}")


@app.command("segment")
def segment_command(
    store: StoreArgument,
    model: Annotated[str, typer.Option(help="Model name in STORE/models.")] = "olivine",
    config: ConfigOption = None,
) -> None:
    """Segment olivine over the whole mosaic with sliding windows (bse/labels/olivine)."""
    import time

    from rich.progress import Progress

    from semlive.models.olivine import OlivineSegmenter, RegionResult, agreement_with_eds
    from semlive.settings import load_settings

    settings = load_settings(config)
    _configure_logging(settings.log.level)
    segmenter = OlivineSegmenter(store, settings.olivine, model)
    started = time.perf_counter()
    with Progress(transient=True) as bar:
        task = bar.add_task("segmenting", total=None)

        def show(done: int, total: int, result: RegionResult) -> None:
            bar.update(task, completed=done, total=total)

        results = segmenter.segment_store(show)
    seconds = time.perf_counter() - started
    scanned = sum(r.scanned_px for r in results)
    olivine = sum(r.olivine_px for r in results)
    runtime = segmenter.runtime
    typer.echo(
        f"{len(results)} blocks, {scanned / 1e6:.2f} Mpx scanned in {seconds:.1f} s "
        f"({scanned / 1e6 / max(seconds, 1e-9):.2f} Mpx/s on {runtime.device.type}, "
        f"{runtime.precision}, {segmenter.views} view{'s' if segmenter.views > 1 else ''}); "
        f"olivine {olivine / max(scanned, 1):.2%} of the scanned area"
    )
    report = agreement_with_eds(store, settings.olivine)
    if report is not None:
        o = report["overall"]
        typer.echo(
            f"agreement with the EDS labels ({o['pixels']:,} px, training tiles included): "
            f"IoU {o['iou']:.3f}, OA {o['overall_accuracy']:.4f}"
        )
    typer.echo(f"labels: {store / 'mosaic.zarr' / 'bse' / 'labels' / 'olivine'}")


@app.command("export")
def export_command(
    store: StoreArgument,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the exports (default: STORE/catalogue).", show_default=False),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Catalogue every olivine crystal; write tables, GeoJSON, crystal images, figures, report."""
    from semlive.catalogue import export_catalogue
    from semlive.settings import load_settings

    settings = load_settings(config)
    _configure_logging(settings.log.level)
    report = export_catalogue(store, settings.catalogue, out)
    summary = report.catalogue.summary()
    classes = ", ".join(f"{n} {name}s" for name, n in summary["size_classes"].items())
    zoning = ", ".join(f"{n} {kind}" for kind, n in summary["phenocryst_zoning"].items())
    seconds = sum(report.seconds.values())
    typer.echo(
        f"{summary['crystals']} olivine crystals ({classes}); phenocryst zoning: {zoning}; "
        f"{summary['touching_edge']} touch the mosaic border or a gap; {seconds:.1f} s"
    )
    typer.echo(f"catalogue: {report.files['csv']} (and .parquet), {report.files['geojson']}")
    typer.echo(f"report (opens offline in a browser): {report.files['report']}")


class _FieldOrCommand(TyperGroup):
    """``semlive gdls FIELD …`` (Contract 3) runs the ``segment`` command; a first word that
    names a command (``train-embedding``) runs that command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["segment", *args]
        return super().parse_args(ctx, args)


gdls_app = typer.Typer(
    cls=_FieldOrCommand,
    help="GDLS: segmentation of sparse EDS spectra with BSE (Juránek et al.). "
    "semlive gdls FIELD segments a field (same as semlive gdls segment FIELD).",
    no_args_is_help=True,
)
app.add_typer(gdls_app, name="gdls")


@gdls_app.command("segment")
def gdls_segment_command(
    field: Annotated[
        Path,
        typer.Argument(
            help="A field folder (field.json, one BSE .tif, spectra .npz) or a Bruker .bcf.",
            show_default=False,
        ),
    ],
    tau_b: Annotated[
        float,
        typer.Option(min=0.0, help="Largest BSE difference within a segment (of full scale)."),
    ] = 0.02,
    tau_z: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Largest embedding distance between neighbouring points (default: measured for "
            "the embedding, 0.15 for semlive's, 0.3 for the published one).",
            show_default=False,
        ),
    ] = None,
    tau_g: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Touching segments merge below this G per degree of freedom of their summed "
            "spectra plus (BSE difference / tau-b)²; 0 turns the merge off.",
        ),
    ] = 1.5,
    method: Annotated[
        str, typer.Option(help="Dense labelling: watershed (fast) or random_walker (the paper's).")
    ] = "watershed",
    min_points: Annotated[
        int, typer.Option(min=1, help="Smallest segment, in EDS points (1: no speck merging).")
    ] = 20,
    support: Annotated[
        int,
        typer.Option(
            min=0,
            help="Triangles of kept edges an edge needs to be kept (0: the published rule).",
        ),
    ] = 1,
    step: Annotated[
        int, typer.Option(min=1, help="For a .bcf: take every STEP-th pixel as an EDS point.")
    ] = 3,
    keras: Annotated[
        Path | None,
        typer.Option(
            help="Use the GDLS authors' embedding.h5 instead of semlive's.", show_default=False
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Segment image (uint32 TIFF) to write; the segment table goes beside it as .csv "
            "(default: FIELD-gdls-segments.tif beside the field folder or .bcf).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Segment one field from its BSE and sparse spectra; name each segment's phase."""
    import time

    import numpy as np
    import tifffile

    from semlive.acquisition._field import read_field
    from semlive.models.gdls import (
        DENSE_METHODS,
        load_keras_embedding,
        phase_areas,
        phase_library,
        segment_field,
        segment_table,
        write_segment_table,
    )

    if method not in DENSE_METHODS:
        raise typer.BadParameter(f"expected one of {', '.join(DENSE_METHODS)}, got {method!r}")
    data = read_field(field, step=step)
    place = field.resolve()
    target = out or place.with_name(f"{place.stem}-gdls-segments.tif")
    if target.suffix.lower() not in (".tif", ".tiff"):
        raise typer.BadParameter(
            f"expected a .tif file for the segment image, got {target.name}", param_hint="--out"
        )
    written = {target.resolve(), target.with_suffix(".csv").resolve()}
    if place in written or (field.is_dir() and any(place in p.parents for p in written)):
        raise typer.BadParameter(
            f"{target} is inside the field or one of its files; the field stays as it is: "
            "give an --out outside it",
            param_hint="--out",
        )
    embedding = load_keras_embedding(keras) if keras is not None else None
    started = time.perf_counter()
    result = segment_field(
        data.bse, data.rows, data.cols, data.counts, data.channel_offset_ev,
        data.channel_width_ev, embedding, tau_b=tau_b, tau_z=tau_z,
        method=method,  # type: ignore[arg-type]
        min_points=min_points, tau_g=tau_g or None,
        support=support,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    table = segment_table(result, data.bse, phase_library(round(data.beam_energy_kev, 1)))
    target.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(target, result.labels.astype(np.uint32))
    csv = write_segment_table(table, target.with_suffix(".csv"))
    counts = float(np.asarray(data.counts).sum(axis=1).mean())
    typer.echo(
        f"{data.name}: {len(table['segment'])} segments from {len(data.rows):,} EDS points "
        f"({counts:,.0f} counts each on average, every {result.sample_distance_px:g} px) on a "
        f"{data.bse.shape[0]}×{data.bse.shape[1]}-px BSE image in {seconds:.2f} s"
    )
    covered = max(int(table["pixels"].sum()), 1)
    typer.echo("phases by area (nearest library phase of each segment's summed spectrum):")
    for phase, pixels, segments, mixed in phase_areas(table)[:12]:
        note = f", {mixed / pixels:.0%} in mixed boundary segments" if mixed else ""
        typer.echo(f"  {pixels / covered:6.1%}  {phase} ({segments} segments{note})")
    typer.echo(f"segments: {target}; table: {csv}")


@gdls_app.command("train-embedding")
def train_embedding_command(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for weights.safetensors + card.json (default: the packaged embedding "
            "inside semlive, which this command made).",
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="Training steps (batches).")] = 4000,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    mixtures: Annotated[
        int, typer.Option(min=0, help="Random two-mineral mixtures among the training materials.")
    ] = 2000,
    keras: Annotated[
        Path | None,
        typer.Option(
            help="The GDLS authors' embedding.h5, to score it beside ours on the same "
            "held-out materials.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train semlive's spectrum embedding on simulated spectra (batch-hard triplet loss)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from semlive.models.gdls import evaluate_embedding, load_keras_embedding
    from semlive.models.gdls._ours import (
        PACKAGED_EMBEDDING,
        EmbeddingTraining,
        card_of,
        save_embedding,
        train_embedding,
    )

    settings = EmbeddingTraining(steps=steps, seed=seed, mixtures=mixtures)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("training", total=steps)

        def progress(step: int, loss: float) -> None:
            bar.update(task, completed=step, description=f"training, loss {loss:.3f}")

        model, seconds = train_embedding(settings, progress)
    metrics = {"held_out": evaluate_embedding(model)}
    if keras is not None:
        metrics["published_on_the_same_materials"] = evaluate_embedding(load_keras_embedding(keras))
    command = f"semlive gdls train-embedding --steps {steps} --seed {seed} --mixtures {mixtures}"
    folder = out if out is not None else PACKAGED_EMBEDDING
    save_embedding(model, card_of(model, settings, command, metrics, seconds), folder)
    ours = metrics["held_out"]
    typer.echo(
        f"trained in {seconds:.0f} s; held-out materials ({ours['materials']}, "
        f"{ours['counts']:.0f} counts): ROC AUC {ours['roc_auc']:.4f}, retrieval "
        f"{ours['retrieval_accuracy']:.3f}"
    )
    if "published_on_the_same_materials" in metrics:
        theirs = metrics["published_on_the_same_materials"]
        typer.echo(
            f"published embedding on the same: ROC AUC {theirs['roc_auc']:.4f}, retrieval "
            f"{theirs['retrieval_accuracy']:.3f}"
        )
    typer.echo(f"saved: {folder}")


def _status_view(headless: bool) -> tuple[Any, Any]:
    """Where a run's status goes: one JSON line each (``--headless``) or the dashboard; the
    status callback and the dashboard (None when headless)."""
    import json

    if headless:

        def show(status: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(status, default=float, separators=(",", ":")) + "\n")
            sys.stdout.flush()

        return show, None
    from semlive.dashboard import Dashboard

    dashboard = Dashboard()
    return dashboard.update, dashboard


def _run_viewed(pipeline: Any, dashboard: Any, exit_when_done: bool) -> Any:
    if dashboard is None:
        return pipeline.run(exit_when_done=exit_when_done)
    with dashboard:
        return pipeline.run(exit_when_done=exit_when_done)


@app.command("run")
def run_command(
    session: SessionArgument,
    store: StoreOption = None,
    config: ConfigOption = None,
    headless: Annotated[
        bool,
        typer.Option(
            "--headless", help="No dashboard: print the status as one JSON line a second."
        ),
    ] = False,
    exit_when_done: Annotated[
        bool,
        typer.Option(
            "--exit-when-done",
            help="Exit once the SEM has finished (DONE) and the catalogue and report are written.",
        ),
    ] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            help="Run the jobs on a Dask cluster: its scheduler address (tcp://host:8786), or "
            "'local' for a LocalCluster of this machine.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run beside the SEM: stitch, segment, calibrate and catalogue live; resume when re-run."""
    import signal

    from semlive.acquisition import default_store
    from semlive.pipeline import Pipeline, open_executor
    from semlive.settings import load_settings

    settings = load_settings(config)
    _configure_logging(settings.log.level if headless else "warning")
    target = store if store is not None else default_store(session)
    executor = open_executor(dask)
    show, dashboard = _status_view(headless)
    pipeline = Pipeline(session, target, settings, executor, on_status=show)
    terminated: list[int] = []

    def terminate(*_: Any) -> None:
        terminated.append(1)
        pipeline.stop.set()

    signal.signal(signal.SIGTERM, terminate)
    try:
        result = _run_viewed(pipeline, dashboard, exit_when_done)
    except KeyboardInterrupt:
        pipeline.stop.set()
        if pipeline.finished:
            typer.echo(f"session finished; store: {target}", err=True)
            raise typer.Exit(0) from None
        typer.echo(
            f"stopped; what was done is kept in {target} — run the same command again to resume",
            err=True,
        )
        raise typer.Exit(130) from None
    if result.finished:
        typer.echo(f"session finished; store: {target}", err=headless)
        if result.report:
            typer.echo(f"report (opens offline in a browser): {result.report}", err=headless)
        else:
            typer.echo("no catalogue: no olivine model could be trained", err=headless)
    elif pipeline.stop.is_set():
        typer.echo(f"stopped; run the same command again to resume ({target})", err=headless)
    if terminated:
        raise typer.Exit(143)


@app.command("evaluate")
def evaluate_command(
    store: Annotated[
        Path, typer.Argument(help="A store folder (SESSION.semlive).", show_default=False)
    ],
    truth: Annotated[
        Path,
        typer.Option(
            help="The simulated session's ground truth (SESSION/_truth).", show_default=False
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Score a store against a simulated session's truth: olivine, mg#, placement, crystals,
    GDLS."""
    import json

    from semlive.pipeline import evaluate_store
    from semlive.settings import load_settings

    settings = load_settings(config)
    _configure_logging(settings.log.level)
    scores = evaluate_store(store, truth, settings)
    if as_json:
        typer.echo(json.dumps(scores, indent=2, default=float))
        return
    for line in scores["summary"]:
        typer.echo(line)


@app.command("status")
def status_command(
    store: Annotated[
        Path, typer.Argument(help="A store folder (SESSION.semlive).", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Report what the store knows: files, tiles, quarantine, stitching, drift, mg#, and the
    live run's status (everything its dashboard shows, with --json)."""
    import json

    from semlive.acquisition import Ledger, status_of
    from semlive.calibration import calibration_status
    from semlive.errors import InputDataError

    if not (store / "ledger.sqlite").is_file():
        raise InputDataError(
            f"{store} has no ledger.sqlite; expected a store written by "
            "semlive ingest or semlive run",
            path=store,
        )
    ledger = Ledger(store / "ledger.sqlite")
    try:
        status = status_of(ledger)
        calibration = calibration_status(store, ledger)
    finally:
        ledger.close()
    if calibration is not None:
        status.update(calibration)
    live = store / "status.json"  # what semlive run last knew (the dashboard's status)
    if live.is_file():
        try:
            status["pipeline"] = json.loads(live.read_text(encoding="utf-8"))
        except ValueError:
            status["pipeline"] = None  # being replaced at this moment: the next call reads it
    if as_json:
        typer.echo(json.dumps(status, indent=2))
        return
    files = status["files"]
    typer.echo(
        ", ".join(f"{n} {state}" for state, n in files.items())
        + f"; {status['tiles_ready']} tiles ready"
        + ("; DONE" if status["done"] else "")
    )
    for entry in status["quarantined"]:
        typer.echo(f"quarantined {entry['path']}: {entry['reason']}")
    if "stitching" in status:
        st = status["stitching"]
        typer.echo(
            f"stitching: {st['tiles_placed']} tiles placed ({st['tiles_from_stage_model']} from "
            f"the stage model), {st['pairs_accepted']} pairs accepted, {st['pairs_rejected']} "
            f"rejected, worst residual {st['worst_residual_px']:.2f} px"
        )
    if "drift" in status:
        drift = status["drift"]
        typer.echo(
            f"drift: {drift['mode']}; {drift['standards_measured']} standard measurements, "
            f"{drift['alerts']} outside the control limits"
        )
    if "mgnumber" in status:
        mg = status["mgnumber"]
        if mg["refused"]:
            typer.echo(f"mg# calibration refused: {mg['refused']}")
        else:
            test = mg["test"] or mg["train"]
            typer.echo(
                f"mg# = {mg['slope']:.4e}·BSE + {mg['intercept']:.4f}; RMSE {test['rmse']:.4f} "
                f"({'held-out' if mg['test'] else 'training'} profiles)"
            )
    run = status.get("pipeline")
    if run:
        session, seg = run["session"], run["segmentation"]
        state = "finished" if session["finished"] else "running or stopped"
        model = seg["model"]
        typer.echo(
            f"semlive run ({state}, status of {run['at']}): {seg['regions_segmented']} of "
            f"{seg['regions_complete']} regions segmented"
            + ("" if model is None else f" by a model of validation IoU {model['val_iou']:.3f}")
        )
        if run.get("advice"):
            typer.echo(f"advice: {run['advice']['message']}")
        if run.get("export"):
            typer.echo(f"report: {run['export']['report']}")


# the demo's training: a few short epochs, so the whole demo ends in minutes on a laptop CPU
# (semlive run trains longer by default; the report says which settings made the model)
_DEMO_SETTINGS = {
    "acquisition.observer": "polling",
    "acquisition.poll_interval_s": 0.1,
    "olivine.epochs": 5,
    "olivine.patches_per_epoch": 48,
    "olivine.patch_px": 192,
    "pipeline.train_first_eds_tiles": 5,
    "pipeline.catalogue_interval_s": 10.0,
}


@app.command("demo")
def demo_command(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the demo session (default: a new temporary folder); its store is "
            "written beside it.",
            show_default=False,
        ),
    ] = None,
    speed: Annotated[float, typer.Option(help="The virtual SEM's speed (times real time).")] = 60.0,
    headless: Annotated[
        bool, typer.Option("--headless", help="No dashboard: JSON status lines instead.")
    ] = False,
) -> None:
    """Simulate a small SEM session and run semlive beside it, dashboard on, to the report."""
    import tempfile
    import threading
    import time

    from semlive.acquisition import default_store
    from semlive.pipeline import Pipeline, evaluate_store
    from semlive.settings import load_settings
    from semlive.virtual_sem import simulate

    target = out if out is not None else Path(tempfile.mkdtemp(prefix="semlive-demo-")) / "session"
    store = default_store(target)
    failure: list[BaseException] = []
    stop = threading.Event()  # the pipeline's, set when the virtual SEM fails

    def scan() -> None:
        try:
            simulate(target, "small", seed=0, speed=speed)
        except BaseException as exc:  # reported after the run
            failure.append(exc)
            stop.set()

    microscope = threading.Thread(target=scan, name="virtual-sem", daemon=True)
    if (target / "DONE").is_file():
        typer.echo(f"{target} holds a finished session: semlive runs on it (resuming {store})")
    else:
        typer.echo(
            f"the virtual SEM scans a small session into {target} at {speed:g}× real time; "
            f"semlive runs beside it into {store} (Ctrl-C stops; semlive run {target} resumes)"
        )
        microscope.start()
    settings = load_settings(None, overrides=_DEMO_SETTINGS)
    _configure_logging("warning")
    while not (target / "session.json").is_file() and microscope.is_alive():
        time.sleep(0.2)
    if failure:
        raise failure[0]
    show, dashboard = _status_view(headless)
    pipeline = Pipeline(target, store, settings, on_status=show)
    pipeline.stop = stop
    try:
        result = _run_viewed(pipeline, dashboard, True)
    except KeyboardInterrupt:
        pipeline.stop.set()
        typer.echo(f"stopped; semlive run {target} resumes it", err=True)
        raise typer.Exit(130) from None
    if failure:
        raise failure[0]
    scores = evaluate_store(store, target / "_truth", settings)
    typer.echo("against the virtual SEM's ground truth:")
    for line in scores["summary"]:
        typer.echo(f"  {line}")
    typer.echo(f"store: {store}")
    if result.report:
        typer.echo(f"report (opens offline in a browser): {result.report}")


def _configure_logging(level: str) -> None:
    """Log to stderr at ``level`` moved by -v/-q (one step each)."""
    index = min(max(_LEVELS.index(level) - _verbosity, 0), len(_LEVELS) - 1)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", force=True
    )
    logging.getLogger().setLevel(_LEVELS[index].upper())


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` and return the exit code instead of exiting."""
    args = sys.argv[1:] if argv is None else argv
    try:
        result = app(args=args, prog_name="semlive", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("semlive: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            print(f"semlive: error: {exc}", file=sys.stderr)
        return 2
    except SemliveError as exc:
        _report(exc, f"semlive: error: {exc}")
        return exit_code_for(exc)
    except Exception as exc:
        _report(exc, f"semlive: internal error: {type(exc).__name__}: {exc} (-v shows where)")
        return 1
    return result if isinstance(result, int) else 0


def _report(exc: BaseException, line: str) -> None:
    if _verbosity > 0:
        traceback.print_exception(exc, file=sys.stderr)
    print(line, file=sys.stderr)


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
