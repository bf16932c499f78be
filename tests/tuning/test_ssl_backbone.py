"""``ssl[].backbone``: each SSL entry's encoder architecture, where it is not ``model.backbone`` (Dedieu et
al. 2024 compare ResNet-50, Swin-T and ViT foundation encoders in one study)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from study.experiment import build_trial, pretrain_request
from study.tuning.plan import estimate_gpu_hours, make_plan
from study.tuning.smoke import smoke_spec
from study.tuning.spec import SpecError, parse_spec, spec_to_yaml


def spec(**ssl_extra: Any) -> dict[str, Any]:
    return {
        "name": "bb",
        "datasets": [{"name": "synthetic", "options": {"num_samples": 64, "image_size": 16}}],
        "noise": {"kinds": ["symmetric"], "rates": [0.2]},
        "ssl": [{"method": "random"}, {"method": "random", "id": "wide", **ssl_extra}],
        "model": {"backbone": "small_cnn"},
        "lnl": [{"algorithm": "ce", "epochs": 1, "batch_size": 16}],
        "seeds": [0],
        "tuning": {"samples_per_cell": 1},
    }


def test_each_entry_trains_its_own_architecture(tmp_path):
    s = parse_spec(spec(backbone="resnet18"))
    assert s.backbone_of("random") == "small_cnn" and s.backbone_of("wide") == "resnet18"
    assert pretrain_request(s, "synthetic", "wide", 0).backbone == "resnet18"
    dims = {}
    for _, point in make_plan(s).final_runs:
        trial = build_trial(s, point, {}, torch.device("cpu"), str(tmp_path / "c"), str(tmp_path / "d"))
        dims[point.ssl] = trial.algo.nets[0].encoder.feature_dim
        trial.fit()
    assert dims == {"random": 128, "wide": 512}  # small_cnn's features, resnet18's


def test_an_entry_without_a_backbone_keeps_the_frozen_text_of_older_studies():
    assert "backbone: null" not in spec_to_yaml(parse_spec(spec()))
    assert "backbone: resnet18" in spec_to_yaml(parse_spec(spec(backbone="resnet18")))


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"backbone": "resnet5"}, ["ssl[1].backbone", "unknown backbone 'resnet5'", "timm:<architecture>"]),
        ({"backbone": "small_cnn", "init": "imagenet"}, ["ssl[1].init", "resnet18 only", "set ssl[1].backbone"]),
        ({"backbone": "timm:resnet10t"}, ["ssl[1].backbone", "needs model.resolution", "176 px"]),
    ],
)
def test_the_door_names_the_entrys_backbone(extra, words):
    with pytest.raises(SpecError) as e:
        parse_spec(spec(**extra))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_smoke_and_the_plan_see_the_entrys_backbone():
    s = parse_spec(spec(backbone="resnet50"))
    smoke = smoke_spec(s)
    assert smoke.spec.backbone_of("wide") == smoke.spec.model.backbone
    assert any("backbone resnet50 replaced" in n for n in smoke.notes)
    same = estimate_gpu_hours(parse_spec(spec()), make_plan(parse_spec(spec())))
    heavier = estimate_gpu_hours(s, make_plan(s))
    assert heavier["tuning"] > same["tuning"] and heavier["total"] > same["total"]


def test_a_tiling_method_is_refused_on_a_fixed_size_transformer():
    """jigsaw's and JigMag's tiles are smaller than the images: a ViT built for one input size cannot take
    them, which the door says rather than the pretraining job."""
    s = spec(method="jigsaw", backbone="timm:vit_tiny_patch16_224")
    s["model"]["resolution"] = 32
    with pytest.raises(SpecError, match=r"ssl\[1\]\.method: jigsaw feeds the backbone tiles"):
        parse_spec(s)
    s["ssl"][1]["backbone"] = "timm:resnet10t"
    assert parse_spec(s).backbone_of("wide") == "timm:resnet10t"
