"""The stage driver: runs a study's three stages on Ray Tune (docs/architecture.md, Data path).

Stage ``pretrain``: one Ray Tune trial per deduplicated pretraining job (a grid). Before stages ``lnl``
and ``final``, the embeddings their ``linear_probe`` trials read are computed once per dataset and encoder
(``study.tuning.embeddings``, Ray tasks). Stage ``lnl``: every
cell's tuning trials in one Tuner, a ``CellSearcher`` (one Optuna study per cell) and a ``PerCellASHA``
(one ASHA per cell). Stage ``final``: each cell's best configuration at every point of the cell (a grid).
Every trial's config is a ``TrialConfig``. Each stage is a Ray Tune experiment under
``STUDY_DIR/tune/<stage>``; ``state.json`` records which stages are done, so a resumed study restores the
unfinished one (finished trials are not rerun, running ones continue from their last epoch checkpoint)
and runs the rest. MLflow is written from the driver only (``TrackingCallback``).

On a study under a URI, Ray Tune writes its experiment state and the trial checkpoints to the bucket
itself (``storage_path`` + ``storage_filesystem``), and ``StorageSync`` uploads the driver's working copy
(``optuna.db``, ``mlflow.db``, ``state.json``) at every Ray experiment checkpoint, just before Ray uploads
its own state, so the bucket's copies are never older than Ray's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import ray
from optuna.trial import TrialState
from ray import tune

from study import storage as st
from study.tracking import Tracker, TrackingCallback
from study.tracking.callback import run_identity
from study.tracking.view import apply_view
from study.tuning.checkpoints import CheckpointPruner, prune_ended
from study.tuning.embeddings import compute_embeddings
from study.tuning.errors import StudyInterrupted
from study.tuning.grow import generation_plan
from study.tuning.plan import (
    Plan,
    Point,
    TrialConfig,
    check_resources,
    member_trial_id,
    pack_finals,
    pack_size,
    tuning_ray_trials,
)
from study.tuning.progress import ProgressCallback
from study.tuning.prunes import board_name, open_board
from study.tuning.results import ARTIFACT_DIR, MEMBERS
from study.tuning.scheduler import PerCellASHA, SchedulerState
from study.tuning.searcher import ATTR_ORPHANED, CellSearcher, best_hparams, best_trial_run, open_study
from study.tuning.spec import Resources, Spec
from study.tuning.studydir import STAGES, Stage, StudyPaths
from study.tuning.trainables import lnl_trainable, pretrain_trainable


def run_stages(spec: Spec, paths: StudyPaths, address: str | None, quiet: bool) -> int:
    """Run every stage that is not done, in order, on the Ray cluster at ``address``; prints the study's
    location last. Returns the exit code."""
    plan = generation_plan(spec, paths.state)
    has_gpu = _start(spec, paths, address, quiet)
    t0 = time.time()
    for stage in STAGES:
        if paths.state.stages[stage] != "done":
            try:
                _run_stage(stage, spec, plan, paths, has_gpu, quiet)
            except KeyboardInterrupt:  # Ctrl-C: the stage stays unfinished; Tune's state is at most 2 s old
                raise StudyInterrupted(stage, paths.location) from None
    # every trial has ended: each cell's parent run ends too, with its best and final figures
    Tracker(paths.state.tracking_uri, paths.state.experiment, paths.state.artifact_location).close_cells(
        spec.tuning.metric, spec.tuning.mode
    )
    paths.state.finished_at = datetime.now().replace(microsecond=0)
    paths.state.driver_seconds += round(time.time() - t0, 1)
    paths.save()
    paths.push(force=True)
    if not quiet:
        cmd = study_command()
        print(
            f"study: done. Next:\n  {cmd} report {paths.location}    # tables, plots, dashboard.html\n"
            f"  {cmd} ui {paths.location}        # MLflow UI on 127.0.0.1\n"
            f"  {cmd} status {paths.location}    # trials by stage, errors",
            file=sys.stderr,
        )
    print(paths.location)
    return 0


def study_command() -> str:
    """How the user can type this command again: ``study`` where it is on PATH, else the script's path
    (a virtual environment's ``.venv/bin/study``), else ``python -m study.cli``."""
    script = Path(sys.argv[0])
    if script.name != "study":
        return f"{sys.executable} -m study.cli"
    found = shutil.which("study")
    return "study" if found and Path(found).resolve() == script.resolve() else sys.argv[0]


def init_ray(address: str | None, quiet: bool) -> None:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # Ctrl-C raises KeyboardInterrupt in the driver. Tune's own handler would end fit() as if the stage had
    # finished (its interrupted trials read TERMINATED), and the study would go on to the next stage
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    # `ray job submit` gives its entrypoint RAY_ADDRESS; without either, start a Ray of our own
    # ("local"): a bare ray.init() would attach to any `ray start` cluster that happens to run on the machine
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # trial output stays in Ray's session logs; the driver prints the progress line
        with loopback_node():
            ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


@contextlib.contextmanager
def loopback_node() -> Iterator[None]:
    """A private Ray whose servers (GCS, raylet, workers, agents) listen on 127.0.0.1 only.

    Ray binds its servers to every interface unless the node's address is the loopback one, and it takes
    the loopback address as the node's only where it believes clusters are off (its macOS and Windows
    default: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``). Set for the processes ``ray.init`` starts, then put
    back, so that a later `ray start` or cluster connection from this process is unaffected."""
    from ray._private import ray_constants

    key, before, flag = (
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"),
        ray_constants.ENABLE_RAY_CLUSTER,
    )
    os.environ[key] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = flag
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


#: the libraries whose INFO lines go to the study's driver.log rather than the terminal
LIBRARY_LOGGERS = ("ray", "mlflow", "alembic", "optuna")


def route_library_logs(paths: StudyPaths) -> Path | None:
    """Ray's, Ray Tune's, MLflow's and Optuna's INFO lines go to ``STUDY/driver.log`` instead of the
    terminal, which keeps the progress line and their warnings and errors; ``--verbose`` (``STUDY_VERBOSE=1``)
    leaves everything on the terminal. Returns the log file, or None."""
    if os.environ.get("STUDY_VERBOSE"):
        return None
    log = paths.dir / "driver.log"
    to_file = next(
        (
            h
            for name in LIBRARY_LOGGERS
            for h in logging.getLogger(name).handlers
            if getattr(h, "baseFilename", None) == str(log)
        ),
        None,
    )
    if to_file is None:  # one handler (one open file) for every library, however often the stages start
        to_file = logging.FileHandler(log)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        terminal = [
            h
            for h in logger.handlers
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        ]
        if not terminal:  # its lines went up to the root logger's handler: give it its own
            terminal = [logging.StreamHandler(sys.stderr)]
            logger.addHandler(terminal[0])
        for handler in terminal:
            handler.setLevel(logging.WARNING)
        if to_file not in logger.handlers:
            logger.addHandler(to_file)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return log


def _start(spec: Spec, paths: StudyPaths, address: str | None, quiet: bool) -> bool:
    """Connect to Ray and create the study's MLflow experiment; whether the cluster has GPUs."""
    init_ray(address, quiet)
    route_library_logs(paths)
    alive = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    largest = max((r.get("CPU", 0.0) for r in alive), default=0.0)
    memory = max((r.get("memory", 0.0) for r in alive), default=0.0)
    check_resources(spec, largest, "the largest node of the Ray cluster", memory)
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if not has_gpu and not quiet and (spec.resources.trial.gpus or spec.resources.pretrain.gpus):
        print("study: no GPU in this Ray cluster; trials run on CPU", file=sys.stderr)
    if paths.uri:
        st.mlflow_env(paths.uri)
    # the experiment, with its artifact location and its UI view, exists before the first trial reports
    tracker = Tracker(paths.state.tracking_uri, paths.state.experiment, paths.state.artifact_location)
    apply_view(tracker.client, tracker.experiment_id)
    return has_gpu


def _run_stage(stage: Stage, spec: Spec, plan: Plan, paths: StudyPaths, has_gpu: bool, quiet: bool) -> None:
    """One stage to its end (restored where an earlier driver left it), recorded in ``state.json``."""
    if (stage == "pretrain" and not plan.pretrain_jobs) or (stage == "lnl" and not plan.cells):
        paths.set_stage(stage, "done")  # nothing to run (a study grown by seeds only tunes no new cell)
        return
    finals = final_runs(spec, plan, paths) if stage == "final" else []
    if stage == "final" and not finals:
        # every tuning trial failed (or none completed): nothing to rerun, the study still ends
        print(
            "study: no cell has a completed tuning trial, so stage final has nothing to run "
            f"(errors: `study status {paths.location}`)",
            file=sys.stderr,
        )
        paths.set_stage(stage, "done")
        return
    if stage == "final" and not _restorable(stage, paths):
        finals = reuse_tuning_trials(spec, plan, paths, finals)
        if not finals:  # every final run is a cell's best tuning trial (one seed): recorded, nothing to train
            paths.set_stage(stage, "done")
            return
    paths.set_stage(stage, "running")
    if stage != "pretrain":  # a frozen encoder's embeddings, once per dataset, before the trials reading them
        points = [c.tune_point for c in plan.cells] if stage == "lnl" else [f.point for f in finals if f.point]
        state = paths.state
        compute_embeddings(spec, points, state.cache, state.data_cache, spec.resources.pretrain, has_gpu, quiet)
    results = _tuner(stage, spec, plan, paths, has_gpu, quiet, finals).fit()
    prune_ended(results)  # every trial has ended: their checkpoints resume nothing
    if stage == "lnl":
        _fail_orphans(spec, plan, paths)
    errors = sum(1 for r in results if r.error is not None)
    paths.state.errors[stage] = paths.state.earlier_errors.get(stage, 0) + errors
    paths.set_stage(stage, "done")
    if stage == "pretrain" and errors:
        print(
            f"study: {errors} pretraining job(s) failed; their cells' trials will fail too "
            f"(see `study status {paths.location}`)",
            file=sys.stderr,
        )


def final_runs(spec: Spec, plan: Plan, paths: StudyPaths) -> list[TrialConfig]:
    """Each cell's best configuration (from its Optuna study) at every point of the cell that ``plan``
    runs (in a grown study, new points of an earlier generation's cells too). Cells without a completed
    tuning trial have none; ``state.json`` lists them."""
    best = {}
    cells = list({c.id: c for c, _ in plan.final_runs}.values())
    for c in cells:
        hparams = best_hparams(open_study(paths.optuna_url, c.id, spec.tuning.mode))
        if hparams is not None:
            best[c.id] = hparams
    skipped = [c.id for c in cells if c.id not in best]  # with those of earlier generations
    paths.state.final_skipped_cells = list(dict.fromkeys([*paths.state.final_skipped_cells, *skipped]))
    paths.save()
    return [
        TrialConfig(stage="final", id=c.id, point=p, hparams=point_hparams(spec, p, best[c.id]))
        for c, p in plan.final_runs
        if c.id in best
    ]


def reuse_tuning_trials(spec: Spec, plan: Plan, paths: StudyPaths, finals: list[TrialConfig]) -> list[TrialConfig]:
    """The final runs still to train. A final run at its cell's tuning point with the configuration of the
    cell's best tuning trial is that trial again (same data, noisy labels, seed, hyperparameters and epochs;
    the trial already measured the clean test set at its selected epoch and wrote its artifacts): its
    MLflow run is recorded as the final run (``Tracker.copy_run``, tag ``study.reused_run``) instead of
    training a second time. Where the tuning trial's run did not finish with test metrics, it is trained."""
    tune_point = {c.id: c.tune_point for c, _ in plan.final_runs}
    tracker = Tracker(paths.state.tracking_uri, paths.state.experiment, paths.state.artifact_location)
    rest = []
    for cfg in finals:
        best = None
        if cfg.point == tune_point.get(cfg.id):
            best = best_trial_run(open_study(paths.optuna_url, cfg.id, spec.tuning.mode))
        source, hparams = best if best is not None else (None, None)
        if source is None or hparams != cfg.hparams:
            rest.append(cfg)
            continue
        trial_id = f"{source}-final"
        name, tags, params, parent = run_identity(tracker, cfg, trial_id)
        if tracker.copy_run(source, trial_id, "final", name, tags, params, parent) is None:
            rest.append(cfg)
    return rest


def _stage_experiment(stage: Stage, paths: StudyPaths) -> tuple[str, Any]:
    """The stage's Ray Tune experiment: (its path, its storage filesystem)."""
    storage_path, fs = paths.tune_storage()
    return f"{storage_path}/{paths.stage_name(stage)}", fs


def _restorable(stage: Stage, paths: StudyPaths) -> bool:
    """Whether an earlier driver started the stage's Ray Tune experiment (a resume restores it)."""
    path, fs = _stage_experiment(stage, paths)
    return bool(tune.Tuner.can_restore(path, storage_filesystem=fs))


def cell_fixed(spec: Spec, point: Point) -> dict[str, Any]:
    """The fixed hyperparameters of the LNL entry at ``point``'s noise setting (``lnl[].by_noise_kind``)."""
    return spec.lnl_map[point.lnl].fixed_for(point.noise_kind, point.noise_rate)


def point_hparams(spec: Spec, point: Point, hparams: dict[str, Any]) -> dict[str, Any]:
    """A configuration tuned in a cell, at ``point``: its sampled values with the fixed ones of the point's
    noise setting (where ``noise_kind`` is not a cell axis, a cell's points differ in noise kind)."""
    return spec.lnl_map[point.lnl].point_hparams(point.noise_kind, point.noise_rate, hparams)


def _fail_orphans(spec: Spec, plan: Plan, paths: StudyPaths) -> None:
    """No Optuna trial stays RUNNING once stage lnl has ended."""
    for c in plan.cells:
        study = open_study(paths.optuna_url, c.id, spec.tuning.mode)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            study._storage.set_trial_user_attr(t._trial_id, ATTR_ORPHANED, True)
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)


