"""Each algorithm's hyperparameter declaration: defaults for every field, ranges checked at construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from study.hparams import HparamError, check_value
from study.lnl import ALGORITHMS, LoaderHparams, OptimConfig
from study.lnl.co_teaching import DEFAULT_FORGET_RATE
from study.models import Classifier, SmallCNN


def make_model() -> Classifier:
    return Classifier(SmallCNN(3, 8, width=4), 3)


def build(name: str, noise_rate: float | None = None, seed: int = 0, **hparams):
    return ALGORITHMS[name](
        make_model, 3, 10, OptimConfig(epochs=1), torch.device("cpu"), noise_rate=noise_rate, seed=seed, **hparams
    )


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_field_has_a_default(name):
    model = ALGORITHMS[name].Hparams
    assert all(not f.is_required() for f in model.model_fields.values()), name
    assert model() == ALGORITHMS[name].build_hparams({})


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_unknown_name_raises_naming_it_and_the_algorithm(name):
    with pytest.raises(HparamError, match=f"LNL algorithm '{name}': .*'bogus'.*allowed"):
        ALGORITHMS[name].build_hparams({"bogus": 1})


@pytest.mark.parametrize(
    "name,field,value",
    [
        ("co_teaching", "forget_rate", 1.0),
        ("co_teaching", "tk", -1),
        ("co_teaching", "c", 0.0),
        ("co_teaching", "ramp", "text"),
        ("co_teaching", "forget_rate", "nominal"),
        ("co_teaching_plus", "loss_form", "code"),
        ("co_teaching_plus", "init_epochs", -1),
        ("co_teaching_plus", "forget_rate", -0.1),
        ("dividemix", "alpha", 0.0),
        ("dividemix", "temperature", 0.0),
        ("dividemix", "p_threshold", 1.5),
        ("dividemix", "lambda_u", -1.0),
        ("dividemix", "warmup_epochs", -1),
        ("dividemix", "rampup_epochs", 2.5),
        ("dividemix", "loss_window", 0),
        ("dividemix", "confidence_penalty", "maybe"),
        ("elr", "beta", 1.0),
        ("elr", "lam", -1.0),
        ("gce", "q", 0.0),
        ("gce", "q", 1.1),
        ("gce", "k", 1.0),
        ("sce", "log_zero", 0.0),
        ("sce", "alpha", -0.1),
        ("sce", "beta", "big"),
        ("linear_probe", "hidden", [16, 0]),
        ("linear_probe", "feature_noise", -0.5),
    ],
)
def test_out_of_range_raises_naming_the_field(name, field, value):
    with pytest.raises(HparamError, match=f"LNL algorithm '{name}': {field}: .* must be"):
        ALGORITHMS[name].build_hparams({field: value})


def test_a_boolean_is_not_a_number():
    with pytest.raises(HparamError, match="q: True is a boolean"):
        ALGORITHMS["gce"].build_hparams({"q": True})


def test_values_are_converted_as_the_spec_converts_them():
    hp = ALGORITHMS["linear_probe"].build_hparams({"hidden": (16, 8), "feature_noise": "1e-3"})
    assert hp.hidden == [16, 8] and hp.feature_noise == pytest.approx(1e-3)
    assert check_value([ALGORITHMS["linear_probe"].Hparams], "hidden", (16, 8)) == hp.hidden
    assert ALGORITHMS["gce"].build_hparams({"q": 1}).q == 1.0


def test_subclass_declaration_extends_its_parent():
    plus, plain = ALGORITHMS["co_teaching_plus"].Hparams, ALGORITHMS["co_teaching"].Hparams
    assert issubclass(plus, plain)
    assert set(plus.model_fields) == set(plain.model_fields) | {"init_epochs", "loss_form"}
    assert plus.owner == "LNL algorithm co_teaching_plus" and plain.owner == "LNL algorithm co_teaching"


def test_algorithms_read_their_hyperparameters():
    assert build("gce", q=0.3).hp.q == 0.3
    assert build("co_teaching", noise_rate=0.4).forget_rate == 0.4
    assert build("co_teaching", noise_rate=0.4, forget_rate=0.1).forget_rate == 0.1
    assert build("co_teaching").forget_rate == DEFAULT_FORGET_RATE
    probe = build("linear_probe", hidden=[5])
    assert [m.out_features for m in probe.model.head.modules() if isinstance(m, torch.nn.Linear)] == [5, 3]


def test_dividemix_draws_from_the_trial_seed():
    assert "seed" not in ALGORITHMS["dividemix"].Hparams.model_fields
    a, b, c = build("dividemix", seed=3), build("dividemix", seed=3), build("dividemix", seed=4)
    assert a.seed == 3
    draws = [x.rng.beta(4.0, 4.0) for x in (a, b, c)]
    assert draws[0] == draws[1] != draws[2]
    perms = [torch.randperm(10, generator=x.perm_gen) for x in (a, b, c)]
    assert torch.equal(perms[0], perms[1]) and not torch.equal(perms[0], perms[2])


def test_step_costs_are_declared_by_each_algorithm():
    """Each algorithm states its measured cost (``python -m benchmarks method_cost``), not the base's 1.0 by
    inheritance; CE is the reference."""
    assert ALGORITHMS["ce"].step_cost == 1.0
    for name, cls in ALGORITHMS.items():
        assert "step_cost" in vars(cls), f"{name} does not declare its step_cost"
        assert cls.step_cost > 0
    assert ALGORITHMS["dividemix"].step_cost > ALGORITHMS["co_teaching"].step_cost > ALGORITHMS["ce"].step_cost


def test_optim_config_is_checked():
    assert OptimConfig(epochs=5, lr=0.1).lr == 0.1
    for bad in (
        {"lr": -1},
        {"lr": 0},
        {"momentum": 1.0},
        {"weight_decay": -1e-4},
        {"epochs": 0},
        {"optimizer": "rmsprop"},
        {"schedule": "linear"},
        {"schedule": "step"},  # without milestones
        {"schedule": "coteaching"},  # with sgd
        {"gamma": 0.0},
        {"milestones": [0]},
        {"nesterov": True},
    ):
        with pytest.raises(ValidationError):
            OptimConfig(**bad)
    with pytest.raises(ValidationError):
        OptimConfig().lr = 1.0  # type: ignore[misc]  # frozen


def test_loader_hparams():
    assert LoaderHparams().batch_size == 128
    with pytest.raises(HparamError, match="batch_size"):
        check_value([LoaderHparams], "batch_size", 0)
    assert np.isclose(check_value([OptimConfig], "lr", "1e-3"), 1e-3)
