"""Jigsaw puzzles (Noroozi and Favaro 2016, Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles)."""

from __future__ import annotations

import math
from typing import Self

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from study.data.pipeline import AugmentConfig
from study.ssl.base import CropMin, LearningRate, Optimizer, SSLMethod, WeightDecay, mlp
from study.ssl.permutations import max_hamming_permutations
from study.ssl.transforms import standardise_per_sample


def make_tiles(x: torch.Tensor, grid: int, tile: int, generator: torch.Generator) -> torch.Tensor:
    """Cut B x C x H x W into grid x grid cells and take a random ``tile`` x ``tile`` crop inside each cell
    (the gap between crops hides edge continuity): B x grid² x C x tile x tile, in row-major cell order."""
    b, c, h, w = x.shape
    cell_h, cell_w = h // grid, w // grid
    tiles = []
    for r in range(grid):
        for q in range(grid):
            oy = torch.randint(0, cell_h - tile + 1, (b,), generator=generator)
            ox = torch.randint(0, cell_w - tile + 1, (b,), generator=generator)
            ys = (r * cell_h + oy)[:, None] + torch.arange(tile)  # B x tile
            xs = (q * cell_w + ox)[:, None] + torch.arange(tile)
            ys, xs = ys.to(x.device), xs.to(x.device)
            rows = x.gather(2, ys[:, None, :, None].expand(b, c, tile, w))  # B x C x tile x W
            tiles.append(rows.gather(3, xs[:, None, None, :].expand(b, c, tile, tile)))
    return torch.stack(tiles, dim=1)


class Jigsaw(SSLMethod):
    """The image is cut into a 3 x 3 grid of tiles, shuffled by one permutation of a fixed set chosen for
    maximal Hamming distance; a siamese network (the shared backbone on every tile, features
    concatenated in the shuffled order, then an MLP) predicts which permutation was used.

    Paper defaults: 1000 permutations, tiles cropped inside their cell, each tile normalised on its own,
    SGD lr 0.01. Tiles are ``tile_fraction`` of a cell (the paper: 64 px of 85). Views: crop (area
    0.6-1) and flip of the whole image; per-tile normalisation removes brightness and contrast cues.
    """

    name = "jigsaw"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 0.63
    takes_tiles = True

    class Hparams(SSLMethod.Hparams):
        optimizer: Optimizer = "sgd"
        lr: LearningRate = 0.01
        weight_decay: WeightDecay = 5e-4
        grid: int = Field(
            3,
            ge=2,
            le=3,
            description="tiles per side (3: the paper's 3 x 3; larger grids have too many permutations to choose from)",
        )
        num_permutations: int = Field(
            1000, ge=2, description="size of the permutation set, the classes (at most (grid²)!)"
        )
        tile_fraction: float = Field(0.75, gt=0, le=1, description="tile side as a fraction of its cell's")
        hidden_dim: int = Field(512, ge=1, description="hidden width of the MLP on the tiles' features")
        crop_min: CropMin = 0.6

        @model_validator(mode="after")
        def _enough_permutations(self) -> Self:
            available = math.factorial(self.grid**2)
            if self.num_permutations > available:
                raise ValueError(
                    f"num_permutations {self.num_permutations} is more than the {available} "
                    f"permutations of a {self.grid} x {self.grid} grid"
                )
            return self

    hp: Hparams
    perms: torch.Tensor

    def build(self) -> None:
        n = self.hp.grid**2
        perms = max_hamming_permutations(n, self.hp.num_permutations)
        self.register_buffer("perms", torch.as_tensor(perms), persistent=False)
        self.classifier = mlp([n * self.feature_dim, self.hp.hidden_dim, self.hp.num_permutations])

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(self.hp.crop_min, 1.0), flip=True)

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        g = self.hp.grid
        b, _c, h, _ = x.shape
        cell = h // g
        tile = max(min(cell, 4), int(cell * self.hp.tile_fraction))  # >= 4 px, so CNN backbones can pool
        tiles = make_tiles(self.view(x), g, tile, self.generator)  # B x g² x C x t x t
        labels = torch.randint(0, self.perms.shape[0], (b,), generator=self.generator).to(x.device)
        order = self.perms[labels]  # B x g²: position j shows tile order[j]
        shuffled = tiles.gather(1, order[:, :, None, None, None].expand_as(tiles))
        flat = shuffled.flatten(0, 1)  # B·g² x C x t x t
        feats = self.backbone(standardise_per_sample(flat)).view(b, -1)  # B x g²·D
        logits = self.classifier(feats)
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.argmax(1) == labels).float().mean()}
