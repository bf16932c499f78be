"""Every registered SSL method: a few steps on tiny batches (grayscale and RGB) give finite losses, and on a
fixed batch with fixed views the loss falls over 20 steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data.pipeline import to_float
from study.models import build_backbone
from study.ssl import METHODS
from tests.ssl.conftest import SMALL_HPARAMS

TRAINED = [name for name, cls in METHODS.items() if cls.trains]


def make(name: str, channels: int = 3, size: int = 16):
    torch.manual_seed(0)
    return METHODS[name](build_backbone("small_cnn", channels, size), channels, size, **SMALL_HPARAMS.get(name, {}))


def test_registry_names():
    # the contract's names (a superset: registering a new method needs no edit here)
    assert set(METHODS) >= {
        "random",
        "imagenet",
        "simclr",
        "moco_v2",
        "barlow_twins",
        "rotation",
        "jigsaw",
        "jigmag",
        "vae",
        "bigbigan",
        "micle",
    }
    with pytest.raises(KeyError, match="allowed: .*simclr"):
        METHODS["simclr2"]


def test_unknown_hparam_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"SSL method 'simclr': 'temprature'.*allowed: .*temperature"):
        METHODS["simclr"].resolve_hparams({"temprature": 0.1})


@pytest.mark.parametrize("name", TRAINED)
@pytest.mark.parametrize("channels", [1, 3])
def test_few_steps_finite(name, channels):
    m = make(name, channels)
    imgs = torch.randint(0, 256, (24, 16, 16, channels), dtype=torch.uint8)
    m.bind(imgs, np.array([f"p{i // 3}" for i in range(24)]))
    opts = m.configure_optimizers()
    for i in range(3):
        out = m.step(to_float(imgs[i * 8 : (i + 1) * 8]), torch.arange(i * 8, (i + 1) * 8), opts)
        assert np.isfinite(out["loss"])
    assert m.backbone(to_float(imgs[:2])).shape == (2, m.feature_dim)


@pytest.mark.parametrize("name", TRAINED)
def test_loss_falls_on_fixed_batch(name, tiny_data, tiny_batch):
    m = make(name)
    m.bind(tiny_batch, tiny_data.patient_ids[:16])
    opts = m.configure_optimizers()
    x, index = to_float(tiny_batch), torch.arange(16)
    losses = []
    for _ in range(20):
        m.generator.manual_seed(0)  # the same views every step: a fixed batch
        torch.manual_seed(0)
        losses.append(m.step(x, index, opts)["loss"])
    assert all(np.isfinite(losses))
    # from step 1: MoCo's first loss is against a queue of random vectors, before its own keys fill it
    assert np.mean(losses[-3:]) < 0.9 * losses[1], losses


@pytest.mark.parametrize("batch", [32, 64])
def test_barlow_twins_learning_rates_scale_with_the_batch(batch):
    """The paper gives lr 0.2 (weights) and 0.0048 (biases, BN) for a batch of 256 and scales them linearly."""
    from study.ssl.base import train_ssl

    method = make("barlow_twins")
    seen: list[list[float]] = []
    real_step = method.step

    def step(x, index, optimizers):
        seen.append([g["lr"] for g in optimizers[0].param_groups])
        return real_step(x, index, optimizers)

    method.step = step
    images = np.random.default_rng(0).integers(0, 255, (4 * batch, 16, 16, 3), dtype=np.uint8)
    train_ssl(method, images, epochs=1, batch_size=batch, device=torch.device("cpu"), seed=0)
    # one epoch: warm-up is at most a tenth of the run (none here), so the first step runs at the base rates
    assert seen[0] == pytest.approx([0.2 * batch / 256, 0.0048 * batch / 256])
    assert make("simclr").lr_reference_batch is None  # Adam 1e-3 as Khanal et al. give it, not scaled


@pytest.mark.parametrize("name", TRAINED)
@pytest.mark.parametrize("backbone", ["two_conv_cnn", "resnet18"])
def test_every_method_trains_every_kind_of_backbone(name, backbone):
    """A method's views may be smaller than the images (jigsaw's and JigMag's tiles): every registered kind of
    backbone takes them (two_conv_cnn, whose dense layer has a fixed input, pools them to its grid), so a spec
    that the door accepts does not fail in its pretraining job."""
    torch.manual_seed(0)
    m = METHODS[name](build_backbone(backbone, 1, 28), 1, 28, **SMALL_HPARAMS.get(name, {}))
    imgs = torch.randint(0, 256, (16, 28, 28, 1), dtype=torch.uint8)
    m.bind(imgs, np.array([f"p{i // 2}" for i in range(16)]))
    out = m.step(to_float(imgs[:8]), torch.arange(8), m.configure_optimizers())
    assert np.isfinite(out["loss"])
