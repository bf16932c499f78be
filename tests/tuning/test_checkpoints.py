"""An ended trial's Ray checkpoints are deleted, but only after an experiment-state write has recorded
that it ended (a driver killed before that write restores the trial from its checkpoint)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs as pafs

from study.tuning.checkpoints import CheckpointPruner, delete_checkpoints, prune_ended


def _trial_dir(root: Path, name: str) -> Path:
    d = root / name
    for sub in ("checkpoint_000003", "checkpoint_000004"):
        (d / sub).mkdir(parents=True)
        (d / sub / "state.pt").write_bytes(b"x" * 10)
    (d / "result.json").write_text("{}")
    (d / "params.json").write_text("{}")
    return d


def _trial(d: Path):
    return SimpleNamespace(
        trial_id=d.name, storage=SimpleNamespace(storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(d))
    )


def _checkpoints(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.startswith("checkpoint_"))


def test_delete_checkpoints_keeps_the_trial_record(tmp_path):
    d = _trial_dir(tmp_path, "t1")
    assert delete_checkpoints(pafs.LocalFileSystem(), str(d)) == 2
    assert _checkpoints(d) == [] and {p.name for p in d.iterdir()} == {"result.json", "params.json"}
    assert delete_checkpoints(pafs.LocalFileSystem(), str(tmp_path / "gone")) == 0


def test_pruner_waits_for_two_state_writes(tmp_path):
    a, b = _trial_dir(tmp_path, "a"), _trial_dir(tmp_path, "b")
    pruner = CheckpointPruner()
    pruner.on_trial_complete(0, [], _trial(a))
    assert pruner.get_state() is None  # write 1 records a as ended
    assert _checkpoints(a)
    pruner.on_trial_error(0, [], _trial(b))
    pruner.get_state()  # write 2: a's record is written; b is recorded by this one
    assert _checkpoints(a) == [] and _checkpoints(b)
    pruner.get_state()
    assert _checkpoints(b) == []


def test_prune_ended_after_fit(tmp_path):
    dirs = [_trial_dir(tmp_path, n) for n in ("x", "y")]
    results = [SimpleNamespace(path=str(d), filesystem=pafs.LocalFileSystem()) for d in dirs]
    assert prune_ended(results) == 4
    assert all(_checkpoints(d) == [] for d in dirs)
