"""The per-cell searcher: round robin over cells, one Optuna study each, PRUNED/FAIL states, orphans;
its suggestions are ``TrialConfig`` messages."""

from __future__ import annotations

import json

import optuna
from optuna.trial import TrialState

from study.tuning.plan import Cell, Point, TrialConfig
from study.tuning.searcher import CellSearcher, best_hparams, open_study, sample

SPACE = {
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {"type": "float", "low": 0.5, "high": 0.9, "when": {"opt": "sgd"}},
    "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
}


def cell(rate: float) -> Cell:
    return Cell((("noise_rate", rate),), Point("synthetic", "symmetric", rate, "random", "ce", 0))


CELLS = [cell(0.2), cell(0.4)]
C0, C1 = (c.id for c in CELLS)


def searcher(tmp_path, samples=2) -> CellSearcher:
    return CellSearcher(
        CELLS,
        {"ce": SPACE},
        {"ce": {"batch_size": 32}},
        samples,
        f"sqlite:///{tmp_path}/o.db",
        "val_f1",
        "max",
        "random",
    )


def suggest(s: CellSearcher, trial_id: str) -> TrialConfig:
    return TrialConfig.from_ray(s.suggest(trial_id))


def test_define_by_run_respects_conditions():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        t = study.ask()
        hp = sample(t, SPACE)
        assert ("momentum" in hp) == (hp["opt"] == "sgd")
        study.tell(t, 0.0)


def test_suggestions_are_trial_configs(tmp_path):
    s = searcher(tmp_path)
    raw = s.suggest("t0")
    assert list(raw) == [TrialConfig.KEY]
    cfg = TrialConfig.from_ray(raw)
    assert (cfg.stage, cfg.id, cfg.cell, cfg.point, cfg.optuna_trial) == ("lnl", C0, C0, CELLS[0].tune_point, 0)
    assert cfg.hparams["batch_size"] == 32 and {"opt", "lr"} <= set(cfg.hparams)
    assert cfg.axes()["noise_rate"] == 0.2
    assert json.loads(open_study(s.storage, C0, "max").get_trials()[0].user_attrs["config"]) == cfg.hparams


def test_round_robin_states_and_finish(tmp_path):
    s = searcher(tmp_path)
    cfgs = [suggest(s, f"t{i}") for i in range(4)]
    assert [c.id for c in cfgs] == [C0, C1, C0, C1]
    assert all(c.hparams["batch_size"] == 32 for c in cfgs)
    assert s.suggest("t4") == "FINISHED"
    s.on_trial_result("t0", {"val_f1": 0.5, "epoch": 0})
    s.on_trial_complete("t0", {"trial_finished": True, "objective": 0.6})
    s.on_trial_complete("t1", {"val_f1": 0.1, "epoch": 0})  # stopped early
    s.on_trial_complete("t2", error=True)
    s.on_trial_complete("t3", {"error": "non-finite loss"})
    c0 = open_study(s.storage, C0, "max").get_trials()
    c1 = open_study(s.storage, C1, "max").get_trials()
    assert [t.state for t in c0] == [TrialState.COMPLETE, TrialState.FAIL]
    assert [t.state for t in c1] == [TrialState.PRUNED, TrialState.FAIL]
    assert c0[0].value == 0.6 and c0[0].intermediate_values == {0: 0.5}
    assert c1[1].user_attrs["error"] == "non-finite loss"
    assert best_hparams(open_study(s.storage, C0, "max")) == cfgs[0].hparams  # what stage final reruns
    assert best_hparams(open_study(s.storage, C1, "max")) is None


def test_restore_hands_out_orphans_again_with_their_sample(tmp_path):
    s = searcher(tmp_path, samples=2)
    s.suggest("t0")
    s.suggest("t1")
    s.save(str(tmp_path / "state.pkl"))
    lost = suggest(s, "t2")  # suggested after the last save: Ray never recorded it, then the driver died
    s2 = searcher(tmp_path, samples=2)
    s2.restore(str(tmp_path / "state.pkl"))
    again = suggest(s2, "t2b")
    assert again.continues == "t2" and again.model_copy(update={"continues": None}) == lost
    c0 = open_study(s2.storage, C0, "max").get_trials()
    assert len(c0) == 2 and c0[1].user_attrs["ray_trial_id"] == "t2b" and c0[1].user_attrs["reused_after_restore"]
    assert suggest(s2, "t3").id == C1
    assert s2.suggest("t4") == "FINISHED"


