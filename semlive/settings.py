"""One typed schema for all of semlive's configuration.

Values are layered: the schema's defaults, then a TOML file (``--config FILE``), then
``SEMLIVE_*`` environment variables (``SEMLIVE_LOG__LEVEL=debug`` sets ``log.level``; a double
underscore separates a section from its field), then command-line flags. A value outside the
schema is refused with a :class:`~semlive.errors.ConfigError` naming the field, the value, where
it came from and what is allowed.

``config/semlive.toml`` documents every field with its default; it is :func:`render_toml` of the
defaults, and a test keeps the two identical.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from semlive.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "AcquisitionSettings",
    "CalibrationSettings",
    "CatalogueSettings",
    "LogSettings",
    "OlivineSettings",
    "PipelineSettings",
    "Settings",
    "StreamingSettings",
    "format_non_defaults",
    "load_settings",
    "render_toml",
]

ENV_PREFIX = "SEMLIVE_"
_ENV_NESTING = "__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class LogSettings(_Section):
    """How much semlive reports while it runs."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="Lowest severity of log messages shown on the terminal; -v and -q on the "
        "command line lower or raise it by one step.",
    )


class AcquisitionSettings(_Section):
    """How the session folder is watched and which files are accepted."""

    observer: Literal["auto", "polling"] = Field(
        "auto",
        description="auto: file-system events (inotify and the like) wake the scanner, with "
        "periodic rescans as the safety net; polling: rescans only (network shares, where "
        "events do not arrive).",
    )
    poll_interval_s: float = Field(
        1.0, ge=0.01, le=60.0, description="Seconds between rescans of the session folder."
    )
    settle_polls: int = Field(
        2,
        ge=1,
        le=100,
        description="Rescans a file's size and modification time must stay unchanged before it "
        "is read, when no close-after-write or rename event said it is complete.",
    )
    parse_retries: int = Field(
        3,
        ge=1,
        le=100,
        description="Failed reads of a settled, unchanged file before it is quarantined.",
    )
    quarantine_after_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds a file must stay unchanged, besides failing parse_retries reads, "
        "before it is quarantined; a write that stalls (network shares) is not a broken file.",
    )
    max_image_pixels: int = Field(
        200_000_000,
        ge=1,
        description="Largest image accepted, in pixels per page; larger ones are refused "
        "before decoding.",
    )
    max_spectra_values: int = Field(
        2_000_000_000,
        ge=1,
        description="Largest spectra batch accepted, in spectra × channels; larger ones are "
        "refused before decoding.",
    )


class StreamingSettings(_Section):
    """Stitching the tiles into the mosaic while the session runs."""

    max_shift_um: float = Field(
        32.0,
        gt=0,
        le=1000,
        description="Largest difference (µm) between two neighbouring tiles' stage errors: "
        "the search range of registration (stage repeatability between neighbours).",
    )
    min_overlap_px: int = Field(
        2000, ge=16, description="Fewest overlapping pixels a pair must share to be registered."
    )
    resolve_every: int = Field(
        16, ge=1, description="Tiles between global re-solves of all placements."
    )
    max_residual_px: float = Field(
        1.0,
        gt=0,
        description="A pair whose shift disagrees with the global solution by more than this "
        "(px) is dropped as inconsistent, worst first.",
    )
    region_chunks: int = Field(
        2, ge=1, le=16, description="Side of a region in mosaic chunks (512 px each)."
    )
    halo_px: int = Field(
        64,
        ge=0,
        description="Context (px) around a region that must be placed before it is "
        "complete (models need context at region borders).",
    )
    flush_interval_s: float = Field(
        5.0,
        ge=0,
        description="Seconds between updates of the live mosaic with the tiles placed since "
        "(0: after every tile). Regions are always written before they are announced.",
    )
    tile_cache: int = Field(
        96,
        ge=8,
        description="Decoded tiles kept in memory; others are re-read from the "
        "session folder (the raw tiles are the source of truth).",
    )


