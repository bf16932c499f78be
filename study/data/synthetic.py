"""Synthetic class-conditional images, fast enough for unit tests, with optional multi-view patients.

Each class has a prototype: a few oriented Gabor-like stripes and blobs at class-specific positions and
frequencies; an image is its class prototype under a random shift, contrast and pixel noise. With
``views_per_patient > 1`` images come in patient groups that share a patient-specific offset and tint,
so two views of one patient are more alike than two images of the class (what MICLe exploits).
"""

from __future__ import annotations

import numpy as np

from study.data.base import Arrays, DataError
from study.data.sources import ArrayDataset


class Synthetic(ArrayDataset):
    """Options: ``num_samples`` (default 600), ``num_classes`` (4), ``image_size`` (32),
    ``views_per_patient`` (1: no patients), ``noise`` (pixel noise std in [0, 1], default 0.15), ``seed``,
    ``test_fraction`` (official test split; default 0: none)."""

    name = "synthetic"
    default_channels = 3

    def __init__(self, num_samples: int = 600, num_classes: int = 4, image_size: int = 32,
                 views_per_patient: int = 1, noise: float = 0.15, seed: int = 0, test_fraction: float = 0.0,
                 **kw) -> None:
        super().__init__(**kw)
        if num_classes < 2:
            raise DataError(f"synthetic: num_classes must be >= 2, got {num_classes}")
        if num_samples < num_classes:
            raise DataError(f"synthetic: num_samples ({num_samples}) must be >= num_classes ({num_classes})")
        if image_size < 8:
            raise DataError(f"synthetic: image_size must be >= 8, got {image_size}")
        if views_per_patient < 1:
            raise DataError(f"synthetic: views_per_patient must be >= 1, got {views_per_patient}")
        if not 0.0 <= test_fraction < 1.0:
            raise DataError(f"synthetic: test_fraction must be in [0, 1), got {test_fraction}")
        self.params = dict(num_samples=int(num_samples), num_classes=int(num_classes), image_size=int(image_size),
                           views_per_patient=int(views_per_patient), noise=float(noise), seed=int(seed),
                           test_fraction=float(test_fraction))

    def source_key(self) -> dict:
        return dict(self.params)

    def arrays(self) -> Arrays:
        p = self.params
        n, k, s, v = p["num_samples"], p["num_classes"], p["image_size"], p["views_per_patient"]
        rng = np.random.default_rng(p["seed"])
        protos = _prototypes(k, s, np.random.default_rng(1234 + k * 7 + s))  # k x s x s x 3 in [0, 1]
        n_patients = -(-n // v)
        patient_class = np.arange(n_patients) % k
        rng.shuffle(patient_class)
        patient = np.repeat(np.arange(n_patients), v)[:n]
        labels = patient_class[patient]
        tint = rng.uniform(-0.15, 0.15, size=(n_patients, 1, 1, 3))
        shift_p = rng.integers(-s // 8, s // 8 + 1, size=(n_patients, 2))
        images = np.empty((n, s, s, 3), dtype=np.float32)
        for i in range(n):
            pid = patient[i]
            img = np.roll(protos[labels[i]], shift=tuple(shift_p[pid] + rng.integers(-1, 2, size=2)), axis=(0, 1))
            img = img * rng.uniform(0.7, 1.0) + tint[pid, 0] + rng.normal(0.0, p["noise"], size=img.shape)
            images[i] = img
        images = (np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
        split = None
        if p["test_fraction"] > 0:
            test_patients = rng.permutation(n_patients)[: max(1, int(round(p["test_fraction"] * n_patients)))]
            split = np.where(np.isin(patient, test_patients), "test", "train")
        return Arrays(
            images=images,
            labels=labels.astype(np.int64),
            class_names=[f"class_{c}" for c in range(k)],
            patient_ids=np.array([f"p{q:05d}" for q in patient]) if v > 1 else None,
            official_split=split,
        )


def _prototypes(k: int, s: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    out = np.zeros((k, s, s, 3), dtype=np.float32)
    for c in range(k):
        theta = np.pi * c / k + rng.uniform(0, 0.2)
        freq = 2.0 + 1.5 * (c % 3)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)))
        cy, cx = rng.uniform(0.25, 0.75, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        colour = rng.uniform(0.3, 1.0, size=3)
        out[c] = 0.6 * stripes[..., None] * colour + 0.4 * blob[..., None]
    return out / out.max()
