"""Training on EDS-labelled tiles: the spatial split, resuming, and too little data."""

import json
import shutil

import numpy as np
import pytest
import zarr

from semlive.cli import main
from semlive.errors import InputDataError
from semlive.models import load_model
from semlive.models.olivine import (
    IGNORE,
    fit_segmentation,
    load_training_data,
    score_model,
    train_olivine,
)
from semlive.settings import OlivineSettings

QUICK = OlivineSettings(
    patch_px=64,
    batch_size=2,
    patches_per_epoch=4,
    epochs=2,
    min_labelled_px=1_000,
    min_olivine_px=10,
)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, stitch):
    from semlive.virtual_sem import simulate

    root = tmp_path_factory.mktemp("tiny-train")
    simulate(root / "session", "tiny", seed=1)
    return stitch(root / "session", root / "store")


def test_split_keeps_validation_pixels_out_of_training(small_store):
    data = load_training_data(small_store, OlivineSettings())
    assert data.validation
    assert len(data.train) + len(data.validation) == 9  # the small preset's EDS tiles
    validation_pixels = set()
    for t in data.validation:
        r, c = np.nonzero(t.label != IGNORE)
        validation_pixels |= set(
            zip((r + t.origin[0]).tolist(), (c + t.origin[1]).tolist(), strict=True)
        )
    for t in data.train:
        r, c = np.nonzero(t.label != IGNORE)
        trained = set(zip((r + t.origin[0]).tolist(), (c + t.origin[1]).tolist(), strict=True))
        assert not trained & validation_pixels
    assert {tuple(b) for b in data.split()["blocks"]["validation"]}.isdisjoint(
        {tuple(b) for b in data.split()["blocks"]["train"]}
    )


def test_training_tiles_keep_the_mosaics_integer_grey(small_store):
    """Half the memory of float32 (a section's 300 EDS tiles hold 0.35 GB as float32); the
    windows and patches the network sees are float32 of the same values."""
    import zarr

    from semlive.models.olivine._train import _padded, _Sampler

    data = load_training_data(small_store, OlivineSettings())
    mosaic = zarr.open_group(str(small_store / "mosaic.zarr"), mode="r")["bse/0"]
    tile = data.train[0]
    assert tile.bse.dtype == mosaic.dtype == np.uint16
    (r, c), (h, w) = tile.origin, tile.bse.shape
    np.testing.assert_array_equal(tile.bse, mosaic[r : r + h, c : c + w])
    padded, shape = _padded(tile.bse)
    assert padded.dtype == np.float32
    assert shape == (h, w)
    np.testing.assert_array_equal(padded[:h, :w], tile.bse)
    plain = OlivineSettings(augment_gain=0.0, augment_offset_dn=0.0)
    patch, label = _Sampler(data.train, 64, plain)(np.random.default_rng(0))
    assert patch.dtype == np.float32
    assert patch.shape == label.shape == (64, 64)
    assert patch.max() > 1000
    np.testing.assert_array_equal(patch, np.rint(patch))  # the grey as it is, not rescaled


def test_resumed_training_continues_exactly_where_it_stopped(tiny_store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_store, a)
    shutil.copytree(tiny_store, b)
    straight = train_olivine(a, QUICK, resume=False)
    train_olivine(b, QUICK.model_copy(update={"epochs": 1}), resume=False)
    resumed = train_olivine(b, QUICK, resume=True)
    h1, h2 = straight.metrics["history"], resumed.metrics["history"]
    assert [h["epoch"] for h in h2] == [1, 2]
    for x, y in zip(h1, h2, strict=True):
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-4)
    _, card = load_model(b / "models" / "olivine")
    assert card.split["validation"]
    assert 0 < card.dlth < 1
    assert card.training["epochs_run"] == 2
    assert card.training["seconds"] == pytest.approx(sum(h["seconds"] for h in h2), abs=0.1)
    # a finished run resumed runs no epoch and still reports the training's time and speed
    again = train_olivine(b, QUICK, resume=True)
    assert again.training["seconds"] == resumed.training["seconds"] > 0
    assert again.training["train_mpx_per_s"] == resumed.training["train_mpx_per_s"] > 0