class CalibrationSettings(_Section):
    """Drift correction against standards, and the BSE → olivine mg# regression."""

    drift_limit: float = Field(
        0.01,
        gt=0,
        le=0.5,
        description="Control limit: a standard reading further than this fraction from its "
        "reference raises a drift alert (tiles are corrected either way).",
    )
    round_gap_h: float = Field(
        0.5,
        gt=0,
        description="Standard measurements closer than this (hours) form one round.",
    )
    reference_store: str = Field(
        "",
        description="Store of the first session of the same sample, whose standards set the "
        "reference levels when session.json declares none (empty: this session's first round).",
    )
    holdout_fraction: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="Share of the EPMA profiles kept out of the mg# fit to test it.",
    )
    epma_search_um: float = Field(
        10.0,
        gt=0,
        le=100,
        description="Largest offset (µm) between EPMA and SEM stage coordinates searched "
        "when the profiles are registered to the mosaic.",
    )
    lof_neighbours: int = Field(
        20,
        ge=5,
        description="Neighbours of the LocalOutlierFactor that removes cracks and holes "
        "(in row, column, BSE).",
    )
    mg_range: tuple[float, float] = Field(
        (0.5, 1.0),
        description="Plausible olivine mg#: a fit predicting outside it over the observed BSE "
        "range is refused.",
    )


