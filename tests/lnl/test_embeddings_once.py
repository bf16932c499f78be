"""A trial whose algorithm trains on a frozen encoder's embeddings (``linear_probe``) reads them from the
cache: the first trial of an (encoder, dataset, preprocessing) runs the encoder once over the dataset, and
every later trial (another hyperparameter sample, another noise setting, a later study) runs it not at all,
in training, validation or test (Dedieu et al. 2024's protocol: embeddings computed once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import study.experiment as experiment
from study.data.pipeline import STANDARD, TensorLoader
from study.experiment import build_trial
from study.lnl import ALGORITHMS
from study.lnl.linear_probe import embed
from study.models import Classifier
from study.train import fit
from study.tuning.plan import Point
from study.tuning.spec import parse_spec

SPECS = Path(__file__).resolve().parents[2] / "search_spaces"


def probe_spec(ssl: str = "simclr"):
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["lnl"] = [{"algorithm": "linear_probe", "epochs": 3, "batch_size": 64, "fixed": {"lr": 0.05, "hidden": [16]}}]
    return parse_spec(d)


@pytest.fixture
def forward_calls(monkeypatch):
    """How many batches every encoder loaded from the cache runs (the trials' encoders come from it)."""
    calls = {"n": 0}
    original = experiment.load_encoder

    def counting(path, device="cpu"):
        encoder = original(path, device=device)
        encoder.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
        return encoder

    monkeypatch.setattr(experiment, "load_encoder", counting)
    return calls


def run(spec, point, cache: Path, lr: float = 0.05) -> dict:
    trial = build_trial(spec, point, {"lr": lr, "hidden": [16]}, torch.device("cpu"), cache, cache)
    result = trial.fit()
    return {"trial": trial, "final": trial.final_metrics(result, cache), "result": result}


def test_the_second_trial_runs_no_encoder_forward_pass(tmp_path, forward_calls):
    spec = probe_spec()
    point = Point("synthetic", "symmetric", 0.4, "simclr", "linear_probe", 0)
    first = run(spec, point, tmp_path)
    assert forward_calls["n"] > 0  # the first trial embedded the dataset (the SimCLR encoder was pretrained)
    n = forward_calls["n"]
    files = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(files) == 1
    # another hyperparameter sample and another noise rate of the same (encoder, dataset): no encoder pass
    second = run(spec, point, tmp_path, lr=0.1)
    third = run(spec, Point("synthetic", "symmetric", 0.0, "simclr", "linear_probe", 0), tmp_path)
    assert forward_calls["n"] == n
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    # the trial's model is the head on embedding rows: its encoder has no parameters and passes them through
    model = second["trial"].algo.model
    assert sum(p.numel() for p in model.encoder.parameters()) == 0
    assert second["trial"].train.images.dim() == 2 and third["final"]["test_f1"] >= 0
    assert 0 <= first["final"]["test_f1"] <= 1


def test_embeddings_are_the_encoders_outputs_under_the_trials_preprocessing(tmp_path):
    spec = probe_spec()
    point = Point("synthetic", "symmetric", 0.4, "simclr", "linear_probe", 0)
    trial = build_trial(spec, point, {"lr": 0.05, "hidden": [16]}, torch.device("cpu"), tmp_path, tmp_path)
    encoder = experiment.build_encoder(spec, point, tmp_path, tmp_path, torch.device("cpu"))
    want = embed(encoder, trial.data.images[trial.splits.train], crop=spec.model.resolution, norm=STANDARD)
    got = trial.train.images.numpy()
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-5)


def test_the_head_trains_the_same_on_embeddings_as_on_images_through_the_frozen_encoder(tmp_path):
    """Embedding rows change where the encoder runs, not what the head learns: the same head (same seed,
    same batches), trained on the cached rows and on images through the frozen encoder (the algorithm's
    own in-trial embedding), has the same validation curve, selected epoch and weights."""
    spec = probe_spec()
    point = Point("synthetic", "symmetric", 0.4, "simclr", "linear_probe", 0)
    on_rows = run(spec, point, tmp_path)
    trial = on_rows["trial"]
    encoder = experiment.build_encoder(spec, point, tmp_path, tmp_path, torch.device("cpu"))
    torch.manual_seed(point.seed)  # as build_trial seeds before the heads are drawn
    algo = ALGORITHMS["linear_probe"](
        lambda: Classifier(encoder, trial.data.num_classes),
        trial.data.num_classes,
        len(trial.data),
        trial.algo.optim_cfg,
        torch.device("cpu"),
        noise_rate=point.noise_rate,
        seed=point.seed,
        hidden=[16],
    )
    images, s, labels = trial.data.images, trial.splits, trial.labels
    train = TensorLoader(images[s.train], labels[s.train], 64, shuffle=True, seed=0, indices=s.train, random_crop=True)
    val = TensorLoader(images[s.val], labels[s.val], 512)
    on_images = fit(algo, train, val, 3)
    curve = [h["val_f1"] for h in on_images.history]
    assert curve == pytest.approx([h["val_f1"] for h in on_rows["result"].history], abs=1e-6)
    assert on_images.best_epoch == on_rows["result"].best_epoch
    # the encoder ran over other batches (the whole dataset, or the training split), so its outputs differ
    # in the last float bits, and three epochs of SGD with momentum carry that to about 1e-4
    best_rows, best_images = on_rows["result"].best_state["nets"][0], on_images.best_state["nets"][0]
    heads = [k for k in best_images if k.startswith("head.")]
    assert heads and all(k in best_rows for k in heads)
    for k in heads:
        assert torch.allclose(best_images[k], best_rows[k], atol=1e-3), k
