"""method_cost: each SSL method's and LNL algorithm's compute per training image, relative to plain
supervised cross-entropy on the same backbone, measured on the machine where it runs. ``study plan``
charges pretraining jobs and LNL trials by these figures (``SSLMethod.step_cost``, ``Algorithm.step_cost``,
set from this benchmark's full run; docs/benchmarks.md holds the table with its date and machine).

- SSL: ``train_ssl`` on random images for ``epochs`` epochs (the first one warms up and is left out);
  its ``epoch_seconds`` per image (the method's views, forward, backward and update: what a pretraining
  epoch costs) over the same for a supervised step (``Classifier`` of the backbone, cross-entropy, SGD) on
  the same batches.
- LNL: a trial built by the study's recipe (``study.experiment.build_trial``, synthetic data, symmetric
  noise 0.4, the algorithm's default hyperparameters) trained for ``epochs`` epochs; the median epoch after
  the warm-up ones (each epoch is training plus the noisy-validation pass), over the same for CE. DivideMix
  is timed after its CE warm-up (``warmup_epochs: 1``), Co-teaching's forget rate ramps as in a study.

``python -m benchmarks method_cost [--quick]`` prints ``cost_ssl_<method>: X`` and ``cost_lnl_<algorithm>: X``
(relative), and the reference seconds per image.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class Size:
    backbone: str
    side: int
    batch: int
    ssl_images: int
    ssl_epochs: int
    lnl_side: int
    lnl_images: int
    lnl_epochs: int


#: declared before running: ResNet-18 (the reference studies' backbone), batch 64; SSL at 64 px, LNL at
#: 32 px (an LNL algorithm's extra work is more passes of the same backbone: its ratio to CE hardly
#: depends on the side, and 64 px LNL epochs would take the run past 30 minutes on 2 cores)
FULL = Size("resnet18", 64, 64, 256, 2, 32, 600, 4)
QUICK = Size("resnet18", 32, 32, 128, 2, 32, 400, 3)

#: the LNL algorithms timed (linear_probe trains heads on cached embeddings: no backbone step to compare)
LNL = ("ce", "gce", "sce", "elr", "co_teaching", "co_teaching_plus", "dividemix")


def supervised_seconds_per_image(size: Size, images: np.ndarray) -> float:
    """A supervised cross-entropy epoch (forward, backward, SGD update) of the backbone, per image."""
    from study.data.pipeline import STANDARD, to_float
    from study.models import Classifier, build_backbone

    model = Classifier(build_backbone(size.backbone, 3, size.side), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    labels = torch.randint(0, 10, (len(images),), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(size.ssl_epochs):
        t0 = time.perf_counter()
        for i in range(0, len(images) - size.batch + 1, size.batch):
            x = to_float(torch.from_numpy(images[i : i + size.batch]), STANDARD)
            loss = torch.nn.functional.cross_entropy(model(x), labels[i : i + size.batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) / len(images)


def ssl_seconds_per_image(size: Size, method_name: str, images: np.ndarray) -> float:
    from study.models import build_backbone
    from study.ssl import METHODS
    from study.ssl.base import train_ssl

    method = METHODS[method_name](build_backbone(size.backbone, 3, size.side), 3, size.side)
    patients = np.arange(len(images)) // 4  # MICLe draws a second image of the same patient
    history = train_ssl(method, images, size.ssl_epochs, size.batch, torch.device("cpu"), 0, patient_ids=patients)
    return statistics.median(h["epoch_seconds"] for h in history[1:]) / len(images)


def _lnl_spec(size: Size, algorithm: str):
    from study.tuning.spec import parse_spec

    fixed = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 0.0005}
    if algorithm == "dividemix":
        fixed["warmup_epochs"] = 1
    return parse_spec(
        {
            "name": "method_cost",
            "datasets": [
                {
                    "name": "synthetic",
                    "options": {"num_samples": size.lnl_images, "num_classes": 10, "image_size": size.lnl_side},
                }
            ],
            "noise": {"kinds": ["symmetric"], "rates": [0.4]},
            "ssl": [{"method": "random"}],
            "model": {"backbone": size.backbone},
            "lnl": [{"algorithm": algorithm, "epochs": size.lnl_epochs, "batch_size": size.batch, "fixed": fixed}],
            "seeds": [0],
            "tuning": {"samples_per_cell": 1},
            "early_stopping": {"enabled": False},
        }
    )


def lnl_epoch_seconds(size: Size, algorithm: str, cache: Path) -> float:
    """The median epoch (after the first two: set-up, DivideMix's warm-up) of a study trial."""
    from study.experiment import build_trial
    from study.tuning.plan import make_plan

    spec = _lnl_spec(size, algorithm)
    point = make_plan(spec).cells[0].tune_point
    trial = build_trial(spec, point, dict(spec.lnl_map[point.lnl].fixed), torch.device("cpu"), cache, cache)
    ends = [time.perf_counter()]
    trial.fit(on_epoch=lambda *a: ends.append(time.perf_counter()))
    epochs = [b - a for a, b in zip(ends, ends[1:])]
    return statistics.median(epochs[2:])


def main(quick: bool = False) -> None:
    from study.ssl import METHODS

    size = QUICK if quick else FULL
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (size.ssl_images, size.side, size.side, 3), dtype=np.uint8)
    print(f"cost_backbone: {size.backbone}")
    print(f"cost_ssl_side: {size.side}")
    print(f"cost_lnl_side: {size.lnl_side}")
    print(f"cost_threads: {torch.get_num_threads()}")
    ref = supervised_seconds_per_image(size, images)
    print(f"cost_supervised_ms_per_image: {ref * 1000:.3f}")
    for name, cls in METHODS.items():
        if cls.trains:
            print(f"cost_ssl_{name}: {ssl_seconds_per_image(size, name, images) / ref:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="method_cost_") as tmp:
        ce = lnl_epoch_seconds(size, "ce", Path(tmp))
        print(f"cost_lnl_ce_epoch_s: {ce:.3f}")
        for algorithm in LNL[1:]:
            print(f"cost_lnl_{algorithm}: {lnl_epoch_seconds(size, algorithm, Path(tmp)) / ce:.2f}", flush=True)
