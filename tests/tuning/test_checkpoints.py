"""An ended trial's Ray checkpoints are deleted, but only once the experiment state in storage records
that it ended (a driver killed before that state was uploaded restores the trial from its checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs

from study.tuning.checkpoints import CheckpointPruner, delete_checkpoints, prune_ended, stored_ended


def _trial_dir(root: Path, name: str) -> Path:
    d = root / name
    for sub in ("checkpoint_000003", "checkpoint_000004"):
        (d / sub).mkdir(parents=True)
        (d / sub / "state.pt").write_bytes(b"x" * 10)
    (d / "result.json").write_text("{}")
    (d / "params.json").write_text("{}")
    return d


def _trial(d: Path):
    storage = SimpleNamespace(
        storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(d), experiment_fs_path=str(d.parent)
    )
    return SimpleNamespace(trial_id=d.name, storage=storage)


def _upload_state(root: Path, stamp: str, statuses: dict[str, str]) -> None:
    """An experiment state as Ray writes it: trial_data is a list of [trial json, runtime metadata json]."""
    trials = [[json.dumps({"trial_id": t, "status": s}), "{}"] for t, s in statuses.items()]
    (root / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": trials}))


def _checkpoints(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("checkpoint_"))


def test_delete_checkpoints_keeps_the_trial_record(tmp_path):
    d = _trial_dir(tmp_path, "t1")
    assert delete_checkpoints(pafs.LocalFileSystem(), str(d)) == 2
    assert _checkpoints(d) == [] and {p.name for p in d.iterdir()} == {"result.json", "params.json"}
    assert delete_checkpoints(pafs.LocalFileSystem(), str(tmp_path / "gone")) == 0


def test_pruner_deletes_only_what_the_stored_state_records_as_ended(tmp_path):
    a, b, c = (_trial_dir(tmp_path, n) for n in "abc")
    pruner = CheckpointPruner()
    pruner.on_trial_complete(0, [], _trial(a))
    pruner.on_trial_error(0, [], _trial(b))
    assert pruner.get_state() is None  # nothing uploaded yet: nothing deleted
    assert _checkpoints(a) and _checkpoints(b)
    _upload_state(tmp_path, "2026-01-01_00-00-00", {"a": "RUNNING", "b": "RUNNING", "c": "RUNNING"})
    pruner.get_state()  # the stored state is older than both endings (its upload was skipped, or is slow)
    assert _checkpoints(a) and _checkpoints(b)
    _upload_state(tmp_path, "2026-01-01_00-00-00", {"a": "TERMINATED", "b": "RUNNING", "c": "RUNNING"})
    pruner.get_state()
    assert _checkpoints(a) == [] and _checkpoints(b)
    (tmp_path / "experiment_state-2026-01-02_00-00-00.json").write_text('{"trial_da')  # a resumed driver's, half copied
    pruner.get_state()
    assert _checkpoints(b)
    _upload_state(tmp_path, "2026-01-02_00-00-00", {"a": "TERMINATED", "b": "ERROR", "c": "TERMINATED"})
    pruner.get_state()  # the newest file is read; c ended but this driver never saw it end: not its to delete
    assert _checkpoints(b) == [] and _checkpoints(c)


def test_stored_ended(tmp_path):
    assert stored_ended(pafs.LocalFileSystem(), str(tmp_path / "nowhere")) is None
    assert stored_ended(pafs.LocalFileSystem(), str(tmp_path)) is None
    _upload_state(tmp_path, "2026-01-01_00-00-00", {"a": "TERMINATED", "b": "PENDING", "c": "ERROR", "d": "PAUSED"})
    assert stored_ended(pafs.LocalFileSystem(), str(tmp_path)) == {"a", "c"}


def test_prune_ended_after_fit(tmp_path):
    dirs = [_trial_dir(tmp_path, n) for n in ("x", "y")]
    results = [SimpleNamespace(path=str(d), filesystem=pafs.LocalFileSystem()) for d in dirs]
    assert prune_ended(results) == 4
    assert all(_checkpoints(d) == [] for d in dirs)
