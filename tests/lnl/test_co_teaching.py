"""Co-teaching keeps the scheduled fraction of small-loss samples per network and exchanges them."""

from __future__ import annotations

import pytest
import torch

from study.lnl.co_teaching import forget_schedule, num_kept, small_loss_exchange
from study.lnl.co_teaching_plus import disagreement_exchange


def test_schedule_ramps_to_target():
    assert forget_schedule(0, 0.5, tk=10, c=1) == 0.0
    assert forget_schedule(5, 0.5, tk=10, c=1) == pytest.approx(0.25)
    assert forget_schedule(5, 0.5, tk=10, c=2) == pytest.approx(0.125)
    assert forget_schedule(10, 0.5, tk=10, c=1) == pytest.approx(0.5)
    assert forget_schedule(40, 0.5, tk=10, c=1) == pytest.approx(0.5)


@pytest.mark.parametrize("forget,batch", [(0.0, 10), (0.2, 10), (0.3, 10), (0.5, 8), (0.7, 10), (0.45, 20)])
def test_keeps_exact_fraction_and_exchanges(forget, batch):
    g = torch.Generator().manual_seed(int(forget * 100) + batch)
    loss1, loss2 = torch.rand(batch, generator=g), torch.rand(batch, generator=g)
    for1, for2 = small_loss_exchange(loss1, loss2, forget)
    k = batch - round(forget * batch)
    assert num_kept(batch, forget) == k and len(for1) == len(for2) == k
    # network 1 trains on network 2's k smallest losses, and vice versa
    assert set(for1.tolist()) == set(torch.topk(loss2, k, largest=False).indices.tolist())
    assert set(for2.tolist()) == set(torch.topk(loss1, k, largest=False).indices.tolist())


def test_exchange_on_hand_example():
    loss1 = torch.tensor([0.1, 0.9, 0.2, 0.8])
    loss2 = torch.tensor([0.7, 0.1, 0.6, 0.2])
    for1, for2 = small_loss_exchange(loss1, loss2, 0.5)
    assert sorted(for1.tolist()) == [1, 3] and sorted(for2.tolist()) == [0, 2]


def test_co_teaching_plus_selects_within_disagreement():
    logits1 = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    logits2 = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])  # disagree on rows 1, 2, 3
    loss1 = torch.tensor([0.0, 0.5, 0.1, 0.9])
    loss2 = torch.tensor([0.0, 0.2, 0.8, 0.3])
    for1, for2 = disagreement_exchange(logits1, logits2, loss1, loss2, forget=1 / 3)
    assert sorted(for1.tolist()) == [1, 3]  # network 2's two smallest among rows 1..3
    assert sorted(for2.tolist()) == [1, 2]
    # full agreement falls back to plain co-teaching on the batch
    for1, for2 = disagreement_exchange(logits1, logits1, loss1, loss2, forget=0.5)
    assert sorted(for1.tolist()) == [0, 1]
