"""The keys of what a trial reports to Ray Tune (``tune.report``), named once.

The trainables (``study.tuning.trainables``) write these; the searcher, the per-cell scheduler, the
tracking callback, the storage sync and the progress line read them. Metric keys (``val_f1``,
``train_loss``, ``test_f1``, ...) are the MLflow names of ``study.tracking.store``; these are the rest.
"""

from __future__ import annotations

from typing import TypedDict

#: the epoch (0-based) the report is about
EPOCH = "epoch"
#: the best value of the tuning metric so far (what Optuna is told when the trial finishes)
OBJECTIVE = "objective"
#: the Ray node the trial runs on
NODE_ID = "node_id"
#: the epoch a restored trial continued from (0 when it started fresh)
START_EPOCH = "start_epoch"
#: why the trial failed without raising (a non-finite loss); present only then
ERROR = "error"
#: set on the last report of a trial that ran to its end
FINISHED = "trial_finished"
#: the folder of the trial's MLflow artifacts, on the driver
ARTIFACT_DIR = "artifact_dir"
#: per-class clean-test F1 (a JSON list)
PER_CLASS_F1 = "per_class_f1"
#: the best noisy-validation macro-F1 of the trial
BEST_VAL_F1 = "best_val_f1"
#: the number of labelled training images of a trial below the full label fraction (``Spec.labels``);
#: absent at fraction 1
LABELLED_IMAGES = "labelled_images"
#: a packed trial's members' reports (a JSON object: member index -> a report with the keys above, for the
#: members that trained this epoch or ended since the last report); a packed trial's report has no metrics
#: of its own beside ``epoch``, ``node_id`` and ``start_epoch``
MEMBERS = "members"
#: in a member's report: the trial stopped it because its cell's ASHA said so
PRUNED = "pruned"
#: pretraining: the encoder checkpoint written to (or found in) the cache
ENCODER_PATH = "encoder_path"


class TrialResult(TypedDict, total=False):
    """One report of a trial. Metric values sit beside these keys under their MLflow names."""

    epoch: int
    objective: float
    node_id: str
    start_epoch: int
    error: str
    trial_finished: bool
    artifact_dir: str
    per_class_f1: str
    best_val_f1: float
    encoder_path: str
    labelled_images: int
    stopped_epoch: int  # the last epoch trained, when early stopping's patience ran out
    members: str
    pruned: bool
