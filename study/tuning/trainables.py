"""The Ray Tune trainables: a stage-1 pretraining job and an LNL trial (tuning or final).

An LNL trial is the trial recipe (``study.experiment.build_trial``) made restartable: it reports every
epoch, every ``failures.checkpoint_every`` epochs (and at its last) with a ``ray.tune.Checkpoint`` holding
the algorithm state, the fit result and the loader's shuffling state, so a restored trial continues from
its last checkpointed epoch. The last report adds the clean-test
metrics at the best-validation epoch and ``results.FINISHED``. A non-finite loss is reported as
``results.ERROR`` and not retried (it would recur); other exceptions propagate so Ray retries the trial.
Report keys are named in ``study.tuning.results``; the trial's config is a ``plan.TrialConfig``.

Trials use the GPU share Ray gives them (mixed precision, channels-last) and the CPU where there is none.

A packed trial (``TrialConfig.members``, ``resources.pack``) trains its members together
(``study.experiment.build_pack``, ``study.train.fit_pack``): each epoch's report carries every member's
report under ``results.MEMBERS`` (a member that ends, by its last epoch, its patience, a non-finite loss or
its cell's ASHA, says so in its report), and one checkpoint holds every member's state. After reporting an
epoch the trial drops the members the scheduler stopped (``study.tuning.prunes``).

Shared storage (``study.storage``): ``cache_dir`` may be an ``s3://``/``gs://`` URI, in which case the
encoder is downloaded from it to this node's mirror (and a pretraining job uploads the one it trains);
an empty ``data_cache`` means this node's own decoded-dataset cache; ``artifacts_uri``, when set, receives
a copy of the trial's MLflow artifacts (``<artifacts_uri>/<trial id>/``), which the driver downloads to
``artifacts_root`` before logging them, since the trial may run on a node whose disk the driver cannot read.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from study import storage
from study.errors import NonFiniteLossError
from study.experiment import Trial, build_pack, build_trial, device_budget, pretrain_request
from study.ssl import pretrain
from study.train import FitResult, PackMember, fit_pack
from study.tuning import results as R
from study.tuning.plan import TrialConfig, member_trial_id
from study.tuning.prunes import stopped_members
from study.tuning.spec import Spec

os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _use_trial_cpus() -> None:
    """As many torch threads as CPUs Ray gave the trial."""
    cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def objective(result: FitResult, metric: str, mode: str) -> float:
    """The best value of the tuning metric over the epochs so far (NaN before any finite one)."""
    values = [h[metric] for h in result.history if metric in h and math.isfinite(h[metric])]
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def _checkpoint_state() -> dict[str, Any] | None:
    """The state saved with Ray's last checkpoint of this trial (weights only), or None before any."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        state: dict[str, Any] = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
    return state


def _restore(trial: Trial) -> tuple[int, FitResult]:
    """(first epoch to train, fit result so far) from Ray's last checkpoint of this trial, if any."""
    state = _checkpoint_state()
    if state is None:
        return 0, FitResult()
    trial.algo.load_state_dict(state["algo"])
    trial.train.generator.set_state(state["generator"])
    return state["epoch"] + 1, FitResult.from_state(state["result"])


def _report(
    trial: Trial,
    epoch: int,
    metrics: dict[str, Any],
    result: FitResult,
    start: int,
    extra: dict[str, Any] | None = None,
    checkpoint: bool = True,
) -> None:
    """One epoch's report to Ray, with (``checkpoint``) the checkpoint a restored trial continues from."""
    tuning = trial.spec.tuning
    report: R.TrialResult = {
        "epoch": epoch,
        "objective": objective(result, tuning.metric, tuning.mode),
        "node_id": ray.get_runtime_context().get_node_id(),
        "start_epoch": start,
    }
    if not checkpoint:
        tune.report({**_scalars(metrics), **report, **(extra or {})})
        return
    with tempfile.TemporaryDirectory() as d:
        torch.save(
            {
                "algo": trial.algo.state_dict(),
                "result": result.to_state(),
                "epoch": epoch,
                "generator": trial.train.generator.get_state(),
            },
            Path(d) / "state.pt",
        )
        tune.report({**_scalars(metrics), **report, **(extra or {})}, checkpoint=tune.Checkpoint.from_directory(d))


def _failure(result: FitResult, error: object) -> dict[str, Any]:
    """The report of a trial (or member) whose loss went non-finite: its last finished epoch's metrics, the
    epoch it failed in and why."""
    last = result.history[-1] if result.history else {}
    failure: R.TrialResult = {"epoch": len(result.history), "error": f"non-finite loss: {error}"}
    return {**_scalars(last), **failure}


def _report_failure(result: FitResult, error: NonFiniteLossError) -> None:
    tune.report(_failure(result, error))


