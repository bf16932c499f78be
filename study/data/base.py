"""Shared data types: the decoded dataset, the file record of a source image, and the dataset base classes.

A dataset class turns its public distribution into either arrays (``ArrayDataset.arrays``) or a list of
``Record`` s (``FileDataset.records``); the base class does the shared work: decoding once into the
content-addressed cache, resizing, channel conversion, and the errors that name the offending file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Bad dataset input: a missing root, a wrong layout, an unreadable file. The message names it."""


@dataclass(frozen=True)
class Record:
    """One source image: its file, its class name, and where known its patient and official split."""

    path: Path
    label: str
    patient_id: str | None = None
    split: str | None = None


@dataclass
class ImageData:
    """A decoded dataset. ``images`` is N x H x W x C uint8 (memory-mapped when it comes from the cache)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    patient_ids: np.ndarray | None = None
    official_split: np.ndarray | None = None
    skipped: int = 0
    cache_key: str = ""
    noise_groups: list[list[int]] | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be N x H x W x C uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}")
        for name in ("patient_ids", "official_split"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def __len__(self) -> int:
        return int(self.images.shape[0])


class Dataset:
    """Base of every registered dataset. Subclasses set ``name`` and implement ``load``.

    ``resolution`` is the side of the square images after decoding (None keeps the source size when all
    images share it); ``channels`` is 1 (grayscale) or 3 (RGB).
    """

    name: ClassVar[str] = ""
    #: groups of clinically confusable classes (by class name) for class-dependent noise
    noise_groups: ClassVar[Sequence[Sequence[str]] | None] = None
    default_channels: ClassVar[int] = 3

    def __init__(self, resolution: int | None = None, channels: int | None = None) -> None:
        if resolution is not None and (not isinstance(resolution, int) or resolution < 8):
            raise DataError(f"{self.name}: resolution must be an integer >= 8, got {resolution!r}")
        ch = self.default_channels if channels is None else channels
        if ch not in (1, 3):
            raise DataError(f"{self.name}: channels must be 1 or 3, got {channels!r}")
        self.resolution = resolution
        self.channels = ch

    def load(self, cache_dir: str | Path | None = None) -> ImageData:
        raise NotImplementedError

    def _group_indices(self, class_names: list[str]) -> list[list[int]] | None:
        if not self.noise_groups:
            return None
        index = {c: i for i, c in enumerate(class_names)}
        groups = [[index[c] for c in g if c in index] for g in self.noise_groups]
        return [g for g in groups if len(g) >= 2] or None


@dataclass
class Arrays:
    """What an ``ArrayDataset`` produces before resizing and caching."""

    images: np.ndarray  # N x H x W (x C) uint8
    labels: np.ndarray  # N int
    class_names: list[str]
    patient_ids: np.ndarray | None = None
    official_split: np.ndarray | None = None
    extra_key: dict = field(default_factory=dict)


def require_dir(path: str | Path | None, dataset: str, hint: str) -> Path:
    """``path`` as a directory, or a DataError naming the dataset, the path and where to get the data."""
    if path is None:
        raise DataError(f"{dataset}: root is required ({hint})")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise DataError(f"{dataset}: root {str(p)!r} is not a directory ({hint})")
    return p


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
