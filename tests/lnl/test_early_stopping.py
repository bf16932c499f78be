"""Early stopping (``lnl[].model_selection``): the epoch-selecting validation metric and the patience, as
Dedieu et al. 2024 train their heads (validation loss, patience 20)."""

from __future__ import annotations

import math
from copy import deepcopy

import numpy as np
import pytest
import torch

import study.train as train_mod
from study.lnl import ALGORITHMS, OptimConfig
from study.train import EarlyStopping, FitResult, final_test, fit, validation_loss
from study.tuning.spec import SpecError, parse_spec, spec_to_yaml
from tests.lnl.test_algorithms import loaders, make_model_for, tiny  # noqa: F401  (the fixture)

#: a hand-made validation loss curve: best at epoch 2 (0.70); epoch 5 only equals it, which is no improvement
CURVE = [1.00, 0.80, 0.70, 0.75, 0.72, 0.70, 0.60, 0.50, 0.40, 0.30]


def history(values: list[float], key: str = "val_loss") -> list[dict[str, float]]:
    return [{key: v} for v in values]


def first_stop(stopping: EarlyStopping, values: list[float], key: str = "val_loss") -> int | None:
    """The epoch after which ``stopping`` stops on the curve ``values`` (None: it never does)."""
    for epoch in range(len(values)):
        if stopping.stops(history(values[: epoch + 1], key)):
            return epoch
    return None


def test_patience_stops_at_the_right_epoch_on_a_hand_made_loss_curve():
    assert first_stop(EarlyStopping("val_loss", 3), CURVE) == 5  # epochs 3, 4, 5 did not beat epoch 2
    assert first_stop(EarlyStopping("val_loss", 4), CURVE) is None  # epoch 6 beats it in time
    assert first_stop(EarlyStopping("val_loss", 1), CURVE) == 3
    assert first_stop(EarlyStopping("val_loss", None), CURVE) is None
    # macro-F1 is better when higher: the mirrored curve stops at the same epoch
    assert first_stop(EarlyStopping("val_f1", 3), [1 - v for v in CURVE], "val_f1") == 5


def test_early_stopping_refuses_what_it_cannot_monitor():
    with pytest.raises(ValueError, match="val_f1 or val_loss"):
        EarlyStopping("test_f1", 3)
    with pytest.raises(ValueError, match="at least 1"):
        EarlyStopping("val_loss", 0)


def test_validation_loss_is_the_mean_cross_entropy():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]])
    y = np.array([0, 1, 0])
    expected = -(math.log(0.5) + math.log(0.1) + math.log(train_mod.PROB_FLOOR)) / 3
    assert validation_loss(y, probs) == pytest.approx(expected)


@pytest.fixture
def scripted_loss(monkeypatch):
    """fit's validation loss follows ``CURVE``, epoch by epoch (the training itself is real)."""
    calls = iter(CURVE)
    monkeypatch.setattr(train_mod, "validation_loss", lambda y, probs: next(calls))


def make_algo(data):
    torch.manual_seed(0)
    return ALGORITHMS["ce"](
        make_model_for(data), data.num_classes, len(data), OptimConfig(epochs=10), torch.device("cpu")
    )


def test_fit_stops_selects_by_the_monitored_metric_and_keeps_the_last_epochs_trained(tiny, scripted_loss):  # noqa: F811
    data, splits, labels, noisy = tiny
    train, val, test = loaders(data, splits, labels, noisy)
    seen: list[tuple[int, int | None]] = []
    res = fit(
        make_algo(data),
        train,
        val,
        10,
        on_epoch=lambda e, m, r: seen.append((e, r.stopped_epoch)),
        stopping=EarlyStopping("val_loss", 3),
    )
    assert [h["epoch"] for h in res.history] == [0, 1, 2, 3, 4, 5]
    assert res.stopped_epoch == 5 and seen[-1] == (5, 5) and all(s is None for _, s in seen[:-1])
    assert res.best_epoch == 2 and res.best_score == -0.70
    assert res.best_val_f1 == res.history[2]["val_f1"]
    assert len(res.last_states) == 5  # epochs 1-5, the last five trained
    out = final_test(make_algo(data), res, test)
    assert out["best_epoch"] == 2 and 0.0 <= out["test_f1_last5"] <= 1.0


