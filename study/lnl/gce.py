"""Generalized cross-entropy (Zhang & Sabuncu 2018, "Generalized Cross Entropy Loss for Training Deep
Neural Networks with Noisy Labels", NeurIPS).

The L_q loss ``(1 - p_y^q) / q`` interpolates between cross-entropy (q -> 0) and the noise-robust mean
absolute error (q = 1); the paper's default is q = 0.7. The paper's truncated L_q (its section 3.3, k = 0.5
there) replaces the loss of a sample whose ``p_y <= k`` by the constant ``L_q(k)``, so such samples (likely
mislabelled) give no gradient; ``k`` 0 (the default) is the untruncated loss. Departure: the paper prunes by
per-sample weights updated every 10 epochs from epoch 40 on; here the threshold applies to every batch's
current ``p_y`` from the first epoch (docs/lnl.md).
"""

from __future__ import annotations

import torch
from pydantic import Field

from study import hparams
from study.lnl.base import Algorithm


def gce_loss(logits: torch.Tensor, y: torch.Tensor, q: float = 0.7, k: float = 0.0) -> torch.Tensor:
    """Mean L_q loss of logits (B x K) against integer labels (B); truncated at ``k`` (a sample with
    ``p_y <= k`` counts as the constant ``L_q(k) = (1 - k^q) / q``) when ``k`` > 0."""
    p_y = torch.softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1).clamp_min(1e-7)
    loss = (1.0 - p_y.pow(q)) / q  # B
    if k > 0:
        loss = torch.where(p_y <= k, torch.full_like(loss, (1.0 - k**q) / q), loss)
    return loss.mean()


class GeneralizedCrossEntropy(Algorithm):
    name = "gce"
    packable = True
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.04

    class Hparams(hparams.Hparams):
        q: float = Field(0.7, gt=0, le=1, description="exponent of L_q: towards CE as q -> 0, MAE at q = 1")
        k: float = Field(
            0.0, ge=0, lt=1, description="truncation: p_y <= k gives the constant L_q(k) (0: none; the paper's 0.5)"
        )

    hp: Hparams

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return gce_loss(logits, y, self.hp.q, self.hp.k)