# -- one stage's Tuner --------------------------------------------------------------------------------


def _tuner(
    stage: Stage, spec: Spec, plan: Plan, paths: StudyPaths, has_gpu: bool, quiet: bool, finals: list[TrialConfig]
) -> tune.Tuner:
    """The stage's Tuner: restored where an earlier driver left it, else new."""
    trainable = _trainable(stage, spec, paths, has_gpu)
    restored = _restore(stage, spec, plan, paths, trainable, quiet, has_gpu)
    if restored is not None:
        return restored
    if stage == "lnl":
        return _lnl_tuner(spec, plan, paths, trainable, quiet, has_gpu)
    configs = (
        pack_finals(spec, finals, has_gpu)  # a cell's seeds in packed trials (``resources.pack``)
        if stage == "final"
        else [TrialConfig(stage="pretrain", id=j.id, job=j) for j in plan.pretrain_jobs]
    )
    space = {TrialConfig.KEY: tune.grid_search([c.model_dump(mode="json") for c in configs])}
    return tune.Tuner(
        trainable,
        param_space=space,
        tune_config=_tune_config(spec),
        run_config=_run_config(paths, stage, spec, _callbacks(paths, stage, len(configs), quiet)),
    )


def _tune_config(spec: Spec, **options: Any) -> tune.TuneConfig:
    """A stage's TuneConfig. Trial actors are reused: a new actor imports torch and the study again, about
    8 s a trial on 2 CPUs, longer than a small trial trains. Trials share nothing through the process: each
    seeds its generators and sets its thread count when it starts."""
    return tune.TuneConfig(max_concurrent_trials=spec.resources.max_concurrent_trials, reuse_actors=True, **options)


