"""Per-cell ASHA: compares trials of one cell only, and its rungs survive a driver restart."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from study.tuning.plan import Point, TrialConfig
from study.tuning.scheduler import PerCellASHA, SchedulerState


def trial(tid: str, cell: str):
    """A Ray trial of the cell ``cell`` as the searcher configures it."""
    point = Point("synthetic", "symmetric", 0.4, "random", "ce", 0)
    return SimpleNamespace(trial_id=tid, config=TrialConfig(stage="lnl", id=cell, point=point).to_ray())


def report(s: PerCellASHA, t, value: float, it: int = 1) -> str:
    return s.on_trial_result(None, t, {"training_iteration": it, "val_f1": value})


def fresh() -> PerCellASHA:
    return PerCellASHA("val_f1", "max", max_t=4, grace_period=1, reduction_factor=2)


def test_cells_are_compared_only_with_themselves():
    s = fresh()
    a, b, c = trial("a", "c1"), trial("b", "c1"), trial("c", "c2")
    for t in (a, b, c):
        s.on_trial_add(None, t)
    assert report(s, a, 0.9) == TrialScheduler.CONTINUE
    assert report(s, c, 0.1) == TrialScheduler.CONTINUE  # first of its cell: nothing to compare with
    assert report(s, b, 0.1) == TrialScheduler.STOP  # below cell c1's rung


def test_rungs_survive_a_restart_through_the_callback_state():
    s = fresh()
    a = trial("a", "c1")
    s.on_trial_add(None, a)
    report(s, a, 0.9)
    state = SchedulerState(s).get_state()

    restored = fresh()  # what Tuner.restore gives back: the scheduler as it was created
    SchedulerState(restored).set_state(state)
    b = trial("b", "c1")
    restored.on_trial_add(None, b)
    assert report(restored, b, 0.1) == TrialScheduler.STOP

    empty = fresh()
    empty.on_trial_add(None, b)
    assert report(empty, b, 0.1) == TrialScheduler.CONTINUE  # what a restart used to do
    assert SchedulerState(fresh()).get_state() is None
