"""Fashion-MNIST (Xiao et al. 2017) from its IDX files: real data for demos, tests and benchmarks.

Default root: ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``; ``make data``
installs it) with ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``. The official test set is kept.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from study.data.base import Arrays, DataError, OptionalPathText
from study.data.cache import file_fingerprint
from study.data.sources import ArrayDataset

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
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
        if o.limit is None:
            return cls.approx_images
        return o.limit + (o.test_limit or 10000)

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
        return {
            "files": file_fingerprint(self._files()),
            "limit": self.options.limit,
            "test_limit": self.options.test_limit,
        }

    def arrays(self) -> Arrays:
        tr_x, tr_y, te_x, te_y = (read_idx(p) for p in self._files())
        if len(tr_x) != len(tr_y) or len(te_x) != len(te_y):
            raise DataError(f"fashion_mnist: image and label counts differ in {self.root}")
        tr_x, tr_y = tr_x[: self.options.limit], tr_y[: self.options.limit]
        te_x, te_y = te_x[: self.options.test_limit], te_y[: self.options.test_limit]
        split = np.array(["train"] * len(tr_x) + ["test"] * len(te_x))
        return Arrays(
            images=np.concatenate([tr_x, te_x]),
            labels=np.concatenate([tr_y, te_y]).astype(np.int64),
            class_names=list(CLASSES),
            official_split=split,
        )
