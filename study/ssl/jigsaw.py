"""Jigsaw puzzles (Noroozi and Favaro 2016, Unsupervised Learning of Visual Representations by Solving
Jigsaw Puzzles)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.data.pipeline import AugmentConfig
from study.ssl.base import SSLMethod, mlp
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
    defaults = dict(optimizer="sgd", lr=0.01, weight_decay=5e-4, momentum=0.9, grid=3, num_permutations=1000,
                    tile_fraction=0.75, hidden_dim=512, crop_min=0.6)

    def build(self) -> None:
        n = self.hp["grid"] ** 2
        perms = max_hamming_permutations(n, self.hp["num_permutations"])
        self.register_buffer("perms", torch.as_tensor(perms), persistent=False)
        self.classifier = mlp([n * self.feature_dim, self.hp["hidden_dim"], self.hp["num_permutations"]])

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(self.hp["crop_min"], 1.0), flip=True)

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        g = self.hp["grid"]
        b, c, h, _ = x.shape
        cell = h // g
        tile = max(min(cell, 4), int(cell * self.hp["tile_fraction"]))  # >= 4 px, so CNN backbones can pool
        tiles = make_tiles(self.view(x), g, tile, self.generator)  # B x g² x C x t x t
        labels = torch.randint(0, self.perms.shape[0], (b,), generator=self.generator).to(x.device)
        order = self.perms[labels]  # B x g²: position j shows tile order[j]
        shuffled = tiles.gather(1, order[:, :, None, None, None].expand_as(tiles))
        flat = shuffled.flatten(0, 1)  # B·g² x C x t x t
        feats = self.backbone(standardise_per_sample(flat)).view(b, -1)  # B x g²·D
        logits = self.classifier(feats)
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.argmax(1) == labels).float().mean()}
