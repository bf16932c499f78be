"""Packed trials (#21): P members of one cell trained together (``build_pack``, ``fit_pack``, ``PackStep``)
give each member the per-epoch metrics it gets as a separate trial (``build_trial(...).fit()``), whether the
members run one by one ("loop"), batched ("vmap") or as a timing probe chooses ("auto"); a member that is
pruned or whose loss turns non-finite stops alone."""

from __future__ import annotations

import math

import pytest
import torch

from study import packing
from study.data.pipeline import TensorLoader
from study.experiment import build_pack, build_trial
from study.lnl import ALGORITHMS, OptimConfig
from study.models import Classifier, SmallCNN
from study.packing import PackStep
from study.train import FitResult, PackMember, fit_pack
from study.tuning.plan import Point
from study.tuning.spec import Spec, parse_spec

EPOCHS = 3
HPARAMS = {
    "ce": [
        {"lr": 0.05, "weight_decay": 1e-4},
        {"lr": 0.02, "weight_decay": 0.0},
        {"lr": 0.1, "weight_decay": 1e-3},
    ],
    "co_teaching": [
        {"lr": 0.05, "forget_rate": 0.2, "tk": 1},
        {"lr": 0.02, "forget_rate": 0.4, "tk": 3},
        {"lr": 0.1, "weight_decay": 1e-3, "tk": 2},
    ],
    "elr": [
        {"lr": 0.05, "beta": 0.7},
        {"lr": 0.02, "lam": 1.0},
        {"lr": 0.1, "beta": 0.5},
    ],
}
#: the per-epoch metrics compared; vmap reassociates float sums, so it matches to a relative 1e-4
COMPARED = ("train_loss", "val_f1", "val_loss")
TOLERANCE = {"loop": 1e-6, "vmap": 1e-4}
SELECTION = ("selected_label_precision", "selected_label_recall")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread, as tests/lnl do: tiny networks on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_spec(algorithm: str) -> Spec:
    return parse_spec(
        {
            "name": "packed",
            "datasets": [{"name": "synthetic", "options": {"num_samples": 160, "image_size": 16}}],
            "noise": {"kinds": ["symmetric"], "rates": [0.3]},
            "ssl": [{"method": "random"}],
            "lnl": [{"algorithm": algorithm, "epochs": EPOCHS, "batch_size": 32}],
            "seeds": [0],
            "model": {"backbone": "small_cnn"},
        }
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def point_of(spec: Spec) -> Point:
    return Point(spec.datasets[0].key, "symmetric", 0.3, spec.ssl[0].key, spec.lnl[0].key, 0)


def pack(algorithm: str, cache) -> tuple[list[PackMember], list]:
    spec = tiny_spec(algorithm)
    trials = build_pack(spec, point_of(spec), HPARAMS[algorithm], torch.device("cpu"), cache, cache)
    return [t.pack_member() for t in trials], trials


def fit_members(members: list[PackMember], trials: list, execution: str, **kw) -> list[PackMember]:
    """``fit_pack`` of ``pack``'s members over ``EPOCHS`` (each with its trial's validation split and labels)."""
    fit_pack(members, EPOCHS, execution=execution, **kw)
    return members


def run_pack(algorithm: str, cache, execution: str, **kw) -> list[PackMember]:
    return fit_members(*pack(algorithm, cache), execution, **kw)


_ALONE: dict[str, list[FitResult]] = {}


def alone(algorithm: str, cache) -> list[FitResult]:
    """Each member's hyperparameters as a separate trial (computed once per algorithm)."""
    if algorithm not in _ALONE:
        spec = tiny_spec(algorithm)
        _ALONE[algorithm] = [
            build_trial(spec, point_of(spec), hp, torch.device("cpu"), cache, cache).fit() for hp in HPARAMS[algorithm]
        ]
    return _ALONE[algorithm]


def assert_same(got: FitResult, want: FitResult, tol: float, epochs: int | None = None) -> None:
    want_history = want.history[:epochs] if epochs is not None else want.history
    assert len(got.history) == len(want_history)
    for g, w in zip(got.history, want_history):
        for key in COMPARED:
            assert g[key] == pytest.approx(w[key], rel=tol, abs=tol), (g["epoch"], key)
        for key in SELECTION:  # a sample-selecting algorithm's selection, scored outside it
            assert (key in g) == (key in w)
            if key in w:
                assert g[key] == pytest.approx(w[key], rel=tol, abs=tol), (g["epoch"], key)
    if epochs is None:
        assert got.best_epoch == want.best_epoch
        assert len(got.last_states) == len(want.last_states)


def weights(algo) -> list[torch.Tensor]:
    return [v for net in algo.nets for v in net.state_dict().values()]


@pytest.mark.parametrize("algorithm", ["ce", "co_teaching"])
def test_members_start_from_the_weights_of_separate_trials(algorithm, cache):
    spec = tiny_spec(algorithm)
    _, trials = pack(algorithm, cache)
    assert len({id(t.train) for t in trials}) == 1 and len({id(t.data) for t in trials}) == 1
    for t, hp in zip(trials, HPARAMS[algorithm]):
        single = build_trial(spec, point_of(spec), hp, torch.device("cpu"), cache, cache)
        assert all(torch.equal(a, b) for a, b in zip(weights(t.algo), weights(single.algo)))
    # the same draw (one point), but each member's own tensors
    first, second = trials[0].algo.nets[0].parameters(), trials[1].algo.nets[0].parameters()
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(first, second))


