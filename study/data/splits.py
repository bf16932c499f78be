"""Train/val/test splits: stratified, grouped by patient where patient ids exist, official test kept.

Deterministic by seed. With patient ids, whole patients go to one split (no patient in two splits) and
the stratification is over each patient's majority class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from study.data.base import DataError, ImageData


@dataclass(frozen=True)
class Splits:
    """Index arrays into an ImageData."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def make_splits(
    data: ImageData, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0, use_official: bool = True
) -> Splits:
    """Split ``data``. An official split is kept where the dataset has one (its test part as the test set,
    its val part as validation); what is missing is carved out: ``test_fraction`` of all samples for
    test, then ``val_fraction`` of the samples that are not test for validation."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise DataError(f"splits.{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError("splits: val_fraction + test_fraction must be below 1")
    n = len(data)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B17]))
    official = data.official_split if use_official else None
    pool = np.arange(n)
    test = val = np.array([], dtype=np.int64)
    if official is not None:
        test = np.flatnonzero(official == "test")
        val = np.flatnonzero(official == "val")
        pool = np.flatnonzero((official != "test") & (official != "val"))
    groups = data.patient_ids
    if test.size == 0 and test_fraction > 0:
        test, pool = _carve(pool, data.labels, groups, test_fraction * n / max(len(pool), 1), rng)
    if val.size == 0 and val_fraction > 0:
        val, pool = _carve(pool, data.labels, groups, val_fraction, rng)
    if pool.size == 0:
        raise DataError(f"{data.name}: no samples left for training after the val/test splits")
    return Splits(train=np.sort(pool), val=np.sort(val), test=np.sort(test))


def _carve(
    pool: np.ndarray, labels: np.ndarray, groups: np.ndarray | None, frac: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Take about ``frac`` of ``pool`` out, stratified by class, whole groups at a time."""
    frac = min(frac, 1.0)
    if groups is None:
        unit = pool  # every sample is its own group
        unit_of = np.arange(len(pool))
        unit_label = labels[pool]
    else:
        uniq, unit_of = np.unique(groups[pool], return_inverse=True)
        unit = uniq
        unit_label = np.array([np.bincount(labels[pool[unit_of == u]]).argmax() for u in range(len(uniq))])
    taken = np.zeros(len(unit), dtype=bool)
    for c in np.unique(unit_label):
        members = np.flatnonzero(unit_label == c)
        members = members[rng.permutation(len(members))]
        k = int(round(frac * len(members)))
        if k == 0 and frac > 0 and len(members) > 1 and rng.random() < frac * len(members):
            k = 1  # small classes still reach the split in expectation
        taken[members[:k]] = True
    mask = taken[unit_of]
    return np.sort(pool[mask]), np.sort(pool[~mask])


def labelled_subset(train: np.ndarray, labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """The labelled part of the training split ``train`` at ``fraction`` (label efficiency, Azizi et al. 2021):
    stratified by the clean class, at least one image per class, sorted.

    Each class's training images are put in one random order drawn from ``seed`` alone, and the first
    ``max(1, round_half_up(fraction * n_c))`` of them are kept; the order does not depend on ``fraction``,
    so for one seed the subsets are nested (the 10% subset lies inside the 20% one). ``fraction`` 1 returns
    ``train`` itself."""
    if not 0.0 < fraction <= 1.0:
        raise DataError(f"labels.fractions: {fraction} must be in (0, 1]")
    if fraction == 1.0:
        return train
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1AB5]))
    y = np.asarray(labels)[train]
    keep = []
    for c in np.unique(y):  # classes in increasing order: the draws do not depend on the fraction
        members = train[y == c]
        order = members[rng.permutation(len(members))]
        keep.append(order[: max(1, int(np.floor(fraction * len(members) + 0.5)))])
    return np.sort(np.concatenate(keep))


def with_labelled_subset(splits: Splits, labels: np.ndarray, fraction: float, seed: int = 0) -> Splits:
    """``splits`` with its training part cut to the labelled subset (``labelled_subset``); val and test kept."""
    if fraction == 1.0:
        return splits
    return replace(splits, train=labelled_subset(splits.train, labels, fraction, seed))
