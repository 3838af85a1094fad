"""Training the olivine network on EDS-labelled tiles.

Random patches (a third centred on olivine, a third on look-alikes such as clinopyroxene) with
online augmentation: rot90, flips, and a random BSE gain and offset (the fix Leichter et al.
2022 propose for session-to-session shifts; narrow by default, since calibration corrects the
drift and a wide range hides the grey level that tells olivine from clinopyroxene). Pixel-wise
binary cross-entropy plus soft Dice over labelled pixels, each step's patches in passes of
``micro_batch`` (a step's memory), AdamW with a cosine schedule whose last epoch's weights are
kept (or, with ``patience``, early stopping on the validation loss and the best epoch's). The
threshold ``dlth`` is chosen on the validation tiles and stored with the model. Each epoch
leaves a resumable state in ``models/<name>/training/``; every random draw comes from the seed
and the epoch number, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from semlive.errors import InputDataError
from semlive.models._checkpoint import ModelCard, Normalisation, load_model, save_model
from semlive.models._device import Runtime, choose_runtime
from semlive.models._metrics import Confusion, confusion
from semlive.models._networks import build_network, load_initial_weights
from semlive.settings import OlivineSettings

from ._check import MIN_GAIN, CheckFit, CrystalCheck, prepare
from ._data import IGNORE, LOOKALIKE, LabelledTile, TrainingData, load_training_data
from ._landmarks import grey_landmarks
from ._outline import FILL_SIGMAS, SNAP_SIGMA_PX, Outline
from ._rules import rule_thresholds
from ._segment import inference_views, view_averaged

__all__ = [
    "FittedSegmentation",
    "TrainProgress",
    "default_architecture",
    "fit_segmentation",
    "score_model",
    "train_olivine",
]

logger = logging.getLogger(__name__)

_STRIDE = 32  # inputs padded to a multiple of the networks' total stride
_PRECISE_BN_BATCHES = 8
_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)  # dlth candidates
_REFIT_LEARNING_RATE = 0.25  # of olivine.learning_rate
_REFIT_SEED = 1000  # the refit's epochs draw from (seed, 1000 + epoch): not the first epochs'


@dataclass(frozen=True, slots=True)
class TrainProgress:
    epoch: int
    epochs: int
    step: int
    steps: int
    train_loss: float
    val_loss: float | None = None
    best_val_loss: float | None = None


def default_architecture(settings: OlivineSettings, runtime: Runtime) -> str:
    if settings.arch != "auto":
        return settings.arch
    if runtime.device.type == "cuda":
        return "deeplabv3plus_resnet50"
    return "deeplabv3plus_mobilenet_v3_large"


def train_olivine(
    store: Path,
    settings: OlivineSettings,
    name: str = "olivine",
    progress: Callable[[TrainProgress], None] | None = None,
    resume: bool = True,
    data: TrainingData | None = None,
) -> ModelCard:
    """Train (or resume training) ``STORE/models/<name>`` from the store's EDS tiles
    (``data``: those tiles already loaded by :func:`load_training_data`)."""
    if data is None:
        data = load_training_data(store, settings)
    runtime = choose_runtime(settings.device, "float32")
    arch = default_architecture(settings, runtime)
    folder = store / "models" / name
    norm = _normalisation(data.train)
    sample = _Sampler(data.train, _patch_side(data.train, settings), settings)
    torch.manual_seed(settings.seed)
    model = build_network(arch)
    if settings.init_weights:
        load_initial_weights(model, arch, Path(settings.init_weights))
    model = runtime.prepare(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    state = _TrainingState(folder / "training")
    history: list[dict[str, float]] = []
    start = 0
    if resume and state.exists():
        start, history = state.load(model, optimiser, arch, norm, runtime)
        logger.info("resuming %s at epoch %d", folder, start + 1)
    else:  # an earlier run's lowest-loss weights are not this run's
        shutil.rmtree(folder / "training" / "best", ignore_errors=True)
    best = min((h["val_loss"] for h in history), default=float("inf"))
    bad_epochs = _epochs_since_best(history)
    early_stopping = settings.patience > 0
    for epoch in range(start, settings.epochs):
        if early_stopping and bad_epochs >= settings.patience:
            break
        started = time.perf_counter()
        rng = _seeded(settings.seed, epoch)
        loss, seen = _train_epoch(
            model, optimiser, sample, norm, settings, runtime, rng, epoch, progress
        )
        val_loss, probabilities = _validate(model, data.validation, norm, runtime)
        iou = _agreement(probabilities, data.validation, 0.5).iou
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss,
                "val_loss": val_loss,
                "val_iou": iou,
                "seconds": round(time.perf_counter() - started, 2),
                "pixels": seen,
            }
        )
        logger.info(
            "epoch %d: loss %.4f, validation loss %.4f, IoU %.3f", epoch + 1, loss, val_loss, iou
        )
        if val_loss < best:
            best, bad_epochs = val_loss, 0
            if early_stopping:
                best_card = _card(arch, norm, 0.5, data, settings, {"epoch": epoch + 1})
                save_model(folder / "training" / "best", model, best_card)
        else:
            bad_epochs += 1
        state.save(model, optimiser, epoch + 1, history, arch, norm)
        if progress is not None:
            steps = max(1, settings.patches_per_epoch // settings.batch_size)
            progress(TrainProgress(epoch + 1, settings.epochs, steps, steps, loss, val_loss, best))
    # over every epoch run, a resumed run's earlier ones too (older states lack the figures)
    elapsed = sum(float(h.get("seconds", 0.0)) for h in history)
    pixels = sum(int(h.get("pixels", 0)) for h in history)
    final, kept = _kept_model(model, folder, arch, norm, runtime, history, early_stopping)
    fitted = fit_segmentation(final, data, norm, settings, runtime)
    metrics = fitted.metrics
    metrics["history"] = history
    metrics["best_val_loss"] = best
    metrics["kept"] = kept
    training = {
        "epochs_run": len(history),
        "seconds": round(elapsed, 1),
        "train_mpx_per_s": round(pixels / max(elapsed, 1e-9) / 1e6, 4) if pixels else None,
        "device": runtime.device.type,
        "patch_px": settings.patch_px,
        "batch_size": settings.batch_size,
        "micro_batch": settings.micro_batch,
        "learning_rate": settings.learning_rate,
        "seed": settings.seed,
        "augment_gain": settings.augment_gain,
        "augment_offset_dn": settings.augment_offset_dn,
        "refine_px": settings.refine_px,
        "init_weights": settings.init_weights,
        "views": fitted.views,
    }
    landmarks = grey_landmarks(t.bse for t in data.train)
    card = _card(
        arch,
        norm,
        fitted.dlth,
        data,
        settings,
        metrics,
        training,
        fitted.check,
        landmarks,
        fitted.outline,
    )
    held_out = folder / "training" / "held_out"
    shutil.rmtree(held_out, ignore_errors=True)  # an earlier run's
    if settings.refit_epochs:
        # the network whose figures the card gives, kept for comparisons on validation tiles
        save_model(held_out, final, card)
        final, refit = _refit(final, arch, data, norm, settings, runtime, folder, progress)
        card = replace(
            card,
            training_tiles=[t.name for t in [*data.train, *data.validation]],
            metrics={**card.metrics, "refit": refit},
        )
    save_model(folder, final, card)
    return card


@dataclass(frozen=True, slots=True)
class FittedSegmentation:
    """What segmenting needs beside a network's weights, fitted on the EDS tiles."""

    dlth: float
    outline: Outline
    check: CrystalCheck
    metrics: dict[str, Any]  # the validation figures at dlth, the check's fit
    views: int  # the views the probabilities were averaged over


