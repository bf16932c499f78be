"""Splits: stratified, grouped by patient (no patient in two splits), official test kept, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from study.data import DataError, ImageData, get_dataset, make_splits


def _data(n=600, k=3, patients=None, official=None):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k, size=n)
    return ImageData(
        name="t",
        images=np.zeros((n, 8, 8, 1), np.uint8),
        labels=labels,
        class_names=[str(i) for i in range(k)],
        patient_ids=patients,
        official_split=official,
    )


def test_partition_and_stratification():
    d = _data()
    s = make_splits(d, val_fraction=0.1, test_fraction=0.2, seed=0)
    all_idx = np.concatenate([s.train, s.val, s.test])
    assert len(all_idx) == len(d) and len(np.unique(all_idx)) == len(d)
    assert abs(len(s.test) - 120) <= 3 and abs(len(s.val) - 48) <= 3
    for c in range(3):
        frac = np.mean(d.labels[s.test] == c) - np.mean(d.labels == c)
        assert abs(frac) < 0.02


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_patient_grouped_splits_never_share_a_patient(seed):
    data = get_dataset("synthetic", num_samples=900, num_classes=3, image_size=8, views_per_patient=4, seed=seed).load(
        None
    )
    s = make_splits(data, val_fraction=0.15, test_fraction=0.2, seed=seed)
    sets = [set(data.patient_ids[ix]) for ix in (s.train, s.val, s.test)]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert all(len(x) > 10 for x in sets)
    assert abs(len(s.test) / len(data) - 0.2) < 0.05


def test_official_test_kept_and_val_carved_from_train():
    official = np.array(["train"] * 500 + ["test"] * 100)
    s = make_splits(_data(official=official), val_fraction=0.1, test_fraction=0.3, seed=0)
    np.testing.assert_array_equal(s.test, np.arange(500, 600))
    assert abs(len(s.val) - 50) <= 3 and s.val.max() < 500


def test_official_val_kept():
    official = np.array(["train"] * 400 + ["val"] * 100 + ["test"] * 100)
    s = make_splits(_data(official=official), seed=5)
    np.testing.assert_array_equal(s.val, np.arange(400, 500))


def test_deterministic_by_seed():
    d = _data()
    a, b, c = (make_splits(d, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


def test_bad_fractions():
    with pytest.raises(DataError, match="splits.val_fraction"):
        make_splits(_data(), val_fraction=1.2)
    with pytest.raises(DataError, match="below 1"):
        make_splits(_data(), val_fraction=0.5, test_fraction=0.5)
