"""The jigsaw permutation set: distinct permutations, deterministic, chosen for a large minimum Hamming distance."""

from __future__ import annotations

import numpy as np

from study.ssl.permutations import max_hamming_permutations


def test_distinct_valid_deterministic():
    p = max_hamming_permutations(9, 100)
    assert p.shape == (100, 9)
    assert (np.sort(p, axis=1) == np.arange(9)).all()
    assert len({tuple(r) for r in p}) == 100
    assert np.array_equal(p, max_hamming_permutations(9, 100))


def test_minimum_distance_beats_random_sets():
    p = max_hamming_permutations(9, 100)
    d = (p[:, None, :] != p[None, :, :]).sum(-1)
    rng = np.random.default_rng(0)
    r = np.array([rng.permutation(9) for _ in range(100)])
    dr = (r[:, None, :] != r[None, :, :]).sum(-1)
    off = ~np.eye(100, dtype=bool)
    assert d[off].min() >= 6 and d[off].mean() > dr[off].mean()