def test_a_restored_fit_stops_where_the_uninterrupted_one_did(tiny, scripted_loss, monkeypatch):  # noqa: F811
    data, splits, labels, noisy = tiny
    train, val, _ = loaders(data, splits, labels, noisy)
    saved: dict = {}

    def keep(epoch, metrics, res):
        if epoch == 3:
            # a copy, as the checkpoint written to disk is
            saved.update(deepcopy(dict(result=res.to_state(), algo=algo.state_dict(), gen=train.generator.get_state())))

    algo = make_algo(data)
    fit(algo, train, val, 10, on_epoch=keep, stopping=EarlyStopping("val_loss", 3))
    # a trial killed after epoch 3 resumes from its checkpoint (the scripted curve continues at epoch 4)
    rest = iter(CURVE[4:])
    monkeypatch.setattr(train_mod, "validation_loss", lambda y, probs: next(rest))
    again = make_algo(data)
    again.load_state_dict(saved["algo"])
    train.generator.set_state(saved["gen"])
    restored = FitResult.from_state(saved["result"])
    res = fit(again, train, val, 10, start_epoch=4, result=restored, stopping=EarlyStopping("val_loss", 3))
    assert res.stopped_epoch == 5 and res.best_epoch == 2 and len(res.history) == 6
    # restored after the stopping epoch: nothing more is trained
    done = fit(again, train, val, 10, start_epoch=6, result=res, stopping=EarlyStopping("val_loss", 3))
    assert len(done.history) == 6


def test_without_patience_every_epoch_is_trained_and_val_f1_selects(tiny):  # noqa: F811
    data, splits, labels, noisy = tiny
    train, val, _ = loaders(data, splits, labels, noisy)
    res = fit(make_algo(data), train, val, 3)
    assert len(res.history) == 3 and res.stopped_epoch is None
    f1 = [h["val_f1"] for h in res.history]
    assert res.best_epoch == int(np.argmax(f1)) and res.best_score == res.best_val_f1 == max(f1)
    assert all(h["val_loss"] > 0 for h in res.history)


def test_a_result_saved_before_best_score_existed_restores_selected_by_val_f1():
    old = {"history": [], "best_epoch": 1, "best_val_f1": 0.6, "best_state": None, "last_states": []}
    assert FitResult.from_state(old).best_score == 0.6


def spec(selection: dict | None) -> dict:
    lnl = {"algorithm": "ce", "epochs": 2} | ({"model_selection": selection} if selection else {})
    return {
        "name": "es",
        "datasets": [{"name": "synthetic", "options": {"num_samples": 64, "image_size": 16}}],
        "noise": {"kinds": ["symmetric"], "rates": [0.2]},
        "ssl": [{"method": "random"}],
        "model": {"backbone": "small_cnn"},
        "lnl": [lnl],
        "seeds": [0],
    }


def test_the_spec_takes_model_selection_and_names_a_bad_field():
    s = parse_spec(spec({"monitor": "val_loss", "patience": 20}))
    assert s.lnl[0].model_selection.monitor == "val_loss" and s.lnl[0].model_selection.patience == 20
    assert "model_selection" not in spec_to_yaml(parse_spec(spec(None)))  # older studies' frozen text unchanged
    assert "model_selection" in spec_to_yaml(s)
    with pytest.raises(
        SpecError, match=r"lnl\[0\]\.model_selection\.patience: Input should be greater than or equal to 1"
    ):
        parse_spec(spec({"patience": 0}))
    with pytest.raises(SpecError, match=r"lnl\[0\]\.model_selection\.monitor"):
        parse_spec(spec({"monitor": "test_f1"}))


def test_a_study_trial_stops_by_its_entrys_model_selection(tmp_path, monkeypatch):
    """``build_trial`` hands the entry's ``model_selection`` to ``fit``: a validation loss that only rises
    stops a 6-epoch trial after its patience (2), selecting epoch 0."""
    from study.experiment import build_trial
    from study.tuning.plan import make_plan

    s = spec({"monitor": "val_loss", "patience": 2})
    s["lnl"][0]["epochs"] = 6
    parsed = parse_spec(s)
    _, point = make_plan(parsed).final_runs[0]
    trial = build_trial(parsed, point, {}, torch.device("cpu"), str(tmp_path / "c"), str(tmp_path / "d"))
    rising = iter(np.linspace(1.0, 2.0, 6))
    monkeypatch.setattr(train_mod, "validation_loss", lambda y, probs: float(next(rising)))
    res = trial.fit()
    assert len(res.history) == 3 and res.stopped_epoch == 2 and res.best_epoch == 0
    assert trial.final_metrics(res, str(tmp_path / "d"))["best_epoch"] == 0
