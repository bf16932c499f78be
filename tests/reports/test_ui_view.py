"""`study ui` opens the study's runs in MLflow's training view with the study's columns: the experiment
carries MLflow's shared-view tag and its experiment kind, and the printed URL names both."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from study.reports.store import open_study
from study.reports.ui import set_view
from study.tracking.view import (
    KEY,
    KIND,
    KIND_TAG,
    SHARED_VIEW_PREFIX,
    apply_view,
    experiment_tags,
    runs_url,
    view_state,
)


def test_view_selects_the_headline_metrics_and_the_cell_tags():
    cols = view_state()["selectedColumns"]
    for c in ("metrics.`test_f1`", "metrics.`val_f1`", "metrics.`test_f1_last5`", "tags.`study.cell`", "tags.`ssl`"):
        assert c in cols, c
    tags = experiment_tags()
    assert tags[KIND_TAG] == KIND == "custom_model_development"
    assert json.loads(tags[SHARED_VIEW_PREFIX + KEY]) == view_state()


def test_url_opens_the_training_view_with_the_shared_view():
    url = runs_url("http://127.0.0.1:5000/", "7")
    assert url == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=study"


def test_ui_gives_an_older_study_its_view(whole_study):
    study = open_study(whole_study)
    client = MlflowClient(tracking_uri=study.tracking_uri)
    assert SHARED_VIEW_PREFIX + KEY not in client.get_experiment(study.experiment_id).tags
    set_view(study)
    assert apply_view(client, study.experiment_id) == 0  # the view is there: nothing set again
    tags = client.get_experiment(study.experiment_id).tags
    assert tags[KIND_TAG] == KIND and json.loads(tags[SHARED_VIEW_PREFIX + KEY]) == view_state()
