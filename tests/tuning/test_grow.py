"""Growing a finished study (`study resume STUDY --grow SPEC`): only appended axis values are taken, and
only what they add runs; every earlier trial, tuned configuration and MLflow run stays as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study.tuning.errors import StudyInputError
from study.tuning.grow import check_growth, growth_problems
from study.tuning.plan import make_plan
from study.tuning.spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


def smoke(**edits) -> dict:
    data = yaml.safe_load(SMOKE.read_text())
    for dotted, value in edits.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return data


def test_appended_axis_values_grow_the_plan_by_their_part_only():
    launched = parse_spec(smoke())
    grown = parse_spec(smoke(seeds=[0, 1, 2], noise__rates=[0.0, 0.4, 0.2], description="more"))
    assert growth_problems(launched, grown) == []
    part = check_growth(launched, grown, "grown.yaml")
    old, new = make_plan(launched), make_plan(grown)
    assert {c.id for c in part.cells} == {c.id for c in new.cells} - {c.id for c in old.cells}
    assert all("noise_rate=0.2" in c.id for c in part.cells) and len(part.cells) == 4
    assert part.tuning_trials == 4 * launched.tuning.samples_per_cell
    assert [j.id for j in part.pretrain_jobs] == ["synthetic|simclr|seed=2"]
    # every final run is new: the new rate's at every seed, and seed 2 of the earlier cells
    assert len(part.final_runs) == len(new.final_runs) - len(old.final_runs) == 20
    assert {p.seed for c, p in part.final_runs if p.noise_rate != 0.2} == {2}
    # an earlier cell keeps its tuning point
    tune_points = {c.id: c.tune_point for c in new.cells}
    assert all(tune_points[c.id] == c.tune_point for c in old.cells)


def test_a_grown_spec_that_changes_settings_is_refused_with_the_fields():
    launched = parse_spec(smoke())
    changed = parse_spec(
        smoke(seeds=[1, 0], lnl__0__epochs=5, tuning__samples_per_cell=3, noise__rates=[0.4], name="other")
    )
    problems = "\n".join(growth_problems(launched, changed))
    for field in ("seeds.0: launched 0, now 1", "lnl.0.epochs: launched 3, now 5", "tuning.samples_per_cell", "name"):
        assert field in problems
    assert "noise.rates: launched [0.0, 0.4], now [0.4]" in problems
    with pytest.raises(StudyInputError, match="does not only grow") as e:
        check_growth(launched, changed, "changed.yaml")
    assert "study launch changed.yaml --name NEW_NAME" in str(e.value)
    with pytest.raises(StudyInputError, match="adds nothing"):
        check_growth(launched, parse_spec(smoke(description="same axes")), "same.yaml")


def test_labels_grow_from_every_label():
    """No ``labels`` section is the one fraction 1.0: growing it means keeping 1.0 first."""
    launched = parse_spec(smoke())
    assert growth_problems(launched, parse_spec(smoke(labels={"fractions": [1.0, 0.5]}))) == []
    assert growth_problems(launched, parse_spec(smoke(labels={"fractions": [0.5, 1.0]})))


# -- end to end: a tiny study launched, refused an edit, grown, resumed --------------------------------

TINY = {
    "name": "tiny",
    "datasets": [{"name": "synthetic", "options": {"num_samples": 120, "num_classes": 3, "image_size": 16}}],
    "noise": {"kinds": ["symmetric"], "rates": [0.4]},
    "ssl": [{"method": "random"}],
    "model": {"backbone": "small_cnn"},
    "lnl": [
        {
            "algorithm": "ce",
            "epochs": 1,
            "batch_size": 32,
            "fixed": {"optimizer": "sgd", "momentum": 0.9},
            "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1, "log": True}},
        }
    ],
    "seeds": [0],
    "tuning": {"samples_per_cell": 1, "sampler": "random"},
    "early_stopping": {"enabled": False},
    "resources": {"pretrain": {"cpus": 1}, "trial": {"cpus": 1}},
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )


def trial_runs(study_dir: Path) -> dict[str, object]:
    from study.tracking import Tracker
    from study.tracking.store import default_tracking_uri

    runs = Tracker(default_tracking_uri(study_dir), study_dir.name).runs()
    return {r.info.run_id: r for r in runs}


@pytest.mark.timeout(900)  # four study runs: about 2.5 min on an idle 2-CPU machine
def test_grow_runs_only_the_new_part_and_keeps_every_earlier_run(tmp_path):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(TINY))
    launched = cli("launch", str(spec_file), "--storage", str(tmp_path), "--name", "tiny", "--quiet")
    assert launched.returncode == 0, launched.stderr[-3000:]
    study_dir = tmp_path / "tiny"
    before = trial_runs(study_dir)
    trials_before = {i: r for i, r in before.items() if r.data.tags.get("study.kind") == "trial"}
    assert len(trials_before) == 2  # one tuning trial, one final run
    state_before = (study_dir / "state.json").read_text()

    # an edit that changes a setting is refused: exit 2, the field named, nothing written
    changed = {**TINY, "lnl": [{**TINY["lnl"][0], "epochs": 2}], "seeds": [0, 1]}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    refused = cli("resume", str(study_dir), "--grow", str(tmp_path / "changed.yaml"))
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "lnl.0.epochs: launched 1, now 2" in refused.stderr
    assert (study_dir / "state.json").read_text() == state_before

    # generation 1, from a new file: a seed appended, so no new cell: one final run (seed 1 at rate 0.4)
    one_more_seed = {**TINY, "seeds": [0, 1]}
    (tmp_path / "seeds.yaml").write_text(yaml.safe_dump(one_more_seed))
    out = cli("resume", str(study_dir), "--grow", str(tmp_path / "seeds.yaml"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "generation 1): 0 pretraining job(s), 0 new cell(s) (0 tuning trials), 1 final run(s)" in out.stderr

    # generation 2, in place: the study's own spec.yaml edited to append a rate: one new cell, two final runs
    spec_yaml = study_dir / "spec.yaml"
    frozen = yaml.safe_load(spec_yaml.read_text())
    assert frozen["seeds"] == [0, 1]  # the grown spec is the study's spec
    frozen["noise"]["rates"] = [0.4, 0.0]
    spec_yaml.write_text(yaml.safe_dump(frozen, sort_keys=False))
    out = cli("resume", str(study_dir), "--grow", str(spec_yaml))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "generation 2): 0 pretraining job(s), 1 new cell(s) (1 tuning trials), 2 final run(s)" in out.stderr

    state = json.loads((study_dir / "state.json").read_text())
    assert state["generation"] == 2 and set(state["stages"].values()) == {"done"}
    assert len(state["earlier_specs"]) == 2
    tune = study_dir / "tune"
    # generation 0's one final run is its cell's best tuning trial, recorded without a Ray experiment; in
    # generation 2 the new cell's run at the tuning seed likewise, its seed-1 run trained (final.2)
    assert {p.name for p in tune.iterdir() if p.is_dir()} == {"lnl", "final.1", "lnl.2", "final.2"}
    after = trial_runs(study_dir)
    trials = {i: r for i, r in after.items() if r.data.tags.get("study.kind") == "trial"}
    # the earlier runs are the same runs with the same figures; the new ones are one tuning trial (rate 0)
    # and three final runs (seed 1 at rate 0.4 with the tuned configuration of generation 0; rate 0 x 2)
    for run_id, run in trials_before.items():
        assert after[run_id].data.metrics == run.data.metrics
    new = [r for i, r in trials.items() if i not in trials_before]
    assert sorted(r.data.tags["study.stage"] for r in new) == ["final", "final", "final", "lnl"]
    lnl_new = next(r for r in new if r.data.tags["study.stage"] == "lnl")
    assert lnl_new.data.tags["noise_rate"] == "0.0"
    old_final = next(r for r in trials_before.values() if r.data.tags["study.stage"] == "final")
    seed1 = next(r for r in new if r.data.tags["noise_rate"] == "0.4")
    assert seed1.data.tags["seed"] == "1" and seed1.data.params["hparams.lr"] == old_final.data.params["hparams.lr"]
    cells = [r for r in after.values() if r.data.tags.get("study.kind") == "cell"]
    assert len(cells) == 2 and all(c.info.status == "FINISHED" for c in cells)
    old_cell = next(c for c in cells if "noise_rate=0.4" in c.data.tags["study.cell"])
    assert old_cell.data.metrics["final_runs"] == 2.0

    # a resume reruns nothing; the study's status reads both generations
    again = cli("resume", str(study_dir), "--quiet")
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(trial_runs(study_dir)) == len(after)
    status = cli("status", str(study_dir), "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    assert len(json.loads(status.stdout)["cells"]) == 2
