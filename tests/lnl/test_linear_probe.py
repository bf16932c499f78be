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
