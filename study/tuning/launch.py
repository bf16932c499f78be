"""`study launch` and `study resume`: the driver that runs the three stages on Ray Tune.

Stage ``pretrain``: one Ray Tune trial per deduplicated pretraining job (grid). Stage ``lnl``: every
cell's tuning trials in one Tuner, a ``CellSearcher`` (one Optuna study per cell) and a ``PerCellASHA``
(one ASHA per cell). Stage ``final``: each cell's best configuration for every seed (grid). Each stage is
a Ray Tune experiment under ``STUDY_DIR/tune/<stage>``; ``state.json`` records which stages are done, so
``resume`` restores the unfinished one (finished trials are not rerun, running ones continue from their
last epoch checkpoint) and runs the rest. MLflow is written from the driver only (``TrackingCallback``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from study.tuning.errors import StudyInputError
from study.tuning.plan import Plan, make_plan
from study.tuning.spec import Spec, SpecError, load_spec, parse_spec, spec_to_yaml

STAGES = ("pretrain", "lnl", "final")


class StudyPaths:
    def __init__(self, study_dir: Path, state: dict) -> None:
        self.dir = study_dir
        self.state = state

    @property
    def tune(self) -> Path:
        return self.dir / "tune"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.dir / 'optuna.db'}"

    @property
    def artifacts(self) -> Path:
        return self.dir / "trial_artifacts"

    def save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.dir / "state.json")


# -- checks before anything is written ---------------------------------------------------------------

def preflight(spec: Spec, source: str, cache: Path) -> dict:
    """Check what the spec needs here (registries, datasets, noise) before the study directory exists.
    Returns facts about each dataset (decoded into the cache on the way)."""
    from study.data import DataError
    from study.lnl import ALGORITHMS
    from study.tuning.trainables import load_data, noise_options, ssl_available

    problems: list[tuple[str, str]] = []
    for i, a in enumerate(spec.lnl):
        if a.algorithm not in ALGORITHMS:
            problems.append((f"lnl[{i}].algorithm", f"{a.algorithm!r} is not built in this installation "
                             f"(allowed here: {', '.join(sorted(ALGORITHMS))})"))
    needs_ssl = [i for i, s in enumerate(spec.ssl) if s.method != "random"]
    if needs_ssl and not ssl_available():
        for i in needs_ssl:
            problems.append((f"ssl[{i}].method", f"{spec.ssl[i].method!r} needs study.ssl, which is not "
                             "importable here (allowed here: random)"))
    elif needs_ssl:
        from study.ssl import METHODS
        for i in needs_ssl:
            if spec.ssl[i].method not in METHODS:
                problems.append((f"ssl[{i}].method", f"{spec.ssl[i].method!r} is not built "
                                 f"(allowed here: {', '.join(sorted(METHODS))})"))
    facts = {}
    for i, d in enumerate(spec.datasets):
        try:
            data = load_data(spec, d.key, str(cache / "data"))
        except (DataError, TypeError, ValueError) as e:
            problems.append((f"datasets[{i}]", str(e)))
            continue
        facts[d.key] = {"images": len(data), "classes": data.num_classes, "resolution": data.resolution,
                        "channels": data.channels}
        from study.noise import inject_noise
        for kind in spec.noise.kinds:
            for rate in spec.noise.rates:
                try:
                    inject_noise(data.labels[:200], data.num_classes, kind, rate, 0,
                                 **noise_options(spec, data, d.key, kind))
                except (ValueError, TypeError, KeyError) as e:
                    problems.append((f"noise", f"{kind} at rate {rate} on {d.key}: {e}"))
    if problems:
        raise SpecError(source, problems)
    return facts


# -- the driver ---------------------------------------------------------------------------------------

def init_ray(address: str | None, quiet: bool) -> None:
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # trial output stays in Ray's session logs; the driver prints the progress line
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def _resources(res, has_gpu: bool) -> dict:
    return {"cpu": res.cpus, "gpu": res.gpus if has_gpu else 0}


def _run_config(paths: StudyPaths, stage: str, spec: Spec, callbacks: list):
    from ray import tune

    return tune.RunConfig(
        name=stage, storage_path=str(paths.tune), verbose=0, callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )


def _callbacks(paths: StudyPaths, spec: Spec, stage: str, total: int, quiet: bool) -> list:
    from study.tracking import TrackingCallback
    from study.tuning.progress import ProgressCallback

    st = paths.state
    cbs = [TrackingCallback(st["tracking_uri"], st["experiment"], st.get("artifact_location"), str(paths.artifacts))]
    if not quiet:
        cbs.append(ProgressCallback(stage, total))
    return cbs


def _trainable(stage: str, spec: Spec, paths: StudyPaths, has_gpu: bool):
    from ray import tune

    from study.tuning.trainables import lnl_trainable, pretrain_trainable

    st = paths.state
    data = spec.model_dump(mode="json")
    if stage == "pretrain":
        fn = tune.with_parameters(pretrain_trainable, spec_data=data, cache_dir=st["cache"],
                                  data_cache=st["data_cache"])
        return tune.with_resources(fn, _resources(spec.resources.pretrain, has_gpu))
    fn = tune.with_parameters(lnl_trainable, spec_data=data, cache_dir=st["cache"], data_cache=st["data_cache"],
                              artifacts_root=str(paths.artifacts))
    return tune.with_resources(fn, _resources(spec.resources.trial, has_gpu))


def _tuner(stage: str, spec: Spec, plan: Plan, paths: StudyPaths, has_gpu: bool, quiet: bool):
    from ray import tune

    from study.tuning.scheduler import PerCellASHA
    from study.tuning.searcher import CellSearcher

    trainable = _trainable(stage, spec, paths, has_gpu)
    path = paths.tune / stage
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=False,
                                  restart_errored=False)
    limit = spec.resources.max_concurrent_trials or 0
    if stage == "pretrain":
        jobs = [{"stage": "pretrain", "id": j.id, "dataset": j.dataset, "ssl": j.ssl, "seed": j.seed,
                 "point": {"dataset": j.dataset, "ssl": j.ssl, "seed": j.seed}} for j in plan.pretrain_jobs]
        return tune.Tuner(trainable, param_space={"job": tune.grid_search(jobs)},
                          tune_config=tune.TuneConfig(max_concurrent_trials=limit or None),
                          run_config=_run_config(paths, stage, spec,
                                                 _callbacks(paths, spec, stage, len(jobs), quiet)))
    if stage == "lnl":
        cells = [{"id": c.id, "point": c.tune_point.__dict__, "lnl": c.tune_point.lnl} for c in plan.cells]
        spaces = {a.key: {k: v.model_dump(exclude_none=True) for k, v in a.search_space.items()} for a in spec.lnl}
        fixed = {a.key: dict(a.fixed) for a in spec.lnl}
        searcher = CellSearcher(cells, spaces, fixed, spec.tuning.samples_per_cell, paths.optuna_url,
                                spec.tuning.metric, spec.tuning.mode, spec.tuning.sampler, spec.tuning.sampler_seed)
        max_epochs = max(a.epochs for a in spec.lnl)
        scheduler = (PerCellASHA(spec.tuning.metric, spec.tuning.mode, max_epochs, spec.early_stopping.grace_period,
                                 spec.early_stopping.reduction_factor) if spec.early_stopping.enabled else None)
        return tune.Tuner(trainable, param_space={},
                          tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                                      num_samples=plan.tuning_trials,
                                                      max_concurrent_trials=limit or None),
                          run_config=_run_config(paths, stage, spec,
                                                 _callbacks(paths, spec, stage, plan.tuning_trials, quiet)))
    runs = final_runs(spec, plan, paths)
    return tune.Tuner(trainable, param_space={"run": tune.grid_search(runs)},
                      tune_config=tune.TuneConfig(max_concurrent_trials=limit or None),
                      run_config=_run_config(paths, stage, spec, _callbacks(paths, spec, stage, len(runs), quiet)))


def final_runs(spec: Spec, plan: Plan, paths: StudyPaths) -> list[dict]:
    """Each cell's best configuration (from its Optuna study) at every point of the cell."""
    from optuna.trial import TrialState

    from study.tuning.searcher import open_study

    best: dict[str, dict] = {}
    skipped = []
    for c in plan.cells:
        study = open_study(paths.optuna_url, c.id, spec.tuning.mode)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        if not done:
            skipped.append(c.id)
            continue
        best[c.id] = json.loads(study.best_trial.user_attrs.get("config", "{}"))
    paths.state["final_skipped_cells"] = skipped
    paths.save()
    return [{"stage": "final", "cell": c.id, "point": p.__dict__, "hparams": best[c.id]}
            for c, p in plan.final_runs if c.id in best]


