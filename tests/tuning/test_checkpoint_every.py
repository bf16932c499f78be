"""``failures.checkpoint_every``: an LNL trial reports every epoch but attaches a checkpoint only every N
epochs and at its last one; a trial restored from such a checkpoint computes the epochs after it again,
with the same results as the uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from study.tuning import trainables
from study.tuning.plan import TrialConfig, make_plan
from study.tuning.spec import Spec

EPOCHS = 7


def _spec(every: int) -> Spec:
    return Spec.model_validate(
        {
            "name": "every",
            "datasets": [{"name": "synthetic", "options": {"num_samples": 160, "num_classes": 3, "image_size": 16}}],
            "noise": {"kinds": ["symmetric"], "rates": [0.2]},
            "ssl": [{"method": "random"}],
            "model": {"backbone": "small_cnn"},
            "lnl": [
                {
                    "algorithm": "ce",
                    "epochs": EPOCHS,
                    "batch_size": 32,
                    "fixed": {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0005, "lr": 0.05},
                }
            ],
            "seeds": [0],
            "tuning": {"samples_per_cell": 1},
            "early_stopping": {"enabled": False},
            "failures": {"checkpoint_every": every},
        }
    )


class FakeSession:
    """What ``ray.tune`` gives a trainable: its reports are kept, each checkpoint copied out of the
    temporary folder it is written to (as Ray persists it), and ``get_checkpoint`` returns ``restore``."""

    def __init__(self, keep: Path, restore: Path | None = None) -> None:
        self.keep, self.restore, self.reports = keep, restore, []

    def report(self, metrics, checkpoint=None):
        saved = None
        if checkpoint is not None:
            saved = self.keep / f"checkpoint_{metrics['epoch']:06d}"
            shutil.copytree(checkpoint.path, saved)
        self.reports.append((dict(metrics), saved))

    def get_checkpoint(self):
        return None if self.restore is None else trainables.tune.Checkpoint.from_directory(str(self.restore))

    def get_context(self):
        resources = SimpleNamespace(required_resources={"CPU": 1})
        return SimpleNamespace(get_trial_id=lambda: "t0", get_trial_resources=lambda: resources)


def _run(monkeypatch, tmp_path: Path, spec: Spec, session: FakeSession) -> list:
    monkeypatch.setattr(trainables.tune, "report", session.report)
    monkeypatch.setattr(trainables.tune, "get_checkpoint", session.get_checkpoint)
    monkeypatch.setattr(trainables.tune, "get_context", session.get_context)
    monkeypatch.setattr(trainables.ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "node"))
    cell = make_plan(spec).cells[0]
    lnl = spec.lnl_map[cell.tune_point.lnl]
    config = TrialConfig(stage="lnl", id=cell.id, point=cell.tune_point, hparams=dict(lnl.fixed)).to_ray()
    cache = tmp_path / "cache"
    trainables.lnl_trainable(config, spec.model_dump(mode="json"), str(cache), str(cache), str(tmp_path / "art"))
    return session.reports


@pytest.mark.parametrize("every", [1, 3])
def test_checkpoints_every_n_epochs_and_at_the_last(monkeypatch, tmp_path, every):
    reports = _run(monkeypatch, tmp_path, _spec(every), FakeSession(tmp_path))
    assert [m["epoch"] for m, _ in reports] == list(range(EPOCHS))  # every epoch is still reported
    with_checkpoint = [m["epoch"] for m, c in reports if c is not None]
    expected = sorted({e for e in range(EPOCHS) if (e + 1) % every == 0} | {EPOCHS - 1})
    assert with_checkpoint == expected  # every 3: epochs 2, 5 and the last (6)


def test_a_trial_restored_from_an_earlier_checkpoint_recomputes_the_same_epochs(monkeypatch, tmp_path):
    spec = _spec(3)
    whole = _run(monkeypatch, tmp_path / "a", spec, FakeSession(tmp_path / "a"))
    restore = next(c for m, c in whole if m["epoch"] == 2)
    resumed = _run(monkeypatch, tmp_path / "b", spec, FakeSession(tmp_path / "b", restore=restore))
    assert [m["epoch"] for m, _ in resumed] == [3, 4, 5, 6]  # at most checkpoint_every epochs computed again
    assert all(m["start_epoch"] == 3 for m, _ in resumed)
    for (a, _), (b, _) in zip(whole[3:], resumed):
        for key in ("train_loss", "val_f1", "objective"):
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["epoch"], key)
    assert resumed[-1][0]["test_f1"] == pytest.approx(whole[-1][0]["test_f1"])
