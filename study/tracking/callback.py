"""A Ray Tune callback that records every trial in MLflow from the driver.

Unlike Ray's stock ``MLflowLoggerCallback``, which opens a new run whenever a trial starts (so a
restored trial gets a second run), this one looks the trial's run up by its tag ``study.trial_id`` and
continues it. The run's tags and params come from the trial's ``TrialConfig`` (its axes, its cell, its
hyperparameters); the trial's reports are read by the keys of ``study.tuning.results``. Per-epoch metrics
are logged with ``step=epoch``; the final report adds the test metrics and the artifacts the trial wrote
to its artifact folder (deleted once MLflow has copied them).

Each epoch is logged once. Ray processes a result before it registers the checkpoint that came with it
(the save is a second task on the trial's actor), and the driver's experiment state is written only
every few seconds; so a trial restored after a node loss or a driver kill may restart from the
checkpoint before the last epoch it reported and compute that epoch again. Its recomputed metrics are
not logged a second time (the loader's shuffling state is restored with the checkpoint, so on CPU the
values are the same), and the run's tag ``study.resumed_from_epoch`` says where it continued.

A packed trial (``TrialConfig.members``) has one run per member, under the member's id
(``plan.member_trial_id``), with the member's own hyperparameters as params; each report's
``results.MEMBERS`` is logged member by member, and a member whose report says it ended (finished, failed,
pruned) has its run ended then; the rest end with the trial.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ray.tune import Callback
from ray.tune.result import TRAINING_ITERATION

from study.tracking.store import (
    AXIS_TAGS,
    EPOCH_METRICS,
    FINAL_METRICS,
    SSL_METRICS,
    TAG_CELL,
    TAG_ERROR,
    TAG_LABELLED,
    TAG_RETRIES,
    TAG_STATE,
    Tracker,
)
from study.tuning.plan import TrialConfig, member_trial_id
from study.tuning.results import (
    ARTIFACT_DIR,
    EPOCH,
    ERROR,
    FINISHED,
    LABELLED_IMAGES,
    MEMBERS,
    NODE_ID,
    PER_CLASS_F1,
    PRUNED,
    START_EPOCH,
)

#: the metrics whose last logged step says how far a run got (an LNL trial's, a pretraining job's)
PROGRESS_METRICS = ("train_loss", "ssl_loss")


def _drop_staging(result: dict) -> None:
    """Delete the folder a finished trial wrote its artifacts to, once MLflow holds them (it copies)."""
    if result.get(ARTIFACT_DIR):
        shutil.rmtree(result[ARTIFACT_DIR], ignore_errors=True)


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or getattr(getattr(trial, "run_metadata", None), "error_filename", None)
    try:
        if path and Path(path).is_file():
            lines = [ln for ln in Path(path).read_text().strip().splitlines() if ln.strip()]
            return lines[-1][:2000] if lines else "unknown error"
    except OSError:
        pass
    msg = getattr(trial, "error_msg", None) or getattr(getattr(trial, "run_metadata", None), "error_message", None)
    return str(msg or "unknown error").strip().splitlines()[-1][:2000]


def run_identity(tracker: Tracker, cfg: TrialConfig, trial_id: str) -> tuple[str, dict, dict, str | None]:
    """What names a trial's MLflow run: (run name, tags: its axes and cell, params: its ``TrialConfig``,
    its cell's parent run, created here on first sight)."""
    axes = cfg.axes()
    tags = {a: axes[a] for a in AXIS_TAGS if a in axes}
    parent = None
    if cfg.cell is not None:
        tags[TAG_CELL] = cfg.cell
        parent = tracker.cell_run(cfg.cell, axes)
    # no empty point, job or hparams; not ``continues``, which says how a resume ran it, not what it is
    params = cfg.model_dump(mode="json", exclude_defaults=True, exclude={"continues"})
    return f"{cfg.stage}:{cfg.id}:{trial_id}", tags, params, parent


