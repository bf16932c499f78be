"""The study directory and its state: where a study lives, what ``state.json`` holds, and how a new
directory is created and an existing one opened (docs/architecture.md, Study directory).

A study directory is a local/NFS path or an ``s3://``/``gs://`` URI (``study.storage``); both go through
the same functions here, and ``StudyPaths`` holds the one difference: the driver reads and writes a local
directory (``StudyPaths.dir``), which is the study directory itself, or for a URI the driver's working
copy (``storage.local_mirror``) of the files an object store cannot hold (``spec.yaml``, ``state.json``,
``optuna.db``, the default ``mlflow.db``). ``StudyPaths.push`` uploads those; Ray Tune's experiment state,
the trial checkpoints and MLflow's artifacts are written to the URI directly.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from study import storage as st
from study.tracking.store import default_tracking_uri
from study.tuning.errors import StudyInputError
from study.tuning.spec import Spec, frozen_spec, load_spec, spec_to_yaml

Stage = Literal["pretrain", "lnl", "final"]
StageStatus = Literal["pending", "running", "done"]
#: the stages in the order they run
STAGES: tuple[Stage, ...] = ("pretrain", "lnl", "final")

#: the driver's files that a URI study keeps in its bucket (sqlite ones uploaded as consistent snapshots)
STATE_FILES = ("spec.yaml", "state.json")
SQLITE_FILES = ("optuna.db", "mlflow.db")


class DatasetFacts(BaseModel):
    """A dataset entry as the preflight decoded it."""

    model_config = ConfigDict(extra="forbid")

    images: int
    classes: int
    resolution: int
    channels: int


class StudyState(BaseModel):
    """``state.json``: what a study is and how far it got. Written by the driver only."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: the study directory's name, also the MLflow experiment's (``experiment``)
    name: str
    #: the spec file the study was launched from (the frozen copy is ``spec.yaml``)
    spec_source: str
    created_at: datetime
    #: the content-addressed cache (a path or a URI)
    cache: str
    #: the decoded-dataset cache; empty: each node's own (``storage.node_data_cache``)
    data_cache: str
    #: the Ray address the study was launched with (``resume`` reuses it unless given another)
    address: str | None = None
    tracking_uri: str
    experiment: str
    #: where the MLflow experiment keeps its artifacts; None: the tracking server decides
    artifact_location: str | None = None
    datasets: dict[str, DatasetFacts]
    stages: dict[Stage, StageStatus]
    #: failed trials per finished stage
    errors: dict[Stage, int] = {}
    #: cells with no completed tuning trial, so without final runs
    final_skipped_cells: list[str] = []
    finished_at: datetime | None = None
    #: the driver's wall time over all its sessions
    driver_seconds: float = 0.0
    #: a study under a URI: that URI (``dir`` is then the driver's working copy)
    storage_uri: str | None = None
    #: the tracking store is the study's own ``mlflow.db`` (found again wherever the working copy is)
    tracking_local: bool = False
    #: ``spec.yaml`` as launched: a study whose spec.yaml was edited since is refused (None: a study
    #: launched before this check)
    spec_frozen: str | None = None
    #: how often the study was grown (``study resume --grow``); generation N's stages run under
    #: ``tune/STAGE.N`` (generation 0: ``tune/STAGE``)
    generation: int = Field(0, ge=0)
    #: the frozen specs of the earlier generations, oldest first: what they planned has run
    earlier_specs: list[str] = []
    #: failed trials per stage over the earlier generations (``errors`` counts every generation)
    earlier_errors: dict[Stage, int] = {}

    @field_validator("stages")
    @classmethod
    def _every_stage(cls, stages: dict[Stage, StageStatus]) -> dict[Stage, StageStatus]:
        return {s: stages.get(s, "pending") for s in STAGES}

    @classmethod
    def read(cls, path: Path, name: str | None = None) -> StudyState:
        """The state in ``path``; a ``StudyInputError`` naming the file (as ``name``, default the path) when
        it cannot be read or is not a study's state."""
        where = name or str(path)
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as e:
            raise StudyInputError(f"{where}: cannot read the study's state ({e.strerror or e})") from None
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'the file'}: {err['msg']}" for err in e.errors()[:3]
            )
            raise StudyInputError(
                f"{where}: not a study's state ({problems}); `study launch` writes this file, "
                "restore it from a copy or launch the study again"
            ) from None

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically: a reader never sees half a state."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)


