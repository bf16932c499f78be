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
from torch import nn

from study.data.pipeline import AugmentConfig
from study.ssl.base import SSLMethod


class MoCoV2(SSLMethod):
    """A query encoder trained by InfoNCE against keys from a momentum (EMA) copy of itself, with a queue
    of past keys as the negatives; v2 adds the MLP projection head, stronger augmentation and cosine decay.

    Defaults are the paper's: SGD lr 0.03 (batch 256), momentum 0.9, weight decay 1e-4, temperature 0.2,
    key-encoder momentum 0.999, queue 65,536 keys, 2048-d hidden layer, 128-d output. The queue is capped
    at the number of training images (a longer queue would hold several stale copies of every image); the
    cap is announced. Shuffle-BN needs several devices and is not done (as in lightly's single-device
    example). Views: crop (area 0.2-1, MoCo's), flip, rotation up to 45 degrees, colour jitter 0.5, no blur.
    """

    name = "moco_v2"
    defaults = dict(
        optimizer="sgd", lr=0.03, weight_decay=1e-4, momentum=0.9, warmup_epochs=0, temperature=0.2,
        ema_momentum=0.999, queue_size=65536, proj_hidden_dim=2048, proj_dim=128,
        crop_min=0.2, rotation=45.0, jitter=0.5, saturation=0.5, grayscale_p=0.2,
    )

    def build(self) -> None:
        self.projection_head = MoCoProjectionHead(self.feature_dim, self.hp["proj_hidden_dim"], self.hp["proj_dim"])
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        deactivate_requires_grad(self.backbone_momentum)
        deactivate_requires_grad(self.projection_head_momentum)
        self.criterion: nn.Module | None = None  # built in bind, when the dataset size is known

    def bind(self, images: torch.Tensor, patient_ids: np.ndarray | None) -> None:
        queue = min(int(self.hp["queue_size"]), int(images.shape[0]))
        if queue < self.hp["queue_size"]:
            warnings.warn(f"moco_v2: queue_size {self.hp['queue_size']} capped at the {queue} training images",
                          stacklevel=2)
        self.criterion = NTXentLoss(temperature=self.hp["temperature"],
                                    memory_bank_size=(queue, self.hp["proj_dim"])).to(images.device)

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(self.hp["crop_min"], 1.0), flip=True, rotation=self.hp["rotation"],
                             jitter=self.hp["jitter"])

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        assert self.criterion is not None, "bind() builds the queue"
        q = self.projection_head(self.backbone(self.view(x)))  # B x proj_dim
        with torch.no_grad():
            k = self.projection_head_momentum(self.backbone_momentum(self.view(x)))  # B x proj_dim
        return {"loss": self.criterion(q, k)}

    def after_step(self) -> None:
        m = self.hp["ema_momentum"]
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)
