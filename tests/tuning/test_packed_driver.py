"""The driver's side of packed trials: the searcher hands out a cell's samples as one trial's members, each
its own Optuna trial told its own end; the per-cell ASHA prunes members one by one and posts them to the
board; the tracking callback keeps one MLflow run per member."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from study.tracking import Tracker, TrackingCallback
from study.tuning.plan import Cell, Member, Point, TrialConfig, member_trial_id
from study.tuning.results import EPOCH, ERROR, FINISHED, MEMBERS, OBJECTIVE, PRUNED
from study.tuning.scheduler import PerCellASHA, SchedulerState
from study.tuning.searcher import ATTR_RAY_TRIAL, CellSearcher

POINT = Point("synthetic", "symmetric", 0.4, "random", "ce", 0)
CELL = Cell((("noise_rate", 0.4),), POINT)
SPACE = {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}


def searcher(tmp_path, samples: int = 5, pack: int = 2) -> CellSearcher:
    return CellSearcher(
        [CELL], {"ce": SPACE}, {"ce": {}}, samples, f"sqlite:///{tmp_path}/o.db", "val_f1", "max", "random",
        pack={"ce": pack},
    )  # fmt: skip


def members_report(epoch: int, **by_member: dict) -> dict:
    return {EPOCH: epoch, MEMBERS: json.dumps({str(i): {EPOCH: epoch, **r} for i, r in by_member.items()})}


def test_searcher_packs_a_cells_samples_and_tells_each_member(tmp_path):
    s = searcher(tmp_path)
    configs = [TrialConfig.from_ray(s.suggest(t)) for t in ("a", "b", "c")]
    assert [len(c.members) for c in configs] == [2, 2, 0]  # 5 samples in packs of 2, the last one alone
    assert configs[2].hparams and configs[2].optuna_trial == 4  # a plain trial
    assert s.suggest("d") == "FINISHED"
    numbers = [m.optuna_trial for m in configs[0].members + configs[1].members]
    assert numbers == [0, 1, 2, 3]
    assert len({m.hparams["lr"] for m in configs[0].members}) == 2  # each member its own sample
    study = s.study(CELL.id)
    assert study.trials[1].user_attrs[ATTR_RAY_TRIAL] == member_trial_id("a", 1)

    s.on_trial_result("a", members_report(0, **{"0": {"val_f1": 0.5}, "1": {"val_f1": 0.3}}))
    s.on_trial_result("a", members_report(1, **{"0": {"val_f1": 0.6}, "1": {PRUNED: True}}))
    assert study.trials[1].state == TrialState.PRUNED  # told when its report said so, the other runs on
    assert study.trials[0].state == TrialState.RUNNING
    assert study.trials[0].intermediate_values == {0: 0.5, 1: 0.6}  # reported per member and epoch
    last = {"0": {"val_f1": 0.55, OBJECTIVE: 0.6, FINISHED: True}}  # the best epoch's value is the objective
    s.on_trial_result("a", members_report(2, **last))
    s.on_trial_complete("a", members_report(2, **last))
    assert (study.trials[0].state, study.trials[0].value) == (TrialState.COMPLETE, 0.6)

    s.on_trial_result("b", members_report(0, **{"0": {"val_f1": 0.2, ERROR: "non-finite loss"}}))
    s.on_trial_complete("b", members_report(1, **{"1": {"val_f1": 0.4}}))  # ASHA stopped the trial
    assert study.trials[2].state == TrialState.FAIL
    assert study.trials[3].state == TrialState.PRUNED


def test_searcher_state_keeps_members_across_a_restore(tmp_path):
    s = searcher(tmp_path, samples=4)
    s.suggest("a")
    s.save(str(tmp_path / "s.pkl"))
    restored = searcher(tmp_path, samples=4)
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored._find_orphans() == {}  # the packed trial's members are known, not orphans
    assert TrialConfig.from_ray(restored.suggest("b")).members[0].optuna_trial == 2


class Board:
    def __init__(self) -> None:
        self.posts: list[tuple] = []
        self.post = SimpleNamespace(remote=lambda *a: self.posts.append(a))


def packed(tid: str, n: int) -> SimpleNamespace:
    members = [Member(optuna_trial=i, hparams={"lr": 0.01 * (i + 1)}) for i in range(n)]
    return SimpleNamespace(
        trial_id=tid, config=TrialConfig(stage="lnl", id=CELL.id, point=POINT, members=members).to_ray()
    )


def test_asha_prunes_members_one_by_one_and_posts_them(tmp_path):
    s = PerCellASHA("val_f1", "max", max_t=4, grace_period=1, reduction_factor=2)
    board = Board()
    s.use_board(board)
    t = packed("p", 3)
    s.on_trial_add(None, t)
    r = members_report(0, **{"0": {"val_f1": 0.9}, "1": {"val_f1": 0.1, OBJECTIVE: 0.95}, "2": {"val_f1": 0.8}})
    assert s.on_trial_result(None, t, r) == TrialScheduler.CONTINUE
    # member 0 set the first rung; 1 fell below it, 2 did not
    assert board.posts == [("p", 0, [1])]
    assert s.pruned == {member_trial_id("p", 1)}
    # a restored driver posts it again if the trial reports it (restored from an older checkpoint)
    state = SchedulerState(s).get_state()
    again = PerCellASHA("val_f1", "max", max_t=4, grace_period=1, reduction_factor=2)
    SchedulerState(again).set_state(state)
    again.use_board(board)
    r = members_report(1, **{"0": {"val_f1": 0.9}, "1": {"val_f1": 0.95}, "2": {"val_f1": 0.92}})
    assert again.on_trial_result(None, t, r) == TrialScheduler.CONTINUE
    assert board.posts[-1] == ("p", 1, [1])
    # every member ended or stopped: the trial stops
    r = members_report(2, **{"0": {"val_f1": 0.9, FINISHED: True}, "2": {ERROR: "non-finite loss"}})
    assert again.on_trial_result(None, t, r) == TrialScheduler.STOP


def test_callback_keeps_one_run_per_member(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cb = TrackingCallback(uri, "packed", None, str(tmp_path / "art"))
    t = packed("p", 2)
    t.last_result = None
    cb.on_trial_start(0, [], t)
    cb.on_trial_result(0, [], t, {**members_report(0, **{"0": {"val_f1": 0.5}, "1": {"val_f1": 0.4}}), "node_id": "n"})
    cb.on_trial_result(0, [], t, members_report(1, **{"0": {"val_f1": 0.6}, "1": {PRUNED: True}}))
    t.last_result = members_report(2, **{"0": {"val_f1": 0.7, "test_f1": 0.65, FINISHED: True}})
    cb.on_trial_result(0, [], t, t.last_result)
    cb.on_trial_complete(0, [], t)
    runs = {r.data.tags["study.trial_id"]: r for r in Tracker(uri, "packed").runs() if "study.trial_id" in r.data.tags}
    first, second = runs[member_trial_id("p", 0)], runs[member_trial_id("p", 1)]
    assert (first.info.status, second.info.status) == ("FINISHED", "KILLED")
    assert first.data.params["optuna_trial"] == "0" and second.data.params["optuna_trial"] == "1"
    assert second.data.params["hparams.lr"] == "0.02"
    assert first.data.metrics["test_f1"] == 0.65
    client = Tracker(uri, "packed").client
    assert [m.step for m in client.get_metric_history(first.info.run_id, "val_f1")] == [0, 1, 2]
    assert [m.step for m in client.get_metric_history(second.info.run_id, "val_f1")] == [0]
    assert second.data.tags["study.pruned_at_epoch"] == "1"


def test_storage_sync_fetches_each_finished_members_artifacts(monkeypatch):
    from study.tuning import driver

    fetched = []
    monkeypatch.setattr(driver.st, "download_dir", lambda uri, local: fetched.append((uri, local)))
    sync = driver.StorageSync(SimpleNamespace(artifacts_uri="s3://b/art"))
    t = packed("p", 3)
    report = members_report(3, **{"0": {FINISHED: True, "artifact_dir": "/a/p.m0"}, "2": {PRUNED: True}})
    sync.on_trial_result(0, [], t, report)
    assert fetched == [("s3://b/art/p.m0", "/a/p.m0")]  # before TrackingCallback logs them (it comes later)
    sync.on_trial_result(0, [], t, members_report(4, **{"1": {OBJECTIVE: 0.5}}))
    assert len(fetched) == 1


def test_plan_counts_packed_trials_and_says_what_is_not_measured():
    import yaml

    from study.tuning.plan import PACKING_SPEEDUP, format_plan, make_plan, pack_size, tuning_ray_trials
    from study.tuning.spec import Spec, load_spec

    root = Path(__file__).resolve().parents[2] / "search_spaces"
    smoke = load_spec(root / "smoke.yaml")
    plan = make_plan(smoke)
    assert tuning_ray_trials(smoke, plan, gpu=True) == plan.tuning_trials // 2 == 8
    text = format_plan(smoke, plan, "smoke.yaml")
    assert "packing: 8 Ray trials for the 16 tuning trials" in text
    assert PACKING_SPEEDUP["gpu"] is None and "not estimated" in text  # no GPU figure is made up
    data = yaml.safe_load((root / "khanal2024.yaml").read_text())
    data["resources"]["pack"] = "auto"
    khanal = Spec.model_validate(data)
    assert {a.key: pack_size(khanal, a.key, gpu=True) for a in khanal.lnl} == {"co_teaching": 8, "dividemix": 1}
    assert {a.key: pack_size(khanal, a.key, gpu=False) for a in khanal.lnl} == {"co_teaching": 1, "dividemix": 1}
    assert tuning_ray_trials(khanal, make_plan(khanal), gpu=True) == 2000 // 8 + 2000


def test_a_bad_pack_size_is_refused_at_the_door(tmp_path, capsys):
    from study.cli import main

    smoke = (Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml").read_text()
    for bad in ("0", "eight", "true", "2.5"):
        path = tmp_path / f"{bad}.yaml"
        path.write_text(smoke.replace("  pack: 2", f"  pack: {bad}"))
        assert main(["validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert "resources.pack" in err and "is not a pack size" in err and "auto" in err, err
