"""``lnl[].by_noise_kind``: fixed hyperparameters for one noise kind's noisy cells, checked at the door like
``fixed``, and the effective values in the trial's hyperparameters (its MLflow params), the final runs, the
trial itself and ``study plan``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml
from pydantic import Field

from study.experiment import build_trial
from study.hparams import Hparams
from study.lnl import ALGORITHMS, Algorithm
from study.tuning.driver import cell_fixed, point_hparams
from study.tuning.plan import Point, TrialConfig, format_plan, make_plan
from study.tuning.searcher import CellSearcher
from study.tuning.spec import SpecError, parse_spec

SPECS = Path(__file__).resolve().parents[2] / "search_spaces"
CD = {"forget_rate": 0.1, "momentum": 0.5}


def spec_data(by_noise_kind: dict[str, Any] | None = None) -> dict[str, Any]:
    """smoke.yaml with symmetric and class_dependent noise; Co-teaching (lnl[1]) gets ``by_noise_kind``."""
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["noise"] = {"kinds": ["symmetric", "class_dependent"], "rates": [0.0, 0.4]}
    d["datasets"][0]["noise_groups"] = [[0, 1]]
    d["lnl"][1]["fixed"]["tk"] = 2
    d["lnl"][1]["by_noise_kind"] = {"class_dependent": {"fixed": dict(CD)}} if by_noise_kind is None else by_noise_kind
    return d


def problems(d: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as e:
        parse_spec(d)
    return e.value.problems


BASE = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0, "tk": 2}


# -- the door -----------------------------------------------------------------------------------------------


def test_values_are_checked_like_fixed_with_their_path():
    spec = parse_spec(spec_data({"class_dependent": {"fixed": {"forget_rate": 0, "c": 2}}}))
    got = spec.lnl[1].by_noise_kind["class_dependent"].fixed
    assert got == {"forget_rate": 0.0, "c": 2.0} and isinstance(got["c"], float)  # as declared, like fixed
    for value, words in ((1.5, "less than 1"), ("a lot", "number"), (True, "boolean")):
        [(path, msg)] = problems(spec_data({"class_dependent": {"fixed": {"forget_rate": value}}}))
        assert path == "lnl[1].by_noise_kind.class_dependent.fixed.forget_rate"
        assert words in msg


def test_unknown_names_list_what_the_algorithm_declares():
    [(path, msg)] = problems(spec_data({"class_dependent": {"fixed": {"forget": 0.1}}}))
    assert path == "lnl[1].by_noise_kind.class_dependent.fixed.forget"
    assert "'forget' is not a hyperparameter of LNL algorithm co_teaching" in msg and "forget_rate" in msg
    [(path, msg)] = problems(spec_data({"class_dependent": {"forget_rate": 0.1}}))
    assert (path, msg) == ("lnl[1].by_noise_kind.class_dependent.forget_rate", "unknown field (allowed: fixed)")


def test_kinds_must_be_the_spec_noise_kinds():
    [(path, msg)] = problems(spec_data({"pairflip": {"fixed": {"forget_rate": 0.1}}}))
    assert path == "lnl[1].by_noise_kind.pairflip"
    assert "not a noise kind of this spec (allowed: symmetric, class_dependent)" in msg and "noise.kinds" in msg
    [(path, msg)] = problems(spec_data({"flipped": {"fixed": {}}}))
    assert path == "lnl[1].by_noise_kind.flipped" and "unknown noise kind 'flipped'" in msg


def test_a_searched_name_cannot_also_be_fixed_for_a_kind():
    [(path, msg)] = problems(spec_data({"class_dependent": {"fixed": {"lr": 0.05}}}))
    assert path == "lnl[1].by_noise_kind.class_dependent.fixed" and "['lr'] are also searched" in msg


class Toy(Algorithm):
    """A toy LNL algorithm with one declared option (a test of the mechanism, no paper)."""

    name: ClassVar[str] = "toy_kind"

    class Hparams(Hparams):
        penalty: float = Field(0.0, ge=0, le=1)

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits, y)


@pytest.fixture
def toy():
    ALGORITHMS.register("toy_kind", Toy)
    try:
        yield
    finally:
        dict.pop(ALGORITHMS, "toy_kind")


def test_a_toy_algorithm_declaration_is_all_the_mechanism_needs(toy):
    d = spec_data()
    d["lnl"][1] = {
        "algorithm": "toy_kind",
        "fixed": {},
        "by_noise_kind": {"class_dependent": {"fixed": {"penalty": 1}}},
    }
    assert parse_spec(d).lnl[1].fixed_for("class_dependent", 0.4) == {"penalty": 1.0}
    d["lnl"][1]["by_noise_kind"]["class_dependent"]["fixed"]["penalty"] = 2
    [(path, msg)] = problems(d)
    assert path == "lnl[1].by_noise_kind.class_dependent.fixed.penalty" and "less than or equal to 1" in msg


# -- the effective values -------------------------------------------------------------------------------------


def test_fixed_for_each_noise_setting():
    entry = parse_spec(spec_data()).lnl[1]
    assert entry.fixed_for("class_dependent", 0.4) == {**BASE, "momentum": 0.5, "forget_rate": 0.1}
    assert entry.fixed_for("symmetric", 0.4) == BASE
    assert entry.fixed_for("class_dependent", 0.0) == BASE  # rate 0 is clean: fixed alone
    assert parse_spec(spec_data()).lnl[0].fixed_for("class_dependent", 0.4) == {"optimizer": "sgd", "momentum": 0.9}


def test_a_configuration_moves_between_kinds_with_its_sampled_values():
    entry = parse_spec(spec_data()).lnl[1]
    tuned = {**entry.fixed_for("class_dependent", 0.4), "lr": 0.03}
    assert entry.point_hparams("symmetric", 0.4, tuned) == {**BASE, "lr": 0.03}
    assert entry.point_hparams("class_dependent", 0.4, tuned) == tuned
    assert entry.point_hparams("class_dependent", 0.4, {"lr": 0.03, **BASE}) == tuned  # idempotent


def cells_by_kind(spec):
    plan = make_plan(spec)
    return plan, {(c.tune_point.lnl, c.tune_point.noise_kind, c.tune_point.noise_rate): c for c in plan.cells}


def test_searcher_suggestions_carry_each_cell_effective_values(tmp_path):
    """What the searcher suggests is the TrialConfig whose hparams MLflow logs as the trial's params."""
    spec = parse_spec(spec_data())
    plan, cells = cells_by_kind(spec)
    chosen = [cells[("co_teaching", k, r)] for k, r in (("class_dependent", 0.4), ("symmetric", 0.4), ("symmetric", 0))]
    spaces = {a.key: {k: v.model_dump(exclude_none=True) for k, v in a.search_space.items()} for a in spec.lnl}
    s = CellSearcher(
        chosen,
        spaces,
        {a.key: dict(a.fixed) for a in spec.lnl},
        1,
        f"sqlite:///{tmp_path}/o.db",
        "val_f1",
        "max",
        cell_fixed={c.id: cell_fixed(spec, c.tune_point) for c in plan.cells},
    )
    got = [TrialConfig.from_ray(s.suggest(f"t{i}")) for i in range(3)]
    lr = [g.hparams.pop("lr") for g in got]
    assert all(0.01 <= x <= 0.2 for x in lr)
    assert [g.hparams for g in got] == [{**BASE, **CD}, BASE, BASE]
    assert got[0].model_dump(mode="json", exclude_defaults=True)["hparams"]["forget_rate"] == 0.1  # MLflow params


