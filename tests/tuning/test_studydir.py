"""The study directory: ``state.json`` through ``StudyState`` (also as the previous driver wrote it), a
corrupt one as bad input naming the file, and creating, relaunching and opening a directory on a path."""

from __future__ import annotations

import json
import re

import pytest

from study.tracking.store import default_tracking_uri
from study.tuning.errors import StudyInputError
from study.tuning.spec import load_spec, spec_to_yaml
from study.tuning.studydir import (
    CacheLocations,
    DatasetFacts,
    StudyState,
    cache_locations,
    create_study_dir,
    existing_study,
    new_state,
    open_study_dir,
    study_location,
)
from tests.conftest import SMOKE

#: a state.json as the driver before StudyState wrote it (a local study, finished)
OLD_STATE = {
    "name": "smoke",
    "spec_source": "search_spaces/smoke.yaml",
    "created_at": "2026-12-01T10:00:00",
    "cache": "/s/cache",
    "data_cache": "/s/cache/data",
    "address": None,
    "tracking_uri": "sqlite:////s/smoke/mlflow.db",
    "experiment": "smoke",
    "artifact_location": "file:///s/smoke/mlartifacts",
    "datasets": {"synthetic": {"images": 240, "classes": 3, "resolution": 16, "channels": 3}},
    "stages": {"pretrain": "done", "lnl": "done", "final": "done"},
    "final_skipped_cells": [],
    "errors": {"pretrain": 0, "lnl": 1, "final": 0},
    "finished_at": "2026-12-01T10:05:00",
    "driver_seconds": 300.5,
}


def test_state_of_the_previous_driver_reads_and_round_trips(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(OLD_STATE, indent=2))
    state = StudyState.read(path)
    assert state.stages == {"pretrain": "done", "lnl": "done", "final": "done"} and state.errors["lnl"] == 1
    assert state.datasets["synthetic"].classes == 3 and state.storage_uri is None and not state.tracking_local
    state.write(path)
    again = json.loads(path.read_text())
    assert {k: again[k] for k in OLD_STATE} == OLD_STATE  # same keys, same values, same formats
    assert StudyState.read(path) == state


def test_a_uri_study_state_keeps_its_extra_keys(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                **OLD_STATE,
                "data_cache": "",
                "storage_uri": "s3://b/studies/smoke",
                "tracking_local": True,
                "stages": {"pretrain": "running"},
            }
        )
    )
    state = StudyState.read(path)
    assert state.storage_uri == "s3://b/studies/smoke" and state.tracking_local and state.data_cache == ""
    assert state.stages == {"pretrain": "running", "lnl": "pending", "final": "pending"}


@pytest.mark.parametrize(
    "text, says",
    [
        ("{not json", "the file: Invalid JSON"),
        (json.dumps({k: v for k, v in OLD_STATE.items() if k != "tracking_uri"}), "tracking_uri: Field required"),
        (json.dumps({**OLD_STATE, "stages": {"lnl": "halfway"}}), "stages.lnl"),
        (json.dumps([1, 2]), "the file"),
    ],
)
def test_a_corrupt_state_is_bad_input_naming_the_file(tmp_path, text, says):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(StudyInputError) as e:
        StudyState.read(path)
    assert str(e.value).startswith(f"{path}: not a study's state (") and says in str(e.value), str(e.value)


def test_cache_locations_on_paths_and_uris(tmp_path):
    spec = load_spec(SMOKE)
    root = str(tmp_path / "studies")
    assert cache_locations(spec, root) == CacheLocations(f"{root}/cache", f"{root}/cache/data")
    assert cache_locations(spec, "s3://b/studies/") == CacheLocations("s3://b/studies/cache", "")
    local_cache = spec.model_copy(update={"storage": spec.storage.model_copy(update={"cache": str(tmp_path / "c")})})
    assert cache_locations(local_cache, "s3://b/studies") == CacheLocations(
        str(tmp_path / "c"), str(tmp_path / "c" / "data")
    )
    uri_data = spec.model_copy(update={"storage": spec.storage.model_copy(update={"data_cache": "s3://b/data"})})
    with pytest.raises(StudyInputError, match=re.escape("storage.data_cache s3://b/data: decoded datasets")):
        cache_locations(uri_data, root)


