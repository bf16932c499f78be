"""End-to-end: the smoke study completes, MLflow holds one run per trial, and a SIGKILLed driver resumes
with no duplicate runs and no finished trial rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.tuning.plan import make_plan
from study.tuning.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


def study(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=900, **kw
    )


def trial_runs(study_dir: Path, create: bool = True) -> list:
    """The study's trial runs; ``create=False`` for a study whose driver is running (no experiment created
    here: that raced the driver's own creation of it)."""
    from mlflow.tracking import MlflowClient

    from study.tracking import Tracker
    from study.tracking.store import default_tracking_uri

    if not create:
        client = MlflowClient(tracking_uri=default_tracking_uri(study_dir))
        exp = client.get_experiment_by_name(study_dir.name)
        if exp is None:
            return []
        runs = client.search_runs([exp.experiment_id], max_results=1000)
        return [r for r in runs if r.data.tags.get("study.kind") == "trial"]
    t = Tracker(default_tracking_uri(study_dir), study_dir.name)
    return [r for r in t.runs() if r.data.tags.get("study.kind") == "trial"]


def optuna_states(study_dir: Path, spec) -> list[str]:
    from study.tuning.searcher import open_study

    return [
        t.state.name
        for c in make_plan(spec).cells
        for t in open_study(f"sqlite:///{study_dir / 'optuna.db'}", c.id, spec.tuning.mode).get_trials()
    ]


def test_smoke_study_completes_with_one_run_per_trial(smoke_study):
    spec = load_spec(SMOKE)
    plan = make_plan(spec)
    runs = trial_runs(smoke_study)
    expected = len(plan.pretrain_jobs) + plan.tuning_trials + len(plan.final_runs)
    assert len(runs) == expected
    assert len({r.data.tags["study.trial_id"] for r in runs}) == expected
    assert all(r.info.status in ("FINISHED", "KILLED") for r in runs)
    finals = [r for r in runs if r.data.tags["study.stage"] == "final"]
    assert len(finals) == len(plan.final_runs)
    for r in finals:
        assert {"test_f1", "test_acc", "test_balanced_acc", "test_auroc", "test_f1_last5"} <= set(r.data.metrics)
        assert r.data.tags["mlflow.parentRunId"]
        for tag in ("study.cell", "dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed"):
            assert tag in r.data.tags
    states = optuna_states(smoke_study, spec)
    assert len(states) == plan.tuning_trials and "RUNNING" not in states
    # at the tuning seed, the final run is the cell's best tuning trial, recorded, not trained again
    reused = [r for r in finals if "study.reused_run" in r.data.tags]
    assert len(reused) == plan.final_reused == len(plan.cells)
    by_id = {r.info.run_id: r for r in runs}
    for r in reused:
        src = by_id[r.data.tags["study.reused_run"]]
        assert src.data.tags["study.stage"] == "lnl" and src.data.tags["study.cell"] == r.data.tags["study.cell"]
        assert src.data.tags["seed"] == r.data.tags["seed"] and src.data.metrics["test_f1"] == r.data.metrics["test_f1"]
    trained = [p for p in (smoke_study / "tune").glob("final/lnl_trainable_*") if p.is_dir()]
    assert len(trained) == plan.final_trained


def test_ended_trials_leave_no_checkpoints_and_no_staged_artifacts(smoke_study):
    """Every trial has ended, so no Ray checkpoint folder is left; MLflow holds the finished trials'
    artifacts (the best epoch's weights only) and the staging folder is empty."""
    import torch
    from mlflow.artifacts import download_artifacts

    from study.tracking.store import default_tracking_uri

    trial_dirs = [p for p in (smoke_study / "tune").glob("*/lnl_trainable_*") if p.is_dir()]
    assert trial_dirs and not [p for d in trial_dirs for p in d.glob("checkpoint_*")]
    assert not [p for p in (smoke_study / "trial_artifacts").rglob("*") if p.is_file()]
    final = next(r for r in trial_runs(smoke_study) if r.data.tags["study.stage"] == "final")
    path = download_artifacts(
        run_id=final.info.run_id, artifact_path="best_checkpoint.pt", tracking_uri=default_tracking_uri(smoke_study)
    )
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt["state"]) == {"nets"} and ckpt["best_epoch"] >= 0


def test_launched_study_has_its_ui_view(smoke_study):
    from mlflow.tracking import MlflowClient

    from study.tracking.store import default_tracking_uri
    from study.tracking.view import experiment_tags

    client = MlflowClient(tracking_uri=default_tracking_uri(smoke_study))
    tags = client.get_experiment_by_name(smoke_study.name).tags
    assert experiment_tags().items() <= tags.items()


def test_status_and_bad_inputs(smoke_study, tmp_path):
    proc = study("status", str(smoke_study), "--json")
    assert proc.returncode == 0
    assert '"final": "done"' in proc.stdout
    assert study("status", str(tmp_path)).returncode == 2
    # relaunching the same --name and spec (a retried cluster job) continues the study: nothing is rerun
    before = sorted((r.data.tags["study.trial_id"], r.info.end_time) for r in trial_runs(smoke_study))
    again = study("launch", str(SMOKE), "--storage", str(smoke_study.parent), "--name", "smoke", "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted((r.data.tags["study.trial_id"], r.info.end_time) for r in trial_runs(smoke_study)) == before
    other = tmp_path / "other.yaml"
    other.write_text(SMOKE.read_text().replace("rates: [0.0, 0.4]", "rates: [0.3]"))
    proc = study("launch", str(other), "--storage", str(smoke_study.parent), "--name", "smoke")
    assert proc.returncode == 2 and "different spec" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("num_samples: 240", "num_samples: 1"))
    proc = study("launch", str(bad), "--storage", str(tmp_path / "s"), "--name", "x")
    assert proc.returncode == 2 and "datasets[0]" in proc.stderr
    assert not (tmp_path / "s" / "x").exists()


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    spec = load_spec(SMOKE)
    plan = make_plan(spec)
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "launch", str(SMOKE), "--storage", str(tmp_path), "--name", "k", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    study_dir = tmp_path / "k"
    deadline = time.time() + 600
    finished_before: dict[str, int] = {}
    while time.time() < deadline:  # kill mid-stage-2: some trial finished, some with a checkpoint running
        time.sleep(2)
        assert proc.poll() is None, f"the driver exited with {proc.returncode} before the middle of stage lnl"
        if not (study_dir / "mlflow.db").exists():
            continue
        try:
            runs = trial_runs(study_dir, create=False)
        except Exception:
            continue
        done = {r.data.tags["study.trial_id"]: r.info.end_time for r in runs if r.info.status != "RUNNING"}
        lnl = [r for r in runs if r.data.tags.get("study.stage") == "lnl"]
        if any(r.info.status != "RUNNING" for r in lnl) and any(r.info.status == "RUNNING" for r in lnl):
            finished_before = done
            break
    assert finished_before, "the study never reached the middle of stage lnl"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = study("resume", str(study_dir), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = trial_runs(study_dir)
    ids = [r.data.tags["study.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)), "a trial has two MLflow runs"
    assert len(runs) == len(plan.pretrain_jobs) + plan.tuning_trials + len(plan.final_runs)
    end = {r.data.tags["study.trial_id"]: r.info.end_time for r in runs}
    for tid, t in finished_before.items():
        assert end[tid] == t, f"finished trial {tid} was rerun"
    assert "RUNNING" not in optuna_states(study_dir, spec)
