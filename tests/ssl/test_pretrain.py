"""The pretraining cache: a second request reuses the stored encoder, concurrent requests train once, the key
changes with every input, checkpoints load with weights_only=True, and each epoch reports its metrics."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from study.ssl import PretrainRequest, load_encoder, pretrain, read_history, read_meta

BASE = dict(
    dataset="synthetic",
    dataset_options={"num_samples": 64, "image_size": 16, "views_per_patient": 2},
    split_seed=0,
    method="simclr",
    hparams={},
    backbone="small_cnn",
    resolution=None,
    epochs=1,
    init="random",
    seed=0,
    batch_size=16,
)


def request(**kw) -> PretrainRequest:
    return PretrainRequest(**{**BASE, **kw})


class EpochCounter:
    def __init__(self) -> None:
        self.calls: list[tuple[int, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, epoch: int, metrics: dict) -> None:
        with self.lock:
            self.calls.append((epoch, metrics))


def test_reuse_without_retraining(tmp_path):
    counter = EpochCounter()
    req = request(epochs=2)
    path = pretrain(req, tmp_path, device="cpu", on_epoch=counter)
    assert [e for e, _ in counter.calls] == [0, 1]
    for _, m in counter.calls:
        assert set(m) >= {"ssl_loss", "knn_acc"} and 0.0 <= m["knn_acc"] <= 1.0
    again = pretrain(request(epochs=2, hparams={"temperature": 0.07}), tmp_path, device="cpu", on_epoch=counter)
    assert again == path and len(counter.calls) == 2  # defaults spelled out: the same key, nothing trained
    a, b = load_encoder(path), load_encoder(again)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k
    assert [h["ssl_loss"] for h in read_history(path)] == [m["ssl_loss"] for _, m in counter.calls]


def test_checkpoint_loads_weights_only(tmp_path):
    path = pretrain(request(), tmp_path, device="cpu")
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {"state_dict", "meta"}
    meta = read_meta(path)
    assert meta["method"] == "simclr" and meta["in_channels"] == 3 and meta["image_size"] == 16
    enc = load_encoder(path)
    assert not enc.training and enc(torch.zeros(2, 3, 16, 16)).shape == (2, enc.feature_dim)


CHANGES = {
    "dataset_options": {"num_samples": 72, "image_size": 16, "views_per_patient": 2},
    "split_seed": 1,
    "method": "micle",
    "hparams": {"temperature": 0.2},
    "backbone": "resnet18",
    "resolution": 20,
    "epochs": 2,
    "init": "imagenet",
    "seed": 1,
    "batch_size": 32,
    "val_fraction": 0.2,
    "test_fraction": 0.1,
    "dataset": "fashion_mnist",
}


def test_every_field_is_in_the_key():
    assert {f.name for f in dataclasses.fields(PretrainRequest)} == set(CHANGES)
    base = request()
    assert base.key() == request().key()
    keys = {base.key()}
    for name, value in CHANGES.items():
        other = request(**{name: value, **({"backbone": "resnet18"} if name == "init" else {})})
        assert other.key() not in keys, name
        keys.add(other.key())


def test_untrained_inits_ignore_training_fields():
    assert request(method="random", epochs=0).key() == request(method="random", epochs=5, batch_size=8).key()
    assert request(method="random").key() != request(method="random", seed=1).key()


def test_changed_input_retrains(tmp_path):
    counter = EpochCounter()
    first = pretrain(request(), tmp_path, device="cpu", on_epoch=counter)
    second = pretrain(request(seed=1), tmp_path, device="cpu", on_epoch=counter)
    third = pretrain(
        request(dataset_options={**BASE["dataset_options"], "noise": 0.2}), tmp_path, device="cpu", on_epoch=counter
    )
    assert len({first, second, third}) == 3 and len(counter.calls) == 3


def test_concurrent_requests_train_once(tmp_path):
    counter = EpochCounter()
    paths: list = []
    threads = [
        threading.Thread(target=lambda: paths.append(pretrain(request(), tmp_path, device="cpu", on_epoch=counter)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 3 and len(set(paths)) == 1
    assert len(counter.calls) == 1


def test_random_init_is_seeded_and_untrained(tmp_path):
    counter = EpochCounter()
    a = pretrain(request(method="random", epochs=0), tmp_path, device="cpu", on_epoch=counter)
    b = pretrain(request(method="random", epochs=0, seed=1), tmp_path / "other", device="cpu")
    c = pretrain(request(method="random", epochs=0), tmp_path / "third", device="cpu")
    assert counter.calls == [] and read_history(a) == []
    sa, sb, sc = (load_encoder(p).state_dict() for p in (a, b, c))
    assert torch.equal(sa["features.0.weight"], sc["features.0.weight"])
    assert not torch.equal(sa["features.0.weight"], sb["features.0.weight"])
    assert 0.0 <= read_meta(a)["knn_acc"] <= 1.0


def test_bad_requests_fail_at_the_door():
    with pytest.raises(KeyError, match="allowed"):
        request(method="byol")
    with pytest.raises(ValueError, match=r"SSL method 'simclr': 'lr_typo'.*allowed: .*lr"):
        request(hparams={"lr_typo": 1})
    with pytest.raises(ValueError, match=r"lr: 'fast'.*must be a number"):
        request(hparams={"lr": "fast"})
    with pytest.raises(ValueError, match="resnet18"):
        request(init="imagenet")
    with pytest.raises(ValueError, match="epochs"):
        request(epochs=0)