def lnl_trainable(
    config: dict[str, Any],
    spec_data: dict[str, Any],
    cache_dir: str,
    data_cache: str,
    artifacts_root: str,
    artifacts_uri: str | None = None,
    prune_board: str | None = None,
) -> None:
    """One LNL trial (stage ``lnl`` or ``final``) of ``TrialConfig.from_ray(config)``; a packed one
    (``members``) learns which members its cells' ASHA stopped from the board ``prune_board``."""
    cfg = TrialConfig.from_ray(config)
    assert cfg.point is not None, "an LNL trial has a point"
    spec = Spec.model_validate(spec_data)
    data_cache = str(storage.node_data_cache(data_cache))
    trial_id = tune.get_context().get_trial_id()
    _use_trial_cpus()
    if cfg.members:
        _packed_trial(cfg, spec, trial_id, cache_dir, data_cache, artifacts_root, artifacts_uri, prune_board)
        return
    # build the trial (data, noisy labels, encoder, model, loaders, algorithm), then restore its last epoch
    trial = build_trial(spec, cfg.point, cfg.hparams, _device(), cache_dir, data_cache, owner=trial_id)
    start, result = _restore(trial)
    last_epoch = trial.entry.epochs - 1
    every = spec.failures.checkpoint_every

    def on_epoch(epoch: int, metrics: dict[str, Any], res: FitResult) -> None:
        if epoch < last_epoch and res.stopped_epoch is None:  # the last one is reported below, with the test
            _report(trial, epoch, metrics, res, start, checkpoint=(epoch + 1) % every == 0)

    # train, selecting the epoch by the entry's validation metric (noisy-validation macro-F1 by default)
    try:
        result = trial.fit(start, result, on_epoch)
    except NonFiniteLossError as e:
        _report_failure(result, e)  # fit recorded the epochs before the failure on ``result``
        return
    done = _finish(trial, result, trial_id, data_cache, artifacts_root, artifacts_uri)
    _report(trial, result.history[-1]["epoch"], result.history[-1], result, start, done)


def _finish(
    trial: Trial, result: FitResult, run_key: str, data_cache: str, artifacts_root: str, artifacts_uri: str | None
) -> dict[str, Any]:
    """What the last report of a trial (or member) adds: the clean test at the selected epoch, and its
    artifacts for MLflow under ``artifacts_root/run_key`` (uploaded where the driver cannot read this disk)."""
    final = trial.final_metrics(result, data_cache)
    art = Path(artifacts_root) / run_key
    trial.write_artifacts(art, result, final)
    if artifacts_uri:
        storage.upload_dir(art, storage.join(artifacts_uri, run_key))
    done: R.TrialResult = {
        "best_val_f1": result.best_val_f1,
        "trial_finished": True,
        "artifact_dir": str(art),
        "per_class_f1": json.dumps(final.get("test_per_class_f1")),
    }
    if trial.point.label_fraction < 1.0:
        done["labelled_images"] = len(trial.splits.train)
    if result.stopped_epoch is not None:
        done["stopped_epoch"] = result.stopped_epoch
    return {**_scalars(final), **done}


def _packed_trial(
    cfg: TrialConfig,
    spec: Spec,
    trial_id: str,
    cache_dir: str,
    data_cache: str,
    artifacts_root: str,
    artifacts_uri: str | None,
    prune_board: str | None,
) -> None:
    """A packed trial: ``cfg.members`` trained together, each reported as its own trial. Members at one point
    (a tuning trial's samples) share its data and batches (``build_pack``); members at points of their own (a
    cell's final seeds) each have theirs, and are stepped together on their own batches."""
    points = cfg.member_points()
    built = {
        point: iter(
            build_pack(
                spec,
                point,
                [m.hparams for m, p in zip(cfg.members, points) if p == point],
                _device(),
                cache_dir,
                data_cache,
                owner=trial_id,
            )
        )
        for point in dict.fromkeys(points)
    }
    pack = _Pack(
        spec, [next(built[p]) for p in points], trial_id, data_cache, artifacts_root, artifacts_uri, prune_board
    )
    fit_pack(
        pack.members,
        pack.trials[0].entry.epochs,
        start_epoch=pack.start,
        on_epoch=pack.on_epoch,
        stopping=pack.trials[0].stopping,
    )
    pack.last_report()


