"""GCE (plain and truncated), SCE (both values of log 0) and ELR against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from study.lnl import ALGORITHMS, OptimConfig
from study.lnl.elr import elr_loss, elr_update_targets
from study.lnl.gce import gce_loss
from study.lnl.sce import sce_loss

# two samples, three classes; softmax of [0, ln 2, ln 5] is [1/8, 2/8, 5/8]
LOGITS = torch.tensor([[0.0, math.log(2), math.log(5)], [0.0, 0.0, 0.0]])
Y = torch.tensor([2, 0])
P_Y = [5 / 8, 1 / 3]


def test_gce_matches_formula():
    q = 0.7
    expected = sum((1 - p**q) / q for p in P_Y) / 2
    assert gce_loss(LOGITS, Y, q).item() == pytest.approx(expected, rel=1e-6)


def test_gce_tends_to_ce_and_mae():
    ce = -sum(math.log(p) for p in P_Y) / 2
    assert gce_loss(LOGITS, Y, 1e-4).item() == pytest.approx(ce, rel=1e-3)
    assert gce_loss(LOGITS, Y, 1.0).item() == pytest.approx(sum(1 - p for p in P_Y) / 2, rel=1e-6)


def test_sce_matches_formula():
    alpha, beta = 0.1, 1.0
    ce = -sum(math.log(p) for p in P_Y) / 2
    # RCE = -sum_k p_k log q_k with log 0 := A = -4: 4 (1 - p_y)
    rce = sum(4 * (1 - p) for p in P_Y) / 2
    assert sce_loss(LOGITS, Y, alpha, beta).item() == pytest.approx(alpha * ce + beta * rce, rel=1e-5)
    # the authors' code: one-hot clipped at 1e-4
    rce_code = sum(-math.log(1e-4) * (1 - p) for p in P_Y) / 2
    assert sce_loss(LOGITS, Y, alpha, beta, log_zero=math.log(1e-4)).item() == pytest.approx(
        alpha * ce + beta * rce_code, rel=1e-5
    )


def test_elr_targets_and_loss():
    p = torch.tensor([[1 / 8, 2 / 8, 5 / 8], [1 / 3, 1 / 3, 1 / 3]])
    t0 = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    t = elr_update_targets(t0, LOGITS, beta=0.7)
    assert torch.allclose(t, 0.7 * t0 + 0.3 * p, atol=1e-6)
    lam = 3.0
    inner = (t * p).sum(1)
    ce = -sum(math.log(v) for v in P_Y) / 2
    expected = ce + lam * torch.log(1 - inner).mean().item()
    assert elr_loss(LOGITS, Y, t, lam).item() == pytest.approx(expected, rel=1e-5)
    # hand value of the first sample's inner product: 0.7 * 5/8 + 0.3 * (1/64 + 4/64 + 25/64)
    assert inner[0].item() == pytest.approx(0.7 * 5 / 8 + 0.3 * 30 / 64, rel=1e-6)


def test_losses_are_differentiable_and_pure():
    logits = LOGITS.clone().requires_grad_(True)
    for loss in (gce_loss(logits, Y), sce_loss(logits, Y), elr_loss(logits, Y, torch.full((2, 3), 1 / 3))):
        (g,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(g).all()
    assert torch.equal(logits.detach(), LOGITS)


def test_gce_truncated_at_k():
    q, k = 0.7, 0.5
    # p_y = 5/8 > k keeps L_q(5/8); p_y = 1/3 <= k counts as the constant L_q(0.5)
    expected = ((1 - (5 / 8) ** q) / q + (1 - 0.5**q) / q) / 2
    assert gce_loss(LOGITS, Y, q, k=k).item() == pytest.approx(expected, rel=1e-6)
    assert gce_loss(LOGITS, Y, q, k=0.0).item() == pytest.approx(gce_loss(LOGITS, Y, q).item())
    logits = LOGITS.clone().requires_grad_(True)
    gce_loss(logits, Y, q, k=k).backward()
    assert logits.grad is not None
    assert (
        torch.count_nonzero(logits.grad[1]) == 0 and torch.count_nonzero(logits.grad[0]) > 0
    )  # truncated: no gradient


def test_sce_and_gce_read_their_hyperparameters():
    hp = ALGORITHMS["sce"].Hparams()
    assert hp.log_zero == -4.0 and ALGORITHMS["gce"].Hparams().k == 0.0
    algo = ALGORITHMS["sce"](
        lambda: torch.nn.Linear(3, 3), 3, 2, OptimConfig(epochs=1), torch.device("cpu"), log_zero=math.log(1e-4)
    )
    rce_code = sum(-math.log(1e-4) * (1 - p) for p in P_Y) / 2
    ce = -sum(math.log(p) for p in P_Y) / 2
    assert algo.loss_fn(LOGITS, Y, Y).item() == pytest.approx(0.1 * ce + rce_code, rel=1e-5)
    # the authors' A = ln 1e-4 gives a reverse-CE gradient ln(1e-4) / -4 = 2.30 times the paper's
    assert math.log(1e-4) / -4 == pytest.approx(2.3026, abs=1e-4)
    gce = ALGORITHMS["gce"](lambda: torch.nn.Linear(3, 3), 3, 2, OptimConfig(epochs=1), torch.device("cpu"), k=0.5)
    assert gce.loss_fn(LOGITS, Y, Y).item() == pytest.approx(gce_loss(LOGITS, Y, 0.7, 0.5).item())