def test_restore_counts_a_trial_that_finished_after_the_last_snapshot(tmp_path):
    """A trial asked and finished between Ray's last snapshot and the kill is not asked for again (its cell
    would get one trial too many, and MLflow a run the plan does not count)."""
    s = searcher(tmp_path, samples=2)
    s.suggest("t0")
    s.suggest("t1")
    s.save(str(tmp_path / "state.pkl"))
    s.suggest("t2")  # cell 0's second trial, after the snapshot
    s.on_trial_complete("t2", {"trial_finished": True, "objective": 0.4})
    s.suggest("t3")  # cell 1's second, still running at the kill
    s2 = searcher(tmp_path, samples=2)
    s2.restore(str(tmp_path / "state.pkl"))
    again = suggest(s2, "t3b")
    assert (again.id, again.optuna_trial, again.continues) == (C1, 1, "t3")
    assert s2.suggest("t4") == "FINISHED"
    assert len(open_study(s2.storage, C0, "max").get_trials()) == 2


def test_a_trial_finished_after_the_snapshot_enters_its_cells_rungs(tmp_path):
    """The restored scheduler never saw that trial's reports: its values go into its cell's ASHA rungs, so a
    later trial of the cell is pruned against it as in an uninterrupted study."""
    from types import SimpleNamespace

    from study.tuning.scheduler import PerCellASHA

    s = searcher(tmp_path, samples=2)
    s.suggest("t0")
    s.suggest("t1")
    s.save(str(tmp_path / "state.pkl"))
    s.suggest("t2")  # cell 0's second trial: two epochs reported, finished, then the driver died
    for epoch, v in enumerate([0.6, 0.8]):
        s.on_trial_result("t2", {"val_f1": v, "epoch": epoch})
    s.on_trial_complete("t2", {"trial_finished": True, "objective": 0.8})
    s2 = searcher(tmp_path, samples=2)
    s2.restore(str(tmp_path / "state.pkl"))
    asha = PerCellASHA("val_f1", "max", max_t=2, grace_period=1, reduction_factor=2)
    s2.use_scheduler(asha)
    s2.suggest("t3")  # finds the unrecorded trial
    rungs = dict(asha.cells[C0]._brackets[0]._rungs)
    assert rungs == {1: {"t2": 0.6}, 2: {"t2": 0.8}}
    worse = SimpleNamespace(trial_id="t0", config=TrialConfig(stage="lnl", id=C0).to_ray())
    asha.on_trial_add(None, worse)
    assert asha.on_trial_result(None, worse, {"val_f1": 0.3, "training_iteration": 1}) == "STOP"
    s3 = searcher(tmp_path, samples=2)
    s3.restore(str(tmp_path / "state.pkl"))
    s3.use_scheduler(None)  # early stopping off: counted only
    assert s3.suggest("u") is not None and s3.scheduler is None


def test_a_trial_told_to_optuna_but_not_to_mlflow_runs_again(tmp_path):
    """The driver died after telling Optuna a trial's end and before its MLflow run ended: the trial is
    handed out again (its run continued and finished), not counted."""
    s = searcher(tmp_path, samples=2)
    s.suggest("t0")
    s.suggest("t1")
    s.save(str(tmp_path / "state.pkl"))
    lost = suggest(s, "t2")
    s.on_trial_complete("t2", {"trial_finished": True, "objective": 0.5})
    s2 = searcher(tmp_path, samples=2)
    s2.restore(str(tmp_path / "state.pkl"))
    s2.use_recorded(lambda ray_id: ray_id != "t2")
    again = suggest(s2, "t2b")
    assert again.continues == "t2" and again.model_copy(update={"continues": None}) == lost
    assert suggest(s2, "t3").id == C1 and s2.suggest("t4") == "FINISHED"


def test_samples_depend_on_cell_and_number_not_on_the_driver(tmp_path):
    """An uninterrupted searcher and one restored from its first snapshot sample the same configurations."""
    a = searcher(tmp_path / "a", samples=3)
    (tmp_path / "a").mkdir()
    full = [suggest(a, f"t{i}") for i in range(6)]
    (tmp_path / "b").mkdir()
    b = searcher(tmp_path / "b", samples=3)
    first = [suggest(b, f"t{i}") for i in range(2)]
    b.save(str(tmp_path / "b.pkl"))
    b2 = searcher(tmp_path / "b", samples=3)  # a new driver: new sampler objects
    b2.restore(str(tmp_path / "b.pkl"))
    rest = [suggest(b2, f"u{i}") for i in range(4)]
    assert [c.hparams for c in full] == [c.hparams for c in first + rest]
    assert len({json.dumps(c.hparams, sort_keys=True) for c in full}) == 6
