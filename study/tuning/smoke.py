"""Smoke mode (`study launch SPEC --smoke`, `study plan SPEC --smoke`): any spec at tiny scale on stand-in data.

The smoke spec keeps what makes the study this study (its axes, methods, hyperparameters, search spaces,
heads, augmentation, noise options and cell definition) and shrinks everything else, so that one run
through the real path (Ray Tune, Optuna per cell, ASHA, MLflow, the report) shows in minutes on a laptop
whether the spec runs at all:

- each dataset becomes a ``synthetic`` stand-in with the dataset's class names and count (where the
  dataset fixes them; else the names its noise groups give, or four generic classes), its channels, its
  patient structure (three images per patient where the dataset has patients, or where MICLe needs them),
  its groups of confusable classes, and a shifted test set where the spec has one; 16 px images (stored
  larger in the spec's ratio where the spec crops: 256 px images for 224 px inputs become 19 px for 16);
- ImageNet weights and local weight files (``init: {weights: PATH}``) become random weights (a stand-in,
  said in the output): no file is read;
- the backbone becomes ``small_cnn`` (said in the output): a ResNet-18 trial's checkpoints alone (two
  networks, their optimisers, the best and last epochs' states: 426 MB an epoch for Co-teaching) take
  longer to write than the smoke run's training;
- a dataset's recorded annotators (a manifest's annotator columns) become simulated annotators of the
  stand-in under the same names, so that ``noise.recorded`` runs;
- pretraining runs 1 epoch, LNL trials 2, batches of at most 32, one tuning sample per cell, no retries;
- the cross-product is cut to a covering subset (``Spec.subset``): every value of every axis appears,
  every (SSL entry, LNL entry) pair appears at least once, and one group (the first dataset, noise kind
  and LNL entry, every SSL entry) runs at every rate and, at the first rate, at every label fraction, so
  that every panel of the report has a complete group to draw;
- the study is named ``NAME-smoke``, keeps the spec's storage root, and tracks into its own MLflow store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from study.data import DATASETS
from study.ssl import WeightsInit
from study.tuning.plan import noise_settings
from study.tuning.spec import DatasetSpec, LNLSpec, Spec, SSLSpec, parse_spec

#: side of the stand-in images
SMOKE_SIZE = 16
#: stand-in images per class (enough for stratified train/val/test splits), and at least this many in all
IMAGES_PER_CLASS = 16
MIN_IMAGES = 96
#: classes of a stand-in whose dataset does not fix its classes
GENERIC_CLASSES = 4
SMOKE_BACKBONE = "small_cnn"
SSL_EPOCHS = 1
LNL_EPOCHS = 2
MAX_BATCH = 32


@dataclass(frozen=True)
class Smoke:
    """The smoke spec and what it replaced, to be said in the output."""

    spec: Spec
    notes: list[str]


def smoke_spec(spec: Spec) -> Smoke:
    """The smoke version of ``spec`` (see the module docstring)."""
    notes: list[str] = []
    if spec.model.backbone != SMOKE_BACKBONE:
        notes.append(f"backbone {spec.model.backbone} replaced by {SMOKE_BACKBONE} (tiny scale)")
    needs_patients = any(s.method == "micle" for s in spec.ssl)
    stored = stored_size(spec)
    data = spec.model_dump(mode="json", exclude={"subset"})
    data.update(
        name=f"{spec.name}-smoke",
        description=f"smoke run of {spec.name}: stand-in data, tiny scale",
        datasets=[_dataset(d, spec, needs_patients, notes, stored) for d in spec.datasets],
        ssl=[_ssl(s, notes) for s in spec.ssl],
        lnl=[_lnl(a) for a in spec.lnl],
        model={"backbone": SMOKE_BACKBONE, "resolution": SMOKE_SIZE if stored > SMOKE_SIZE else None},
        tuning={**data["tuning"], "samples_per_cell": 1},
        resources={"pretrain": {"cpus": 1, "gpus": 0}, "trial": {"cpus": 1, "gpus": 0}},
        failures={"max_retries": 0},
        storage={"root": spec.storage.root},
        tracking={},
        subset=covering_subset(spec),
    )
    return Smoke(parse_spec(data, source=f"{spec.name} (smoke)"), notes)


def covering_subset(spec: Spec) -> list[dict[str, Any]]:
    """Points of the cross-product that exercise every axis value and fill every report panel.

    - An anchor group, so that the report's curves, drop heatmap, ranking and pretraining panels each
      have one complete group: the first dataset, noise kind and LNL entry at every rate of that kind
      (rate 0 included where the spec has it), for every SSL entry, with the first seed and label fraction;
      and for the label-efficiency panel the same group's first rate at every label fraction.
    - Then every axis value and every (SSL, LNL) pair the anchor lacks: as many points as the longest of
      those lists, each list cycled.
    """
    first_kind, fractions = spec.noise.cell_kinds[0], spec.label_fractions
    kind_settings = [(kind, rate) for kind, rate in noise_settings(spec) if kind == first_kind]
    anchor = [
        _point(spec.datasets[0].key, setting, s.key, spec.lnl[0].key, spec.seeds[0], fraction)
        for setting, fraction in [(st, fractions[0]) for st in kind_settings]
        + [(kind_settings[0], f) for f in fractions]
        for s in spec.ssl
    ]
    pairs = [(s.key, a.key) for a in spec.lnl[1:] for s in spec.ssl] or [(s.key, spec.lnl[0].key) for s in spec.ssl]
    datasets = [d.key for d in spec.datasets]
    settings = noise_settings(spec)
    n = max(len(pairs), len(datasets), len(settings), len(spec.seeds), len(fractions))
    points: list[dict[str, Any]] = []
    for p in anchor:  # the two anchor lists share their first setting's points
        if p not in points:
            points.append(p)
    for i in range(n):
        p = _point(
            datasets[i % len(datasets)],
            settings[i % len(settings)],
            *pairs[i % len(pairs)],
            spec.seeds[i % len(spec.seeds)],
            fractions[i % len(fractions)],
        )
        if p not in points:
            points.append(p)
    return points


def _point(dataset: str, setting: tuple[str, float], ssl: str, lnl: str, seed: int, fraction: float) -> dict[str, Any]:
    kind, rate = setting
    point = {"dataset": dataset, "noise_kind": kind, "noise_rate": rate, "ssl": ssl, "lnl": lnl, "seed": seed}
    return point if fraction == 1.0 else {**point, "label_fraction": fraction}


def stored_size(spec: Spec) -> int:
    """The stand-ins' side: 16 px, or larger in the spec's ratio where it stores images larger than the
    network input (Khanal et al.: 256 px images, 224 px crops), so that the smoke run crops too."""
    side = spec.model.resolution
    stored = [d.options.get("resolution") for d in spec.datasets]
    ratios = [r / side for r in stored if isinstance(r, int) and side and r > side]
    return math.ceil(SMOKE_SIZE * max(ratios)) if ratios else SMOKE_SIZE


def _dataset(d: DatasetSpec, spec: Spec, needs_patients: bool, notes: list[str], size: int) -> dict[str, Any]:
    """A synthetic stand-in entry for ``d`` under the same key."""
    cls = DATASETS[d.name]
    classes = _class_names(d, spec, notes)
    views = 3 if (cls.has_patients or needs_patients) else 1
    options = {
        "num_samples": max(MIN_IMAGES, IMAGES_PER_CLASS * len(classes)),
        "num_classes": len(classes),
        "class_names": classes,
        "image_size": size,
        "views_per_patient": views,
        "channels": d.options.get("channels") or cls.default_channels,
        "seed": 0,
    }
    annotators = cls.recorded_annotators(d.options)
    if annotators:  # recorded labels: simulated annotators under the same names
        options["annotators"] = annotators
        notes.append(f"stand-in for {d.key!r}: its annotators' labels simulated ({', '.join(annotators)})")
    entry: dict[str, Any] = {
        **d.model_dump(mode="json", include={"splits", "augment", "noise_class_scale"}),
        "name": "synthetic",
        "id": d.key,
        "options": options,
        "noise_groups": d.noise_groups or _default_groups(cls, classes),
    }
    if d.shifted_test is not None:  # the same classes, another sample, another "scanner"
        entry["shifted_test"] = {"name": "synthetic", "options": {**options, "seed": 1, "shift": 0.5}}
    return entry


def _class_names(d: DatasetSpec, spec: Spec, notes: list[str]) -> list[str]:
    cls = DATASETS[d.name]
    if cls.known_classes:
        return list(cls.known_classes)
    named = [g for group in d.noise_groups or () for g in group if isinstance(g, str)]
    if named:
        notes.append(
            f"stand-in for {d.key!r}: its classes are only known from its files; using the "
            f"{len(named)} classes its noise_groups name"
        )
        return list(dict.fromkeys(named))
    transition = spec.noise.options.get("transition")
    k = len(transition) if transition else GENERIC_CLASSES
    notes.append(f"stand-in for {d.key!r}: its classes are only known from its files; using {k} generic classes")
    return [f"class_{c}" for c in range(k)]


def _default_groups(cls: Any, classes: list[str]) -> list[list[str]] | None:
    """The dataset's own groups of confusable classes, by name (kept where the stand-in has the names)."""
    groups = [[c for c in g if c in classes] for g in cls.noise_groups or ()]
    groups = [g for g in groups if len(g) >= 2]
    return groups or None


