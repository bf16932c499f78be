"""Shared fixtures for the SSL tests: one CPU thread (the tiny batches run faster single-threaded on a
shared machine) and a tiny synthetic dataset with two views per patient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data import get_dataset


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_data():
    """64 synthetic 16 px RGB images, 4 classes, 2 images per patient."""
    return get_dataset("synthetic", num_samples=64, image_size=16, views_per_patient=2).load(None)


@pytest.fixture(scope="session")
def tiny_batch(tiny_data) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(tiny_data.images[:16]))


#: hyperparameters that keep the heads small enough for a CPU unit test
SMALL_HPARAMS = {
    "barlow_twins": {"projector_dim": 64},
    "jigsaw": {"num_permutations": 10},
    "moco_v2": {"queue_size": 16, "proj_hidden_dim": 64},
    "simclr": {},
    "micle": {},
}
