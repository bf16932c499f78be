"""Image decoders and generators scaled to the image size, for the generative methods (VAE, BigBiGAN)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class UpsamplingDecoder(nn.Module):
    """latent (B x L) -> image (B x C x S x S): a linear map to a 4 x 4 feature map, then nearest-neighbour
    x2 upsampling + 3x3 conv + BatchNorm + ReLU blocks until the side reaches S (widths halve towards
    ``width``), a 3x3 conv to C channels, and a resize to exactly S where S is not 4·2^k."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, width: int = 32) -> None:
        super().__init__()
        self.image_size = image_size
        n_up = max(0, math.ceil(math.log2(max(image_size, 4) / 4)))
        chans = [width * 2 ** min(n_up - i, 3) for i in range(n_up + 1)]  # e.g. 8w, 4w, 2w, w, w ...
        self.fc = nn.Linear(latent_dim, chans[0] * 16)
        self.c0 = chans[0]
        blocks: list[nn.Module] = [nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True)]
        for a, b in zip(chans[:-1], chans[1:]):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(a, b, 3, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(inplace=True),
            ]
        blocks.append(nn.Conv2d(chans[-1], out_channels, 3, padding=1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = self.blocks(self.fc(z).view(z.shape[0], self.c0, 4, 4))
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x
