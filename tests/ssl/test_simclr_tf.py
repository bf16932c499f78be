"""scripts/simclr_tf_to_torchvision.py on a synthetic `.npz` of SimCLR-style TensorFlow variables: the key
order, the kernel layout, the batch-norm names, and the result loading into the resnet50 backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import resnet50

from scripts.simclr_tf_to_torchvision import convert, main, torchvision_order
from study.models import build_backbone
from study.ssl.init import load_torchvision_weights

TF_BN = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def test_simclr_creation_order_of_a_resnet50():
    convs, bns = torchvision_order(50)
    # 1 stem + 16 blocks x 3 + 4 projection shortcuts
    assert len(convs) == len(bns) == 53
    assert convs[:5] == ["conv1", "layer1.0.downsample.0", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"]
    assert convs[5] == "layer1.1.conv1" and convs[11] == "layer2.0.downsample.0" and convs[52] == "layer4.2.conv3"
    assert bns[1] == "layer1.0.downsample.1" and bns[52] == "layer4.2.bn3"


def tf_variables(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``state`` named as SimCLR's TF1 ResNet names it, with the variables a real checkpoint also holds."""
    convs, bns = torchvision_order(50)
    out: dict[str, np.ndarray] = {}
    for i, n in enumerate(convs):
        suffix = f"_{i}" if i else ""
        out[f"base_model/conv2d{suffix}/kernel"] = state[f"{n}.weight"].numpy().transpose(2, 3, 1, 0)
        out[f"base_model/conv2d{suffix}/kernel/Momentum"] = np.zeros(1)  # optimiser slot: ignored
    for i, n in enumerate(bns):
        suffix = f"_{i}" if i else ""
        for tv, tf in TF_BN.items():
            out[f"base_model/batch_normalization{suffix}/{tf}"] = state[f"{n}.{tv}"].numpy()
    out["head_contrastive/nl_0/dense/kernel"] = np.zeros((2048, 2048), dtype=np.float32)
    out["global_step"] = np.array(1000)
    keys = list(out)
    np.random.default_rng(0).shuffle(keys)  # order in the file means nothing
    return {k: out[k] for k in keys}


@pytest.fixture(scope="module")
def r50():
    torch.manual_seed(3)
    net = resnet50(weights=None)
    for m in net.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}


def test_kernel_layout_by_hand():
    state = {k: torch.zeros_like(v) for k, v in resnet50(weights=None).state_dict().items()}
    variables = tf_variables(state)
    variables["base_model/conv2d_2/kernel"][0, 0, 5, 7] = 3.0  # layer1.0.conv1: 1x1, in 64, out 64
    variables["base_model/conv2d/kernel"][1, 2, 0, 4] = 2.0  # stem 7x7: H 1, W 2, in 0, out 4
    variables["base_model/batch_normalization_52/moving_variance"][9] = 4.0  # layer4.2.bn3
    got = convert(variables)
    assert got["layer1.0.conv1.weight"][7, 5, 0, 0] == 3.0 and got["layer1.0.conv1.weight"].abs().sum() == 3.0
    assert got["conv1.weight"][4, 0, 1, 2] == 2.0
    assert got["layer4.2.bn3.running_var"][9] == 4.0


def test_round_trip_through_an_npz_and_into_the_backbone(r50, tmp_path):
    npz, out = tmp_path / "r50_1x.npz", tmp_path / "r50_1x.pt"
    np.savez(npz, **tf_variables(r50))
    assert main([str(npz), str(out)]) == 0
    got = torch.load(out, weights_only=True)
    assert set(got) == set(r50)
    for k, v in r50.items():
        assert torch.equal(got[k], v), k
    net = build_backbone("resnet50", 3, 224)
    load_torchvision_weights(net, out)
    assert torch.equal(net.layer3[5].conv2.weight, r50["layer3.5.conv2.weight"])


def test_wrong_depth_or_scope_is_refused(r50, tmp_path, capsys):
    variables = tf_variables(r50)
    with pytest.raises(ValueError, match="found 53 convolution kernels.*ResNet-101 has 104"):
        convert(variables, depth=101)
    with pytest.raises(ValueError, match="found 0 convolution kernels under 'resnet/'"):
        convert(variables, scope="resnet/")
    wide = dict(variables, **{"base_model/conv2d/kernel": np.zeros((7, 7, 3, 128), dtype=np.float32)})
    with pytest.raises(ValueError, match=r"conv1.weight \(128, 3, 7, 7\) vs \(64, 3, 7, 7\)"):
        convert(wide)
    np.savez(tmp_path / "v.npz", **variables)
    assert main([str(tmp_path / "v.npz"), str(tmp_path / "o.pt"), "--depth", "152"]) == 2
    assert "ResNet-152 has 155" in capsys.readouterr().err
