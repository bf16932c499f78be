"""Heads on frozen embeddings (``linear_probe``, Dedieu et al. 2024) packed in one trial: the members of a
tuning trial (hyperparameter samples at one point) and the seeds of a cell's final runs (each its own split,
noisy labels and batches) train as one batched call of their heads, and each head gets what it gets trained
alone (``build_trial(...).fit()``): the same per-epoch metrics, the same selected and stopped epoch, the same
clean-test F1, including Gaussian feature noise, which each member draws from its own generator."""

from __future__ import annotations

import pytest
import torch

from study import packing
from study.experiment import build_pack, build_trial
from study.train import FitResult, fit_pack
from study.tuning.plan import Member, Point, TrialConfig, final_pack_size, pack_finals
from study.tuning.spec import Spec, parse_spec
from tests.test_packed_fit import one_thread  # noqa: F401  (autouse: one intra-op thread)

EPOCHS = 6
HPARAMS = {"lr": 0.05, "hidden": [16], "feature_noise": 0.3}
#: the per-epoch metrics compared; vmap reassociates float sums, so it matches to a relative 1e-4
COMPARED = ("train_loss", "val_f1", "val_loss")
TOLERANCE = {"loop": 1e-6, "vmap": 1e-4}


def heads_spec(pack: int = 1, patience: int | None = None) -> Spec:
    selection = {"monitor": "val_loss", "patience": patience} if patience else {}
    return parse_spec(
        {
            "name": "heads",
            "datasets": [{"name": "synthetic", "options": {"num_samples": 240, "image_size": 16}}],
            "noise": {"kinds": ["symmetric"], "rates": [0.4]},
            "ssl": [{"method": "random"}],
            "lnl": [
                {
                    "algorithm": "linear_probe",
                    "epochs": EPOCHS,
                    "batch_size": 32,
                    "fixed": {"optimizer": "sgd", "momentum": 0.9},
                    **({"model_selection": selection} if selection else {}),
                }
            ],
            "seeds": [0, 1, 2],
            "model": {"backbone": "small_cnn"},
            "resources": {"pack": pack},
        }
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def point(spec: Spec, seed: int) -> Point:
    return Point(spec.datasets[0].key, "symmetric", 0.4, spec.ssl[0].key, spec.lnl[0].key, seed)


def alone(spec: Spec, p: Point, hp: dict, cache) -> tuple[FitResult, float]:
    trial = build_trial(spec, p, hp, torch.device("cpu"), cache, cache)
    result = trial.fit()
    return result, trial.final_metrics(result, cache)["test_f1"]


def assert_same(got: FitResult, want: FitResult, tol: float) -> None:
    assert len(got.history) == len(want.history)
    for g, w in zip(got.history, want.history):
        for key in COMPARED:
            assert g[key] == pytest.approx(w[key], rel=tol, abs=tol), (g["epoch"], key)
    assert got.best_epoch == want.best_epoch and got.stopped_epoch == want.stopped_epoch


@pytest.fixture
def batched_calls(monkeypatch):
    """How many batched forward calls ``PackStep`` makes (0: its members ran one by one)."""
    calls = {"n": 0}
    original = packing.PackStep._batched_logits

    def counting(self, members, inputs):
        calls["n"] += 1
        return original(self, members, inputs)

    monkeypatch.setattr(packing.PackStep, "_batched_logits", counting)
    return calls


@pytest.mark.parametrize("execution", ["loop", "vmap"])
@pytest.mark.parametrize("patience", [None, 2])
def test_final_seeds_packed_equal_their_own_trials(execution, patience, cache, batched_calls):
    spec = heads_spec(patience=patience)
    points = [point(spec, s) for s in (0, 1, 2)]
    trials = [build_trial(spec, p, HPARAMS, torch.device("cpu"), cache, cache) for p in points]
    assert len({id(t.train) for t in trials}) == 3  # each seed its own split, labels and batches
    members = [t.pack_member() for t in trials]
    fit_pack(members, EPOCHS, stopping=trials[0].stopping, execution=execution)
    assert (batched_calls["n"] > 0) == (execution == "vmap")
    for m, t, p in zip(members, trials, points):
        want, want_f1 = alone(spec, p, HPARAMS, cache)
        assert_same(m.result, want, TOLERANCE[execution])
        assert t.final_metrics(m.result, cache)["test_f1"] == pytest.approx(want_f1, abs=TOLERANCE[execution])
    if patience:  # the monitor and patience stop heads as they stop alone (at least one stopped early here)
        assert any(m.result.stopped_epoch is not None for m in members)


def test_tuning_members_with_feature_noise_packed_equal_their_own_trials(cache, batched_calls):
    spec = heads_spec()
    p = point(spec, 0)
    samples = [HPARAMS, {**HPARAMS, "lr": 0.02, "feature_noise": 0.0}, {**HPARAMS, "feature_noise": 0.1}]
    trials = build_pack(spec, p, samples, torch.device("cpu"), cache, cache)
    assert len({id(t.train) for t in trials}) == 1  # one point: one loader, one batch for all
    members = [t.pack_member() for t in trials]
    fit_pack(members, EPOCHS, execution="vmap")
    assert batched_calls["n"] > 0
    for m, hp in zip(members, samples):
        assert_same(m.result, alone(spec, p, hp, cache)[0], TOLERANCE["vmap"])


def test_feature_noise_is_the_trials_own_stream_and_is_restored(cache):
    spec = heads_spec()
    p = point(spec, 0)
    a, b = (build_trial(spec, p, HPARAMS, torch.device("cpu"), cache, cache).algo for _ in range(2))
    x = torch.zeros(4, 8)
    index = torch.arange(4)
    for algo in (a, b):
        algo.start_epoch(0, build_trial(spec, p, HPARAMS, torch.device("cpu"), cache, cache).train)
    saved = a.extra_state()
    first = a.train_inputs(x, index, 0)
    assert torch.equal(first, b.train_inputs(x, index, 0))  # the same seed: the same draws, whatever ran before
    torch.manual_seed(123)  # the global generator plays no part
    second = a.train_inputs(x, index, 0)
    assert not torch.equal(first, second)
    a.load_extra_state(saved)  # a restored trial draws again what it drew after its checkpoint
    assert torch.equal(a.train_inputs(x, index, 0), first)


def test_a_cells_final_seeds_are_packed_for_heads_only(cache):
    spec = heads_spec(pack=2)
    cell = "cell"
    finals = [TrialConfig(stage="final", id=cell, point=point(spec, s), hparams=HPARAMS) for s in (0, 1, 2)]
    packed = pack_finals(spec, finals, gpu=False)
    assert final_pack_size(spec, spec.lnl[0].key, gpu=False) == 2
    assert [len(c.members) for c in packed] == [2, 0]  # two seeds in one trial; the third alone
    first = packed[0]
    assert first.member_points() == [point(spec, 0), point(spec, 1)]
    assert first.member(1) == finals[1]  # each member stands for the final run it replaces (its MLflow run)
    assert packed[1] == finals[2]
    assert TrialConfig.model_validate(first.model_dump(mode="json")) == first  # Ray stores and restores it
    assert first.members[1] == Member(hparams=HPARAMS, point=point(spec, 1))
    images = parse_spec({**spec.model_dump(mode="json", exclude_defaults=True), "lnl": [{"algorithm": "ce"}]})
    image_finals = [f.model_copy(update={"point": point(images, s)}) for s, f in enumerate(finals)]
    assert pack_finals(images, image_finals, gpu=False) == image_finals  # image trials' seeds stay apart
