"""What a spec expands to: cells, deduplicated pretraining jobs, tuning trials, final-seed runs, compute.

A cell is one value of each axis in ``tuning.cell_axes`` (default: every axis except seed). While
tuning, the other axes take their first value; stage ``final`` reruns each cell's best configuration for
every combination of the other axes' values (with the default axes: for every seed).

Pretraining jobs are keyed by (dataset, SSL entry, backbone, resolution, seed): noise settings and LNL
algorithms never multiply them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field

from study.tuning.spec import INIT_ONLY, Spec


@dataclass(frozen=True)
class Point:
    """One value of every axis."""

    dataset: str
    noise_kind: str
    noise_rate: float
    ssl: str
    lnl: str
    seed: int

    def get(self, axis: str):
        return getattr(self, axis)


@dataclass(frozen=True)
class Cell:
    """A tuning unit: the cell axes fixed; ``tune_point`` is where its trials run."""

    values: tuple[tuple[str, object], ...]
    tune_point: Point

    @property
    def id(self) -> str:
        """Readable and unique: also the name of the cell's Optuna study."""
        return "|".join(f"{k}={v}" for k, v in self.values)


@dataclass(frozen=True)
class PretrainJob:
    dataset: str
    ssl: str
    seed: int
    epochs: int

    @property
    def id(self) -> str:
        return f"{self.dataset}|{self.ssl}|seed={self.seed}"


@dataclass
class Plan:
    cells: list[Cell]
    pretrain_jobs: list[PretrainJob]
    tuning_trials: int
    final_runs: list[tuple[Cell, Point]]
    gpu_hours: dict[str, float] = field(default_factory=dict)

    def summary(self, spec: Spec) -> dict:
        return {
            "study": spec.name,
            "axes": {"datasets": len(spec.datasets), "noise_settings": len(noise_settings(spec)),
                     "ssl": len(spec.ssl), "lnl": len(spec.lnl), "seeds": len(spec.seeds)},
            "cell_axes": list(spec.tuning.cell_axes),
            "cells": len(self.cells),
            "pretraining_jobs": len(self.pretrain_jobs),
            "lnl_trials": self.tuning_trials,
            "samples_per_cell": spec.tuning.samples_per_cell,
            "final_runs": len(self.final_runs),
            "total_trials": len(self.pretrain_jobs) + self.tuning_trials + len(self.final_runs),
            "estimated_gpu_hours": {k: round(v, 4) for k, v in self.gpu_hours.items()},
        }


def noise_settings(spec: Spec) -> list[tuple[str, float]]:
    """(kind, rate) pairs; at rate 0 every kind is the clean set, so it appears once (first kind)."""
    out = []
    for rate in spec.noise.rates:
        for i, kind in enumerate(spec.noise.kinds):
            if rate == 0.0 and i > 0:
                continue
            out.append((kind, rate))
    return out


def all_points(spec: Spec) -> list[Point]:
    return [Point(d.key, k, r, s.key, a.key, seed)
            for d in spec.datasets for (k, r) in noise_settings(spec) for s in spec.ssl for a in spec.lnl
            for seed in spec.seeds]


def make_plan(spec: Spec) -> Plan:
    axes = spec.tuning.cell_axes
    points = all_points(spec)
    first = points[0]
    cells: dict[tuple, Cell] = {}
    finals: list[tuple[Cell, Point]] = []
    settings = noise_settings(spec)
    for p in points:
        values = tuple((a, p.get(a)) for a in axes)
        if values not in cells:
            # tune where the non-cell axes take their first value (keeping the noise pair a valid pair)
            tune = Point(**{a: (p.get(a) if a in axes else first.get(a)) for a in
                            ("dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed")})
            if (tune.noise_kind, tune.noise_rate) not in settings:
                tune = _replace(tune, noise_rate=next(r for k, r in settings if k == tune.noise_kind))
            cells[values] = Cell(values, tune)
        finals.append((cells[values], p))
    jobs = pretrain_jobs(spec, points)
    plan = Plan(list(cells.values()), jobs, len(cells) * spec.tuning.samples_per_cell, finals)
    plan.gpu_hours = estimate_gpu_hours(spec, plan)
    return plan


def _replace(p: Point, **kw) -> Point:
    return Point(**{**asdict(p), **kw})


