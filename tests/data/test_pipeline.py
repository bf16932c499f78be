"""The tensor input pipeline: every sample once per epoch with its index, augmentation keeps shapes."""

from __future__ import annotations

import numpy as np
import torch

from study.data.pipeline import AugmentConfig, TensorLoader, augment, to_float


def test_loader_covers_each_sample_once_with_its_index():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(4, 1).repeat(4, 2)
    labels = np.arange(10) % 3
    loader = TensorLoader(images, labels, batch_size=4, shuffle=True, seed=1, indices=np.arange(100, 110))
    seen = []
    for x, y, idx in loader:
        assert x.shape[1:] == (1, 4, 4)
        pixel = torch.round((x[:, 0, 0, 0] * 0.25 + 0.5) * 255).long()
        assert torch.equal(pixel, idx - 100)  # the index names the row it came from
        assert torch.equal(y, (idx - 100) % 3)
        seen += idx.tolist()
    assert sorted(seen) == list(range(100, 110))
    assert len(loader) == 3


def test_shuffle_is_seeded_and_advances():
    images = np.zeros((8, 2, 2, 1), np.uint8)
    orders = [[i.tolist() for _, _, i in TensorLoader(images, None, 8, shuffle=True, seed=s)] for s in (0, 0, 1)]
    assert orders[0] == orders[1] != orders[2]
    loader = TensorLoader(images, None, 8, shuffle=True, seed=0)
    assert [b[2].tolist() for b in loader] != [b[2].tolist() for b in loader]


def test_augment_shapes_and_identity_limit():
    x = to_float(torch.randint(0, 255, (6, 16, 16, 3), dtype=torch.uint8))
    out = augment(x, AugmentConfig(scale=(0.5, 1.0), rotation=45, jitter=0.5))
    assert out.shape == x.shape and torch.isfinite(out).all()
    same = augment(x, AugmentConfig(scale=(1.0, 1.0), flip=False))
    # a full-area crop with aspect ratio near 1 stays close to the input
    assert (same - x).abs().mean() < (out - x).abs().mean()


def test_crop_size_and_center_crop():
    images = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    x, _, _ = next(iter(TensorLoader(images, None, 5, augment_cfg=AugmentConfig(size=24))))
    assert x.shape == (5, 3, 24, 24)
    x, _, _ = next(iter(TensorLoader(images, None, 5, crop=24)))
    full = to_float(torch.from_numpy(images))
    assert torch.equal(x, full[:, :, 4:28, 4:28])
