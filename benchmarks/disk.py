"""disk: what a study writes to disk while it runs (peak) and what it leaves, with ResNet-18 trials.

A study of ResNet-18 Co-teaching trials (two networks, Adam: the heaviest checkpoints of the shipped specs'
LNL stage) on synthetic 16 px images, tuned with ASHA so that trials are stopped early too, is launched
in a temporary folder while a thread measures that folder (the study and its cache) every half second.
Printed: the peak size of that folder and of the study's Ray Tune folder; the final size of the study
folder, of its Ray Tune folder, of its MLflow artifacts and of its staged artifacts; the checkpoint
folders left behind (0 expected: an ended trial's checkpoint is deleted); the trial folders.

``python -m benchmarks disk`` (about 4 minutes on 2 cores; ``--quick``: fewer trials, about 2)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: sizes, declared before running: (tuning samples per cell, epochs per trial)
FULL = {"samples": 6, "epochs": 6}
QUICK = {"samples": 3, "epochs": 4}


def _spec(samples: int, epochs: int) -> dict:
    return {
        "name": "disk",
        "datasets": [{"name": "synthetic", "options": {"num_samples": 240, "num_classes": 3, "image_size": 16}}],
        "noise": {"kinds": ["symmetric"], "rates": [0.4]},
        "ssl": [{"method": "random"}],
        "model": {"backbone": "resnet18"},
        "lnl": [
            {
                "algorithm": "co_teaching",
                "epochs": epochs,
                "batch_size": 64,
                "augment": "none",
                "fixed": {"optimizer": "adam", "schedule": "constant", "forget_rate": 0.4, "tk": 2},
                "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            }
        ],
        "seeds": [0],
        "tuning": {"samples_per_cell": samples, "sampler": "random", "metric": "val_f1"},
        "early_stopping": {"enabled": True, "grace_period": 1, "reduction_factor": 2},
        "resources": {"pretrain": {"cpus": 1}, "trial": {"cpus": 1}},
    }


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:  # deleted while walking
                pass
    return total


class _Peak(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.peak, self.peak_tune, self.done = path, 0, 0, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _size(self.path))
            self.peak_tune = max(self.peak_tune, sum(_size(p) for p in self.path.glob("*/tune")))
            time.sleep(0.5)


def main(quick: bool = False) -> None:
    size = QUICK if quick else FULL
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="study-disk-") as tmp:
        spec = Path(tmp) / "disk.yaml"
        spec.write_text(yaml.safe_dump(_spec(size["samples"], size["epochs"]), sort_keys=False))
        watch = _Peak(Path(tmp))  # the study folder (named at launch) and the cache beside it
        watch.start()
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "study.cli", "launch", str(spec), "--storage", tmp, "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        watch.done.set()
        watch.join()
        if out.returncode != 0:
            raise SystemExit(f"disk: the study failed:\n{out.stderr[-3000:]}")
        study_dir = Path(out.stdout.strip().splitlines()[-1])
        left_ckpt = sum(1 for p in (study_dir / "tune").rglob("checkpoint_*") if p.is_dir())
        trials = sum(1 for p in (study_dir / "tune").glob("*/lnl_trainable_*") if p.is_dir())
        print(f"disk_trial_folders: {trials}")
        print(f"disk_seconds: {seconds:.1f}")
        print(f"disk_peak_mb: {watch.peak / mb:.1f}")
        print(f"disk_tune_peak_mb: {watch.peak_tune / mb:.1f}")
        print(f"disk_left_mb: {_size(study_dir) / mb:.1f}")
        print(f"disk_tune_left_mb: {_size(study_dir / 'tune') / mb:.1f}")
        print(f"disk_mlartifacts_mb: {_size(study_dir / 'mlartifacts') / mb:.1f}")
        print(f"disk_staged_artifacts_left_mb: {_size(study_dir / 'trial_artifacts') / mb:.1f}")
        print(f"disk_checkpoint_folders_left: {left_ckpt}")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
