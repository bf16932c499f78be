"""packing: packed trials through `study` against the same trials one at a time and against a shell loop,
then the engine's step on its own.

Study level (#21): one cell's 8 samples of CE (random search over the learning rate and weight decay, no
early stopping, so all 8 train every epoch) on synthetic 28 px images, small CNN, launched twice through
`study launch`: with ``resources.pack: 8`` (one Ray trial of 8 members, 2 CPUs) and with ``pack: 1`` (8 Ray
trials of 1 CPU, two at a time, as the ``parallel`` benchmark runs trials); and the shell loop of
``parallel``: the same 8 configurations (read from the unpacked study's Optuna trials: both studies draw the
same samples) as 8 ``python -m benchmarks._plain`` processes one after another, torch on every core.
Figures: each study's tuning-stage wall time (first member's run start to last run end, from MLflow) and
the loop's wall time; ``packing_vs_shell`` = loop / packed stage, ``packing_vs_unpacked`` = unpacked stage /
packed stage. Target: ``packing_vs_shell`` >= 1.8 on 2 cores.

Engine level: one training step of P same-architecture networks packed (``study.packing``) against the
same networks stepped one after another. Three ways, each a forward, backward and SGD step of
cross-entropy on its own batch per member: ``vmap`` (the pack in one batched call), ``loop`` (the pack's
stacked tensors, one member after another) and ``separate`` (P ordinary networks with ``torch.optim.SGD``,
what unpacked trials do); then ``choose_execution`` on the same shapes. Median seconds per step over
``REPEATS`` after a warm-up step.

Declared before running: study level ``FULL`` 4,000 images, 6 epochs; ``QUICK`` 2,000 images, 4 epochs
(the ``parallel`` benchmark's sizes); engine: P = 8 small CNNs, batch 64, 28 px RGB, 10 classes, 2 threads,
20 repeats (``--quick``: 5).

``python -m benchmarks packing [--quick]``
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

MEMBERS, BATCH, SIDE, CLASSES = 8, 64, 28, 10
FULL, QUICK = 20, 5
#: the study level's (images, epochs)
STUDY_FULL, STUDY_QUICK = (4000, 6), (2000, 4)
ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: {name}
datasets:
  - name: synthetic
    options: {{num_samples: {n}, num_classes: 10, image_size: 28, seed: 0}}
noise: {{kinds: [symmetric], rates: [0.2]}}
ssl: [{{method: random}}]
model: {{backbone: small_cnn}}
lnl:
  - algorithm: ce
    epochs: {epochs}
    batch_size: 64
    fixed: {{optimizer: sgd, momentum: 0.9}}
    search_space:
      lr: {{type: float, low: 0.01, high: 0.1, log: true}}
      weight_decay: {{type: categorical, choices: [0.0, 0.0005]}}
seeds: [0]
tuning: {{samples_per_cell: 8, sampler: random}}
early_stopping: {{enabled: false}}
resources:
  pretrain: {{cpus: 1}}
  trial: {{cpus: {cpus}}}
  pack: {pack}
"""


def _launch(work: Path, name: str, n: int, epochs: int, pack: int, cpus: int) -> tuple[float, list]:
    """Launch the one-cell study; (its tuning stage's wall time, its lnl runs)."""
    from mlflow.tracking import MlflowClient

    spec_path = work / f"{name}.yaml"
    spec_path.write_text(SPEC.format(name=name, n=n, epochs=epochs, pack=pack, cpus=cpus))
    cmd = [sys.executable, "-m", "study.cli", "launch", str(spec_path), "--storage", str(work / "studies")]
    out = subprocess.run([*cmd, "--name", name, "--quiet"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"packing: study launch ({name}) failed:\n{out.stderr[-3000:]}")
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'studies' / name / 'mlflow.db'}")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`study.stage` = 'lnl'")
    assert len(runs) == MEMBERS and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    return (max(r.info.end_time for r in runs) - min(r.info.start_time for r in runs)) / 1000, runs


