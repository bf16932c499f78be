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
    with pytest.raises(UnknownNameError, match="allowed: resnet18, small_cnn"):
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
    with pytest.raises(UnknownNameError, match="allowed: resnet18, small_cnn"):
        BACKBONE_COSTS["vit"]