class TrackingCallback(Callback):
    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None, artifacts_root: str) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self.artifact_location, self.artifacts_root = artifact_location, artifacts_root
        self._tracker: Tracker | None = None
        self._nodes: dict[str, set[str]] = {}
        self._last_step: dict[str, int] = {}
        self._resumed: dict[str, int] = {}
        #: runs this driver ended (a packed trial's members end one by one)
        self._done: set[str] = set()

    def __getstate__(self) -> dict:  # pickled into Ray's experiment state; the client is not
        d = dict(self.__dict__)
        d["_tracker"] = None
        d["_nodes"] = {}
        d["_last_step"] = {}
        d["_resumed"] = {}
        d["_done"] = set()
        return d

    @property
    def tracker(self) -> Tracker:
        if self._tracker is None:
            self._tracker = Tracker(self.tracking_uri, self.experiment, self.artifact_location)
        return self._tracker

    def _run(self, trial) -> str:
        """The trial's MLflow run (created on first sight, under its cell's parent run)."""
        cfg = TrialConfig.from_ray(trial.config)
        name, tags, params, parent = run_identity(self.tracker, cfg, trial.trial_id)
        run_id, _ = self.tracker.trial_run(trial.trial_id, cfg.stage, name, tags, params, parent, cfg.continues)
        return run_id

    def _member_runs(self, trial) -> list[str]:
        """A packed trial's members' runs, by member index ([] for a trial of one configuration)."""
        cfg = TrialConfig.from_ray(trial.config)
        runs = []
        for i in range(len(cfg.members)):
            mid = member_trial_id(trial.trial_id, i)
            name, tags, params, parent = run_identity(self.tracker, cfg.member(i), mid)
            runs.append(self.tracker.trial_run(mid, cfg.stage, name, tags, params, parent)[0])
        return runs

    def _ended(self, run_id: str) -> bool:
        return run_id in self.tracker.terminal or run_id in self._done

    def _end(self, run_id: str, result: dict) -> None:
        """End a run as its trial's (or member's) last report says: failed, finished, or pruned by ASHA."""
        self._done.add(run_id)
        if result.get(ERROR):
            self.tracker.set_tags(run_id, {TAG_STATE: "failed", TAG_ERROR: result[ERROR]})
            self.tracker.finish(run_id, "FAILED")
        elif result.get(FINISHED):
            self._finish(run_id, result)
        else:  # stopped early by ASHA
            self.tracker.set_tags(run_id, {TAG_STATE: "pruned", "study.pruned_at_epoch": result.get(EPOCH, -1)})
            self.tracker.finish(run_id, "KILLED")

    def on_trial_start(self, iteration, trials, trial, **info):
        if not self._member_runs(trial):
            self._run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        runs = self._member_runs(trial)
        if not runs:
            self._log_result(self._run(trial), result)
            return
        for key, report in json.loads(result.get(MEMBERS) or "{}").items():
            run_id = runs[int(key)]
            if self._ended(run_id):
                continue
            self._log_result(run_id, {NODE_ID: result.get(NODE_ID), START_EPOCH: result.get(START_EPOCH), **report})
            if report.get(FINISHED) or report.get(ERROR) or report.get(PRUNED):
                self._end(run_id, report)

    def _log_result(self, run_id: str, result: dict) -> None:
        """One report's epoch metrics, node and resume point on ``run_id``."""
        if run_id in self.tracker.terminal:
            return
        if result.get(NODE_ID):
            self._record_node(run_id, result[NODE_ID])
        start = int(result.get(START_EPOCH, 0) or 0)
        if start > 0 and self._resumed.get(run_id) != start:
            self._resumed[run_id] = start
            self.tracker.set_tags(run_id, {"study.resumed_from_epoch": start})
        epoch = int(result.get(EPOCH, result.get(TRAINING_ITERATION, 1) - 1))
        if epoch <= self._logged_until(run_id):
            return  # an epoch recomputed after a restore from an earlier checkpoint: already recorded
        self._last_step[run_id] = epoch
        self.tracker.log_metrics(
            run_id, {k: result[k] for k in (*EPOCH_METRICS, *SSL_METRICS) if k in result}, step=epoch
        )

    def _record_node(self, run_id: str, node: str) -> None:
        """Add ``node`` to the nodes the run's trial ran on (a trial moved by a node loss shows both)."""
        if run_id not in self._nodes:  # after a driver restart, start from what the run already records
            tag = self.tracker.client.get_run(run_id).data.tags.get("study.node_ids", "")
            self._nodes[run_id] = set(filter(None, tag.split(",")))
        nodes = self._nodes[run_id]
        if node not in nodes:
            nodes.add(node)
            self.tracker.set_tags(run_id, {"study.node_ids": ",".join(sorted(nodes))})

    def _logged_until(self, run_id: str) -> int:
        """The last epoch whose metrics the run records (read from MLflow once per driver)."""
        if run_id not in self._last_step:
            steps = [m.step for key in PROGRESS_METRICS for m in self.tracker.client.get_metric_history(run_id, key)]
            self._last_step[run_id] = max(steps, default=-1)
        return self._last_step[run_id]

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        runs = self._member_runs(trial)
        if runs:  # members still running when the trial ended (ASHA stopped the last of them)
            reports = json.loads(result.get(MEMBERS) or "{}")
            for i, run_id in enumerate(runs):
                report = reports.get(str(i), {})
                if self._ended(run_id):
                    _drop_staging(report)
                else:
                    self._end(run_id, {EPOCH: result.get(EPOCH, -1), **report})
            return
        run_id = self._run(trial)
        if run_id in self.tracker.terminal:  # finished before an interruption; Ray replayed its last report
            _drop_staging(result)
            return
        self._end(run_id, result)

    def _finish(self, run_id: str, result: dict) -> None:
        """A trial that ran to its end: its final metrics, artifacts and per-class F1."""
        self.tracker.log_metrics(
            run_id, {k: result[k] for k in FINAL_METRICS if k in result}, step=int(result.get(EPOCH, 0))
        )
        if result.get(ARTIFACT_DIR):
            self.tracker.log_artifacts(run_id, Path(result[ARTIFACT_DIR]))
        if result.get(PER_CLASS_F1):  # already a JSON list
            self.tracker.set_tags(run_id, {"study.per_class_f1": result[PER_CLASS_F1]})
        if result.get(LABELLED_IMAGES):
            self.tracker.set_tags(run_id, {TAG_LABELLED: result[LABELLED_IMAGES]})
        self.tracker.set_tags(run_id, {TAG_STATE: "complete"})
        self.tracker.finish(run_id, "FINISHED")
        _drop_staging(result)  # MLflow has its copy

    def on_trial_recover(self, iteration, trials, trial, **info):
        for run_id in self._member_runs(trial) or [self._run(trial)]:
            if not self._ended(run_id):
                tags = {TAG_RETRIES: trial.num_failures, "study.last_error": _error_text(trial)}
                self.tracker.set_tags(run_id, tags)

    def on_trial_error(self, iteration, trials, trial, **info):
        members = self._member_runs(trial)  # a packed trial's members that ended before stay as they ended
        for run_id in [r for r in members if not self._ended(r)] if members else [self._run(trial)]:
            self.tracker.set_tags(
                run_id, {TAG_STATE: "failed", TAG_ERROR: _error_text(trial), TAG_RETRIES: trial.num_failures}
            )
            self.tracker.finish(run_id, "FAILED")
