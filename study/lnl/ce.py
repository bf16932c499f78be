"""Standard cross-entropy: the baseline every noisy-label table needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.lnl.base import Algorithm


class CrossEntropy(Algorithm):
    name = "ce"

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y)
