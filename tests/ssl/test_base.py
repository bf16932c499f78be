"""The shared base: the kNN monitor against hand-computed votes, the schedule, and the loop's per-epoch report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.ssl.base import knn_accuracy, lr_schedule, train_ssl


def test_knn_accuracy_by_hand():
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0], [0.8, 0.2]]), dim=1)
    assert knn_accuracy(bank, labels, query, torch.tensor([0, 1, 0]), k=2) == 1.0
    assert knn_accuracy(bank, labels, query, torch.tensor([1, 1, 1]), k=2) == pytest.approx(1 / 3)


def test_schedule_warmup_then_cosine():
    s = lr_schedule(epochs=100, steps_per_epoch=10, warmup_epochs=10)
    assert s[0] == pytest.approx(0.01) and s[99] == pytest.approx(1.0)
    assert s[100] == pytest.approx(1.0) and s[-1] < 1e-3 and np.all(np.diff(s[100:]) <= 0)
    short = lr_schedule(epochs=3, steps_per_epoch=10, warmup_epochs=10)  # warm-up capped at a tenth
    assert short[3] == pytest.approx(1.0)


def test_loop_reports_each_epoch(tiny_data):
    from study.models import build_backbone
    from study.ssl.rotation import Rotation

    m = Rotation(build_backbone("small_cnn", 3, 16), 3, 16)
    imgs = np.ascontiguousarray(tiny_data.images)
    seen = []
    hist = train_ssl(
        m,
        imgs[:48],
        epochs=2,
        batch_size=16,
        device=torch.device("cpu"),
        seed=0,
        knn=(imgs[:48], tiny_data.labels[:48], imgs[48:], tiny_data.labels[48:]),
        on_epoch=lambda e, mt: seen.append((e, mt)),
    )
    assert [e for e, _ in seen] == [0, 1] and len(hist) == 2
    assert {"ssl_loss", "knn_acc", "epoch_seconds", "ssl_acc"} <= set(hist[0])
