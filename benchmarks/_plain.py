"""The training loop of one study trial without Ray, Optuna or MLflow: what a research script runs.

Shared by the ``overhead`` and ``parallel`` benchmarks so both compare `study` with the same loop: same
data, splits, noise, model, augmentation, algorithm and hyperparameters (the cell's fixed ones), then the
clean-test evaluation at the best-validation epoch. ``python -m benchmarks._plain SPEC CELL CACHE [HPARAMS]``
runs one from a shell (``HPARAMS``: a JSON object of hyperparameters instead of the entry's fixed ones; the
``packing`` benchmark passes each sample of a cell).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from study.experiment import build_trial
from study.tuning.plan import make_plan
from study.tuning.spec import load_spec


def plain_trial(
    spec_path: str | Path,
    cell: int,
    cache: str | Path,
    threads: int | None = None,
    hparams: dict | None = None,
) -> list[float]:
    """Train cell ``cell`` of the spec at its tuning point with ``hparams`` (default: the LNL entry's fixed
    hyperparameters), through the study's own trial recipe (``study.experiment``) but without Ray, Optuna or
    MLflow; returns the time at the end of every epoch."""
    spec = load_spec(spec_path)
    point = make_plan(spec).cells[cell].tune_point
    if threads:
        torch.set_num_threads(threads)
    chosen = dict(spec.lnl_map[point.lnl].fixed) if hparams is None else hparams
    trial = build_trial(spec, point, chosen, torch.device("cpu"), cache, cache)
    ends: list[float] = []
    result = trial.fit(on_epoch=lambda *a: ends.append(time.perf_counter()))
    final = trial.final_metrics(result, cache)
    print(f"cell {cell}: test_f1 {final['test_f1']:.4f}", flush=True)
    return ends


if __name__ == "__main__":
    plain_trial(sys.argv[1], int(sys.argv[2]), sys.argv[3], hparams=json.loads(sys.argv[4]) if sys.argv[4:] else None)
