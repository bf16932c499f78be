"""parallel: an 8-trial grid through `study launch` against the same 8 trials run one after another from a shell loop.

The grid: 4 noise rates x 2 LNL algorithms (CE, SCE) on synthetic 28 px images, small CNN, fixed
hyperparameters (one sample per cell, no early stopping), so the study's tuning stage is exactly these 8
trials. The shell loop is how the papers' code runs sweeps: `for cell in 0..7; python -m benchmarks._plain
SPEC CELL` (one process per trial, torch using every core, as a script does by default). The study runs its
trials as Ray Tune trials of one CPU each, as many at once as the machine has cores.

Figures: the shell loop's wall time; the study's tuning-stage wall time (first trial start to last trial
end, from the MLflow runs; Ray's start and the final-seed stage left out), and the whole `study launch`
wall time including Ray's start and the final stage that reruns each cell's best configuration.
Target: speed-up >= 1.8 on 2 cores.

``python -m benchmarks parallel [--quick]``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: parallel
datasets:
  - name: synthetic
    options: {{num_samples: {n}, num_classes: 10, image_size: 28, seed: 0}}
noise: {{kinds: [symmetric], rates: [0.0, 0.2, 0.4, 0.6]}}
ssl: [{{method: random}}]
model: {{backbone: small_cnn}}
lnl:
  - algorithm: ce
    epochs: {epochs}
    batch_size: 64
    fixed: {{optimizer: sgd, momentum: 0.9, weight_decay: 0.0005, lr: 0.05}}
  - algorithm: sce
    epochs: {epochs}
    batch_size: 64
    fixed: {{optimizer: sgd, momentum: 0.9, weight_decay: 0.0005, lr: 0.05}}
seeds: [0]
tuning: {{samples_per_cell: 1}}
early_stopping: {{enabled: false}}
resources:
  pretrain: {{cpus: 1}}
  trial: {{cpus: 1}}
"""


def main(quick: bool = False) -> None:
    from mlflow.tracking import MlflowClient

    from study.tuning.plan import make_plan
    from study.tuning.spec import load_spec

    n, epochs = (2000, 4) if quick else (4000, 6)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec_path = work / "parallel.yaml"
        spec_path.write_text(SPEC.format(n=n, epochs=epochs))
        cells = len(make_plan(load_spec(spec_path)).cells)
        assert cells == 8, cells
        cache = work / "studies" / "cache" / "data"
        # decode the dataset once, outside both timings (both sides read the same cache)
        from study.experiment import load_dataset

        load_dataset(load_spec(spec_path), load_spec(spec_path).datasets[0].key, str(cache))

        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        loop = "; ".join(
            f"{sys.executable} -m benchmarks._plain {spec_path} {c} {cache} || exit 1" for c in range(cells)
        )
        t0 = time.perf_counter()
        out = subprocess.run(["bash", "-c", loop], cwd=ROOT, env=env, capture_output=True, text=True)
        t_loop = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"parallel: shell loop failed:\n{out.stderr[-3000:]}")

        t0 = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "study.cli",
                "launch",
                str(spec_path),
                "--storage",
                str(work / "studies"),
                "--name",
                "parallel",
                "--quiet",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        t_launch = time.perf_counter() - t0
        if out.returncode != 0:
            raise SystemExit(f"parallel: study launch failed:\n{out.stderr[-3000:]}")
        client = MlflowClient(tracking_uri=f"sqlite:///{work / 'studies' / 'parallel' / 'mlflow.db'}")
        exp = client.get_experiment_by_name("parallel")
        runs = client.search_runs([exp.experiment_id], filter_string="tags.`study.stage` = 'lnl'")
        assert len(runs) == cells and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
        t_stage = (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000
    print(f"parallel_trials: {cells}")
    print(f"parallel_images: {n}")
    print(f"parallel_epochs: {epochs}")
    print(f"parallel_cores: {os.cpu_count()}")
    print(f"parallel_shell_loop_s: {t_loop:.1f}")
    print(f"parallel_study_tuning_stage_s: {t_stage:.1f}")
    print(f"parallel_study_launch_wall_s: {t_launch:.1f}")
    print(f"parallel_speedup: {t_loop / t_stage:.2f}")
