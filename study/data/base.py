"""Shared data types: the decoded dataset, the file record of a source image, and the dataset base classes.

A dataset class turns its public distribution into either arrays (``ArrayDataset.arrays``) or a list of
``Record`` s (``FileDataset.records``); the base class does the shared work: decoding once into the
content-addressed cache, resizing, channel conversion, and the errors that name the offending file.

Each dataset declares its options once, as a nested ``Options`` (a ``study.hparams.Hparams``: typed, with
defaults and ranges) that extends its base's; ``Dataset.check_options`` checks a spec's options against it
without touching any file, and ``Dataset(**options)`` keeps the checked values as ``self.options``.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError

from study.data.pipeline import AugmentConfig
from study.hparams import HparamError, Hparams, check_value, describe_field

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Bad dataset input: a missing root, a wrong layout, an unreadable file. The message names it."""


@dataclass(frozen=True)
class Record:
    """One source image: its file, its class name, and where known its patient, official split and study
    (the examination it belongs to, where the benchmark scores studies: MURA)."""

    path: Path
    label: str
    patient_id: str | None = None
    split: str | None = None
    study_id: str | None = None
    #: the class name each recorded annotator gave ("": did not label it), in the dataset's annotator order
    annotations: tuple[str, ...] = ()


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
    #: the study (examination) of each image, where the dataset scores studies (MURA); else None
    study_ids: np.ndarray | None = None
    #: recorded annotators' labels, N x A class indices (-1: that annotator did not label the image), where
    #: the dataset has annotator columns (``Dataset.recorded_annotators``); ``labels`` stay the reference
    annotations: np.ndarray | None = None
    #: the names of the annotators, one per column of ``annotations``
    annotators: list[str] | None = None

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be N x H x W x C uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}")
        for name in ("patient_ids", "official_split", "study_ids"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
        if (self.annotations is None) != (self.annotators is None):
            raise ValueError("annotations and annotators come together")
        if (
            self.annotations is not None
            and self.annotators is not None
            and self.annotations.shape != (n, len(self.annotators))
        ):
            raise ValueError(f"annotations must have shape ({n}, {len(self.annotators)}), got {self.annotations.shape}")

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


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


#: a file or folder option: a string in a spec, a ``Path`` from Python callers (kept as its text)
PathText = Annotated[str, BeforeValidator(_path_text)]
OptionalPathText = Annotated[str | None, BeforeValidator(_path_text)]


class Dataset:
    """Base of every registered dataset. Subclasses set ``name``, extend ``Options`` and implement ``load``."""

    class Options(Hparams):
        """Options every dataset takes."""

        resolution: int | None = Field(
            None,
            ge=8,
            description="side of the square images after decoding; "
            "None keeps the source size (all images must share it)",
        )
        channels: Literal[1, 3] | None = Field(
            None, description="1 (grayscale) or 3 (RGB); None: the dataset's own (1 for X-ray and ultrasound sets)"
        )

    name: ClassVar[str] = ""
    #: groups of clinically confusable classes (by class name) for class-dependent noise
    noise_groups: ClassVar[Sequence[Sequence[str]] | None] = None
    default_channels: ClassVar[int] = 3
    #: approximate image count of the public release, for the study's compute estimate (``estimated_images``)
    approx_images: ClassVar[int] = 10_000
    #: the batch augmentation a trial uses when the spec sets none for this dataset
    default_augment: ClassVar[AugmentConfig | None] = AugmentConfig(scale=(0.7, 1.0), flip=True)
    #: the class names of the public release, where they are fixed (smoke stand-ins copy them)
    known_classes: ClassVar[Sequence[str] | None] = None
    #: whether images come several to a patient (smoke stand-ins then group theirs by patient too)
    has_patients: ClassVar[bool] = False

    options: Options

    def __init__(self, **options: Any) -> None:
        self.options = self.check_options(options)
        self.resolution = self.options.resolution
        self.channels = self.options.channels or self.native_channels()

    @classmethod
    def may_have_patients(cls, options: Mapping[str, Any]) -> bool:
        """Whether this entry's images can come several to a patient (MICLe's door check): the class's
        ``has_patients`` unless an option makes patients (a stand-in's views)."""
        return cls.has_patients

    @classmethod
    def recorded_annotators(cls, options: Mapping[str, Any]) -> list[str]:
        """The names of the recorded annotators whose labels this entry's images carry (``ImageData.annotators``:
        a manifest's annotator columns), read from the options alone: the door's check of ``noise.recorded``."""
        return []

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> Any:
        """``options`` as an instance of this dataset's ``Options`` (typed ``Any``: a static checker cannot name
        ``cls.Options``); a name, type or range it does not take raises a ``DataError`` naming the dataset,
        the option and what is allowed. Reads no file: the spec calls it at the door."""
        fields = cls.Options.model_fields
        for key, value in options.items():
            if key not in fields:
                raise DataError(f"{cls.name}: unknown option {key!r} (allowed: {', '.join(fields)})")
            info = fields[key]
            if isinstance(value, bool) and bool not in (typing.get_args(info.annotation) or (info.annotation,)):
                raise DataError(f"{cls.name}: bad option {key}: {value!r} is a boolean; {describe_field(info)}")
            try:
                check_value([cls.Options], key, value)
            except HparamError as e:
                raise DataError(f"{cls.name}: bad option {e}") from None
        try:
            return cls.Options(**options)
        except ValidationError as e:  # a required option is missing, or options that do not fit together
            problem = e.errors()[0]
            if problem["type"] == "missing":
                key = str(problem["loc"][0])
                raise DataError(f"{cls.name}: the option {key} ({fields[key].description}) is required") from None
            raise DataError(f"{cls.name}: bad options: {problem['msg'].removeprefix('Value error, ')}") from None

    @classmethod
    def estimated_images(cls, options: Mapping[str, Any]) -> int:
        """Approximate image count with ``options``, for the study's compute estimate (not a promise)."""
        return cls.approx_images

    def native_channels(self) -> int:
        """The channel count when the ``channels`` option is None."""
        return self.default_channels

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
    #: recorded annotators' labels (N x A, -1: not labelled) and their names, where the dataset has them
    annotations: np.ndarray | None = None
    annotators: list[str] | None = None


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