def packs(spec: Spec, has_gpu: bool) -> dict[str, int]:
    """Members per packed tuning trial, per LNL entry key (``plan.pack_size``)."""
    return {a.key: pack_size(spec, a.key, has_gpu) for a in spec.lnl}


def _board(spec: Spec, paths: StudyPaths, has_gpu: bool) -> str | None:
    """The name of the board where packed trials learn which members their cells' ASHA stopped
    (``study.tuning.prunes``); None where no trial is packed or nothing is pruned."""
    if not spec.early_stopping.enabled or max(packs(spec, has_gpu).values(), default=1) == 1:
        return None
    return board_name(_stage_experiment("lnl", paths)[0])


def _use_board(scheduler: Any, spec: Spec, paths: StudyPaths, has_gpu: bool) -> None:
    """The scheduler posts the members it stops to the board (created here, as long as this driver)."""
    name = _board(spec, paths, has_gpu)
    if isinstance(scheduler, PerCellASHA) and name is not None:
        scheduler.use_board(open_board(name))


def _lnl_tuner(spec: Spec, plan: Plan, paths: StudyPaths, trainable, quiet: bool, has_gpu: bool) -> tune.Tuner:
    """Every cell's tuning trials: one Optuna study and one ASHA per cell; a cell's samples packed
    ``resources.pack`` to a trial where its algorithm can be."""
    spaces = {a.key: {k: v.model_dump(exclude_none=True) for k, v in a.search_space.items()} for a in spec.lnl}
    fixed = {a.key: dict(a.fixed) for a in spec.lnl}
    t = spec.tuning
    searcher = CellSearcher(
        plan.cells,
        spaces,
        fixed,
        t.samples_per_cell,
        paths.optuna_url,
        t.metric,
        t.mode,
        t.sampler,
        t.sampler_seed,
        n_startup_trials=t.n_startup_trials,
        cell_fixed={c.id: cell_fixed(spec, c.tune_point) for c in plan.cells},
        pack=packs(spec, has_gpu),
    )
    es = spec.early_stopping
    scheduler = (
        PerCellASHA(t.metric, t.mode, max(a.epochs for a in spec.lnl), es.grace_period, es.reduction_factor)
        if es.enabled
        else None
    )
    searcher.use_scheduler(scheduler)
    _use_board(scheduler, spec, paths, has_gpu)
    callbacks = _callbacks(paths, "lnl", tuning_ray_trials(spec, plan, has_gpu), quiet, scheduler)
    return tune.Tuner(
        trainable,
        param_space={},
        tune_config=_tune_config(spec, search_alg=searcher, scheduler=scheduler, num_samples=plan.tuning_trials),
        run_config=_run_config(paths, "lnl", spec, callbacks),
    )


