"""The trial recipe hands the algorithm the expected corrupted fraction of its cell's noise, and
Co-teaching's ``forget_rate: auto`` uses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.experiment import build_trial
from study.tuning.plan import Point
from study.tuning.spec import parse_spec


def trial_of(tmp_path, kind: str, rate: float):
    spec = parse_spec(
        {
            "name": "t",
            "datasets": [{"name": "synthetic", "options": {"num_samples": 120}, "noise_groups": [[0, 1]]}],
            "noise": {"kinds": [kind], "rates": [rate]},
            "ssl": [{"method": "random"}],
            "lnl": [{"algorithm": "co_teaching", "epochs": 1}],
            "seeds": [0],
            "model": {"backbone": "small_cnn"},
        }
    )
    point = Point(spec.datasets[0].key, kind, rate, "random", "co_teaching", 0)
    return build_trial(spec, point, {}, torch.device("cpu"), tmp_path, tmp_path)


def test_class_dependent_forget_rate_is_below_nominal(tmp_path):
    trial = trial_of(tmp_path, "class_dependent", 0.4)
    priors = np.bincount(trial.clean[trial.splits.train], minlength=4) / len(trial.splits.train)
    # T_00 = T_11 = 0.6 inside the group {0, 1}; classes 2 and 3 keep their labels
    expected = 0.4 * (priors[0] + priors[1])
    assert trial.algo.expected_noise == pytest.approx(expected)
    assert trial.algo.forget_rate == pytest.approx(expected) and expected < 0.4


def test_uniform_forget_rate_is_rate_times_k_minus_1_over_k(tmp_path):
    trial = trial_of(tmp_path, "uniform", 0.4)
    assert trial.algo.forget_rate == pytest.approx(0.4 * 3 / 4)  # whatever the priors