def _samples(study_dir: Path, spec) -> list[dict]:
    """The hyperparameters of the cell's Optuna trials, by trial number."""
    from study.tuning.plan import make_plan
    from study.tuning.searcher import ATTR_CONFIG, open_study

    cell = make_plan(spec).cells[0]
    trials = open_study(f"sqlite:///{study_dir / 'optuna.db'}", cell.id, spec.tuning.mode).get_trials()
    return [json.loads(t.user_attrs[ATTR_CONFIG]) for t in sorted(trials, key=lambda t: t.number)]


def study_level(quick: bool) -> None:
    from study.experiment import load_dataset
    from study.tuning.spec import load_spec

    n, epochs = STUDY_QUICK if quick else STUDY_FULL
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cache = work / "studies" / "cache" / "data"
        probe = work / "probe.yaml"
        probe.write_text(SPEC.format(name="probe", n=n, epochs=epochs, pack=1, cpus=1))
        load_dataset(load_spec(probe), load_spec(probe).datasets[0].key, str(cache))  # decoded once, outside

        t_unpacked, runs = _launch(work, "unpacked", n, epochs, pack=1, cpus=1)
        t_packed, packed_runs = _launch(work, "packed", n, epochs, pack=MEMBERS, cpus=2)
        configs = _samples(work / "studies" / "unpacked", load_spec(probe))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        for hp in configs:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks._plain", str(probe), "0", str(cache), json.dumps(hp)],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"packing: shell loop failed:\n{out.stderr[-3000:]}")
        t_loop = time.perf_counter() - t0
        same = configs == _samples(work / "studies" / "packed", load_spec(probe))
        assert len(runs) == len(packed_runs) == len(configs) == MEMBERS
    print(f"packing_trials: {MEMBERS}")
    print(f"packing_images: {n}")
    print(f"packing_epochs: {epochs}")
    print(f"packing_cores: {os.cpu_count()}")
    print(f"packing_same_samples: {int(same)}")
    print(f"packing_shell_loop_s: {t_loop:.1f}")
    print(f"packing_unpacked_tuning_stage_s: {t_unpacked:.1f}")
    print(f"packing_packed_tuning_stage_s: {t_packed:.1f}")
    print(f"packing_vs_shell: {t_loop / t_packed:.2f}")
    print(f"packing_vs_unpacked: {t_unpacked / t_packed:.2f}")


def _median_step(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(quick: bool = False) -> None:
    study_level(quick)
    engine(quick)


def engine(quick: bool) -> None:
    from study.models import Classifier, build_backbone
    from study.packing import PackedNets, PackedSGD, choose_execution, packed_cross_entropy

    repeats = QUICK if quick else FULL
    torch.manual_seed(0)
    nets = [Classifier(build_backbone("small_cnn", 3, SIDE), CLASSES).train() for _ in range(MEMBERS)]
    x = torch.randn(MEMBERS, BATCH, 3, SIDE, SIDE)
    y = torch.randint(0, CLASSES, (MEMBERS, BATCH))
    packed = PackedNets(nets).train()
    opt = PackedSGD(packed, [0.05] * MEMBERS, 0.9, 5e-4)
    opts = [torch.optim.SGD(n.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4) for n in nets]

    def packed_step() -> None:
        loss = packed_cross_entropy(packed(x), y).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def separate_step() -> None:
        for i, (net, o) in enumerate(zip(nets, opts)):
            loss = torch.nn.functional.cross_entropy(net(x[i]), y[i])
            o.zero_grad()
            loss.backward()
            o.step()

    figures = {}
    for mode in ("vmap", "loop"):
        packed.execution = mode
        figures[mode] = _median_step(packed_step, repeats)
    figures["separate"] = _median_step(separate_step, repeats)
    chosen = choose_execution(packed, x, y)
    print(f"packing_members: {MEMBERS}")
    print(f"packing_threads: {torch.get_num_threads()}")
    for mode, seconds in figures.items():
        print(f"packing_engine_{mode}_step_s: {seconds:.4f}")
    print(f"packing_engine_chosen: {chosen}")
    print(f"packing_engine_chosen_vs_separate: {figures['separate'] / figures[chosen]:.2f}")
    print(f"packing_engine_vmap_vs_separate: {figures['separate'] / figures['vmap']:.2f}")
