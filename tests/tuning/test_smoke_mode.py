"""`--smoke`: every shipped spec (and any spec added later) at tiny scale on stand-in data.

The fast tests check the smoke spec of each file in search_spaces/: it validates, its subset covers every
axis value and every (SSL, LNL) pair, its stand-ins keep the classes, channels, patients and shifted tests.
The slow test launches each smoke run through the real path (Ray Tune, Optuna, MLflow) and builds the report.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from study.data import DATASETS
from study.tuning.plan import make_plan, noise_settings
from study.tuning.smoke import smoke_spec
from study.tuning.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "search_spaces").glob("*.yaml"))
#: the issue's budget for one spec's smoke run on 2 cores
SMOKE_BUDGET_S = 300


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_smoke_subset_covers_every_axis_value_and_method_pair(path):
    spec = load_spec(path)
    smoke = smoke_spec(spec).spec
    assert smoke.name == f"{spec.name}-smoke"
    points = make_plan(smoke).final_runs
    seen = {axis: {getattr(p, axis) for _, p in points} for axis in ("dataset", "ssl", "lnl", "seed")}
    assert seen["dataset"] == {d.key for d in spec.datasets}
    assert seen["ssl"] == {s.key for s in spec.ssl}
    assert seen["lnl"] == {a.key for a in spec.lnl}
    assert seen["seed"] == set(spec.seeds)
    assert {(p.noise_kind, p.noise_rate) for _, p in points} == set(noise_settings(spec))
    assert {(p.ssl, p.lnl) for _, p in points} == {(s.key, a.key) for s in spec.ssl for a in spec.lnl}
    # one complete group for the report's curves, drop heatmap, ranking and pretraining panels: the first
    # dataset, kind and LNL entry at every rate of that kind, for every SSL entry
    kind = spec.noise.kinds[0]
    anchor = {
        (p.ssl, p.noise_rate)
        for _, p in points
        if (p.dataset, p.noise_kind, p.lnl) == (spec.datasets[0].key, kind, spec.lnl[0].key)
    }
    rates = [r for k, r in noise_settings(spec) if k == kind]
    assert anchor == {(s.key, r) for s in spec.ssl for r in rates}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_stand_ins_keep_classes_channels_patients_and_shifted_tests(path):
    spec = load_spec(path)
    smoke = smoke_spec(spec).spec
    for real, stand in zip(spec.datasets, smoke.datasets, strict=True):
        cls = DATASETS[real.name]
        assert stand.name == "synthetic" and stand.key == real.key
        if cls.known_classes:
            assert stand.options["class_names"] == list(cls.known_classes)
        assert stand.options["channels"] == (real.options.get("channels") or cls.default_channels)
        if cls.has_patients or any(s.method == "micle" for s in spec.ssl):
            assert stand.options["views_per_patient"] > 1
        assert (stand.shifted_test is None) == (real.shifted_test is None)
    assert all(s.method != "imagenet" and s.init == "random" for s in smoke.ssl)
    # a spec that stores images larger than its input crops in its smoke run too
    stored = [d.options.get("resolution") or 0 for d in spec.datasets]
    if spec.model.resolution and max(stored) > spec.model.resolution:
        assert smoke.model.resolution == 16 and all(d.options["image_size"] > 16 for d in smoke.datasets)


def test_plan_smoke_says_what_it_runs(capsys):
    from study.cli import main

    assert main(["plan", str(ROOT / "search_spaces" / "azizi2021.yaml"), "--smoke"]) == 0
    out = capsys.readouterr().out
    assert "azizi2021-smoke" in out and "subset: 23 points" in out  # 3 rates x 4 SSL entries + 3


def study(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_smoke_run_of_every_shipped_spec(path, tmp_path):
    from mlflow.tracking import MlflowClient

    from study.tracking.store import default_tracking_uri

    t0 = time.perf_counter()
    proc = study("launch", str(path), "--smoke", "--storage", str(tmp_path), "--quiet")
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "SMOKE run" in proc.stderr
    smoke = smoke_spec(load_spec(path)).spec
    study_dir = tmp_path / smoke.name
    assert proc.stdout.strip().splitlines()[-1] == str(study_dir)
    # every trial ran to its end (none errored), each with exactly one closed MLflow run
    client = MlflowClient(tracking_uri=default_tracking_uri(study_dir))
    exp = client.get_experiment_by_name(smoke.name)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    trials = [r for r in runs if r.data.tags.get("study.kind") == "trial"]
    plan = make_plan(smoke)
    assert len(trials) == len(plan.pretrain_jobs) + plan.tuning_trials + len(plan.final_runs)
    errors = {r.data.tags.get("study.error") for r in trials if r.info.status == "FAILED"}
    assert not errors, errors
    # every cell's parent run ended FINISHED with its final figures: no run is left RUNNING
    cells = [r for r in runs if r.data.tags.get("study.kind") == "cell"]
    assert len(cells) == len(plan.cells)
    assert all(r.info.status == "FINISHED" and "final_test_f1_mean" in r.data.metrics for r in cells)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert all(r.info.status in ("FINISHED", "KILLED") for r in trials)
    # every cell of the covering subset has its final run, with its clean-test metrics
    finals = {r.data.tags["study.cell"]: r for r in trials if r.data.tags["study.stage"] == "final"}
    assert set(finals) == {c.id for c in plan.cells}
    assert all("test_f1" in r.data.metrics for r in finals.values())
    if any(d.shifted_test for d in smoke.datasets):
        shifted = [
            r for r in finals.values() if r.data.tags["dataset"] in {d.key for d in smoke.datasets if d.shifted_test}
        ]
        assert shifted and all("shifted_test_f1" in r.data.metrics for r in shifted)
    # the report builds
    report = study("report", str(study_dir))
    assert report.returncode == 0, report.stderr[-3000:]
    page = (study_dir / "report" / "dashboard.html").read_text()
    # every panel filled: nothing missing, no panel empty
    assert (study_dir / "report" / "missing.txt").read_text() == ""
    assert "Nothing to show" not in page and "Complete: all" in page
    print(f"smoke_{path.stem}_s: {seconds:.0f}")
    assert seconds < SMOKE_BUDGET_S, f"the smoke run of {path.name} took {seconds:.0f} s"


def test_smoke_moves_epoch_settings_inside_its_epochs():
    data = yaml.safe_load((ROOT / "search_spaces" / "smoke.yaml").read_text())
    data["noise"]["kinds"] = ["symmetric", "pairflip"]
    data["lnl"][0]["fixed"].update(schedule="step", milestones=[2], batch_size=64)
    data["lnl"][1]["fixed"] = {"optimizer": "adam", "schedule": "coteaching", "decay_start": 2}
    data["lnl"][1]["by_noise_kind"] = {"pairflip": {"fixed": {"batch_size": 512}}}
    smoke = smoke_spec(parse_spec(data)).spec  # the smoke spec validates: 2 epochs hold the schedules
    ce, cot = smoke.lnl
    assert ce.fixed["milestones"] == [1] and ce.fixed["batch_size"] == 32
    assert cot.fixed["decay_start"] == 1 and cot.by_noise_kind["pairflip"].fixed["batch_size"] == 32