def _fail_orphans(spec: Spec, plan: Plan, paths: StudyPaths) -> None:
    """No Optuna trial stays RUNNING once stage lnl has ended."""
    from optuna.trial import TrialState

    from study.tuning.searcher import open_study

    for c in plan.cells:
        study = open_study(paths.optuna_url, c.id, spec.tuning.mode)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            study._storage.set_trial_user_attr(t._trial_id, "orphaned", True)
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)


def run_stages(spec: Spec, paths: StudyPaths, address: str | None, quiet: bool) -> int:
    import ray

    plan = make_plan(spec)
    init_ray(address, quiet)
    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if not has_gpu and not quiet and (spec.resources.trial.gpus or spec.resources.pretrain.gpus):
        print("study: no GPU in this Ray cluster; trials run on CPU", file=sys.stderr)
    from study.tracking import Tracker
    Tracker(paths.state["tracking_uri"], paths.state["experiment"], paths.state.get("artifact_location"))
    t0 = time.time()
    for stage in STAGES:
        if paths.state["stages"].get(stage) == "done":
            continue
        if stage == "pretrain" and not plan.pretrain_jobs:
            paths.state["stages"][stage] = "done"
            paths.save()
            continue
        paths.state["stages"][stage] = "running"
        paths.save()
        tuner = _tuner(stage, spec, plan, paths, has_gpu, quiet)
        results = tuner.fit()
        if stage == "lnl":
            _fail_orphans(spec, plan, paths)
        errors = sum(1 for r in results if r.error is not None)
        paths.state["stages"][stage] = "done"
        paths.state.setdefault("errors", {})[stage] = errors
        paths.save()
        if stage == "pretrain" and errors:
            print(f"study: {errors} pretraining job(s) failed; their cells' trials will fail too "
                  f"(see `study status {paths.dir}`)", file=sys.stderr)
    paths.state["finished_at"] = datetime.now().isoformat(timespec="seconds")
    paths.state["driver_seconds"] = paths.state.get("driver_seconds", 0) + round(time.time() - t0, 1)
    paths.save()
    if not quiet:
        print(f"study: done. MLflow UI: mlflow ui --backend-store-uri {paths.state['tracking_uri']} "
              f"--host 127.0.0.1 ; status: study status {paths.dir}")
    print(paths.dir)
    return 0


