"""The MLflow UI's view of a study: the training (not GenAI) pages, with the study's columns showing.

MLflow 3's UI opens an experiment in its GenAI mode unless the URL says ``workflowType=machine_learning``
(or the user switched once in that browser), and shows a run table's metric and tag columns only when
they are selected. Its "share view" feature stores a view (search facets and UI state, as JSON) in an
experiment tag ``mlflow.sharedViewState.<key>`` and opens it from ``?viewStateShareKey=<key>``. Each study's
experiment gets such a view (``KEY``) and the experiment kind tag of custom model development; ``study
ui`` prints the URL that opens it. The columns: the headline metrics (``test_f1``, ``val_f1``, ...) and the
cell's axes, as tags.
"""

from __future__ import annotations

import json
from typing import Any

from study.tracking.store import AXIS_TAGS, TAG_CELL, TAG_STATE

#: the share key of the study's view
KEY = "study"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: MLflow 3's experiment kind: "custom_model_development" is the training (not GenAI) kind
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
#: the run table's metric columns, in order
METRIC_COLUMNS = ("test_f1", "test_f1_last5", "val_f1", "test_auroc", "tuned_best_val_f1", "final_test_f1_mean")


def column(kind: str, name: str) -> str:
    """A run-table column's key as MLflow's UI writes it: ``metrics.`test_f1```."""
    return f"{kind}.`{name}`"


def view_state() -> dict[str, Any]:
    """The shared view: newest runs first, the study's metric and tag columns selected."""
    tags = (TAG_CELL, *AXIS_TAGS, TAG_STATE)
    return {
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "selectedColumns": [column("metrics", m) for m in METRIC_COLUMNS] + [column("tags", t) for t in tags],
        "runsExpanded": {},
        "viewMaximized": False,
        "runListHidden": False,
    }


def experiment_tags() -> dict[str, str]:
    """The tags that give a study's experiment its UI view."""
    return {KIND_TAG: KIND, SHARED_VIEW_PREFIX + KEY: json.dumps(view_state())}


def apply_view(client: Any, experiment_id: str) -> int:
    """Give an experiment the study's view (``experiment_tags``): set the tags it lacks or holds with other
    values, through an ``MlflowClient``. Used at launch and by ``study ui`` for studies launched before
    views existed. Returns how many tags were set."""
    have = client.get_experiment(experiment_id).tags
    changed = {k: v for k, v in experiment_tags().items() if have.get(k) != v}
    for k, v in changed.items():
        client.set_experiment_tag(experiment_id, k, v)
    return len(changed)


def runs_url(base: str, experiment_id: str) -> str:
    """The URL of the study's runs in the training view with its columns."""
    return (
        f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={KEY}"
    )


__all__ = [
    "KEY",
    "KIND",
    "KIND_TAG",
    "METRIC_COLUMNS",
    "apply_view",
    "column",
    "experiment_tags",
    "runs_url",
    "view_state",
]
