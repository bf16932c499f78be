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


def dataset_option_names(name: str) -> tuple[str, ...] | None:
    """The options the dataset ``name`` takes (keyword arguments along its ``__init__`` chain), or None
    where the name is not registered."""
    import inspect

    cls = dict.get(DATASETS, name)
    if cls is None:
        return None
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        if klass is object:
            break
        params = inspect.signature(klass.__dict__["__init__"]).parameters
        names += [n for n, p in params.items() if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break  # does not forward to its base
    return tuple(dict.fromkeys(names))


def get_dataset(name: str, **options) -> Dataset:
    """An instance of the dataset ``name`` with ``options``; unknown names or options fail with the choices."""
    cls = DATASETS[name]
    allowed = dataset_option_names(name) or ()
    unknown = [k for k in options if k not in allowed]
    if allowed and unknown:
        raise DataError(f"{name}: bad dataset options: unknown option {unknown[0]!r} (allowed: {', '.join(allowed)})")
    try:
        return cls(**options)
    except TypeError as e:
        raise DataError(f"{name}: bad dataset options ({e}; allowed: {', '.join(allowed)})") from None


def default_noise_groups(data: ImageData) -> list[list[int]] | None:
    """Class-index groups of confusable classes for class-dependent noise, where the dataset defines them."""
    return data.noise_groups


__all__ = ["DATASETS", "DataError", "Dataset", "ImageData", "Record", "Splits", "dataset_option_names",
           "default_noise_groups", "get_dataset", "make_splits"]
