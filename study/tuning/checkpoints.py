"""Trial checkpoints are for resuming a trial, so a trial that has ended loses them.

A trial's checkpoint (written at every epoch, the last one kept: ``CheckpointConfig(num_to_keep=1)``)
holds its networks with their optimisers and the best and last epochs' weights: 50 tuning trials of a
ResNet-18 Co-teaching cell would keep about 18 GB of them after the study no longer needs any. What a
finished trial leaves for users is in MLflow (``best_checkpoint.pt``, the weights of its best epoch).
A trial that ended (finished, stopped early by ASHA, or failed: the study restores neither) is never
restored, so its checkpoint folders can go, but only once Ray's experiment state says that it ended: a
driver killed before that state was written restores the trial from its checkpoint.

``CheckpointPruner`` waits for that. Ray writes its experiment state locally, then uploads it to the
study's storage in the background, and skips an upload while the previous one is still running: a state
written locally is no evidence of what a resumed driver will read. So the pruner reads the state that
storage holds (the newest ``experiment_state-*.json`` there, the file Ray restores from) each time Ray
asks callbacks for their state (``get_state``, at each local write), and deletes the checkpoints of the
trials that file records as ended. ``prune_ended`` deletes the rest when a stage's ``Tuner.fit`` returns
(Ray uploads its final state and waits for the upload before returning).
"""

from __future__ import annotations

import json
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


#: the trial statuses Ray never restores a trial from (the study resumes neither finished nor failed trials)
ENDED = frozenset({"TERMINATED", "ERROR"})
STATE_PREFIX, STATE_SUFFIX = "experiment_state-", ".json"


def stored_ended(fs: pafs.FileSystem, experiment_path: str) -> set[str] | None:
    """The ids of the trials that the newest experiment state in storage records as ended; None when there
    is no readable state yet (none uploaded, or one being written)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(experiment_path, allow_not_found=True))
        names = [
            i.base_name for i in infos if i.base_name.startswith(STATE_PREFIX) and i.base_name.endswith(STATE_SUFFIX)
        ]
        if not names:
            return None
        with fs.open_input_stream(f"{experiment_path}/{max(names)}") as f:
            data = json.loads(f.read())
        ended = set()
        for trial_json, _ in data["trial_data"]:
            trial = json.loads(trial_json)
            if trial.get("status") in ENDED:
                ended.add(trial["trial_id"])
        return ended
    except (OSError, ValueError, KeyError, TypeError):  # not there yet, or a local copy half written
        return None


class CheckpointPruner(Callback):
    """Deletes an ended trial's checkpoints once the experiment state in storage records that it ended."""

    def __init__(self) -> None:
        self._ended: dict[str, object] = {}  # trial id -> trial, ended, checkpoints not deleted yet

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = trial

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = trial

    def get_state(self) -> None:
        if self._ended:
            storage = next(iter(self._ended.values())).storage
            recorded = stored_ended(storage.storage_filesystem, storage.experiment_fs_path) or set()
            for trial_id in recorded & self._ended.keys():
                _delete_trial_checkpoints(self._ended.pop(trial_id))
        return None


def prune_ended(results) -> int:
    """After ``Tuner.fit`` returns (every trial has ended and the final experiment state is written):
    delete the checkpoints of every trial of its ``ResultGrid``; how many folders were deleted."""
    return sum(delete_checkpoints(r.filesystem, r.path) for r in results if r.path and r.filesystem is not None)


__all__ = ["CHECKPOINT_PREFIX", "ENDED", "CheckpointPruner", "delete_checkpoints", "prune_ended", "stored_ended"]