class StudyPaths:
    """A study directory. ``dir`` is where the driver reads and writes it: the directory itself, or for a
    study under an ``s3://``/``gs://`` URI (``uri``) the driver's working copy, kept in the bucket by
    ``save``/``push``."""

    def __init__(self, study_dir: Path, state: StudyState, uri: str | None = None) -> None:
        self.dir = study_dir
        self.state = state
        self.uri = uri
        self._pushed: dict[str, tuple] = {}

    def __getstate__(self) -> dict:  # pickled into Ray's experiment state with StorageSync
        d = dict(self.__dict__)
        d["_pushed"] = {}
        return d

    @property
    def location(self) -> str:
        """What the user names the study by (``study resume LOCATION``)."""
        return self.uri or str(self.dir)

    def describe(self) -> str:
        return f"{self.uri} (driver working copy {self.dir})" if self.uri else str(self.dir)

    @property
    def tune(self) -> Path:
        return self.dir / "tune"

    def stage_name(self, stage: Stage) -> str:
        """The Ray Tune experiment of ``stage`` in this generation of the study (``tune/NAME``)."""
        return stage if self.state.generation == 0 else f"{stage}.{self.state.generation}"

    def tune_storage(self) -> tuple[str, object | None]:
        """(storage_path, storage_filesystem) of the study's Ray Tune experiments."""
        if self.uri:
            fs, path = st.open_fs(st.join(self.uri, "tune"))
            return path, fs
        return str(self.tune), None

    @property
    def artifacts(self) -> Path:
        """Where trials' MLflow artifacts are on the driver."""
        return self.dir / "trial_artifacts"

    @property
    def artifacts_uri(self) -> str | None:
        """Where trials put their MLflow artifacts for the driver (URI studies: trials may run elsewhere)."""
        return st.join(self.uri, "trial_artifacts") if self.uri else None

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.dir / 'optuna.db'}"

    def grow(self, spec: Spec, datasets: dict[str, DatasetFacts]) -> None:
        """Start the study's next generation with ``spec`` (checked by ``grow.check_growth``): the frozen
        spec becomes it, the earlier one is kept, every stage is pending again."""
        state = self.state
        frozen = state.spec_frozen if state.spec_frozen is not None else (self.dir / "spec.yaml").read_text()
        state.earlier_specs = [*state.earlier_specs, frozen]
        state.earlier_errors = dict(state.errors)
        state.spec_frozen = spec_to_yaml(spec)
        state.generation += 1
        state.datasets = datasets
        state.stages = {s: "pending" for s in STAGES}
        state.finished_at = None
        (self.dir / "spec.yaml").write_text(state.spec_frozen)
        self.save()

    def set_stage(self, stage: Stage, status: StageStatus) -> None:
        self.state.stages[stage] = status
        self.save()

    def save(self) -> None:
        self.state.write(self.dir / "state.json")
        self.push()

    def push(self, force: bool = False) -> None:
        """Upload the working copy's changed files (sqlite through a consistent snapshot) to the URI."""
        if not self.uri:
            return
        for name in (*STATE_FILES, *SQLITE_FILES):
            f = self.dir / name
            if not f.is_file():
                continue
            stamp = tuple(
                (p.stat().st_mtime_ns, p.stat().st_size) for p in (f, f.with_name(name + "-wal")) if p.is_file()
            )
            if not force and self._pushed.get(name) == stamp:
                continue
            if name in SQLITE_FILES:
                st.upload_sqlite(f, st.join(self.uri, name))
            else:
                st.upload_file(f, st.join(self.uri, name))
            self._pushed[name] = stamp


