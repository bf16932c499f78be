"""CTransPath (Wang et al. 2022) as ``timm:ctranspath``: Swin-T with a convolutional stem, registered with timm
by ``study.models.ctranspath``, loading the released file's layout (``{"model": state_dict}`` with timm 0.5.4's
Swin key names) through ``format: timm``. Random weights stand in for the real ones: a file in the released
layout is built from a timm 1.0 model by renaming its keys back and adding the old buffers and a head."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from study.data.pipeline import IMAGENET
from study.experiment import input_normalization
from study.models.timm_encoders import _timm, check_input_size, timm_backbone
from study.ssl import PretrainRequest, WeightsInit, load_encoder, pretrain
from study.ssl.init import load_timm_weights, start_backbone, swin_from_old_layout
from study.tuning.plan import Point
from study.tuning.preflight import weight_file_problems
from study.tuning.spec import parse_spec
from tests.ssl.test_external_encoders import features, timm_entry
from tests.tuning.test_preflight import assert_refused, run, spec_with

BACKBONE = "timm:ctranspath"
timm = _timm()  # registers ctranspath

#: the stem's keys, as in the released file (nn.Sequential indices: conv, BN, ReLU, conv, BN, ReLU, conv)
STEM_KEYS = [
    "patch_embed.proj.0.weight",
    *(f"patch_embed.proj.1.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "patch_embed.proj.3.weight",
    *(f"patch_embed.proj.4.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    "patch_embed.proj.6.weight",
    "patch_embed.proj.6.bias",
    "patch_embed.norm.weight",
    "patch_embed.norm.bias",
]


@pytest.fixture(scope="module")
def ref() -> torch.nn.Module:
    """CTransPath with a 5-class head and random weights (BatchNorm statistics too), in eval mode."""
    torch.manual_seed(0)
    model = timm.create_model("ctranspath", pretrained=False, num_classes=5)
    for name, buf in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            buf.copy_(torch.rand_like(buf) + (0.5 if name.endswith("var") else 0.0))
    return model.eval()


def old_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict as timm 0.5.4 saved a Swin: patch merging at the end of stage i (not the start of
    i + 1), the relative-position index and attention-mask buffers included, the classifier as ``head.``."""
    out: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k)
        out[k.replace("head.fc.", "head.")] = v
    for k, v in model.named_buffers():  # timm 1.0 does not save these (persistent=False); timm 0.5.4 did
        if k.endswith(("relative_position_index", "attn_mask")):
            out[k] = v
    return out


@pytest.fixture(scope="module")
def released(ref, tmp_path_factory) -> Path:
    """A file shaped as the authors' ctranspath.pth: ``{"model": state_dict}`` in timm 0.5.4's layout."""
    path = tmp_path_factory.mktemp("w") / "ctranspath.pth"
    torch.save({"model": old_layout(ref)}, path)
    return path


def test_the_architecture_is_swin_t_with_a_convolutional_stem():
    assert timm.is_model("ctranspath")
    cfg = timm.models.get_pretrained_cfg("ctranspath").to_dict()
    assert cfg["input_size"] == (3, 224, 224) and cfg["classifier"] == "head.fc"
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert cfg["first_conv"] == "patch_embed.proj.0"
    model = timm.create_model("ctranspath", pretrained=False, num_classes=0).eval()
    assert [k for k in model.state_dict() if k.startswith("patch_embed.")] == STEM_KEYS
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    convs = [shapes[f"patch_embed.proj.{i}.weight"] for i in (0, 3, 6)]
    assert convs == [(12, 3, 3, 3), (24, 12, 3, 3), (96, 24, 1, 1)] and shapes["patch_embed.proj.6.bias"] == (96,)
    assert not any(k.startswith("head.") for k in shapes)
    with torch.no_grad():
        assert model.patch_embed(torch.randn(2, 3, 224, 224)).shape == (2, 56, 56, 96)  # NHWC, as Swin's
        assert model(torch.randn(2, 3, 224, 224)).shape == (2, 768)
    with pytest.raises(ValueError, match="no downloadable weights"):
        timm.create_model("ctranspath", pretrained=True)


