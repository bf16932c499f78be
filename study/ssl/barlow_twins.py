"""Barlow Twins (Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction)."""

from __future__ import annotations

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import BarlowTwinsProjectionHead

from study.data.pipeline import AugmentConfig
from study.ssl.base import SSLMethod


class BarlowTwins(SSLMethod):
    """Drives the cross-correlation matrix of the two views' (batch-standardised) projections towards the
    identity: invariance on the diagonal, redundancy reduction off it, weighted by ``lambda_param``.

    Defaults are the paper's: projector 8192-8192-8192, lambda 0.005, LARS with lr 0.2 for the weights (as
    Khanal et al. 2024 also use) and 0.0048 for biases and BatchNorm parameters, which are excluded from the
    LARS adaptation and from the weight decay of 1.5e-6; 10 warm-up epochs then cosine. Both rates are the
    paper's for a batch of 256 and are multiplied by batch size / 256, as the paper does. The 8192-wide
    projector dominates the cost of a small backbone on a CPU; ``projector_dim`` sets all three widths.
    """

    name = "barlow_twins"
    lr_reference_batch = 256
    defaults = dict(
        optimizer="lars", lr=0.2, lr_biases=0.0048, weight_decay=1.5e-6, momentum=0.9, warmup_epochs=10,
        lambda_param=0.005,
        projector_dim=8192, crop_min=0.08, rotation=45.0, jitter=0.5, saturation=0.5, grayscale_p=0.2,
    )

    def build(self) -> None:
        d = self.hp["projector_dim"]
        self.projection_head = BarlowTwinsProjectionHead(self.feature_dim, d, d)
        self.criterion = BarlowTwinsLoss(lambda_param=self.hp["lambda_param"])

    def parameter_groups(self) -> list[dict]:
        weights, others = super().parameter_groups()
        return [weights, {**others, "lr": self.hp["lr_biases"]}]  # weight decay 0: no LARS adaptation

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(self.hp["crop_min"], 1.0), flip=True, rotation=self.hp["rotation"],
                             jitter=self.hp["jitter"])

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        z0 = self.projection_head(self.backbone(self.view(x)))  # B x projector_dim
        z1 = self.projection_head(self.backbone(self.view(x)))
        return {"loss": self.criterion(z0, z1)}
