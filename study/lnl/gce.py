"""Generalized cross-entropy (Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for Training Deep
Neural Networks with Noisy Labels", NeurIPS).

The L_q loss ``(1 - p_y^q) / q`` interpolates between cross-entropy (q -> 0) and the noise-robust mean
absolute error (q = 1); the paper's default is q = 0.7.
"""

from __future__ import annotations

import torch
from pydantic import Field

from study import hparams
from study.lnl.base import Algorithm


def gce_loss(logits: torch.Tensor, y: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Mean L_q loss of logits (B x K) against integer labels (B)."""
    p_y = torch.softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1).clamp_min(1e-7)
    return ((1.0 - p_y.pow(q)) / q).mean()


class GeneralizedCrossEntropy(Algorithm):
    name = "gce"

    class Hparams(hparams.Hparams):
        q: float = Field(0.7, gt=0, le=1, description="exponent of L_q: towards CE as q -> 0, MAE at q = 1")

    hp: Hparams

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return gce_loss(logits, y, self.hp.q)
