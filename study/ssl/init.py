"""Initialisations without SSL training, and the weight files they read.

``random`` (seeded, untrained), ``imagenet`` (torchvision's supervised ImageNet ResNet-18 weights, He et
al. 2016) and ``pretrained`` (a state dict in a local file: a torchvision ResNet's, Azizi et al. 2021's
SimCLR-on-ImageNet encoder converted from the public TensorFlow checkpoints; or a timm architecture's, the
frozen foundation encoders of Dedieu et al. 2024; docs/weights.md). The same files start an SSL method
(``init: imagenet`` or ``init: {weights: PATH}``: "ImageNet + SSL"). Nothing is ever downloaded; every file
is read weights-only.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from study.models import build_backbone
from study.models.timm_encoders import (
    architecture,
    classifier_prefixes,
    create_timm,
    first_conv,
    fit_input_size,
    is_swin,
)
from study.ssl.base import SSLMethod

#: torchvision's file name for ResNet18_Weights.IMAGENET1K_V1
TORCHVISION_FILE = "resnet18-f37072fd.pth"
ENV_VAR = "STUDY_IMAGENET_WEIGHTS"
#: keys of a torchvision ResNet that a backbone does not have (its classifier)
CLASSIFIER_PREFIX = "fc."
#: how many missing / unexpected keys an error lists
SHOWN_KEYS = 8
#: the keys that mark a Swin checkpoint in timm 0.5.4's layout (patch merging at the end of stage 0)
OLD_SWIN_MARKER = "layers.0.downsample."
#: buffers such a checkpoint stores that timm 1.0 recomputes from the window size and grid (not persistent)
OLD_SWIN_BUFFERS = ("relative_position_index", "attn_mask")
_OLD_DOWNSAMPLE = re.compile(r"layers\.(\d+)\.downsample\.")

StateDict = dict[str, torch.Tensor]


class WeightsInit(BaseModel):
    """``init: {weights: PATH, format: torchvision, prefix: ""}`` of an SSL entry: start from a local file.

    ``format: torchvision``: a torchvision-ResNet state dict (parameter names as ``torchvision.models.resnet50()``
    has them) for a torchvision ResNet backbone. ``format: timm``: the state dict of the spec's
    ``timm:<architecture>`` backbone (names as ``timm.create_model(architecture)`` has them; a Swin's,
    CTransPath's included, may also be in timm 0.5.4's layout, see ``swin_from_old_layout``). Saved with
    ``torch.save`` (``.pt``/``.pth``/``.bin``, a plain dict or one under ``state_dict`` or ``model``) or as
    ``.safetensors``. With ``prefix``, only the keys that start with it are read, stripped of it
    (``"module.encoder."`` for a checkpoint that also holds a projection head). The classifier (``fc.*``;
    timm's ``pretrained_cfg["classifier"]``) is ignored. ``inputs`` defaults to ``model`` for a timm file
    (the architecture's own mean and std), ``imagenet`` otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: str = Field(min_length=1, description="path of the weight file (read weights-only)")
    format: Literal["torchvision", "timm"] = Field(
        "torchvision",
        description="parameter naming of the file: torchvision (a torchvision ResNet's) or timm (the state dict of "
        "the timm:<architecture> backbone)",
    )
    prefix: str = Field("", description="keep only keys starting with this, stripped of it")
    inputs: Literal["imagenet", "unit", "standard", "model"] = Field(
        "imagenet",
        description="the pixel scaling the weights were trained on, used for this encoder's inputs: imagenet "
        "(torchvision's weights: ImageNet mean/std), unit (pixels in [0, 1]: SimCLR's TF checkpoints), standard "
        "((x - 0.5) / 0.25: this project's own encoders), model (a timm backbone's pretrained_cfg mean/std; the "
        "default of format timm)",
    )

    @model_validator(mode="before")
    @classmethod
    def _timm_inputs(cls, data: Any) -> Any:
        """A timm file without ``inputs`` is read with its architecture's statistics (``model``); a torchvision
        file keeps ``imagenet``, so its resolved init, and its cache key, are what they were."""
        if isinstance(data, dict) and data.get("format") == "timm" and "inputs" not in data:
            return {**data, "inputs": "model"}
        return data

    @property
    def path(self) -> Path:
        return Path(self.weights).expanduser()


class RandomInit(SSLMethod):
    """The backbone as PyTorch initialises it under the request's seed; no training (the papers' baseline)."""

    name = "random"
    trains = False

    class Hparams(SSLMethod.Hparams):
        """Nothing is trained: the shared names are accepted (and left out of the cache key)."""

    hp: Hparams


class ImageNetInit(SSLMethod):
    """torchvision's ImageNet-supervised ResNet-18 weights, loaded from a local file; no training."""

    name = "imagenet"
    trains = False

    class Hparams(SSLMethod.Hparams):
        """Nothing is trained: the shared names are accepted (and left out of the cache key)."""

    hp: Hparams


class PretrainedInit(SSLMethod):
    """The encoder is the weight file of the entry's ``init: {weights: PATH}``, untrained here: Azizi et al.
    2021's "supervised from SimCLR-ImageNet" baseline (SimCLR, Chen et al. 2020, on ImageNet, then only
    fine-tuning), a frozen foundation encoder of Dedieu et al. 2024 (a timm architecture, ``format: timm``,
    under ``linear_probe``), or any other torchvision-ResNet or timm encoder trained elsewhere."""

    name = "pretrained"
    trains = False

    class Hparams(SSLMethod.Hparams):
        """Nothing is trained: the shared names are accepted (and left out of the cache key)."""

    hp: Hparams


def find_imagenet_weights(explicit: str | Path | None = None) -> Path:
    """The ResNet-18 ImageNet weight file: ``explicit``, else $STUDY_IMAGENET_WEIGHTS, else torch hub's cache
    (``<torch hub dir>/checkpoints/resnet18-f37072fd.pth``). Nothing is downloaded; a clear error otherwise."""
    candidates: list[tuple[str, Path]] = []
    if explicit is not None:
        candidates.append(("imagenet_weights argument", Path(explicit).expanduser()))
    if os.environ.get(ENV_VAR):
        candidates.append((f"${ENV_VAR}", Path(os.environ[ENV_VAR]).expanduser()))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    candidates.append(("torch hub cache", hub / TORCHVISION_FILE))
    for _, p in candidates:
        if p.is_file():
            return p
    tried = "; ".join(f"{src}: {p}" for src, p in candidates)
    raise FileNotFoundError(
        f"ImageNet ResNet-18 weights not found (tried {tried}). Nothing is downloaded at run time: put "
        f"torchvision's {TORCHVISION_FILE} (https://download.pytorch.org/models/{TORCHVISION_FILE}) at "
        f"{hub / TORCHVISION_FILE}, or set ${ENV_VAR} to its path"
    )


# -- reading a weight file ------------------------------------------------------------------------------


def read_state_dict(path: str | Path, prefix: str = "") -> StateDict:
    """The tensors of a weight file, weights-only, with ``prefix`` stripped (keys without it dropped).

    ``.safetensors`` files are read with ``safetensors``; anything else (``.pt``, ``.pth``, ``.bin``) with
    ``torch.load(weights_only=True)``: a plain state dict, or one under ``state_dict`` or ``model``."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such weight file (a state dict; docs/weights.md)")
    state: Any = _read_safetensors(p) if p.suffix == ".safetensors" else torch.load(p, "cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{p}: not a state dict (a mapping from parameter names to tensors); docs/weights.md")
    return strip_prefix(state, prefix, p)


def _read_safetensors(p: Path) -> StateDict:
    """A ``.safetensors`` file's tensors (the format of Hugging Face's model repositories); a damaged file is a
    ValueError, as a damaged ``torch.save`` file is an error of ``torch.load``."""
    try:
        state: StateDict = load_file(str(p), device="cpu")
    except SafetensorError as e:
        raise ValueError(f"{p}: not a readable .safetensors file ({e})") from None
    return state


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str, source: str | Path = "weights") -> StateDict:
    """The entries whose key starts with ``prefix``, stripped of it (all of them when ``prefix`` is empty)."""
    if not prefix:
        return dict(state)
    out = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not out:
        raise ValueError(
            f"{source}: no key starts with prefix {prefix!r} (keys look like {_some(list(state))}); set "
            "init.prefix to the part before the network's parameter names (e.g. 'module.encoder.'), or ''"
        )
    return out


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (remembered per path, size and modification time): the cache key of an
    encoder that starts from the file, so a replaced file is never mistaken for the old one."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _sha256(str(p), st.st_size, st.st_mtime_ns)


# -- fitting a backbone --------------------------------------------------------------------------------


def weights_mismatch(expected: Mapping[str, torch.Size], state: Mapping[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` (classifier already dropped) from loading into a backbone whose parameters and
    buffers have the shapes ``expected``; None when it fits. A 3-channel first convolution fits a
    grayscale backbone (its filters are summed, see ``fit_channels``)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(s)}"
        for k, s in expected.items()
        if k in state and tuple(state[k].shape) != tuple(s) and not _summable_conv1(k, state[k].shape, s)
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} keys: {_some(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys: {_some(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shapes differ (file vs backbone): {_some(shapes)}")
    return "; ".join(problems) or None


def _summable_conv1(key: str, have: torch.Size, want: torch.Size) -> bool:
    return key == "conv1.weight" and len(have) == 4 and have[1] == 3 and want[1] == 1 and have[2:] == want[2:]


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys) - SHOWN_KEYS} more)" if len(keys) > SHOWN_KEYS else "")


def without_classifier(state: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}


def backbone_shapes(backbone: nn.Module) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in backbone.state_dict().items()}


def load_torchvision_weights(backbone: nn.Module, path: str | Path, prefix: str = "") -> None:
    """Load a torchvision-ResNet state dict from ``path`` into a backbone of ``study.models`` built with the
    ImageNet stem (``image_size >= 96``). The classifier (fc) is dropped; for a grayscale backbone the first
    convolution's RGB filters are summed over their input channels (the usual conversion: a gray image then
    gives the response of its RGB copy). Keys that do not fit raise a ValueError listing them."""
    state = without_classifier(read_state_dict(path, prefix))
    problem = weights_mismatch(backbone_shapes(backbone), state)
    if problem:
        raise ValueError(f"{path}: the weights do not fit the backbone ({problem}); docs/weights.md")
    w, conv1 = state["conv1.weight"], backbone.get_parameter("conv1.weight")
    if conv1.shape[1] == 1 and w.shape[1] == 3:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)
    backbone.load_state_dict(state)


def load_imagenet_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load torchvision's ResNet-18 ImageNet weights (``load_torchvision_weights`` without a prefix)."""
    load_torchvision_weights(backbone, path)


