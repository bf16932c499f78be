"""Fixed permutation sets for puzzle pretext tasks."""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def max_hamming_permutations(num_tiles: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` permutations of ``num_tiles`` tiles chosen greedily for maximal minimum Hamming distance
    (Noroozi & Favaro 2016, Algorithm 1): start from a random permutation, then repeatedly add the one
    farthest (by its minimum distance) from those chosen. count x num_tiles int64; deterministic by seed."""
    all_perms = np.array(list(itertools.permutations(range(num_tiles))), dtype=np.int8)
    if count > len(all_perms):
        raise ValueError(f"only {len(all_perms)} permutations of {num_tiles} tiles exist, {count} requested")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(all_perms)))]
    min_dist = (all_perms != all_perms[chosen[0]]).sum(1)
    for _ in range(count - 1):
        j = int(np.argmax(min_dist))
        chosen.append(j)
        np.minimum(min_dist, (all_perms != all_perms[j]).sum(1), out=min_dist)
    return all_perms[chosen].astype(np.int64)
