"""Trial checkpoints are for resuming a trial, so a trial that has ended loses them.

A trial's checkpoint (written at every epoch, the last one kept: ``CheckpointConfig(num_to_keep=1)``)
holds its networks with their optimisers and the best and last epochs' weights: 50 tuning trials of a
ResNet-18 Co-teaching cell would keep about 18 GB of them after the study no longer needs any. What a
finished trial leaves for users is in MLflow (``best_checkpoint.pt``, the weights of its best epoch).
A trial that ended (finished, stopped early by ASHA, or failed: the study restores neither) is never
restored, so its checkpoint folders can go, but only once Ray's experiment state says that it ended: a
driver killed before that state was written restores the trial from its checkpoint.

``CheckpointPruner`` waits for that. Ray asks callbacks for their state (``get_state``) each time it
writes its experiment state; the trials that ended before the previous write are recorded as ended in a
state that is written, and their checkpoints are deleted now. ``prune_ended`` deletes the rest when a
stage's ``Tuner.fit`` returns (its final state is written then).
"""

from __future__ import annotations

import sys

import pyarrow.fs as pafs
from ray.tune import Callback

#: Ray's name for a trial's checkpoint folders (``checkpoint_000003``)
CHECKPOINT_PREFIX = "checkpoint_"


def delete_checkpoints(fs: pafs.FileSystem, trial_path: str) -> int:
    """Delete the checkpoint folders in a trial's folder, on any filesystem (a disk, a bucket); how many."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
        found = [
            i.path for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX)
        ]
        for path in found:
            fs.delete_dir(path)
    except OSError as e:  # a full disk must not stop the study: the space is only not given back
        print(f"study: could not delete the checkpoints in {trial_path}: {e}", file=sys.stderr)
        return 0
    return len(found)


def _delete_trial_checkpoints(trial) -> int:
    storage = getattr(trial, "storage", None)
    return 0 if storage is None else delete_checkpoints(storage.storage_filesystem, storage.trial_fs_path)


class CheckpointPruner(Callback):
    """Deletes an ended trial's checkpoints once two experiment-state writes have passed since it ended
    (the first of them records it as ended; the second leaves time for that one's upload)."""

    def __init__(self) -> None:
        self._ended: list = []  # since the last experiment-state write
        self._recorded: list = []  # ended before the last write: recorded by it

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended.append(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended.append(trial)

    def get_state(self) -> None:
        ready, self._recorded, self._ended = self._recorded, self._ended, []
        for trial in ready:
            _delete_trial_checkpoints(trial)
        return None


def prune_ended(results) -> int:
    """After ``Tuner.fit`` returns (every trial has ended and the final experiment state is written):
    delete the checkpoints of every trial of its ``ResultGrid``; how many folders were deleted."""
    return sum(delete_checkpoints(r.filesystem, r.path) for r in results if r.path and r.filesystem is not None)


__all__ = ["CHECKPOINT_PREFIX", "CheckpointPruner", "delete_checkpoints", "prune_ended"]
