"""MoCo v2 (Chen, Fan, Girshick and He 2020, Improved Baselines with Momentum Contrastive Learning; He et
al. 2020, Momentum Contrast for Unsupervised Visual Representation Learning)."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from pydantic import Field
from torch import nn

from study.ssl.base import ContrastiveMethod, CropMin, LearningRate, Optimizer, WeightDecay


class MoCoV2(ContrastiveMethod):
    """A query encoder trained by InfoNCE against keys from a momentum (EMA) copy of itself, with a queue
    of past keys as the negatives; v2 adds the MLP projection head, stronger augmentation and cosine decay.

    Defaults are the paper's: SGD lr 0.03 (batch 256), momentum 0.9, weight decay 1e-4, temperature 0.2,
    key-encoder momentum 0.999, queue 65,536 keys, 2048-d hidden layer, 128-d output. The queue is capped
    at the number of training images (a longer queue would hold several stale copies of every image); the
    cap is announced. Shuffle-BN needs several devices and is not done (as in lightly's single-device
    example). Views: crop (area 0.2-1, MoCo's), flip, rotation up to 45 degrees, colour jitter 0.5, no blur.
    """

    name = "moco_v2"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 2.71

    class Hparams(ContrastiveMethod.Hparams):
        optimizer: Optimizer = "sgd"
        lr: LearningRate = 0.03
        weight_decay: WeightDecay = 1e-4
        temperature: float = Field(0.2, gt=0, description="InfoNCE temperature")
        ema_momentum: float = Field(0.999, ge=0, le=1, description="momentum of the key encoder's EMA update")
        queue_size: int = Field(65536, ge=1, description="negative keys kept (capped at the training images)")
        proj_hidden_dim: int = Field(2048, ge=1, description="projection head's hidden width")
        proj_dim: int = Field(128, ge=1, description="projection width")
        crop_min: CropMin = 0.2

    hp: Hparams

    def build(self) -> None:
        self.projection_head = MoCoProjectionHead(self.feature_dim, self.hp.proj_hidden_dim, self.hp.proj_dim)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion: nn.Module | None = None  # built in bind, when the dataset size is known

    def bind(self, images: torch.Tensor, patient_ids: np.ndarray | None) -> None:
        queue = min(self.hp.queue_size, int(images.shape[0]))
        if queue < self.hp.queue_size:
            warnings.warn(
                f"moco_v2: queue_size {self.hp.queue_size} capped at the {queue} training images", stacklevel=2
            )
        device = next(self.parameters()).device  # the images may stay in host memory
        self.criterion = NTXentLoss(temperature=self.hp.temperature, memory_bank_size=(queue, self.hp.proj_dim)).to(
            device
        )

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        assert self.criterion is not None, "bind() builds the queue"
        q = self.projection_head(self.backbone(self.view(x)))  # B x proj_dim
        with torch.no_grad():
            k = self.projection_head_momentum(self.backbone_momentum(self.view(x)))  # B x proj_dim
        return {"loss": self.criterion(q, k)}

    def after_step(self) -> None:
        m = self.hp.ema_momentum
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)
