"""Backbones from timm (Wightman, pytorch-image-models) by name: ``model.backbone: "timm:<architecture>"``.

They are here for external encoders (Dedieu et al. 2024, arXiv 2404.07605: frozen foundation encoders such as
RetCCL, CTransPath, Phikon, Lunit's), whose weights come from a local file (``study.ssl.init``,
``format: timm``) and whose architectures timm has or this project registers with it (CTransPath, a Swin-T with a
convolutional stem: ``timm:ctranspath``, ``study.models.ctranspath``). Nothing is downloaded: models are always
created with ``pretrained=False``; the ``pretrained_cfg`` read here (input size, mean and std, the names of the
classifier and of the first convolution) is metadata that timm ships with its code (or ``study.models.ctranspath``
declares).

timm is imported only where such a name is used (``_timm``, which also registers ``ctranspath``), so
validating or running a spec with the project's own backbones does not pay for importing it.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from types import ModuleType
from typing import Any

import torch
from torch import nn

#: what marks a timm architecture in ``model.backbone``
PREFIX = "timm:"
#: the input side assumed when a pretrained_cfg gives none (timm's own default)
DEFAULT_SIZE = 224
#: how many close names an unknown architecture's error suggests
SUGGESTIONS = 5


def _timm() -> ModuleType:
    import timm  # heavy (registers every architecture): only when a timm: backbone is named

    from study.models import ctranspath  # noqa: F401  registers timm:ctranspath with timm, once

    return timm


def is_timm(name: str) -> bool:
    """Whether ``name`` (a ``model.backbone`` value) names a timm architecture."""
    return name.startswith(PREFIX)


def architecture(name: str) -> str:
    """timm's name of a ``timm:<architecture>`` backbone."""
    return name[len(PREFIX) :] if is_timm(name) else name


def check_timm_name(name: str) -> str:
    """``name`` when timm knows its architecture (``timm.is_model``); a ValueError with close names and how to
    list the others otherwise."""
    arch = architecture(name)
    timm = _timm()
    if arch and timm.is_model(arch):
        return name
    close = difflib.get_close_matches(arch, timm.list_models(), n=SUGGESTIONS)
    hint = f"close names: {', '.join(PREFIX + c for c in close)}; " if close else ""
    raise ValueError(
        f"timm has no architecture {arch!r} (timm {timm.__version__}); {hint}list them with "
        "python -c \"import timm; print(timm.list_models('vit_*'))\" and write model.backbone: timm:<name>"
    )


@lru_cache(maxsize=32)
def pretrained_cfg(name: str) -> dict[str, Any]:
    """The architecture's default ``pretrained_cfg`` (timm's metadata: no weights are read or downloaded)."""
    arch = architecture(name)
    cfg = _timm().models.get_pretrained_cfg(arch)
    if cfg is not None:
        return dict(cfg.to_dict())
    with torch.device("meta"):  # an architecture without registered cfgs: the one its model carries
        return dict(_timm().create_model(arch, pretrained=False, num_classes=0).pretrained_cfg)


def native_size(name: str) -> int:
    """The input side the architecture's weights are made for (``pretrained_cfg["input_size"]``): the side a
    weight file is loaded at, and the study's resolution when ``model.resolution`` is unset."""
    size = pretrained_cfg(name).get("input_size") or (3, DEFAULT_SIZE, DEFAULT_SIZE)
    return int(size[-1])


def mean_std(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the pixels (in [0, 1]) the architecture's weights were trained on (``pretrained_cfg``):
    ImageNet's for most, 0.5 / 0.5 for timm's original ViTs."""
    cfg = pretrained_cfg(name)
    return tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))


def classifier_prefixes(name: str) -> tuple[str, ...]:
    """Key prefixes of the architecture's classifier (``pretrained_cfg["classifier"]``: ``fc.``, ``head.``,
    ``head.fc.``...), which an encoder (created with ``num_classes=0``) does not have."""
    classifier = pretrained_cfg(name).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{c}." for c in names)


def first_conv(name: str) -> str | None:
    """Name of the architecture's first convolution (``pretrained_cfg["first_conv"]``), whose input channels
    a grayscale encoder adapts."""
    conv = pretrained_cfg(name).get("first_conv")
    return conv if isinstance(conv, str) else None


def is_swin(name: str) -> bool:
    """Whether the architecture is a Swin Transformer (Liu et al. 2021) of timm's ``swin_transformer`` module
    or CTransPath (built on it): the architectures whose checkpoints in timm 0.5.4's layout ``study.ssl.init``
    converts (``swin_from_old_layout``)."""
    timm = _timm()
    arch = architecture(name)
    if not timm.is_model(arch):
        return False
    from timm.models import swin_transformer

    from study.models import ctranspath

    return timm.models.model_entrypoint(arch).__module__ in (swin_transformer.__name__, ctranspath.__name__)


def create_timm(name: str, in_channels: int) -> nn.Module:
    """The architecture without its classifier (``num_classes=0``: ``forward`` returns pooled features), at its
    native input size, randomly initialised; ``feature_dim`` is its ``num_features``. Weight files are loaded
    into this, before ``fit_input_size``."""
    model = _timm().create_model(architecture(name), pretrained=False, num_classes=0, in_chans=in_channels)
    model.feature_dim = int(model.num_features)
    return model


def fit_input_size(model: nn.Module, name: str, image_size: int) -> nn.Module:
    """``model`` made to take ``image_size`` inputs. Convolutional networks take any size as they are; ViT
    and Swin (``set_input_size``) resample their position embeddings and rebuild their attention masks for the
    new grid, as timm does for pretrained weights at another size; an architecture with a fixed input size and
    no such method is refused with its size."""
    if image_size == native_size(name):
        return model
    resize = getattr(model, "set_input_size", None)
    if callable(resize):
        resize(img_size=(image_size, image_size))
    elif pretrained_cfg(name).get("fixed_input_size"):
        raise ValueError(
            f"timm model {architecture(name)} takes {native_size(name)} px inputs only, not {image_size} px; set "
            f"model.resolution: {native_size(name)} (or leave it unset)"
        )
    return model


def timm_backbone(name: str, in_channels: int = 3, image_size: int = DEFAULT_SIZE) -> nn.Module:
    """A ``timm:<architecture>`` backbone for ``build_backbone``: ``create_timm`` then ``fit_input_size``, so a
    backbone rebuilt for a stored encoder has the shapes of the one a weight file was loaded into."""
    return fit_input_size(create_timm(name, in_channels), name, image_size)


def check_input_size(name: str, image_size: int) -> None:
    """A ValueError when the architecture cannot take ``image_size`` inputs (built on the meta device: no
    memory, no weights)."""
    with torch.device("meta"):
        timm_backbone(name, 3, image_size)
