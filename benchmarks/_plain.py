"""The training loop of one study trial without Ray, Optuna or MLflow: what a research script runs.

Shared by the ``overhead`` and ``parallel`` benchmarks so both compare `study` with the same loop: same
data, splits, noise, model, augmentation, algorithm and hyperparameters (the cell's fixed ones), then the
clean-test evaluation at the best-validation epoch. ``python -m benchmarks._plain SPEC CELL CACHE`` runs
one from a shell.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def plain_trial(spec_path: str | Path, cell: int, cache: str | Path, threads: int | None = None) -> list[float]:
    """Train cell ``cell`` of the spec at its tuning point; returns the time at the end of every epoch."""
    import numpy as np
    import torch

    from study.data import make_splits
    from study.data.pipeline import AugmentConfig, TensorLoader
    from study.lnl import ALGORITHMS, OptimConfig
    from study.models import Classifier, build_backbone
    from study.train import final_test, fit
    from study.tuning.plan import make_plan
    from study.tuning.spec import OPTIM_PARAMS, load_spec
    from study.tuning.trainables import load_data, noisy_labels

    spec = load_spec(spec_path)
    point = make_plan(spec).cells[cell].tune_point
    entry = spec.lnl_map[point.lnl]
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(point.seed)
    data = load_data(spec, point.dataset, str(cache))
    ds = spec.dataset_map[point.dataset]
    splits = make_splits(data, ds.splits.val_fraction, ds.splits.test_fraction, seed=point.seed)
    noisy, _ = noisy_labels(spec, data, splits, point)
    train = TensorLoader(data.images[splits.train], noisy[splits.train], entry.batch_size, shuffle=True,
                         augment_cfg=AugmentConfig(scale=(0.7, 1.0), flip=True), seed=point.seed,
                         indices=splits.train)
    val = TensorLoader(data.images[splits.val], noisy[splits.val], 512)
    hp = dict(entry.fixed)
    optim = {k: hp.pop(k) for k in OPTIM_PARAMS if k in hp}

    def make_model():
        return Classifier(build_backbone(spec.model.backbone, data.channels, data.resolution), data.num_classes)

    algo = ALGORITHMS[entry.algorithm](make_model, data.num_classes, len(data),
                                       OptimConfig(epochs=entry.epochs, **optim), torch.device("cpu"),
                                       noise_rate=point.noise_rate, **hp)
    ends: list[float] = []
    labels = np.asarray(data.labels)
    result = fit(algo, train, val, entry.epochs, clean_train_labels=labels, noisy_train_labels=noisy,
                 on_epoch=lambda *a: ends.append(time.perf_counter()))
    final = final_test(algo, result, TensorLoader(data.images[splits.test], labels[splits.test], 512))
    print(f"cell {cell}: test_f1 {final['test_f1']:.4f}", flush=True)
    return ends


if __name__ == "__main__":
    plain_trial(sys.argv[1], int(sys.argv[2]), sys.argv[3])
