"""Backbones (encoders that map images to feature vectors) and the classifier built on them.

``BACKBONES[name](in_channels, image_size)`` returns an ``nn.Module`` with attribute ``feature_dim``;
``BACKBONE_COSTS[name]`` is its throughput figure for the study's compute estimate. ``register_backbone``
adds both at once, so a new backbone brings its figure with it. Any timm architecture is a backbone too, as
``timm:<architecture>`` (``study.models.timm_encoders``): ``build_backbone``, ``check_backbone`` and
``backbone_cost`` take both kinds of name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from study.models.timm_encoders import PREFIX as TIMM_PREFIX
from study.models.timm_encoders import check_timm_name, is_timm, timm_backbone
from study.registry import Registry


class SmallCNN(nn.Module):
    """A three-block CNN for CPU runs: conv-BN-ReLU then max-pool per block (widths w, 2w, 4w), global pooling.

    About 7.5 M multiply-adds per 28 px image at the default width, so Fashion-MNIST trains at thousands
    of images per second on two CPU cores.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, width: int = 32) -> None:
        super().__init__()
        chans = [in_channels, width, width * 2, width * 4]
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # B x feature_dim


class TwoConvCNN(nn.Module):
    """A network able to memorise wrong labels on 28 px images: two 3x3 convolutions (32 and 64 channels,
    ReLU, 2x2 max-pool after each), then a 128-unit fully connected layer: about 420 k parameters at 28 px,
    96 % of them in that layer. No BatchNorm, no dropout.

    The conv-pool-conv-pool-dense design of LeCun et al. 1998 ("Gradient-based learning applied to document
    recognition") at the widths of the common MNIST baseline. It is here for the LNL effects benchmark: a
    network that fits noisy labels given enough epochs without augmentation (Zhang et al. 2017,
    "Understanding deep learning requires rethinking generalization"; Arpit et al. 2017, "A closer look at
    memorization in deep networks"), which is the failure LNL methods address; ``small_cnn`` (global
    pooling, BatchNorm, 24 k parameters at width 16) barely memorises in the epochs a CPU allows.
    ``feature_dim`` is 128 (the dense layer, after its ReLU); the classifier's head maps it to the classes.
    Inputs of another size than ``image_size`` (jigsaw's and JigMag's tiles) are average-pooled to the grid
    the dense layer expects (``AdaptiveAvgPool2d``: the identity at ``image_size``, a replication for smaller
    maps), so the network takes any input size, as the globally pooled backbones do.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.grid = nn.AdaptiveAvgPool2d(side)  # no parameters: state dicts are as before it existed
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(inplace=True))
        self.feature_dim = 128

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.grid(self.features(x)))  # B x 128


#: torchvision ResNets (He et al. 2016) and their feature widths (the pooled output of layer4)
RESNET_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}


def torchvision_resnet(name: str, in_channels: int = 3, image_size: int = 224) -> nn.Module:
    """torchvision's ResNet ``name`` without its classifier (He et al. 2016), any channel count; the
    module's ``feature_dim`` is the width of its pooled features (512 or 2048).

    Below 96 px the stem is the CIFAR variant (3x3 stride-1 conv, no max-pool), so small images keep
    their spatial resolution; at 96 px and above it is the ImageNet stem, which ImageNet weights need.
    Parameter names are torchvision's, so a torchvision state dict loads as it is (``study.ssl.init``).
    """
    import torchvision.models

    net = getattr(torchvision.models, name)(weights=None)
    if image_size < 96:
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    net.feature_dim = RESNET_FEATURES[name]
    return net


def resnet18(in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return torchvision_resnet("resnet18", in_channels, image_size)


def resnet34(in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return torchvision_resnet("resnet34", in_channels, image_size)


def resnet50(in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return torchvision_resnet("resnet50", in_channels, image_size)


def resnet101(in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return torchvision_resnet("resnet101", in_channels, image_size)


def resnet152(in_channels: int = 3, image_size: int = 224) -> nn.Module:
    return torchvision_resnet("resnet152", in_channels, image_size)


def small_cnn(in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return SmallCNN(in_channels, image_size)


def two_conv_cnn(in_channels: int = 1, image_size: int = 28) -> nn.Module:
    return TwoConvCNN(in_channels, image_size)


@dataclass(frozen=True)
class BackboneCost:
    """Training throughput of a backbone for the compute estimate: images per second on one reference GPU
    (A100, mixed precision) at ``native_resolution``; the estimate scales it by (native / resolution)^2."""

    native_resolution: int
    images_per_second: float


BackboneFactory = Callable[..., nn.Module]  # (in_channels, image_size) -> nn.Module with feature_dim

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
BACKBONE_COSTS: Registry[BackboneCost] = Registry("backbone cost")


def register_backbone(name: str, factory: BackboneFactory, cost: BackboneCost) -> BackboneFactory:
    """Register ``factory`` under ``name`` with its throughput figure (both registries warn on overwrite)."""
    BACKBONE_COSTS.register(name, cost)
    return BACKBONES.register(name, factory)


register_backbone("resnet18", resnet18, BackboneCost(native_resolution=224, images_per_second=2500.0))
# the deeper ResNets: ResNet-18's figure scaled by the ratio of multiply-adds per 224 px image (torchvision's
# model cards: 1.81, 3.66, 4.09, 7.80, 11.51 GFLOPs); an estimate, not a measurement (docs/weights.md)
register_backbone("resnet34", resnet34, BackboneCost(native_resolution=224, images_per_second=1240.0))
register_backbone("resnet50", resnet50, BackboneCost(native_resolution=224, images_per_second=1100.0))
register_backbone("resnet101", resnet101, BackboneCost(native_resolution=224, images_per_second=580.0))
register_backbone("resnet152", resnet152, BackboneCost(native_resolution=224, images_per_second=390.0))
register_backbone("small_cnn", small_cnn, BackboneCost(native_resolution=32, images_per_second=40000.0))
# about 4 M multiply-adds per 28 px image against small_cnn's 7.5 M at width 32 (an estimate, not measured)
register_backbone("two_conv_cnn", two_conv_cnn, BackboneCost(native_resolution=28, images_per_second=60000.0))


#: the figure of every ``timm:`` backbone, whatever its size: a conservative default (below ResNet-152's 390
#: images/s, so ViT-B/16, Swin-T and ResNet-50, the encoders of Dedieu et al. 2024, are not underestimated;
#: larger ViTs are); not a measurement (docs/weights.md)
TIMM_COST = BackboneCost(native_resolution=224, images_per_second=300.0)


def check_backbone(name: str) -> str:
    """``name`` when it is a backbone (registered, or ``timm:<architecture>`` that timm knows); a ValueError
    listing the registered names and the timm form otherwise."""
    if is_timm(name):
        return check_timm_name(name)
    if name not in BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r} (allowed: {', '.join(BACKBONES)}, or {TIMM_PREFIX}<architecture> for any "
            "timm model, e.g. timm:resnet50)"
        )
    return name


def backbone_cost(name: str) -> BackboneCost:
    """The throughput figure of a backbone for the compute estimate (``TIMM_COST`` for every timm one)."""
    return TIMM_COST if is_timm(name) else BACKBONE_COSTS[name]


def build_backbone(name: str, in_channels: int, image_size: int) -> nn.Module:
    """A fresh, randomly initialised backbone (a registered one, or a timm architecture) for images of
    ``in_channels`` channels and side ``image_size``."""
    if is_timm(name):
        return timm_backbone(name, in_channels, image_size)
    return BACKBONES[name](in_channels=in_channels, image_size=image_size)


def mlp_head(in_dim: int, num_classes: int, hidden: tuple[int, ...] = ()) -> nn.Module:
    """A linear head, or an MLP with ReLU between the ``hidden`` layers (Dedieu et al. 2024: 512-128-64)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-1], num_classes))
    return nn.Sequential(*layers)


class Classifier(nn.Module):
    """An encoder and a head. ``frozen`` keeps the encoder's weights and BatchNorm statistics fixed."""

    def __init__(
        self, encoder: nn.Module, num_classes: int, hidden: tuple[int, ...] = (), frozen: bool = False
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = mlp_head(encoder.feature_dim, num_classes, hidden)
        self.frozen = frozen
        if frozen:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen:
            with torch.no_grad():
                return self.encoder(x)
        return self.encoder(x)
