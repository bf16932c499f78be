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


def test_fit_keeps_weights_of_the_best_and_last_epochs_only(tiny):
    """A checkpoint carries the kept epochs: the networks' weights (no optimiser state), the best epoch's,
    and the last LAST_EPOCHS epochs' only once training is among them."""
    from study.train import LAST_EPOCHS

    data, s = tiny
    torch.manual_seed(0)
    algo = ALGORITHMS["co_teaching"](
        lambda: Classifier(build_backbone("small_cnn", 3, 16), data.num_classes),
        data.num_classes,
        len(data),
        OptimConfig(optimizer="adam", schedule="constant", epochs=8),
        torch.device("cpu"),
        noise_rate=0.2,
    )
    labels = np.asarray(data.labels)
    train = TensorLoader(data.images[s.train], labels[s.train], 32, shuffle=True, indices=s.train)
    val = TensorLoader(data.images[s.val], labels[s.val], 64)
    seen = []
    res = fit(algo, train, val, 8, on_epoch=lambda e, m, r: seen.append((len(r.last_states), set(r.best_state))))
    # nothing kept before the last epochs; then one more each epoch; weights only
    assert [n for n, _ in seen] == [max(0, e - (8 - LAST_EPOCHS) + 1) for e in range(8)]
    assert all(keys == {"nets"} for _, keys in seen)
    # the last kept state is the networks' weights at the end of training (a copy, not the live tensors)
    now = algo.weights()["nets"]
    last = res.last_states[-1]["nets"]
    assert all(torch.equal(now[k][n], last[k][n]) and now[k][n] is not last[k][n] for k in range(2) for n in now[k])