def _restore(
    stage: Stage, spec: Spec, plan: Plan, paths: StudyPaths, trainable, quiet: bool, has_gpu: bool
) -> tune.Tuner | None:
    """The stage's Tuner from its Ray Tune experiment state, or None when the stage never started."""
    if not _restorable(stage, paths):
        return None
    path, fs = _stage_experiment(stage, paths)
    tuner = tune.Tuner.restore(
        path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False, storage_filesystem=fs
    )
    # this driver's callbacks and Optuna storage: the pickled ones name the previous driver's files,
    # which on a restarted head (a URI study, a moved NFS mount) are elsewhere or gone
    internal = getattr(tuner, "_local_tuner", None)
    tune_config = getattr(internal, "_tune_config", None)
    run_config = getattr(internal, "_run_config", None)
    if run_config is not None:
        lnl = tuning_ray_trials(spec, plan, has_gpu)
        total = {"pretrain": len(plan.pretrain_jobs), "lnl": lnl, "final": plan.final_trained}
        run_config.callbacks = _callbacks(paths, stage, total[stage], quiet, getattr(tune_config, "scheduler", None))
    searcher = getattr(tune_config, "search_alg", None)
    if isinstance(searcher, CellSearcher):
        searcher.use_storage(paths.optuna_url)
        searcher.use_scheduler(getattr(tune_config, "scheduler", None))
        _use_board(getattr(tune_config, "scheduler", None), spec, paths, has_gpu)
        state = paths.state
        searcher.use_recorded(Tracker(state.tracking_uri, state.experiment, state.artifact_location).run_ended)
    elif stage == "lnl" and paths.uri:
        raise RuntimeError("cannot point the restored searcher at this driver's optuna.db")
    return tuner


