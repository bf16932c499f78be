"""The training input pipeline: uint8 images in memory, batches augmented on the device, no worker processes.

Images are decoded once (the cache), so an epoch only gathers uint8 rows, moves them to the device and
augments the whole batch at once with one affine ``grid_sample`` (random resized crop, flip, rotation) and
per-sample brightness/contrast. On a GPU this keeps augmentation off the CPU; on a CPU it avoids
per-image Python work. Each batch also carries the samples' dataset indices, which per-sample
algorithms (ELR's targets, DivideMix's division) need.

Resize then crop (Khanal et al. 2024, after the ImageNet recipe): where the stored images are larger than
the network input (256 px stored, 224 px input), a loader with ``crop`` cuts training batches at a random
position (drawn from the loader's seeded generator, before the augmentation) and evaluation batches at the
centre. ``Normalization`` standardises the pixels: ImageNet's per-channel statistics for an encoder that
starts from ImageNet weights, 0.5 / 0.25 otherwise (``normalization``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from study.models.timm_encoders import is_timm, mean_std


@dataclass(frozen=True)
class AugmentConfig:
    """Batch augmentation. ``scale`` is the crop's area range (as RandomResizedCrop); ``rotation`` degrees;
    ``jitter`` the brightness/contrast strength (Azizi et al. 2021 use 0.5 with rotation <= 45)."""

    scale: tuple[float, float] = (0.6, 1.0)
    flip: bool = True
    vflip: bool = False
    rotation: float = 0.0
    jitter: float = 0.0
    translate: float = 0.0
    size: int | None = None  # output side of the resized crop; None keeps the (cropped) input size
    #: side of a random crop (integer pixel offsets) cut before the rest, e.g. 224 of 256 px; None: no crop
    crop: int | None = None


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of pixels in [0, 1]; one value applies to every channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def stats(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) for images of ``channels`` channels. Three-channel statistics on a one-channel image
        take their means (a grey image is its RGB copy, and an ImageNet conv1 on one channel is the sum of
        its RGB filters: ``study.ssl.init.load_imagenet_weights``), e.g. ImageNet's 0.449 / 0.226."""
        if len(self.mean) in (1, channels):
            return self.mean, self.std
        if channels == 1:
            return (sum(self.mean) / len(self.mean),), (sum(self.std) / len(self.std),)
        raise ValueError(f"normalization of {len(self.mean)} channels cannot apply to {channels}-channel images")


#: the default: pixels in [0, 1] to roughly [-2, 2]
STANDARD = Normalization(mean=(0.5,), std=(0.25,))
#: ImageNet's RGB statistics (torchvision's ResNet weights were trained with them)
IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
#: pixels in [0, 1] as they are (SimCLR's TensorFlow checkpoints were trained on such inputs)
UNIT = Normalization(mean=(0.0,), std=(1.0,))
#: by name, as a weight file's ``inputs`` names them
NORMALIZATIONS = {"standard": STANDARD, "imagenet": IMAGENET, "unit": UNIT}


def normalization(init: Any, backbone: str | None = None) -> Normalization:
    """The input normalisation of an encoder by where it starts: ``imagenet`` weights get ImageNet's, a
    weight file (``study.ssl.init.WeightsInit``) the inputs it was trained on (its ``inputs``; ``model``: the
    mean and std of the ``timm:`` ``backbone``'s pretrained_cfg), anything else (random init) the standard one."""
    if init == "imagenet":
        return IMAGENET
    inputs = getattr(init, "inputs", "standard")
    if inputs == "model":
        return model_normalization(backbone)
    return NORMALIZATIONS[inputs]


def model_normalization(backbone: str | None) -> Normalization:
    """The statistics a timm architecture's weights were trained on (``pretrained_cfg`` mean and std)."""
    if backbone is None or not is_timm(backbone):
        raise ValueError(f"inputs: model needs a timm:<architecture> backbone, got {backbone!r}")
    mean, std = mean_std(backbone)
    return Normalization(mean=mean, std=std)


def to_float(x_uint8: torch.Tensor, norm: Normalization = STANDARD) -> torch.Tensor:
    """B x H x W x C uint8 -> B x C x H x W float, standardised with ``norm``."""
    x = x_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    mean, std = norm.stats(x.shape[1])
    shape = (1, len(mean), 1, 1)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s


def center_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """The central ``side`` x ``side`` window of a batch B x C x H x W (unchanged when not larger)."""
    if side >= x.shape[-1] and side >= x.shape[-2]:
        return x
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    return x[:, :, top : top + side, left : left + side]


