"""A packed trial (``TrialConfig.members``) run by the LNL trainable: each member reports what the same
configuration reports as a trial of its own (CE and Co-teaching), a member the scheduler stops leaves while
the others go on, and a packed trial killed mid-way resumes every member to the same results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from study.tuning import trainables
from study.tuning.plan import Member, TrialConfig, make_plan, pack_finals
from study.tuning.results import ERROR, FINISHED, MEMBERS, PRUNED
from study.tuning.spec import Spec
from tests.tuning.test_checkpoint_every import FakeSession

EPOCHS = 4
HPARAMS = {
    "ce": [{"lr": 0.05, "weight_decay": 0.0005}, {"lr": 0.02, "weight_decay": 0.0}, {"lr": 0.1, "weight_decay": 0.0}],
    "co_teaching": [{"lr": 0.05, "tk": 2}, {"lr": 0.02, "tk": 1, "forget_rate": 0.3}],
}
#: per-epoch metrics compared between a member and its own trial
COMPARED = ("train_loss", "val_f1", "val_loss", "val_acc", "objective")


def _spec(algorithm: str) -> Spec:
    return Spec.model_validate(
        {
            "name": "packed",
            "datasets": [{"name": "synthetic", "options": {"num_samples": 160, "num_classes": 3, "image_size": 16}}],
            "noise": {"kinds": ["symmetric"], "rates": [0.2]},
            "ssl": [{"method": "random"}],
            "model": {"backbone": "small_cnn"},
            "lnl": [
                {
                    "algorithm": algorithm,
                    "epochs": EPOCHS,
                    "batch_size": 32,
                    "fixed": {"optimizer": "sgd", "momentum": 0.9},
                }
            ],
            "seeds": [0],
            "tuning": {"samples_per_cell": 3},
            "early_stopping": {"enabled": False},
        }
    )


def _session(folder: Path, restore: Path | None = None) -> FakeSession:
    """A fake Ray session keeping its checkpoints in ``folder`` (made here)."""
    folder.mkdir(parents=True)
    return FakeSession(folder, restore)


def _run(monkeypatch, tmp_path: Path, spec: Spec, config: dict, session: FakeSession) -> list:
    monkeypatch.setattr(trainables.tune, "report", session.report)
    monkeypatch.setattr(trainables.tune, "get_checkpoint", session.get_checkpoint)
    monkeypatch.setattr(trainables.tune, "get_context", session.get_context)
    monkeypatch.setattr(trainables.ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda s: "n"})())
    cache = tmp_path / "cache"
    trainables.lnl_trainable(config, spec.model_dump(mode="json"), str(cache), str(cache), str(tmp_path / "art"))
    return session.reports


def _configs(spec: Spec, hparams: list[dict]) -> tuple[dict, list[dict]]:
    """The packed trial's config and each member's config as a trial of its own."""
    cell = make_plan(spec).cells[0]
    entry = spec.lnl_map[cell.tune_point.lnl]
    members = [Member(optuna_trial=i, hparams={**entry.fixed, **hp}) for i, hp in enumerate(hparams)]
    packed = TrialConfig(stage="lnl", id=cell.id, point=cell.tune_point, members=members)
    return packed.to_ray(), [packed.member(i).to_ray() for i in range(len(members))]


def _by_member(reports: list) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for metrics, _ in reports:
        for key, report in json.loads(metrics[MEMBERS]).items():
            out.setdefault(int(key), []).append(report)
    return out


def _same(a: dict, b: dict, keys=COMPARED, tol: float = 1e-5) -> None:
    for k in keys:
        if k in a or k in b:
            assert math.isclose(a[k], b[k], rel_tol=tol, abs_tol=tol), (k, a[k], b[k])


@pytest.mark.parametrize("algorithm", ["ce", "co_teaching"])
def test_members_report_what_their_own_trials_report(monkeypatch, tmp_path, algorithm):
    spec = _spec(algorithm)
    packed, alone = _configs(spec, HPARAMS[algorithm])
    members = _by_member(_run(monkeypatch, tmp_path / "p", spec, packed, _session(tmp_path / "kp")))
    for i, config in enumerate(alone):
        own = [m for m, _ in _run(monkeypatch, tmp_path / f"a{i}", spec, config, _session(tmp_path / f"ka{i}"))]
        assert len(members[i]) == len(own) == EPOCHS
        for mine, theirs in zip(members[i], own, strict=True):
            assert mine["epoch"] == theirs["epoch"]
            _same(mine, theirs)
        last = members[i][-1]
        assert last[FINISHED] and Path(last["artifact_dir"]).name == f"t0.m{i}"
        _same(last, own[-1], ("test_f1", "test_acc", "best_val_f1"))
        assert (Path(last["artifact_dir"]) / "best_checkpoint.pt").is_file()


def test_a_stopped_member_leaves_and_the_others_go_on(monkeypatch, tmp_path):
    spec = _spec("ce")
    packed, _ = _configs(spec, HPARAMS["ce"])
    whole = _by_member(_run(monkeypatch, tmp_path / "w", spec, packed, _session(tmp_path / "kw")))
    asked = []

    def stopped(board, trial_id, epoch):
        asked.append(epoch)
        return [1] if epoch == 0 else []

    monkeypatch.setattr(trainables, "stopped_members", stopped)
    members = _by_member(_run(monkeypatch, tmp_path / "s", spec, packed, _session(tmp_path / "ks")))
    assert asked == list(range(EPOCHS - 1))  # asked after every report but the last
    assert [r.get(PRUNED) for r in members[1]] == [None, True]  # its epoch 0, then its end with epoch 1's report
    assert members[1][1]["epoch"] == 0
    for i in (0, 2):  # the others: unchanged
        assert len(members[i]) == EPOCHS
        for a, b in zip(members[i], whole[i], strict=True):
            _same(a, b, tol=1e-6)


def test_a_non_finite_member_fails_alone(monkeypatch, tmp_path):
    spec = _spec("ce")
    packed, _ = _configs(spec, [{"lr": 0.05}, {"lr": 1e6}])
    members = _by_member(_run(monkeypatch, tmp_path, spec, packed, _session(tmp_path / "k")))
    assert ERROR in members[1][-1] and "non-finite loss" in members[1][-1][ERROR]
    assert len(members[0]) == EPOCHS and members[0][-1][FINISHED]


def test_a_killed_packed_trial_resumes_to_the_same_results(monkeypatch, tmp_path):
    spec = _spec("co_teaching")
    packed, _ = _configs(spec, HPARAMS["co_teaching"])
    whole = _run(monkeypatch, tmp_path / "w", spec, packed, _session(tmp_path / "kw"))
    saved = [c for _, c in whole if c is not None]
    assert len(saved) == EPOCHS  # every epoch by default
    # killed after epoch 1's checkpoint: restored from it, epochs 2 and 3 again
    resumed = _run(monkeypatch, tmp_path / "r", spec, packed, _session(tmp_path / "kr", restore=saved[1]))
    assert [m["epoch"] for m, _ in resumed] == [2, 3] and all(m["start_epoch"] == 2 for m, _ in resumed)
    after, before = _by_member(resumed), _by_member(whole[2:])
    for i in after:
        for a, b in zip(after[i], before[i], strict=True):
            _same(a, b, (*COMPARED, "test_f1"), tol=1e-6)


def _heads_spec() -> Spec:
    data = _spec("linear_probe").model_dump(mode="json", exclude_defaults=True)
    data["lnl"][0]["fixed"] = {"optimizer": "sgd", "momentum": 0.9, "hidden": [16], "feature_noise": 0.2}
    return Spec.model_validate({**data, "seeds": [0, 1, 2]})


def _final_configs(spec: Spec) -> tuple[dict, list[dict]]:
    """A cell's three final seeds packed into one trial (``plan.pack_finals``), and each seed's own trial."""
    plan = make_plan(spec)
    finals = [
        TrialConfig(stage="final", id=c.id, point=p, hparams={**spec.lnl[0].fixed, "lr": 0.05})
        for c, p in plan.final_runs
    ]
    [packed] = pack_finals(
        spec.model_copy(update={"resources": spec.resources.model_copy(update={"pack": 3})}), finals, False
    )
    return packed.to_ray(), [f.to_ray() for f in finals]


def test_final_seeds_of_heads_report_what_their_own_trials_report_and_resume(monkeypatch, tmp_path):
    """Dedieu et al.'s seeds, packed: each member (its own split, labels and feature noise) reports what its
    seed's own trial reports, and a packed trial killed after epoch 1 resumes every seed to the same results."""
    spec = _heads_spec()
    packed, alone = _final_configs(spec)
    whole = _run(monkeypatch, tmp_path / "p", spec, packed, _session(tmp_path / "kp"))
    members = _by_member(whole)
    for i, config in enumerate(alone):
        own = [m for m, _ in _run(monkeypatch, tmp_path / f"a{i}", spec, config, _session(tmp_path / f"ka{i}"))]
        assert len(members[i]) == len(own) == EPOCHS
        for mine, theirs in zip(members[i], own, strict=True):
            _same(mine, theirs, tol=1e-4)
        _same(members[i][-1], own[-1], ("test_f1", "best_val_f1"), tol=1e-4)
    saved = [c for _, c in whole if c is not None]
    resumed = _run(monkeypatch, tmp_path / "r", spec, packed, _session(tmp_path / "kr", restore=saved[1]))
    assert [m["epoch"] for m, _ in resumed] == [2, 3]
    after, before = _by_member(resumed), _by_member(whole[2:])
    assert sorted(after) == [0, 1, 2]
    for i in after:
        for a, b in zip(after[i], before[i], strict=True):
            _same(a, b, (*COMPARED, "test_f1"), tol=1e-6)
