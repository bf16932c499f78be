"""linear_probe: MLP heads (Dedieu et al. 2024, 512-128-64) trained per second from cached embeddings,
H heads batched in one ``train_heads`` call against the same H heads trained one at a time.

Embeddings: 512-d features of N samples (a frozen encoder's output is what stage 2 caches; their values
do not change the cost), 10 classes, one noisy label set per head (noise rates x seeds). Both variants run
the same epochs with patience off, so the ratio is the speed-up of batching alone.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from study.lnl.linear_probe import train_heads
from study.noise import inject_noise


def main(quick: bool = False) -> None:
    n, n_val, d, k = (4000, 1000, 512, 10) if quick else (20000, 4000, 512, 10)
    heads, epochs = (8, 5) if quick else (16, 10)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(k, d)).astype(np.float32)
    y = rng.integers(0, k, n)
    yv = rng.integers(0, k, n_val)
    x = centers[y] + rng.normal(scale=2.0, size=(n, d)).astype(np.float32)
    xv = centers[yv] + rng.normal(scale=2.0, size=(n_val, d)).astype(np.float32)
    rates = np.linspace(0.0, 0.6, heads // 2).tolist() * 2
    noisy = np.stack([inject_noise(y, k, "symmetric", r, seed=i).labels for i, r in enumerate(rates)])
    noisy_val = np.stack([inject_noise(yv, k, "symmetric", r, seed=100 + i).labels for i, r in enumerate(rates)])
    torch.set_num_threads(max(1, torch.get_num_threads()))

    t0 = time.perf_counter()
    batched = train_heads(x, noisy, xv, noisy_val, k, epochs=epochs, patience=None, seeds=list(range(heads)))
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    singles = [
        train_heads(x, noisy[i : i + 1], xv, noisy_val[i : i + 1], k, epochs=epochs, patience=None, seeds=[i])
        for i in range(heads)
    ]
    t_single = time.perf_counter() - t0

    print(f"linear_probe_heads: {heads}")
    print(f"linear_probe_samples: {n}")
    print(f"linear_probe_epochs: {epochs}")
    print(f"linear_probe_batched_heads_per_s: {heads / t_batched:.3f}")
    print(f"linear_probe_one_at_a_time_heads_per_s: {heads / t_single:.3f}")
    print(f"linear_probe_speedup: {t_single / t_batched:.2f}")
    # the batched heads are the independent trainings: same selected validation F1 per head
    diff = max(abs(float(batched.best_val_f1[i]) - float(singles[i].best_val_f1[0])) for i in range(heads))
    print(f"linear_probe_max_val_f1_difference: {diff:.2e}")
