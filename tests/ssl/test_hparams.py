"""Each SSL method's hyperparameter declaration: defaults for every field, names, types and ranges checked
with messages that say what is allowed, and default values that keep the pretraining cache keys."""

from __future__ import annotations

import pytest
import torch

import study.errors
import study.ssl
from study.data.cache import hash_key
from study.hparams import HparamError, check_value
from study.models import build_backbone
from study.ssl import METHODS
from study.ssl.base import check_finite

#: hash_key of each method's default resolved hyperparameters, as before they were typed (SSL_VERSION 2):
#: a changed default changes every cached encoder's key, so it needs an SSL_VERSION bump and a new entry here
DEFAULT_KEYS = {
    "random": "083cff43cb5c4255c8d3f0be",
    "imagenet": "083cff43cb5c4255c8d3f0be",
    "pretrained": "083cff43cb5c4255c8d3f0be",  # new: the shared fields only, as random and imagenet
    "simclr": "6e6b3a84ba9b6b4731776527",
    "micle": "6e6b3a84ba9b6b4731776527",
    "moco_v2": "825c7b0c2d0f3089ea74bca8",
    "barlow_twins": "91808674605f0f82808a86bd",
    "rotation": "8f196ec7288d8595dfb78aba",
    "jigsaw": "31dd587c0b0c614771d60c81",
    "jigmag": "2ab5bd045e298f4afeaea493",
    "vae": "56af87833bed0da36b5b0f1f",
    "bigbigan": "2878aecb4d045caede839329",
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_field_has_a_default(name):
    cls = METHODS[name]
    assert "Hparams" in vars(cls), f"{name} declares its own Hparams"
    assert all(not f.is_required() for f in cls.Hparams.model_fields.values())
    assert cls.Hparams() == cls.build_hparams({}) == cls.build_hparams(None)
    assert cls.resolve_hparams({}) == cls.Hparams().model_dump()
    assert cls.Hparams.owner == f"SSL method {name}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_defaults_keep_the_cache_keys(name):
    assert hash_key(METHODS[name].resolve_hparams({})) == DEFAULT_KEYS[name]


@pytest.mark.parametrize(
    "name,field,valid",
    [
        ("barlow_twins", "projector", "projector_dim"),
        ("simclr", "projection_dim", "proj_dim"),
        ("simclr", "color_jitter", "jitter"),
        ("micle", "temprature", "temperature"),
        ("rotation", "bogus", "crop_min"),
    ],
)
def test_unknown_name_raises_naming_it_and_the_allowed_ones(name, field, valid):
    with pytest.raises(ValueError, match=f"SSL method '{name}': '{field}'.*allowed: .*{valid}") as e:
        METHODS[name].resolve_hparams({field: 1})
    assert isinstance(e.value, HparamError)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_wrong_type_raises_naming_the_field_and_the_type(name):
    with pytest.raises(ValueError, match=f"SSL method '{name}': lr: 'fast' is not allowed.*must be a number, > 0"):
        METHODS[name].resolve_hparams({"lr": "fast"})
    with pytest.raises(ValueError, match="lr: True is a boolean"):
        METHODS[name].resolve_hparams({"lr": True})


@pytest.mark.parametrize(
    "name,field,value,allowed",
    [
        ("simclr", "momentum", 1.0, "< 1"),
        ("simclr", "temperature", 0.0, "> 0"),
        ("simclr", "crop_min", 0.0, "> 0"),
        ("simclr", "optimizer", "rmsprop", "one of 'adam'"),
        ("simclr", "warmup_epochs", 2.5, "an integer"),
        ("moco_v2", "queue_size", 0, ">= 1"),
        ("barlow_twins", "projector_dim", 0, ">= 1"),
        ("jigsaw", "grid", 4, "<= 3"),
        ("jigmag", "zooms", [1.0, 0.5, 0.25], "at least 4 items"),
        ("jigmag", "zooms", [1.0, 0.5, 0.25, 0.0], "a list of numbers"),
        ("vae", "beta", -1.0, ">= 0"),
        ("bigbigan", "optimizer", "sgd", "one of 'adam'"),
        ("bigbigan", "beta2", 1.0, "< 1"),
    ],
)
def test_out_of_range_raises_naming_the_field_and_the_range(name, field, value, allowed):
    with pytest.raises(HparamError, match=f"SSL method '{name}': {field}: .*must be .*{allowed}"):
        METHODS[name].resolve_hparams({field: value})


def test_checks_across_fields_name_the_method():
    with pytest.raises(HparamError, match=r"SSL method 'jigsaw': num_permutations 1000 .* 24 permutations"):
        METHODS["jigsaw"].resolve_hparams({"grid": 2})
    assert METHODS["jigsaw"].resolve_hparams({"grid": 2, "num_permutations": 24})["grid"] == 2


def test_values_are_converted_as_the_spec_converts_them():
    hp = METHODS["simclr"].resolve_hparams({"lr": 1, "temperature": "1e-1", "rotation": 30})
    assert hp["lr"] == 1.0 and isinstance(hp["lr"], float) and hp["temperature"] == pytest.approx(0.1)
    zooms = METHODS["jigmag"].resolve_hparams({"zooms": [1, 0.5, 0.25, 0.1]})["zooms"]
    assert zooms == (1.0, 0.5, 0.25, 0.1)
    assert check_value([METHODS["jigmag"].Hparams], "zooms", [1, 0.5, 0.25, 0.1]) == zooms


def test_method_sees_its_typed_hparams():
    m = METHODS["barlow_twins"](build_backbone("small_cnn", 3, 16), 3, 16, projector_dim=32)
    assert isinstance(m.hp, METHODS["barlow_twins"].Hparams)
    assert m.hp.projector_dim == 32 and m.hp.optimizer == "lars"
    with pytest.raises(ValueError, match="'projector' is not"):
        METHODS["barlow_twins"](build_backbone("small_cnn", 3, 16), 3, 16, projector=32)


def test_non_finite_loss_is_the_shared_error():
    assert study.ssl.NonFiniteLossError is study.errors.NonFiniteLossError
    with pytest.raises(study.errors.NonFiniteLossError, match="non-finite"):
        check_finite(torch.tensor(float("nan")))
