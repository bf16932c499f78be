"""SimCLR (Chen et al. 2020, A Simple Framework for Contrastive Learning of Visual Representations)."""

from __future__ import annotations

import torch
from lightly.loss import NTXentLoss
from lightly.models.modules.heads import SimCLRProjectionHead
from pydantic import Field

from study.ssl.base import ContrastiveMethod, WarmupEpochs


class SimCLR(ContrastiveMethod):
    """Two augmented views of each image, an MLP projection head, and the NT-Xent loss with the other
    2(B-1) views of the batch as negatives (lightly's head and loss).

    Defaults follow Khanal et al. 2024's public SimCLR settings (Adam, lr 1e-3, temperature 0.07, 10
    warm-up epochs then cosine); the projection is 128-d as in Azizi et al. 2021. Views: crop (area
    0.08-1, SimCLR's), flip, rotation up to 45 degrees and colour jitter 0.5, no blur (Azizi et al. 2021).
    """

    name = "simclr"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 2.67

    class Hparams(ContrastiveMethod.Hparams):
        warmup_epochs: WarmupEpochs = 10
        temperature: float = Field(0.07, gt=0, description="NT-Xent temperature")
        proj_hidden_dim: int = Field(
            0, ge=0, description="projection head's hidden width; 0: the backbone's feature width"
        )
        proj_dim: int = Field(128, ge=1, description="projection width")

    hp: Hparams

    def build(self) -> None:
        hidden = self.hp.proj_hidden_dim or self.feature_dim
        self.projection_head = SimCLRProjectionHead(self.feature_dim, hidden, self.hp.proj_dim)
        self.criterion = NTXentLoss(temperature=self.hp.temperature)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.projection_head(self.backbone(x))  # B x proj_dim
        return z

    def pair(self, x: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The positive pair's two views: two crops of the same image."""
        return self.view(x), self.view(x)

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        v0, v1 = self.pair(x, index)
        z = self.project(torch.cat([v0, v1]))  # one pass: 2B x proj_dim, BatchNorm sees both views
        z0, z1 = z.chunk(2)
        return {"loss": self.criterion(z0, z1)}
