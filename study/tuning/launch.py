"""`study launch` and `study resume`: the driver that runs the three stages on Ray Tune.

Stage ``pretrain``: one Ray Tune trial per deduplicated pretraining job (grid). Stage ``lnl``: every
cell's tuning trials in one Tuner, a ``CellSearcher`` (one Optuna study per cell) and a ``PerCellASHA``
(one ASHA per cell). Stage ``final``: each cell's best configuration for every seed (grid). Each stage is
a Ray Tune experiment under ``STUDY_DIR/tune/<stage>``; ``state.json`` records which stages are done, so
``resume`` restores the unfinished one (finished trials are not rerun, running ones continue from their
last epoch checkpoint) and runs the rest. MLflow is written from the driver only (``TrackingCallback``).

Storage: ``--storage`` is a local/NFS directory or an ``s3://``/``gs://`` URI (``study.storage``). On a URI,
the study directory lives in the bucket: Ray Tune writes its experiment state and the trial checkpoints
there itself (``storage_path`` + ``storage_filesystem``), trials read and write encoders in the bucket's
cache, MLflow's artifacts go to ``STUDY_URI/mlartifacts``, and the files that cannot live on an object
store (``optuna.db``, the default ``mlflow.db``, ``state.json``, ``spec.yaml``) have a working copy on the
driver (``storage.local_mirror``) that ``StorageSync`` uploads at every Ray experiment checkpoint, just
before Ray uploads its own state, so the bucket's copies are never older than Ray's; ``resume`` (and a
relaunch with the same ``--name``) downloads them first.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from study import storage as st
from study.tuning.errors import StudyInputError
from study.tuning.plan import Plan, make_plan
from study.tuning.spec import Spec, SpecError, load_spec, parse_spec, spec_to_yaml

STAGES = ("pretrain", "lnl", "final")


#: the study's files that live in the driver's working copy and are uploaded to a URI study
STATE_FILES = ("spec.yaml", "state.json")
SQLITE_FILES = ("optuna.db", "mlflow.db")


class StudyPaths:
    """A study directory. ``dir`` is where the driver reads and writes it: the directory itself, or for
    a study under an ``s3://``/``gs://`` URI (``uri``) the driver's working copy, kept in the bucket by
    ``save``/``push``."""

    def __init__(self, study_dir: Path, state: dict, uri: str | None = None) -> None:
        self.dir = study_dir
        self.state = state
        self.uri = uri
        self._pushed: dict[str, tuple] = {}

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_pushed"] = {}
        return d

    @property
    def location(self) -> str:
        """What the user names the study by (``study resume LOCATION``)."""
        return self.uri or str(self.dir)

    @property
    def tune(self) -> Path:
        return self.dir / "tune"

    def tune_storage(self) -> tuple[str, object | None]:
        """(storage_path, storage_filesystem) of the study's Ray Tune experiments."""
        if self.uri:
            fs, path = st.open_fs(st.join(self.uri, "tune"))
            return path, fs
        return str(self.tune), None

    @property
    def artifacts_uri(self) -> str | None:
        """Where trials put their MLflow artifacts for the driver (URI studies: trials may run elsewhere)."""
        return st.join(self.uri, "trial_artifacts") if self.uri else None

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
        self.push()

    def push(self, force: bool = False) -> None:
        """Upload the working copy's changed files (sqlite through a consistent snapshot) to the URI."""
        if not self.uri:
            return
        for name in (*STATE_FILES, *SQLITE_FILES):
            f = self.dir / name
            if not f.is_file():
                continue
            stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (f, f.with_name(name + "-wal"))
                          if p.is_file())
            if not force and self._pushed.get(name) == stamp:
                continue
            if name in SQLITE_FILES:
                st.upload_sqlite(f, st.join(self.uri, name))
            else:
                st.upload_file(f, st.join(self.uri, name))
            self._pushed[name] = stamp