def test_create_relaunch_and_open_a_study_on_a_path(tmp_path):
    spec = load_spec(SMOKE)
    location = study_location(str(tmp_path), "--storage", "s1")
    assert location == str(tmp_path / "s1") and not existing_study(location, spec, relaunch=True)
    facts = {"synthetic": DatasetFacts(images=240, classes=3, resolution=16, channels=3)}
    state = new_state(location, str(SMOKE), cache_locations(spec, str(tmp_path)), facts, None, None)
    paths = create_study_dir(location, spec, state)
    assert sorted(p.name for p in paths.dir.iterdir()) == ["spec.yaml", "state.json"]
    assert state.tracking_uri == default_tracking_uri(paths.dir) and state.experiment == "s1"
    assert state.artifact_location == (tmp_path / "s1" / "mlartifacts").as_uri()

    assert existing_study(location, spec, relaunch=True)  # the same --name and spec: resume it
    with pytest.raises(StudyInputError, match=re.escape("exists; continue it with `study resume")):
        existing_study(location, spec, relaunch=False)
    other = spec.model_copy(update={"seeds": [0, 1, 2]})
    with pytest.raises(StudyInputError, match=re.escape("holds a study with a different spec")):
        existing_study(location, other, relaunch=True)

    spec2, opened = open_study_dir(str(tmp_path / "s1") + "/")
    assert spec_to_yaml(spec2) == spec_to_yaml(spec) and opened.state == state and opened.dir == paths.dir
    (paths.dir / "state.json").write_text("{}")
    with pytest.raises(StudyInputError, match=re.escape(f"{paths.dir / 'state.json'}: not a study's state")):
        open_study_dir(location)


def test_a_failed_creation_leaves_nothing(tmp_path, monkeypatch):
    spec = load_spec(SMOKE)
    location = study_location(str(tmp_path), "--storage", "s1")
    state = new_state(location, str(SMOKE), cache_locations(spec, str(tmp_path)), {}, None, None)

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(StudyState, "write", full_disk)
    with pytest.raises(OSError):
        create_study_dir(location, spec, state)
    assert list(tmp_path.iterdir()) == []


def test_a_storage_root_that_is_a_file_is_bad_input(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(StudyInputError, match=re.escape(f"storage.root {tmp_path / 'f'}: not a directory")):
        study_location(str(tmp_path / "f"), "storage.root", "s1")


def test_an_edited_spec_yaml_is_refused_with_the_diff(tmp_path):
    spec = load_spec(SMOKE)
    location = study_location(str(tmp_path), "--storage", "s1")
    facts = {"synthetic": DatasetFacts(images=240, classes=3, resolution=16, channels=3)}
    state = new_state(location, str(SMOKE), cache_locations(spec, str(tmp_path)), facts, None, None)
    paths = create_study_dir(location, spec, state)
    frozen = (paths.dir / "spec.yaml").read_text()
    assert json.loads((paths.dir / "state.json").read_text())["spec_frozen"] == frozen
    (paths.dir / "spec.yaml").write_text(frozen.replace("- 0\n- 1\n", "- 0\n- 1\n- 2\n"))
    with pytest.raises(StudyInputError) as e:
        open_study_dir(location, driver=True)
    msg = str(e.value)
    assert "was edited after the study was launched" in msg and "+- 2" in msg and "--name NEW_NAME" in msg
    (paths.dir / "spec.yaml").write_text(frozen)  # restored: opens again
    assert open_study_dir(location, driver=True)[1].state.spec_frozen == frozen
