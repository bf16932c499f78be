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


def _ray_trial(root: Path, trial_id: str):
    """A trial as the pruner sees it: Ray's own run metadata and checkpoint manager, keeping every
    checkpoint (``num_to_keep=None``, as the study's RunConfig asks)."""
    from ray.train import CheckpointConfig
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    meta = _TrainingRunMetadata()
    meta.checkpoint_manager = _CheckpointManager(CheckpointConfig(num_to_keep=None))
    storage = SimpleNamespace(
        storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(root / trial_id), experiment_fs_path=str(root)
    )
    return SimpleNamespace(trial_id=trial_id, storage=storage, run_metadata=meta)


def _report_checkpoint(pruner: CheckpointPruner, trial, index: int) -> str:
    """What Ray does with a reported checkpoint: callbacks' ``on_checkpoint``, then its registration."""
    from ray.train._internal.session import _TrainingResult
    from ray.tune import Checkpoint

    path = Path(trial.storage.trial_fs_path, f"checkpoint_{index:06d}")
    path.mkdir(parents=True)
    (path / "state.pt").write_bytes(b"x")
    checkpoint = Checkpoint(str(path), filesystem=pafs.LocalFileSystem())
    pruner.on_checkpoint(0, [], trial, checkpoint)
    trial.run_metadata.checkpoint_manager.register_checkpoint(
        _TrainingResult(checkpoint=checkpoint, metrics={"training_iteration": index + 1})
    )
    trial.run_metadata.invalidate_cache()
    return path.name


def _upload_ray_state(root: Path, stamp: str, trials: list, ended: set[str] = frozenset()) -> None:
    """The experiment state Ray uploads, with each trial's run metadata as Ray serialises it."""
    data = [
        [
            json.dumps({"trial_id": t.trial_id, "status": "TERMINATED" if t.trial_id in ended else "RUNNING"}),
            t.run_metadata.get_json_state(),
        ]
        for t in trials
    ]
    (root / f"experiment_state-{stamp}.json").write_text(json.dumps({"trial_data": data}))


def test_pruner_keeps_the_checkpoint_the_stored_state_restores_a_running_trial_from(tmp_path):
    pruner = CheckpointPruner()
    a, b = _ray_trial(tmp_path, "a"), _ray_trial(tmp_path, "b")
    for i in range(2):
        _report_checkpoint(pruner, a, i)
    _report_checkpoint(pruner, b, 0)
    pruner.get_state()  # nothing uploaded yet: a resumed driver would restart every trial; nothing deleted
    assert _checkpoints(tmp_path / "a") == ["checkpoint_000000", "checkpoint_000001"]
    _upload_ray_state(tmp_path, "2026-01-01_00-00-00", [a, b])  # names a's checkpoint_000001
    _report_checkpoint(pruner, a, 2)
    _report_checkpoint(pruner, a, 3)
    pruner.get_state()  # the upload lags: a resumed driver restores a from checkpoint_000001; keep it
    assert _checkpoints(tmp_path / "a") == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    assert _checkpoints(tmp_path / "b") == ["checkpoint_000000"]
    _upload_ray_state(tmp_path, "2026-01-01_00-00-00", [a, b])
    pruner.get_state()
    assert _checkpoints(tmp_path / "a") == ["checkpoint_000003"]
    # the record Ray writes into each state holds the trial's latest checkpoint only, not all it saw
    assert [r.checkpoint.path for r in a.run_metadata.checkpoint_manager._checkpoint_results] == [
        str(tmp_path / "a" / "checkpoint_000003")
    ]


def test_pruner_deletes_nothing_of_a_trial_whose_stored_checkpoint_it_does_not_know(tmp_path):
    # a resumed driver's pruner: the trial was restored from checkpoint_000000, and the stored state (the
    # previous driver's) names it, or one this pruner never saw: only a state naming a checkpoint it
    # replaced, or the latest, tells it what a resumed driver would no longer need
    first, resumed = CheckpointPruner(), CheckpointPruner()
    a = _ray_trial(tmp_path, "a")
    _report_checkpoint(first, a, 0)
    _upload_ray_state(tmp_path, "2026-01-01_00-00-00", [a])
    _report_checkpoint(resumed, a, 1)
    _report_checkpoint(resumed, a, 2)
    resumed.get_state()
    assert _checkpoints(tmp_path / "a") == ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"]
    other = _ray_trial(tmp_path, "a")
    _report_checkpoint(CheckpointPruner(), other, 7)
    _upload_ray_state(tmp_path, "2026-01-02_00-00-00", [other])
    resumed.get_state()
    assert _checkpoints(tmp_path / "a") == [f"checkpoint_00000{i}" for i in (0, 1, 2, 7)]
    _upload_ray_state(tmp_path, "2026-01-03_00-00-00", [a])
    resumed.get_state()
    assert _checkpoints(tmp_path / "a") == ["checkpoint_000002", "checkpoint_000007"]


def test_pruner_deletes_all_of_an_ended_trials_checkpoints(tmp_path):
    pruner = CheckpointPruner()
    a = _ray_trial(tmp_path, "a")
    for i in range(3):
        _report_checkpoint(pruner, a, i)
    pruner.on_trial_complete(0, [], a)
    _upload_ray_state(tmp_path, "2026-01-01_00-00-00", [a], ended={"a"})
    pruner.get_state()
    assert _checkpoints(tmp_path / "a") == []
    assert pruner.get_state() is None and not pruner._replaced and not pruner._ended
