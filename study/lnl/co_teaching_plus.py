"""Co-teaching+ (Yu et al. 2019, "How does Disagreement Help Generalization against Label Corruption?",
ICML).

Like Co-teaching, two networks exchange their small-loss samples, but only within the *disagreement
set*: the samples of the batch on which the two networks' predictions differ. Updating by disagreement
keeps the networks from converging to one another, which plain Co-teaching does over time. As in the
authors' code, the first ``init_epochs`` epochs run plain Co-teaching on the whole batch, and a batch
without disagreement falls back to it too. The kept fraction of the disagreement set follows
Co-teaching's schedule (target forget rate ``auto`` by default, ramped over ``tk`` epochs).

``loss_form``: ``paper`` (default) ranks and trains on cross-entropy of the logits, as the paper's text
says; ``authors`` does what their code does after ``init_epochs``: cross-entropy applied to the already
softmaxed outputs (``softmax_cross_entropy``), a bounded, MAE-like loss, in the disagreement set and in its
fallback alike (docs/lnl.md).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from study.lnl.co_teaching import CoTeaching, small_loss_exchange


def softmax_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample (B) cross-entropy of the *probabilities* ``p = softmax(logits)`` taken as logits:
    ``-p_y + log sum_k exp(p_k)``, bounded in ``[log(K - 1 + e) - 1, log(K - 1 + e)]`` for K classes."""
    return F.cross_entropy(torch.softmax(logits.float(), dim=1), y, reduction="none")


def disagreement_exchange(
    logits1: torch.Tensor, logits2: torch.Tensor, loss1: torch.Tensor, loss2: torch.Tensor, forget: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch positions for each network: the peer's small-loss samples within the disagreement set.

    Falls back to the whole batch (plain Co-teaching) when the networks agree on every sample.
    """
    disagree = torch.nonzero(logits1.argmax(1) != logits2.argmax(1)).squeeze(1)  # D
    if disagree.numel() == 0:
        return small_loss_exchange(loss1, loss2, forget)
    for1, for2 = small_loss_exchange(loss1[disagree], loss2[disagree], forget)
    return disagree[for1], disagree[for2]


class CoTeachingPlus(CoTeaching):
    name = "co_teaching_plus"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 2.15

    class Hparams(CoTeaching.Hparams):
        init_epochs: int = Field(
            10, ge=0, description="epochs of plain Co-teaching before the disagreement set (authors: 0, 20, 5)"
        )
        loss_form: Literal["paper", "authors"] = Field(
            "paper",
            description="paper: CE of the logits; authors: CE of the softmaxed outputs after init_epochs (bounded)",
        )

    hp: Hparams

    def sample_losses(
        self, logits1: torch.Tensor, logits2: torch.Tensor, y: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the logits, or (``loss_form: authors``, after ``init_epochs``) of their softmax."""
        if self.hp.loss_form == "authors" and epoch >= self.hp.init_epochs:
            return softmax_cross_entropy(logits1, y), softmax_cross_entropy(logits2, y)
        return super().sample_losses(logits1, logits2, y, epoch)

    def select(
        self, logits1: torch.Tensor, logits2: torch.Tensor, loss1: torch.Tensor, loss2: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain Co-teaching for ``init_epochs``, then the small-loss exchange within the disagreement set."""
        forget = self.forget_at(epoch)
        if epoch < self.hp.init_epochs:
            return small_loss_exchange(loss1, loss2, forget)
        return disagreement_exchange(logits1, logits2, loss1, loss2, forget)