def test_final_runs_of_a_cell_across_kinds_take_each_point_fixed_values():
    """With noise_kind not a cell axis a cell's final runs span kinds: each run gets its own kind's values."""
    d = spec_data()
    d["tuning"]["cell_axes"] = ["dataset", "noise_rate", "ssl", "lnl"]
    spec = parse_spec(d)
    plan = make_plan(spec)
    cell = next(c for c in plan.cells if c.tune_point.noise_rate == 0.4 and c.tune_point.lnl == "co_teaching")
    assert cell.tune_point.noise_kind == "symmetric"  # tuned at the cell's first point
    finals = [p for c, p in plan.final_runs if c.id == cell.id]
    assert {p.noise_kind for p in finals} == {"symmetric", "class_dependent"}
    tuned = {**BASE, "lr": 0.02}  # its best configuration, tuned with symmetric's fixed values
    for p in finals:
        extra = CD if p.noise_kind == "class_dependent" else {}
        assert point_hparams(spec, p, tuned) == {**BASE, **extra, "lr": 0.02}


def test_the_trial_trains_with_its_kind_values_from_the_plain_fixed(tmp_path):
    """``python -m study.single`` and the benchmarks pass the entry's plain ``fixed``: the recipe adds the kind's."""
    spec = parse_spec(spec_data())
    entry = spec.lnl[1]
    point = Point("synthetic", "class_dependent", 0.4, "random", "co_teaching", 0)
    trial = build_trial(spec, point, {**entry.fixed, "lr": 0.05}, torch.device("cpu"), tmp_path, tmp_path)
    assert (trial.algo.hp.forget_rate, trial.algo.optim_cfg.momentum, trial.algo.optim_cfg.lr) == (0.1, 0.5, 0.05)
    clean = Point("synthetic", "symmetric", 0.0, "random", "co_teaching", 0)
    trial = build_trial(spec, clean, dict(entry.fixed), torch.device("cpu"), tmp_path, tmp_path)
    assert (trial.algo.hp.forget_rate, trial.algo.optim_cfg.momentum) == ("auto", 0.9)