# -- where things are ---------------------------------------------------------------------------------


def normalize(location: str) -> str:
    """A URI without its trailing slash, or an absolute path."""
    if st.is_uri(location):
        return location.rstrip("/")
    return str(Path(st.as_path(location)).expanduser().resolve())


def working_dir(location: str, view: bool = False) -> tuple[Path, str | None]:
    """(the local directory the driver uses, the URI or None) of the study at ``location``. ``view``: a
    reader's own copy of a URI study, so that ``study status`` never overwrites a running driver's files."""
    if not st.is_uri(location):
        return Path(location), None
    local = st.local_mirror(location)
    return (local.with_name(local.name + ".view") if view else local), location


def study_location(root: str, option: str, name: str) -> str:
    """Where the study ``name`` lives under the storage root ``root`` (the flag or spec field ``option``)."""
    if st.is_uri(root):
        st.check(normalize(root), option)
    elif Path(st.as_path(root)).expanduser().exists() and not Path(st.as_path(root)).expanduser().is_dir():
        raise StudyInputError(f"{option} {normalize(root)}: not a directory")
    return st.join(normalize(root), name)


class CacheLocations(NamedTuple):
    #: the content-addressed cache (a path or a URI)
    cache: str
    #: the decoded-dataset cache (a path); empty: each node's own
    data_cache: str


def cache_locations(spec: Spec, root: str) -> CacheLocations:
    """``storage.cache``, else ``<root>/cache``; ``storage.data_cache``, else ``<cache>/data`` for a cache on
    a path, else each node's own folder (decoded datasets are read from a node's own disk)."""
    data = spec.storage.data_cache
    if data and st.is_uri(data):
        raise StudyInputError(
            f"storage.data_cache {data}: decoded datasets are read from a node's own disk; give "
            "a local or NFS directory, or leave it out (each node then decodes into its own cache)"
        )
    cache = normalize(spec.storage.cache) if spec.storage.cache else st.join(normalize(root), "cache")
    if data:
        return CacheLocations(cache, normalize(data))
    return CacheLocations(cache, "" if st.is_uri(cache) else st.join(cache, "data"))


# -- creating and opening ------------------------------------------------------------------------------


def existing_study(location: str, spec: Spec, relaunch: bool) -> bool:
    """Whether ``location`` holds this study already, to be resumed by a ``relaunch`` (the same ``--name``:
    a retried ``ray job submit`` or RayJob); a ``StudyInputError`` when it holds anything else."""
    frozen = st.join(location, "spec.yaml")
    if relaunch and st.is_file(st.join(location, "state.json")) and st.is_file(frozen):
        if st.read_text(frozen) == spec_to_yaml(spec):
            return True
        raise StudyInputError(f"{location} holds a study with a different spec; pick another --name")
    occupied = st.has_children(location) if st.is_uri(location) else Path(location).exists()
    if occupied:
        raise StudyInputError(f"{location} exists; continue it with `study resume {location}` or pass --name")
    return False


def new_state(
    location: str,
    spec_source: str,
    caches: CacheLocations,
    datasets: dict[str, DatasetFacts],
    address: str | None,
    tracking_uri: str | None,
) -> StudyState:
    """The state of a study about to be created at ``location``; without ``tracking_uri`` the study keeps
    its own MLflow store (``mlflow.db`` beside ``state.json``, artifacts in ``mlartifacts/``)."""
    local, uri = working_dir(location)
    name = location.rstrip("/").rsplit("/", 1)[-1]
    artifacts = st.join(uri, "mlartifacts") if uri else (local / "mlartifacts").as_uri()
    return StudyState(
        name=name,
        spec_source=str(spec_source),
        created_at=datetime.now().replace(microsecond=0),
        cache=caches.cache,
        data_cache=caches.data_cache,
        address=address,
        tracking_uri=tracking_uri or default_tracking_uri(local),
        experiment=name,
        artifact_location=None if tracking_uri else artifacts,
        datasets=datasets,
        stages={s: "pending" for s in STAGES},
        storage_uri=uri,
        tracking_local=tracking_uri is None,
    )


