"""overhead: per-epoch wall time of one trial run through `study launch` against the same loop in plain Python.

`study launch` adds to every epoch a Ray Tune report with an epoch checkpoint (algorithm state, fit
history, loader state) persisted to the study's storage, and MLflow logging on the driver. The plain side
is the training loop a research script runs: same data, splits, noise, model, augmentation, algorithm,
hyperparameters and thread count, `study.train.fit` in one process, nothing saved.

Per-epoch time, study side: intervals between the MLflow timestamps of consecutive epochs of the trial's
run (the driver logs an epoch when Ray hands it the report, so the interval holds the training, the
validation, the checkpoint and everything Ray and MLflow do in between). Plain side: intervals between
consecutive epoch ends, the plain loop run once before and once after the study. Epoch 0 (set-up,
cluster start) and the last epoch (test evaluation, artifacts) are left out; the figure is the median
interval. Target: ratio <= 1.05.

The study is launched twice: as declared (a checkpoint every epoch, the default of
``failures.checkpoint_every``), giving ``overhead_ratio``, and with ``checkpoint_every`` set to the number
of epochs (a checkpoint only at the last), giving ``overhead_ratio_last_checkpoint_only``: their
difference is what the per-epoch checkpoint costs.

``python -m benchmarks overhead [--quick]``
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._plain import plain_trial

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: overhead
datasets:
  - name: synthetic
    options: {{num_samples: {n}, num_classes: 10, image_size: 28, seed: 0}}
noise: {{kinds: [symmetric], rates: [0.4]}}
ssl: [{{method: random}}]
model: {{backbone: small_cnn}}
lnl:
  - algorithm: ce
    epochs: {epochs}
    batch_size: 64
    fixed: {{optimizer: sgd, momentum: 0.9, weight_decay: 0.0005, lr: 0.05}}
seeds: [0]
tuning: {{samples_per_cell: 1}}
early_stopping: {{enabled: false}}
resources:
  pretrain: {{cpus: {cpus}}}
  trial: {{cpus: {cpus}}}
failures: {{checkpoint_every: {every}}}
"""


def study_epoch_times(workdir: Path, spec_path: Path) -> tuple[list[float], float]:
    """Launch the one-trial study; the per-epoch intervals of its tuning-stage trial from MLflow."""
    from mlflow.tracking import MlflowClient

    t0 = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.cli",
            "launch",
            str(spec_path),
            "--storage",
            str(workdir / "studies"),
            "--name",
            "overhead",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"overhead: study launch failed:\n{out.stderr[-3000:]}")
    study_dir = workdir / "studies" / "overhead"
    client = MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("overhead")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`study.stage` = 'lnl'")
    assert len(runs) == 1, f"expected one tuning trial, found {len(runs)}"
    hist = sorted(client.get_metric_history(runs[0].info.run_id, "train_loss"), key=lambda m: m.step)
    stamps = [m.timestamp / 1000 for m in hist]
    return [b - a for a, b in zip(stamps, stamps[1:])][:-1], wall


def plain_epoch_times(spec_path: Path, cache: Path, threads: int) -> list[float]:
    """The same trial as a plain loop (what a research script does), timed per epoch."""
    ends = plain_trial(spec_path, 0, cache, threads=threads)
    return [b - a for a, b in zip(ends, ends[1:])][:-1]


def main(quick: bool = False) -> None:
    n, epochs = (3000, 6) if quick else (6000, 10)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec_path = work / "overhead.yaml"
        spec_path.write_text(SPEC.format(n=n, epochs=epochs, cpus=cpus, every=1))
        # the plain loop first also decodes the dataset into the cache the study then reads
        plain = plain_epoch_times(spec_path, work / "studies" / "cache" / "data", cpus)
        study, wall = study_epoch_times(work, spec_path)
        last_only_path = work / "last_only" / "overhead.yaml"
        last_only_path.parent.mkdir()
        last_only_path.write_text(SPEC.format(n=n, epochs=epochs, cpus=cpus, every=epochs))
        (work / "last_only" / "studies").mkdir()
        (work / "last_only" / "studies" / "cache").symlink_to(work / "studies" / "cache")
        last_only, _ = study_epoch_times(work / "last_only", last_only_path)
        # the plain loop again after the study, so drift of the machine's speed falls on both sides
        plain += plain_epoch_times(spec_path, work / "studies" / "cache" / "data", cpus)
    p, s, lo = statistics.median(plain), statistics.median(study), statistics.median(last_only)
    print(f"overhead_images: {n}")
    print(f"overhead_epochs: {epochs}")
    print(f"overhead_threads: {cpus}")
    print(f"overhead_plain_epoch_s: {p:.3f}")
    print(f"overhead_study_epoch_s: {s:.3f}")
    print(f"overhead_plain_epochs_s: {json.dumps([round(x, 3) for x in plain])}")
    print(f"overhead_study_epochs_s: {json.dumps([round(x, 3) for x in study])}")
    print(f"overhead_study_launch_wall_s: {wall:.1f}")
    print(f"overhead_study_last_checkpoint_only_epoch_s: {lo:.3f}")
    print(f"overhead_ratio_last_checkpoint_only: {lo / p:.3f}")
    print(f"overhead_ratio: {s / p:.3f}")
