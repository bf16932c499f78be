"""The training input pipeline: uint8 images in memory, batches augmented on the device, no worker processes.

Images are decoded once (the cache), so an epoch only gathers uint8 rows, moves them to the device and
augments the whole batch at once with one affine ``grid_sample`` (random resized crop, flip, rotation) and
per-sample brightness/contrast. On a GPU this keeps augmentation off the CPU; on a CPU it avoids
per-image Python work. Each batch also carries the samples' dataset indices, which per-sample
algorithms (ELR's targets, DivideMix's division) need.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


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
    size: int | None = None  # output side (e.g. 224 crops of 256 px images); None keeps the input size


def to_float(x_uint8: torch.Tensor, mean: float = 0.5, std: float = 0.25) -> torch.Tensor:
    """B x H x W x C uint8 -> B x C x H x W float, roughly standardised."""
    x = x_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a float batch B x C x H x W with per-sample random affine crops, flips and jitter."""
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

    ``images``: N x H x W x C uint8 (NumPy or memmap); ``labels``: N; ``indices``: the dataset indices of
    the rows (defaults to 0..N-1). Shuffling uses its own seeded generator, advanced each epoch.
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
        center_crop: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        n = self.images.shape[0]
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long).to(self.device)
        self.indices = torch.as_tensor(np.arange(n) if indices is None else np.asarray(indices), dtype=torch.long)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment_cfg = augment_cfg
        self.drop_last = drop_last
        self.channels_last = channels_last
        self.center_crop = center_crop
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        n = self.images.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for i in range(len(self)):
            rows = order[i * self.batch_size : (i + 1) * self.batch_size]
            rows_d = rows.to(self.device)
            x = to_float(self.images[rows_d])
            if self.augment_cfg is not None:
                x = augment(x, self.augment_cfg, self.generator)
            elif self.center_crop is not None and self.center_crop < x.shape[-1]:
                top = (x.shape[-2] - self.center_crop) // 2
                left = (x.shape[-1] - self.center_crop) // 2
                x = x[:, :, top : top + self.center_crop, left : left + self.center_crop]
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = None if self.labels is None else self.labels[rows_d]
            yield x, y, self.indices[rows].to(self.device)
