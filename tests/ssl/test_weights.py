"""Local torchvision-ResNet weight files (Azizi et al. 2021's SimCLR-on-ImageNet start): read weights-only,
prefixes stripped, a clear error listing the keys that do not fit, the file's hash in the cache key."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import resnet50 as tv_resnet50

from study.models import build_backbone
from study.ssl import PretrainRequest, WeightsInit, load_encoder, pretrain, read_meta
from study.ssl.init import file_sha256, load_torchvision_weights, read_state_dict, strip_prefix


@pytest.fixture(scope="module")
def r50_state():
    torch.manual_seed(5)
    return tv_resnet50(weights=None).state_dict()


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("w") / "r18.pt"
    torch.save(tv_resnet18(weights=None).state_dict(), path)
    return path


def test_prefix_keeps_and_strips_only_its_keys():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    state = {"module.encoder.conv1.weight": a, "module.encoder.fc.bias": b, "module.head.0.weight": c}
    assert strip_prefix(state, "module.encoder.") == {"conv1.weight": a, "fc.bias": b}
    assert strip_prefix(state, "") == state
    with pytest.raises(ValueError, match=r"no key starts with prefix 'encoder\.'.*module\.encoder\.conv1\.weight"):
        strip_prefix(state, "encoder.")


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_read_plain_or_wrapped_state_dicts(wrap, tmp_path):
    state = {"conv1.weight": torch.arange(6.0).reshape(1, 6)}
    path = tmp_path / "w.pth"
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    assert torch.equal(read_state_dict(path)["conv1.weight"], state["conv1.weight"])


def test_unreadable_files_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such weight file"):
        read_state_dict(tmp_path / "nope.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pt")
    (tmp_path / "w.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="not a readable .safetensors file"):
        read_state_dict(tmp_path / "w.safetensors")


@pytest.mark.parametrize("channels", [1, 3])
def test_resnet50_loads_a_prefixed_checkpoint_with_a_projection_head(channels, r50_state, tmp_path):
    ckpt = {f"module.encoder.{k}": v for k, v in r50_state.items()}
    ckpt["module.projection.0.weight"] = torch.zeros(128, 2048)  # another part of the checkpoint: ignored
    path = tmp_path / "simclr_r50.pt"
    torch.save({"state_dict": ckpt}, path)
    net = build_backbone("resnet50", channels, 96)
    load_torchvision_weights(net, path, prefix="module.encoder.")
    assert torch.equal(net.layer4[2].conv3.weight, r50_state["layer4.2.conv3.weight"])
    assert torch.equal(net.bn1.running_var, r50_state["bn1.running_var"])
    want = r50_state["conv1.weight"] if channels == 3 else r50_state["conv1.weight"].sum(1, keepdim=True)
    assert torch.allclose(net.conv1.weight, want)


def test_keys_that_do_not_fit_are_listed(r18_file):
    with pytest.raises(ValueError) as e:
        load_torchvision_weights(build_backbone("resnet50", 3, 96), r18_file)
    msg = str(e.value)
    assert "do not fit the backbone" in msg and "docs/weights.md" in msg
    # ResNet-50 has 318 non-classifier entries, ResNet-18 120 (fc dropped); the first missing is layer1.0.conv3
    assert "missing" in msg and "layer1.0.conv3.weight" in msg
    assert "shapes differ" in msg and "layer1.0.conv1.weight (64, 64, 3, 3) vs (64, 64, 1, 1)" in msg


def test_file_hash_is_the_sha256_of_its_bytes(tmp_path):
    path = tmp_path / "f.pt"
    path.write_bytes(b"abc")
    assert file_sha256(path) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")
    assert file_sha256(path) == hashlib.sha256(b"abcd").hexdigest()  # not a stale memo


COMMON = dict(
    dataset="synthetic",
    dataset_options={"num_samples": 32, "image_size": 16, "views_per_patient": 2},
    split_seed=0,
    hparams={},
    backbone="resnet18",
    resolution=None,
    seed=0,
    batch_size=8,
)


def test_pretrained_is_the_file_and_its_key_holds_the_file_hash(r18_file, tmp_path):
    init = WeightsInit(weights=str(r18_file))
    path = pretrain(PretrainRequest(method="pretrained", epochs=0, init=init, **COMMON), tmp_path, device="cpu")
    enc, ref = load_encoder(path), torch.load(r18_file, weights_only=True)
    assert torch.equal(enc.layer3[1].conv2.weight, ref["layer3.1.conv2.weight"])
    meta = read_meta(path)
    assert meta["weights_sha256"] == hashlib.sha256(r18_file.read_bytes()).hexdigest()
    assert meta["init"] == {"weights": str(r18_file), "format": "torchvision", "prefix": "", "inputs": "imagenet"}
    again = pretrain(PretrainRequest(method="pretrained", epochs=5, init=init, **COMMON), tmp_path, device="cpu")
    assert again == path  # an untrained init: epochs do not change it
    # the same path with other contents is another encoder
    other = tmp_path / "other.pt"
    torch.manual_seed(8)
    torch.save(tv_resnet18(weights=None).state_dict(), other)
    moved = WeightsInit(weights=str(other))
    first = pretrain(PretrainRequest(method="pretrained", epochs=0, init=moved, **COMMON), tmp_path, device="cpu")
    torch.manual_seed(9)
    torch.save(tv_resnet18(weights=None).state_dict(), other)
    second = pretrain(PretrainRequest(method="pretrained", epochs=0, init=moved, **COMMON), tmp_path, device="cpu")
    assert first != second
    assert torch.equal(load_encoder(second).conv1.weight, torch.load(other, weights_only=True)["conv1.weight"])


def test_simclr_from_a_weight_file_trains_from_there(r18_file, tmp_path):
    init = WeightsInit(weights=str(r18_file))
    path = pretrain(PretrainRequest(method="simclr", epochs=1, init=init, **COMMON), tmp_path, device="cpu")
    enc, ref = load_encoder(path), torch.load(r18_file, weights_only=True)
    assert read_meta(path)["build_size"] == 96  # the ImageNet stem the file needs
    assert not torch.equal(enc.layer1[0].conv1.weight, ref["layer1.0.conv1.weight"])
    assert (enc.layer1[0].conv1.weight - ref["layer1.0.conv1.weight"]).abs().max() < 0.05  # near its start


@pytest.mark.parametrize(
    "method, init, backbone, match",
    [
        ("pretrained", "random", "resnet18", "needs init {weights: PATH}"),
        ("simclr", "weights", "small_cnn", "fits a torchvision ResNet"),
        ("random", "weights", "resnet18", "is method 'pretrained'"),
        ("imagenet", "weights", "resnet18", "for another file use 'pretrained'"),
    ],
)
def test_requests_that_cannot_exist(method, init, backbone, match, r18_file):
    start = WeightsInit(weights=str(r18_file)) if init == "weights" else init
    with pytest.raises(ValueError, match=match):
        PretrainRequest(**{**COMMON, "backbone": backbone, "method": method, "epochs": 1, "init": start})
