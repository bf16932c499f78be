"""Views for SSL on medical images: batched, on the device, built on ``study.data.pipeline.augment``.

Azizi et al. 2021 (Big Self-Supervised Models Advance Medical Image Classification) use random crop,
flip, rotation up to 45 degrees and colour jitter of strength 0.5, and drop Gaussian blur, which erases
the fine texture X-ray findings live in; these are the contrastive defaults here. Grayscale images get
brightness/contrast jitter only; RGB images (histopathology, dermatology) also get saturation jitter
and random grayscale (SimCLR's colour distortion, Chen et al. 2020), so a contrastive encoder cannot
match views by their colour histogram alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.data.pipeline import AugmentConfig, augment


def _rand(generator: torch.Generator | None, device: torch.device, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=generator, device="cpu").to(device)


def view(
    x: torch.Tensor,
    cfg: AugmentConfig,
    generator: torch.Generator | None = None,
    saturation: float = 0.0,
    grayscale_p: float = 0.0,
) -> torch.Tensor:
    """One random view of a float batch B x C x H x W (geometry and brightness/contrast from ``cfg``)."""
    out = augment(x, cfg, generator)
    if out.shape[1] == 3 and (saturation > 0 or grayscale_p > 0):
        b = out.shape[0]
        gray = out.mean(dim=1, keepdim=True)
        s = 1 + (_rand(generator, out.device, b, 1, 1, 1) * 2 - 1) * saturation
        s = torch.where(_rand(generator, out.device, b, 1, 1, 1) < grayscale_p, torch.zeros_like(s), s)
        out = gray + (out - gray) * s
    return out


def crop_resize(x: torch.Tensor, centre: torch.Tensor, side: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops of a batch, resized to ``size`` px: ``centre`` B x 2 (x, y) and ``side`` B (fractions of
    the image width) in normalised [-1, 1] coordinates; one affine ``grid_sample`` for the batch."""
    b = x.shape[0]
    zeros = torch.zeros_like(side)
    theta = torch.stack(
        [
            torch.stack([side, zeros, centre[:, 0]], dim=1),
            torch.stack([zeros, side, centre[:, 1]], dim=1),
        ],
        dim=1,
    ).to(x.dtype)  # B x 2 x 3
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def standardise_per_sample(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each sample to zero mean and unit variance (Noroozi & Favaro 2016 normalise every tile alone, so
    the puzzle cannot be solved from brightness continuity between tiles)."""
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + eps)