def swin_from_old_layout(state: Mapping[str, torch.Tensor]) -> StateDict:
    """A Swin checkpoint in timm 0.5.4's layout (Swin's original code's, and CTransPath's released file) renamed
    to timm 1.0's: the patch merging at the end of stage i (``layers.{i}.downsample.*``) is the one at the start
    of stage i + 1 (``layers.{i+1}.downsample.*``; the same weights, in the same order of the merged 2x2
    neighbours); the classifier ``head.*`` is ``head.fc.*``; the buffers ``relative_position_index`` and
    ``attn_mask``, functions of the window size and the grid that timm 1.0 recomputes and does not save, are
    dropped. Every other key is timm 1.0's as it is."""
    out: StateDict = {}
    for key, value in state.items():
        if key.rsplit(".", 1)[-1] in OLD_SWIN_BUFFERS:
            continue
        stage = _OLD_DOWNSAMPLE.match(key)
        if stage:
            key = f"layers.{int(stage.group(1)) + 1}.downsample.{key[stage.end() :]}"
        elif key.startswith("head.") and not key.startswith("head.fc."):
            key = "head.fc." + key[len("head.") :]
        out[key] = value
    return out


def timm_state(state: Mapping[str, torch.Tensor], backbone_name: str, in_channels: int) -> StateDict:
    """A timm architecture's state dict as its encoder loads it: a Swin's (``timm:ctranspath`` included) in
    timm 0.5.4's layout converted (``swin_from_old_layout``), the classifier's keys
    (``pretrained_cfg["classifier"]``) dropped, and, for another channel count than the file's, the first
    convolution (``pretrained_cfg["first_conv"]``) adapted by timm's ``adapt_input_conv`` (for grayscale: the
    sum of the RGB filters, as for torchvision files)."""
    if any(k.startswith(OLD_SWIN_MARKER) for k in state) and is_swin(backbone_name):
        state = swin_from_old_layout(state)
    drop = classifier_prefixes(backbone_name)
    out = {k: v for k, v in state.items() if not k.startswith(drop)} if drop else dict(state)
    conv = first_conv(backbone_name)
    key = f"{conv}.weight"
    if conv and key in out and out[key].ndim == 4 and out[key].shape[1] != in_channels:
        from timm.models import adapt_input_conv  # timm is imported only for timm backbones

        out[key] = adapt_input_conv(in_channels, out[key])
    return out