def _trainable(stage: Stage, spec: Spec, paths: StudyPaths, has_gpu: bool):
    """The stage's trainable with the study's caches and its resources per trial."""
    state = paths.state
    data = spec.model_dump(mode="json")
    if stage == "pretrain":
        fn = tune.with_parameters(
            pretrain_trainable, spec_data=data, cache_dir=state.cache, data_cache=state.data_cache
        )
        return tune.with_resources(fn, _resources(spec.resources.pretrain, has_gpu))
    fn = tune.with_parameters(
        lnl_trainable,
        spec_data=data,
        cache_dir=state.cache,
        data_cache=state.data_cache,
        artifacts_root=str(paths.artifacts),
        artifacts_uri=paths.artifacts_uri,
        prune_board=_board(spec, paths, has_gpu) if stage == "lnl" else None,
    )
    return tune.with_resources(fn, _resources(spec.resources.trial, has_gpu))


def _resources(res: Resources, has_gpu: bool) -> dict[str, float]:
    out = {"cpu": res.cpus, "gpu": res.gpus if has_gpu else 0}
    if res.memory_gb is not None:
        out["memory"] = res.memory_gb * 1e9  # bytes: Ray's logical memory resource
    return out


def _run_config(paths: StudyPaths, stage: Stage, spec: Spec, callbacks: list) -> tune.RunConfig:
    storage_path, fs = paths.tune_storage()
    return tune.RunConfig(
        name=paths.stage_name(stage),
        storage_path=storage_path,
        storage_filesystem=fs,
        verbose=0,
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # CheckpointPruner deletes them
    )


