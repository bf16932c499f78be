"""Backbones give feature vectors at any resolution and channel count; frozen encoders stay fixed."""

from __future__ import annotations

import pytest
import torch

from study.models import BACKBONES, Classifier, build_backbone
from study.registry import UnknownNameError


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (3, 112)])
def test_backbone_shapes(name, channels, size):
    net = build_backbone(name, channels, size)
    out = net(torch.randn(2, channels, size, size))
    assert out.shape == (2, net.feature_dim)


def test_unknown_backbone():
    with pytest.raises(
        UnknownNameError, match="allowed: resnet101, resnet152, resnet18, resnet34, resnet50, small_cnn"
    ):
        BACKBONES["vit"]


def test_frozen_classifier_keeps_encoder():
    clf = Classifier(build_backbone("small_cnn", 1, 16), 3, hidden=(8,), frozen=True)
    before = {k: v.clone() for k, v in clf.encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in clf.parameters() if p.requires_grad], lr=0.5)
    clf.train()
    for _ in range(3):
        loss = clf(torch.randn(4, 1, 16, 16)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in clf.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k  # weights and BatchNorm statistics


def test_every_backbone_has_its_cost_figure():
    from study.models import BACKBONE_COSTS, BackboneCost

    assert set(BACKBONE_COSTS) == set(BACKBONES)
    assert BACKBONE_COSTS["resnet18"] == BackboneCost(native_resolution=224, images_per_second=2500.0)
    assert BACKBONE_COSTS["small_cnn"] == BackboneCost(native_resolution=32, images_per_second=40000.0)
    with pytest.raises(
        UnknownNameError, match="allowed: resnet101, resnet152, resnet18, resnet34, resnet50, small_cnn"
    ):
        BACKBONE_COSTS["vit"]


@pytest.mark.parametrize(
    "name,dim", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048), ("resnet101", 2048), ("resnet152", 2048)]
)
def test_torchvision_resnets_declare_their_feature_width(name, dim):
    net = build_backbone(name, 1, 16)  # CIFAR stem, grayscale
    assert net.feature_dim == dim
    assert net.conv1.weight.shape == (64, 1, 3, 3)
    with torch.no_grad():
        assert net.eval()(torch.randn(2, 1, 16, 16)).shape == (2, dim)


def test_resnet50_takes_torchvision_parameter_names_and_heads_read_its_width():
    from torchvision.models import resnet50

    net = build_backbone("resnet50", 3, 96)  # the ImageNet stem
    ref = {k for k in resnet50(weights=None).state_dict() if not k.startswith("fc.")}
    assert set(net.state_dict()) == ref
    clf = Classifier(net, 5, hidden=(8,))
    assert clf.head[0].in_features == 2048
    with torch.no_grad():
        assert clf.eval()(torch.randn(1, 3, 96, 96)).shape == (1, 5)


def test_deeper_resnets_cost_more_by_their_multiply_adds():
    from study.models import BACKBONE_COSTS

    ips = {
        n: BACKBONE_COSTS[n].images_per_second for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    }
    # ResNet-18's 2500 images/s scaled by 1.81 GFLOPs / the model's (3.66, 4.09, 7.80, 11.51)
    for name, gflops in (("resnet34", 3.66), ("resnet50", 4.09), ("resnet101", 7.80), ("resnet152", 11.51)):
        assert ips[name] == pytest.approx(2500 * 1.81 / gflops, rel=0.01)
        assert BACKBONE_COSTS[name].native_resolution == 224


def test_ssl_projector_and_linear_probe_read_the_backbone_width():
    from study.lnl.linear_probe import feature_dim
    from study.ssl.simclr import SimCLR

    net = build_backbone("resnet50", 3, 16)
    method = SimCLR(net, 3, 16)
    assert method.projection_head.layers[0].in_features == 2048
    assert feature_dim(net) == 2048
