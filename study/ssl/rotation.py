"""Rotation prediction (Gidaris, Singh and Komodakis 2018, Unsupervised Representation Learning by
Predicting Image Rotations)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from study.data.pipeline import AugmentConfig
from study.ssl.base import CropMin, LearningRate, Optimizer, SSLMethod, WeightDecay


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of B x C x H x W at 0, 90, 180 and 270 degrees: (4B x C x H x W, 4B labels 0..3)."""
    views = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])
    return views, labels


class Rotation(SSLMethod):
    """A 4-way classifier on the backbone's features predicts which of 0/90/180/270 degrees each image
    was rotated by; all four rotations of an image are in the same batch (the paper's better variant).

    Defaults are the paper's: SGD lr 0.1, momentum 0.9, weight decay 5e-4. Views: crop (area 0.6-1) and
    horizontal flip only (a random rotation would make the target ambiguous).
    """

    name = "rotation"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 6.98

    class Hparams(SSLMethod.Hparams):
        optimizer: Optimizer = "sgd"
        lr: LearningRate = 0.1
        weight_decay: WeightDecay = 5e-4
        crop_min: CropMin = 0.6

    hp: Hparams

    def build(self) -> None:
        self.classifier = nn.Linear(self.feature_dim, 4)

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(self.hp.crop_min, 1.0), flip=True)

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        views, labels = rotate_batch(self.view(x))  # 4B x C x H x W
        logits = self.classifier(self.backbone(views))  # 4B x 4
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.argmax(1) == labels).float().mean()}
