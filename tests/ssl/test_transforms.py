"""SSL views: shapes kept for grayscale and RGB, colour distortion only where there is colour, crops exact."""

from __future__ import annotations

import torch

from study.data.pipeline import AugmentConfig
from study.ssl.transforms import crop_resize, standardise_per_sample, view


def test_view_shapes_and_grayscale():
    g = torch.Generator().manual_seed(0)
    cfg = AugmentConfig(scale=(0.08, 1.0), rotation=45.0, jitter=0.5)
    gray = torch.randn(4, 1, 16, 16)
    assert view(gray, cfg, g, saturation=0.5, grayscale_p=1.0).shape == gray.shape
    rgb = torch.randn(4, 3, 16, 16)
    out = view(rgb, AugmentConfig(scale=(1.0, 1.0), flip=False), g, grayscale_p=1.0)
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-6) and torch.allclose(out[:, 1], out[:, 2], atol=1e-6)


def test_crop_resize_identity_and_quadrant():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    same = crop_resize(x, torch.zeros(1, 2), torch.ones(1), 4)
    assert torch.allclose(same, x, atol=1e-5)
    top_left = crop_resize(x, torch.tensor([[-0.5, -0.5]]), torch.tensor([0.5]), 2)
    assert torch.allclose(top_left, torch.tensor([[[[0.0, 1.0], [4.0, 5.0]]]]), atol=1e-5)


def test_standardise_per_sample():
    x = torch.randn(3, 2, 5, 5) * 4 + 7
    y = standardise_per_sample(x)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(dim=(1, 2, 3)), torch.ones(3), atol=1e-3)
