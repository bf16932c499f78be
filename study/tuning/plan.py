"""What a spec expands to: cells, deduplicated pretraining jobs, tuning trials, final-seed runs, compute.

A cell is one value of each axis in ``tuning.cell_axes`` (default: every axis except seed). While
tuning, the other axes take their first value; stage ``final`` reruns each cell's best configuration for
every combination of the other axes' values (with the default axes: for every seed).

Pretraining jobs are keyed by (dataset, SSL entry, backbone, resolution, seed): noise settings, label
fractions and LNL algorithms never multiply them (pretraining reads no labels).

An axis added after studies existed has a value that means "as before" (``AXIS_DEFAULTS``: the labelled
fraction 1.0). At that value it is left out of cell ids, MLflow tags and the trial config Ray stores, so a
spec that does not use the axis keeps its cells' ids (and their Optuna studies), tags and params.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from study.data import DATASETS
from study.lnl import ALGORITHMS
from study.models import backbone_cost
from study.noise import recorded_source
from study.ssl import METHODS
from study.tuning.errors import StudyInputError
from study.tuning.spec import Spec

#: axes whose value here means "as before the axis existed": left out of ids, tags and configs at it
AXIS_DEFAULTS: dict[str, object] = {"label_fraction": 1.0}


def _shown(axis: str, value: object) -> bool:
    return axis not in AXIS_DEFAULTS or value != AXIS_DEFAULTS[axis]


@dataclass(frozen=True)
class Point:
    """One value of every axis (``label_fraction`` last, with its default, so older configs still load)."""

    dataset: str
    noise_kind: str
    noise_rate: float
    ssl: str
    lnl: str
    seed: int
    #: the labelled fraction of the training split (``Spec.labels``)
    label_fraction: float = 1.0

    def get(self, axis: str):
        return getattr(self, axis)

    def axes(self) -> dict[str, Any]:
        """The axis values, less those at their ``AXIS_DEFAULTS`` value (MLflow tags, stored configs)."""
        return {k: v for k, v in asdict(self).items() if _shown(k, v)}


@dataclass(frozen=True)
class Cell:
    """A tuning unit: the cell axes fixed; ``tune_point`` is where its trials run."""

    values: tuple[tuple[str, object], ...]
    tune_point: Point

    @property
    def id(self) -> str:
        """Readable and unique: also the name of the cell's Optuna study."""
        return "|".join(f"{k}={v}" for k, v in self.values if _shown(k, v))


@dataclass(frozen=True)
class PretrainJob:
    dataset: str
    ssl: str
    seed: int
    epochs: int

    @property
    def id(self) -> str:
        return f"{self.dataset}|{self.ssl}|seed={self.seed}"