class OlivineSettings(_Section):
    """Olivine segmentation: EDS-rule labels, training the network and segmenting the mosaic."""

    ca_mg_max: float = Field(
        0.1, gt=0, description="EDS label rule: olivine where Ca/Mg net counts are below this."
    )
    al_mg_max: float = Field(
        0.1, gt=0, description="EDS label rule: olivine where Al/Mg net counts are below this."
    )
    mg_min_counts: float = Field(
        20.0,
        ge=0,
        description="EDS label rule: olivine only where Mg net counts per pixel exceed this (at "
        "reference EDS sensitivity; scaled by the drift factor when standards give one).",
    )
    refine_px: int = Field(
        2,
        ge=0,
        le=8,
        description="Training labels: grow the EDS-rule olivine up to this many pixels onto the "
        "crystal edges the BSE image shows, since the X-ray volume is wider than the BSE one and "
        "rule labels lose a rim of every crystal, and clear cracks they bridge (on the virtual "
        "SEM the labels' IoU against the truth goes from 0.888 to 0.959); 0 keeps the raw rule.",
    )
    arch: str = Field(
        "auto",
        description="Network to train (semlive train --arch): deeplabv3plus_mobilenet_v3_large, "
        "deeplabv3plus_resnet50, deeplabv3_mobilenet_v3_large or deeplabv3_resnet50 (the "
        "paper's); auto: DeepLabV3+ with ResNet-50 on a GPU, with MobileNetV3-Large on a CPU.",
    )
    init_weights: str = Field(
        "",
        description="Optional torchvision-format weights file (.safetensors or a state-dict "
        ".pth) to start training from; nothing is ever downloaded.",
    )
    epochs: int = Field(40, ge=1, le=10_000, description="Most training epochs.")
    patience: int = Field(
        0,
        ge=0,
        description="Early stopping: stop after this many epochs without a lower validation "
        "loss and keep the epoch of the lowest; 0: no early stopping, the whole schedule runs "
        "and the last epoch's weights are kept (the learning rate annealed to its floor: on a "
        "few validation tiles the lowest loss is noisy and often falls early, at a high learning "
        "rate, and such a model segments unseen tiles worse).",
    )
    refit_epochs: int = Field(
        2,
        ge=0,
        description="Once dlth, the outline and the crystal check are chosen on the validation "
        "tiles, train the network this many more epochs on all EDS tiles, validation tiles "
        "included, at a quarter of the learning rate, and keep that network (with few EDS "
        "tiles, a composition only the validation tiles hold is otherwise never learnt); 0: "
        "keep the network that never saw the validation tiles.",
    )
    batch_size: int = Field(8, ge=1, description="Training patches per step.")
    micro_batch: int = Field(
        4,
        ge=0,
        description="Training: patches per forward and backward pass (about; never a pass of "
        "one); a step's batch is split into passes whose gradients add up. Activations, a "
        "training's largest memory, scale with it (on a CPU, 256² patches: 1.4 GB for 8, 1.0 GB "
        "for 4). It changes the training a little, not only its memory: batch norm normalises "
        "each pass by its own patches, and the Dice term is per pass; 0: the whole batch in one "
        "pass.",
    )
    patch_px: int = Field(
        256, ge=64, le=2048, description="Side of the square training patches (px)."
    )
    patches_per_epoch: int = Field(
        192, ge=1, description="Random training patches drawn per epoch."
    )
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    validation_fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Share of the EDS-labelled tiles held out for validation, by spatial blocks.",
    )
    block_tiles: int = Field(
        2,
        ge=1,
        description="Side of the spatial blocks (in grid tiles) that are split between training "
        "and validation; pixels of validation tiles are never trained on.",
    )
    min_labelled_px: int = Field(
        200_000, ge=1, description="Fewest EDS-labelled training pixels needed to train."
    )
    min_olivine_px: int = Field(
        2_000, ge=1, description="Fewest olivine pixels among them needed to train."
    )
    augment_gain: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="Training augmentation: BSE multiplied by a random gain within ±this. "
        "Calibration corrects the BSE drift against the standards, so this covers what is left "
        "of it; a wide range (the paper's 0.1, for uncorrected session shifts) hides the grey "
        "level that tells olivine from clinopyroxene.",
    )
    augment_offset_dn: float = Field(
        300.0,
        ge=0,
        description="Training augmentation: a random BSE offset within ±this (DN).",
    )
    dlth: float | Literal["auto"] = Field(
        "auto",
        description="Probability above which a pixel is olivine; auto: the threshold that "
        "maximises IoU on the validation tiles (the paper fixed 0.1).",
    )
    outline_low: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="After dlth, grow each predicted crystal to the edges the BSE image shows, "
        "over pixels of at least this probability (the network often finds only the part of a "
        "crystal whose grey it trusts); kept in the model's card (its crystal check is chosen "
        "on the grown crystals); 0: no growing, the thresholded mask as it is.",
    )
    outline_snap: bool = Field(
        True,
        description="After the crystal check, draw each crystal's edges by the local grey levels "
        "inside and outside it (as the EDS labels' edges are drawn: the network sees edges only "
        "at its coarser stride) and clear its cracks and holes, unless that cuts a crystal in "
        "two; kept in the model's card.",
    )
    outline_fill: bool = Field(
        True,
        description="With outline_snap, fill each crystal's holes whose edge shows no step in "
        "grey (a zoned core of a composition the network did not learn; resin, spinel and glass "
        "step by several times the noise and stay out); kept in the model's card.",
    )
    crystal_check: bool = Field(
        True,
        description="After dlth, drop predicted crystals whose interior BSE is flat and whose "
        "interior mean grey lies in the band of the session's clinopyroxene (it looks like "
        "olivine pixel by pixel, but is not zoned and fills a narrower band of grey); the "
        "flatness threshold and the band are chosen on the EDS tiles, from the network's "
        "crystals and the clinopyroxene the EDS rules find there, and the check stays off where "
        "it does not raise the IoU against their labels.",
    )
    grey_landmarks: bool = Field(
        True,
        description="Before segmenting, compare the mosaic's grey landmarks (the two highest "
        "well-separated modes of its BSE histogram: resin, groundmass) with the model's "
        "training tiles'; where they differ by more than landmark_tolerance_dn (the drift "
        "correction missing or wrong, e.g. a model from another session and no standards), map "
        "the mosaic's grey onto the training scale and say so (semlive segment; semlive run "
        "never maps).",
    )
    landmark_tolerance_dn: float = Field(
        150.0,
        gt=0,
        description="The mosaic is on the training scale where it has modes this close (DN) to "
        "both training landmarks, and is mapped only where the landmarks' gain and offset move "
        "a grey level (a landmark, or the training tiles' mean) further: above what the drift "
        "correction leaves (about 10 DN between sessions on the virtual SEM).",
    )
    window_px: int = Field(
        1024, ge=64, le=4096, description="Side of the sliding inference windows (px)."
    )
    overlap_px: int = Field(
        128,
        ge=0,
        description="Overlap of neighbouring inference windows (px); their probabilities are "
        "averaged, weighted toward window centres.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the network runs; auto: CUDA when available, else the CPU."
    )
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Inference arithmetic; auto: bfloat16 autocast on CUDA and on a CPU that "
        "computes bfloat16 natively (AVX512-BF16, AMX: twice float32's speed there, with the "
        "batch norms folded into the convolutions), float32 on other CPUs.",
    )
    views: Literal["auto", 1, 2, 4] = Field(
        "auto",
        description="Views of each inference window the network is run on, their probabilities "
        "averaged: 1 (as it is), 2 (and turned 180°) or 4 (and turned 90°, 180°, 270°). One "
        "view's errors are partly its own (on small seeds 0-4, unseen-tile IoU moved by up to 2 "
        "points from one view to another), so averaging raises the IoU; each view costs one "
        "more network pass. auto: 4 on CUDA, 2 on a CPU with bfloat16, 1 on other CPUs (about "
        "the time one float32 view took). Training fits dlth and the crystal check on the same "
        "views.",
    )
    seed: int = Field(0, ge=0, description="Seed of the split, the patches and the weights.")