def _storage_sync(paths: StudyPaths):
    """A Ray Tune callback that keeps a URI study's driver-side files in its bucket: Ray asks callbacks
    for their state (``get_state``) each time it saves its experiment state, before it uploads that, so
    the uploaded ``optuna.db``/``mlflow.db`` are never older than the uploaded Ray state. It also brings a
    finished trial's artifacts from the bucket to the driver before ``TrackingCallback`` logs them."""
    from ray.tune import Callback

    class StorageSync(Callback):
        def __init__(self, paths: StudyPaths) -> None:
            self.paths = paths

        def get_state(self):
            self.paths.push()
            return None

        def on_trial_complete(self, iteration, trials, trial, **info):
            art = (trial.last_result or {}).get("artifact_dir")
            if art and self.paths.artifacts_uri:
                try:
                    st.download_dir(st.join(self.paths.artifacts_uri, trial.trial_id), art)
                except OSError as e:
                    print(f"study: could not fetch the artifacts of trial {trial.trial_id}: {e}", file=sys.stderr)

        def on_experiment_end(self, trials, **info):
            self.paths.push()

    return StorageSync(paths)


# -- checks before anything is written ---------------------------------------------------------------

def preflight(spec: Spec, source: str, cache: Path | str, data_cache: str | Path | None = None) -> dict:
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
            data = load_data(spec, d.key, str(data_cache if data_cache is not None else Path(cache) / "data"))
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
    # `ray job submit` gives its entrypoint RAY_ADDRESS; without either, start a Ray of our own
    # ("local"): a bare ray.init() would attach to any `ray start` cluster that happens to run on the machine
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:  # trial output stays in Ray's session logs; the driver prints the progress line
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def _resources(res, has_gpu: bool) -> dict:
    return {"cpu": res.cpus, "gpu": res.gpus if has_gpu else 0}


def _run_config(paths: StudyPaths, stage: str, spec: Spec, callbacks: list):
    from ray import tune

    storage_path, fs = paths.tune_storage()
    return tune.RunConfig(
        name=stage, storage_path=storage_path, storage_filesystem=fs, verbose=0, callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=spec.failures.max_retries),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
    )


def _callbacks(paths: StudyPaths, spec: Spec, stage: str, total: int, quiet: bool, scheduler=None) -> list:
    from study.tracking import TrackingCallback
    from study.tuning.progress import ProgressCallback
    from study.tuning.scheduler import PerCellASHA, SchedulerState

    state = paths.state
    cbs = [TrackingCallback(state["tracking_uri"], state["experiment"], state.get("artifact_location"),
                            str(paths.artifacts))]
    if paths.uri:  # first: the artifacts must be on the driver before TrackingCallback logs them
        cbs.insert(0, _storage_sync(paths))
    if isinstance(scheduler, PerCellASHA):  # first in every session: Ray restores callback state by index
        cbs.insert(0, SchedulerState(scheduler))
    if not quiet:
        cbs.append(ProgressCallback(stage, total))
    return cbs


def _trainable(stage: str, spec: Spec, paths: StudyPaths, has_gpu: bool):
    from ray import tune

    from study.tuning.trainables import lnl_trainable, pretrain_trainable

    state = paths.state
    data = spec.model_dump(mode="json")
    if stage == "pretrain":
        fn = tune.with_parameters(pretrain_trainable, spec_data=data, cache_dir=state["cache"],
                                  data_cache=state["data_cache"])
        return tune.with_resources(fn, _resources(spec.resources.pretrain, has_gpu))
    fn = tune.with_parameters(lnl_trainable, spec_data=data, cache_dir=state["cache"],
                              data_cache=state["data_cache"], artifacts_root=str(paths.artifacts),
                              artifacts_uri=paths.artifacts_uri)
    return tune.with_resources(fn, _resources(spec.resources.trial, has_gpu))


