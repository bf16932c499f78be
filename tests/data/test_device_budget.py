"""Device memory within budget (docs/architecture.md, Trial inputs): a trial's inputs go to the device only when
they fit ``resources.device_data_share`` of its share of the device; otherwise they stay in host memory and
move batch by batch, and the trial trains identically. A CPU has no separate device memory, so the budget is
faked by replacing ``study.experiment.device_memory``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import study.experiment as experiment
from benchmarks.bad_inputs import BASE_SPEC
from study.data.pipeline import TensorLoader
from study.experiment import build_trial, data_on_device
from study.tuning.plan import Point
from study.tuning.spec import SpecError, parse_spec


def spec_with(algorithm: str = "ce", **resources):
    data = copy.deepcopy(BASE_SPEC)
    data["lnl"] = [{"algorithm": algorithm, "epochs": 2, "batch_size": 16, "fixed": {"lr": 0.01}}]
    data["resources"] = {**data["resources"], "trial": {"cpus": 1, "gpus": 0.5}, **resources}
    return parse_spec(data)


def test_the_budget_is_a_share_of_the_trials_share_of_the_device(monkeypatch):
    spec = spec_with(device_data_share=0.25)
    cpu = torch.device("cpu")
    assert data_on_device(spec, 10**15, cpu)  # a CPU: host memory either way
    monkeypatch.setattr(experiment, "device_memory", lambda device: 8_000)
    # 8,000 bytes x 0.5 of the device x 0.25 = 1,000 bytes
    assert data_on_device(spec, 1_000, cpu) and not data_on_device(spec, 1_001, cpu)
    with pytest.raises(SpecError, match="device_data_share"):
        spec_with(device_data_share=0.0)


def test_a_host_held_loader_yields_the_same_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 8, 8, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 50)
    a, b = (
        TensorLoader(images, labels, 16, shuffle=True, seed=3, random_crop=True, crop=6, on_device=held)
        for held in (True, False)
    )
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
    assert torch.equal(a.take(torch.tensor([4, 1])), b.take(torch.tensor([4, 1])))
    assert torch.equal(a.take_labels(slice(0, 5)), b.take_labels(slice(0, 5)))


@pytest.mark.parametrize("algorithm", ["ce", "dividemix"])
def test_a_split_over_the_budget_stays_on_the_host_and_trains_identically(tmp_path, monkeypatch, algorithm):
    spec = spec_with(algorithm)
    point = Point("synthetic", "symmetric", 0.2, "random", algorithm, 0)
    cpu = torch.device("cpu")

    def fit() -> tuple[bool, list[dict]]:
        trial = build_trial(spec, point, dict(spec.lnl[0].fixed), cpu, tmp_path, tmp_path)
        return trial.train.on_device and trial.val.on_device, trial.fit().history

    held, history = fit()
    monkeypatch.setattr(experiment, "device_memory", lambda device: 1_000)  # far below the 60 images
    on_host, host_history = fit()
    assert held and not on_host
    assert [h["val_f1"] for h in host_history] == [h["val_f1"] for h in history]
    assert [h["train_loss"] for h in host_history] == [h["train_loss"] for h in history]


@pytest.mark.parametrize("method", ["simclr", "moco_v2", "micle"])
def test_pretraining_over_the_budget_keeps_its_images_on_the_host_and_trains_identically(tmp_path, method):
    """``pretrain(device_budget=...)``: a training set larger than the budget stays in host memory (MoCo's
    queue and MICLe's partner images still go to the training device) and the encoder is the same."""
    from study.ssl import PretrainRequest, pretrain
    from study.ssl import base as ssl_base

    request = PretrainRequest(
        dataset="synthetic",
        dataset_options={"num_samples": 96, "num_classes": 3, "image_size": 16, "views_per_patient": 4},
        split_seed=0,
        method=method,
        hparams={"queue_size": 16} if method == "moco_v2" else {},
        backbone="small_cnn",
        resolution=None,
        epochs=2,
        init="random",
        seed=0,
        batch_size=16,
    )
    held: list[bool] = []
    real = ssl_base.TensorLoader

    def spy(*args, **kw):
        loader = real(*args, **kw)
        held.append(loader.on_device)
        return loader

    states = []
    for budget in (None, 1_000):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ssl_base, "TensorLoader", spy)
            path = pretrain(request, tmp_path / str(budget), device="cpu", device_budget=budget, knn_bank_size=32)
        states.append(torch.load(path, map_location="cpu", weights_only=True))
    assert held == [True, False]
    a, b = (s["state_dict"] for s in states)  # encoder.pt: {"state_dict": backbone weights, "meta": ...}
    assert a.keys() == b.keys() and len(a) > 0 and all(torch.equal(a[k], b[k]) for k in a)
