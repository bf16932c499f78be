"""reuse: pretraining jobs and GPU-hours that `study` plans for a spec against pretraining inside every trial.

The papers' scripts pretrain (or load by hand) an encoder per experiment; the naive count is one pretraining
per LNL run that starts from a trained SSL encoder (every tuning trial and every final-seed run), each of
the length its SSL entry asks for. `study` runs one job per distinct (dataset, SSL method and its
hyperparameters, backbone, resolution, seed) and every trial loads the cached encoder. GPU-hours use the
same per-image cost model as `study plan` (one reference GPU, no early stopping), so the ratio is the
figure that matters, not the absolute hours.

``python -m benchmarks reuse`` (spec: search_spaces/khanal2024.yaml; set STUDY_REUSE_SPEC for another).
"""

from __future__ import annotations

import os
from pathlib import Path

from study.tuning.plan import make_plan, pretrain_hours
from study.tuning.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def count(spec_path: str | Path) -> dict[str, float]:
    spec = load_spec(spec_path)
    plan = make_plan(spec)
    ssl = spec.ssl_map

    def chain_cost(dataset: str, key: str) -> tuple[int, float]:
        """Pretraining jobs and GPU-hours one run needs for its encoder (an SSL entry started from another
        trained entry pretrains that one first)."""
        entry = ssl[key]
        if not entry.needs_pretraining:
            return 0, 0.0
        jobs, hours = chain_cost(dataset, entry.init) if entry.init in ssl else (0, 0.0)
        return jobs + 1, hours + pretrain_hours(spec, dataset, key, entry.epochs_for(dataset))

    runs = [c.tune_point for c in plan.cells for _ in range(spec.tuning.samples_per_cell)]
    runs += [p for _, p in plan.final_runs]
    naive_jobs = naive_hours = 0.0
    for p in runs:
        j, h = chain_cost(p.dataset, p.ssl)
        naive_jobs += j
        naive_hours += h
    lnl_hours = plan.gpu_hours["tuning"] + plan.gpu_hours["final"]
    study_hours = plan.gpu_hours["pretraining"]
    return {
        "lnl_runs": len(runs),
        "study_pretraining_jobs": len(plan.pretrain_jobs),
        "naive_pretraining_jobs": int(naive_jobs),
        "pretraining_jobs_ratio": naive_jobs / max(1, len(plan.pretrain_jobs)),
        "study_pretraining_gpu_hours": study_hours,
        "naive_pretraining_gpu_hours": naive_hours,
        "study_total_gpu_hours": study_hours + lnl_hours,
        "naive_total_gpu_hours": naive_hours + lnl_hours,
        "total_gpu_hours_ratio": (naive_hours + lnl_hours) / (study_hours + lnl_hours),
    }


def main(quick: bool = False) -> None:
    spec = os.environ.get("STUDY_REUSE_SPEC", str(ROOT / "search_spaces" / "khanal2024.yaml"))
    print(f"reuse_spec: {Path(spec).name}")
    for k, v in count(spec).items():
        print(f"reuse_{k}: {v:.1f}" if isinstance(v, float) else f"reuse_{k}: {v}")
