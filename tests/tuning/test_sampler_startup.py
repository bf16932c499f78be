"""``tuning.n_startup_trials``: TPE's random start-up count reaches each cell's Optuna sampler, and ``study plan``
and ``study validate`` say when TPE never leaves its start-up (random search)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from study.cli import main
from study.tuning.plan import Cell, Point, TrialConfig, format_plan, make_plan
from study.tuning.searcher import CellSearcher, make_sampler
from study.tuning.spec import SpecError, parse_spec, spec_to_yaml

SPECS = Path(__file__).resolve().parents[2] / "search_spaces"
SPACE = {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
CELL = Cell((("noise_rate", 0.2),), Point("synthetic", "symmetric", 0.2, "random", "ce", 0))


def smoke(**tuning: Any) -> dict[str, Any]:
    """smoke.yaml with the sampler at its default (TPE) and ``tuning`` applied."""
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["tuning"].pop("sampler", None)
    d["tuning"].update(tuning)
    return d


def searcher(tmp_path: Path, sampler: str, n_startup_trials: int, samples: int = 6) -> CellSearcher:
    return CellSearcher(
        [CELL],
        {"ce": SPACE},
        {"ce": {}},
        samples,
        f"sqlite:///{tmp_path}/{sampler}.db",
        "val_f1",
        "max",
        sampler,
        n_startup_trials=n_startup_trials,
    )


def run_cell(s: CellSearcher, n: int) -> list[float]:
    """``n`` trials of the cell one after another, each finished (objective: closeness to lr 0.01)."""
    lrs = []
    for i in range(n):
        cfg = TrialConfig.from_ray(s.suggest(f"t{i}"))
        lr = cfg.hparams["lr"]
        s.on_trial_complete(f"t{i}", {"trial_finished": True, "objective": -abs(lr - 0.01)})
        lrs.append(lr)
    return lrs


# -- the sampler -------------------------------------------------------------------------------------------


def test_tpe_is_built_with_the_start_up_count():
    tpe = make_sampler("tpe", 0, 3)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert tpe._n_startup_trials == 3
    assert make_sampler("tpe", 0)._n_startup_trials == 10  # Optuna's default
    assert isinstance(make_sampler("random", 0, 3), optuna.samplers.RandomSampler)


def test_each_cell_study_gets_the_spec_count(tmp_path):
    s = searcher(tmp_path, "tpe", 3)
    s.suggest("t0")
    sampler = s.study(CELL.id).sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._n_startup_trials == 3


def test_tpe_within_its_start_up_draws_what_random_search_draws(tmp_path):
    """The claim `study plan` makes: with samples_per_cell <= n_startup_trials every TPE sample is the random
    sampler's (same seeds); past the start-up, TPE's own draws begin."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tpe = run_cell(searcher(tmp_path / "a", "tpe", 3), 6)
    rnd = run_cell(searcher(tmp_path / "b", "random", 3), 6)
    assert tpe[:3] == rnd[:3]
    assert tpe[3:] != rnd[3:]


def test_a_searcher_pickled_before_the_count_existed_still_asks(tmp_path):
    """Ray restores the searcher a study's driver pickled; one from before has no n_startup_trials or
    cell_fixed, and gets Optuna's default and its entries' fixed values."""
    s = searcher(tmp_path, "tpe", 3)
    del s.__dict__["n_startup_trials"], s.__dict__["cell_fixed"]
    old = pickle.loads(pickle.dumps(s))
    cfg = TrialConfig.from_ray(old.suggest("t0"))
    assert set(cfg.hparams) == {"lr"}
    assert old.study(CELL.id).sampler._n_startup_trials == 10


# -- the spec ------------------------------------------------------------------------------------------------


def test_the_count_is_a_spec_field_checked_at_the_door():
    assert parse_spec(smoke()).tuning.n_startup_trials == 10
    assert parse_spec(smoke(n_startup_trials=3)).tuning.n_startup_trials == 3
    with pytest.raises(SpecError) as e:
        parse_spec(smoke(n_startup_trials=-1))
    assert e.value.problems[0][0] == "tuning.n_startup_trials"


def test_the_frozen_spec_text_leaves_the_count_out_at_its_default():
    """A relaunch compares the frozen text: a study frozen before the key existed still matches."""
    assert "n_startup_trials" not in spec_to_yaml(parse_spec(smoke()))
    text = spec_to_yaml(parse_spec(smoke(n_startup_trials=3)))
    assert parse_spec(yaml.safe_load(text)).tuning.n_startup_trials == 3


# -- what plan and validate say ------------------------------------------------------------------------------


def plan_text(**tuning: Any) -> str:
    spec = parse_spec(smoke(**tuning))
    return format_plan(spec, make_plan(spec), "smoke.yaml")


def test_plan_says_tpe_within_its_start_up_is_random_search():
    text = plan_text(samples_per_cell=8)
    assert "  sampler: TPE, 8 samples per cell <= 10 start-up trials: this is random search" in text.splitlines()
    assert "this is random search" in plan_text(samples_per_cell=10)  # the 10th ask sees 9 finished trials


def test_plan_says_how_many_samples_tpe_models():
    lines = plan_text(samples_per_cell=32, n_startup_trials=10).splitlines()
    assert "  sampler: TPE, 10 random start-up trials then TPE for up to 22 of 32 samples per cell" in lines
    lines = plan_text(samples_per_cell=8, sampler="random").splitlines()
    assert "  sampler: random, 8 samples per cell" in lines


def validate(tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    rc = main(["validate", str(path)])
    return rc, capsys.readouterr().err


def test_validate_warns_but_passes_when_tpe_is_random_search(tmp_path, capsys):
    rc, err = validate(tmp_path, smoke(samples_per_cell=8), capsys)
    assert rc == 0
    assert "warning: tuning: sampler tpe with samples_per_cell 8 <= n_startup_trials 10 is random search" in err
    rc, err = validate(tmp_path, smoke(samples_per_cell=8, n_startup_trials=4), capsys)
    assert (rc, err) == (0, "")
    rc, err = validate(tmp_path, smoke(samples_per_cell=8, sampler="random"), capsys)
    assert (rc, err) == (0, "")


def test_validate_warns_that_random_ignores_the_count(tmp_path, capsys):
    rc, err = validate(tmp_path, smoke(sampler="random", n_startup_trials=4), capsys)
    assert rc == 0 and "tuning.n_startup_trials: applies to sampler tpe only" in err


def test_plan_json_says_it_too(tmp_path, capsys):
    for tuning, random_search in (({"samples_per_cell": 8}, True), ({"samples_per_cell": 12}, False)):
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(smoke(**tuning)))
        assert main(["plan", "--json", str(path)]) == 0
        assert json.loads(capsys.readouterr().out)["sampler"]["random_search"] is random_search