def test_the_last_epochs_weights_are_kept_unless_early_stopping(tiny_store, tmp_path):
    """Without early stopping the model is the schedule's end (the learning rate at its
    floor); with it, the epoch of the lowest validation loss."""
    from safetensors.torch import load_file

    def weights(folder):
        return load_file(str(folder / "weights.safetensors"))

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_store, a)
    shutil.copytree(tiny_store, b)
    card = train_olivine(a, QUICK.model_copy(update={"epochs": 3}), resume=False)
    assert card.metrics["kept"] == "last epoch (3)"
    folder = a / "models" / "olivine"
    state = load_file(str(folder / "training" / "state.safetensors"))
    kept = weights(folder / "training" / "held_out")  # before the refit on all tiles
    assert kept
    assert all(np.array_equal(v, state[f"model.{k}"]) for k, v in kept.items())
    assert not (folder / "training" / "best").exists()

    stopping = QUICK.model_copy(update={"epochs": 3, "patience": 1})
    card = train_olivine(b, stopping, resume=False)
    history = card.metrics["history"]
    lowest = min(history, key=lambda h: h["val_loss"])["epoch"]
    assert card.metrics["kept"] == f"epoch {lowest}, the lowest validation loss"
    folder = b / "models" / "olivine"
    best = weights(folder / "training" / "best")
    held_out = weights(folder / "training" / "held_out")
    assert all(np.array_equal(v, best[k]) for k, v in held_out.items())

    # lowest-loss weights another run left are not taken for this run's
    card_file = folder / "training" / "best" / "card.json"
    other = json.loads(card_file.read_text())
    other["metrics"]["epoch"] = lowest + 7
    card_file.write_text(json.dumps(other))
    assert train_olivine(b, stopping).metrics["kept"] == f"last epoch ({len(history)})"
    train_olivine(b, QUICK.model_copy(update={"epochs": 1}), resume=False)
    assert not (folder / "training" / "best").exists()


def test_the_network_is_refit_on_all_tiles_and_a_killed_refit_resumes(tiny_store, tmp_path):
    """dlth, the outline and the check are chosen with the network that never saw the
    validation tiles (kept in training/held_out with its card); the network kept is then
    trained ``refit_epochs`` more on all tiles. A refit killed midway and resumed ends with
    the weights of one run straight through; training again for more epochs refits afresh."""
    from safetensors.torch import load_file

    class Killed(Exception):
        pass

    def kill_in_the_refits_second_epoch(progress):
        if progress.epoch == QUICK.epochs + 2:
            raise Killed

    def weights(folder):
        return load_file(str(folder / "weights.safetensors"))

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tiny_store, a)
    shutil.copytree(tiny_store, b)
    straight = train_olivine(a, QUICK, resume=False)
    data = load_training_data(a, QUICK)
    assert straight.split["validation"]
    assert straight.training_tiles == [t.name for t in [*data.train, *data.validation]]
    refit = straight.metrics["refit"]
    assert refit["epochs"] == QUICK.refit_epochs == 2
    assert refit["tiles"] == len(straight.training_tiles)
    assert refit["learning_rate"] == pytest.approx(QUICK.learning_rate / 4)
    assert [h["epoch"] for h in refit["history"]] == [1, 2]
    folder = a / "models" / "olivine"
    _, held_card = load_model(folder / "training" / "held_out")
    assert held_card.training_tiles == [t.name for t in data.train]
    assert (held_card.dlth, held_card.crystal_check) == (straight.dlth, straight.crystal_check)
    kept, held = weights(folder), weights(folder / "training" / "held_out")
    assert any(not np.array_equal(v, held[k]) for k, v in kept.items())

    with pytest.raises(Killed):
        train_olivine(b, QUICK, progress=kill_in_the_refits_second_epoch, resume=False)
    state = json.loads((b / "models" / "olivine" / "training" / "refit" / "state.json").read_text())
    assert state["epoch"] == 1
    resumed = train_olivine(b, QUICK, resume=True)
    assert [h["epoch"] for h in resumed.metrics["refit"]["history"]] == [1, 2]
    for name, value in weights(b / "models" / "olivine").items():
        np.testing.assert_allclose(value.numpy(), kept[name].numpy(), rtol=1e-4, atol=1e-5)

    # more epochs: the first training goes on, and its new network is refit from the start
    longer = train_olivine(b, QUICK.model_copy(update={"epochs": QUICK.epochs + 1}))
    assert longer.training["epochs_run"] == QUICK.epochs + 1
    assert [h["epoch"] for h in longer.metrics["refit"]["history"]] == [1, 2]
    # none: the network that never saw the validation tiles is kept
    none = train_olivine(b, QUICK.model_copy(update={"refit_epochs": 0}), resume=False)
    assert "refit" not in none.metrics
    assert none.training_tiles == [t.name for t in data.train]
    assert not (b / "models" / "olivine" / "training" / "held_out").exists()


def test_resuming_with_another_architecture_is_refused(tiny_store, tmp_path):
    store = tmp_path / "s"
    shutil.copytree(tiny_store, store)
    train_olivine(store, QUICK.model_copy(update={"epochs": 1}), resume=False)
    other = QUICK.model_copy(update={"arch": "deeplabv3_resnet50"})
    with pytest.raises(
        InputDataError, match=r"unfinished training .* is a deeplabv3plus_mobilenet"
    ):
        train_olivine(store, other, resume=True)


