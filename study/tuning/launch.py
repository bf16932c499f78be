"""`study launch` and `study resume` (docs/architecture.md, CLI and Study directory).

``launch`` checks the spec against this installation and its data (``preflight``), creates the study
directory (``studydir``: a path or an ``s3://``/``gs://`` URI, one code path for both) and runs the stages
(``driver``). A relaunch with the same ``--name`` and spec (a retried ``ray job submit`` or RayJob) resumes
that study instead. ``resume`` opens a study directory (for a URI, its driver-side files are downloaded to
the driver's working copy first) and runs whatever stage is not done.
"""

from __future__ import annotations

import sys
from datetime import datetime

from study import storage as st
from study.tuning.driver import run_stages
from study.tuning.errors import StudyInputError
from study.tuning.grow import check_growth
from study.tuning.preflight import preflight
from study.tuning.smoke import smoke_spec
from study.tuning.spec import Spec, load_spec
from study.tuning.studydir import (
    cache_locations,
    create_study_dir,
    existing_study,
    new_state,
    open_study_dir,
    study_location,
)


def launch(
    spec_path: str,
    storage: str | None = None,
    name: str | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    quiet: bool = False,
    smoke: bool = False,
) -> int:
    """Create a study directory for the spec under ``storage`` (default the spec's ``storage.root``) and
    run the study; nothing is written when a check fails. ``smoke``: the spec's smoke version
    (``study.tuning.smoke``), named ``NAME-smoke`` unless ``name`` is given. Returns the exit code."""
    spec = launch_spec(spec_path, smoke)
    study_name = _study_name(spec, name or (spec.name if smoke else None))
    root, option = (storage, "--storage") if storage else (spec.storage.root, "storage.root")
    location = study_location(root, option, study_name)
    if existing_study(location, spec, relaunch=bool(name) or smoke):
        if not quiet:
            print(f"study: {location} exists with the same spec; resuming it", file=sys.stderr)
        return resume(location, address=address, quiet=quiet)
    caches = cache_locations(spec, root)
    if st.is_uri(caches.cache):
        st.check(caches.cache, "storage.cache")
    facts = preflight(spec, spec_path, st.node_data_cache(caches.data_cache))
    state = new_state(location, spec_path, caches, facts, address, tracking_uri or spec.tracking.uri)
    paths = create_study_dir(location, spec, state)
    if not quiet:
        print(f"study: {paths.describe()}", file=sys.stderr)
    return run_stages(spec, paths, address, quiet)


def launch_spec(spec_path: str, smoke: bool) -> Spec:
    """The spec at ``spec_path``, or its smoke version, whose stand-ins are said on stderr."""
    spec = load_spec(spec_path)
    if not smoke:
        return spec
    result = smoke_spec(spec)
    print(f"study: SMOKE run of {spec_path} as {result.spec.name!r}: stand-in data, tiny scale", file=sys.stderr)
    for note in result.notes:
        print(f"study: smoke: {note}", file=sys.stderr)
    return result.spec


def resume(study_dir: str, address: str | None = None, quiet: bool = False) -> int:
    """Continue the study at ``study_dir`` (a path or a URI): nothing finished is rerun. Returns the exit code."""
    spec, paths = open_study_dir(study_dir, driver=True)
    return run_stages(spec, paths, address or paths.state.address, quiet)


def grow(study_dir: str, spec_path: str, address: str | None = None, quiet: bool = False) -> int:
    """Grow the finished study at ``study_dir`` by the axis values ``spec_path`` appends to its spec and run
    only what is new (``study.tuning.grow``). Returns the exit code."""
    launched, paths = open_study_dir(study_dir, driver=True, edited_ok=True)
    unfinished = [s for s, v in paths.state.stages.items() if v != "done"]
    if unfinished:
        raise StudyInputError(
            f"{paths.location}: stage {unfinished[0]} is {paths.state.stages[unfinished[0]]}; finish the study "
            f"first (`study resume {paths.location}`), then grow it"
        )
    grown = load_spec(spec_path)
    part = check_growth(launched, grown, spec_path)
    facts = preflight(grown, spec_path, st.node_data_cache(paths.state.data_cache))
    paths.grow(grown, facts)
    if not quiet:
        print(
            f"study: growing {paths.location} (generation {paths.state.generation}): "
            f"{len(part.pretrain_jobs)} pretraining job(s), {len(part.cells)} new cell(s) "
            f"({part.tuning_trials} tuning trials), {len(part.final_runs)} final run(s)",
            file=sys.stderr,
        )
    return run_stages(grown, paths, address or paths.state.address, quiet)


def _study_name(spec: Spec, name: str | None) -> str:
    """``--name``, else the spec's name and the time."""
    study_name = name or f"{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in study_name or study_name.startswith("."):
        raise StudyInputError(f"--name {study_name!r}: a plain directory name, e.g. {spec.name}-1")
    return study_name
