"""Co-teaching keeps the scheduled fraction of small-loss samples per network and exchanges them; its two
ramps, and its target forget rate from the cell's noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from study.hparams import HparamError
from study.lnl import ALGORITHMS, OptimConfig
from study.lnl.base import class_priors, expected_noise_fraction
from study.lnl.co_teaching import DEFAULT_FORGET_RATE, forget_schedule, num_kept, small_loss_exchange
from study.lnl.co_teaching_plus import disagreement_exchange, softmax_cross_entropy
from study.models import Classifier, SmallCNN
from study.noise import transition_matrix


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


def test_paper_ramp_is_the_text():
    # tau min((e / tk)^c, 1)
    assert forget_schedule(0, 0.5, tk=10, c=1, ramp="paper") == 0.0
    assert forget_schedule(5, 0.5, tk=10, c=1, ramp="paper") == pytest.approx(0.25)
    assert forget_schedule(5, 0.5, tk=10, c=2, ramp="paper") == pytest.approx(0.125)
    assert forget_schedule(10, 0.5, tk=10, c=1, ramp="paper") == pytest.approx(0.5)
    assert forget_schedule(40, 0.5, tk=10, c=1, ramp="paper") == pytest.approx(0.5)
    assert forget_schedule(0, 0.5, tk=0, ramp="paper") == 0.5


def test_authors_ramp_is_their_linspace_by_one_based_epoch():
    # their rate_schedule[:10] = linspace(0, 0.5, 10) = 0.5 j / 9, read at j = e + 1; 0.5 from j = 10
    got = [forget_schedule(e, 0.5, tk=10, c=1) for e in range(11)]
    assert got == pytest.approx([0.5 * j / 9 for j in range(1, 10)] + [0.5, 0.5])
    # the target at epoch 8 (the paper's text: at epoch 10, two epochs later; 0.4 at epoch 8)
    assert got[8] == pytest.approx(0.5) and got[7] < 0.5
    assert forget_schedule(8, 0.5, tk=10, ramp="paper") == pytest.approx(0.4)
    assert forget_schedule(0, 0.5, tk=10) == pytest.approx(0.5 / 9)
    # with c != 1 their linspace ends at tau^c, then jumps to tau
    assert forget_schedule(8, 0.5, tk=10, c=2) == pytest.approx(0.25)
    assert forget_schedule(9, 0.5, tk=10, c=2) == pytest.approx(0.5)
    # tk 1: their linspace is [0], never read in training; tk 2: [0, tau], tau from the first epoch
    assert forget_schedule(0, 0.5, tk=1) == forget_schedule(0, 0.5, tk=2) == 0.5


def test_expected_noise_fraction_on_hand_matrices():
    t = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.5, 0.5]])
    # 0.5 * 0.1 + 0.25 * 0.3 + 0.25 * 0.5
    assert expected_noise_fraction(t, np.array([0.5, 0.25, 0.25])) == pytest.approx(0.25)
    # class-dependent 0.4 within the group {0, 1} of three classes: below the nominal 0.4
    cd = transition_matrix(3, "class_dependent", 0.4, groups=[[0, 1]])
    np.testing.assert_allclose(cd, [[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0]])
    assert expected_noise_fraction(cd, np.array([0.5, 0.3, 0.2])) == pytest.approx(0.32)
    # symmetric: the nominal rate whatever the priors; uniform: rate (K - 1) / K
    assert expected_noise_fraction(transition_matrix(4, "symmetric", 0.4), np.array([0.7, 0.1, 0.1, 0.1])) == (
        pytest.approx(0.4)
    )
    assert expected_noise_fraction(transition_matrix(4, "uniform", 0.4), np.full(4, 0.25)) == pytest.approx(0.3)
    assert class_priors(np.array([0, 1, 1, 2, 9]), np.array([0, 1, 2, 3]), 3) == pytest.approx([0.25, 0.5, 0.25])
    with pytest.raises(ValueError, match="K x K"):
        expected_noise_fraction(t, np.array([0.5, 0.5]))


def make_model() -> Classifier:
    return Classifier(SmallCNN(3, 8, width=4), 3)


def build(name: str, noise_rate=None, expected_noise=None, **hp):
    return ALGORITHMS[name](
        make_model,
        3,
        10,
        OptimConfig(epochs=1),
        torch.device("cpu"),
        noise_rate=noise_rate,
        expected_noise=expected_noise,
        **hp,
    )


@pytest.mark.parametrize("name", ["co_teaching", "co_teaching_plus"])
def test_forget_rate_auto_noise_rate_or_explicit(name):
    assert ALGORITHMS[name].Hparams().forget_rate == "auto"
    assert build(name, noise_rate=0.4, expected_noise=0.32).forget_rate == pytest.approx(0.32)
    assert build(name, noise_rate=0.4).forget_rate == 0.4  # auto without the matrix: the noise rate
    assert build(name, noise_rate=0.4, expected_noise=0.32, forget_rate="noise_rate").forget_rate == 0.4
    assert build(name, noise_rate=0.4, expected_noise=0.32, forget_rate=0.1).forget_rate == 0.1
    assert build(name).forget_rate == DEFAULT_FORGET_RATE
    with pytest.raises(HparamError, match="forget_rate: True is not allowed"):
        build(name, forget_rate=True)


def test_softmax_cross_entropy_is_bounded():
    # K = 2: CE of the probabilities p, -p_y + log(e^p0 + e^p1)
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0], [100.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    got = softmax_cross_entropy(logits, y)
    assert got.tolist() == pytest.approx([math.log(2), math.log(math.e + 1) - 1, math.log(math.e + 1)], rel=1e-6)


@pytest.mark.parametrize("form", ["paper", "authors"])
def test_co_teaching_plus_loss_form(form):
    algo = build("co_teaching_plus", noise_rate=0.2, loss_form=form, init_epochs=2)
    logits1, logits2 = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    y = torch.tensor([2])
    ce = [F.cross_entropy(lg, y, reduction="none") for lg in (logits1, logits2)]
    soft = [softmax_cross_entropy(lg, y) for lg in (logits1, logits2)]
    assert [t.tolist() for t in algo.sample_losses(logits1, logits2, y, epoch=1)] == [t.tolist() for t in ce]
    after = soft if form == "authors" else ce  # the authors' form from init_epochs on
    assert [t.tolist() for t in algo.sample_losses(logits1, logits2, y, epoch=2)] == [t.tolist() for t in after]
    assert ALGORITHMS["co_teaching_plus"].Hparams().loss_form == "paper"