def fit_segmentation(
    model: nn.Module,
    data: TrainingData,
    norm: Normalisation,
    settings: OlivineSettings,
    runtime: Runtime,
) -> FittedSegmentation:
    """dlth, the outline and the crystal check for a trained ``model``, as :func:`train_olivine`
    fits them: dlth on the validation tiles, the check on all EDS tiles, both on the mean of
    the views segmenting will average (in ``runtime``'s arithmetic)."""
    views = inference_views(settings)
    probabilities = [_probabilities(model, t.bse, norm, runtime, views) for t in data.validation]
    dlth, metrics = _choose_threshold(probabilities, data.validation, settings)
    # kept for readers of older cards, where the check chose its own dlth
    metrics["network_dlth"] = dlth
    metrics["network_validation"] = metrics["validation"]
    outline = Outline(
        low=min(settings.outline_low, dlth),
        snap_sigma_px=SNAP_SIGMA_PX if settings.outline_snap else 0.0,
        fill_sigmas=FILL_SIGMAS if settings.outline_snap and settings.outline_fill else 0.0,
    )
    logger.info("outline: %s", outline.describe())
    check = CrystalCheck()
    if settings.crystal_check:
        check, metrics["crystal_check"] = _fit_check(
            model, data, probabilities, dlth, norm, runtime, outline, views
        )
    return FittedSegmentation(dlth, outline, check, metrics, views)


