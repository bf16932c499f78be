"""Co-teaching (Han et al. 2018, "Co-teaching: Robust Training of Deep Neural Networks with Extremely
Noisy Labels", NeurIPS).

Two networks see the same mini-batch. Each keeps its ``R(T)`` fraction of smallest-loss samples (small
loss ~ likely clean, because networks fit clean patterns before noisy labels) and its peer is updated on
them, so the errors of one network are not fed back into itself. The kept fraction is
``R(T) = 1 - forget(T)``, a ramp from 0 to the target forget rate over ``tk`` epochs (``forget_schedule``:
the authors' code by default, the paper's text as an option). The target is by default the expected
fraction of wrong labels implied by the cell's noise (``forget_rate: auto``; the paper sets it to the
noise rate, which its symmetric and pairflip noise make the same thing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BeforeValidator, Field
from torch import nn

from study import hparams
from study.lnl.base import Algorithm, StepOutput

DEFAULT_FORGET_RATE = 0.2  # when neither forget_rate nor anything about the noise is given

Ramp = Literal["authors", "paper"]


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read true as 1.0 in a union with a number
        raise ValueError(f"{value!r} is a boolean, not a forget rate")
    return value


#: an explicit forget rate, beside the names of the rates the trial's noise gives
ForgetRate = Annotated[float, BeforeValidator(_not_a_boolean), Field(ge=0, lt=1)]


def forget_schedule(epoch: int, forget_rate: float, tk: int = 10, c: float = 1.0, ramp: Ramp = "authors") -> float:
    """The fraction of each batch to drop at the 0-based training ``epoch``.

    ``paper`` (the text, tau min((e / tk)^c, 1)): 0 at epoch 0, the target at epoch ``tk``. ``authors`` (their
    code: a ``linspace(0, tau^c, tk)`` indexed by the 1-based epoch, tau from index ``tk`` on):
    ``tau^c (e + 1) / (tk - 1)`` while ``e + 1 < tk``, then tau; two epochs ahead of the paper's at c = 1.
    """
    if ramp == "paper":
        return forget_rate if tk <= 0 else forget_rate * min(float((epoch / tk) ** c), 1.0)
    step = epoch + 1
    if tk <= 1 or step >= tk:
        return forget_rate
    return float(forget_rate**c * step / (tk - 1))


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
    packable = True
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 2.17

    class Hparams(hparams.Hparams):
        forget_rate: ForgetRate | Literal["auto", "noise_rate"] = Field(
            "auto",
            description=(
                "target fraction of each batch to drop, in [0, 1); auto: the expected fraction of wrong labels, "
                "sum_i pi_i (1 - T_ii); noise_rate: the cell's nominal rate (0.2 when neither is known)"
            ),
        )
        tk: int = Field(10, ge=0, description="epochs of the ramp to the target forget rate (0: no ramp)")
        c: float = Field(1.0, gt=0, description="exponent of the ramp (forget_rate * (T / tk)^c)")
        ramp: Ramp = Field(
            "authors", description="authors: their code's ramp, tau (e+1)/(tk-1); paper: the text's, tau (e/tk)^c"
        )

    hp: Hparams

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.forget_rate = self.target_forget_rate()
        if not 0.0 <= self.forget_rate < 1.0:  # the noise stands in: the declaration did not check it
            raise ValueError(
                f"{self.name}: forget_rate ({self.hp.forget_rate}) must be in [0, 1), got {self.forget_rate}"
            )

    def target_forget_rate(self) -> float:
        """The declared forget rate, or what it names: the expected wrong fraction (``auto``, falling back to
        the noise rate) or the nominal noise rate; ``DEFAULT_FORGET_RATE`` when the trial knows neither."""
        chosen = self.hp.forget_rate
        if not isinstance(chosen, str):
            return chosen
        known = [self.expected_noise, self.noise_rate] if chosen == "auto" else [self.noise_rate]
        return next((float(v) for v in known if v is not None), DEFAULT_FORGET_RATE)

    def build_nets(self, make_model: Callable[[], nn.Module]) -> list[nn.Module]:
        return [make_model().to(self.device), make_model().to(self.device)]

    def forget_at(self, epoch: int) -> float:
        return forget_schedule(epoch, self.forget_rate, self.hp.tk, self.hp.c, self.hp.ramp)

    def sample_losses(
        self, logits1: torch.Tensor, logits2: torch.Tensor, y: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample losses (B) of the two networks, which rank the samples and train on the kept ones."""
        return F.cross_entropy(logits1, y, reduction="none"), F.cross_entropy(logits2, y, reduction="none")

    def select(
        self, logits1: torch.Tensor, logits2: torch.Tensor, loss1: torch.Tensor, loss2: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch positions each network trains on (chosen by its peer): the small-loss exchange."""
        return small_loss_exchange(loss1, loss2, self.forget_at(epoch))

    def step_loss(
        self, logits: list[torch.Tensor], y: torch.Tensor, index: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, StepOutput]:
        """Each network's mean loss on the samples its peer kept; the output's loss is their mean."""
        logits1, logits2 = logits[0].float(), logits[1].float()
        loss1, loss2 = self.sample_losses(logits1, logits2, y, epoch)  # B each
        for1, for2 = self.select(logits1, logits2, loss1, loss2, epoch)
        loss = loss1[for1].mean() + loss2[for2].mean()
        return loss, {"loss": loss.detach() / 2, "selected": torch.cat([index[for1], index[for2]])}