def random_crop(x: torch.Tensor, side: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A ``side`` x ``side`` window of each sample of B x C x H x W at a random integer offset (one gather)."""
    b, _, h, w = x.shape
    if side >= h and side >= w:
        return x
    top = torch.randint(0, h - side + 1, (b,), generator=generator).to(x.device)
    left = torch.randint(0, w - side + 1, (b,), generator=generator).to(x.device)
    span = torch.arange(side, device=x.device)
    rows = (top[:, None] + span)[:, :, None]  # B x side x 1
    cols = (left[:, None] + span)[:, None, :]  # B x 1 x side
    batch = torch.arange(b, device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # B x C x side x side


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a float batch B x C x H x W with per-sample random affine crops, flips and jitter (after a
    random ``cfg.crop`` window, where set)."""
    if cfg.crop is not None:
        x = random_crop(x, cfg.crop, generator)
    b, device = x.shape[0], x.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device="cpu").to(device)

    area = cfg.scale[0] + (cfg.scale[1] - cfg.scale[0]) * rand(b)
    log_r = (rand(b) - 0.5) * 2 * math.log(4 / 3)  # aspect ratio in [3/4, 4/3]
    ratio = torch.exp(log_r)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - sx) * (rand(b) * 2 - 1) + cfg.translate * (rand(b) * 2 - 1)
    ty = (1 - sy) * (rand(b) * 2 - 1) + cfg.translate * (rand(b) * 2 - 1)
    if cfg.flip:
        sx = sx * torch.where(rand(b) < 0.5, -1.0, 1.0)
    if cfg.vflip:
        sy = sy * torch.where(rand(b) < 0.5, -1.0, 1.0)
    angle = (rand(b) * 2 - 1) * math.radians(cfg.rotation)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([sx * cos, -sy * sin, tx], dim=1),
            torch.stack([sx * sin, sy * cos, ty], dim=1),
        ],
        dim=1,
    )  # B x 2 x 3
    out_hw = [cfg.size, cfg.size] if cfg.size else list(x.shape[2:])
    grid = F.affine_grid(theta.to(x.dtype), [b, x.shape[1], *out_hw], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.jitter > 0:
        brightness = (rand(b, 1, 1, 1) * 2 - 1) * cfg.jitter
        contrast = 1 + (rand(b, 1, 1, 1) * 2 - 1) * cfg.jitter
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = (out - mean) * contrast + mean + brightness
    return out


class TensorLoader:
    """Batches ``(x, y, index)`` from uint8 images held as one tensor (optionally on the device).

    ``images``: N x H x W x C uint8 (NumPy or memmap), or N x D float rows (a frozen encoder's embeddings,
    which are batched as they are: no normalisation, crop or augmentation); ``labels``: N; ``indices``: the
    dataset indices of the rows (defaults to 0..N-1). Shuffling uses its own seeded generator, advanced each
    epoch. ``crop``: the network input side where the stored images are larger; a training loader (one with
    ``augment_cfg``, or ``random_crop``) cuts it at random positions from the same generator, any other at
    the centre.
    ``norm``: the input normalisation of the encoder. ``on_device``: hold the rows on ``device`` (the default);
    otherwise they stay in host memory and each batch, as it is drawn, is pinned and copied to the device
    without blocking the host (pinning the whole split would only copy it: an indexed batch of a pinned
    tensor is not pinned).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None,
        batch_size: int,
        shuffle: bool = False,
        augment_cfg: AugmentConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        drop_last: bool = False,
        indices: np.ndarray | None = None,
        channels_last: bool = False,
        crop: int | None = None,
        random_crop: bool = False,
        norm: Normalization = STANDARD,
        on_device: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.on_device = on_device
        store = self.device if on_device else torch.device("cpu")
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(store)
        n = self.images.shape[0]
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long).to(store)
        self.indices = torch.as_tensor(np.arange(n) if indices is None else np.asarray(indices), dtype=torch.long)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment_cfg = augment_cfg
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.crop = crop
        self.random_crop = random_crop or augment_cfg is not None
        self.norm = norm
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def train_inputs(self, raw: torch.Tensor, cfg: AugmentConfig | None = None) -> torch.Tensor:
        """Training inputs of uint8 rows B x H x W x C: normalised, a random ``crop`` window, augmented with
        ``cfg`` (default the loader's ``augment_cfg``; none when both are None)."""
        if raw.dim() == 2:  # embedding rows
            return raw
        cfg = cfg or self.augment_cfg
        x = to_float(raw, self.norm)
        if cfg is not None:
            return augment(x, replace(cfg, crop=self.crop or cfg.crop), self.generator)
        return x if self.crop is None else random_crop(x, self.crop, self.generator)

    def eval_inputs(self, raw: torch.Tensor) -> torch.Tensor:
        """Evaluation inputs of uint8 rows B x H x W x C: normalised, the central ``crop`` window."""
        if raw.dim() == 2:  # embedding rows
            return raw
        x = to_float(raw, self.norm)
        return x if self.crop is None else center_crop(x, self.crop)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            rows = order[i * self.batch_size : (i + 1) * self.batch_size]
            raw = self.take(rows)
            x = self.train_inputs(raw) if self.random_crop else self.eval_inputs(raw)
            if self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            y = None if self.labels is None else self.take_labels(rows)
            yield x, y, self.indices[rows].to(self.device)

    def take(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """The raw rows (positions in this loader) on the device, wherever the loader holds them."""
        return self._to_device(self.images[rows.to(self.images.device) if isinstance(rows, torch.Tensor) else rows])

    def take_labels(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """The labels of the rows (positions in this loader) on the device."""
        if self.labels is None:
            raise ValueError("this loader has no labels")
        return self._to_device(self.labels[rows.to(self.labels.device) if isinstance(rows, torch.Tensor) else rows])

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """A batch of host-held rows on the device: pinned, then copied without blocking the host."""
        if batch.device == self.device:
            return batch
        return batch.pin_memory().to(self.device, non_blocking=True)
