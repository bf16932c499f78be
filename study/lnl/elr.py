"""Early-learning regularization (Liu et al. 2020, "Early-Learning Regularization Prevents Memorization
of Noisy Labels", NeurIPS).

Each training sample keeps a target ``t_i``: a temporal ensemble (momentum ``beta``) of the model's own
(normalised, clipped) predictions. The loss adds ``lam * log(1 - <t_i, p_i>)`` to cross-entropy, which
pulls predictions towards the targets formed during early learning, before the noisy labels are
memorised. Defaults are the paper's CIFAR-10 values (beta 0.7, lambda 3).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from study.lnl.base import Algorithm


def elr_update_targets(targets: torch.Tensor, logits: torch.Tensor, beta: float) -> torch.Tensor:
    """New targets (B x K) ``beta * t + (1 - beta) * p / sum(p)`` with p the clipped softmax."""
    p = torch.softmax(logits.detach().float(), dim=1).clamp(1e-4, 1.0 - 1e-4)
    return beta * targets + (1.0 - beta) * p / p.sum(dim=1, keepdim=True)


def elr_loss(logits: torch.Tensor, y: torch.Tensor, targets: torch.Tensor, lam: float = 3.0) -> torch.Tensor:
    """Mean ``CE(logits, y) + lam * log(1 - <targets, p>)`` with p the clipped softmax of logits (B x K)."""
    logits = logits.float()
    p = torch.softmax(logits, dim=1).clamp(1e-4, 1.0 - 1e-4)
    reg = torch.log(1.0 - (targets * p).sum(dim=1)).mean()
    return F.cross_entropy(logits, y) + lam * reg


class EarlyLearningRegularization(Algorithm):
    name = "elr"

    def __init__(self, *args: Any, beta: float = 0.7, lam: float = 3.0, **kw: Any) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"elr: beta must be in [0, 1), got {beta}")
        self.beta, self.lam = beta, lam
        super().__init__(*args, **kw)
        self.targets = torch.zeros(self.num_samples, self.num_classes, device=self.device)  # N x K

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        self.targets[index] = elr_update_targets(self.targets[index], logits, self.beta)
        return elr_loss(logits, y, self.targets[index], self.lam)

    def extra_state(self) -> dict:
        return {"targets": self.targets}

    def load_extra_state(self, state: dict) -> None:
        if "targets" in state:
            self.targets.copy_(state["targets"])
