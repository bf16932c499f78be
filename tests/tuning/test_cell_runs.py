"""A cell's parent run ends with its trials: FINISHED with the cell's tuning best and final figures, or
FAILED where no final run finished (docs/architecture.md, MLflow conventions)."""

from __future__ import annotations

import math

import pytest

from study.tracking.store import Tracker


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "cells")


def _trial(t: Tracker, parent: str, trial_id: str, stage: str, metrics: dict, status: str = "FINISHED") -> None:
    run_id, _ = t.trial_run(trial_id, stage, trial_id, {"study.cell": "c"}, {}, parent)
    t.log_metrics(run_id, metrics, step=0)
    t.finish(run_id, status)


def test_parents_end_with_their_cells_figures(tracker):
    ok = tracker.cell_run("ok", {"dataset": "d", "noise_rate": 0.2})
    _trial(tracker, ok, "t1", "lnl", {"val_f1": 0.5, "best_val_f1": 0.6})
    _trial(tracker, ok, "t2", "lnl", {"val_f1": 0.7})  # no best logged: its last value counts
    _trial(tracker, ok, "f1", "final", {"test_f1": 0.8})
    _trial(tracker, ok, "f2", "final", {"test_f1": 0.6})
    _trial(tracker, ok, "f3", "final", {"test_f1": 0.1}, status="FAILED")  # not a finished final run
    failed = tracker.cell_run("failed", {"dataset": "d", "noise_rate": 0.4})
    _trial(tracker, failed, "t3", "lnl", {}, status="FAILED")

    assert tracker.close_cells("val_f1") == 2
    ok_run, failed_run = tracker.client.get_run(ok), tracker.client.get_run(failed)
    assert ok_run.info.status == "FINISHED" and failed_run.info.status == "FAILED"
    m = ok_run.data.metrics
    assert m["tuned_best_val_f1"] == 0.7 and m["final_runs"] == 2 and m["final_test_f1_mean"] == pytest.approx(0.7)
    assert m["final_test_f1_std"] == pytest.approx(math.sqrt(0.02))
    assert failed_run.data.metrics["final_runs"] == 0
    assert tracker.close_cells("val_f1") == 0  # a resume closes nothing twice


def _history(t: Tracker, parent: str, trial_id: str, metric: str, values: list[float]) -> None:
    run_id, _ = t.trial_run(trial_id, "lnl", trial_id, {"study.cell": "c"}, {}, parent)
    for step, v in enumerate(values):
        t.log_metrics(run_id, {metric: v}, step=step)
    t.finish(run_id, "FINISHED")


@pytest.mark.parametrize(("metric", "mode", "best"), [("val_f1", "max", 0.9), ("val_loss", "min", 0.2)])
def test_the_tuned_best_is_over_every_epoch_and_follows_the_metrics_direction(tracker, metric, mode, best):
    """An epoch better than a trial's last one counts (MLflow's latest value would hide it), and a metric
    where lower is better takes the lowest."""
    cell = tracker.cell_run("c", {"dataset": "d", "noise_rate": 0.2})
    _history(tracker, cell, "t1", metric, [0.5, 0.9, 0.3])
    _history(tracker, cell, "t2", metric, [0.6, 0.2, 0.4])
    tracker.close_cells(metric, mode)
    assert tracker.client.get_run(cell).data.metrics[f"tuned_best_{metric}"] == best


def test_a_trial_handed_out_again_continues_the_run_of_the_trial_before_it(tracker):
    """After a driver kill, an orphan runs again under a new Ray trial id (``TrialConfig.continues``): one
    MLflow run, now tagged with the new id, its metrics kept."""
    cell = tracker.cell_run("c", {"dataset": "d", "noise_rate": 0.2})
    first, created = tracker.trial_run("t2", "lnl", "lnl:c:t2", {"study.cell": "c"}, {}, cell)
    tracker.log_metrics(first, {"val_f1": 0.5}, step=0)
    fresh = Tracker(tracker.uri, "cells")  # the resumed driver
    again, created_again = fresh.trial_run("t2b", "lnl", "lnl:c:t2b", {"study.cell": "c"}, {}, cell, "t2")
    assert created and not created_again and again == first
    run = fresh.client.get_run(again)
    assert run.data.tags["study.trial_id"] == "t2b" and run.data.tags["study.continues_trial"] == "t2"
    assert run.data.tags["mlflow.runName"] == "lnl:c:t2b" and run.data.metrics["val_f1"] == 0.5
    # a run the killed driver created without its params (killed between the two): they are added
    bare, _ = tracker.trial_run("t5", "lnl", "lnl:c:t5", {"study.cell": "c"}, {}, cell)
    taken, _ = fresh.trial_run("t5b", "lnl", "lnl:c:t5b", {"study.cell": "c"}, {"hparams": {"lr": 0.1}}, cell, "t5")
    assert taken == bare and fresh.client.get_run(bare).data.params == {"hparams.lr": "0.1"}
    other, created_other = fresh.trial_run("t9", "lnl", "lnl:c:t9", {"study.cell": "c"}, {}, cell, "gone")
    assert created_other and other != first  # nothing to continue: a new run


def test_a_final_run_at_the_tuning_seed_copies_the_best_tuning_trials_run(tracker, tmp_path):
    """The final run that would retrain the best tuning trial (same point, same configuration) records
    that trial's run instead: its metrics with their histories, its study tags, its artifacts, and
    ``study.reused_run``; an unfinished source is not copied; a half-written copy is made again."""
    cell = tracker.cell_run("c", {"dataset": "d", "noise_rate": 0.2})
    src, _ = tracker.trial_run("t1", "lnl", "lnl:c:t1", {"study.cell": "c", "seed": "0"}, {}, cell)
    for epoch, v in enumerate([0.4, 0.6, 0.5]):
        tracker.log_metrics(src, {"val_f1": v}, step=epoch)
    tracker.log_metrics(src, {"test_f1": 0.7}, step=2)
    tracker.set_tags(src, {"study.state": "complete", "study.per_class_f1": "[0.6, 0.8]"})
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "best_checkpoint.pt").write_bytes(b"weights")
    tracker.log_artifacts(src, tmp_path / "art")
    assert tracker.copy_run("t1", "t1-final", "final", "final:c:t1-final", {"study.cell": "c"}, {}, cell) is None
    tracker.finish(src)
    # a copy a killed driver left RUNNING: deleted and made again
    stale, _ = tracker.trial_run("t1-final", "final", "x", {}, {}, cell)
    copy = tracker.copy_run("t1", "t1-final", "final", "final:c:t1-final", {"study.cell": "c"}, {"a": 1}, cell)
    assert copy is not None and copy != stale
    run = tracker.client.get_run(copy)
    assert run.info.status == "FINISHED" and run.data.tags["study.stage"] == "final"
    assert run.data.tags["study.reused_run"] == src and run.data.tags["study.per_class_f1"] == "[0.6, 0.8]"
    assert run.data.tags["mlflow.parentRunId"] == cell and run.data.params["a"] == "1"
    assert [m.value for m in tracker.client.get_metric_history(copy, "val_f1")] == [0.4, 0.6, 0.5]
    assert run.data.metrics["test_f1"] == 0.7
    assert [a.path for a in tracker.client.list_artifacts(copy)] == ["best_checkpoint.pt"]
    again = Tracker(tracker.uri, "cells").copy_run("t1", "t1-final", "final", "n", {}, {}, cell)
    assert again == copy
    finals = [r for r in Tracker(tracker.uri, "cells").runs() if r.data.tags.get("study.trial_id") == "t1-final"]
    assert len(finals) == 1