@torch.no_grad()
def score_model(folder: Path, tiles: list[LabelledTile], settings: OlivineSettings) -> Confusion:
    """The model in ``folder`` as it segments (its ``dlth`` and crystal check) against the EDS
    labels of ``tiles``: two models compared on the same tiles."""
    model, card = load_model(folder)
    runtime = choose_runtime(settings.device, "float32")
    network = runtime.prepare(model).eval()
    views = inference_views(settings)
    check = CrystalCheck.from_card(card.crystal_check)
    outline = Outline.from_card(card.outline)
    total = Confusion()
    for tile in tiles:
        p = _probabilities(network, tile.bse, card.normalisation, runtime, views)
        mask = outline.apply(tile.bse, p, (p >= card.dlth) & (tile.bse > 0))
        mask = outline.snap(tile.bse, check.apply(tile.bse, mask))
        total = total + confusion(mask, tile.label == 1, tile.label != IGNORE)
    return total


def _refit(
    model: nn.Module,
    arch: str,
    data: TrainingData,
    norm: Normalisation,
    settings: OlivineSettings,
    runtime: Runtime,
    folder: Path,
    progress: Callable[[TrainProgress], None] | None,
) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` trained ``refit_epochs`` more epochs on every EDS tile, validation tiles
    included (a fresh optimiser, warm-up and cosine decay from a quarter of the learning
    rate), resumably in ``training/refit/``; and the refit's figures for the card.

    With the few EDS tiles of a session's start, a composition only the validation tiles hold
    is never learnt: on `small` seed 3 (8 epochs) the tile holding a phenocryst's Mg-rich core
    was held out, and the network found 0.64 of the olivine of unseen tiles (IoU); two
    epochs more on all tiles, 0.83. dlth, the outline and the crystal check stay those chosen
    with the network that had not seen the validation tiles."""
    tiles = [*data.train, *data.validation]
    sample = _Sampler(tiles, _patch_side(tiles, settings), settings)
    recipe = settings.model_copy(
        update={
            "epochs": settings.refit_epochs,
            "learning_rate": settings.learning_rate * _REFIT_LEARNING_RATE,
        }
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=1e-4)
    state = _TrainingState(folder / "training" / "refit")
    history: list[dict[str, float]] = []
    start = 0
    origin, marker = _weights_digest(model), state.folder / "network.sha256"
    if state.exists() and marker.is_file() and marker.read_text() == origin:
        start, history = state.load(model, optimiser, arch, norm, runtime)
        logger.info("resuming the refit on all EDS tiles at epoch %d", start + 1)
    else:  # none, or the refit of another network (the first training has run on since)
        shutil.rmtree(state.folder, ignore_errors=True)
        state.folder.mkdir(parents=True)
        marker.write_text(origin)

    shown = None
    if progress is not None:
        report, total = progress, settings.epochs + recipe.epochs

        def shown(p: TrainProgress) -> None:  # after the first training's epochs
            report(replace(p, epoch=p.epoch + settings.epochs, epochs=total))

    for epoch in range(start, recipe.epochs):
        started = time.perf_counter()
        rng = _seeded(settings.seed, _REFIT_SEED + epoch)
        loss, seen = _train_epoch(
            model, optimiser, sample, norm, recipe, runtime, rng, epoch, shown
        )
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss,
                "seconds": round(time.perf_counter() - started, 2),
                "pixels": seen,
            }
        )
        logger.info("refit on all EDS tiles, epoch %d: loss %.4f", epoch + 1, loss)
        state.save(model, optimiser, epoch + 1, history, arch, norm)
    return model, {
        "epochs": recipe.epochs,
        "learning_rate": recipe.learning_rate,
        "tiles": len(tiles),
        "seconds": round(sum(float(h["seconds"]) for h in history), 1),
        "history": history,
        "figures": "dlth, the outline, the crystal check and the validation metrics are of the "
        "network before the refit (training/held_out)",
    }


def _seeded(seed: int, draw: int) -> np.random.Generator:
    """The random draws of one epoch (``draw``: its number, offset for the refit's): torch's
    seeded, and numpy's generator returned; a resumed run draws as an uninterrupted one."""
    torch.manual_seed(seed * 100_003 + draw)
    return np.random.default_rng([seed, draw])


def _weights_digest(model: nn.Module) -> str:
    """SHA-256 of a network's weights and buffers: which network a refit started from."""
    import hashlib

    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.float()
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _card(
    arch: str,
    norm: Normalisation,
    dlth: float,
    data: TrainingData,
    settings: OlivineSettings,
    metrics: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    check: CrystalCheck | None = None,
    landmarks: tuple[float, float] | None = None,
    outline: Outline | None = None,
) -> ModelCard:
    return ModelCard(
        architecture=arch,
        normalisation=norm,
        dlth=dlth,
        grey_landmarks_dn=[round(x, 1) for x in landmarks or ()],
        outline=outline.as_dict() if outline is not None else {},
        crystal_check=check.as_dict() if check is not None and check.max_core_std_dn else {},
        label_rules=rule_thresholds(settings),
        training_tiles=[t.name for t in data.train],
        split={**data.split(), "block_tiles": settings.block_tiles, "seed": settings.seed},
        metrics=metrics or {},
        training=training or {},
    )


def _normalisation(tiles: list[LabelledTile]) -> Normalisation:
    """Mean and standard deviation of the scanned BSE of ``tiles``, tile by tile in float64
    (two passes; no copy of all the training BSE at once)."""
    count, total = 0, 0.0
    for t in tiles:
        scanned = t.bse[t.bse > 0]
        count, total = count + scanned.size, total + float(scanned.sum(dtype=np.float64))
    if count == 0:
        return Normalisation(0.0, 1.0)
    mean = total / count
    squares = sum(float(np.square(t.bse[t.bse > 0].astype(np.float64) - mean).sum()) for t in tiles)
    return Normalisation(round(mean, 3), round((squares / count) ** 0.5 or 1.0, 3))


def _kept_model(
    model: nn.Module,
    folder: Path,
    arch: str,
    norm: Normalisation,
    runtime: Runtime,
    history: list[dict[str, float]],
    early_stopping: bool,
) -> tuple[nn.Module, str]:
    """The weights the model keeps, and which they are. Without early stopping, the last
    epoch's: the cosine schedule's end, where the learning rate has fallen to its floor. With
    it, the epoch of lowest validation loss (on a few validation tiles that loss is noisy, and
    its lowest often falls early, at a high learning rate: on `small`, epoch 5 of 40, unseen
    tiles IoU 0.75 against 0.85 for the last epoch)."""
    last = model, f"last epoch ({len(history)})"
    if not early_stopping or not (folder / "training" / "best").is_dir():
        return last
    best, card = load_model(folder / "training" / "best", architecture=arch, normalisation=norm)
    epoch = int(min(history, key=lambda h: h["val_loss"])["epoch"])
    if card.metrics.get("epoch", epoch) != epoch:  # saved by another run (older ones say none)
        logger.warning(
            "%s holds epoch %s, not epoch %d of this run's lowest validation loss: keeping the "
            "last epoch",
            folder / "training" / "best",
            card.metrics["epoch"],
            epoch,
        )
        return last
    return runtime.prepare(best), f"epoch {epoch}, the lowest validation loss"


def _epochs_since_best(history: list[dict[str, float]]) -> int:
    if not history:
        return 0
    losses = [h["val_loss"] for h in history]
    return int(len(losses) - 1 - int(np.argmin(losses)))


# -- one epoch ------------------------------------------------------------------------------
def _patch_side(tiles: list[LabelledTile], settings: OlivineSettings) -> int:
    smallest = int(min(min(t.bse.shape) for t in tiles))
    return max(_STRIDE, min(settings.patch_px, smallest) // _STRIDE * _STRIDE)


class _Sampler:
    """Training patches: a third centred on olivine, a third on look-alikes (labelled not
    olivine but with BSE inside olivine's range: clinopyroxene, mostly, whose grey level
    overlaps olivine's), a third anywhere; then rot90, flips, BSE gain and offset."""

    def __init__(self, tiles: list[LabelledTile], side: int, settings: OlivineSettings) -> None:
        self.tiles, self.side, self.settings = tiles, side, settings
        olivine = np.concatenate([t.bse[t.label == 1] for t in tiles]).astype(np.float32)
        lo, hi = np.percentile(olivine, [5, 95]) if olivine.size else (0.0, 0.0)
        self.centres = [
            (
                np.flatnonzero(t.label == 1).astype(np.int32),  # a tile has < 2³¹ px
                np.flatnonzero(
                    (t.label != 1) & (t.label != IGNORE) & (t.bse >= lo) & (t.bse <= hi)
                ).astype(np.int32),
            )
            for t in tiles
        ]

    def __call__(self, rng: np.random.Generator) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
        side, settings = self.side, self.settings
        i = int(rng.integers(len(self.tiles)))
        tile, kind = self.tiles[i], int(rng.integers(3))
        h, w = tile.bse.shape
        centres = self.centres[i][kind] if kind < 2 else np.empty(0, np.int64)
        if centres.size:
            r, c = np.unravel_index(int(centres[rng.integers(centres.size)]), (h, w))
            jitter = rng.integers(-side // 4, side // 4 + 1, size=2)
            r0 = int(np.clip(r - side // 2 + jitter[0], 0, h - side))
            c0 = int(np.clip(c - side // 2 + jitter[1], 0, w - side))
        else:
            r0, c0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        x = tile.bse[r0 : r0 + side, c0 : c0 + side].astype(np.float32)
        y = tile.label[r0 : r0 + side, c0 : c0 + side]
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        gain = 1 + rng.uniform(-settings.augment_gain, settings.augment_gain)
        offset = rng.uniform(-settings.augment_offset_dn, settings.augment_offset_dn)
        x = np.where(x > 0, x * gain + offset, x)
        return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y)


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Binary cross-entropy plus soft Dice (1 − soft IoU-like overlap) over labelled pixels:
    the Dice term keeps the rare olivine class from being drowned by the background."""
    bce_sum, dice, count = _loss_terms(logits, labels)
    return bce_sum / max(count, 1) + dice, count


def _loss_terms(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The summed binary cross-entropy and the soft Dice loss over the labelled pixels, and
    their count (both terms 0 where none is labelled)."""
    valid = labels != IGNORE
    count = int(valid.sum())
    if count == 0:
        zero = logits.sum() * 0.0
        return zero, zero, 0
    target = (labels == 1).to(logits.dtype)[valid]
    logit = logits[valid]
    bce = nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="sum")
    p = torch.sigmoid(logit)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce, dice, count


def _passes(batch: int, micro_batch: int) -> list[slice]:
    """A step's patches in near-equal passes of about ``micro_batch`` (0: one pass), never a
    pass of one patch where the step has more (batch norm needs two values per channel)."""
    if micro_batch <= 0 or micro_batch >= batch:
        return [slice(0, batch)]
    count = min(-(-batch // micro_batch), batch // 2)
    edges = np.linspace(0, batch, count + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def _backward(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro_batch: int
) -> tuple[float, int]:
    """One step's loss, backpropagated in passes of about ``micro_batch`` patches (0: one
    pass) whose gradients add up: the cross-entropy is the batch's mean over its labelled
    pixels as in one pass, the Dice term the mean over the passes that have labelled pixels.
    Activations, the largest part of a training's memory, scale with the pass; batch norm
    normalises each pass by its own patches. Returns the loss and the labelled pixels."""
    passes = _passes(len(x), micro_batch)
    counts = [int((y[part] != IGNORE).sum()) for part in passes]
    count, labelled = sum(counts), max(1, sum(c > 0 for c in counts))
    total = 0.0
    for part in passes:
        bce_sum, dice, _ = _loss_terms(model(x[part]), y[part])
        loss = bce_sum / max(count, 1) + dice / labelled
        loss.backward()  # type: ignore[no-untyped-call]
        total += float(loss.detach())
    return total, count


def _learning_rate(step: int, total: int, base: float) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 1 % of ``base``."""
    warm = max(1, total // 20)
    if step < warm:
        return base * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return float(base * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * t))))


def _train_epoch(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    sample: _Sampler,
    norm: Normalisation,
    settings: OlivineSettings,
    runtime: Runtime,
    rng: np.random.Generator,
    epoch: int,
    progress: Callable[[TrainProgress], None] | None,
) -> tuple[float, int]:
    model.train()
    steps = max(1, settings.patches_per_epoch // settings.batch_size)
    total, weight, pixels = 0.0, 0, 0
    for step in range(steps):
        lr = _learning_rate(epoch * steps + step, settings.epochs * steps, settings.learning_rate)
        for group in optimiser.param_groups:
            group["lr"] = lr
        pairs = [sample(rng) for _ in range(settings.batch_size)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
        x = (x - norm.mean_dn) / norm.std_dn
        y = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
        x, y = runtime.tensor(x), y.to(runtime.device)
        optimiser.zero_grad(set_to_none=True)
        loss, count = _backward(model, x, y, settings.micro_batch)
        optimiser.step()
        total += loss * count
        weight += count
        pixels += int(x.numel())
        if progress is not None:
            progress(
                TrainProgress(epoch + 1, settings.epochs, step + 1, steps, total / max(weight, 1))
            )
    _precise_batchnorm(model, sample, norm, settings, runtime, rng)
    return total / max(weight, 1), pixels


@torch.no_grad()
def _precise_batchnorm(
    model: nn.Module,
    sample: _Sampler,
    norm: Normalisation,
    settings: OlivineSettings,
    runtime: Runtime,
    rng: np.random.Generator,
) -> None:
    """Re-estimate the batch-norm statistics of the epoch's final weights on fresh patches.

    The running averages otherwise trail weights that changed during the epoch, and the
    network evaluated with them swings from epoch to epoch (seen as validation IoU jumping
    between 0.0 and 0.6 on `small`)."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    model.train()
    for _ in range(_PRECISE_BN_BATCHES):
        pairs = [sample(rng) for _ in range(settings.batch_size)]
        x = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
        model(runtime.tensor((x - norm.mean_dn) / norm.std_dn))
    for m, momentum in zip(layers, saved, strict=True):
        m.momentum = momentum


def _padded(x: NDArray[Any]) -> tuple[NDArray[np.float32], tuple[int, int]]:
    """``x`` as float32, reflected out to a multiple of the network's stride."""
    h, w = x.shape
    ph, pw = -h % _STRIDE, -w % _STRIDE
    return np.pad(np.asarray(x, np.float32), ((0, ph), (0, pw)), mode="reflect"), (h, w)


def _logits(
    model: nn.Module, bse: NDArray[Any], norm: Normalisation, runtime: Runtime
) -> torch.Tensor:
    """The network's logits over a whole tile's BSE (with its margin), shape (1, 1, h, w)."""
    x, (h, w) = _padded(bse)
    xt = runtime.tensor(torch.from_numpy((x - norm.mean_dn) / norm.std_dn)[None, None])
    with runtime.autocast():
        logits: torch.Tensor = model(xt).float()[..., :h, :w]
    return logits


@torch.no_grad()
def _probabilities(
    model: nn.Module, bse: NDArray[Any], norm: Normalisation, runtime: Runtime, views: int
) -> NDArray[np.float32]:
    """The network's probabilities over a whole tile's BSE, averaged over ``views`` views as
    segmenting averages them (:func:`._segment.view_averaged`)."""
    model.eval()

    def predict(stack: NDArray[np.float32]) -> NDArray[np.float32]:
        logits = _logits(model, stack[0], norm, runtime)
        p: NDArray[np.float32] = torch.sigmoid(logits)[0].cpu().numpy()
        return p

    averaged: NDArray[np.float32] = view_averaged(
        predict, np.asarray(bse, np.float32)[None], views
    )[0]
    return averaged


@torch.no_grad()
def _validate(
    model: nn.Module, tiles: list[LabelledTile], norm: Normalisation, runtime: Runtime
) -> tuple[float, list[NDArray[np.float32]]]:
    """Validation loss over the labelled pixels of whole tiles, and each tile's probabilities."""
    model.eval()
    total, weight, probabilities = 0.0, 0, []
    for tile in tiles:
        logits = _logits(model, tile.bse, norm, runtime)
        y = torch.from_numpy(tile.label)[None, None].to(runtime.device)
        loss, count = _loss(logits, y)
        total += float(loss) * count
        weight += count
        probabilities.append(torch.sigmoid(logits)[0, 0].cpu().numpy())
    return total / max(weight, 1), probabilities


def _agreement(
    probabilities: list[NDArray[np.float32]], tiles: list[LabelledTile], threshold: float
) -> Confusion:
    total = Confusion()
    for p, t in zip(probabilities, tiles, strict=True):
        total = total + confusion(p >= threshold, t.label == 1, t.label != IGNORE)
    return total


def _choose_threshold(
    probabilities: list[NDArray[np.float32]], tiles: list[LabelledTile], settings: OlivineSettings
) -> tuple[float, dict[str, Any]]:
    """dlth maximising IoU against the EDS labels of the validation tiles (or the configured
    one), with the validation metrics at it."""

    def at(threshold: float) -> Confusion:
        return _agreement(probabilities, tiles, threshold)

    if settings.dlth == "auto":
        scores = [at(float(c)).iou for c in _THRESHOLDS]
        dlth = float(_THRESHOLDS[int(np.nanargmax(scores))])
    else:
        dlth = float(settings.dlth)
    chosen = at(dlth)
    return dlth, {
        "validation": chosen.as_dict(),
        "validation_at_0.5": at(0.5).as_dict(),
        "dlth_source": "validation IoU" if settings.dlth == "auto" else "configured",
        "against": "EDS labels of the validation tiles",
    }


@torch.no_grad()
def _fit_check(
    model: nn.Module,
    data: TrainingData,
    validation: list[NDArray[np.float32]],
    dlth: float,
    norm: Normalisation,
    runtime: Runtime,
    outline: Outline,
    views: int,
) -> tuple[CrystalCheck, dict[str, float]]:
    """The crystal check's spread threshold and grey band, fitted at ``dlth`` (the crystals
    grown by ``outline``, as segmenting grows them) on all EDS tiles (training and validation:
    look-alike crystals are few), or no check where none gains.

    The network has learnt its training tiles, their clinopyroxene included, so the crystals it
    predicts there are nearly all olivine and teach the check little, while on tiles it never
    saw it calls much clinopyroxene olivine (on `small` seed 1, 40 epochs: 29 % of it; fitted on
    its own predictions alone the check stayed off). So the fit also judges the tiles' look-alike
    crystals (``LOOKALIKE``: clinopyroxene by the EDS rules) as if the network had called them
    olivine. Returns the check and the IoU against the EDS labels without and with it, on those
    crystals (``fit_iou_*``, what it is chosen by) and on the network's own masks
    (``eds_iou_*``). The training tiles' probabilities are made one at a time, each the mean
    over ``views`` views as segmenting makes it (``validation``: the validation tiles', made
    so)."""
    model.eval()

    def tiles() -> Iterator[tuple[LabelledTile, NDArray[np.float32]]]:
        for tile in data.train:  # made one at a time
            yield tile, _probabilities(model, tile.bse, norm, runtime, views)
        yield from zip(data.validation, validation, strict=True)

    fit, own = CheckFit(), CheckFit()
    lookalike_px = 0
    for tile, p in tiles():
        prepared = prepare(tile.bse, fit.base)
        olivine, known = tile.label == 1, tile.label != IGNORE
        lookalike = tile.label == LOOKALIKE
        lookalike_px += int(np.count_nonzero(lookalike))
        mask = outline.apply(tile.bse, p, (p >= dlth) & (tile.bse > 0))
        fit.add(tile.bse, mask | lookalike, olivine, known, prepared)
        own.add(tile.bse, mask, olivine, known, prepared)
    check, scores = fit.result()
    without, with_check = own.iou(CrystalCheck()), own.iou(check)
    if with_check < without - MIN_GAIN:
        logger.warning(
            "crystal check: it lowers the IoU of the network's own masks on the EDS tiles from "
            "%.3f to %.3f (the network learnt the training tiles' look-alikes; on tiles it "
            "never saw it calls more of them olivine); set olivine.crystal_check = false to "
            "compare",
            without,
            with_check,
        )
    logger.info(
        "crystal check: %s (IoU against the EDS labels %.3f without, %.3f with; with the "
        "look-alike crystals judged too, %.3f and %.3f)",
        check.describe(),
        without,
        with_check,
        scores["eds_iou_without"],
        scores["eds_iou_with"],
    )
    return check, {
        "fit_iou_without": scores["eds_iou_without"],
        "fit_iou_with": scores["eds_iou_with"],
        "eds_iou_without": without,
        "eds_iou_with": with_check,
        "judged": scores["judged"],
        "dropped": scores["dropped"],
        "lookalike_px": lookalike_px,
        "dlth": dlth,
        **check.as_dict(),
    }


# -- resumable state ----------------------------------------------------------------------
class _TrainingState:
    """``training/state.safetensors`` (weights and optimiser tensors) + ``state.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def exists(self) -> bool:
        return (self.folder / "state.json").is_file()

    def save(
        self,
        model: nn.Module,
        optimiser: torch.optim.Optimizer,
        epoch: int,
        history: list[dict[str, float]],
        arch: str,
        norm: Normalisation,
    ) -> None:
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
        }
        opt = optimiser.state_dict()
        for index, values in opt["state"].items():
            for key, value in values.items():
                tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
        tmp = self.folder / "state.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(self.folder / "state.safetensors")
        meta = {
            "epoch": epoch,
            "history": history,
            "architecture": arch,
            "normalisation": [norm.mean_dn, norm.std_dn],
            "param_groups": opt["param_groups"],
        }
        tmp = self.folder / "state.json.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.folder / "state.json")

    def load(
        self,
        model: nn.Module,
        optimiser: torch.optim.Optimizer,
        arch: str,
        norm: Normalisation,
        runtime: Runtime,
    ) -> tuple[int, list[dict[str, float]]]:
        from safetensors.torch import load_file

        meta = json.loads((self.folder / "state.json").read_text())
        if meta["architecture"] != arch or meta["normalisation"] != [norm.mean_dn, norm.std_dn]:
            raise InputDataError(
                f"the unfinished training in {self.folder} is a {meta['architecture']} with "
                f"normalisation {meta['normalisation']}; this run asks for {arch} with "
                f"{[norm.mean_dn, norm.std_dn]} — delete {self.folder} to start afresh or "
                "train under another --name",
                path=self.folder,
                expected=(arch, [norm.mean_dn, norm.std_dn]),
                got=(meta["architecture"], meta["normalisation"]),
            )
        tensors = load_file(str(self.folder / "state.safetensors"))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value.to(runtime.device)
        for values in state.values():  # Adam keeps its step count on the CPU
            if "step" in values:
                values["step"] = values["step"].cpu()
        optimiser.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        return int(meta["epoch"]), list(meta["history"])
