"""Fashion-MNIST's multi-view stand-in (``views``): patients of V images for MICLe, on the real images."""

from __future__ import annotations

import numpy as np
import pytest

from study.data import get_dataset
from study.data.fashion_mnist import acquisitions
from study.data.splits import make_splits
from study.tuning.spec import SpecError, parse_spec


def views(n: int = 40, v: int = 3, seed: int = 0):
    return get_dataset("fashion_mnist", limit=n, test_limit=5, views=v, views_seed=seed).load(None)


def test_each_training_image_becomes_a_patient_of_v_images_and_test_images_stay_single():
    plain = get_dataset("fashion_mnist", limit=40, test_limit=5).load(None)
    data = views()
    assert len(data) == 40 * 3 + 5 and data.official_split.tolist().count("test") == 5
    pid = data.patient_ids
    assert pid[:6].tolist() == ["p00000"] * 3 + ["p00001"] * 3
    assert len(set(pid[-5:])) == 5 and not set(pid[-5:]) & set(pid[:-5])
    assert (data.labels[:120] == np.repeat(plain.labels[:40], 3)).all()
    assert (data.labels[120:] == plain.labels[40:]).all()
    images = np.asarray(data.images)[:120].reshape(40, 3, -1).astype(float)
    original = np.asarray(plain.images)[:40].reshape(40, -1).astype(float)
    assert (images[:, 0] == original).all()  # view 0 is the image itself
    assert (images[:, 1:] != original[:, None]).any(-1).all()


def test_an_acquisition_is_its_own_garment_under_another_pose():
    """Two images of one patient are more alike than two images of one class, yet not copies: an
    acquisition's best-correlated original is its own garment far more often than chance (1 in 200), and
    its correlation with it is higher than with the other garments of its class on average."""
    plain = get_dataset("fashion_mnist", limit=200, test_limit=5).load(None)
    data = views(200, 3)
    images = np.asarray(data.images)[:600].reshape(200, 3, -1).astype(float)
    original = np.asarray(plain.images)[:200].reshape(200, -1).astype(float)

    def unit(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(-1, keepdims=True)
        return a / np.linalg.norm(a, axis=-1, keepdims=True)

    same_class = plain.labels[:200, None] == plain.labels[None, :200]
    np.fill_diagonal(same_class, False)
    for k in (1, 2):
        corr = unit(images[:, k]) @ unit(original).T
        assert (corr.argmax(1) == np.arange(200)).mean() > 0.1
        assert np.diag(corr).mean() > corr[same_class].mean() + 0.1
        assert np.diag(corr).max() < 0.999  # no acquisition is a copy


def test_acquisitions_are_deterministic_by_seed():
    a, b, c = (np.asarray(views(12, 2, s).images) for s in (0, 0, 1))
    assert (a == b).all() and not (a == c).all()
    raw = np.zeros((2, 28, 28), dtype=np.uint8)
    raw[:, 10:18, 10:18] = 200
    out = acquisitions(raw, 4, 0)
    assert out.shape == (2, 4, 28, 28) and out.dtype == np.uint8 and (out[:, 0] == raw).all()


def test_a_patients_images_share_a_split():
    data = views(300, 2)
    s = make_splits(data, val_fraction=0.2, test_fraction=0.0, seed=3)
    pid = data.patient_ids
    assert not set(pid[s.train]) & set(pid[s.val])
    assert len(s.test) == 5 and abs(len(s.val) - 120) <= 10


def test_the_cache_key_of_single_view_data_is_unchanged_and_views_change_it():
    plain = get_dataset("fashion_mnist", limit=4).source_key()
    assert "views" not in plain
    assert get_dataset("fashion_mnist", limit=4, views=2).source_key() != plain
    assert (
        get_dataset("fashion_mnist", limit=4, views=2, views_seed=1).source_key()
        != get_dataset("fashion_mnist", limit=4, views=2).source_key()
    )


def spec(views: int | None) -> dict:
    options = {"limit": 50} | ({"views": views} if views is not None else {})
    return {
        "name": "mv",
        "datasets": [{"name": "fashion_mnist", "options": options}],
        "noise": {"kinds": ["symmetric"], "rates": [0.2]},
        "ssl": [{"method": "micle", "epochs": 1}],
        "model": {"backbone": "two_conv_cnn"},
        "lnl": [{"algorithm": "ce", "epochs": 1}],
        "seeds": [0],
    }


def test_the_door_takes_micle_on_the_stand_in_with_views_and_refuses_it_without():
    assert parse_spec(spec(2)).ssl[0].method == "micle"
    with pytest.raises(SpecError, match=r"micle needs several images per patient.*fashion_mnist: views"):
        parse_spec(spec(None))
    with pytest.raises(SpecError, match="views"):
        parse_spec(spec(0))