def load_timm_weights(
    backbone: nn.Module, backbone_name: str, in_channels: int, path: str | Path, prefix: str = ""
) -> None:
    """Load a timm state dict from ``path`` into ``backbone``, the encoder of ``backbone_name`` for
    ``in_channels`` channels as ``create_timm`` builds it (native input size). The classifier is dropped
    (``timm_state``); any other key or shape that does not fit raises a ValueError listing them."""
    state = timm_state(read_state_dict(path, prefix), backbone_name, in_channels)
    problem = weights_mismatch(backbone_shapes(backbone), state)
    if problem:
        raise ValueError(
            f"{path}: the weights do not fit timm model {architecture(backbone_name)} ({problem}); check "
            "model.backbone and init.prefix (docs/weights.md)"
        )
    backbone.load_state_dict(state)


def start_backbone(name: str, in_channels: int, image_size: int, path: Path, init: str | WeightsInit) -> nn.Module:
    """The backbone ``name`` for ``image_size`` inputs, started from the weight file ``path`` of ``init``: a
    timm file is loaded at the architecture's native size, then the network is fitted to ``image_size``
    (``fit_input_size``: ViT position embeddings resampled); a torchvision file is loaded into the ResNet built
    for ``image_size`` (at least 96 px: the ImageNet stem it was trained with)."""
    prefix = init.prefix if isinstance(init, WeightsInit) else ""
    if isinstance(init, WeightsInit) and init.format == "timm":
        backbone = create_timm(name, in_channels)
        load_timm_weights(backbone, name, in_channels, path, prefix)
        return fit_input_size(backbone, name, image_size)
    backbone = build_backbone(name, in_channels, image_size)
    load_torchvision_weights(backbone, path, prefix)
    return backbone
