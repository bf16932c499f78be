"""linear_probe: the Dedieu et al. 2024 grid (one dataset x one frozen encoder x every noise setting x the
seeds, an MLP head 512-128-64 per cell) three ways, timed end to end on one machine in one run:

- ``per_trial``: each trial runs the frozen encoder itself, as ``linear_probe`` trials did before
  embeddings were cached: the algorithm embeds the training split on its first epoch, and each validation
  pass and the test pass run the encoder on images (``LinearProbe`` given image loaders and the encoder).
- ``embeddings_once``: what a study trial does now (``study.experiment.build_trial``): the embeddings of the
  whole dataset are computed once into the cache by the first trial and read by every other one; each head
  trains, validates and tests on embedding rows. Heads are still trained one trial at a time.
- ``batched``: the embeddings once, and the heads of one seed (its noise settings share the split) trained
  together by ``train_heads``, one call per seed.
- ``packed``: the study's own path for a cell's final seeds (``resources.pack``): per noise setting, its
  seeds as the members of one packed trial (``build_pack`` per point, ``fit_pack`` stepping the heads
  together, each on its own split, labels and batches), the embeddings once
  (``linear_probe_packed_speedup``, against ``per_trial``; its test F1 against ``embeddings_once``'s).

``linear_probe_speedup`` is ``per_trial / batched`` wall time (the issue's figure);
``linear_probe_embeddings_once_speedup`` is ``per_trial / embeddings_once`` (what the study gains today).
Heads/s of ``train_heads`` against one head at a time, on the same cached embeddings, follow
(``linear_probe_batched_vs_alone``). ``train_heads`` runs with ``execution="auto"``: it times a few steps of
the grouped model against one head on this machine (``batching_pays``: measured once before the timed
calls, its seconds counted in the grid's time, not in the heads/s, and printed as
``linear_probe_crossover_probe_seconds``) and trains the heads grouped or one after another, whichever is
faster; ``linear_probe_execution`` says which.

Declared before running (``FULL``, ``QUICK``): synthetic 64 px RGB images (``synthetic`` stands in for a
histopathology dataset: the cost does not depend on the pixels), a torchvision ResNet-18 with random weights
saved to a file and loaded as ``ssl: {method: pretrained}`` (a foundation encoder's stand-in: nothing is
downloaded), uniform noise, clean validation labels (the paper's), SGD lr 0.025 momentum 0.9, batch 512,
patience off so that every variant runs the same epochs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

#: the paper's head and optimiser (docs/lnl.md)
HIDDEN = [512, 128, 64]
FIXED = {"optimizer": "sgd", "lr": 0.025, "momentum": 0.9, "weight_decay": 0.0, "hidden": HIDDEN}
BATCH = 512


@dataclass(frozen=True)
class Size:
    images: int
    classes: int
    side: int
    rates: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int


FULL = Size(3_000, 9, 64, (0.0, 0.2, 0.4, 0.6, 0.8), (0, 1, 2, 3), 20)
QUICK = Size(1_000, 9, 64, (0.0, 0.4, 0.8), (0, 1), 5)


def _spec(size: Size, weights: Path):
    from study.tuning.spec import parse_spec

    return parse_spec(
        {
            "name": "linear_probe_bench",
            "datasets": [
                {
                    "name": "synthetic",
                    "options": {
                        "num_samples": size.images,
                        "num_classes": size.classes,
                        "image_size": size.side,
                        "seed": 0,
                    },
                }
            ],
            "noise": {"kinds": ["uniform"], "rates": list(size.rates), "noisy_validation": False},
            "ssl": [{"id": "encoder", "method": "pretrained", "init": {"weights": str(weights)}}],
            "model": {"backbone": "resnet18"},
            "lnl": [
                {
                    "algorithm": "linear_probe",
                    "epochs": size.epochs,
                    "batch_size": BATCH,
                    "head": {"frozen": True},
                    "fixed": dict(FIXED),
                }
            ],
            "seeds": list(size.seeds),
            "tuning": {"samples_per_cell": 1, "sampler": "random"},
            "early_stopping": {"enabled": False},
        }
    )


def _points(spec, size: Size):
    from study.tuning.plan import Point

    return [Point("synthetic", "uniform", r, "encoder", "linear_probe", s) for s in size.seeds for r in size.rates]


def per_trial(spec, size: Size, cache: Path) -> tuple[float, list[float]]:
    """Each trial with the frozen encoder in its loop: embedding the training split, then every validation
    and test pass, on images."""
    from study import experiment as E
    from study.data.pipeline import TensorLoader
    from study.lnl import ALGORITHMS
    from study.models import Classifier
    from study.train import final_test, fit

    dev, f1 = torch.device("cpu"), []
    t0 = time.perf_counter()
    for point in _points(spec, size):
        entry = spec.lnl_map[point.lnl]
        data = E.load_dataset(spec, point.dataset, cache)
        splits = E.trial_splits(spec, data, point)
        labels, _ = E.corrupt(spec, data, splits, point)
        optim, batch, own = E.split_hparams(entry, dict(entry.fixed))
        encoder = E.build_encoder(spec, point, cache, cache, dev)
        norm = E.input_normalization(spec, point)
        algo = ALGORITHMS["linear_probe"](
            lambda enc=encoder, k=data.num_classes: Classifier(enc, k, frozen=True),
            data.num_classes,
            len(data),
            optim,
            dev,
            noise_rate=point.noise_rate,
            seed=point.seed,
            **own,
        )
        images, s, clean = data.images, splits, np.asarray(data.labels)
        train = TensorLoader(images[s.train], labels[s.train], batch, shuffle=True, seed=point.seed,
                             indices=s.train, random_crop=True, norm=norm)  # fmt: skip
        val = TensorLoader(images[s.val], labels[s.val], E.EVAL_BATCH, norm=norm)
        result = fit(algo, train, val, entry.epochs)
        test = TensorLoader(images[s.test], clean[s.test], E.EVAL_BATCH, norm=norm)
        f1.append(final_test(algo, result, test)["test_f1"])
    return time.perf_counter() - t0, f1


def embeddings_once(spec, size: Size, cache: Path) -> tuple[float, list[float]]:
    """The study's trial recipe: the first trial fills the embedding cache, every trial reads it."""
    from study.experiment import build_trial

    f1 = []
    t0 = time.perf_counter()
    for point in _points(spec, size):
        trial = build_trial(spec, point, dict(spec.lnl[0].fixed), torch.device("cpu"), cache, cache)
        f1.append(trial.final_metrics(trial.fit(), cache)["test_f1"])
    return time.perf_counter() - t0, f1


