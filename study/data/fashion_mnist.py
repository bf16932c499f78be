"""Fashion-MNIST (Xiao et al. 2017) from its IDX files: real data for demos, tests and benchmarks.

Default root: ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``; ``make data``
installs it) with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``. The official test set is kept.

``views: V > 1`` makes it a multi-view stand-in (for MICLe, which needs several images per patient and
which no registry's labelled medical data can give here): each training image becomes a "patient" with V
images, the original and V - 1 acquisitions of it, each under its own seeded pose (rotation up to
``VIEW_ROTATION`` degrees, scale within ``VIEW_SCALE``, shift up to ``VIEW_SHIFT`` of the side) and
exposure (contrast and gamma within ``VIEW_CONTRAST`` and ``VIEW_GAMMA``): the same garment seen twice,
as a lesion is seen in two views or two visits. Patient ids keep a patient's images in one split; the
official test images stay single originals.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from study.data.base import Arrays, DataError, OptionalPathText
from study.data.cache import file_fingerprint
from study.data.sources import ArrayDataset

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: the acquisitions of ``views``: pose and exposure ranges (declared, not options: a stand-in's definition)
VIEW_ROTATION, VIEW_SCALE, VIEW_SHIFT = 20.0, (0.85, 1.15), 0.1
VIEW_CONTRAST, VIEW_GAMMA = (0.7, 1.0), (0.7, 1.4)
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a NumPy array; DataError names a malformed file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DataError(f"{path}: IDX header says {dims} ({expected} bytes) but the file holds {len(data) - offset}")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


class FashionMnist(ArrayDataset):
    """The official 60000 training and 10000 test images; ``limit`` keeps the first N training images (quick
    runs), ``test_limit`` the first N test images."""

    class Options(ArrayDataset.Options):
        root: OptionalPathText = Field(
            str(DEFAULT_ROOT), description="folder of the four IDX files (None: the default)"
        )
        limit: int | None = Field(None, gt=0, description="first N training images (None: all 60000)")
        test_limit: int | None = Field(None, gt=0, description="first N test images (None: all 10000)")
        views: int = Field(
            1, ge=1, le=16, description="images per training image (1: none): a multi-view stand-in with patients"
        )
        views_seed: int = Field(0, ge=0, description="seed of the acquisitions' poses and exposures (views > 1)")

    name = "fashion_mnist"
    default_channels = 1
    approx_images = 70_000  # 60000 train + 10000 test
    known_classes = tuple(CLASSES)
    noise_groups = (("T-shirt/top", "Shirt", "Pullover", "Coat"), ("Sandal", "Sneaker", "Ankle boot"))

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.root = Path(self.options.root or DEFAULT_ROOT).expanduser()

    @classmethod
    def estimated_images(cls, options: Mapping[str, Any]) -> int:
        o: FashionMnist.Options = cls.check_options(options)
        return (o.limit or 60000) * o.views + (o.test_limit or 10000)

    @classmethod
    def may_have_patients(cls, options: Mapping[str, Any]) -> bool:
        return int(options.get("views", 1)) > 1

    def _file(self, stem: str) -> Path:
        for name in (stem, stem + ".gz"):
            if (self.root / name).is_file():
                return self.root / name
        raise DataError(
            f"fashion_mnist: {self.root / stem}[.gz] is missing; install Debian's dataset-fashion-mnist "
            "(make data) or set root to a folder holding the four IDX files"
        )

    def _files(self) -> list[Path]:
        return [self._file(f"{s}-{k}-ubyte") for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]

    def source_key(self) -> dict:
        key = {
            "files": file_fingerprint(self._files()),
            "limit": self.options.limit,
            "test_limit": self.options.test_limit,
        }
        if self.options.views > 1:  # keys of single-view data stay as they were
            key |= {"views": self.options.views, "views_seed": self.options.views_seed}
        return key

    def arrays(self) -> Arrays:
        tr_x, tr_y, te_x, te_y = (read_idx(p) for p in self._files())
        if len(tr_x) != len(tr_y) or len(te_x) != len(te_y):
            raise DataError(f"fashion_mnist: image and label counts differ in {self.root}")
        tr_x, tr_y = tr_x[: self.options.limit], tr_y[: self.options.limit]
        te_x, te_y = te_x[: self.options.test_limit], te_y[: self.options.test_limit]
        patients = None
        v = self.options.views
        if v > 1:
            n = len(tr_x)
            tr_x = acquisitions(tr_x, v, self.options.views_seed).reshape(n * v, *tr_x.shape[1:])
            tr_y = np.repeat(tr_y, v)
            patients = np.array(
                [f"p{i:05d}" for i in range(n) for _ in range(v)] + [f"t{i:05d}" for i in range(len(te_x))]
            )
        split = np.array(["train"] * len(tr_x) + ["test"] * len(te_x))
        return Arrays(
            images=np.concatenate([tr_x, te_x]),
            labels=np.concatenate([tr_y, te_y]).astype(np.int64),
            class_names=list(CLASSES),
            patient_ids=patients,
            official_split=split,
        )


def acquisitions(images: np.ndarray, views: int, seed: int) -> np.ndarray:
    """N x V x H x W uint8: each image as itself (view 0) and ``views - 1`` acquisitions of it, each under
    its own pose and exposure drawn from ``seed`` (deterministic)."""
    n, h, w = images.shape
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x71E5]))
    m = n * (views - 1)
    angle = np.deg2rad(rng.uniform(-VIEW_ROTATION, VIEW_ROTATION, m))
    scale = rng.uniform(*VIEW_SCALE, m)
    shift = rng.uniform(-VIEW_SHIFT, VIEW_SHIFT, (m, 2)) * 2  # affine_grid's coordinates span [-1, 1]
    contrast, gamma = rng.uniform(*VIEW_CONTRAST, m), rng.uniform(*VIEW_GAMMA, m)
    # output pixel p samples the source at A p + t: a rotation by angle and a zoom by scale about the centre
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    theta = np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1)
    src = torch.from_numpy(np.repeat(images, views - 1, axis=0)).float().div(255).unsqueeze(1)
    grid = torch.nn.functional.affine_grid(torch.from_numpy(theta).float(), list(src.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(src, grid, align_corners=False, padding_mode="zeros").squeeze(1)
    out = out.clamp(0, 1).pow(torch.from_numpy(gamma).float()[:, None, None])
    out = out * torch.from_numpy(contrast).float()[:, None, None]
    views_ = (out * 255).round().to(torch.uint8).numpy().reshape(n, views - 1, h, w)
    return np.concatenate([images[:, None], views_], axis=1)
