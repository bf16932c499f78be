"""DivideMix's pieces: the GMM split, sharpening, MixMatch mixing and its losses; the loss window and the
warm-up confidence penalty."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from study.lnl import OptimConfig
from study.lnl.dividemix import (
    DivideMix,
    gmm_clean_probability,
    mixmatch_losses,
    mixmatch_mix,
    negative_entropy,
    sharpen,
    uniform_prior_penalty,
)
from study.models import Classifier, SmallCNN


def test_gmm_separates_low_and_high_losses():
    rng = np.random.default_rng(0)
    clean = rng.normal(0.2, 0.05, 300).clip(0)
    noisy = rng.normal(2.0, 0.3, 100)
    prob = gmm_clean_probability(np.concatenate([clean, noisy]))
    assert prob.shape == (400,)
    assert (prob[:300] > 0.5).mean() > 0.99 and (prob[300:] < 0.5).mean() > 0.99
    # invariant to the scale of the losses (they are min-max normalised)
    assert np.allclose(prob, gmm_clean_probability(10 * np.concatenate([clean, noisy])), atol=1e-4)


def test_sharpen():
    p = torch.tensor([[0.6, 0.4], [0.5, 0.5]])
    s = sharpen(p, 0.5)
    assert torch.allclose(s[0], torch.tensor([0.36, 0.16]) / 0.52)
    assert torch.allclose(s[1], torch.tensor([0.5, 0.5]))
    assert torch.allclose(sharpen(p, 1.0), p)


def test_mixmatch_shapes_and_label_mixing():
    nl, nu, k = 3, 2, 4
    inputs = torch.randn(2 * nl + 2 * nu, 1, 5, 5)
    targets = torch.cat([F.one_hot(torch.tensor([0, 1, 2] * 2), k).float(), torch.full((2 * nu, k), 0.25)])
    perm = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    mixed_x, mixed_t = mixmatch_mix(inputs, targets, 0.75, perm)
    assert mixed_x.shape == inputs.shape and mixed_t.shape == targets.shape
    assert torch.allclose(mixed_x[0], 0.75 * inputs[0] + 0.25 * inputs[9])
    assert torch.allclose(mixed_t[0], 0.75 * targets[0] + 0.25 * targets[9])
    assert torch.allclose(mixed_t[0], torch.tensor([0.8125, 0.0625, 0.0625, 0.0625]))
    assert torch.allclose(mixed_t.sum(1), torch.ones(10))  # mixed targets stay distributions


def test_mixmatch_losses_split_labelled_and_unlabelled():
    logits = torch.zeros(4, 2)  # uniform predictions
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    lx, lu = mixmatch_losses(logits, targets, 2)
    assert lx.item() == pytest.approx(np.log(2))
    assert lu.item() == pytest.approx((0.25 + 0.25 + 0 + 0) / 4)
    lx, lu = mixmatch_losses(logits, targets, 0)  # no labelled rows: no labelled loss, no NaN
    assert lx.item() == 0.0 and torch.isfinite(lu)


def test_penalties():
    assert uniform_prior_penalty(torch.zeros(3, 4)).item() == pytest.approx(0.0, abs=1e-7)
    assert uniform_prior_penalty(torch.tensor([[5.0, 0.0], [5.0, 0.0]])).item() > 0
    assert negative_entropy(torch.zeros(2, 4)).item() == pytest.approx(-np.log(4))


def build_dividemix(**hp) -> DivideMix:
    torch.manual_seed(0)
    return DivideMix(
        lambda: Classifier(SmallCNN(3, 8, width=4), 3), 3, 3, OptimConfig(epochs=2), torch.device("cpu"), **hp
    )


def test_loss_window_averages_normalised_losses_over_epochs():
    assert DivideMix.Hparams().loss_window == 1 and not DivideMix.Hparams().confidence_penalty
    plain = build_dividemix()
    assert plain.windowed_losses(0, np.array([1.0, 2.0, 3.0])) == pytest.approx([0.0, 0.5, 1.0])
    assert plain.loss_history == [[], []]
    algo = build_dividemix(loss_window=2)
    assert algo.windowed_losses(0, np.array([1.0, 2.0, 3.0])) == pytest.approx([0.0, 0.5, 1.0])
    # normalised [1, 0.5, 0], averaged with the previous epoch's [0, 0.5, 1]
    assert algo.windowed_losses(0, np.array([4.0, 2.0, 0.0])) == pytest.approx([0.5, 0.5, 0.5])
    # the window drops the first epoch: [1, 0.5, 0] and [0, 1, 0.25]
    assert algo.windowed_losses(0, np.array([0.0, 4.0, 1.0])) == pytest.approx([0.5, 0.75, 0.125])
    assert len(algo.loss_history[0]) == 2 and algo.loss_history[1] == []  # per network


@pytest.mark.parametrize("penalty", [False, True])
def test_confidence_penalty_in_warmup(penalty):
    algo = build_dividemix(confidence_penalty=penalty)
    x, y = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0, 1, 2])
    algo.train()
    with torch.no_grad():
        logits = [net(x) for net in algo.nets]
    ce = sum(F.cross_entropy(lg, y) for lg in logits)
    entropy_term = sum(negative_entropy(lg) for lg in logits)
    expected = (ce + entropy_term) / 2 if penalty else ce / 2
    assert algo.warmup_step(x, y)["loss"].item() == pytest.approx(float(expected), rel=1e-5)


def test_authors_plan_by_hand():
    algo = build_dividemix(p_threshold=0.5)
    indices = torch.arange(10)
    # network 0 is divided by network 1: 6 labelled (0..5), 4 unlabelled; network 1 by network 0: 3 and 7
    algo.clean_prob = [torch.tensor([0.9] * 3 + [0.1] * 7), torch.tensor([0.9] * 6 + [0.1] * 4)]
    plan = algo.authors_plan(indices, batch=4)
    assert [k for k, _, _ in plan] == [0, 0, 1]  # network 0's pass, then network 1's
    (_, lab0a, unl0a), (_, lab0b, unl0b), (_, lab1, unl1) = plan
    assert sorted(torch.cat([lab0a, lab0b]).tolist()) == [0, 1, 2, 3, 4, 5] and [len(lab0a), len(lab0b)] == [4, 2]
    # 4 unlabelled samples: the first step uses all four, the second a reshuffle of the same four
    assert sorted(unl0a.tolist()) == sorted(unl0b.tolist()) == [6, 7, 8, 9]
    assert sorted(lab1.tolist()) == [0, 1, 2] and len(unl1) == 4 and set(unl1.tolist()) <= set(range(3, 10))
