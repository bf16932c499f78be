"""The study's MLflow store (docs/architecture.md, MLflow conventions).

One experiment per study; a parent run per cell (tag ``study.kind=cell``); a child run per trial
(``mlflow.parentRunId``) found by its tag ``study.trial_id``, which is Ray's trial id and survives a
restore, so a resumed trial logs into the run it already has instead of opening a second one.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

#: tags of the run conventions: the axes, and the study's own (written here and by ``TrackingCallback``,
#: read by ``study status``)
#: (``label_fraction`` only where it is below 1: ``tuning.plan.AXIS_DEFAULTS``)
AXIS_TAGS = ("dataset", "noise_kind", "noise_rate", "label_fraction", "ssl", "lnl", "seed")
#: the labelled training images of a trial below the full label fraction
TAG_LABELLED = "study.labelled_images"
TAG_KIND = "study.kind"  # "cell" (a cell's parent run) or "trial"
TAG_STAGE = "study.stage"
TAG_CELL = "study.cell"
TAG_CELL_PARENT = "study.cell_parent"  # on a cell's parent run only
TAG_TRIAL_ID = "study.trial_id"  # Ray's trial id: survives a restore
TAG_REUSED = "study.reused_run"  # a final run that records its cell's best tuning trial: that trial's run id
TAG_CONTINUES = "study.continues_trial"  # the Ray trial id a trial's run had before a driver kill
TAG_STATE = "study.state"  # complete | pruned | failed
ENDED = ("FINISHED", "FAILED", "KILLED")  # MLflow run statuses of a trial that is over
TAG_ERROR = "study.error"
TAG_RETRIES = "study.retries"
#: per-epoch metrics of an LNL trial, and of a pretraining job
EPOCH_METRICS = (
    "train_loss",
    "val_f1",
    "val_acc",
    "val_balanced_acc",
    "val_auroc",
    "val_loss",
    "selected_label_precision",
    "selected_label_recall",
)
SSL_METRICS = ("ssl_loss", "knn_acc")
FINAL_METRICS = (
    "test_f1",
    "test_acc",
    "test_balanced_acc",
    "test_auroc",
    "test_f1_last5",
    "best_epoch",
    "best_val_f1",
    "stopped_epoch",
    "shifted_test_f1",
    "shifted_test_acc",
    "shifted_test_balanced_acc",
    "shifted_test_auroc",
    "test_study_f1",
    "test_study_acc",
    "test_study_auroc",
)


def default_tracking_uri(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).resolve() / 'mlflow.db'}"


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


class Tracker:
    """Find-or-create runs in the study's experiment. Use from the driver process only."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            try:
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifact_location)
            except MlflowException:  # created meanwhile by another process (a reader of a starting study)
                exp = self.client.get_experiment_by_name(experiment)
                if exp is None:
                    raise
                self.experiment_id = exp.experiment_id
        else:
            self.experiment_id = exp.experiment_id
        self._cache: dict[str, str] = {}
        #: runs that were already terminal when this driver found them (a resumed study): left as they are
        self.terminal: set[str] = set()

    def _find(self, key: str, value: str) -> str | None:
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{key}` = '{value}'", max_results=2)
        return runs[0].info.run_id if runs else None

    def cell_run(self, cell_id: str, point: dict) -> str:
        """The parent run of a cell (created once)."""
        key = f"cell:{cell_id}"
        if key in self._cache:
            return self._cache[key]
        run_id = self._find(TAG_CELL_PARENT, cell_id)
        if run_id is None:
            tags = {
                TAG_KIND: "cell",
                TAG_CELL_PARENT: cell_id,
                TAG_CELL: cell_id,
                **{a: str(point[a]) for a in AXIS_TAGS if a in point and a != "seed"},
            }
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=cell_id)
            run_id = run.info.run_id
        self._cache[key] = run_id
        return run_id

    def trial_run(
        self,
        trial_id: str,
        stage: str,
        name: str,
        tags: dict,
        params: dict,
        parent: str | None = None,
        continues: str | None = None,
    ) -> tuple[str, bool]:
        """The run of a Ray trial: (run id, created now). A trial that ``continues`` another Ray trial (an
        orphan handed out again after a driver kill) takes over that trial's run, retagged with its id."""
        if trial_id in self._cache:
            return self._cache[trial_id], False
        run_id = self._find(TAG_TRIAL_ID, trial_id)
        if run_id is None and continues:
            run_id = self._find(TAG_TRIAL_ID, continues)
            if run_id is not None:
                self.client.set_tag(run_id, TAG_TRIAL_ID, trial_id)
                self.client.set_tag(run_id, TAG_CONTINUES, continues)
                self.client.set_tag(run_id, "mlflow.runName", name)
        created = run_id is None
        if created:
            all_tags = {TAG_TRIAL_ID: trial_id, TAG_STAGE: stage, TAG_KIND: "trial", **tags}
            if parent:
                all_tags["mlflow.parentRunId"] = parent
            run = self.client.create_run(
                self.experiment_id, tags={k: str(v) for k, v in all_tags.items()}, run_name=name
            )
            self._log_params(run.info.run_id, params, {})
            run_id = run.info.run_id
        else:
            found = self.client.get_run(run_id)
            # a driver killed between creating the run and logging its params left some out
            self._log_params(run_id, params, found.data.params)
            if found.info.status in ENDED:
                self.terminal.add(run_id)
            else:
                self.client.update_run(run_id, status="RUNNING")
        self._cache[trial_id] = run_id
        return run_id, created

    def _log_params(self, run_id: str, params: dict, have: dict) -> None:
        """Log the flattened ``params`` that the run does not have yet, 100 per call."""
        items = [Param(k[:250], v[:6000]) for k, v in flatten(params).items() if k[:250] not in have]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def run_ended(self, trial_id: str) -> bool:
        """Whether the run of Ray trial ``trial_id`` exists and has ended (FINISHED, FAILED or KILLED)."""
        run_id = self._find(TAG_TRIAL_ID, trial_id)
        return run_id is not None and self.client.get_run(run_id).info.status in ENDED

    def copy_run(
        self, source_trial_id: str, trial_id: str, stage: str, name: str, tags: dict, params: dict, parent: str | None
    ) -> str | None:
        """A FINISHED run of ``trial_id`` recording what the run of ``source_trial_id`` recorded: every metric
        with its history, the trial's ``study.*`` tags, and ``study.reused_run`` naming the source run
        (whose artifacts are the trial's). None, and nothing written, where the source run has not finished
        with test metrics. Idempotent: a copy a killed driver left half-written is deleted and made again."""
        existing = self._find(TAG_TRIAL_ID, trial_id)
        if existing is not None:
            if self.client.get_run(existing).info.status == "FINISHED":
                return existing
            self.client.delete_run(existing)
            self._cache.pop(trial_id, None)
        src_id = self._find(TAG_TRIAL_ID, source_trial_id)
        if src_id is None:
            return None
        src = self.client.get_run(src_id)
        if src.info.status != "FINISHED" or "test_f1" not in src.data.metrics:
            return None
        own = {TAG_TRIAL_ID, TAG_STAGE, TAG_KIND, TAG_CONTINUES}
        kept = {k: v for k, v in src.data.tags.items() if k.startswith("study.") and k not in own}
        run_id, _ = self.trial_run(trial_id, stage, name, {**kept, **tags, TAG_REUSED: src_id}, params, parent)
        history = [m for key in src.data.metrics for m in self.client.get_metric_history(src_id, key)]
        for i in range(0, len(history), 1000):
            self.client.log_batch(run_id, metrics=history[i : i + 1000])
        if self.client.list_artifacts(src_id):  # the best checkpoint, the noisy labels: a run has its own
            with tempfile.TemporaryDirectory(prefix="study-copy-") as tmp:
                self.client.download_artifacts(src_id, "", dst_path=tmp)
                self.client.log_artifacts(run_id, tmp)
        self.finish(run_id, "FINISHED")
        return run_id

    def log_metrics(self, run_id: str, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(run_id, metrics=items)

    def set_tags(self, run_id: str, tags: dict) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def log_artifacts(self, run_id: str, folder: Path) -> None:
        if folder.is_dir() and any(folder.iterdir()):
            self.client.log_artifacts(run_id, str(folder))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def close_cells(self, metric: str, mode: str = "max") -> int:
        """End every cell's parent run once its trials have ended: FINISHED with the cell's tuning best
        (``tuned_best_<metric>``: the best value of ``metric`` over every epoch of every tuning trial,
        highest or lowest as ``mode`` says) and its final runs' ``final_test_f1_mean``/``_std`` and
        ``final_runs``, or FAILED where no final run finished (every tuning trial failed). Returns the runs
        closed."""
        runs = self.runs()
        children: dict[str, list] = {}
        for r in runs:
            parent = r.data.tags.get("mlflow.parentRunId")
            if parent:
                children.setdefault(parent, []).append(r)
        closed = 0
        for cell in (r for r in runs if r.data.tags.get(TAG_KIND) == "cell"):
            kids = children.get(cell.info.run_id, [])
            tuned = [
                m.value
                for k in kids
                if k.data.tags.get(TAG_STAGE) == "lnl" and metric in k.data.metrics
                for m in self.client.get_metric_history(k.info.run_id, metric)
                if math.isfinite(m.value)
            ]
            finals = [
                k.data.metrics["test_f1"]
                for k in kids
                if k.data.tags.get(TAG_STAGE) == "final" and k.info.status == "FINISHED" and "test_f1" in k.data.metrics
            ]
            summary: dict[str, float] = {"final_runs": float(len(finals))}
            if tuned:
                summary[f"tuned_best_{metric}"] = max(tuned) if mode == "max" else min(tuned)
            if finals:
                summary["final_test_f1_mean"] = sum(finals) / len(finals)
                mean = summary["final_test_f1_mean"]
                if len(finals) > 1:
                    summary["final_test_f1_std"] = math.sqrt(sum((f - mean) ** 2 for f in finals) / (len(finals) - 1))
            self.log_metrics(cell.info.run_id, summary, step=0)
            status = "FINISHED" if finals else "FAILED"
            if cell.info.status != status:
                self.finish(cell.info.run_id, status)
                closed += 1
        return closed

    def runs(self) -> list:
        """Every run of the experiment (for status and tests)."""
        out, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            out += list(page)
            token = page.token
            if not token:
                return out
