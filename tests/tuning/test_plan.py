"""Plans: cells, deduplicated pretraining jobs, trials and final runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.tuning.plan import make_plan
from study.tuning.spec import load_spec, parse_spec

SPECS = Path(__file__).resolve().parents[2] / "search_spaces"


def test_khanal_pretraining_jobs_are_datasets_x_ssl_x_seeds():
    spec = load_spec(SPECS / "khanal2024.yaml")
    plan = make_plan(spec)
    n_ssl = sum(1 for s in spec.ssl if s.needs_pretraining)
    assert n_ssl == 8
    assert len(plan.pretrain_jobs) == len(spec.datasets) * n_ssl * len(spec.seeds) == 120
    # not multiplied by noise settings or LNL algorithms
    assert len(plan.cells) == 5 * 5 * 10 * 2
    assert plan.tuning_trials == len(plan.cells) * spec.tuning.samples_per_cell
    assert len(plan.final_runs) == len(plan.cells) * len(spec.seeds)
    assert plan.gpu_hours["total"] > 0


def test_rate_zero_is_one_clean_setting_and_cells_exclude_seed():
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["noise"] = {"kinds": ["symmetric", "pairflip"], "rates": [0.0, 0.2]}
    plan = make_plan(parse_spec(d))
    methods = len(d["ssl"]) * len(d["lnl"])
    assert len(plan.cells) == 3 * methods  # (sym, 0), (sym, .2), (pairflip, .2) per SSL x LNL
    assert all("seed" not in c.id for c in plan.cells)
    assert all(c.tune_point.seed == 0 for c in plan.cells)


def test_seed_as_cell_axis_tunes_per_seed():
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["tuning"]["cell_axes"] = ["dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed"]
    plan = make_plan(parse_spec(d))
    n = len(d["noise"]["rates"]) * len(d["seeds"]) * len(d["ssl"]) * len(d["lnl"])
    assert len(plan.cells) == n and len(plan.final_runs) == n


def test_pretraining_hours_follow_each_methods_measured_cost():
    """``study plan`` charges a pretraining job its SSL method's ``step_cost`` (measured per image against
    a supervised step by ``benchmarks/method_cost.py``), so methods of different cost differ."""
    from study.ssl import METHODS

    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())

    def hours(method: str) -> float:
        d["ssl"] = [{"method": method, "epochs": 10}]
        return make_plan(parse_spec(d)).gpu_hours["pretraining"]

    ratio = hours("barlow_twins") / hours("rotation")
    assert ratio == pytest.approx(METHODS["barlow_twins"].step_cost / METHODS["rotation"].step_cost)
    for name, cls in METHODS.items():
        if cls.trains:
            assert "step_cost" in vars(cls) and cls.step_cost > 0, name