class _Pack:
    """A packed trial's reporting: each member's epoch reports and its end (its last epoch, patience, a
    non-finite loss, or stopped by the scheduler), one checkpoint of every member."""

    def __init__(
        self,
        spec: Spec,
        trials: list[Trial],
        trial_id: str,
        data_cache: str,
        artifacts_root: str,
        artifacts_uri: str | None,
        prune_board: str | None,
    ) -> None:
        self.spec, self.trials, self.trial_id = spec, trials, trial_id
        self.data_cache, self.artifacts_root, self.artifacts_uri = data_cache, artifacts_root, artifacts_uri
        self.board = prune_board
        self.members = [t.pack_member() for t in trials]
        self.loaders = list({id(t.train): t.train for t in trials}.values())
        #: members whose end has been reported (or is pending), and ends to report with the next report
        self.start, self.ended = _restore_pack(self.members, self.loaders)
        self.pending: dict[int, dict[str, Any]] = {}
        self.last_epoch = trials[0].entry.epochs - 1

    def failures(self) -> dict[int, dict[str, Any]]:
        """Members whose loss went non-finite since the last report (they stopped training): their
        reports, at the epoch each failed in."""
        out = {}
        for i, m in enumerate(self.members):
            if m.result.error is not None and i not in self.ended:
                out[i] = _failure(m.result, m.result.error)
                self.ended.add(i)
        return out

    def member_report(self, i: int, metrics: dict[str, Any], epoch: int) -> dict[str, Any]:
        """Member ``i``'s report of ``epoch``; at its end, with its clean test and artifacts."""
        res, tuning = self.members[i].result, self.spec.tuning
        out = {**_scalars(metrics), R.EPOCH: epoch, R.OBJECTIVE: objective(res, tuning.metric, tuning.mode)}
        if epoch == self.last_epoch or res.stopped_epoch is not None:
            key = member_trial_id(self.trial_id, i)
            out.update(_finish(self.trials[i], res, key, self.data_cache, self.artifacts_root, self.artifacts_uri))
            self.ended.add(i)
        return out

    def report(self, epoch: int, reports: dict[int, dict[str, Any]]) -> None:
        """One report to Ray: the members' reports; a checkpoint every ``failures.checkpoint_every`` epochs,
        at the last epoch, and when no member trains on."""
        state: R.TrialResult = {
            "epoch": epoch,
            "node_id": ray.get_runtime_context().get_node_id(),
            "start_epoch": self.start,
            "members": json.dumps({str(i): r for i, r in reports.items()}),
        }
        going = any(m.live and i not in self.ended for i, m in enumerate(self.members))
        if going and (epoch + 1) % self.spec.failures.checkpoint_every != 0 and epoch < self.last_epoch:
            tune.report(dict(state))
            return
        with tempfile.TemporaryDirectory() as d:
            _save_pack(Path(d) / "state.pt", self.members, self.loaders, epoch, self.ended)
            tune.report(dict(state), checkpoint=tune.Checkpoint.from_directory(d))

    def on_epoch(self, epoch: int, metrics: dict[int, dict[str, Any]]) -> list[int]:
        """Report the epoch, then learn which members the scheduler stopped: ``fit_pack`` drops them."""
        reports = {**self.pending, **self.failures()}
        self.pending.clear()
        reports.update({i: self.member_report(i, m, epoch) for i, m in metrics.items()})
        self.report(epoch, reports)
        if epoch >= self.last_epoch:
            return []
        stop = [i for i in stopped_members(self.board, self.trial_id, epoch) if i not in self.ended]
        for i in stop:  # reported with the next epoch; the trial ends when its last member is stopped
            self.pending[i] = {R.EPOCH: epoch, R.PRUNED: True}
            self.ended.add(i)
        return stop

    def last_report(self) -> None:
        """Ends no epoch report carried (every member still training failed in one epoch)."""
        left = {**self.pending, **self.failures()}
        if left:
            self.report(max(int(r[R.EPOCH]) for r in left.values()), left)


def _save_pack(path: Path, members: list[PackMember], loaders: list[Any], epoch: int, ended: set[int]) -> None:
    torch.save(
        {
            "members": [{"algo": m.algo.state_dict(), "result": m.result.to_state(), "live": m.live} for m in members],
            "generators": [loader.generator.get_state() for loader in loaders],
            "epoch": epoch,
            "ended": sorted(ended),
        },
        path,
    )


def _restore_pack(members: list[PackMember], loaders: list[Any]) -> tuple[int, set[int]]:
    """(first epoch to train, members whose end was reported) from the packed trial's last checkpoint."""
    state = _checkpoint_state()
    if state is None:
        return 0, set()
    for m, saved in zip(members, state["members"], strict=True):
        m.algo.load_state_dict(saved["algo"])
        m.result = FitResult.from_state(saved["result"])
        m.live = bool(saved["live"])
    for loader, gen in zip(loaders, state["generators"], strict=True):
        loader.generator.set_state(gen)
    return state["epoch"] + 1, set(state["ended"])


def pretrain_trainable(config: dict[str, Any], spec_data: dict[str, Any], cache_dir: str, data_cache: str) -> None:
    """One stage-1 job: ``study.ssl.pretrain`` reuses the cached encoder or trains it under a file lock.
    A non-finite SSL loss is reported as the job's error and not retried."""
    cfg = TrialConfig.from_ray(config)
    assert cfg.job is not None, "a pretraining trial has a job"
    spec = Spec.model_validate(spec_data)
    _use_trial_cpus()
    request = pretrain_request(spec, cfg.job.dataset, cfg.job.ssl, cfg.job.seed)

    def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
        tune.report({**{k: float(v) for k, v in _scalars(metrics).items()}, R.EPOCH: epoch})

    device = _device()
    try:
        path = pretrain(
            request,
            cache_dir,
            device=device,
            on_epoch=on_epoch,
            data_cache_dir=storage.node_data_cache(data_cache),
            owner=tune.get_context().get_trial_id(),
            device_budget=device_budget(spec, device, "pretrain"),
        )
    except NonFiniteLossError as e:
        tune.report({R.EPOCH: request.epochs, R.ERROR: f"non-finite loss: {e}"})
        return
    tune.report({R.EPOCH: request.epochs, R.FINISHED: True, R.ENCODER_PATH: str(path)})
