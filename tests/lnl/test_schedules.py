"""Learning-rate schedules (and Adam's beta1 under the Co-teaching authors' schedule) per epoch, against
hand-computed values; their cross-field checks, in the declaration and at the door."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from study.lnl import ALGORITHMS, OptimConfig
from study.lnl.base import beta1_at, lr_at, optim_problems
from study.models import Classifier, SmallCNN
from study.tuning.spec import SpecError, parse_spec


def lrs(cfg: OptimConfig) -> list[float]:
    return [lr_at(e, cfg) for e in range(cfg.epochs)]


def test_constant():
    assert lrs(OptimConfig(lr=0.05, epochs=3, schedule="constant")) == [0.05, 0.05, 0.05]


def test_cosine():
    # 0.05 (1 + cos(pi e / 4)) for e = 0..3: 0.1, 0.05 (1 + 0.70711), 0.05, 0.05 (1 - 0.70711)
    got = lrs(OptimConfig(lr=0.1, epochs=4, schedule="cosine"))
    assert got == pytest.approx([0.1, 0.0853553, 0.05, 0.0146447], abs=1e-7)


def test_step_is_dividemix_schedule():
    cfg = OptimConfig(lr=0.02, epochs=300, schedule="step", milestones=[150], gamma=0.1)
    assert [lr_at(e, cfg) for e in (0, 149, 150, 299)] == pytest.approx([0.02, 0.02, 0.002, 0.002])
    two = OptimConfig(lr=1.0, epochs=6, schedule="step", milestones=[2, 4], gamma=0.5)
    assert lrs(two) == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    assert all(beta1_at(e, two) is None for e in range(6))


def test_coteaching_lr_and_beta1():
    small = OptimConfig(optimizer="adam", lr=1.0, epochs=5, schedule="coteaching", decay_start=2)
    # lr (5 - e) / (5 - 2) from epoch 2: 1, 1, 1, 2/3, 1/3
    assert lrs(small) == pytest.approx([1.0, 1.0, 1.0, 2 / 3, 1 / 3])
    assert [beta1_at(e, small) for e in range(5)] == [0.9, 0.9, 0.1, 0.1, 0.1]
    theirs = OptimConfig(optimizer="adam", lr=1e-3, epochs=200, schedule="coteaching", decay_start=80)
    assert [lr_at(e, theirs) for e in (79, 80, 81, 199)] == pytest.approx([1e-3, 1e-3, 1e-3 * 119 / 120, 1e-3 / 120])


def test_start_epoch_writes_lr_and_beta1_into_adam():
    cfg = OptimConfig(optimizer="adam", lr=1.0, epochs=5, schedule="coteaching", decay_start=2)
    algo = ALGORITHMS["co_teaching"](
        lambda: Classifier(SmallCNN(3, 8, width=4), 3), 3, 10, cfg, torch.device("cpu"), noise_rate=0.2
    )
    for epoch, lr, beta1 in ((1, 1.0, 0.9), (3, 2 / 3, 0.1)):
        algo.start_epoch(epoch, None)  # type: ignore[arg-type]  # the base hook does not read the loader
        for opt in algo.optimizers:
            (group,) = opt.param_groups
            assert group["lr"] == pytest.approx(lr) and group["betas"] == (beta1, 0.999)


@pytest.mark.parametrize(
    "values, field, words",
    [
        ({"schedule": "coteaching", "optimizer": "sgd", "epochs": 200}, "schedule", ["optimizer: adam"]),
        ({"schedule": "coteaching", "optimizer": "adam", "epochs": 50}, "decay_start", ["80", "50"]),
        ({"schedule": "step", "epochs": 300}, "milestones", ["needs milestones"]),
        ({"schedule": "step", "milestones": [150], "epochs": 100}, "milestones", ["within", "100 epochs"]),
        ({"schedule": "step", "milestones": [20, 10], "epochs": 100}, "milestones", ["increasing"]),
    ],
)
def test_contradictions_name_the_field(values, field, words):
    with pytest.raises(ValidationError) as e:
        OptimConfig(**values)
    message = str(e.value)
    assert f"{field}: " in message and all(w in message for w in words), message
    epochs = values.pop("epochs")
    ((name, text),) = optim_problems(epochs, values)
    assert name == field and all(w in text for w in words)


def test_door_checks_every_value_a_search_can_sample():
    assert optim_problems(100, {"optimizer": "adam", "schedule": "coteaching", "decay_start": 60}) == []
    # searched decay_start: its high end reaches the epochs
    (problem,) = optim_problems(100, {"optimizer": "adam", "schedule": "coteaching"}, {"decay_start": [10, 100]})
    assert problem[0] == "decay_start"
    # a searched schedule choice that the fixed optimiser cannot run
    (problem,) = optim_problems(100, {"optimizer": "sgd"}, {"schedule": ["cosine", "coteaching"]})
    assert problem[0] == "schedule"


def spec_data(fixed: dict, search_space: dict | None = None, epochs: int = 50) -> dict:
    return {
        "name": "s",
        "datasets": [{"name": "synthetic", "options": {"num_samples": 40}}],
        "noise": {"kinds": ["symmetric"], "rates": [0.2]},
        "ssl": [{"method": "random"}],
        "seeds": [0],
        "lnl": [
            {"algorithm": "ce", "epochs": epochs},
            {"algorithm": "co_teaching", "epochs": epochs, "fixed": fixed, "search_space": search_space or {}},
        ],
    }


def _door(data: dict) -> list[str]:
    """The field paths ``study validate`` names for ``data`` (none: it validates)."""
    try:
        parse_spec(data)
    except SpecError as e:
        return [p for p, _ in e.problems]
    return []


def test_validate_reports_the_field_path():
    with pytest.raises(SpecError) as e:
        parse_spec(spec_data({"schedule": "step", "milestones": [150]}))
    ((path, message),) = e.value.problems
    assert path == "lnl[1].fixed.milestones" and "50 epochs" in message
    searched = {"schedule": {"type": "categorical", "choices": ["coteaching"]}}
    assert _door(spec_data({"optimizer": "sgd"}, searched)) == ["lnl[1].search_space.schedule"]
    assert _door(spec_data({"optimizer": "adam", "schedule": "coteaching", "decay_start": 20})) == []


def test_a_noise_kinds_own_values_are_checked_too():
    data = spec_data({"optimizer": "adam", "schedule": "coteaching", "decay_start": 20})
    data["noise"]["kinds"] = ["symmetric", "pairflip"]
    data["lnl"][1]["by_noise_kind"] = {"pairflip": {"fixed": {"optimizer": "sgd"}}}
    assert _door(data) == ["lnl[1].by_noise_kind.pairflip.fixed.schedule"]


def test_schedule_fields_reach_the_trial_config():
    from study.experiment import split_hparams

    spec = parse_spec(spec_data({"optimizer": "adam", "schedule": "coteaching", "decay_start": 20}))
    optim, _, own = split_hparams(spec.lnl[1], dict(spec.lnl[1].fixed))
    assert (optim.schedule, optim.decay_start, optim.epochs) == ("coteaching", 20, 50) and "decay_start" not in own
    assert math.isclose(lr_at(49, optim), optim.lr / 30)
