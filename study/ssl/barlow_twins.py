"""Barlow Twins (Zbontar et al. 2021, Barlow Twins: Self-Supervised Learning via Redundancy Reduction)."""

from __future__ import annotations

from typing import Any

import torch
from lightly.loss import BarlowTwinsLoss
from lightly.models.modules.heads import BarlowTwinsProjectionHead
from pydantic import Field

from study.ssl.base import ContrastiveMethod, LearningRate, Optimizer, WarmupEpochs, WeightDecay


class BarlowTwins(ContrastiveMethod):
    """Drives the cross-correlation matrix of the two views' (batch-standardised) projections towards the
    identity: invariance on the diagonal, redundancy reduction off it, weighted by ``lambda_param``.

    Defaults are the paper's: projector 8192-8192-8192, lambda 0.005, LARS with lr 0.2 for the weights (as
    Khanal et al. 2024 also use) and 0.0048 for biases and BatchNorm parameters, which are excluded from the
    LARS adaptation and from the weight decay of 1.5e-6; 10 warm-up epochs then cosine. Both rates are the
    paper's for a batch of 256 and are multiplied by batch size / 256, as the paper does. The 8192-wide
    projector dominates the cost of a small backbone on a CPU; ``projector_dim`` sets all three widths.
    """

    name = "barlow_twins"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 3.58
    lr_reference_batch = 256

    class Hparams(ContrastiveMethod.Hparams):
        optimizer: Optimizer = "lars"
        lr: LearningRate = 0.2
        lr_biases: float = Field(
            0.0048, gt=0, description="learning rate of biases and BatchNorm parameters (scaled with the batch as lr)"
        )
        weight_decay: WeightDecay = 1.5e-6
        warmup_epochs: WarmupEpochs = 10
        lambda_param: float = Field(0.005, gt=0, description="weight of the off-diagonal (redundancy) terms")
        projector_dim: int = Field(8192, ge=1, description="width of the projector's three layers")

    hp: Hparams

    def build(self) -> None:
        d = self.hp.projector_dim
        self.projection_head = BarlowTwinsProjectionHead(self.feature_dim, d, d)
        self.criterion = BarlowTwinsLoss(lambda_param=self.hp.lambda_param)

    def parameter_groups(self) -> list[dict[str, Any]]:
        weights, others = super().parameter_groups()
        return [weights, {**others, "lr": self.hp.lr_biases}]  # weight decay 0: no LARS adaptation

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        z0 = self.projection_head(self.backbone(self.view(x)))  # B x projector_dim
        z1 = self.projection_head(self.backbone(self.view(x)))
        return {"loss": self.criterion(z0, z1)}