def test_plan_shows_the_values_of_each_noise_setting():
    spec = parse_spec(spec_data())
    lines = format_plan(spec, make_plan(spec), "s.yaml").splitlines()
    i = lines.index("  LNL 'co_teaching' fixed hyperparameters by noise (lnl[].by_noise_kind):")
    base = "optimizer='sgd', momentum=0.9, weight_decay=0.0, tk=2"
    assert lines[i + 1 : i + 4] == [
        f"    clean (rate 0) cells: {base}",
        f"    symmetric cells: {base}",
        "    class_dependent cells: optimizer='sgd', momentum=0.5, weight_decay=0.0, tk=2, forget_rate=0.1",
    ]
    assert not any("LNL 'ce' fixed" in line for line in lines)  # no by_noise_kind, nothing to show


def test_two_networks_start_from_independent_draws_at_random_init_and_from_one_encoder_after_ssl(tmp_path):
    """Co-teaching's two networks: at random init each has its own backbone draw (the papers' independently
    initialised networks), deterministic per seed; from a pretrained encoder both start from it."""
    spec = parse_spec(spec_data())
    entry = dict(spec.lnl[1].fixed)

    def backbones(ssl: str, seed: int = 0) -> list[dict]:
        point = Point("synthetic", "symmetric", 0.4, ssl, "co_teaching", seed)
        trial = build_trial(spec, point, entry, torch.device("cpu"), tmp_path, tmp_path)
        return [{k: v.clone() for k, v in net.encoder.state_dict().items()} for net in trial.algo.nets]

    def same(a: dict, b: dict) -> bool:
        return all(torch.equal(a[k], b[k]) for k in a)

    first, second = backbones("random")
    assert not same(first, second)
    again = backbones("random")
    assert same(first, again[0]) and same(second, again[1])  # the same seed: the same two draws
    assert not same(second, backbones("random", seed=1)[1])
    ssl_first, ssl_second = backbones("simclr")
    assert same(ssl_first, ssl_second)