@pytest.mark.parametrize("execution", ["loop", "vmap"])
@pytest.mark.parametrize("algorithm", ["ce", "co_teaching"])
def test_packed_members_match_separate_trials(algorithm, execution, cache):
    members = run_pack(algorithm, cache, execution)
    for m, want in zip(members, alone(algorithm, cache)):
        assert m.live and m.result.error is None
        assert_same(m.result, want, TOLERANCE[execution])
        assert all(h["epoch_time"] == h0["epoch_time"] for h, h0 in zip(m.result.history, members[0].result.history))


def test_members_with_different_batch_sizes_train_on_their_own_loaders(cache):
    spec = tiny_spec("ce")
    hparams = [{"lr": 0.05, "batch_size": 16}, {"lr": 0.05}, {"lr": 0.02, "batch_size": 16}]
    trials = build_pack(spec, point_of(spec), hparams, torch.device("cpu"), cache, cache)
    assert trials[0].train is trials[2].train and trials[0].train is not trials[1].train
    members = [t.pack_member() for t in trials]
    # loop: exact (vmap's float reassociation, amplified over twice the steps, parts val_loss by ~1e-4 here)
    fit_pack(members, EPOCHS, execution="loop")
    for m, hp in zip(members, hparams):
        want = build_trial(spec, point_of(spec), hp, torch.device("cpu"), cache, cache).fit()
        assert_same(m.result, want, TOLERANCE["loop"])


def test_a_member_pruned_at_epoch_1_stops_and_the_others_go_on(cache):
    seen: list[tuple[int, list[int]]] = []

    def on_epoch(epoch, metrics):
        seen.append((epoch, sorted(metrics)))
        return [1] if epoch == 1 else None

    members = run_pack("ce", cache, "vmap", on_epoch=on_epoch)
    assert seen == [(0, [0, 1, 2]), (1, [0, 1, 2]), (2, [0, 2])]
    assert not members[1].live and len(members[1].result.history) == 2
    want = alone("ce", cache)
    assert_same(members[1].result, want[1], TOLERANCE["vmap"], epochs=2)
    for i in (0, 2):
        assert members[i].live
        assert_same(members[i].result, want[i], TOLERANCE["vmap"])


@pytest.mark.parametrize("execution", ["loop", "vmap"])
def test_a_member_whose_loss_goes_non_finite_fails_alone(execution, cache):
    members, trials = pack("ce", cache)
    victim = members[2].algo
    real = victim.step_loss

    def poisoned(logits, y, index, epoch):
        loss, out = real(logits, y, index, epoch)
        if epoch == 1:
            loss = loss * math.nan  # as an lr too large for the network would make it, sooner or later
            out["loss"] = loss.detach()
        return loss, out

    victim.step_loss = poisoned  # type: ignore[method-assign]
    fit_members(members, trials, execution)
    assert members[2].result.error == "non-finite loss (nan) at epoch 1, step 0"
    assert not members[2].live and len(members[2].result.history) == 1
    want = alone("ce", cache)
    for i in (0, 1):
        assert members[i].live and members[i].result.error is None
        assert_same(members[i].result, want[i], TOLERANCE[execution])


