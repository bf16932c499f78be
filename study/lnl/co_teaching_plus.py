"""Co-teaching+ (Yu et al. 2019, "How does Disagreement Help Generalization against Label Corruption?",
ICML).

Like Co-teaching, two networks exchange their small-loss samples, but only within the *disagreement
set*: the samples of the batch on which the two networks' predictions differ. Updating by disagreement
keeps the networks from converging to one another, which plain Co-teaching does over time. As in the
authors' code, the first ``init_epochs`` epochs run plain Co-teaching on the whole batch, and a batch
without disagreement falls back to it too. The kept fraction of the disagreement set follows
Co-teaching's schedule (target forget rate = the noise rate when known, ramped over ``tk`` epochs).
"""

from __future__ import annotations

import torch
from pydantic import Field

from study.lnl.co_teaching import CoTeaching, small_loss_exchange


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

    class Hparams(CoTeaching.Hparams):
        init_epochs: int = Field(10, ge=0, description="epochs of plain Co-teaching before the disagreement set")

    hp: Hparams

    def select(
        self, logits1: torch.Tensor, logits2: torch.Tensor, loss1: torch.Tensor, loss2: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Plain Co-teaching for ``init_epochs``, then the small-loss exchange within the disagreement set."""
        forget = self.forget_at(epoch)
        if epoch < self.hp.init_epochs:
            return small_loss_exchange(loss1, loss2, forget)
        return disagreement_exchange(logits1, logits2, loss1, loss2, forget)
