"""A study with packed trials, end to end on Ray: one Ray trial trains a cell's four samples; each sample is
its own Optuna trial and MLflow run; the cell's ASHA prunes members, and a pruned member stops (its run
ends at the epoch it was stopped) while the others of its trial train to the end. Heads on embeddings: a
cell's final seeds train as one packed Ray trial, each seed its own run, as its own trial trains it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.experiment import build_trial
from study.tracking import Tracker
from study.tracking.store import default_tracking_uri
from study.tuning.plan import Point
from study.tuning.spec import load_spec
from tests.tuning.test_study_run import ROOT, optuna_states, trial_runs

SPEC = """\
name: packed
datasets:
  - name: synthetic
    options: {num_samples: 200, num_classes: 3, image_size: 16, seed: 0}
noise: {kinds: [symmetric], rates: [0.2]}
ssl: [{method: random}]
model: {backbone: small_cnn}
lnl:
  - algorithm: ce
    epochs: 4
    batch_size: 32
    fixed: {optimizer: sgd, momentum: 0.9}
    search_space:
      lr: {type: float, low: 0.0001, high: 0.5, log: true}
seeds: [0]
tuning: {samples_per_cell: 4, sampler: random, sampler_seed: 3}
early_stopping: {enabled: true, grace_period: 1, reduction_factor: 2}
resources:
  trial: {cpus: 2}
  pack: 4
"""


def test_packed_study_prunes_members_one_by_one(tmp_path):
    spec_path = tmp_path / "packed.yaml"
    spec_path.write_text(SPEC)
    cmd = [sys.executable, "-m", "study.cli", "launch", str(spec_path), "--storage", str(tmp_path), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study_dir = Path(proc.stdout.strip().splitlines()[-1])
    runs = [r for r in trial_runs(study_dir) if r.data.tags["study.stage"] == "lnl"]
    ids = sorted(r.data.tags["study.trial_id"] for r in runs)
    assert len(ids) == 4 and len({i.rsplit(".m", 1)[0] for i in ids}) == 1  # four members of one Ray trial
    assert [i.rsplit(".m", 1)[1] for i in ids] == ["0", "1", "2", "3"]
    states = optuna_states(study_dir, load_spec(spec_path))
    assert sorted(states) == sorted(
        {"FINISHED": "COMPLETE", "KILLED": "PRUNED"}[r.info.status] for r in runs
    )  # each member's Optuna trial ended as its run did
    pruned = [r for r in runs if r.info.status == "KILLED"]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    # a member pruned while others of its trial went on: the trial learnt it from the scheduler's board
    assert pruned and finished, [r.info.status for r in runs]
    mlflow = Tracker(default_tracking_uri(study_dir), study_dir.name).client
    for r in pruned:  # it stopped training at the epoch it was stopped
        steps = [m.step for m in mlflow.get_metric_history(r.info.run_id, "train_loss")]
        assert max(steps) == int(r.data.tags["study.pruned_at_epoch"]) < 3
    for r in finished:
        steps = [m.step for m in mlflow.get_metric_history(r.info.run_id, "train_loss")]
        assert steps == [0, 1, 2, 3] and "test_f1" in r.data.metrics


HEADS = """\
name: heads
datasets:
  - name: synthetic
    options: {num_samples: 200, num_classes: 3, image_size: 16, seed: 0}
noise: {kinds: [symmetric], rates: [0.4]}
ssl: [{method: random}]
model: {backbone: small_cnn}
lnl:
  - algorithm: linear_probe
    epochs: 4
    batch_size: 32
    fixed: {optimizer: sgd, momentum: 0.9, hidden: [16], feature_noise: 0.2}
    search_space:
      lr: {type: float, low: 0.01, high: 0.2, log: true}
seeds: [0, 1, 2]
tuning: {samples_per_cell: 2, sampler: random, sampler_seed: 3}
resources:
  trial: {cpus: 2}
  pack: 2
"""


def test_a_cells_final_seeds_train_as_one_packed_trial_of_heads(tmp_path):
    """Dedieu et al.'s grid: a cell's final seeds (heads on one encoder's embeddings) train in one Ray trial,
    each seed its own MLflow run with its own metrics and artifacts, as its own trial would train it."""
    spec_path = tmp_path / "heads.yaml"
    spec_path.write_text(HEADS)
    cmd = [sys.executable, "-m", "study.cli", "launch", str(spec_path), "--storage", str(tmp_path), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study_dir = Path(proc.stdout.strip().splitlines()[-1])
    finals = [r for r in trial_runs(study_dir) if r.data.tags["study.stage"] == "final"]
    assert sorted(int(r.data.tags["seed"]) for r in finals) == [0, 1, 2]
    trained = [r for r in finals if "study.reused_run" not in r.data.tags]  # seed 0 is the best tuning trial
    ids = sorted(r.data.tags["study.trial_id"] for r in trained)
    assert len(ids) == 2 and len({i.rsplit(".m", 1)[0] for i in ids}) == 1, ids  # one Ray trial, two members
    spec = load_spec(spec_path)
    mlflow = Tracker(default_tracking_uri(study_dir), study_dir.name).client
    for r in trained:
        assert r.info.status == "FINISHED" and "test_f1" in r.data.metrics
        arts = {a.path for a in mlflow.list_artifacts(r.info.run_id)}
        assert {"noisy_labels.csv", "best_checkpoint.pt"} <= arts, arts
        lr = float(r.data.params["hparams.lr"])  # the cell's best sample, the member's own params
        seed = int(r.data.tags["seed"])
        p = Point(spec.datasets[0].key, "symmetric", 0.4, spec.ssl[0].key, spec.lnl[0].key, seed)
        hp = {"lr": lr, "hidden": [16], "feature_noise": 0.2, "optimizer": "sgd", "momentum": 0.9}
        trial = build_trial(spec, p, hp, torch.device("cpu"), tmp_path / "own", tmp_path / "own")
        result = trial.fit()
        assert r.data.metrics["best_epoch"] == result.best_epoch
        assert r.data.metrics["test_f1"] == pytest.approx(
            trial.final_metrics(result, tmp_path / "own")["test_f1"], abs=1e-4
        )