@pytest.mark.parametrize("chosen", ["loop", "vmap"])
def test_the_auto_probe_leaves_the_trajectories_unchanged(chosen, cache, monkeypatch):
    # ELR: its step changes its training memory (the targets), which the probe must put back
    reference = run_pack("elr", cache, chosen)
    ticks = iter([0.0, 1.0, 0.0, 5.0] if chosen == "vmap" else [0.0, 5.0, 0.0, 1.0])  # vmap, then loop
    monkeypatch.setattr(packing, "_clock", lambda: next(ticks))
    members = run_pack("elr", cache, "auto")
    for m, want in zip(members, reference):
        assert_same(m.result, want.result, 1e-6)
        assert all(torch.equal(a, b) for a, b in zip(weights(m.algo), weights(want.algo)))
        assert torch.equal(m.algo.targets, want.algo.targets)


def test_the_probe_itself_changes_no_member(cache):
    members, trials = pack("elr", cache)
    algos = [m.algo for m in members]
    x, y, index = next(iter(trials[0].train))
    for a in algos:
        a.train()
        a.targets[index] = 0.5  # training memory the probe's losses change
    before = [(weights(a), a.targets.clone(), [o.state_dict() for o in a.optimizers]) for a in algos]
    step = PackStep(algos, "auto")
    assert step.choose([(m, (x, y, index)) for m in step.members], 0) in ("loop", "vmap") and set(step.timings) == {
        "loop",
        "vmap",
    }
    for a, (w, targets, opts) in zip(algos, before):
        assert all(torch.equal(u, v) for u, v in zip(weights(a), w))  # BatchNorm statistics too
        assert torch.equal(a.targets, targets)
        assert [o.state_dict() for o in a.optimizers] == opts
        assert all(p.grad is None for n in a.nets for p in n.parameters())


def tiny_members(name: str, n: int, dropout: float = 0.0) -> list:
    def make_model():
        net = Classifier(SmallCNN(3, 16, width=8), 4)
        if dropout:
            net.head = torch.nn.Sequential(torch.nn.Dropout(dropout), net.head)
        return net

    torch.manual_seed(0)
    return [ALGORITHMS[name](make_model, 4, 32, OptimConfig(epochs=2), torch.device("cpu")) for _ in range(n)]


def test_an_active_dropout_runs_the_members_one_by_one():
    algos = tiny_members("ce", 2, dropout=0.5)
    step = PackStep(algos, "vmap")
    for a in algos:
        a.train()
    x, y, index = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,)), torch.arange(8)
    calls = []
    for a in algos:
        real = a.train_step
        a.train_step = lambda *args, real=real: calls.append(1) or real(*args)  # type: ignore[method-assign]
    step(x, y, index, 0)
    assert len(calls) == 2  # each member's own train_step: vmap cannot give each its own dropout draws
    assert PackStep(algos, "auto").choose([(a, (x, y, index)) for a in algos], 0) == "loop"


def test_bad_packs_are_refused():
    with pytest.raises(ValueError, match="different algorithms"):
        PackStep([*tiny_members("ce", 1), *tiny_members("gce", 1)])
    with pytest.raises(ValueError, match="not packable"):
        PackStep(tiny_members("dividemix", 2), "vmap")
    with pytest.raises(ValueError, match="execution is one of"):
        PackStep(tiny_members("ce", 2), "fused")
    shared = TensorLoader(torch.zeros(8, 16, 16, 3, dtype=torch.uint8).numpy(), torch.zeros(8).long().numpy(), 4)
    with pytest.raises(ValueError, match="give each of its members its own loader"):
        fit_pack([PackMember(a, shared, shared) for a in tiny_members("dividemix", 2)], 1, execution="loop")
    packable = ("ce", "gce", "sce", "elr", "co_teaching", "co_teaching_plus", "linear_probe")
    assert {ALGORITHMS[n].packable for n in packable} == {True}
    assert not ALGORITHMS["dividemix"].packable
