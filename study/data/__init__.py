"""Datasets: a name -> class registry, loaders for the papers' datasets, splits and the decode cache.

``DATASETS[name](**options).load(cache_dir)`` returns an ``ImageData``; ``get_dataset(name, **options)``
does the same lookup and fails with the list of names. Each dataset class declares its options once, as
``cls.Options`` (typed, with defaults and ranges); ``cls.check_options(options)`` checks a spec's entry
against it and ``cls.estimated_images(options)`` gives the image count the compute estimate uses.
"""

from __future__ import annotations

from typing import Any

from study.data.base import DataError, Dataset, ImageData, Record
from study.data.covid_qu_ex import CovidQuEx
from study.data.dermnet import DermNet
from study.data.fashion_mnist import FashionMnist
from study.data.fetal_planes import FetalPlanes
from study.data.folder import FolderDataset
from study.data.manifest import ManifestDataset
from study.data.medmnist import MedMnist
from study.data.mura import Mura
from study.data.nct_crc_he import NctCrcHe
from study.data.splits import Splits, make_splits
from study.data.synthetic import Synthetic
from study.registry import Registry

DATASETS: Registry[type[Dataset]] = Registry("dataset")
for _cls in (
    NctCrcHe,
    CovidQuEx,
    FetalPlanes,
    Mura,
    DermNet,
    FolderDataset,
    ManifestDataset,
    MedMnist,
    FashionMnist,
    Synthetic,
):
    DATASETS.register(_cls.name, _cls)


def get_dataset(name: str, **options: Any) -> Dataset:
    """An instance of the dataset ``name`` with ``options``; an unknown name fails with the registry's choices,
    an option the dataset does not take (name, type or range) with a ``DataError`` saying what is allowed."""
    return DATASETS[name](**options)


__all__ = ["DATASETS", "DataError", "Dataset", "ImageData", "Record", "Splits", "get_dataset", "make_splits"]
