"""Hyperparameters are checked at the door against their declarations (name, type, range), `study validate`
exits 2 naming the field; and adding a method touches only its own file (registration is all a spec needs)."""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml
from pydantic import Field

from study.cli import main
from study.data import DATASETS
from study.data.synthetic import Synthetic
from study.hparams import Hparams
from study.lnl import ALGORITHMS
from study.lnl.base import Algorithm
from study.ssl import METHODS
from study.ssl.simclr import SimCLR
from study.tuning.plan import make_plan
from study.tuning.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "search_spaces"


def smoke() -> dict[str, Any]:
    return yaml.safe_load((SPECS / "smoke.yaml").read_text())


def validate(tmp_path: Path, data: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    rc = main(["validate", str(path)])
    return rc, capsys.readouterr().err


def with_ssl(method: str, hparams: dict[str, Any]) -> dict[str, Any]:
    d = smoke()
    d["ssl"][1] = {"method": method, "epochs": 1, "batch_size": 64, "hparams": hparams}
    return d


# -- the cases the shipped specs had, and types and ranges -----------------------------------------------


@pytest.mark.parametrize(
    "method, hparams, path, words",
    [
        ("barlow_twins", {"projector": [8192, 8192, 8192]}, "ssl[1].hparams.projector", ["projector_dim"]),
        ("simclr", {"projection_dim": 128}, "ssl[1].hparams.projection_dim", ["proj_dim"]),
        ("simclr", {"color_jitter": 0.5}, "ssl[1].hparams.color_jitter", ["jitter"]),
        ("simclr", {"lr": "fast"}, "ssl[1].hparams.lr", ["'fast'", "number"]),
        ("simclr", {"temperature": -1}, "ssl[1].hparams.temperature", ["greater than"]),
    ],
)
def test_ssl_hparams_are_checked_at_the_door(tmp_path, capsys, method, hparams, path, words):
    rc, err = validate(tmp_path, with_ssl(method, hparams), capsys)
    assert rc == 2
    line = next((ln for ln in err.splitlines() if f": {path}: " in ln), None)
    assert line is not None, err
    for w in words:
        assert w in line, line


@pytest.mark.parametrize(
    "edit, path, words",
    [
        (lambda d: d["lnl"][0]["fixed"].__setitem__("lr", "fast"), "lnl[0].fixed.lr", ["'fast'", "number"]),
        (lambda d: d["lnl"][0]["fixed"].__setitem__("momentum", True), "lnl[0].fixed.momentum", ["boolean"]),
        (lambda d: d["lnl"][0]["fixed"].__setitem__("optimizer", "adamw"), "lnl[0].fixed.optimizer", ["'sgd'"]),
        (lambda d: d["lnl"][0]["fixed"].__setitem__("batch_size", 0), "lnl[0].fixed.batch_size", ["greater than"]),
        (lambda d: d["lnl"][1]["fixed"].__setitem__("forget_rate", 1.5), "lnl[1].fixed.forget_rate", ["less than"]),
        (
            lambda d: d["lnl"][0]["search_space"]["lr"].update(low=-1, log=False),
            "lnl[0].search_space.lr.low",
            ["outside", "> 0"],
        ),
        (
            lambda d: d["lnl"][1]["search_space"].__setitem__("tk", {"type": "float", "low": 1, "high": 5}),
            "lnl[1].search_space.tk.type",
            ["integer", "type int"],
        ),
        (
            lambda d: d["lnl"][0]["search_space"].__setitem__(
                "schedule", {"type": "categorical", "choices": ["cosine", "x"]}
            ),
            "lnl[0].search_space.schedule.choices[1]",
            ["'x'", "'constant'"],
        ),
        (
            lambda d: d["lnl"][0]["search_space"].__setitem__("forget_rate", {"type": "float", "low": 0, "high": 0.5}),
            "lnl[0].search_space.forget_rate",
            ["not a hyperparameter of LNL algorithm ce", "allowed:", "lr"],
        ),
        (
            lambda d: d["datasets"][0]["options"].__setitem__("num_samples", "many"),
            "datasets[0].options.num_samples",
            ["'many'"],
        ),
        (
            lambda d: d["datasets"][0]["options"].__setitem__("num_clases", 3),
            "datasets[0].options.num_clases",
            ["num_classes"],
        ),
    ],
)
def test_lnl_and_dataset_hparams_are_checked_at_the_door(tmp_path, capsys, edit, path, words):
    d = smoke()
    edit(d)
    rc, err = validate(tmp_path, d, capsys)
    assert rc == 2
    line = next((ln for ln in err.splitlines() if f": {path}: " in ln), None)
    assert line is not None, err
    for w in words:
        assert w in line, line


def test_values_reach_the_trial_as_their_declared_types():
    d = smoke()
    del d["lnl"][0]["search_space"]["weight_decay"]
    d["lnl"][0]["fixed"]["weight_decay"] = "1e-4"  # PyYAML reads 1e-4 (no dot) as a string
    d["lnl"][0]["fixed"]["momentum"] = 0  # an int for a float
    spec = parse_spec(d)
    assert spec.lnl[0].fixed["weight_decay"] == pytest.approx(1e-4)
    assert isinstance(spec.lnl[0].fixed["momentum"], float)


@pytest.mark.parametrize("name", sorted(p.stem for p in SPECS.glob("*.yaml")))
def test_shipped_specs_pass_the_stricter_door(tmp_path, capsys, name):
    rc = main(["validate", str(SPECS / f"{name}.yaml")])
    assert rc == 0, capsys.readouterr().err


# -- adding a method touches its own file only -------------------------------------------------------------


class Toy(Algorithm):
    """A toy LNL algorithm: cross-entropy scaled by a declared factor (a test of the registry, no paper)."""

    name: ClassVar[str] = "toy"

    class Hparams(Hparams):
        scale: float = Field(1.0, gt=0, le=10)

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.hp.scale * torch.nn.functional.cross_entropy(logits, y)


class ToySSL(SimCLR):
    """SimCLR with another default temperature and one new declared hyperparameter."""

    name: ClassVar[str] = "toy_ssl"

    class Hparams(SimCLR.Hparams):
        temperature: float = Field(0.2, gt=0)
        toy_width: int = Field(4, ge=1)


class ToyData(Synthetic):
    name: ClassVar[str] = "toy_data"

    class Options(Synthetic.Options):
        toy_level: int = Field(0, ge=0, le=3)


@pytest.fixture
def registered():
    ALGORITHMS.register("toy", Toy)
    METHODS.register("toy_ssl", ToySSL)
    DATASETS.register("toy_data", ToyData)
    try:
        yield
    finally:
        for reg, name in ((ALGORITHMS, "toy"), (METHODS, "toy_ssl"), (DATASETS, "toy_data")):
            dict.pop(reg, name)


def toy_spec() -> dict[str, Any]:
    d = smoke()
    d["datasets"][0] = {"name": "toy_data", "options": {"num_samples": 60, "image_size": 8, "toy_level": 2}}
    d["ssl"][1] = {"method": "toy_ssl", "epochs": 1, "batch_size": 16, "hparams": {"toy_width": 8}}
    d["lnl"] = [
        {
            "algorithm": "toy",
            "epochs": 1,
            "fixed": {"scale": 2.0},
            "search_space": {"lr": {"type": "float", "low": 0.01, "high": 0.1}},
        }
    ]
    return d


def test_a_registered_toy_method_is_all_a_spec_needs(registered):
    spec = parse_spec(toy_spec())
    assert spec.lnl[0].fixed == {"scale": 2.0}
    assert make_plan(spec).cells  # plan reads the class's cost figures
    bad = copy.deepcopy(toy_spec())
    bad["lnl"][0]["fixed"]["scale"] = 11
    bad["ssl"][1]["hparams"]["toy_width"] = 0
    bad["datasets"][0]["options"]["toy_level"] = "high"
    with pytest.raises(SpecError) as e:
        parse_spec(bad)
    paths = {p for p, _ in e.value.problems}
    assert {"lnl[0].fixed.scale", "ssl[1].hparams.toy_width", "datasets[0].options.toy_level"} <= paths


def test_without_registration_the_names_are_refused():
    with pytest.raises(SpecError) as e:
        parse_spec(toy_spec())
    paths = {p for p, _ in e.value.problems}
    assert {"lnl[0].algorithm", "ssl[1].method", "datasets[0].name"} <= paths


# -- the orchestration reads top to bottom -----------------------------------------------------------------


def function_lengths(folder: Path) -> dict[str, int]:
    out = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                out[f"{path.name}::{node.name}"] = node.end_lineno - start + 1
    return out


def test_no_function_in_study_tuning_is_over_60_lines():
    lengths = function_lengths(ROOT / "study" / "tuning")
    assert lengths["trainables.py::lnl_trainable"] <= 60
    long = {k: v for k, v in lengths.items() if v > 60}
    assert not long, long