def test_other_sizes_and_grayscale_are_taken_and_odd_sides_refused():
    encoder = timm_backbone(BACKBONE, in_channels=1, image_size=112).eval()  # fit_input_size: set_input_size
    with torch.no_grad():
        assert encoder(torch.randn(2, 1, 112, 112)).shape == (2, 768)
    with pytest.raises(ValueError, match="multiples of 4"):
        check_input_size(BACKBONE, 30)
    with pytest.raises(ValueError, match="fixed patch size"):
        encoder.patch_embed.set_input_size(patch_size=8)


def test_the_old_layout_is_renamed_to_timm_1s(ref):
    old = old_layout(ref)
    assert "layers.0.downsample.reduction.weight" in old and "layers.3.downsample.reduction.weight" not in old
    assert "layers.0.blocks.1.attn_mask" in old and "layers.0.blocks.0.attn.relative_position_index" in old
    new = swin_from_old_layout(old)
    want = ref.state_dict()
    assert new.keys() == want.keys() and all(torch.equal(new[k], want[k]) for k in want)


def test_a_released_file_is_the_encoder_it_was_saved_from(ref, released, tmp_path):
    init = WeightsInit(weights=str(released), format="timm")
    request = PretrainRequest(
        init=init,
        dataset="synthetic",
        dataset_options={"num_samples": 8, "image_size": 32, "num_classes": 3},
        split_seed=0,
        hparams={},
        backbone=BACKBONE,
        resolution=224,
        epochs=0,
        seed=0,
        method="pretrained",
    )
    encoder = load_encoder(pretrain(request, tmp_path, device="cpu"))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(encoder(x), features(ref, x))  # bit-identical
    assert encoder.feature_dim == 768


def test_a_grayscale_encoder_from_the_released_file_sums_the_rgb_filters(ref, released):
    init = WeightsInit(weights=str(released), format="timm")
    encoder = start_backbone(BACKBONE, 1, 224, init.path, init).eval()
    gray = torch.rand(2, 1, 224, 224)
    with torch.no_grad():  # a grey image gives the response of its RGB copy
        assert torch.allclose(encoder(gray), features(ref, gray.repeat(1, 3, 1, 1)), atol=1e-4)


# -- misfits and the door ----------------------------------------------------------------------------------


def test_stock_swin_weights_do_not_fit_and_are_listed(tmp_path):
    path = tmp_path / "swin_t.pth"
    torch.save(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).state_dict(), path)
    encoder = timm.create_model("ctranspath", pretrained=False, num_classes=0)
    with pytest.raises(ValueError) as e:
        load_timm_weights(encoder, BACKBONE, 3, path)
    msg = str(e.value)
    assert str(path) in msg and "do not fit timm model ctranspath" in msg and "init.prefix" in msg
    assert "missing" in msg and "patch_embed.proj.0.weight" in msg
    assert "unexpected" in msg and "patch_embed.proj.weight" in msg


def spec_of(init: dict[str, Any], resolution: int | None = None) -> dict[str, Any]:
    return spec_with(timm_entry({"format": "timm", **init}, backbone=BACKBONE, resolution=resolution))


def test_launch_refuses_a_wrong_prefix(released, tmp_path, capsys, monkeypatch):
    data = spec_of({"weights": str(released), "prefix": "module."}, resolution=32)
    words = ["ssl[0].init.weights", str(released), "no key starts with prefix 'module.'", "init.prefix"]
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), [*words, "patch_embed.proj.0.weight"])


def test_launch_refuses_a_file_with_missing_keys(ref, tmp_path, capsys, monkeypatch):
    path = tmp_path / "no_stem.pth"
    torch.save({"model": {k: v for k, v in old_layout(ref).items() if not k.startswith("patch_embed.")}}, path)
    data = spec_of({"weights": str(path)}, resolution=32)
    words = ["ssl[0].init.weights", str(path), "does not fit backbone timm:ctranspath", "missing 16 keys"]
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), [*words, "patch_embed.proj.0.weight"])


def test_validate_accepts_ctranspath_and_preflight_passes_the_released_layout(released, tmp_path, capsys, monkeypatch):
    data = spec_of({"weights": str(released)})
    code, err, _ = run("validate", data, tmp_path, capsys, monkeypatch)
    assert code == 0, err
    spec = parse_spec(data)
    assert spec.model.resolution == 224 and spec.ssl[0].init.inputs == "model"  # pretrained_cfg: 224 px
    assert input_normalization(spec, Point(spec.datasets[0].key, "symmetric", 0.2, "pretrained", "ce", 0)) == IMAGENET
    assert weight_file_problems(spec) == []  # the old layout is converted as the trial converts it
