"""The spec is checked at the door: every error names its field path and the allowed values."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from study.tuning.plan import make_plan
from study.tuning.spec import SpecError, load_spec, parse_spec

SPECS = Path(__file__).resolve().parents[2] / "search_spaces"


def smoke() -> dict:
    return yaml.safe_load((SPECS / "smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["smoke", "demo", "khanal2024", "dedieu2024", "azizi2021"])
def test_shipped_specs_validate(name):
    spec = load_spec(SPECS / f"{name}.yaml")
    assert spec.name == name
    assert make_plan(spec).cells


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as e:
        parse_spec(data, "x.yaml")
    return e.value.problems


@pytest.mark.parametrize(
    "edit, path, words",
    [
        (
            lambda d: d["lnl"][0].__setitem__("algorithm", "cee"),
            "lnl[0].algorithm",
            ["'cee'", "allowed:", "co_teaching"],
        ),
        (lambda d: d["datasets"][0].__setitem__("name", "imagenet1k"), "datasets[0].name", ["allowed:", "synthetic"]),
        (lambda d: d["noise"].__setitem__("kinds", ["symetric"]), "noise.kinds", ["allowed:", "pairflip"]),
        (lambda d: d["noise"].__setitem__("rates", [1.2]), "noise.rates", ["[0, 1)"]),
        (
            lambda d: d["tuning"].__setitem__("samples_per_cel", 3),
            "tuning.samples_per_cel",
            ["unknown field", "samples_per_cell"],
        ),
        (
            lambda d: d["lnl"][0]["search_space"]["lr"].__setitem__("type", "loguniform"),
            "lnl[0].search_space.lr",
            ["allowed: float, int, categorical"],
        ),
        (lambda d: d["lnl"][0]["search_space"]["lr"].__setitem__("low", 0.5), "lnl[0].search_space.lr", ["below high"]),
        (
            lambda d: d["lnl"][0]["search_space"].__setitem__("forget_rate", {"type": "float", "low": 0, "high": 1}),
            "lnl[0].search_space.forget_rate",
            ["'forget_rate' is not a hyperparameter of LNL algorithm ce", "allowed:", "lr"],
        ),
        (lambda d: d["tuning"].__setitem__("metric", "test_f1"), "tuning.metric", ["allowed:", "val_f1"]),
        (lambda d: d["ssl"][0].__setitem__("init", "moco"), "ssl[0].init", ["allowed: random, imagenet"]),
        (lambda d: d.pop("seeds"), "seeds", ["required"]),
        (lambda d: d["resources"]["trial"].__setitem__("gpus", -1), "resources.trial.gpus", ["greater than or equal"]),
    ],
)
def test_errors_name_the_field_and_the_choices(edit, path, words):
    d = smoke()
    edit(d)
    found = problems(d)
    assert any(p == path for p, _ in found), found
    msg = next(m for p, m in found if p == path)
    for w in words:
        assert w in msg, msg


def test_conditional_parameters_must_refer_to_an_earlier_categorical():
    d = smoke()
    d["lnl"][0]["search_space"] = {
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
    }
    d["lnl"][0]["fixed"] = {}
    parse_spec(copy.deepcopy(d))
    d["lnl"][0]["search_space"]["momentum"]["when"] = {"optimizer": "rmsprop"}
    assert "allowed: sgd, adam" in problems(d)[0][1]


def test_error_line_format(tmp_path):
    d = smoke()
    d["lnl"][0]["algorithm"] = "nope"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(SpecError) as e:
        load_spec(p)
    assert str(e.value).startswith(f"{p}: lnl[0].algorithm: unknown LNL algorithm 'nope' (allowed: ")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "none.yaml")
    (tmp_path / "b.yaml").write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "b.yaml")