class CatalogueSettings(_Section):
    """How olivine crystals are delimited, measured, typed and exported (Leichter et al. 2022)."""

    min_area_um2: float = Field(
        100.0,
        ge=0,
        description="Crystals of this area (µm², inside the outer outline) or less are not listed.",
    )
    microphenocryst_um2: float = Field(
        1_000.0, gt=0, description="Smallest area (µm², exclusive) of a microphenocryst."
    )
    phenocryst_um2: float = Field(
        10_000.0, gt=0, description="Smallest area (µm², exclusive) of a phenocryst."
    )
    rim_exclusion_px: float = Field(
        2.0,
        ge=0,
        description="b: the outer band (px) left out of the rim, where BSE and the mask blur.",
    )
    inner_margin_px: float = Field(
        3.0,
        ge=0,
        description="Pixels this close to a crack, hole or inclusion inside a crystal are left "
        "out of its BSE and mg# means (both mix across the gap).",
    )
    neck_ratio: float = Field(
        0.7,
        gt=0,
        description="Touching crystals are split where the outline pinches to a neck shorter "
        "than this times the width of the thinner crystal (smaller: fewer splits).",
    )
    normal_below: float = Field(
        0.96,
        gt=0,
        description="Phenocrysts with a core/rim BSE ratio below this are normally zoned.",
    )
    reverse_above: float = Field(
        1.04,
        gt=0,
        description="Phenocrysts with a core/rim BSE ratio above this are reversely zoned.",
    )
    black_level_dn: float | Literal["auto"] = Field(
        "auto",
        description="BSE signal of empty resin (vesicles, holes, cracks), subtracted before the "
        "core/rim ratio; auto: the median of the darkest 0.5 % of the scanned pixels.",
    )
    block_px: int = Field(
        4096,
        ge=512,
        multiple_of=512,
        description="Side of the blocks the mosaic is labelled in (memory grows with its square).",
    )
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="Processes that label, measure and write blocks in parallel (each holds one "
        "block); auto: the available cores, at most 4.",
    )
    crops: bool = Field(
        True, description="Write an image of every crystal (crops/<class>[-<zoning>]/<id>.png)."
    )

    @field_validator("phenocryst_um2", "reverse_above")
    @classmethod
    def _above_the_lower_bound(cls, value: float, info: ValidationInfo) -> float:
        lower = {"phenocryst_um2": "microphenocryst_um2", "reverse_above": "normal_below"}
        name = lower[str(info.field_name)]
        if name in info.data and value <= info.data[name]:
            raise ValueError(f"a value above {name} = {info.data[name]}")
        return value