def pretrain_jobs(spec: Spec, points: list[Point]) -> list[PretrainJob]:
    """Distinct stage-1 jobs, including the chains an SSL entry's ``init`` needs."""
    ssl = spec.ssl_map
    seen: dict[str, PretrainJob] = {}

    def add(dataset: str, key: str, seed: int) -> None:
        entry = ssl[key]
        if not entry.needs_pretraining:
            return
        if entry.init in ssl:
            add(dataset, entry.init, seed)
        job = PretrainJob(dataset, key, seed, entry.epochs_for(dataset))
        seen.setdefault(job.id, job)

    for p in points:
        add(p.dataset, p.ssl, p.seed)
    return list(seen.values())


# -- compute estimate -------------------------------------------------------------------------------

#: approximate images per dataset (the papers' releases), for the estimate only
DATASET_SIZES = {"nct_crc_he": 107180, "covid_qu_ex": 33920, "fetal_planes": 12400, "mura": 40005,
                 "dermnet": 19500, "fashion_mnist": 70000, "medmnist": 10000, "folder": 10000, "manifest": 10000}
#: training images per second on one reference GPU (A100, mixed precision) at the native resolution
THROUGHPUT = {("resnet18", 224): 2500.0, ("small_cnn", 32): 40000.0}
#: relative cost of a training step (two networks, two views)
LNL_COST = {"co_teaching": 2.0, "co_teaching_plus": 2.0, "dividemix": 3.0, "linear_probe": 0.4}


def dataset_images(spec: Spec, key: str) -> int:
    d = spec.dataset_map[key]
    if d.estimated_images:
        return d.estimated_images
    if d.name == "synthetic":
        return int(d.options.get("num_samples", 600))
    if d.name == "fashion_mnist" and d.options.get("limit"):
        return int(d.options["limit"]) + int(d.options.get("test_limit") or 10000)
    return DATASET_SIZES.get(d.name, 10000)


def images_per_second(spec: Spec) -> float:
    backbone = spec.model.backbone
    (_, native), base = next(((k, v) for k, v in THROUGHPUT.items() if k[0] == backbone))
    res = spec.model.resolution or native
    return base * (native / res) ** 2


def estimate_gpu_hours(spec: Spec, plan: Plan) -> dict[str, float]:
    """Upper bounds (no early stopping) in GPU-hours on one reference GPU."""
    ips = images_per_second(spec)
    pre = sum(dataset_images(spec, j.dataset) * 2 * j.epochs for j in plan.pretrain_jobs) / ips / 3600

    def lnl_cost(point: Point) -> float:
        a = spec.lnl_map[point.lnl]
        n = dataset_images(spec, point.dataset) * 0.8
        factor = LNL_COST.get(a.algorithm, 1.0) * (0.4 if a.head.frozen else 1.0)
        return n * a.epochs * factor / ips / 3600

    tune = sum(lnl_cost(c.tune_point) for c in plan.cells) * spec.tuning.samples_per_cell
    final = sum(lnl_cost(p) for _, p in plan.final_runs)
    return {"pretraining": pre, "tuning": tune, "final": final, "total": pre + tune + final}


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def format_plan(spec: Spec, plan: Plan, source: str) -> str:
    s = plan.summary(spec)
    ax = s["axes"]
    gh = s["estimated_gpu_hours"]
    n_pre = sum(1 for e in spec.ssl if e.method not in INIT_ONLY)
    lines = [
        f"{source}: study {spec.name!r}",
        f"  axes: {ax['datasets']} datasets x {ax['noise_settings']} noise settings x {ax['ssl']} SSL x "
        f"{ax['lnl']} LNL x {ax['seeds']} seeds; cell = {', '.join(s['cell_axes'])}",
        f"  cells: {s['cells']}",
        f"  pretraining jobs: {s['pretraining_jobs']} (datasets x {n_pre} pretraining SSL entries x seeds, deduplicated)",
        f"  LNL tuning trials: {s['lnl_trials']} ({s['cells']} cells x {s['samples_per_cell']} samples"
        f"{', ASHA early stopping' if spec.early_stopping.enabled else ''})",
        f"  final-seed runs: {s['final_runs']}",
        f"  estimated GPU-hours (upper bound, one A100-class GPU): pretraining {gh['pretraining']}, "
        f"tuning {gh['tuning']}, final {gh['final']}, total {gh['total']}",
    ]
    return "\n".join(lines)
