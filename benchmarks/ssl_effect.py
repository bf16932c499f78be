"""ssl_effect: does self-supervised pretraining protect a classifier trained on wrong labels?

The papers' question at CPU scale, through the study's own recipe (``study.experiment``: the spec is
checked at the door, each encoder pretrained once per (method, seed) into a temporary cache, each run
built by ``build_trial`` as a study trial is): real Fashion-MNIST, ``SIZE.train_images`` training images
(pretraining reads them without labels), ``SIZE.val_images`` noisy validation images, the first
``SIZE.test_images`` official test images with clean labels. The backbone is the one that memorises in the
LNL effects benchmark (``two_conv_cnn``, no augmentation downstream, Adam 1e-3 constant, batch 128,
``SIZE.epochs`` epochs), fine-tuned whole from each initialisation: every SSL method the CPU can pretrain,
against random init (``random``), with CE and Co-teaching under symmetric noise.

Per initialisation it prints the encoder's quality, ``ssl_effect_<method>_knn`` (the pretraining's
weighted kNN accuracy on its validation split) and ``ssl_effect_<method>_probe_f1`` (a linear probe on the
frozen embeddings, trained and selected on clean labels: the encoder's linear separability, macro-F1 on the
validation split), then per (method, algorithm, noise) ``ssl_effect_<method>_<algo>_<noise>_best`` and
``_last5`` (clean-test macro-F1 at the best noisy-validation epoch, and over the last five epochs:
``mean ± std`` over the seeds), and ``..._vs_random`` (the difference of the seed means of ``best``
against random init, with its standard error and how many standard errors it is).

Declared before running (``FULL``, ``QUICK``, ``SSL_HPARAMS``). Short-schedule departures from the
methods' defaults, for CPU cost only and the same at both sizes: Barlow Twins' projector 1024 wide (not
8192) and Adam (lr 2e-3 for weights and biases, 1e-3 after the batch scaling: LARS at lr 0.2 barely moves
the backbone in a few hundred steps, docs/ssl.md); jigsaw 100
permutations (not 1000). ``imagenet`` and ``pretrained`` need weight files: none is part of this
benchmark. ``--quick``: random init, SimCLR and MoCo v2, CE at symmetric 0.8, one seed.

MICLe needs patients with several images, which Fashion-MNIST has not: a second block (``VIEWS``, printed
as ``ssl_effect_views_...``) runs random init, SimCLR and MICLe on Fashion-MNIST's multi-view stand-in
(``views: 2``, study/data/fashion_mnist.py: each garment once as itself and once under its own pose and
exposure, a patient's two images in one split), with the same training-image counts and schedules, CE and
Co-teaching at symmetric 0.8.

The full size is about two hours of CPU work on 2 cores; ``--algo NAME`` runs the runs of one of the size's
algorithms only (the same declared sizes; the printed figures are that algorithm's), and
``SSL_EFFECT_CACHE=DIR`` keeps the pretrained encoders in DIR (the study's content-addressed cache) so a
second part pretrains nothing; ``SSL_EFFECT_BLOCKS=main`` or ``=views`` runs one block.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from benchmarks.lnl import BACKBONE, BATCH, HPARAMS, OPTIM

WORKERS = int(os.environ.get("SSL_EFFECT_WORKERS", "2"))
DATASET = "fashion_mnist"
NOISES = {"sym0.5": 0.5, "sym0.8": 0.8}
#: every SSL method that trains on one image at a time without a weight file (MICLe: the ``VIEWS`` block)
METHODS = ("simclr", "moco_v2", "barlow_twins", "rotation", "jigsaw", "jigmag", "vae", "bigbigan")
SSL_HPARAMS: dict[str, dict] = {
    # Adam at 2e-3 for weights and biases, scaled by batch/256 to SimCLR's 1e-3 (docs/ssl.md's diagnostic run)
    "barlow_twins": {"projector_dim": 1024, "optimizer": "adam", "lr": 2e-3, "lr_biases": 2e-3},
    "jigsaw": {"num_permutations": 100},
}
#: the linear probe: epochs (with patience) and learning rate of ``study.lnl.linear_probe.train_heads``
PROBE_EPOCHS, PROBE_PATIENCE = 100, 20


@dataclass(frozen=True)
class Size:
    train_images: int
    val_images: int
    test_images: int
    pretrain_epochs: int
    pretrain_batch: int
    epochs: int
    seeds: tuple[int, ...]
    methods: tuple[str, ...]  # besides random init, always run
    algos: tuple[str, ...]
    noises: tuple[str, ...]
    views: int = 1  # images per patient: > 1 is Fashion-MNIST's multi-view stand-in (MICLe's patients)


FULL = Size(5_000, 1_000, 2_000, 20, 128, 20, (0, 1, 2), METHODS, ("ce", "co_teaching"), tuple(NOISES))
QUICK = Size(5_000, 1_000, 2_000, 20, 128, 20, (0,), ("simclr", "moco_v2"), ("ce",), ("sym0.8",))
#: MICLe against SimCLR and random init on the multi-view stand-in: 2,500 + 500 garments seen twice each
VIEWS = Size(5_000, 1_000, 2_000, 20, 128, 20, (0, 1, 2), ("simclr", "micle"), ("ce", "co_teaching"), ("sym0.8",), 2)


def spec_dict(size: Size) -> dict:
    """The benchmark as a study spec (checked by the door before anything runs)."""
    n = size.train_images + size.val_images
    views = {"views": size.views} if size.views > 1 else {}
    ssl = [{"method": "random"}] + [
        {
            "method": m,
            "epochs": size.pretrain_epochs,
            "batch_size": size.pretrain_batch,
            "hparams": SSL_HPARAMS.get(m, {}),
        }
        for m in size.methods
    ]
    lnl = [
        {
            "algorithm": a,
            "epochs": size.epochs,
            "batch_size": BATCH,
            "augment": "none",
            "fixed": {**OPTIM, **HPARAMS[a]},
        }
        for a in size.algos
    ]
    return {
        "name": "ssl-effect",
        "datasets": [
            {
                "name": DATASET,
                "options": {"limit": n // size.views, "test_limit": size.test_images, **views},
                "splits": {"val_fraction": size.val_images / n, "test_fraction": 0.0},
            }
        ],
        "noise": {"kinds": ["symmetric"], "rates": [NOISES[x] for x in size.noises]},
        "ssl": ssl,
        "model": {"backbone": BACKBONE},
        "lnl": lnl,
        "seeds": list(size.seeds),
        "tuning": {"samples_per_cell": 1, "sampler": "random"},
    }


def _spec(size: Size):
    from study.tuning.spec import parse_spec

    return parse_spec(spec_dict(size), "benchmarks/ssl_effect.py")


def encoder_quality(size: Size, ssl: str, seed: int, cache: str) -> dict:
    """Pretrain (or find) the encoder of (``ssl``, ``seed``); its kNN accuracy and linear-probe F1."""
    from study.data.pipeline import TensorLoader
    from study.experiment import input_normalization, load_dataset, pretrain_request, trial_splits
    from study.lnl.linear_probe import train_heads
    from study.ssl import load_encoder, pretrain, read_meta
    from study.tuning.plan import Point

    torch.set_num_threads(1)
    spec = _spec(size)
    t0 = time.perf_counter()
    path = pretrain(pretrain_request(spec, DATASET, ssl, seed), cache, device="cpu", data_cache_dir=cache)
    seconds = time.perf_counter() - t0
    point = Point(DATASET, "symmetric", NOISES[size.noises[0]], ssl, size.algos[0], seed)
    data = load_dataset(spec, DATASET, cache)
    splits = trial_splits(spec, data, point)
    labels = np.asarray(data.labels)
    encoder = load_encoder(path, device="cpu").eval()

    def embed(idx: np.ndarray) -> np.ndarray:
        loader = TensorLoader(data.images[idx], labels[idx], 1024, norm=input_normalization(spec, point))
        with torch.no_grad():
            return torch.cat([encoder(x) for x, _, _ in loader]).numpy()

    probe = train_heads(
        embed(splits.train),
        labels[splits.train][None],
        embed(splits.val),
        labels[splits.val][None],
        data.num_classes,
        hidden=(),
        epochs=PROBE_EPOCHS,
        patience=PROBE_PATIENCE,
        seeds=[seed],
    )
    knn = read_meta(path).get("knn_acc")
    return {"ssl": ssl, "seed": seed, "knn": knn, "probe_f1": float(probe.best_val_f1[0]), "seconds": seconds}


def downstream(size: Size, ssl: str, algo: str, noise: str, seed: int, cache: str) -> dict:
    """One run from the encoder of (``ssl``, ``seed``): clean-test F1 at the best noisy-validation epoch and
    over the last five."""
    from study.experiment import build_trial
    from study.tuning.plan import Point

    torch.set_num_threads(1)
    spec = _spec(size)
    point = Point(DATASET, "symmetric", NOISES[noise], ssl, algo, seed)
    trial = build_trial(spec, point, dict(spec.lnl_map[algo].fixed), torch.device("cpu"), cache, cache)
    t0 = time.perf_counter()
    result = trial.fit()
    final = trial.final_metrics(result, cache)
    return {
        "ssl": ssl,
        "algo": algo,
        "noise": noise,
        "seed": seed,
        "best": final["test_f1"],
        "last5": final["test_f1_last5"],
        "best_epoch": final["best_epoch"],
        "seconds": time.perf_counter() - t0,
    }


def _mean_std(values: list[float]) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.4f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.4f}"


def _versus(values: list[float], base: list[float]) -> str:
    """Difference of means with its standard error (Welch) and the difference in standard errors."""
    a, b = np.asarray(values, dtype=float), np.asarray(base, dtype=float)
    diff = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return f"{diff:+.4f} (one seed: no standard error)"
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return f"{diff:+.4f} ± {se:.4f} ({diff / se if se > 0 else float('inf'):.1f} SE)"


def main(quick: bool = False, algos: tuple[str, ...] = ()) -> None:
    blocks = {"ssl_effect": QUICK} if quick else {"ssl_effect": FULL, "ssl_effect_views": VIEWS}
    chosen = os.environ.get("SSL_EFFECT_BLOCKS")
    if chosen:
        names = {b: f"ssl_effect_{b}".removesuffix("_main") for b in chosen.split(",")}
        unknown = [b for b, n in names.items() if n not in blocks]
        if unknown:
            print(f"ssl_effect: SSL_EFFECT_BLOCKS names {unknown[0]!r}; allowed: main, views", file=sys.stderr)
            raise SystemExit(2)
        blocks = {n: blocks[n] for n in names.values()}
    for size in blocks.values():
        _spec(size)  # the door, before anything runs
        unknown = sorted(set(algos) - set(size.algos))
        if unknown:
            print(f"ssl_effect: --algo {unknown[0]} is not one of the algorithms {size.algos}", file=sys.stderr)
            raise SystemExit(2)
    t_all = time.perf_counter()
    kept = os.environ.get("SSL_EFFECT_CACHE")
    with tempfile.TemporaryDirectory(prefix="ssl-effect-") as scratch:
        for prefix, size in blocks.items():
            run_block(prefix, size, tuple(a for a in size.algos if not algos or a in algos), kept or scratch)
    print(f"ssl_effect_total_seconds: {time.perf_counter() - t_all:.0f}")


def run_block(prefix: str, size: Size, algos: tuple[str, ...], cache: str) -> None:
    """Pretrain the block's encoders, measure them, run ``algos`` from each: print the block's figures."""
    print(f"{prefix}_algos: {','.join(algos)}")
    inits = ("random", *size.methods)
    print(f"{prefix}_train_images: {size.train_images}")
    if size.views > 1:
        print(f"{prefix}_views_per_patient: {size.views}")
    print(f"{prefix}_pretrain_epochs: {size.pretrain_epochs}")
    print(f"{prefix}_epochs: {size.epochs}")
    print(f"{prefix}_seeds: {len(size.seeds)}")
    t_block = time.perf_counter()
    with ProcessPoolExecutor(WORKERS, mp_context=get_context("spawn")) as pool:
        # the data cache first, in this process: the workers then only read it
        from study.experiment import load_dataset

        load_dataset(_spec(size), DATASET, cache)
        jobs = [pool.submit(encoder_quality, size, s, seed, cache) for s in inits for seed in size.seeds]
        quality = [j.result() for j in jobs]
        for s in inits:
            rows = [q for q in quality if q["ssl"] == s]
            knn = [q["knn"] for q in rows if q["knn"] is not None]
            if knn:
                print(f"{prefix}_{s}_knn: {_mean_std(knn)}")
            print(f"{prefix}_{s}_probe_f1: {_mean_std([q['probe_f1'] for q in rows])}")
            if s != "random":
                print(f"{prefix}_{s}_pretrain_seconds: {np.mean([q['seconds'] for q in rows]):.0f}")
        runs = [(s, a, n, seed) for a in algos for n in size.noises for s in inits for seed in size.seeds]
        cost = {"co_teaching": 2}
        runs.sort(key=lambda r: -cost.get(r[1], 1))  # the longest first: the workers finish together
        results = [j.result() for j in [pool.submit(downstream, size, *r, cache) for r in runs]]
    for a in algos:
        for n in size.noises:
            base = [r["best"] for r in results if (r["ssl"], r["algo"], r["noise"]) == ("random", a, n)]
            for s in inits:
                rs = [r for r in results if (r["ssl"], r["algo"], r["noise"]) == (s, a, n)]
                print(f"{prefix}_{s}_{a}_{n}_best: {_mean_std([r['best'] for r in rs])}")
                print(f"{prefix}_{s}_{a}_{n}_last5: {_mean_std([r['last5'] for r in rs])}")
                if s != "random":
                    print(f"{prefix}_{s}_{a}_{n}_vs_random: {_versus([r['best'] for r in rs], base)}")
            seconds = [r["seconds"] for r in results if (r["algo"], r["noise"]) == (a, n)]
            print(f"{prefix}_{a}_{n}_run_seconds: {np.mean(seconds):.0f}")
    out = Path(tempfile.mkdtemp(prefix="ssl-effect-")) / f"{prefix}.json"
    out.write_text(json.dumps({"quality": quality, "runs": results}))
    print(f"{prefix}_results: {out}")
    print(f"{prefix}_seconds: {time.perf_counter() - t_block:.0f}")


if __name__ == "__main__":
    from benchmarks.__main__ import main as run

    sys.exit(run(["ssl_effect", *sys.argv[1:]]))