class PipelineSettings(_Section):
    """The live session (semlive run): when to train, how much work may wait, what to show."""

    train_first_eds_tiles: int = Field(
        4,
        ge=1,
        description="Train the first olivine model once this many EDS-mapped tiles are stitched.",
    )
    retrain_growth: float = Field(
        2.0,
        gt=1.0,
        description="Train again once the EDS-mapped tiles have grown by this factor since the "
        "last training (and once more at the end on all of them). A new model replaces the one "
        "in use only if it segments the validation tiles that one did not train on better.",
    )
    replay_live: bool = Field(
        False,
        description="A session already finished when semlive run starts (DONE in its folder) "
        "is trained once, at the end, since the final model segments every region again; true: "
        "train as the EDS tiles come, as during acquisition (slower; for demos and tests).",
    )
    start_model: str = Field(
        "",
        description="A trained olivine model (a folder with weights.safetensors and card.json, "
        "e.g. STORE/models/olivine of an earlier session of the sample) to segment with from "
        "the first tile, until this session trains one that segments its EDS tiles better; "
        "empty: wait for EDS tiles.",
    )
    max_pending_jobs: int = Field(
        16,
        ge=1,
        description="Jobs that may wait for a worker; beyond it stitching pauses (backpressure) "
        "and the SEM's files wait in the session folder.",
    )
    event_queue: int = Field(
        64, ge=1, description="Stitching events that may wait for the pipeline (backpressure)."
    )
    status_interval_s: float = Field(
        1.0,
        gt=0,
        description="How often the status (STORE/status.json, --headless lines) is written.",
    )
    catalogue_interval_s: float = Field(
        60.0, ge=0, description="Recount the live catalogue at most this often (s)."
    )
    gdls: bool = Field(True, description="Segment spectra fields with GDLS where they arrive.")
    advice: bool = Field(
        True,
        description="Training-area advice: after each training, train again on a quarter and a "
        "half of its tiles to fit the learning curve (costs two more trainings; see also "
        "advice_every).",
    )
    advice_every: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Training-area advice: also advise between trainings, each time the "
        "EDS-mapped tiles have grown by this share of the planned tiles, until the advice is "
        "'enough' (three trainings each: a quarter, a half and all of the tiles; the advice "
        "is then as fine as this); 0: only after each training.",
    )
    advice_noise_iou: float = Field(
        0.01,
        gt=0,
        description="Training-area advice: how much the validation IoU of a retrained network "
        "scatters (the learning curve's uncertainty is at least this).",
    )
    advice_target_gain: float = Field(
        0.01,
        gt=0,
        description="Training-area advice: 'enough' once doubling the labelled area is predicted "
        "to gain less than this IoU.",
    )


class Settings(_Section):
    """All of semlive's configuration, one section per part of the data flow."""

    log: LogSettings = Field(LogSettings(), description="Logging.")
    acquisition: AcquisitionSettings = Field(
        AcquisitionSettings(), description="Watching the session folder and reading its files."
    )
    streaming: StreamingSettings = Field(
        StreamingSettings(), description="Stitching the mosaic while the session runs."
    )
    calibration: CalibrationSettings = Field(
        CalibrationSettings(),
        description="Drift correction against standards and the BSE → mg# regression.",
    )
    olivine: OlivineSettings = Field(
        OlivineSettings(),
        description="Olivine segmentation: EDS-rule labels, training, sliding-window inference.",
    )
    catalogue: CatalogueSettings = Field(
        CatalogueSettings(),
        description="The crystal catalogue: instances, sizes, zoning, mg#, exports.",
    )
    pipeline: PipelineSettings = Field(
        PipelineSettings(),
        description="The live session (semlive run): training, backpressure, status.",
    )

    def non_defaults(self) -> dict[str, Any]:
        """The fields that differ from their defaults, nested by section (for printing)."""
        return _diff(self.model_dump(), Settings().model_dump())