def create_study_dir(location: str, spec: Spec, state: StudyState) -> StudyPaths:
    """A new study directory at ``location`` holding the frozen spec and ``state``. On any failure nothing
    of it is left behind (for a URI: neither the bucket's prefix nor the working copy)."""
    local, uri = working_dir(location)
    if uri and local.exists():  # a working copy left by an earlier study of this name whose bucket copy is gone
        shutil.rmtree(local)
    local.mkdir(parents=True)
    try:
        state.spec_frozen = spec_to_yaml(spec)
        (local / "spec.yaml").write_text(state.spec_frozen)
        paths = StudyPaths(local, state, uri)
        paths.save()
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        if uri:
            with contextlib.suppress(OSError):  # the original error is the one to report
                st.delete(uri)
        raise
    return paths


def open_study_dir(location: str, driver: bool = False, edited_ok: bool = False) -> tuple[Spec, StudyPaths]:
    """The spec and paths of the study at ``location`` (a path, or a URI whose driver-side files are
    downloaded first: into the driver's working copy when ``driver``, else into a reader's own view).
    ``edited_ok``: a ``spec.yaml`` edited since the launch is no error, and the spec is the launched one."""
    location = normalize(location)
    local, uri = working_dir(location, view=not driver)
    if uri:
        st.check(uri, "STUDY_DIR")
    if not (st.is_file(st.join(location, "state.json")) and st.is_file(st.join(location, "spec.yaml"))):
        raise StudyInputError(
            f"{location}: not a study directory (no state.json/spec.yaml there); "
            "study directories are what `study launch` prints"
        )
    if uri:
        _pull(uri, local)
    state = StudyState.read(local / "state.json", st.join(location, "state.json"))
    if state.tracking_local:
        state.tracking_uri = default_tracking_uri(local)
    if edited_ok and state.spec_frozen is not None:
        return frozen_spec(state.spec_frozen), StudyPaths(local, state, uri)
    if not edited_ok:
        _check_unedited(location, local / "spec.yaml", state)
    return load_spec(local / "spec.yaml"), StudyPaths(local, state, uri)


def _check_unedited(location: str, spec_file: Path, state: StudyState) -> None:
    """A ``StudyInputError`` with the diff when ``spec.yaml`` differs from the spec the study was launched
    with: its finished trials, caches and cell ids belong to that spec, so an edited one is a new study."""
    text = spec_file.read_text(encoding="utf-8", errors="replace")
    if state.spec_frozen is None or text == state.spec_frozen:
        return
    diff = list(
        difflib.unified_diff(
            state.spec_frozen.splitlines(), text.splitlines(), "spec.yaml as launched", "spec.yaml now", lineterm=""
        )
    )
    shown = "\n".join(diff[:40]) + ("\n…" if len(diff) > 40 else "")
    raise StudyInputError(
        f"{st.join(location, 'spec.yaml')} was edited after the study was launched:\n{shown}\n"
        "A study runs the spec it was launched with. Restore spec.yaml (state.json's spec_frozen holds it); or, "
        "where the edit only appends values to axes (seeds, noise rates, ssl or lnl entries, ...), grow the "
        f"finished study by them: `study resume {location} --grow {st.join(location, 'spec.yaml')}`; or launch "
        "the edited spec as a new study, `study launch EDITED.yaml --name NEW_NAME`: its pretraining and "
        "decoded data are reused from the cache, so only what changed is computed again."
    )


def _pull(uri: str, local: Path) -> None:
    """The bucket's copies of the driver-side files into ``local``."""
    local.mkdir(parents=True, exist_ok=True)
    for name in (*STATE_FILES, *SQLITE_FILES):
        if st.is_file(st.join(uri, name)):
            st.download_file(st.join(uri, name), local / name)
        else:  # not uploaded yet: a local leftover would not match the bucket's Ray state
            (local / name).unlink(missing_ok=True)