def packed(spec, size: Size, cache: Path) -> tuple[float, list[float]]:
    """The study's own path for a cell's final seeds (``resources.pack``, ``plan.pack_finals``): per noise
    rate, its seeds as the members of one packed trial (``build_pack`` per point, ``fit_pack`` stepping their
    heads together, each on its own split and labels), the embeddings once; test F1 per head, in the order
    of ``_points``."""
    from study.experiment import build_pack
    from study.train import fit_pack

    f1: dict = {}
    t0 = time.perf_counter()
    for rate in size.rates:
        points = [p for p in _points(spec, size) if p.noise_rate == rate]
        trials = [build_pack(spec, p, [dict(spec.lnl[0].fixed)], torch.device("cpu"), cache, cache)[0] for p in points]
        members = [t.pack_member() for t in trials]
        fit_pack(members, trials[0].entry.epochs, stopping=trials[0].stopping)
        for p, t, m in zip(points, trials, members):
            f1[p] = t.final_metrics(m.result, cache)["test_f1"]
    return time.perf_counter() - t0, [f1[p] for p in _points(spec, size)]


def batched(spec, size: Size, cache: Path) -> tuple[float, float, float, str, float]:
    """The embeddings once, and per seed the heads of every noise rate in one ``train_heads`` call; then the
    same heads one at a time. Returns (grid wall time, batched heads/s, one-at-a-time heads/s, the
    execution ``train_heads`` chose, seconds of its crossover probe).

    Before the first call, one head trains for one epoch (torch's first-call set-up, left out of every
    figure: it fell on the batched side before and made it look slower) and ``batching_pays`` measures the
    crossover (its seconds count in the grid's time, not in the heads/s)."""
    from study import experiment as E
    from study.lnl.linear_probe import batching_pays, predict_heads, train_heads

    t0 = time.perf_counter()
    train_s = single_s = warm_s = 0.0
    probe_s: float | None = None
    for seed in size.seeds:
        points = [p for p in _points(spec, size) if p.seed == seed]
        data = E.load_dataset(spec, "synthetic", cache)
        splits = E.trial_splits(spec, data, points[0])
        embedder = E.Embedder(
            E.encoder_file(spec, points[0], cache, cache, torch.device("cpu")),
            cache,
            spec.model.resolution,
            E.input_normalization(spec, points[0]),
            torch.device("cpu"),
        )
        rows = embedder(data)
        noisy = np.stack([E.corrupt(spec, data, splits, p)[0] for p in points])
        args = (rows[splits.train], noisy[:, splits.train], rows[splits.val], noisy[:, splits.val], data.num_classes)
        kw = dict(hidden=tuple(HIDDEN), epochs=size.epochs, lr=0.025, batch_size=BATCH, patience=None)
        if probe_s is None:
            t1 = time.perf_counter()
            train_heads(*args[:1], args[1][:1], args[2], args[3][:1], args[4], **{**kw, "epochs": 1})
            t2 = time.perf_counter()
            batching_pays(len(points), args[0].shape[1], HIDDEN, BATCH, data.num_classes, torch.device("cpu"))
            warm_s, probe_s = t2 - t1, time.perf_counter() - t2
        t1 = time.perf_counter()
        heads = train_heads(*args, **kw, seeds=[p.seed * 100 + i for i, p in enumerate(points)])
        train_s += time.perf_counter() - t1
        chosen = heads.execution
        predict_heads(heads.model(), torch.from_numpy(np.asarray(rows[splits.test])))  # the test pass
        t1 = time.perf_counter()
        for i, p in enumerate(points):
            a = args
            train_heads(a[0], a[1][i : i + 1], a[2], a[3][i : i + 1], a[4], **kw, seeds=[p.seed * 100 + i])
        single_s += time.perf_counter() - t1
    grid = time.perf_counter() - t0 - single_s - warm_s
    heads = len(size.rates) * len(size.seeds)
    return grid, heads / train_s, heads / single_s, chosen, probe_s or 0.0


