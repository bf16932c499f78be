"""Datasets: a name -> class registry, loaders for the papers' datasets, splits and the decode cache.

``DATASETS[name](**options).load(cache_dir)`` returns an ``ImageData``; ``get_dataset(name, **options)``
does the same lookup and fails with the list of names.
"""

from __future__ import annotations

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
for _cls in (NctCrcHe, CovidQuEx, FetalPlanes, Mura, DermNet, FolderDataset, ManifestDataset, MedMnist,
             FashionMnist, Synthetic):
    DATASETS.register(_cls.name, _cls)


def get_dataset(name: str, **options) -> Dataset:
    """An instance of the dataset ``name`` with ``options``; unknown names fail with the valid choices."""
    cls = DATASETS[name]
    try:
        return cls(**options)
    except TypeError as e:
        raise DataError(f"{name}: bad dataset options ({e})") from None


def default_noise_groups(data: ImageData) -> list[list[int]] | None:
    """Class-index groups of confusable classes for class-dependent noise, where the dataset defines them."""
    return data.noise_groups


__all__ = ["DATASETS", "DataError", "Dataset", "ImageData", "Record", "Splits", "default_noise_groups",
           "get_dataset", "make_splits"]
