"""Symmetric cross-entropy (Wang et al. 2019, "Symmetric Cross Entropy for Robust Learning with Noisy
Labels", ICCV).

``alpha * CE + beta * RCE``, where the reverse cross-entropy swaps prediction and label,
``RCE = -sum_k p_k log q_k`` with ``log 0 := A`` (``log_zero``), so ``RCE = -A (1 - p_y)``. A = -4 as in
the paper; the authors' code clips the one-hot label at 1e-4 instead, i.e. A = ln 1e-4 = -9.21, a reverse-CE
gradient 2.3 times the paper's (``log_zero: -9.2103``). Defaults are the paper's CIFAR-10 values
(alpha 0.1, beta 1.0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field

from study import hparams
from study.lnl.base import Algorithm


def sce_loss(
    logits: torch.Tensor, y: torch.Tensor, alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0
) -> torch.Tensor:
    """Mean symmetric cross-entropy of logits (B x K) against integer labels (B)."""
    logits = logits.float()
    ce = F.cross_entropy(logits, y)
    p = torch.softmax(logits, dim=1).clamp(1e-7, 1.0)
    one_hot = F.one_hot(y, logits.shape[1]).float().clamp(min=math.exp(log_zero), max=1.0)
    rce = -(p * torch.log(one_hot)).sum(dim=1).mean()
    return alpha * ce + beta * rce


class SymmetricCrossEntropy(Algorithm):
    name = "sce"
    packable = True
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.09

    class Hparams(hparams.Hparams):
        alpha: float = Field(0.1, ge=0, description="weight of cross-entropy")
        beta: float = Field(1.0, ge=0, description="weight of reverse cross-entropy")
        log_zero: float = Field(
            -4.0, lt=0, description="A, the value of log 0 in reverse CE (paper -4; the authors' code ln 1e-4 = -9.21)"
        )

    hp: Hparams

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return sce_loss(logits, y, self.hp.alpha, self.hp.beta, self.hp.log_zero)