def _callbacks(paths: StudyPaths, stage: Stage, total: int, quiet: bool, scheduler=None) -> list[tune.Callback]:
    state = paths.state
    cbs: list[tune.Callback] = [
        TrackingCallback(state.tracking_uri, state.experiment, state.artifact_location, str(paths.artifacts))
    ]
    if paths.uri:  # first: the artifacts must be on the driver before TrackingCallback logs them
        cbs.insert(0, StorageSync(paths))
    if isinstance(scheduler, PerCellASHA):  # first in every session: Ray restores callback state by index
        cbs.insert(0, SchedulerState(scheduler))
    if stage != "pretrain":  # pretraining jobs write no Ray checkpoints (their encoders go to the cache)
        cbs.append(CheckpointPruner())
    if not quiet:
        cbs.append(ProgressCallback(stage, total))
    return cbs


class StorageSync(tune.Callback):
    """Keeps a URI study's driver-side files in its bucket: Ray asks callbacks for their state
    (``get_state``) each time it saves its experiment state, before it uploads that, so the uploaded
    ``optuna.db``/``mlflow.db`` are never older than the uploaded Ray state. It also brings a finished
    trial's artifacts from the bucket to the driver before ``TrackingCallback`` logs them."""

    def __init__(self, paths: StudyPaths) -> None:
        self.paths = paths

    def get_state(self) -> None:
        self.paths.push()
        return None

    def on_trial_complete(self, iteration, trials, trial, **info):
        art = (trial.last_result or {}).get(ARTIFACT_DIR)
        if art and self.paths.artifacts_uri:
            self._fetch(trial.trial_id, art)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        """A packed trial's members that finished with this report: their artifacts, before they are logged."""
        if not self.paths.artifacts_uri:
            return
        for key, report in json.loads(result.get(MEMBERS) or "{}").items():
            if report.get(ARTIFACT_DIR):
                self._fetch(member_trial_id(trial.trial_id, int(key)), report[ARTIFACT_DIR])

    def _fetch(self, run_key: str, folder: str) -> None:
        try:
            st.download_dir(st.join(self.paths.artifacts_uri, run_key), folder)
        except OSError as e:
            print(f"study: could not fetch the artifacts of trial {run_key}: {e}", file=sys.stderr)

    def on_experiment_end(self, trials, **info):
        self.paths.push()