def main(quick: bool = False) -> None:
    size = QUICK if quick else FULL
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="linear_probe_bench_") as tmp:
        spec, caches = prepare(size, Path(tmp))
        t_trial, f1_trial = per_trial(spec, size, caches["per_trial"])
        t_once, f1_once = embeddings_once(spec, size, caches["embeddings_once"])
        t_batched, hps_batched, hps_single, chosen, probe_s = batched(spec, size, caches["batched"])
        t_packed, f1_packed = packed(spec, size, caches["packed"])
    heads = len(size.rates) * len(size.seeds)
    print(f"linear_probe_heads: {heads}")
    print(f"linear_probe_images: {size.images}")
    print(f"linear_probe_side: {size.side}")
    print(f"linear_probe_epochs: {size.epochs}")
    print(f"linear_probe_per_trial_seconds: {t_trial:.1f}")
    print(f"linear_probe_embeddings_once_seconds: {t_once:.1f}")
    print(f"linear_probe_batched_seconds: {t_batched:.1f}")
    print(f"linear_probe_embeddings_once_speedup: {t_trial / t_once:.2f}")
    print(f"linear_probe_speedup: {t_trial / t_batched:.2f}")
    print(f"linear_probe_batched_heads_per_s: {hps_batched:.3f}")
    print(f"linear_probe_one_at_a_time_heads_per_s: {hps_single:.3f}")
    print(f"linear_probe_crossover_probe_seconds: {probe_s:.2f}")
    print(f"linear_probe_execution: {chosen}")
    print(f"linear_probe_batched_vs_alone: {hps_batched / hps_single:.2f}")
    print(f"linear_probe_packed_seconds: {t_packed:.1f}")
    print(f"linear_probe_packed_speedup: {t_trial / t_packed:.2f}")
    print(f"linear_probe_packed_vs_embeddings_once: {t_once / t_packed:.2f}")
    # the study's packed heads are the heads its trials train one by one
    print(f"linear_probe_packed_max_test_f1_difference: {max(abs(a - b) for a, b in zip(f1_packed, f1_once)):.2e}")
    # the same heads on cached rows as on images through the encoder: the same test F1 (float noise aside)
    diff = max(abs(a - b) for a, b in zip(f1_trial, f1_once, strict=True))
    print(f"linear_probe_max_test_f1_difference: {diff:.2e}")


def prepare(size: Size, root: Path):
    """The grid's spec (a ResNet-18 with random weights saved under ``root`` as its encoder file) and one
    cache per variant under ``root``, each with the decoded dataset and the encoder already stored and no
    embeddings (so each variant's time starts at its first embedding)."""
    from torchvision.models import resnet18

    weights = root / "resnet18_random.pt"
    torch.save(resnet18(weights=None).state_dict(), weights)
    spec = _spec(size, weights)
    caches = {v: root / v for v in ("per_trial", "embeddings_once", "batched", "packed")}
    for c in caches.values():
        c.mkdir()
        _warm(spec, size, c)
    return spec, caches


def _warm(spec, size: Size, cache: Path) -> None:
    """Decode the dataset and store the encoder in ``cache`` (not part of any variant's time)."""
    from study import experiment as E

    for point in _points(spec, size)[:: len(size.rates)]:
        E.load_dataset(spec, point.dataset, cache)
        E.encoder_file(spec, point, cache, cache, torch.device("cpu"))
