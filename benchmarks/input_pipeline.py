"""input_pipeline: images/s the training input pipeline delivers against what the model step consumes.

Two settings: a 28 px small CNN on Fashion-MNIST (real data when installed) and a 224 px ResNet-18 on
generated 256 px images (cropped to 224 by the augmentation, as in Khanal et al. 2024). The pipeline is
``TensorLoader`` with its batch augmentation (gather uint8 rows, convert, random resized crop + flip by one
affine grid_sample); the consumer is one SGD step (forward, backward, update) of the model on a fixed
batch. ``pipeline_ratio`` = delivered / consumed must be >= 2 on CPU; ``pipeline_share`` is the fraction
of a real epoch (pipeline and steps in one loop) spent producing batches.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from study.data.pipeline import AugmentConfig, TensorLoader
from study.models import Classifier, build_backbone


def _pipeline_rate(loader: TensorLoader, max_batches: int) -> float:
    n, t0 = 0, time.perf_counter()
    for i, (x, _, _) in enumerate(loader):
        n += x.shape[0]
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - t0)


def _step_rate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(2):  # warm-up
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - t0)


def _epoch_share(model, loader: TensorLoader, max_batches: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    t_pipe, t_total = 0.0, time.perf_counter()
    it = iter(loader)
    for _ in range(max_batches):
        t0 = time.perf_counter()
        x, y, _ = next(it)
        t_pipe += time.perf_counter() - t0
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return t_pipe / (time.perf_counter() - t_total)


def _fashion_mnist(n: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from study.data import get_dataset

        data = get_dataset("fashion_mnist", limit=n, test_limit=1).load(None)
        return np.asarray(data.images[:n]), np.asarray(data.labels[:n])
    except Exception:  # not installed: same shapes, generated
        rng = np.random.default_rng(0)
        return rng.integers(0, 255, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n)


def run_setting(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    backbone: str,
    batch: int,
    crop: int,
    pipe_batches: int,
    steps: int,
) -> dict:
    k = int(labels.max()) + 1
    aug = AugmentConfig(scale=((crop / images.shape[1]) ** 2, 1.0), flip=True, size=crop)
    loader = TensorLoader(images, labels, batch, shuffle=True, augment_cfg=aug, seed=0)
    model = Classifier(build_backbone(backbone, images.shape[3], crop), k)
    delivered = _pipeline_rate(loader, pipe_batches)
    x, y, _ = next(iter(loader))
    assert x.shape[-1] == crop
    consumed = _step_rate(model, x, y, steps)
    share = _epoch_share(model, loader, max(2, steps))
    return {
        f"{name}_pipeline_images_per_s": delivered,
        f"{name}_model_step_images_per_s": consumed,
        f"{name}_pipeline_ratio": delivered / consumed,
        f"{name}_pipeline_share_of_epoch": share,
    }


def main(quick: bool = False) -> None:
    torch.manual_seed(0)
    print(f"threads: {torch.get_num_threads()}")
    images, labels = _fashion_mnist(4096 if quick else 20000)
    for k, v in run_setting(
        "small_cnn_28px",
        images,
        labels,
        "small_cnn",
        128,
        28,
        pipe_batches=20 if quick else 100,
        steps=5 if quick else 20,
    ).items():
        print(f"{k}: {v:.3f}")
    rng = np.random.default_rng(0)
    n = 128 if quick else 512
    big = rng.integers(0, 255, (n, 256, 256, 3), dtype=np.uint8)
    big_labels = rng.integers(0, 9, n)
    # 224 px random resized crops of 256 px images, as in Khanal et al. 2024
    for k, v in run_setting(
        "resnet18_224px", big, big_labels, "resnet18", 32, 224, pipe_batches=4 if quick else 12, steps=1 if quick else 3
    ).items():
        print(f"{k}: {v:.3f}")
