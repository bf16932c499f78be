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
from pydantic import Field

from study import hparams
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
    packable = True
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.08

    class Hparams(hparams.Hparams):
        beta: float = Field(0.7, ge=0, lt=1, description="momentum of the temporal ensemble of predictions")
        lam: float = Field(3.0, ge=0, description="weight of the early-learning regulariser")

    hp: Hparams

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.targets = torch.zeros(self.num_samples, self.num_classes, device=self.device)  # N x K

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        self.targets[index] = elr_update_targets(self.targets[index], logits, self.hp.beta)
        return elr_loss(logits, y, self.targets[index], self.hp.lam)

    def extra_state(self) -> dict[str, Any]:
        return {"targets": self.targets}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "targets" in state:
            self.targets.copy_(state["targets"])
