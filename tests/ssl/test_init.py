"""ImageNet initialisation: a clear error without the weight file, loading from a local file (grayscale too),
and "ImageNet + SSL" starting from those weights."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18 as tv_resnet18

from study.models import build_backbone
from study.ssl import PretrainRequest, load_encoder, pretrain, read_meta
from study.ssl.init import ENV_VAR, TORCHVISION_FILE, find_imagenet_weights, load_imagenet_weights


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """A torchvision ResNet-18 state dict with recognisable values, standing in for the ImageNet file."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("weights") / TORCHVISION_FILE
    torch.save(tv_resnet18(weights=None).state_dict(), path)
    return path


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=f"{TORCHVISION_FILE}.*{ENV_VAR}") as e:
        find_imagenet_weights()
    assert str(tmp_path / "hub" / "checkpoints" / TORCHVISION_FILE) in str(e.value)


def test_weights_from_env_var(fake_weights, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(fake_weights))
    assert find_imagenet_weights() == fake_weights


@pytest.mark.parametrize("channels", [1, 3])
def test_load_into_backbone(fake_weights, channels):
    ref = torch.load(fake_weights, weights_only=True)
    net = build_backbone("resnet18", channels, 96)
    load_imagenet_weights(net, fake_weights)
    assert torch.equal(net.layer4[1].conv2.weight, ref["layer4.1.conv2.weight"])
    expected = ref["conv1.weight"] if channels == 3 else ref["conv1.weight"].sum(1, keepdim=True)
    assert torch.allclose(net.conv1.weight, expected)


def test_imagenet_and_imagenet_plus_ssl(fake_weights, tmp_path):
    opts = {"num_samples": 32, "image_size": 16, "views_per_patient": 1}
    common = dict(
        dataset="synthetic",
        dataset_options=opts,
        split_seed=0,
        hparams={},
        backbone="resnet18",
        resolution=None,
        seed=0,
        batch_size=8,
    )
    plain = pretrain(
        PretrainRequest(method="imagenet", epochs=0, init="imagenet", **common),
        tmp_path,
        device="cpu",
        imagenet_weights=fake_weights,
    )
    enc = load_encoder(plain)
    ref = torch.load(fake_weights, weights_only=True)
    assert torch.equal(enc.layer1[0].conv1.weight, ref["layer1.0.conv1.weight"])
    assert read_meta(plain)["build_size"] == 96  # the ImageNet stem, whatever the image size
    tuned = pretrain(
        PretrainRequest(method="rotation", epochs=1, init="imagenet", **common),
        tmp_path,
        device="cpu",
        imagenet_weights=fake_weights,
    )
    enc2 = load_encoder(tuned)
    assert read_meta(tuned)["init"] == "imagenet"
    assert not torch.equal(enc2.layer1[0].conv1.weight, ref["layer1.0.conv1.weight"])  # trained from there
    assert enc2(torch.zeros(2, 3, 16, 16)).shape == (2, 512)
