"""Resize then crop (Khanal et al. 2024: 224 px crops of 256 px images) and the input normalisation of
ImageNet-initialised encoders, against hand-sliced windows and hand-computed pixel values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data.pipeline import (
    IMAGENET,
    STANDARD,
    AugmentConfig,
    TensorLoader,
    center_crop,
    normalization,
    random_crop,
    to_float,
)


def _images(n: int = 6, side: int = 12, channels: int = 1) -> np.ndarray:
    """Each pixel's value is unique within an image: row * side + column (+ image offset), so a crop's top
    left pixel names its offset."""
    base = np.arange(side * side, dtype=np.int64).reshape(side, side)
    out = np.stack([(base + i) % 256 for i in range(n)]).astype(np.uint8)
    return np.repeat(out[..., None], channels, axis=3)


def _offsets(x: torch.Tensor, images: np.ndarray) -> list[tuple[int, int]]:
    """(top, left) of each crop, read from its top-left pixel (STANDARD normalisation undone)."""
    side = images.shape[1]
    out = []
    for i in range(x.shape[0]):
        v = int(torch.round((x[i, 0, 0, 0] * 0.25 + 0.5) * 255)) - i
        out.append(divmod(v, side))
    return out


def test_eval_loader_centre_crop_equals_the_hand_sliced_centre():
    images = _images(side=12)  # 12 px stored, 8 px input: the window starts at (2, 2)
    x, _, _ = next(iter(TensorLoader(images, None, 6, crop=8)))
    assert x.shape == (6, 1, 8, 8)
    expected = (torch.from_numpy(images[:, 2:10, 2:10, :]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
    assert torch.equal(x, expected)
    odd = center_crop(torch.zeros(1, 3, 9, 9), 4)  # (9 - 4) // 2 = 2: as torchvision rounds the offset down
    assert odd.shape == (1, 3, 4, 4)


def test_random_crops_have_the_input_size_vary_and_repeat_with_the_seed():
    images = _images(n=6, side=12)

    def crops(seed: int) -> list[tuple[int, int]]:
        loader = TensorLoader(images, None, 6, crop=8, random_crop=True, seed=seed)
        x, _, idx = next(iter(loader))
        assert x.shape == (6, 1, 8, 8)
        offsets = _offsets(x, images)
        for (top, left), i in zip(offsets, idx.tolist()):  # each crop is the exact window of its image
            window = torch.from_numpy(images[i, top : top + 8, left : left + 8, 0]).float()
            assert torch.equal(torch.round((x[i, 0] * 0.25 + 0.5) * 255), window)
        return offsets

    first, again, other = crops(3), crops(3), crops(4)
    assert first == again
    assert len(set(first)) > 1 and first != other
    assert all(0 <= t <= 4 and 0 <= l_ <= 4 for t, l_ in first)


def test_random_crop_comes_before_the_augmentation_and_keeps_the_input_size():
    images = _images(n=4, side=16, channels=3)
    loader = TensorLoader(images, None, 4, augment_cfg=AugmentConfig(scale=(0.5, 1.0), rotation=10), crop=12)
    x, _, _ = next(iter(loader))
    assert x.shape == (4, 3, 12, 12)
    plain = TensorLoader(images, None, 4, crop=12)  # no augmentation: evaluation, the centre
    assert next(iter(plain))[0].shape == (4, 3, 12, 12)
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    xa = random_crop(to_float(torch.from_numpy(images)), 12, gen_a)
    xb = random_crop(to_float(torch.from_numpy(images)), 12, gen_b)
    assert torch.equal(xa, xb)


def test_imagenet_normalisation_per_channel_and_for_one_channel():
    px = torch.tensor([[[[255, 0, 51]]]], dtype=torch.uint8)  # 1 x 1 x 1 x 3: (1.0, 0.0, 0.2)
    x = to_float(px, IMAGENET)
    expected = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert x.shape == (1, 3, 1, 1)
    assert torch.allclose(x.flatten(), torch.tensor(expected), atol=1e-6)
    gray = to_float(torch.tensor([[[[102]]]], dtype=torch.uint8), IMAGENET)  # 0.4: ImageNet's mean statistics
    mean, std = (0.485 + 0.456 + 0.406) / 3, (0.229 + 0.224 + 0.225) / 3
    assert mean == pytest.approx(0.449) and std == pytest.approx(0.226)
    assert float(gray) == pytest.approx((0.4 - mean) / std, abs=1e-6)
    assert float(to_float(torch.tensor([[[[102]]]], dtype=torch.uint8))) == pytest.approx((0.4 - 0.5) / 0.25)
    assert normalization("imagenet") is IMAGENET and normalization("random") is STANDARD
    with pytest.raises(ValueError, match="cannot apply"):
        to_float(torch.zeros(1, 1, 1, 2, dtype=torch.uint8), IMAGENET)


def test_loader_normalises_with_its_norm_in_training_and_evaluation():
    images = np.full((2, 4, 4, 3), 255, np.uint8)
    for random in (False, True):
        x, _, _ = next(iter(TensorLoader(images, None, 2, norm=IMAGENET, crop=2, random_crop=random)))
        assert x.shape == (2, 3, 2, 2)
        assert torch.allclose(x[0, :, 0, 0], (1 - torch.tensor(IMAGENET.mean)) / torch.tensor(IMAGENET.std))


def test_imagenet_initialised_encoders_get_imagenet_normalisation_in_trials_and_pretraining():
    from study.experiment import input_normalization
    from study.models import build_backbone
    from study.ssl.base import SSLMethod, train_ssl
    from study.tuning.plan import Point
    from study.tuning.spec import parse_spec

    spec = parse_spec(
        {
            "name": "norm",
            "datasets": [{"name": "synthetic"}],
            "noise": {"kinds": ["symmetric"], "rates": [0.0]},
            "ssl": [{"method": "random"}, {"method": "imagenet"}, {"method": "simclr", "init": "imagenet"}],
            "lnl": [{"algorithm": "ce"}],
            "seeds": [0],
        }
    )
    norms = [input_normalization(spec, Point("synthetic", "symmetric", 0.0, s.key, "ce", 0)) for s in spec.ssl]
    assert norms == [STANDARD, IMAGENET, IMAGENET]

    seen: list[torch.Tensor] = []

    class Probe(SSLMethod):  # records the pretraining inputs
        name = ""

        def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
            seen.append(x[:, :, 0, 0])
            return {"loss": (self.backbone(x) ** 2).mean()}

    white = np.full((4, 8, 8, 3), 255, np.uint8)
    method = Probe(build_backbone("small_cnn", 3, 8), 3, 8)
    train_ssl(method, white, 1, 4, torch.device("cpu"), 0, norm=IMAGENET)
    assert method.norm is IMAGENET
    assert torch.allclose(seen[0][0], (1 - torch.tensor(IMAGENET.mean)) / torch.tensor(IMAGENET.std))


def test_a_weight_file_gets_the_inputs_it_was_trained_on():
    from study.data.pipeline import IMAGENET, STANDARD, UNIT, normalization
    from study.ssl.init import WeightsInit

    assert normalization(WeightsInit(weights="w.pt")) is IMAGENET  # torchvision's supervised weights
    assert normalization(WeightsInit(weights="w.pt", inputs="unit")) is UNIT  # a converted SimCLR file
    assert normalization(WeightsInit(weights="w.pt", inputs="standard")) is STANDARD
    assert normalization("imagenet") is IMAGENET and normalization("random") is STANDARD
    assert UNIT.stats(1) == ((0.0,), (1.0,))
