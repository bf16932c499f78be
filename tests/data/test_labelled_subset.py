"""The labelled subset of a training split (label efficiency): stratified by clean class, at least one image
per class, nested across fractions, deterministic by seed; validation and test untouched."""

from __future__ import annotations

import numpy as np
import pytest

from study.data import DataError, Splits
from study.data.splits import labelled_subset, with_labelled_subset

# ten images of class 0, five of class 1, one of class 2, at odd dataset indices (the train split's)
LABELS = np.full(40, -1)
TRAIN = np.arange(1, 32, 2)
LABELS[TRAIN] = [0] * 10 + [1] * 5 + [2]


def _per_class(idx: np.ndarray) -> list[int]:
    return np.bincount(LABELS[idx], minlength=3).tolist()


@pytest.mark.parametrize(
    ("fraction", "counts"),
    [
        (0.2, [2, 1, 1]),  # 2.0, 1.0, 0.2 -> at least one
        (0.5, [5, 3, 1]),  # 2.5 rounds half up to 3
        (0.05, [1, 1, 1]),  # 0.5 -> 1, 0.25 -> 1, 0.05 -> 1
        (0.7, [7, 4, 1]),  # 3.5 -> 4, 0.7 -> 1
    ],
)
def test_each_class_keeps_round_half_up_of_its_share_and_at_least_one(fraction, counts):
    sub = labelled_subset(TRAIN, LABELS, fraction, seed=3)
    assert _per_class(sub) == counts
    assert set(sub) <= set(TRAIN) and list(sub) == sorted(sub) and len(set(sub)) == len(sub)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_subsets_are_nested_for_one_seed(seed):
    subs = [set(labelled_subset(TRAIN, LABELS, f, seed)) for f in (0.05, 0.1, 0.2, 0.5, 0.7, 1.0)]
    for small, large in zip(subs, subs[1:]):
        assert small <= large
    assert subs[-1] == set(TRAIN)


def test_deterministic_by_seed_and_seed_dependent():
    a = labelled_subset(TRAIN, LABELS, 0.5, seed=11)
    assert np.array_equal(a, labelled_subset(TRAIN, LABELS, 0.5, seed=11))
    draws = {tuple(labelled_subset(TRAIN, LABELS, 0.5, seed=s)) for s in range(6)}
    assert len(draws) > 1


def test_fraction_one_is_the_training_split_itself():
    assert labelled_subset(TRAIN, LABELS, 1.0) is TRAIN


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_fractions_outside_zero_one_are_refused(fraction):
    with pytest.raises(DataError, match="must be in"):
        labelled_subset(TRAIN, LABELS, fraction)


def test_validation_and_test_are_unchanged():
    splits = Splits(train=TRAIN, val=np.array([0, 2]), test=np.array([4, 6, 8]))
    cut = with_labelled_subset(splits, LABELS, 0.2, seed=0)
    assert np.array_equal(cut.val, splits.val) and np.array_equal(cut.test, splits.test)
    assert np.array_equal(cut.train, labelled_subset(TRAIN, LABELS, 0.2, seed=0)) and len(cut.train) == 4
    assert with_labelled_subset(splits, LABELS, 1.0) is splits
