"""One intra-op thread for the tiny LNL tests: on a shared 2-core machine, two threads per process spin
against the other jobs' threads (measured 4x slower per step); restored after the package's tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
