"""DivideMix's pieces: the GMM split, sharpening, MixMatch mixing and its losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from study.lnl.dividemix import (
    gmm_clean_probability,
    mixmatch_losses,
    mixmatch_mix,
    negative_entropy,
    sharpen,
    uniform_prior_penalty,
)


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
