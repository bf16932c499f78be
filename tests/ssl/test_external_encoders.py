"""External encoders (Dedieu et al. 2024's frozen foundation encoders): a timm architecture named
``timm:<name>`` with weights from a local file (``init: {weights: PATH, format: timm}``). Random weights stand
in for the real ones (nothing is downloaded): a file saved from a timm model, loaded as the study's encoder,
gives that model's features; the door refuses unknown architectures, missing files and wrong prefixes with
exit 2; the inputs and the resolution default to the architecture's pretrained_cfg; a trial trains a head
over the frozen encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import save_file
from torchvision.models import resnet18 as tv_resnet18

from study.data.pipeline import IMAGENET, UNIT, Normalization
from study.experiment import build_trial, input_normalization
from study.models import TIMM_COST, backbone_cost
from study.ssl import PretrainRequest, WeightsInit, load_encoder, pretrain, read_meta
from study.ssl.init import load_timm_weights, start_backbone
from study.tuning.plan import Point
from study.tuning.spec import parse_spec
from tests.tuning.test_preflight import assert_refused, run, spec_with

#: a ResNet-10 with a deep stem (4.9 M parameters): a few milliseconds per 32 px image on a CPU
ARCH = "resnet10t"
BACKBONE = f"timm:{ARCH}"


def reference(arch: str = ARCH, seed: int = 3, **kw: Any) -> torch.nn.Module:
    """A timm model with a classifier and random weights, in eval mode: what a foundation encoder's file holds."""
    torch.manual_seed(seed)
    return timm.create_model(arch, pretrained=False, num_classes=5, **kw).eval()


def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The pooled features of a timm model with a classifier (its head's input)."""
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


@pytest.fixture(scope="module")
def ref() -> torch.nn.Module:
    return reference()


@pytest.fixture(scope="module")
def pt_file(ref, tmp_path_factory) -> Path:
    """The reference's state dict (classifier included) under a training checkpoint's prefix."""
    path = tmp_path_factory.mktemp("w") / "encoder.pth"
    torch.save({"state_dict": {f"model.backbone.{k}": v for k, v in ref.state_dict().items()}}, path)
    return path


REQUEST = dict(
    dataset="synthetic",
    dataset_options={"num_samples": 24, "image_size": 32, "num_classes": 3},
    split_seed=0,
    hparams={},
    backbone=BACKBONE,
    resolution=32,
    epochs=0,
    seed=0,
    method="pretrained",
)


def test_a_timm_file_is_the_encoder_it_was_saved_from(ref, pt_file, tmp_path):
    init = WeightsInit(weights=str(pt_file), format="timm", prefix="model.backbone.")
    path = pretrain(PretrainRequest(init=init, **REQUEST), tmp_path, device="cpu")
    encoder = load_encoder(path)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), features(ref, x), atol=1e-5)
    assert encoder.feature_dim == ref.num_features == 512
    meta = read_meta(path)
    assert meta["build_size"] == 32 and meta["init"]["inputs"] == "model"


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_safetensors_and_bin_files_load_the_same(suffix, ref, tmp_path):
    path = tmp_path / f"model{suffix}"
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    encoder = timm.create_model(ARCH, pretrained=False, num_classes=0).eval()
    load_timm_weights(encoder, BACKBONE, 3, path)  # the classifier (pretrained_cfg: fc) is dropped
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), features(ref, x), atol=1e-5)


def test_a_grayscale_encoder_sums_the_rgb_filters(ref, pt_file):
    init = WeightsInit(weights=str(pt_file), format="timm", prefix="model.backbone.")
    encoder = start_backbone(BACKBONE, 1, 32, init.path, init).eval()
    gray = torch.rand(2, 1, 32, 32)
    with torch.no_grad():  # a grey image gives the response of its RGB copy
        assert torch.allclose(encoder(gray), features(ref, gray.repeat(1, 3, 1, 1)), atol=1e-4)


def test_a_vit_file_at_224_px_is_resampled_to_the_study_input(tmp_path):
    vit = reference("vit_tiny_patch16_224")  # saved at its native 224 px (14 x 14 patches)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    init = WeightsInit(weights=str(path), format="timm")
    encoder = start_backbone("timm:vit_tiny_patch16_224", 3, 32, path, init).eval()
    vit.set_input_size(img_size=(32, 32))  # timm's own resampling of the position embeddings (2 x 2 patches)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), features(vit, x), atol=1e-5)


def test_keys_that_do_not_fit_are_listed(tmp_path):
    path = tmp_path / "tv_r18.pt"
    torch.save(tv_resnet18(weights=None).state_dict(), path)
    encoder = timm.create_model(ARCH, pretrained=False, num_classes=0)
    with pytest.raises(ValueError) as e:
        load_timm_weights(encoder, BACKBONE, 3, path)
    msg = str(e.value)
    assert "do not fit timm model resnet10t" in msg and "init.prefix" in msg
    assert "missing" in msg and "conv1.0.weight" in msg and "unexpected" in msg and "conv1.weight" in msg


# -- the door ----------------------------------------------------------------------------------------------