def load_settings(
    config_file: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, a TOML file, the environment and flag overrides.

    ``overrides`` maps dotted field paths (``"log.level"``) to values from command-line flags.
    ``environ`` defaults to :data:`os.environ`.
    """
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        _merge(merged, _read_toml(path), sources, f"config file {path}")
    env = os.environ if environ is None else environ
    for name, raw in sorted(env.items()):
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX) :].lower().replace(_ENV_NESTING, ".")
            _merge(merged, _nest(dotted, _parse_env_value(raw)), sources, f"environment {name}")
    for dotted, value in (overrides or {}).items():
        _merge(merged, _nest(dotted, value), sources, "command line")
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc, merged, sources) from None


def render_toml(settings: Settings | None = None) -> str:
    """The settings as a commented TOML document: every section and field with its description."""
    settings = Settings() if settings is None else settings
    lines = [
        "# semlive configuration: every field with its default value.",
        "# Layering: these defaults < this file (--config FILE) < SEMLIVE_<SECTION>__<FIELD>",
        "# environment variables < command-line flags. Regenerate: semlive config --defaults",
    ]
    for section_name, section_field in Settings.model_fields.items():
        section = getattr(settings, section_name)
        lines += ["", f"[{section_name}]", f"# {section_field.description}"]
        for name, field in type(section).model_fields.items():
            lines += [f"# {line}" for line in _wrap(field.description or "")]
            lines.append(f"{name} = {_toml_value(getattr(section, name))}")
    return "\n".join(lines) + "\n"


def format_non_defaults(settings: Settings) -> str:
    """The fields that differ from their defaults, as TOML (empty when all are defaults)."""
    blocks = []
    for section, fields in settings.non_defaults().items():
        body = "\n".join(f"{name} = {_toml_value(value)}" for name, value in fields.items())
        blocks.append(f"[{section}]\n{body}\n")
    return "\n".join(blocks)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the configuration file {path}: {exc.strerror}; "
            "expected a readable TOML file — check the path given to --config",
            path=path,
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"the configuration file {path} is not valid TOML ({exc}); "
            "fix the line named, or compare with config/semlive.toml",
            path=path,
        ) from None


def _parse_env_value(raw: str) -> Any:
    """Read an environment value as a TOML value where it is one (``4``, ``true``), else text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    keys = dotted.split(".")
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return nested


def _merge(
    into: dict[str, Any],
    new: Mapping[str, Any],
    sources: dict[str, str],
    source: str,
    prefix: str = "",
) -> None:
    for key, value in new.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key, {}), dict):
            _merge(into.setdefault(key, {}), value, sources, source, f"{path}.")
        else:
            into[key] = value
            sources[path] = source


def _config_error(
    exc: ValidationError, merged: Mapping[str, Any], sources: Mapping[str, str]
) -> ConfigError:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    source = sources.get(field, "defaults")
    if error["type"] == "extra_forbidden":
        parent_model = _model_at(error["loc"][:-1])
        valid = list(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(str(error["loc"][-1]), valid, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        message = (
            f"unknown setting {field!r} (from {source}); valid names here: {', '.join(valid)}{hint}"
        )
    else:
        message = (
            f"setting {field} = {error['input']!r} (from {source}) is not allowed: "
            f"{error['msg'].replace('Input should be', 'expected')}; set an allowed value"
        )
    return ConfigError(message, field=field, expected=error["msg"], got=error.get("input"))


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _diff(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            sub = _diff(value, defaults[key])
            if sub:
                out[key] = sub
        elif value != defaults[key]:
            out[key] = value
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _wrap(text: str, width: int = 96) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines
