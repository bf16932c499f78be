"""Standard cross-entropy: the baseline every noisy-label table needs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.lnl.base import Algorithm


class CrossEntropy(Algorithm):
    name = "ce"
    packable = True
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.0

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y)
