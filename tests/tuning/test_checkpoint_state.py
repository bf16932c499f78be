"""Trial checkpoints (every algorithm's state and the fit result) load with torch.load(weights_only=True)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from study.data import get_dataset, make_splits
from study.data.pipeline import TensorLoader
from study.lnl import ALGORITHMS, OptimConfig
from study.models import Classifier, build_backbone
from study.train import FitResult, fit


@pytest.fixture(scope="module")
def tiny():
    data = get_dataset("synthetic", num_samples=96, num_classes=3, image_size=16).load(None)
    return data, make_splits(data, seed=0)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_state_round_trips_weights_only(tiny, name):
    data, s = tiny
    torch.manual_seed(0)

    def make_model():
        return Classifier(build_backbone("small_cnn", 3, 16), data.num_classes)

    algo = ALGORITHMS[name](
        make_model, data.num_classes, len(data), OptimConfig(epochs=2), torch.device("cpu"), noise_rate=0.2
    )
    labels = np.asarray(data.labels)
    train = TensorLoader(data.images[s.train], labels[s.train], 32, shuffle=True, indices=s.train)
    val = TensorLoader(data.images[s.val], labels[s.val], 64)
    res = fit(algo, train, val, 1)
    buf = io.BytesIO()
    torch.save({"algo": algo.state_dict(), "result": res.to_state(), "generator": train.generator.get_state()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    algo.load_state_dict(state["algo"])
    again = FitResult.from_state(state["result"])
    assert again.best_epoch == res.best_epoch and again.history == res.history
