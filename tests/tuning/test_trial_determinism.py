"""A trial's initialisation does not depend on whether its encoder was trained in this process or cached."""

from __future__ import annotations

import torch

from study.experiment import build_encoder
from study.tuning.plan import make_plan
from study.tuning.spec import load_spec
from tests.conftest import SMOKE


def test_what_follows_the_encoder_is_seeded_the_same_cold_or_cached(tmp_path):
    spec = load_spec(SMOKE)
    point = next(c.tune_point for c in make_plan(spec).cells if spec.ssl_map[c.tune_point.ssl].method == "simclr")
    draws, weights = [], []
    for _ in range(2):  # first call trains the 1-epoch SimCLR encoder (drawing from torch's RNG), second loads it
        enc = build_encoder(spec, point, str(tmp_path / "cache"), str(tmp_path / "data"), torch.device("cpu"))
        draws.append(torch.rand(4))
        weights.append(torch.cat([p.detach().flatten() for p in enc.parameters()]))
    assert torch.equal(weights[0], weights[1])
    assert torch.equal(draws[0], draws[1]), "the heads of a cold and a cached trial would be initialised differently"
