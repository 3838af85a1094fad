"""The GDLS embedding: band resampling, the torch port of the authors' Keras network, bad files.

The port is checked against an interpreter of the Keras file written here from Keras's layer
semantics and driven by the file's own model config (channels-last convolutions, Keras's batch
norm, (length, channel) flattening), so a transposed kernel or a flatten in the wrong order
fails it; where TensorFlow is installed, against Keras itself as well.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from semlive.errors import InputDataError
from semlive.models.gdls import (
    BAND_CHANNELS,
    SpectrumEmbedding,
    band_centres_ev,
    embed,
    load_keras_embedding,
    to_band,
)
from semlive.physics import EdsDetector, expected_spectrum, load_library, sample_spectrum


@pytest.fixture
def keras_file(shared_data):
    return shared_data / "reference" / "gdls-embedding.h5"


@pytest.fixture
def published(keras_file):
    return load_keras_embedding(keras_file)


def _spectra(n_per_mineral, counts, seed, names=("forsterite", "diopside", "anorthite")):
    """Poisson spectra of a few minerals on the band, with their mineral index."""
    library = load_library()
    detector = EdsDetector(channel_offset_ev=200.0, channel_width_ev=10.0, channels=BAND_CHANNELS)
    rng = np.random.default_rng(seed)
    spectra, labels = [], []
    for k, name in enumerate(names):
        expected = expected_spectrum(library.mineral(name).composition, detector)
        for _ in range(n_per_mineral):
            spectra.append(sample_spectrum(expected, counts, rng))
            labels.append(k)
    return np.asarray(spectra, np.float32), np.asarray(labels)


def test_a_spectrum_on_the_band_grid_is_copied_exactly():
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, (3, 2048))  # channel k centred at k·10 eV
    band = to_band(counts, 0.0, 10.0)
    assert band.shape == (3, BAND_CHANNELS)
    np.testing.assert_array_equal(band, counts[:, 20 : 20 + BAND_CHANNELS])


def test_rebinning_conserves_counts_and_keeps_peaks_at_their_energy():
    # Bruker-like: 5 eV channels from −475 eV; a peak at the Si Kα energy (1,740 eV)
    offset, width = -475.0, 5.0
    centres = offset + width * np.arange(4096)
    spectrum = 1000 * np.exp(-0.5 * ((centres - 1740.0) / 40.0) ** 2) + 2.0
    band = to_band(spectrum, offset, width)
    inside = (centres >= 195.0 - width / 2) & (centres < 15555.0 + width / 2)
    assert band.sum() == pytest.approx(spectrum[inside].sum(), rel=1e-3)
    assert band_centres_ev()[np.argmax(band)] == pytest.approx(1740.0, abs=10.0)
    assert np.all(band >= 0)


def test_bad_channel_axes_are_refused_with_what_was_given():
    with pytest.raises(InputDataError, match="positive number of eV"):
        to_band(np.ones(10), 0.0, 0.0)
    with pytest.raises(InputDataError, match="channel axis"):
        to_band(np.float64(3.0), 0.0, 10.0)


def _keras_reference(path, x):
    """The Keras model of ``path`` evaluated with NumPy, layer by layer from its config."""
    with h5py.File(path, "r") as f:
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        group = f["model_weights"]

        def weights(name):
            layer = group[name]
            return {
                n.decode().rsplit("/", 1)[-1].split(":")[0]: np.asarray(
                    layer[n.decode()], np.float64
                )
                for n in layer.attrs["weight_names"]
            }

        x = np.asarray(x, np.float64)[..., None]  # (N, length, channels)
        for layer in layers:
            kind, config = layer["class_name"], layer["config"]
            if kind == "TensorFlowOpLayer":
                constant = np.asarray(config["constants"]["1"], np.float64)
                x = x - constant if config["node_def"]["op"] == "Sub" else x / constant
            elif kind == "BatchNormalization":
                w = weights(config["name"])
                scale = w["gamma"] / np.sqrt(w["moving_variance"] + config["epsilon"])
                x = (x - w["moving_mean"]) * scale + w["beta"]
            elif kind == "Conv1D":
                w = weights(config["name"])
                k = w["kernel"].shape[0]
                windows = np.lib.stride_tricks.sliding_window_view(x, k, axis=1)  # (N, L', C, k)
                x = np.einsum("nlck,kco->nlo", windows, w["kernel"]) + w["bias"]
            elif kind == "Activation" or (kind == "Dense" and config["activation"] == "relu"):
                if kind == "Dense":
                    w = weights(config["name"])
                    x = x @ w["kernel"] + w["bias"]
                x = np.maximum(x, 0)
            elif kind == "Dense":
                w = weights(config["name"])
                x = x @ w["kernel"] + w["bias"]
            elif kind == "AveragePooling1D":
                half = x.shape[1] // 2
                x = x[:, : 2 * half].reshape(x.shape[0], half, 2, x.shape[2]).mean(axis=2)
            elif kind == "Flatten":
                x = x.reshape(x.shape[0], -1)
            elif kind == "Lambda":
                x = x / np.sqrt(np.maximum((x**2).sum(axis=1, keepdims=True), 1e-12))
            else:
                assert kind in ("InputLayer", "Dropout"), kind
        return x


def test_the_torch_port_computes_what_the_keras_file_defines(keras_file, published):
    spectra, _ = _spectra(4, 1000, seed=1)
    ours = embed(published, spectra)
    reference = _keras_reference(keras_file, spectra)
    assert ours.shape == (len(spectra), 64)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_the_torch_port_matches_keras_itself(keras_file, published):
    keras = pytest.importorskip("keras", reason="TensorFlow/Keras not installed (extra 'tf')")
    with h5py.File(keras_file, "r") as f:
        layers_config = json.loads(f.attrs["model_config"])["config"]["layers"]
        group = f["model_weights"]
        stored = {
            name: [np.asarray(group[name][n.decode()]) for n in group[name].attrs["weight_names"]]
            for name in group
            if len(group[name].attrs["weight_names"])
        }
    # rebuilt from the config (load_model cannot unmarshal the Python 3.6 Lambda)
    inputs = keras.Input((BAND_CHANNELS, 1))
    x = inputs
    for layer in layers_config:
        kind, config = layer["class_name"], layer["config"]
        if kind == "TensorFlowOpLayer":
            constant = np.asarray(config["constants"]["1"], np.float32)
            x = x - constant if config["node_def"]["op"] == "Sub" else x / constant
        elif kind == "Lambda":
            x = keras.layers.UnitNormalization(axis=1)(x)
        elif kind != "InputLayer":
            cls = getattr(keras.layers, kind)
            keep = {k: v for k, v in config.items() if k not in ("trainable", "dtype", "name")}
            if kind == "BatchNormalization":
                keep = {"axis": -1, "momentum": config["momentum"], "epsilon": config["epsilon"]}
            built = cls(
                **{k: v for k, v in keep.items() if k in _init_args(cls)}, name=config["name"]
            )
            x = built(x)
    model = keras.Model(inputs, x)
    for name, values in stored.items():
        model.get_layer(name).set_weights(values)
    spectra, _ = _spectra(4, 1000, seed=2)
    theirs = model.predict(spectra[..., None], verbose=0)
    np.testing.assert_allclose(embed(published, spectra), theirs, atol=1e-4)


def _init_args(cls):
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def test_same_mineral_spectra_embed_closer_than_different_minerals(published):
    spectra, labels = _spectra(12, 1000, seed=3)
    z = embed(published, spectra)
    distance = np.linalg.norm(z[:, None] - z[None], axis=2)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(len(z), dtype=bool)
    assert distance[same & off_diagonal].mean() < 0.5 * distance[~same].mean()


def test_not_the_embedding_is_refused_with_the_difference_named(tmp_path, keras_file):
    with pytest.raises(InputDataError, match="no embedding file"):
        load_keras_embedding(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputDataError, match="not an HDF5 file"):
        load_keras_embedding(tmp_path / "text.h5")
    altered = tmp_path / "altered.h5"
    with h5py.File(keras_file, "r") as src, h5py.File(altered, "w") as dst:
        config = json.loads(src.attrs["model_config"])
        dense = [x for x in config["config"]["layers"] if x["class_name"] == "Dense"]
        dense[0]["config"]["units"] = 128
        dst.attrs["model_config"] = json.dumps(config)
        src.copy("model_weights", dst)
    with pytest.raises(InputDataError, match="Dense \\(128,\\) where Dense \\(256,\\)"):
        load_keras_embedding(altered)


def test_a_fresh_network_trains_a_step_and_keeps_unit_outputs():
    torch.manual_seed(0)
    model = SpectrumEmbedding()
    x = torch.rand(8, BAND_CHANNELS) * 50
    out = model(x)
    assert out.shape == (8, 64)
    out.sum().backward()
    assert model.features[0].weight.grad is not None
    torch.testing.assert_close(out.norm(dim=1), torch.ones(8))


def test_held_out_evaluation_scores_the_published_embedding(published):
    from semlive.models.gdls import evaluate_embedding
    from semlive.models.gdls._materials import held_out_materials, training_materials

    held = held_out_materials()
    trained = {m.name for m in training_materials(mixtures=200)}
    assert not trained & {m.name for m in held}  # disjoint by construction
    scores = evaluate_embedding(published, held[:60])
    assert scores["materials"] == 60
    assert 0.95 < scores["roc_auc"] <= 1.0
    assert 0.5 < scores["retrieval_accuracy"] <= 1.0


def test_training_is_seeded_and_lowers_the_loss():
    from semlive.models.gdls import EmbeddingTraining, train_embedding

    settings = EmbeddingTraining(steps=30, mixtures=50, materials_per_batch=16, seed=4)
    losses = []
    # one thread: the order of a multi-threaded reduction varies from run to run, and its
    # rounding (~1e-5 after 30 steps, seen once in a CI run of 2026-12-07) is not the seed's
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first, _ = train_embedding(settings, lambda step, loss: losses.append(loss))
        again, _ = train_embedding(settings)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_the_packaged_embedding_beats_the_published_one_on_held_out_materials(published, tmp_path):
    from semlive.models.gdls import evaluate_embedding, load_embedding, save_embedding

    ours, card = load_embedding()
    assert card.command.startswith("semlive gdls train-embedding")
    mine, theirs = evaluate_embedding(ours), evaluate_embedding(published)
    assert mine["roc_auc"] >= theirs["roc_auc"]
    assert mine["retrieval_accuracy"] >= theirs["retrieval_accuracy"]
    assert mine == pytest.approx(card.metrics["held_out"])  # the card tells the truth
    save_embedding(ours, card, tmp_path / "copy")
    copy, _ = load_embedding(tmp_path / "copy")
    spectra, _ = _spectra(3, 1000, seed=9)
    np.testing.assert_array_equal(embed(copy, spectra), embed(ours, spectra))


def test_an_embedding_folder_without_a_card_is_refused(tmp_path):
    from semlive.models.gdls import load_embedding

    with pytest.raises(InputDataError, match="semlive gdls train-embedding"):
        load_embedding(tmp_path)


def test_train_embedding_command_writes_a_loadable_embedding_with_its_card(tmp_path, capsys):
    from semlive.cli import main
    from semlive.models.gdls import load_embedding

    out = tmp_path / "embedding"
    assert (
        main(["gdls", "train-embedding", "--steps", "3", "--mixtures", "10", "--out", str(out)])
        == 0
    )
    assert "held-out materials" in capsys.readouterr().out
    _, card = load_embedding(out)
    assert card.command == "semlive gdls train-embedding --steps 3 --seed 0 --mixtures 10"
    assert 0.5 <= card.metrics["held_out"]["roc_auc"] <= 1.0
    assert card.training["steps"] == 3
