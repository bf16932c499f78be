"""The per-cell searcher: round robin over cells, one Optuna study each, PRUNED/FAIL states, orphans."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from study.tuning.searcher import CellSearcher, open_study, sample

SPACE = {"opt": {"type": "categorical", "choices": ["sgd", "adam"]},
         "momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"opt": "sgd"}},
         "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}


def searcher(tmp_path, samples=2) -> CellSearcher:
    cells = [{"id": f"c{i}", "point": {"lnl": "ce"}, "lnl": "ce"} for i in range(2)]
    return CellSearcher(cells, {"ce": SPACE}, {"ce": {"batch_size": 32}}, samples, f"sqlite:///{tmp_path}/o.db",
                        "val_f1", "max", "random")


def test_define_by_run_respects_conditions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        t = study.ask()
        hp = sample(t, SPACE)
        assert ("momentum" in hp) == (hp["opt"] == "sgd")
        study.tell(t, 0.0)


def test_round_robin_states_and_finish(tmp_path):
    s = searcher(tmp_path)
    cfgs = [s.suggest(f"t{i}") for i in range(4)]
    assert [c["cell"] for c in cfgs] == ["c0", "c1", "c0", "c1"]
    assert all(c["hparams"]["batch_size"] == 32 for c in cfgs)
    assert s.suggest("t4") == "FINISHED"
    s.on_trial_result("t0", {"val_f1": 0.5, "epoch": 0})
    s.on_trial_complete("t0", {"trial_finished": True, "objective": 0.6})
    s.on_trial_complete("t1", {"val_f1": 0.1, "epoch": 0})  # stopped early
    s.on_trial_complete("t2", error=True)
    s.on_trial_complete("t3", {"error": "non-finite loss"})
    c0 = open_study(s.storage, "c0", "max").get_trials()
    c1 = open_study(s.storage, "c1", "max").get_trials()
    assert [t.state for t in c0] == [TrialState.COMPLETE, TrialState.FAIL]
    assert [t.state for t in c1] == [TrialState.PRUNED, TrialState.FAIL]
    assert c0[0].value == 0.6 and c0[0].intermediate_values == {0: 0.5}
    assert c1[1].user_attrs["error"] == "non-finite loss"


def test_restore_hands_out_orphans_again_with_their_sample(tmp_path):
    s = searcher(tmp_path, samples=2)
    s.suggest("t0")
    s.suggest("t1")
    s.save(str(tmp_path / "state.pkl"))
    lost = s.suggest("t2")  # suggested after the last save: Ray never recorded it, then the driver died
    s2 = searcher(tmp_path, samples=2)
    s2.restore(str(tmp_path / "state.pkl"))
    again = s2.suggest("t2b")
    assert (again["cell"], again["optuna_trial"], again["hparams"]) == (lost["cell"], lost["optuna_trial"],
                                                                        lost["hparams"])
    c0 = open_study(s2.storage, "c0", "max").get_trials()
    assert len(c0) == 2 and c0[1].user_attrs["ray_trial_id"] == "t2b" and c0[1].user_attrs["reused_after_restore"]
    assert s2.suggest("t3")["cell"] == "c1"
    assert s2.suggest("t4") == "FINISHED"


def test_samples_depend_on_cell_and_number_not_on_the_driver(tmp_path):
    """An uninterrupted searcher and one restored from its first snapshot sample the same configurations."""
    a = searcher(tmp_path / "a", samples=3)
    (tmp_path / "a").mkdir()
    full = [a.suggest(f"t{i}") for i in range(6)]
    (tmp_path / "b").mkdir()
    b = searcher(tmp_path / "b", samples=3)
    first = [b.suggest(f"t{i}") for i in range(2)]
    b.save(str(tmp_path / "b.pkl"))
    b2 = searcher(tmp_path / "b", samples=3)  # a new driver: new sampler objects
    b2.restore(str(tmp_path / "b.pkl"))
    rest = [b2.suggest(f"u{i}") for i in range(4)]
    assert [c["hparams"] for c in full] == [c["hparams"] for c in first + rest]
    assert len({json.dumps(c["hparams"], sort_keys=True) for c in full}) == 6