def _ssl(s: SSLSpec, notes: list[str]) -> dict[str, Any]:
    entry = s.model_dump(mode="json")
    entry.update(id=s.key, epochs=SSL_EPOCHS, batch_size=min(s.batch_size, MAX_BATCH))
    if s.method == "imagenet":
        notes.append(f"ssl {s.key!r}: ImageNet weights replaced by RANDOM weights (a stand-in; no file is read)")
        entry.update(method="random", hparams={})
    start = f"the weight file {s.init.weights}" if isinstance(s.init, WeightsInit) else "ImageNet's weights"
    if s.method == "pretrained":
        notes.append(f"ssl {s.key!r}: {start} replaced by RANDOM weights (a stand-in; no file is read)")
        entry.update(method="random", hparams={})
    elif s.init != "random":
        notes.append(f"ssl {s.key!r}: starts from RANDOM weights instead of {start} (a stand-in)")
    entry["init"] = "random"
    if s.backbone is not None:
        notes.append(f"ssl {s.key!r}: backbone {s.backbone} replaced by {SMOKE_BACKBONE} (tiny scale)")
        entry["backbone"] = None
    return entry


def _lnl(a: LNLSpec) -> dict[str, Any]:
    entry = a.model_dump(mode="json")
    entry.update(id=a.key, epochs=LNL_EPOCHS, batch_size=min(a.batch_size, MAX_BATCH))
    for fixed in [entry["fixed"], *(k["fixed"] for k in entry.get("by_noise_kind", {}).values())]:
        _shrink(fixed, a.epochs)
    return entry


def _shrink(fixed: dict[str, Any], epochs: int) -> None:
    """Fixed values that name epochs or batch sizes of the full run, scaled to the smoke run's: the batch
    capped, a step schedule's milestones and Co-teaching's ``decay_start`` moved inside its epochs."""
    if "batch_size" in fixed:
        fixed["batch_size"] = min(int(fixed["batch_size"]), MAX_BATCH)
    if fixed.get("milestones"):
        fixed["milestones"] = [LNL_EPOCHS - 1]  # one step, after the first epoch
    if "decay_start" in fixed:
        fixed["decay_start"] = min(int(fixed["decay_start"]) * LNL_EPOCHS // epochs, LNL_EPOCHS - 1)