def launch(spec_path: str, storage: str | None = None, name: str | None = None, address: str | None = None,
           tracking_uri: str | None = None, quiet: bool = False) -> int:
    spec = load_spec(spec_path)
    root = Path(storage or spec.storage.root).expanduser().resolve()
    study_name = name or f"{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in study_name or study_name.startswith("."):
        raise StudyInputError(f"--name {study_name!r}: a plain directory name, e.g. {spec.name}-1")
    study_dir = root / study_name
    if study_dir.exists():
        # A relaunch with the same --name (a retried `ray job submit` or RayJob) continues that study
        # when its frozen spec is this spec; anything else would mix two studies in one directory.
        if name and (study_dir / "state.json").is_file() and (study_dir / "spec.yaml").is_file():
            if (study_dir / "spec.yaml").read_text() == spec_to_yaml(spec):
                if not quiet:
                    print(f"study: {study_dir} exists with the same spec; resuming it", file=sys.stderr)
                return resume(str(study_dir), address=address, quiet=quiet)
            raise StudyInputError(f"{study_dir} holds a study with a different spec; pick another --name")
        raise StudyInputError(f"{study_dir} exists; continue it with `study resume {study_dir}` or pass --name")
    if root.exists() and not root.is_dir():
        raise StudyInputError(f"--storage {root}: not a directory")
    cache = Path(spec.storage.cache).expanduser().resolve() if spec.storage.cache else root / "cache"
    data_cache = Path(spec.storage.data_cache).expanduser().resolve() if spec.storage.data_cache else cache / "data"
    facts = preflight(spec, spec_path, cache)
    uri = tracking_uri or spec.tracking.uri
    study_dir.mkdir(parents=True)
    try:
        from study.tracking import default_tracking_uri
        state = {"name": study_name, "spec_source": str(spec_path), "created_at": datetime.now().isoformat(timespec="seconds"),
                 "cache": str(cache), "data_cache": str(data_cache), "address": address,
                 "tracking_uri": uri or default_tracking_uri(study_dir), "experiment": study_name,
                 "artifact_location": None if uri else (study_dir / "mlartifacts").as_uri(),
                 "datasets": facts, "stages": {s: "pending" for s in STAGES}}
        (study_dir / "spec.yaml").write_text(spec_to_yaml(spec))
        paths = StudyPaths(study_dir, state)
        paths.save()
    except BaseException:
        shutil.rmtree(study_dir, ignore_errors=True)
        raise
    if not quiet:
        print(f"study: {study_dir}", file=sys.stderr)
    return run_stages(spec, paths, address, quiet)


def open_study_dir(study_dir: str) -> tuple[Spec, StudyPaths]:
    d = Path(study_dir).expanduser().resolve()
    if not (d / "state.json").is_file() or not (d / "spec.yaml").is_file():
        raise StudyInputError(f"{d}: not a study directory (no state.json/spec.yaml); "
                              "study directories are what `study launch` prints")
    import yaml
    spec = parse_spec(yaml.safe_load((d / "spec.yaml").read_text()), str(d / "spec.yaml"))
    return spec, StudyPaths(d, json.loads((d / "state.json").read_text()))


def resume(study_dir: str, address: str | None = None, quiet: bool = False) -> int:
    spec, paths = open_study_dir(study_dir)
    return run_stages(spec, paths, address or paths.state.get("address"), quiet)
