"""SSL pretraining quality: kNN accuracy of each method's embeddings after a short pretraining vs random init.

On a real Fashion-MNIST subset (28 px grayscale, small_cnn backbone, the library's own ``pretrain`` with a
temporary cache), every registered SSL method is pretrained for a few epochs with its default
hyperparameters (exceptions below) and scored by the weighted kNN accuracy (k 20, Wu et al. 2018) of its
embeddings on the clean validation split, the bank being the training split. The random-init encoder
(same seed, same backbone) is the baseline. Prints ``ssl_knn_<method>: <acc> (random: <acc>)`` and
``ssl_epoch_seconds_<method>: <s>``.

Sizes: --quick 2,000 training / 500 validation images, 2 epochs, batch 64 (small batches give more steps
for the same CPU time); full 4,800 / 1,200, 8 epochs, batch 128; --long the full size for 24 epochs.
Deviations from the method defaults, for CPU cost only: Barlow Twins' projector is 1024 wide instead of
8192 (the 8192-wide one costs ~135 M multiply-adds per image, 20 times the backbone); jigsaw uses 100 permutations
instead of 1000 (a few epochs cannot fit 1000 classes). ``imagenet`` needs the weight file and a ResNet-18
and is not part of this CPU benchmark.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from study.ssl import METHODS, PretrainRequest, pretrain, read_history, read_meta

HPARAMS = {"barlow_twins": {"projector_dim": 1024}, "jigsaw": {"num_permutations": 100}}


def main(quick: bool = False, long: bool = False) -> None:
    # --long: decided before it ran, once, to test the explanation docs/ssl.md gives for the methods below
    # random init in the full run (too few steps): the full size with 3x the epochs (24, 900 steps)
    limit, epochs, batch = (2500, 2, 64) if quick else (6000, 24 if long else 8, 128)
    threads = int(os.environ.get("SSL_BENCH_THREADS", "1"))  # one thread is faster on a shared 2-core box
    torch.set_num_threads(threads)
    data_dir = os.environ.get("STUDY_DATA_CACHE")
    common = dict(
        dataset="fashion_mnist",
        dataset_options={"limit": limit, "test_limit": 1000},
        split_seed=0,
        backbone="small_cnn",
        resolution=None,
        init="random",
        seed=0,
        batch_size=batch,
        val_fraction=0.2,
        test_fraction=0.0,
    )
    print(f"ssl_bench_train_images: {int(limit * 0.8)}")
    print(f"ssl_bench_epochs: {epochs}")
    print(f"ssl_bench_batch_size: {batch}")
    print(f"ssl_bench_threads: {threads}")
    with tempfile.TemporaryDirectory() as cache:
        base = pretrain(
            PretrainRequest(method="random", hparams={}, epochs=0, **common),
            cache,
            device="cpu",
            data_cache_dir=data_dir,
        )
        random_acc = read_meta(base)["knn_acc"]
        print(f"ssl_knn_random: {random_acc:.4f}")
        for name, cls in METHODS.items():
            if not cls.trains:
                continue
            if name == "micle":  # Fashion-MNIST has no patients: MICLe refuses it (it was SimCLR here before)
                print("ssl_knn_micle: not measured (Fashion-MNIST has no multi-image patients)")
                continue
            t0 = time.perf_counter()
            path = pretrain(
                PretrainRequest(method=name, hparams=HPARAMS.get(name, {}), epochs=epochs, **common),
                cache,
                device="cpu",
                data_cache_dir=data_dir,
            )
            total = time.perf_counter() - t0
            hist = read_history(path)
            acc = hist[-1]["knn_acc"]
            per_epoch = sum(h["epoch_seconds"] for h in hist) / len(hist)
            print(f"ssl_knn_{name}: {acc:.4f} (random: {random_acc:.4f})")
            print(f"ssl_epoch_seconds_{name}: {per_epoch:.1f}")
            print(f"ssl_loss_{name}: {hist[0]['ssl_loss']:.4f} -> {hist[-1]['ssl_loss']:.4f}")
            curve = " ".join(f"{h['knn_acc']:.4f}" for h in hist)
            print(f"ssl_knn_curve_{name}: {curve}")
            print(f"ssl_total_seconds_{name}: {total:.1f}", flush=True)
