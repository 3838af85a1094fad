"""The shared contract every registered network meets (CPU only): odd tile sizes forward and
backward, a save/load round trip with identical outputs, the same outputs with its batch norms
folded for inference, and refusals of mismatched artefacts."""

import json

import pytest
import torch

from semlive.errors import InputDataError, UsageError
from semlive.models import (
    ARCHITECTURES,
    ModelCard,
    Normalisation,
    Runtime,
    build_network,
    load_initial_weights,
    load_model,
    save_model,
)

NORM = Normalisation(25_000.0, 6_000.0)


@pytest.fixture(params=sorted(ARCHITECTURES), scope="module")
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def network(arch):
    torch.manual_seed(0)
    return build_network(arch)


@pytest.mark.parametrize("shape", [(67, 93), (130, 61)])
def test_forward_and_backward_on_odd_tile_sizes(network, shape):
    network.train()
    x = torch.randn(2, 1, *shape)
    out = network(x)
    assert out.shape == (2, 1, *shape)
    out.mean().backward()
    grads = [p.grad for p in network.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)
    network.zero_grad()


def test_save_load_round_trip_gives_identical_outputs(arch, network, tmp_path):
    network.eval()
    card = ModelCard(architecture=arch, normalisation=NORM, dlth=0.4)
    save_model(tmp_path / "m", network, card)
    loaded, loaded_card = load_model(tmp_path / "m")
    assert loaded_card == card
    x = torch.randn(1, 1, 96, 80)
    with torch.no_grad():
        assert torch.equal(network(x), loaded(x))
    # the weights file is safetensors, never a pickle
    assert (tmp_path / "m" / "weights.safetensors").read_bytes()[8:9] == b"{"


def test_inference_on_the_cpu_folds_the_batch_norms_and_gives_the_same_outputs(network):
    network.train()
    with torch.no_grad():  # batch statistics that are not the initial (0, 1)
        for _ in range(3):
            network(torch.randn(2, 1, 96, 128) * 2 + 0.5)
    network.eval()
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    folded = Runtime(torch.device("cpu"), "float32").prepare(network, inference=True)
    assert norms > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    # the network given is left as it was: training goes on with its batch norms
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == norms
    x = torch.randn(2, 1, 75, 101)
    with torch.no_grad():
        expected = network(x)
        got = folded(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_card_that_does_not_match_is_refused_with_the_difference(arch, network, tmp_path):
    card = ModelCard(architecture=arch, normalisation=NORM, dlth=0.5)
    save_model(tmp_path / "m", network, card)
    other = next(a for a in ARCHITECTURES if a != arch)
    with pytest.raises(InputDataError, match=f"is a {arch} model, not {other}"):
        load_model(tmp_path / "m", architecture=other)
    with pytest.raises(InputDataError, match="normalises BSE as"):
        load_model(tmp_path / "m", normalisation=Normalisation(20_000.0, 6_000.0))
    # a card edited to claim the other architecture: the weights do not fit it
    data = json.loads((tmp_path / "m" / "card.json").read_text())
    data["architecture"] = other
    (tmp_path / "m" / "card.json").write_text(json.dumps(data))
    with pytest.raises(InputDataError, match=f"do not fit the card's architecture {other}"):
        load_model(tmp_path / "m")


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(UsageError, match="deeplabv3_mobilenet_v3_large"):
        build_network("unet")


@pytest.mark.parametrize(
    "name", ["deeplabv3_mobilenet_v3_large", "deeplabv3plus_mobilenet_v3_large"]
)
def test_initial_weights_from_an_rgb_torchvision_file_fold_into_the_grey_stem(name, tmp_path):
    from safetensors.torch import save_file

    from semlive.models import import_torchvision
    from semlive.models._networks import stem_key

    tv = import_torchvision()
    torch.manual_seed(1)
    rgb = tv.models.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=False
    )
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, tmp_path / "w.safetensors")
    net = build_network(name)
    load_initial_weights(net, name, tmp_path / "w.safetensors")
    own = net.state_dict()
    stem = rgb.state_dict()["backbone.0.0.weight"]
    assert torch.equal(own[stem_key(net, name)], stem.sum(1, keepdim=True))
    # grey replicated to RGB through the original backbone == grey through the folded stem
    rgb.eval()
    net.eval()
    grey = torch.randn(1, 1, 64, 64)
    backbone = net.inner.backbone if hasattr(net, "inner") else net.backbone
    with torch.no_grad():
        a = rgb.backbone(grey.expand(1, 3, 64, 64))["out"]
        b = backbone(grey)["out"]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # the ASPP is taken too; a 21-class output layer does not fit one logit and is skipped
    aspp = (
        "inner.classifier.0.project.0.weight" if hasattr(net, "inner") else "aspp.project.0.weight"
    )
    assert torch.equal(own[aspp], rgb.state_dict()["classifier.0.project.0.weight"])


def test_initial_weights_that_fit_nothing_are_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.zeros(3, 3)}, tmp_path / "w.safetensors")
    net = build_network("deeplabv3_mobilenet_v3_large")
    with pytest.raises(InputDataError, match="no weights that fit"):
        load_initial_weights(net, "deeplabv3_mobilenet_v3_large", tmp_path / "w.safetensors")
