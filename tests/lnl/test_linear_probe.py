"""Heads trained together on one embedding matrix, the batched macro-F1 and the embedding cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from study.data import get_dataset
from study.lnl.linear_probe import HeadGroup, cached_embeddings, encoder_embeddings, predict_heads, train_heads
from study.metrics import macro_f1_batched
from study.models import build_backbone


def test_macro_f1_batched_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=(3, 50))
    p = rng.integers(0, 4, size=(3, 50))
    p[2] = np.where(p[2] == 3, 0, p[2])  # a class never predicted
    got = macro_f1_batched(torch.from_numpy(y), torch.from_numpy(p), 4).numpy()
    want = [f1_score(y[h], p[h], average="macro", labels=np.arange(4), zero_division=0) for h in range(3)]
    assert np.allclose(got, want, atol=1e-6)


def test_head_group_equals_independent_heads():
    g = HeadGroup(3, 5, 2, hidden=(4,), seeds=[0, 1, 2])
    x = torch.randn(7, 5)
    out = g(x)  # 3 x 7 x 2
    for h in range(3):
        hid = torch.relu(x @ g.weights[0][h] + g.biases[0][h])
        assert torch.allclose(out[h], hid @ g.weights[1][h] + g.biases[1][h], atol=1e-6)


def blobs(n, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    centers = rng.normal(0, 3, size=(k, d))
    return (centers[y] + rng.normal(0, 1, size=(n, d))).astype(np.float32), y


def test_train_heads_learns_each_label_set():
    x, y = blobs(400)
    xv, yv = x[:100], y[:100]
    shuffled = np.random.default_rng(1).permutation(y)  # head 2: labels unrelated to the features
    res = train_heads(
        x,
        np.stack([y, y, shuffled]),
        xv,
        np.stack([yv, yv, shuffled[:100]]),
        num_classes=3,
        hidden=(16,),
        epochs=8,
        lr=0.05,
        batch_size=64,
        seeds=[0, 1, 2],
        patience=None,
    )
    assert res.best_val_f1[0] > 0.9 and res.best_val_f1[1] > 0.9
    probs = predict_heads(res.model(), torch.from_numpy(x))
    assert probs.shape == (3, 400, 3)
    acc = (probs.argmax(2).numpy() == np.stack([y, y, y])).mean(1)
    assert acc[0] > 0.9 and acc[2] < 0.8
    with pytest.raises(ValueError):
        train_heads(x, y[None, :10], xv, yv[None], num_classes=3)


def test_embedding_cache_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.ones((4, 2))

    a = cached_embeddings(tmp_path, "enc", "data", compute)
    b = cached_embeddings(tmp_path, "enc", "data", compute)
    assert len(calls) == 1 and np.array_equal(a, b) and a.dtype == np.float32
    cached_embeddings(tmp_path, "enc2", "data", compute)
    assert len(calls) == 2


def test_encoder_embeddings_keyed_by_encoder_file_and_dataset(tmp_path):
    data = get_dataset("synthetic", num_samples=12, image_size=16).load(None)
    encoder = build_backbone("small_cnn", 3, 16)
    path = tmp_path / "encoder.pt"
    torch.save(encoder.state_dict(), path)
    emb = encoder_embeddings(encoder, path, data, tmp_path / "cache")
    assert emb.shape == (12, encoder.feature_dim)
    files = list((tmp_path / "cache" / "embeddings").glob("*.npy"))
    assert len(files) == 1 and data.cache_key in files[0].name
    again = encoder_embeddings(build_backbone("small_cnn", 3, 16), path, data, tmp_path / "cache")
    assert np.array_equal(emb, again)  # same file hash: read from the cache, not recomputed


def _grid(execution: str, patience: int | None = 3, noise=(0.0, 0.5, 0.2)):
    xa, ya = blobs(390, seed=3)
    x, y, xv, yv = xa[:300], ya[:300], xa[300:], ya[300:]
    rng = np.random.default_rng(5)
    flips = [np.where(rng.random(len(y)) < r, rng.integers(0, 3, len(y)), y) for r in (0.0, 0.4, 0.8)]
    return train_heads(
        x,
        np.stack(flips),
        xv,
        np.stack([yv, yv, yv]),
        num_classes=3,
        hidden=(16, 8),
        epochs=25,
        lr=0.05,
        batch_size=64,
        feature_noise=list(noise),
        patience=patience,
        seeds=[11, 12, 13],
        execution=execution,
    )


def test_a_head_trained_in_a_batch_equals_the_same_head_trained_alone():
    """Each head has its own initialisation, data order, feature noise and patience: batched, sequential
    and each head in a call of its own select the same epoch with the same F1 and weights."""
    batched, sequential = _grid("batched"), _grid("sequential")
    assert batched.execution == "batched" and sequential.execution == "sequential"
    # the heads' patience runs out at different epochs, so the test covers per-head stopping
    assert len(set(batched.last_epoch.tolist())) > 1 and batched.last_epoch.max() < 24
    for res in (sequential,):
        assert np.array_equal(res.best_epoch, batched.best_epoch)
        assert np.array_equal(res.last_epoch, batched.last_epoch)
        assert np.allclose(res.best_val_f1, batched.best_val_f1, atol=1e-6)
        for k, v in batched.state.items():
            assert torch.allclose(res.state[k], v, atol=1e-5), k
    assert len(sequential.history) == len(batched.history)
    for a, b in zip(sequential.history, batched.history):
        assert [v is None for v in a["val_f1"]] == [v is None for v in b["val_f1"]]
        assert [v or 0 for v in a["val_f1"]] == pytest.approx([v or 0 for v in b["val_f1"]], abs=1e-6)


def test_auto_execution_follows_the_measured_crossover(monkeypatch):
    from study import packing
    from study.lnl import linear_probe as lp

    monkeypatch.setattr(lp, "_CROSSOVER", {})
    timings = iter([])

    def clock():
        return next(timings)

    # batched 4 steps: 1.0 s; one head 4 steps: 0.1 s, x 3 heads = 0.3 s -> sequential
    timings = iter([0.0, 1.0, 0.0, 0.1])
    monkeypatch.setattr(packing, "_clock", clock)  # the clock of study.packing.elapsed
    assert _grid("auto").execution == "sequential"
    monkeypatch.setattr(lp, "_CROSSOVER", {})
    timings = iter([0.0, 0.2, 0.0, 0.1])  # batched 0.2 s against 0.3 s -> batched
    assert _grid("auto").execution == "batched"
    assert len(lp._CROSSOVER) == 1  # measured once per (device, heads, width, options): no timer call now
    assert _grid("auto").execution == "batched"


def test_stopped_heads_leave_the_group(monkeypatch):
    """A head whose patience ran out stops costing compute: the group shrinks to the heads still training."""
    from study.lnl import linear_probe as lp

    sizes = []
    real = lp._compact

    def spy(heads, opt, index, o):
        sizes.append(len(index))
        return real(heads, opt, index, o)

    monkeypatch.setattr(lp, "_compact", spy)
    res = _grid("batched")
    assert sizes == [2, 1]  # the three heads stop at three different epochs
    assert sorted(res.last_epoch.tolist()) == sorted(set(res.last_epoch.tolist()))