def test_too_few_labelled_pixels_gives_the_counts_found_and_needed(tiny_store, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("[olivine]\nmin_labelled_px = 100000000\n")
    code = main(["train", str(tiny_store), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 3
    assert "too few EDS-labelled pixels" in err
    assert "100,000,000 labelled" in err
    assert not (tiny_store / "models" / "olivine").exists()


def test_cli_train_then_segment_writes_labels_and_a_card(tiny_store, tmp_path, capsys):
    import zarr

    store = tmp_path / "s"
    shutil.copytree(tiny_store, store)
    config = tmp_path / "c.toml"
    config.write_text(
        "[olivine]\npatch_px = 64\nbatch_size = 2\npatches_per_epoch = 4\n"
        "min_labelled_px = 1000\nmin_olivine_px = 10\n"
    )
    assert main(["train", str(store), "--epochs", "1", "--config", str(config)]) == 0
    assert "deeplabv3plus_mobilenet_v3_large trained for 1 epochs" in capsys.readouterr().out
    card = json.loads((store / "models" / "olivine" / "card.json").read_text())
    assert card["format"] == "semlive.model/1"
    assert card["normalisation"]["std_dn"] > 0
    assert set(card) >= {"semlive_version", "torch_version", "training_tiles", "split", "metrics"}
    check = card["metrics"]["crystal_check"]  # fitted on the EDS tiles: on, or off
    assert {"fit_iou_with", "eds_iou_without", "eds_iou_with", "lookalike_px"} <= set(check)
    assert (check["max_core_std_dn"] > 0) == (card["crystal_check"] != {})
    assert main(["segment", str(store), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "Mpx/s on cpu" in out
    assert "agreement with the EDS labels" in out
    root = zarr.open_group(str(store / "mosaic.zarr"), mode="r")
    labels = root["bse/labels/olivine"]
    assert labels["0"].shape == root["bse/0"].shape
    assert labels["0"].dtype == np.uint8
    assert set(np.unique(labels["0"][:])) <= {0, 1}
    assert root["bse/labels"].attrs["ome"]["labels"] == ["olivine"]
    assert labels.attrs["ome"]["image-label"]["source"]["image"] == "../../"
    assert root["olivine_probability/0"].shape == root["bse/0"].shape
    assert labels.attrs["semlive"]["crystal_check"] == card["crystal_check"]
    # segmented on the views dlth and the check were fitted on (auto: as the CPU affords)
    inference = labels.attrs["semlive"]["inference"]
    assert inference["views"] == card["training"]["views"] in (1, 2)
    assert inference["device"] == "cpu"
    assert f"{inference['views']} view" in out


def test_a_model_scored_on_its_validation_tiles_gives_its_cards_figures(tiny_store, tmp_path):
    store = tmp_path / "s"
    shutil.copytree(tiny_store, store)
    # the card's validation figures are of the network at dlth: no crystal check, no snapping
    settings = QUICK.model_copy(update={"crystal_check": False, "outline_snap": False})
    card = train_olivine(store, settings, resume=False)
    data = load_training_data(store, settings)
    # the card's figures are of the network before its refit on all tiles (these included)
    held_out = store / "models" / "olivine" / "training" / "held_out"
    scored = score_model(held_out, data.validation, settings)
    assert scored.as_dict() == pytest.approx(card.metrics["validation"])


def test_fitting_the_held_out_network_again_gives_the_cards_dlth_outline_and_check(
    tiny_store, tmp_path
):
    """fit_segmentation is what training fits: given the network the card's figures are of
    (before its refit), it gives the card's dlth, outline and crystal check again."""
    from semlive.models import choose_runtime

    store = tmp_path / "s"
    shutil.copytree(tiny_store, store)
    settings = QUICK.model_copy(update={"epochs": 3})
    card = train_olivine(store, settings, resume=False)
    network, held = load_model(store / "models" / "olivine" / "training" / "held_out")
    runtime = choose_runtime(settings.device, "float32")
    data = load_training_data(store, settings)
    fitted = fit_segmentation(runtime.prepare(network), data, held.normalisation, settings, runtime)
    assert fitted.dlth == card.dlth
    assert fitted.outline.as_dict() == card.outline
    check = fitted.check.as_dict() if fitted.check.max_core_std_dn else {}
    assert check == card.crystal_check
    assert fitted.views == card.training["views"]
    assert fitted.metrics["validation"] == pytest.approx(card.metrics["validation"])


def test_a_step_in_passes_adds_the_gradients_of_one_loss():
    """Split into passes (less memory), a step's gradient is that of the batch's cross-entropy
    over all its labelled pixels plus the mean of the Dice terms of the passes that have
    labelled pixels; in one pass, exactly the training loss; never a pass of one patch."""
    import torch

    from semlive.models.olivine._train import _backward, _loss, _loss_terms, _passes

    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 3, padding=1)
    x = torch.randn(6, 1, 16, 16)
    y = (torch.rand(6, 1, 16, 16) > 0.7).to(torch.uint8)
    y[1, :, :8] = IGNORE  # passes with unequal labelled pixels

    def gradient(loss_of) -> torch.Tensor:
        model.zero_grad()
        loss_of()
        return model.weight.grad.clone()

    def expected(size: int) -> None:
        parts = [_loss_terms(model(x[p]), y[p]) for p in _passes(6, size)]
        count = sum(c for _, _, c in parts)
        dice = [d for _, d, c in parts if c]
        (sum(b for b, _, _ in parts) / count + sum(dice) / len(dice)).backward()

    whole = gradient(lambda: _backward(model, x, y, 0))
    assert torch.allclose(whole, gradient(lambda: _loss(model(x), y)[0].backward()), atol=1e-6)
    for size in (2, 4):  # three passes of two; two of three
        assert len(_passes(6, size)) == {2: 3, 4: 2}[size]
        passes = gradient(lambda size=size: _backward(model, x, y, size))
        assert torch.allclose(passes, gradient(lambda size=size: expected(size)), atol=1e-6)
        assert not torch.allclose(passes, whole, atol=1e-6)  # the Dice term is per pass
    y[:2] = IGNORE  # a pass with nothing labelled adds nothing, and dilutes no other pass
    assert torch.allclose(
        gradient(lambda: _backward(model, x, y, 2)), gradient(lambda: expected(2)), atol=1e-6
    )
    _, count = _backward(model, x, y, 4)
    assert count == int((y != IGNORE).sum())
    assert [p.stop - p.start for p in _passes(9, 4)] == [3, 3, 3]
    assert [p.stop - p.start for p in _passes(3, 2)] == [3]  # not 2 + 1
    assert [p.stop - p.start for p in _passes(8, 1)] == [2, 2, 2, 2]


def test_the_normalisation_is_of_all_scanned_training_bse_tile_by_tile(small_store):
    """Mean and standard deviation of every scanned (non-zero) training pixel, as one array
    would give them, without that array (0.38 GB more at the peak on `section`)."""
    from semlive.models.olivine._train import _normalisation

    tiles = load_training_data(small_store, OlivineSettings()).train
    values = np.concatenate([t.bse[t.bse > 0] for t in tiles]).astype(np.float64)
    norm = _normalisation(tiles)
    assert norm.mean_dn == pytest.approx(values.mean(), abs=1e-3)
    assert norm.std_dn == pytest.approx(values.std(), abs=1e-3)
    assert _normalisation([]).std_dn == 1.0


def test_a_mosaic_off_the_training_grey_scale_is_mapped_back(tiny_store, tmp_path, caplog):
    """The card keeps the training tiles' grey landmarks; a segmenter maps a mosaic whose BSE
    is off them (the drift correction missing: the virtual SEM's next session) and no other,
    and segments the mapped grey as it would the original."""
    from semlive.models.olivine import OlivineSegmenter

    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    card = train_olivine(store, QUICK, resume=False)
    resin, groundmass = card.grey_landmarks_dn
    assert 2_000 < resin < 5_000 < 20_000 < groundmass < 30_000
    assert OlivineSegmenter(store, QUICK).mapping is None  # the session's own grey
    root = zarr.open_group(str(store / "mosaic.zarr"), mode="a")
    level = root["bse/0"]
    raw = np.asarray(level[:], np.float32)
    level[:] = np.where(raw > 0, np.clip(raw * 1.075 + 300, 1, 65535), 0).astype(level.dtype)
    with caplog.at_level("WARNING"):
        mapped = OlivineSegmenter(store, QUICK)
    assert mapped.mapping.gain == pytest.approx(1.075, abs=0.005)
    assert mapped.mapping.offset_dn == pytest.approx(300, abs=100)
    assert "is the drift correction missing?" in caplog.text
    off = QUICK.model_copy(update={"grey_landmarks": False})
    unmapped = OlivineSegmenter(store, off)
    assert unmapped.mapping is None

    def seen(segmenter):
        """The largest difference between the grey the network sees and the unshifted, over
        the silicates' grey (20,000-35,000 DN, olivine's included)."""
        stacks = []
        predict = segmenter.predict
        segmenter.predict = lambda stack: stacks.append(stack.copy()) or predict(stack)
        segmenter.segment_region((0, 0, *raw.shape))
        window = stacks[0][0]
        h, w = window.shape
        silicate = (raw[:h, :w] > 20_000) & (raw[:h, :w] < 35_000)
        return np.abs(window - raw[:h, :w])[silicate].max()

    assert seen(mapped) < 100  # DN: within what the drift correction leaves
    assert seen(unmapped) > 1_500
    provenance = root["bse/labels/olivine"].attrs["semlive"]
    assert provenance["grey_mapping"] is None  # the last segmentation's