def _tuner(stage: str, spec: Spec, plan: Plan, paths: StudyPaths, has_gpu: bool, quiet: bool):
    from ray import tune

    from study.tuning.scheduler import PerCellASHA
    from study.tuning.searcher import CellSearcher

    trainable = _trainable(stage, spec, paths, has_gpu)
    storage_path, fs = paths.tune_storage()
    path = f"{storage_path}/{stage}"
    if tune.Tuner.can_restore(path, storage_filesystem=fs):
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False,
                                   restart_errored=False, storage_filesystem=fs)
        # this driver's callbacks and Optuna storage: the pickled ones name the previous driver's files,
        # which on a restarted head (a URI study, a moved NFS mount) are elsewhere or gone
        internal = getattr(tuner, "_local_tuner", None)
        run_config = getattr(internal, "_run_config", None)
        if run_config is not None:
            total = {"pretrain": len(plan.pretrain_jobs), "lnl": plan.tuning_trials}.get(stage, len(plan.final_runs))
            scheduler = getattr(getattr(internal, "_tune_config", None), "scheduler", None)
            run_config.callbacks = _callbacks(paths, spec, stage, total, quiet, scheduler)
        searcher = getattr(getattr(internal, "_tune_config", None), "search_alg", None)
        if isinstance(searcher, CellSearcher):
            searcher.storage = paths.optuna_url
            searcher._studies = {}
        elif stage == "lnl" and paths.uri:
            raise RuntimeError("cannot point the restored searcher at this driver's optuna.db")
        return tuner
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
                                                 _callbacks(paths, spec, stage, plan.tuning_trials, quiet,
                                                            scheduler)))
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
    if paths.uri:
        st.mlflow_env(paths.uri)
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
        if stage == "final" and not final_runs(spec, plan, paths):
            # every tuning trial failed (or none completed): nothing to rerun, the study still ends
            print("study: no cell has a completed tuning trial, so stage final has nothing to run "
                  f"(errors: `study status {paths.location}`)", file=sys.stderr)
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
                  f"(see `study status {paths.location}`)", file=sys.stderr)
    paths.state["finished_at"] = datetime.now().isoformat(timespec="seconds")
    paths.state["driver_seconds"] = paths.state.get("driver_seconds", 0) + round(time.time() - t0, 1)
    paths.save()
    paths.push(force=True)
    if not quiet:
        print(f"study: done. MLflow UI: mlflow ui --backend-store-uri {paths.state['tracking_uri']} "
              f"--host 127.0.0.1 ; status: study status {paths.location}")
    print(paths.location)
    return 0


def launch(spec_path: str, storage: str | None = None, name: str | None = None, address: str | None = None,
           tracking_uri: str | None = None, quiet: bool = False) -> int:
    spec = load_spec(spec_path)
    study_name = name or f"{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in study_name or study_name.startswith("."):
        raise StudyInputError(f"--name {study_name!r}: a plain directory name, e.g. {spec.name}-1")
    root_arg = storage or spec.storage.root
    option = "--storage" if storage else "storage.root"
    if st.is_uri(root_arg):
        return _launch_uri(spec, spec_path, root_arg, option, study_name, name, address, tracking_uri, quiet)
    root = Path(root_arg).expanduser().resolve()
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
    cache = _cache_location(spec, root)
    data_cache = Path(spec.storage.data_cache).expanduser().resolve() if spec.storage.data_cache else Path(cache) / "data"
    facts = preflight(spec, spec_path, cache, data_cache)
    uri = tracking_uri or spec.tracking.uri
    study_dir.mkdir(parents=True)
    try:
        from study.tracking import default_tracking_uri
        state = _new_state(spec_path, study_name, str(cache), str(data_cache), address,
                           uri or default_tracking_uri(study_dir),
                           None if uri else (study_dir / "mlartifacts").as_uri(), facts)
        (study_dir / "spec.yaml").write_text(spec_to_yaml(spec))
        paths = StudyPaths(study_dir, state)
        paths.save()
    except BaseException:
        shutil.rmtree(study_dir, ignore_errors=True)
        raise
    if not quiet:
        print(f"study: {study_dir}", file=sys.stderr)
    return run_stages(spec, paths, address, quiet)


def _cache_location(spec: Spec, root) -> str | Path:
    """The content-addressed cache: ``storage.cache`` (a path or a URI), else ``<root>/cache``."""
    if spec.storage.cache:
        return spec.storage.cache if st.is_uri(spec.storage.cache) else Path(spec.storage.cache).expanduser().resolve()
    return st.join(root, "cache") if isinstance(root, str) else root / "cache"


def _new_state(spec_path, study_name: str, cache: str, data_cache: str, address, tracking_uri: str,
               artifact_location: str | None, facts: dict, **extra) -> dict:
    return {"name": study_name, "spec_source": str(spec_path), "created_at": datetime.now().isoformat(timespec="seconds"),
            "cache": cache, "data_cache": data_cache, "address": address, "tracking_uri": tracking_uri,
            "experiment": study_name, "artifact_location": artifact_location, "datasets": facts,
            "stages": {s: "pending" for s in STAGES}, **extra}


