"""Early stopping that only ever compares trials of the same cell: one ASHA per cell.

Ray Tune takes one scheduler per Tuner; this one routes each trial to its cell's
``AsyncHyperBandScheduler`` (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning"),
created on the cell's first trial. Trials run first-in first-out. ``SchedulerState`` saves the rungs with
Ray's experiment state so that a resumed study prunes as an uninterrupted one does.

A packed trial (``TrialConfig.members``) is not one ASHA entry: each of its members is, under its own id
(``plan.member_trial_id``), fed its own reports (``results.MEMBERS``); the members ASHA stops are posted to
the ``study.tuning.prunes`` board, from which the trial learns to drop them, and the trial itself is
stopped once none of its members trains on.
"""

from __future__ import annotations

import json
import math
import pickle
from types import SimpleNamespace
from typing import Any

from ray.tune import Callback
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from study.tuning.plan import TrialConfig, member_trial_id
from study.tuning.results import EPOCH, ERROR, FINISHED, MEMBERS, PRUNED


class PerCellASHA(FIFOScheduler):
    """One ``AsyncHyperBandScheduler`` per cell, found by the trial's ``TrialConfig.id``."""

    board: Any = None  # default of an attribute added after schedulers were first pickled into studies

    def __init__(
        self,
        metric: str,
        mode: str,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 2.0,
        time_attr: str = TRAINING_ITERATION,
    ) -> None:
        super().__init__()
        self._cfg = dict(
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=min(grace_period, max_t),
            reduction_factor=reduction_factor,
            time_attr=time_attr,
        )
        self._metric, self._mode = metric, mode
        self.cells: dict[str, AsyncHyperBandScheduler] = {}
        #: members of packed trials that ASHA stopped (their ids), posted again when their trial reports
        self.pruned: set[str] = set()
        self.board: Any = None

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["board"] = None  # an actor handle of this driver's Ray job
        return d

    def use_board(self, board: Any) -> None:
        """Post packed trials' stopped members to ``board`` (a ``prunes.PruneBoard`` handle)."""
        self.board = board

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _asha(self, trial) -> AsyncHyperBandScheduler:
        cell = TrialConfig.from_ray(trial.config).id
        if cell not in self.cells:
            self.cells[cell] = AsyncHyperBandScheduler(**self._cfg)
        return self.cells[cell]

    @staticmethod
    def _packed(trial) -> bool:
        return bool(TrialConfig.from_ray(trial.config).members)

    def on_trial_add(self, tune_controller, trial) -> None:
        if not self._packed(trial):
            self._asha(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._packed(trial):
            return self._on_packed_result(trial, result)
        return self._asha(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if not self._packed(trial):
            self._asha(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        if not self._packed(trial):
            self._asha(trial).on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        if not self._packed(trial):
            self._asha(trial).on_trial_error(tune_controller, trial)

    def _on_packed_result(self, trial, result: dict) -> str:
        """Each member's report to its cell's ASHA as its own entry (rung time: epoch + 1); the members it
        stops are posted to the board. STOP once every member of the report has ended or been stopped."""
        reports: dict[str, dict] = json.loads(result.get(MEMBERS) or "{}")
        asha = self._asha(trial)
        bracket, op = asha._brackets[0], asha._metric_op
        stop, going = [], 0
        for key, report in reports.items():
            mid = member_trial_id(trial.trial_id, int(key))
            if report.get(ERROR) or report.get(PRUNED):
                continue
            value = report.get(self._metric)  # the epoch's value of the tuning metric, as for a whole trial
            epoch = int(report.get(EPOCH, result.get(EPOCH, 0)))
            if mid not in self.pruned and value is not None and math.isfinite(float(value)):
                stub = SimpleNamespace(trial_id=mid)
                stopped = bracket.on_result(stub, epoch + 1, op * float(value)) == TrialScheduler.STOP
                if stopped and not report.get(FINISHED):
                    self.pruned.add(mid)
            if report.get(FINISHED):
                continue
            if mid in self.pruned:
                stop.append(int(key))
            else:
                going += 1
        if self.board is not None and EPOCH in result:
            self.board.post.remote(trial.trial_id, int(result[EPOCH]), stop)
        return TrialScheduler.STOP if reports and not going else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return f"PerCellASHA: {len(self.cells)} cells"

    def record(self, cell: str, trial_id: str, values: dict[int, float]) -> None:
        """Put a trial Ray does not know into its cell's rungs, as its reports would have: ``values`` per
        0-based epoch (Optuna's intermediate values; the rung time is epoch + 1, one report per epoch). For a
        trial that finished after Ray's last snapshot of a killed driver (``CellSearcher`` counts it)."""
        if cell not in self.cells:
            self.cells[cell] = AsyncHyperBandScheduler(**self._cfg)
        asha = self.cells[cell]
        bracket, op = asha._brackets[0], asha._metric_op
        stub = SimpleNamespace(trial_id=trial_id)
        for epoch in sorted(values):
            bracket.on_result(stub, epoch + 1, op * values[epoch])


class SchedulerState(Callback):
    """Carries a ``PerCellASHA``'s rungs across a driver restart.

    Ray saves the searcher's and the callbacks' state with its experiment state, but not the scheduler's:
    a restored study would start every cell's ASHA empty and stop nothing until new trials refilled its
    rungs, so it would prune differently from an uninterrupted run. This callback's state is the
    scheduler's cells (their brackets hold each trial's metric at each rung, keyed by Ray's trial id, which
    a restore keeps); it must sit at the same index of the callback list in every session (the first).
    """

    def __init__(self, scheduler: PerCellASHA) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict | None:
        if not self.scheduler.cells:
            return None
        return {"cells": pickle.dumps(self.scheduler.cells), "pruned": sorted(getattr(self.scheduler, "pruned", ()))}

    def set_state(self, state: dict) -> None:
        self.scheduler.cells = pickle.loads(state["cells"])
        self.scheduler.pruned = set(state.get("pruned", []))
