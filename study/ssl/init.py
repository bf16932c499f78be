"""Initialisations without SSL training: ``random`` (seeded, untrained) and ``imagenet`` (torchvision's
supervised ImageNet ResNet-18 weights, He et al. 2016), and the weight loader that "ImageNet + SSL" uses."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from study.ssl.base import SSLMethod

#: torchvision's file name for ResNet18_Weights.IMAGENET1K_V1
TORCHVISION_FILE = "resnet18-f37072fd.pth"
ENV_VAR = "STUDY_IMAGENET_WEIGHTS"


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


def load_imagenet_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load torchvision ResNet-18 ImageNet weights into a ``resnet18`` backbone built with the ImageNet stem.

    The classifier (fc) is dropped; for a grayscale backbone the first convolution's RGB filters are summed
    over their input channels (the usual conversion: a gray image then gives the response of its RGB copy).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv1 = backbone.get_parameter("conv1.weight")
    w = state.get("conv1.weight")
    if w is None or w.shape[2:] != conv1.shape[2:]:
        raise ValueError(
            f"{path}: not a torchvision ResNet-18 ImageNet state dict (conv1 "
            f"{None if w is None else tuple(w.shape)} vs the backbone's {tuple(conv1.shape)})"
        )
    if conv1.shape[1] == 1 and w.shape[1] == 3:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the ResNet-18 backbone (missing {missing}, unexpected {unexpected})"
        )
