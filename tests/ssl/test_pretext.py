"""Pretext-task inputs: rotation labels, jigsaw tiles, magnification puzzles."""

from __future__ import annotations

import torch

from study.models import build_backbone
from study.ssl.jigmag import JigMag
from study.ssl.jigsaw import make_tiles
from study.ssl.rotation import rotate_batch


def test_rotate_batch():
    x = torch.arange(2 * 9, dtype=torch.float32).view(2, 1, 3, 3)
    views, labels = rotate_batch(x)
    assert views.shape == (8, 1, 3, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert torch.equal(views[2], torch.rot90(x[0], 1, dims=(1, 2)))


def test_tiles_come_from_their_cells():
    x = torch.zeros(1, 1, 12, 12)
    for r in range(3):
        for c in range(3):
            x[:, :, r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4] = r * 3 + c
    tiles = make_tiles(x, 3, 3, torch.Generator().manual_seed(0))
    assert tiles.shape == (1, 9, 1, 3, 3)
    for k in range(9):
        assert (tiles[0, k] == k).all()


def test_jigmag_puzzle_holds_the_magnifications_in_the_labelled_order():
    m = JigMag(build_backbone("small_cnn", 1, 16), 1, 16, zooms=(1.0, 0.5, 0.25, 0.125))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    x = (xx + 2 * yy)[None, None].repeat(4, 1, 1, 1)  # a ramp: a tile's spread shrinks with magnification
    grids, labels = m.puzzle(x)
    assert grids.shape == (4, 1, 16, 16)
    for b in range(4):
        slots = [grids[b, 0, :8, :8], grids[b, 0, :8, 8:], grids[b, 0, 8:, :8], grids[b, 0, 8:, 8:]]
        spread = torch.tensor([float(s.max() - s.min()) for s in slots])
        order = m.perms[labels[b]]  # slot j shows magnification level order[j]; larger zoom, larger spread
        assert torch.equal(torch.argsort(spread, descending=True), torch.argsort(order))