def timm_entry(init: dict[str, Any], backbone: str = BACKBONE, resolution: int | None = 8) -> Any:
    def edit(s: dict[str, Any]) -> None:
        s["ssl"] = [{"method": "pretrained", "init": init}]
        s["model"] = {"backbone": backbone, "resolution": resolution}

    return edit


def test_validate_refuses_an_unknown_timm_architecture(tmp_path, capsys, monkeypatch):
    data = spec_with(timm_entry({"weights": "w.pt", "format": "timm"}, backbone="timm:resnet10x"))
    code, err, _ = run("validate", data, tmp_path, capsys, monkeypatch)
    assert code == 2 and "model.backbone" in err and "timm has no architecture 'resnet10x'" in err, err
    assert "timm:resnet10t" in err and "timm.list_models" in err  # a close name, and how to list them


def test_validate_refuses_a_format_that_does_not_fit_the_backbone(tmp_path, capsys, monkeypatch):
    data = spec_with(timm_entry({"weights": "w.pt", "format": "timm"}, backbone="resnet18"))
    code, err, _ = run("validate", data, tmp_path, capsys, monkeypatch)
    assert code == 2 and "ssl[0].init" in err and "needs model.backbone: timm:<architecture>" in err, err
    data = spec_with(timm_entry({"weights": "w.pt"}))  # torchvision's format on a timm backbone
    code, err, _ = run("validate", data, tmp_path, capsys, monkeypatch)
    assert code == 2 and "set init.format: timm" in err, err


def test_launch_refuses_a_missing_timm_file(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "phikon.safetensors"
    data = spec_with(timm_entry({"weights": str(missing), "format": "timm"}))
    assert run("validate", data, tmp_path, capsys, monkeypatch)[0] == 0  # the form is fine; the file is launch's
    words = ["ssl[0].init.weights", str(missing), "no such weight file", "docs/weights.md"]
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), words)


def test_launch_refuses_a_wrong_prefix(pt_file, tmp_path, capsys, monkeypatch):
    data = spec_with(timm_entry({"weights": str(pt_file), "format": "timm", "prefix": "module."}))
    words = ["ssl[0].init.weights", str(pt_file), "no key starts with prefix 'module.'", "model.backbone.conv1"]
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), [*words, "init.prefix"])


def test_launch_preflight_passes_a_fitting_file_and_names_a_missing_prefix(pt_file):
    from study.tuning.preflight import weight_file_problems

    fits = parse_spec(spec_with(timm_entry({"weights": str(pt_file), "format": "timm", "prefix": "model.backbone."})))
    assert weight_file_problems(fits) == []
    unprefixed = parse_spec(spec_with(timm_entry({"weights": str(pt_file), "format": "timm"})))
    [(where, msg)] = weight_file_problems(unprefixed)
    assert where == "ssl[0].init.weights" and "unexpected" in msg and "model.backbone.conv1.0.weight" in msg


# -- inputs and resolution from pretrained_cfg -------------------------------------------------------------


def test_inputs_and_resolution_come_from_pretrained_cfg(pt_file):
    def spec_of(backbone: str, **init: Any) -> Any:
        edit = timm_entry({"weights": str(pt_file), "format": "timm", **init}, backbone, resolution=None)
        return parse_spec(spec_with(edit))

    point = Point("synthetic", "symmetric", 0.2, "pretrained", "ce", 0)
    vit = spec_of("timm:vit_tiny_patch16_224")
    assert vit.model.resolution == 224 and vit.ssl[0].init.inputs == "model"
    assert input_normalization(vit, point) == Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    r10 = spec_of(BACKBONE)
    assert r10.model.resolution == 176  # resnet10t's pretrained_cfg input size
    assert input_normalization(r10, point) == IMAGENET
    assert input_normalization(spec_of(BACKBONE, inputs="unit"), point) == UNIT  # the spec may override
    assert backbone_cost(BACKBONE) == TIMM_COST


# -- a trial over a timm encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["linear_probe", "ce"])
def test_a_trial_trains_over_a_timm_encoder(algorithm, pt_file, tmp_path):
    spec = parse_spec(
        {
            "name": "t",
            "datasets": [{"name": "synthetic", "options": {"num_samples": 40, "image_size": 32, "num_classes": 3}}],
            "noise": {"kinds": ["symmetric"], "rates": [0.2]},
            "ssl": [
                {
                    "method": "pretrained",
                    "init": {"weights": str(pt_file), "format": "timm", "prefix": "model.backbone."},
                }
            ],
            "lnl": [{"algorithm": algorithm, "epochs": 1, "batch_size": 16}],
            "seeds": [0],
            "model": {"backbone": BACKBONE, "resolution": 32},
        }
    )
    point = Point(spec.datasets[0].key, "symmetric", 0.2, "pretrained", algorithm, 0)
    trial = build_trial(spec, point, {}, torch.device("cpu"), tmp_path, tmp_path)
    assert trial.train.norm == IMAGENET
    start = {k: v.clone() for k, v in trial.algo.nets[0].encoder.state_dict().items()}
    result = trial.fit()
    assert result.best_epoch == 0
    moved = any(not torch.equal(v, start[k]) for k, v in trial.algo.nets[0].encoder.state_dict().items())
    assert moved == (algorithm == "ce")  # linear_probe keeps the encoder frozen; ce fine-tunes it
