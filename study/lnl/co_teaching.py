"""Co-teaching (Han et al. 2018, "Co-teaching: Robust Training of Deep Neural Networks with Extremely
Noisy Labels", NeurIPS).

Two networks see the same mini-batch. Each keeps its ``R(T)`` fraction of smallest-loss samples (small
loss ~ likely clean, because networks fit clean patterns before noisy labels) and its peer is updated on
them, so the errors of one network are not fed back into itself. The kept fraction is
``R(T) = 1 - forget_rate * min((T / tk)^c, 1)``: all samples at first, then a ramp to the target
forget rate (the noise rate when known) over ``tk`` epochs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from study import hparams
from study.lnl.base import Algorithm, StepOutput

DEFAULT_FORGET_RATE = 0.2  # when neither forget_rate nor the noise rate is given


def forget_schedule(epoch: int, forget_rate: float, tk: int = 10, c: float = 1.0) -> float:
    """The fraction of each batch to drop at ``epoch``: ``forget_rate * min((epoch / tk)^c, 1)``."""
    if tk <= 0:
        return forget_rate
    return forget_rate * min(float((epoch / tk) ** c), 1.0)


def num_kept(batch: int, forget: float) -> int:
    """How many samples of a batch are kept when ``forget`` of them are dropped (at least one)."""
    return max(1, batch - round(forget * batch))


def small_loss_exchange(loss1: torch.Tensor, loss2: torch.Tensor, forget: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch positions each network trains on: network 1 gets network 2's smallest-loss samples and vice versa.

    ``loss1``, ``loss2``: per-sample losses (B) of the two networks. Returns ``(for_net1, for_net2)``.
    """
    k = num_kept(loss1.shape[0], forget)
    chosen_by_1 = torch.argsort(loss1.detach())[:k]
    chosen_by_2 = torch.argsort(loss2.detach())[:k]
    return chosen_by_2, chosen_by_1


class CoTeaching(Algorithm):
    """Two networks with small-loss exchange. A step's ``selected`` is the union of both networks' kept
    samples (the diagnostics of selection precision/recall are computed from it outside)."""

    name = "co_teaching"
    selects_samples = True
    step_cost = 2.0

    class Hparams(hparams.Hparams):
        forget_rate: float | None = Field(
            None,
            ge=0,
            lt=1,
            description=("target fraction of each batch to drop; null: the noise rate (0.2 when unknown)"),
        )
        tk: int = Field(10, ge=0, description="epochs of the ramp to the target forget rate (0: no ramp)")
        c: float = Field(1.0, gt=0, description="exponent of the ramp (forget_rate * (T / tk)^c)")

    hp: Hparams

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        known = self.noise_rate if self.noise_rate is not None else DEFAULT_FORGET_RATE
        self.forget_rate = self.hp.forget_rate if self.hp.forget_rate is not None else known
        if not 0.0 <= self.forget_rate < 1.0:  # the noise rate stands in: the declaration did not check it
            raise ValueError(f"{self.name}: forget_rate (the noise rate) must be in [0, 1), got {self.forget_rate}")

    def build_nets(self, make_model: Callable[[], nn.Module]) -> list[nn.Module]:
        return [make_model().to(self.device), make_model().to(self.device)]

    def forget_at(self, epoch: int) -> float:
        return forget_schedule(epoch, self.forget_rate, self.hp.tk, self.hp.c)

    def select(
        self, logits1: torch.Tensor, logits2: torch.Tensor, loss1: torch.Tensor, loss2: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch positions each network trains on (chosen by its peer): the small-loss exchange."""
        return small_loss_exchange(loss1, loss2, self.forget_at(epoch))

    def train_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int) -> StepOutput:
        net1, net2 = self.nets
        with torch.autocast(self.device.type, enabled=self.amp):
            logits1, logits2 = net1(x).float(), net2(x).float()
        loss1 = F.cross_entropy(logits1, y, reduction="none")  # B
        loss2 = F.cross_entropy(logits2, y, reduction="none")
        for1, for2 = self.select(logits1, logits2, loss1, loss2, epoch)
        loss = loss1[for1].mean() + loss2[for2].mean()
        self.backward_many(loss, self.optimizers)
        return {"loss": loss.detach() / 2, "selected": torch.cat([index[for1], index[for2]])}
