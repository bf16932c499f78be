"""JigMag, the magnification puzzle of Self-Path (Koohbanani et al. 2021, Self-Path: Self-Supervision for
Classification of Pathology Images With Limited Annotations)."""

from __future__ import annotations

import itertools
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from study.data.pipeline import AugmentConfig
from study.ssl.base import Jitter, SSLMethod
from study.ssl.transforms import crop_resize

#: a magnification level: a crop side as a fraction of the image side
Zoom = Annotated[float, Field(gt=0, le=1)]


class JigMag(SSLMethod):
    """Tiles of one region at several magnifications (concentric crops whose side halves from level to
    level, as 5x/10x/20x/40x fields of view do), resized to one tile size, placed in a 2 x 2 grid in a
    shuffled order; the backbone sees the composed image and a linear head predicts the order, one class
    per permutation of the four levels (all 4! = 24). Self-Path trains it as an auxiliary task beside the
    others; here it is trained alone, as Khanal et al. 2024 do.

    ``zooms`` are the crop sides as fractions of the image side; the regions are nested and the finest
    one's centre is random, so it can fall anywhere in the image. Adam, lr 1e-3. Views: flip and
    brightness/contrast jitter 0.2.
    """

    name = "jigmag"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 1.26
    takes_tiles = True

    class Hparams(SSLMethod.Hparams):
        zooms: tuple[Zoom, ...] = Field(
            (1.0, 0.5, 0.25, 0.125),
            min_length=4,
            max_length=4,
            description="crop sides of the four magnification levels, fractions of the image side in (0, 1]",
        )
        jitter: Jitter = 0.2

    hp: Hparams
    perms: torch.Tensor

    def build(self) -> None:
        levels = len(self.hp.zooms)  # 4, one per slot of the 2 x 2 grid
        self.register_buffer("perms", torch.tensor(list(itertools.permutations(range(levels)))), persistent=False)
        self.classifier = nn.Linear(self.feature_dim, self.perms.shape[0])

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(1.0, 1.0), flip=True, jitter=self.hp.jitter)

    def puzzle(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Composed 2 x 2 magnification grids (B x C x H x W, H and W even-rounded to the input) and labels."""
        b, _c, h, _w = x.shape
        half = max(1, h // 2)
        zooms = self.hp.zooms
        z_min = min(zooms)
        # nested regions: the finest crop's centre is uniform over where it fits; a coarser crop of side z
        # is centred at fine_centre * (1 - z) / (1 - z_min), which contains every finer crop (normalised coords)
        fine_centre = (torch.rand(b, 2, generator=self.generator) * 2 - 1) * (1 - z_min)
        tiles = []
        for z in zooms:
            cz = fine_centre * ((1 - z) / (1 - z_min) if z_min < 1 else 0.0)
            side = torch.full((b,), z)
            tiles.append(crop_resize(x, cz.to(x.device), side.to(x.device), half))  # B x C x half x half
        tiles_t = torch.stack(tiles, dim=1)  # B x 4 x C x half x half
        labels = torch.randint(0, self.perms.shape[0], (b,), generator=self.generator).to(x.device)
        order = self.perms[labels]  # slot j shows magnification order[j]
        shuffled = tiles_t.gather(1, order[:, :, None, None, None].expand_as(tiles_t))
        top = torch.cat([shuffled[:, 0], shuffled[:, 1]], dim=3)
        bottom = torch.cat([shuffled[:, 2], shuffled[:, 3]], dim=3)
        return torch.cat([top, bottom], dim=2), labels  # B x C x 2half x 2half

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        grids, labels = self.puzzle(self.view(x))
        logits = self.classifier(self.backbone(grids))  # B x 24
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.argmax(1) == labels).float().mean()}