def _launch_uri(spec: Spec, spec_path: str, root: str, option: str, study_name: str, name: str | None,
                address: str | None, tracking_uri: str | None, quiet: bool) -> int:
    """``launch`` with the study directory under an ``s3://``/``gs://`` URI (see the module docstring)."""
    root = root.rstrip("/")
    st.check(root, option)
    if spec.storage.cache and st.is_uri(spec.storage.cache):
        st.check(spec.storage.cache, "storage.cache")
    if spec.storage.data_cache and st.is_uri(spec.storage.data_cache):
        raise StudyInputError(f"storage.data_cache {spec.storage.data_cache}: decoded datasets are read from a "
                              "node's own disk; give a local or NFS directory, or leave it out (each node then "
                              "decodes into its own cache)")
    study_uri = st.join(root, study_name)
    if st.is_file(st.join(study_uri, "state.json")) and st.is_file(st.join(study_uri, "spec.yaml")) and name:
        if st.read_text(st.join(study_uri, "spec.yaml")) == spec_to_yaml(spec):
            if not quiet:
                print(f"study: {study_uri} exists with the same spec; resuming it", file=sys.stderr)
            return resume(study_uri, address=address, quiet=quiet)
        raise StudyInputError(f"{study_uri} holds a study with a different spec; pick another --name")
    if st.has_children(study_uri):
        raise StudyInputError(f"{study_uri} exists; continue it with `study resume {study_uri}` or pass --name")
    cache = _cache_location(spec, root)
    data_cache = str(Path(spec.storage.data_cache).expanduser().resolve()) if spec.storage.data_cache else ""
    facts = preflight(spec, spec_path, cache, st.node_data_cache(data_cache))
    uri = tracking_uri or spec.tracking.uri
    local = st.local_mirror(study_uri)
    if local.exists():  # a working copy left by an earlier study of this name whose bucket copy is gone
        shutil.rmtree(local)
    local.mkdir(parents=True)
    try:
        from study.tracking import default_tracking_uri
        state = _new_state(spec_path, study_name, str(cache), data_cache, address,
                           uri or default_tracking_uri(local), None if uri else st.join(study_uri, "mlartifacts"),
                           facts, storage_uri=study_uri, tracking_local=not uri)
        (local / "spec.yaml").write_text(spec_to_yaml(spec))
        paths = StudyPaths(local, state, study_uri)
        paths.save()
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        try:
            st.delete(study_uri)
        except OSError:
            pass
        raise
    if not quiet:
        print(f"study: {study_uri} (driver working copy {local})", file=sys.stderr)
    return run_stages(spec, paths, address, quiet)


def open_study_dir(study_dir: str, driver: bool = False) -> tuple[Spec, StudyPaths]:
    """The spec and paths of a study directory (a path, or an ``s3://``/``gs://`` URI whose driver-side
    files are downloaded first: into the driver's working copy when ``driver``, else into a separate
    read-only view, so that ``study status`` never overwrites a running driver's databases)."""
    import yaml

    if st.is_uri(study_dir):
        uri = str(study_dir).rstrip("/")
        st.check(uri, "STUDY_DIR")
        if not (st.is_file(st.join(uri, "state.json")) and st.is_file(st.join(uri, "spec.yaml"))):
            raise StudyInputError(f"{uri}: not a study directory (no state.json/spec.yaml there); "
                                  "study directories are what `study launch` prints")
        local = st.local_mirror(uri) if driver else st.local_mirror(uri).with_name(Path(uri).name + ".view")
        local.mkdir(parents=True, exist_ok=True)
        for name in (*STATE_FILES, *SQLITE_FILES):
            if st.is_file(st.join(uri, name)):
                st.download_file(st.join(uri, name), local / name)
            else:  # not uploaded yet: a local leftover would not match the bucket's Ray state
                (local / name).unlink(missing_ok=True)
        state = json.loads((local / "state.json").read_text())
        if state.get("tracking_local"):
            from study.tracking import default_tracking_uri
            state["tracking_uri"] = default_tracking_uri(local)
        spec = parse_spec(yaml.safe_load((local / "spec.yaml").read_text()), str(local / "spec.yaml"))
        return spec, StudyPaths(local, state, uri)
    d = Path(study_dir).expanduser().resolve()
    if not (d / "state.json").is_file() or not (d / "spec.yaml").is_file():
        raise StudyInputError(f"{d}: not a study directory (no state.json/spec.yaml); "
                              "study directories are what `study launch` prints")
    spec = parse_spec(yaml.safe_load((d / "spec.yaml").read_text()), str(d / "spec.yaml"))
    return spec, StudyPaths(d, json.loads((d / "state.json").read_text()))


def resume(study_dir: str, address: str | None = None, quiet: bool = False) -> int:
    spec, paths = open_study_dir(study_dir, driver=True)
    return run_stages(spec, paths, address or paths.state.get("address"), quiet)