class Member(BaseModel):
    """One member of a packed trial: its hyperparameters and, in stage lnl, its Optuna trial in the cell's
    study; in stage final, its point (a seed of the cell: its own split and noisy labels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optuna_trial: int | None = None
    hparams: dict[str, Any] = {}
    #: final: the member's point (None: the trial's)
    point: Point | None = None


def member_trial_id(trial_id: str, member: int) -> str:
    """The id of member ``member`` of the packed Ray trial ``trial_id``: its MLflow run's ``study.trial_id``
    tag, the Ray trial its Optuna trial names, its artifact folder, its ASHA entry."""
    return f"{trial_id}.m{member}"


class TrialConfig(BaseModel):
    """What one Ray Tune trial runs: the message from the driver (grid stages) or the searcher (stage
    ``lnl``) to the trainables, the scheduler and the tracking callback. Ray holds it under ``KEY``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KEY: ClassVar[str] = "trial"

    stage: Literal["pretrain", "lnl", "final"]
    #: the pretraining job's id, or the cell's id (also its Optuna study's name) for lnl and final
    id: str
    #: lnl and final: the axis values the trial trains at
    point: Point | None = None
    #: pretrain: the job
    job: PretrainJob | None = None
    #: lnl and final: the trial's hyperparameters (the LNL entry's fixed ones and the sampled ones)
    hparams: dict[str, Any] = {}
    #: lnl: the number of the trial in its cell's Optuna study
    optuna_trial: int | None = None
    #: lnl: the Ray trial id that first ran this Optuna trial, when a restored driver hands out an orphan
    #: again (the killed driver started it after its last snapshot); its MLflow run is continued
    continues: str | None = None
    #: lnl: a packed trial's members (``resources.pack``), each its own Optuna trial with its own
    #: hyperparameters, trained together at ``point``; empty for a trial of one configuration
    members: list[Member] = []

    @model_serializer(mode="wrap")
    def _without_axis_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The point without the axes at their ``AXIS_DEFAULTS`` value, and no empty ``members`` (Ray's stored
        config, MLflow params)."""
        data = handler(self)
        if not data.get("members", True):  # a trial of one configuration stores no members (as before packing)
            del data["members"]
        for holder in [data, *data.get("members", [])]:
            if isinstance(holder.get("point"), dict):
                holder["point"] = {k: v for k, v in holder["point"].items() if _shown(k, v)}
            elif "point" in holder and holder is not data and holder["point"] is None:
                del holder["point"]  # a tuning member trains at its trial's point
        return data

    @property
    def cell(self) -> str | None:
        return None if self.stage == "pretrain" else self.id

    def axes(self) -> dict[str, Any]:
        """The axis values this trial has (its MLflow tags)."""
        if self.point is not None:
            return self.point.axes()
        assert self.job is not None
        return {"dataset": self.job.dataset, "ssl": self.job.ssl, "seed": self.job.seed}

    def member(self, i: int) -> TrialConfig:
        """Member ``i`` of a packed trial as the trial of one configuration it stands for (its MLflow params)."""
        m = self.members[i]
        return TrialConfig(
            stage=self.stage, id=self.id, point=m.point or self.point, hparams=m.hparams, optuna_trial=m.optuna_trial
        )

    def member_points(self) -> list[Point]:
        """Each member's point (a packed final trial's members: seeds of its cell)."""
        assert self.point is not None, "an LNL trial has a point"
        return [m.point or self.point for m in self.members]

    def to_ray(self) -> dict[str, Any]:
        return {self.KEY: self.model_dump(mode="json")}

    @classmethod
    def from_ray(cls, config: dict[str, Any]) -> TrialConfig:
        return cls.model_validate(config[cls.KEY])


@dataclass
class Plan:
    cells: list[Cell]
    pretrain_jobs: list[PretrainJob]
    tuning_trials: int
    final_runs: list[tuple[Cell, Point]]
    gpu_hours: dict[str, float] = field(default_factory=dict)

    def without(self, done: Plan) -> Plan:
        """What this plan runs that ``done`` (an earlier generation's plan) did not: its new cells (tuned),
        its new pretraining jobs, and its new final runs (new points of earlier cells among them)."""
        cells = {c.id for c in done.cells}
        jobs = {j.id for j in done.pretrain_jobs}
        finals = {(c.id, p) for c, p in done.final_runs}
        new_cells = [c for c in self.cells if c.id not in cells]
        return Plan(
            new_cells,
            [j for j in self.pretrain_jobs if j.id not in jobs],
            len(new_cells) * (self.tuning_trials // max(len(self.cells), 1)),
            [(c, p) for c, p in self.final_runs if (c.id, p) not in finals],
        )

    @property
    def empty(self) -> bool:
        return not (self.cells or self.pretrain_jobs or self.final_runs)

    @property
    def final_reused(self) -> int:
        """Final runs at their cell's tuning point: its best tuning trial is recorded as the run, not retrained
        (``driver.reuse_tuning_trials``; trained after all where that trial's run lacks test metrics)."""
        return sum(1 for c, p in self.final_runs if p == c.tune_point)

    @property
    def final_trained(self) -> int:
        return len(self.final_runs) - self.final_reused

    def summary(self, spec: Spec) -> dict:
        return {
            "study": spec.name,
            "axes": {
                "datasets": len(spec.datasets),
                "noise_settings": len(noise_settings(spec)),
                "label_fractions": len(spec.label_fractions),
                "ssl": len(spec.ssl),
                "lnl": len(spec.lnl),
                "seeds": len(spec.seeds),
            },
            "cell_axes": list(spec.tuning.cell_axes),
            "cells": len(self.cells),
            "pretraining_jobs": len(self.pretrain_jobs),
            "lnl_trials": self.tuning_trials,
            "samples_per_cell": spec.tuning.samples_per_cell,
            "final_runs": len(self.final_runs),
            "final_runs_reused": self.final_reused,
            "total_trials": len(self.pretrain_jobs) + self.tuning_trials + len(self.final_runs),
            "estimated_gpu_hours": {k: round(v, 4) for k, v in self.gpu_hours.items()},
        }


def noise_settings(spec: Spec) -> list[tuple[str, float]]:
    """(kind, rate) pairs; at rate 0 every kind is the clean set, so it appears once (first kind); then each
    recorded label source (``NoiseSpec.settings``)."""
    return spec.noise.settings()


def all_points(spec: Spec) -> list[Point]:
    """The cross-product of the axes, in axis order; only the spec's ``subset`` of it where it has one."""
    points = _product(spec)
    if spec.subset is None:
        return points
    keep = {Point(s.dataset, s.noise_kind, s.noise_rate, s.ssl, s.lnl, s.seed, s.label_fraction) for s in spec.subset}
    return [p for p in points if p in keep]


def _product(spec: Spec) -> list[Point]:
    return [
        Point(d.key, k, r, s.key, a.key, seed, f)
        for d in spec.datasets
        for (k, r) in noise_settings(spec)
        for f in spec.label_fractions
        for s in spec.ssl
        for a in spec.lnl
        for seed in spec.seeds
    ]


#: ``resources.pack: auto`` where trials get a GPU
AUTO_PACK_GPU = 8
#: a packed tuning trial's speed-up over its members one at a time (``python -m benchmarks packing``:
#: ``packing_vs_unpacked``), per device kind; None where not measured (no GPU was lent: docs/benchmarks.md)
PACKING_SPEEDUP: dict[str, float | None] = {"cpu": 0.98, "gpu": None}


def pack_size(spec: Spec, lnl_key: str, gpu: bool) -> int:
    """Members per packed tuning trial of LNL entry ``lnl_key`` (``resources.pack``; ``auto``: 8 where trials
    get a GPU (``gpu``), else 1), at most the cell's samples; 1 for an algorithm that cannot be packed."""
    if not ALGORITHMS[spec.lnl_map[lnl_key].algorithm].packable:
        return 1
    return max(1, min(_resolved_pack(spec, gpu), spec.tuning.samples_per_cell))


def _resolved_pack(spec: Spec, gpu: bool) -> int:
    """``resources.pack`` as a number: ``auto`` is 8 where trials get a GPU (``gpu``), else 1."""
    pack = spec.resources.pack
    return (AUTO_PACK_GPU if gpu else 1) if pack == "auto" else pack


def final_pack_size(spec: Spec, lnl_key: str, gpu: bool) -> int:
    """Final runs of one cell per packed final trial of LNL entry ``lnl_key`` (``resources.pack``, as
    ``pack_size`` but not capped by the tuning samples). Only heads on embeddings (``on_embeddings``: Dedieu
    et al.'s grid, whose seeds share one embedding matrix) are packed here: each final run has its own split,
    so a pack of image trials would hold a copy of the training images per member; 1 for the others."""
    algorithm = ALGORITHMS[spec.lnl_map[lnl_key].algorithm]
    if not (algorithm.packable and algorithm.on_embeddings):
        return 1
    return max(1, _resolved_pack(spec, gpu))


def pack_finals(spec: Spec, finals: list[TrialConfig], gpu: bool) -> list[TrialConfig]:
    """Stage final's trials: the final runs of each cell (its seeds, label fractions, noise settings that are
    not cell axes) in packs of ``final_pack_size``, each run a member with its own point and hyperparameters;
    a pack of one is the run itself."""
    cells: dict[str, list[TrialConfig]] = {}
    for cfg in finals:
        cells.setdefault(cfg.id, []).append(cfg)
    out = []
    for runs in cells.values():
        assert runs[0].point is not None, "a final run has a point"
        size = final_pack_size(spec, runs[0].point.lnl, gpu)
        for i in range(0, len(runs), size):
            chunk = runs[i : i + size]
            if len(chunk) == 1:
                out.append(chunk[0])
                continue
            members = [Member(hparams=c.hparams, point=c.point) for c in chunk]
            out.append(chunk[0].model_copy(update={"members": members}))
    return out


def tuning_ray_trials(spec: Spec, plan: Plan, gpu: bool) -> int:
    """Ray trials of stage lnl: per cell, its samples in packs of ``pack_size``."""
    return sum(-(-spec.tuning.samples_per_cell // pack_size(spec, c.tune_point.lnl, gpu)) for c in plan.cells)


def make_plan(spec: Spec) -> Plan:
    axes = spec.tuning.cell_axes
    points = all_points(spec)
    cells: dict[tuple, Cell] = {}
    finals: list[tuple[Cell, Point]] = []
    for p in points:
        values = tuple((a, p.get(a)) for a in axes)
        if values not in cells:
            # tune at the cell's first point: the non-cell axes at their first value (in a subset, the
            # first value the cell has)
            cells[values] = Cell(values, p)
        finals.append((cells[values], p))
    check_memory(spec)
    jobs = pretrain_jobs(spec, points)
    plan = Plan(list(cells.values()), jobs, len(cells) * spec.tuning.samples_per_cell, finals)
    plan.gpu_hours = estimate_gpu_hours(spec, plan)
    return plan


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


def dataset_images(spec: Spec, key: str) -> int:
    """The entry's image count for the estimate: the spec's ``estimated_images``, else the dataset's figure."""
    d = spec.dataset_map[key]
    return d.estimated_images or int(DATASETS[d.name].estimated_images(d.options))


def input_bytes(spec: Spec, key: str) -> int | None:
    """A trial's training and validation inputs of the dataset entry ``key`` (uint8, at its stored size), for
    the plan's memory line; None where the stored size is only known from the files."""
    d = spec.dataset_map[key]
    side = d.options.get("resolution") or spec.model.resolution
    if not isinstance(side, int):
        return None
    channels = d.options.get("channels") or DATASETS[d.name].default_channels
    return int(dataset_images(spec, key) * (1.0 - d.splits.test_fraction) * side * side * channels)


def images_per_second(spec: Spec, backbone: str | None = None) -> float:
    """Training throughput of a backbone (default: the spec's) on one reference GPU at the spec's resolution."""
    cost = backbone_cost(backbone or spec.model.backbone)
    res = spec.model.resolution or cost.native_resolution
    return cost.images_per_second * (cost.native_resolution / res) ** 2


def pretrain_hours(spec: Spec, dataset: str, ssl_key: str, epochs: int) -> float:
    """GPU-hours of one pretraining job: the dataset's images x epochs at the entry's backbone's supervised
    throughput, times the SSL method's ``step_cost``."""
    factor = METHODS[spec.ssl_map[ssl_key].method].step_cost
    return dataset_images(spec, dataset) * epochs * factor / images_per_second(spec, spec.backbone_of(ssl_key)) / 3600


def estimate_gpu_hours(spec: Spec, plan: Plan) -> dict[str, float]:
    """Upper bounds (no early stopping) in GPU-hours on one reference GPU, each job at its SSL entry's
    backbone's supervised throughput times its method's ``step_cost`` (an SSL method's, or an LNL
    algorithm's, compute per image relative to a supervised step, measured by ``benchmarks/method_cost.py``)."""
    pre = sum(pretrain_hours(spec, j.dataset, j.ssl, j.epochs) for j in plan.pretrain_jobs)

    def lnl_cost(point: Point) -> float:
        a = spec.lnl_map[point.lnl]
        n = dataset_images(spec, point.dataset) * 0.8 * point.label_fraction
        factor = ALGORITHMS[a.algorithm].step_cost * (0.4 if a.head.frozen else 1.0)
        return n * a.epochs * factor / images_per_second(spec, spec.backbone_of(point.ssl)) / 3600

    tune = sum(lnl_cost(c.tune_point) for c in plan.cells) * spec.tuning.samples_per_cell
    final = sum(lnl_cost(p) for c, p in plan.final_runs if p != c.tune_point)  # the tuning point's run is reused
    return {"pretraining": pre, "tuning": tune, "final": final, "total": pre + tune + final}


def format_plan(spec: Spec, plan: Plan, source: str) -> str:
    s = plan.summary(spec)
    ax = s["axes"]
    gh = s["estimated_gpu_hours"]
    n_pre = sum(1 for e in spec.ssl if e.needs_pretraining)
    fractions = (
        f"{ax['label_fractions']} label fractions ({', '.join(f'{f:g}' for f in spec.label_fractions)}) x "
        if spec.labels is not None
        else ""
    )
    lines = [
        f"{source}: study {spec.name!r}",
        f"  axes: {ax['datasets']} datasets x {ax['noise_settings']} noise settings x {fractions}{ax['ssl']} SSL x "
        f"{ax['lnl']} LNL x {ax['seeds']} seeds; cell = {', '.join(s['cell_axes'])}",
        *(
            [f"  subset: {len(spec.subset)} points of the cross-product (each axis value, each SSL x LNL pair)"]
            if spec.subset
            else []
        ),
        f"  cells: {s['cells']}",
        f"  pretraining jobs: {s['pretraining_jobs']} "
        f"(datasets x {n_pre} pretraining SSL entries x seeds, deduplicated)",
        f"  LNL tuning trials: {s['lnl_trials']} ({s['cells']} cells x {s['samples_per_cell']} samples"
        f"{', ASHA early stopping' if spec.early_stopping.enabled else ''})",
        f"  {spec.tuning.sampler_text()}",
        *_fixed_by_noise_lines(spec, plan),
        f"  final-seed runs: {s['final_runs']} ({s['final_runs_reused']} of them at the tuning seed: the cell's best "
        "tuning trial, recorded, not retrained)",
        f"  estimated GPU-hours (upper bound, one A100-class GPU): pretraining {gh['pretraining']}, "
        f"tuning {gh['tuning']}, final {gh['final']}, total {gh['total']}",
        *_packing_lines(spec, plan),
        _inputs_line(spec),
    ]
    return "\n".join(lines)


def _packing_lines(spec: Spec, plan: Plan) -> list[str]:
    """Packed tuning trials (``resources.pack``): Ray trials with and without packing, and the tuning
    GPU-hours with packing where its speed-up on a GPU has been measured (``PACKING_SPEEDUP``)."""
    gpu = spec.resources.trial.gpus > 0
    packed = tuning_ray_trials(spec, plan, gpu)
    sizes = {a.key: pack_size(spec, a.key, gpu) for a in spec.lnl}
    if set(sizes.values()) == {1}:
        return [f"  packing: none (resources.pack {spec.resources.pack!r}{' on GPUs' if gpu else ' on CPUs'})"]
    factor = PACKING_SPEEDUP["gpu" if gpu else "cpu"]
    hours = (
        "tuning GPU-hours with packing: not estimated (packing's speed-up on a GPU not measured: "
        "`python -m benchmarks packing` on one)"
        if factor is None
        else f"tuning hours with packing: {plan.gpu_hours['tuning'] / factor:.1f} (measured speed-up {factor:g}x)"
    )
    return [
        f"  packing: {packed} Ray trials for the {plan.tuning_trials} tuning trials (resources.pack "
        f"{spec.resources.pack!r}, members per trial: {', '.join(f'{k} {v}' for k, v in sizes.items())}); {hours}"
    ]


def _inputs_line(spec: Spec) -> str:
    """Each dataset's inputs per trial and where they go (``study.experiment.data_on_device``)."""
    sizes = []
    for d in spec.datasets:
        nbytes = input_bytes(spec, d.key)
        sizes.append(f"{d.key} {'unknown until decoded' if nbytes is None else f'{nbytes / 1e9:.2g} GB'}")
    limit = spec.resources.trial.memory_gb
    budget = f" (each within resources.trial.memory_gb: {limit:g} GB)" if limit is not None else ""
    share, gpus = spec.resources.device_data_share, spec.resources.trial.gpus
    where = (
        f"on the GPU when within {share:g} x the trial's {min(gpus, 1.0):g} of the device, else in host memory"
        if gpus
        else "in host memory (trials use no GPU)"
    )
    return f"  inputs per trial (training + validation images, uint8, estimated): {', '.join(sizes)}{budget}; {where}"


def _fixed_by_noise_lines(spec: Spec, plan: Plan) -> list[str]:
    """The effective fixed hyperparameters of each LNL entry with ``by_noise_kind``, per noise setting its
    runs have: clean (rate 0) and each noisy kind."""
    lines = []
    for a in spec.lnl:
        if not a.by_noise_kind:
            continue
        settings: dict[str, tuple[str, float]] = {}
        for _, p in plan.final_runs:
            if p.lnl == a.key:
                settings.setdefault(
                    "clean (rate 0)" if p.noise_rate == 0.0 and not recorded_source(p.noise_kind) else p.noise_kind,
                    (p.noise_kind, p.noise_rate),
                )
        lines.append(f"  LNL {a.key!r} fixed hyperparameters by noise (lnl[].by_noise_kind):")
        for label, (kind, rate) in settings.items():
            values = ", ".join(f"{k}={v!r}" for k, v in a.fixed_for(kind, rate).items()) or "none"
            lines.append(f"    {label} cells: {values}")
    return lines


def check_resources(spec: Spec, cpus: float, where: str, memory_bytes: float | None = None) -> None:
    """Each trial's and pretraining job's CPUs (and declared memory) fit on one node of ``cpus`` CPUs and
    ``memory_bytes`` of memory (else Ray keeps them pending forever)."""
    for stage in ("pretrain", "trial"):
        res = getattr(spec.resources, stage)
        if res.cpus > cpus:
            raise StudyInputError(
                f"resources.{stage}.cpus {res.cpus:g}: {where} has {cpus:g} CPUs, so no {stage} could ever start; "
                f"lower it to at most {cpus:g}, or pass --address of a cluster whose nodes have {res.cpus:g}"
            )
        if res.memory_gb is not None and memory_bytes is not None and res.memory_gb * 1e9 > memory_bytes:
            have = memory_bytes / 1e9
            raise StudyInputError(
                f"resources.{stage}.memory_gb {res.memory_gb:g}: {where} has {have:.3g} GB of memory, so no "
                f"{stage} could ever start; lower it to at most {have:.3g}, or pass --address of a cluster with "
                "larger nodes"
            )


def check_memory(spec: Spec) -> None:
    """Refuse a spec whose trials or pretraining jobs declare less memory (``resources.*.memory_gb``) than
    the training and validation inputs of one of its datasets take (``input_bytes``): such a trial would be
    killed by the operating system, or take its node's memory from the trials beside it."""
    images = any(not ALGORITHMS[a.algorithm].on_embeddings for a in spec.lnl)
    for stage in ("trial", "pretrain"):
        limit = getattr(spec.resources, stage).memory_gb
        if limit is None or (stage == "trial" and not images):  # trials on embeddings hold no images
            continue
        for d in spec.datasets:
            need = input_bytes(spec, d.key)
            if need is not None and need > limit * 1e9:
                raise StudyInputError(
                    f"resources.{stage}.memory_gb {limit:g}: dataset {d.key!r} alone needs about {need / 1e9:.3g} GB "
                    f"per {stage} (its training and validation images, uint8); raise memory_gb above "
                    f"{need / 1e9:.3g}, or lower the dataset's resolution"
                )
