"""Trial checkpoints are for resuming a trial: a running trial keeps the one a resumed driver would
restore it from, and a trial that has ended loses them all.

A trial's checkpoint (written at every epoch) holds its networks with their optimisers and the best and
last epochs' weights: 50 tuning trials of a ResNet-18 Co-teaching cell would keep about 18 GB of them
after the study no longer needs any. What a finished trial leaves for users is in MLflow
(``best_checkpoint.pt``, the weights of its best epoch).

Which checkpoint a resumed driver restores a trial from is the one recorded in Ray's experiment state
*in the study's storage* (the newest ``experiment_state-*.json`` there). Ray writes that state locally,
then uploads it in the background, and skips an upload while the previous one is still running, so the
stored state lags the driver: it can name a checkpoint that the driver has long replaced. Ray's own
rotation (``CheckpointConfig(num_to_keep=1)``) deletes the replaced checkpoint at once, and a driver
killed before the next upload leaves a state naming a deleted checkpoint: the resumed trial fails with
"Could not recover from checkpoint as it does not exist on storage anymore". So Ray keeps every
checkpoint (``num_to_keep=None``) and ``CheckpointPruner`` deletes them instead, each time Ray asks
callbacks for their state (``get_state``, at each local write), against the state that storage holds:

- a running trial's replaced checkpoints, once the stored state names a newer one of that trial;
- an ended trial's (finished, stopped early by ASHA, or failed: the study restores neither) checkpoint
  folders, once the stored state records that it ended.

``prune_ended`` deletes the rest when a stage's ``Tuner.fit`` returns (Ray uploads its final state and
waits for the upload before returning).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pyarrow.fs as pafs
from ray.tune import Callback
from ray.tune.trainable.metadata import _TrainingRunMetadata

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


@dataclass(frozen=True)
class StoredTrials:
    """What the newest experiment state in storage says of its trials: the ids of those that ended, and
    each trial's latest checkpoint (the path a resumed driver restores it from)."""

    ended: frozenset[str]
    latest: dict[str, str]


def _latest_checkpoint(run_metadata_json: str) -> str | None:
    manager = _TrainingRunMetadata.from_json_state(run_metadata_json).checkpoint_manager
    result = None if manager is None else manager.latest_checkpoint_result
    return None if result is None or result.checkpoint is None else result.checkpoint.path


def stored_trials(fs: pafs.FileSystem, experiment_path: str) -> StoredTrials | None:
    """The newest experiment state in storage, read; None when there is no readable state yet (none
    uploaded, or one being written)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(experiment_path, allow_not_found=True))
        names = [
            i.base_name for i in infos if i.base_name.startswith(STATE_PREFIX) and i.base_name.endswith(STATE_SUFFIX)
        ]
        if not names:
            return None
        with fs.open_input_stream(f"{experiment_path}/{max(names)}") as f:
            data = json.loads(f.read())
        ended, latest = set(), {}
        for trial_json, run_json in data["trial_data"]:
            trial = json.loads(trial_json)
            if trial.get("status") in ENDED:
                ended.add(trial["trial_id"])
            path = _latest_checkpoint(run_json)
            if path is not None:
                latest[trial["trial_id"]] = path
        return StoredTrials(frozenset(ended), latest)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # not there yet, or half written
        return None


def stored_ended(fs: pafs.FileSystem, experiment_path: str) -> set[str] | None:
    """The ids of the trials that the newest experiment state in storage records as ended; None when there
    is no readable state yet."""
    stored = stored_trials(fs, experiment_path)
    return None if stored is None else set(stored.ended)


class CheckpointPruner(Callback):
    """Deletes a running trial's replaced checkpoints once the experiment state in storage names a newer
    one, and an ended trial's checkpoints once that state records that it ended."""

    def __init__(self) -> None:
        self._ended: dict[str, object] = {}  # trial id -> trial, ended, checkpoints not deleted yet
        self._replaced: dict[str, list] = {}  # trial id -> its replaced checkpoints, oldest first
        self._latest: dict[str, str] = {}  # trial id -> the path of its latest checkpoint
        self._storage = None

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        # called before Ray registers ``checkpoint``: the trial's record still holds the one it replaces
        self._storage = trial.storage
        manager = trial.run_metadata.checkpoint_manager
        previous = manager.latest_checkpoint_result
        if previous is not None and previous.checkpoint is not None:
            self._replaced.setdefault(trial.trial_id, []).append(previous.checkpoint)
        self._latest[trial.trial_id] = checkpoint.path
        # Ray keeps every registered checkpoint in the trial's record (num_to_keep=None), which is written
        # into each experiment state; the record keeps only the latest (Ray registers it next)
        manager._checkpoint_results = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = trial

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = trial

    def get_state(self) -> None:
        if not (self._ended or self._replaced):
            return None
        storage = self._storage or next(iter(self._ended.values())).storage
        stored = stored_trials(storage.storage_filesystem, storage.experiment_fs_path)
        if stored is None:
            return None
        for trial_id in stored.ended & self._ended.keys():
            self._replaced.pop(trial_id, None)
            self._latest.pop(trial_id, None)
            _delete_trial_checkpoints(self._ended.pop(trial_id))
        for trial_id, replaced in list(self._replaced.items()):
            stored_path = stored.latest.get(trial_id)
            if stored_path is not None and stored_path == self._latest.get(trial_id):
                keep_from = len(replaced)  # the stored state names the trial's latest checkpoint
            else:
                paths = [c.path for c in replaced]
                keep_from = paths.index(stored_path) if stored_path in paths else 0
            kept = _delete(replaced, keep_from)
            if kept:
                self._replaced[trial_id] = kept
            else:
                del self._replaced[trial_id]
        return None


def _delete(replaced: list, keep_from: int) -> list:
    """Delete ``replaced[:keep_from]`` (checkpoints older than the one a resumed driver restores the trial
    from); the ones kept."""
    for c in replaced[:keep_from]:
        try:
            c.filesystem.delete_dir(c.path)
        except OSError as e:  # a full disk or a flaky bucket must not stop the study
            print(f"study: could not delete the checkpoint {c.path}: {e}", file=sys.stderr)
    return replaced[keep_from:]


def prune_ended(results) -> int:
    """After ``Tuner.fit`` returns (every trial has ended and the final experiment state is written):
    delete the checkpoints of every trial of its ``ResultGrid``; how many folders were deleted."""
    return sum(delete_checkpoints(r.filesystem, r.path) for r in results if r.path and r.filesystem is not None)


__all__ = [
    "CHECKPOINT_PREFIX",
    "ENDED",
    "CheckpointPruner",
    "StoredTrials",
    "delete_checkpoints",
    "prune_ended",
    "stored_ended",
    "stored_trials",
]
