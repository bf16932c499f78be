"""The study spec (``search_spaces/*.yaml``): typed, checked at the door, every error naming its field.

A spec names the axes of a study (datasets, noise kinds and rates, SSL pretrainings, LNL algorithms,
seeds), each algorithm's hyperparameter search space (Optuna distributions; a parameter may be
conditional on an earlier categorical one with ``when``), how cells are tuned, early stopping, the
resources of a pretraining job and of a trial, and where the study stores its state.

``load_spec(path)`` returns a ``Spec`` or raises ``SpecError`` whose lines read
``path/to/spec.yaml: path.to.field: problem (allowed: ...)``.
"""

from __future__ import annotations

import typing
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from study import hparams as hp
from study.data import DATASETS, DataError
from study.data.pipeline import AugmentConfig
from study.lnl import ALGORITHMS
from study.lnl.base import LoaderHparams, OptimConfig, optim_problems
from study.models import check_backbone
from study.models.timm_encoders import check_input_size, check_timm_name, is_timm, native_size, pretrained_cfg
from study.noise import AGGREGATES as NOISE_AGGREGATES
from study.noise import KINDS as NOISE_KINDS
from study.noise import OPTION_KINDS as NOISE_OPTION_KINDS
from study.noise import (
    RECORDED,
    NoiseOptionError,
    annotator_settings,
    class_targets,
    noise_settings,
    recorded_kind,
    recorded_source,
    transition_matrix,
)
from study.ssl import INITS, METHODS, WeightsInit, check_init

# Names come from the registries (study.data.DATASETS, study.ssl.METHODS, study.lnl.ALGORITHMS,
# study.noise.KINDS, study.models.BACKBONES): registering a class there is all a spec needs to name it.
AXES = ("dataset", "noise_kind", "noise_rate", "label_fraction", "ssl", "lnl", "seed")
#: the noise.options a spec may set: study.noise.inject_noise's options, less class_scale (set per dataset
#: entry: datasets[].noise_class_scale) and features (a trial computes them from the images)
NOISE_OPTIONS = tuple(o for o in NOISE_OPTION_KINDS if o not in ("class_scale", "features"))
#: the options of the annotators kind (study.noise.annotator_settings checks them)
ANNOTATOR_OPTIONS = ("annotators", "skills", "coverage", "aggregate")
#: the tuning metrics (each reported by ``study.train.fit`` every epoch) and whether higher or lower is better
METRICS = {
    "val_f1": "max",
    "val_acc": "max",
    "val_balanced_acc": "max",
    "val_auroc": "max",
    "val_loss": "min",
    "train_loss": "min",
}


class SubPathError(ValueError):
    """A validator's problem below the field it checks (``fixed.lr``): ``parse_spec`` joins the paths."""

    def __init__(self, sub: str, message: str) -> None:
        self.sub = sub
        super().__init__(message)


def lnl_models(algorithm: str) -> list[type[BaseModel]]:
    """What an LNL entry's ``fixed`` and ``search_space`` are checked against: the optimiser, the loader
    and the algorithm's own declaration (``epochs`` is the entry's field, not a hyperparameter)."""
    return [OptimConfig, LoaderHparams, ALGORITHMS[algorithm].Hparams]


LNL_EXCLUDE = ("epochs",)


class SpecError(ValueError):
    """A spec that cannot run; ``problems`` are ``(field path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source, self.problems = source, problems
        super().__init__("\n".join(f"{source}: {p}: {m}" if p else f"{source}: {m}" for p, m in problems))


def _allowed(values) -> str:
    return f"(allowed: {', '.join(str(v) for v in values)})"


def _name_in(value: str, names, kind: str) -> str:
    if value not in names:
        raise ValueError(f"unknown {kind} {value!r} {_allowed(names)}")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- search spaces ----------------------------------------------------------------------------------


class _Param(Strict):
    #: only sample this parameter when earlier categorical parameters take one of these values
    when: dict[str, Any] | None = None


class FloatParam(_Param):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot both be set")
        return self


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log scale needs low > 0 and step 1")
        return self


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any] = Field(min_length=1)

    @field_validator("choices")
    @classmethod
    def _plain(cls, v: list) -> list:
        for c in v:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ValueError(f"choices must be None, bool, int, float or str (Optuna), got {c!r}")
        return v


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def check_conditions(space: dict[str, Any]) -> None:
    """``when`` may only refer to earlier categorical parameters, with values among their choices."""
    seen: dict[str, Any] = {}
    for name, p in space.items():
        for parent, values in (p.when or {}).items():
            if parent not in seen:
                raise ValueError(
                    f"{name}.when: {parent!r} is not an earlier parameter {_allowed(seen) if seen else ''}".rstrip()
                )
            if not isinstance(seen[parent], CategoricalParam):
                raise ValueError(f"{name}.when: {parent!r} must be categorical to condition on")
            for v in values if isinstance(values, list) else [values]:
                if v not in seen[parent].choices:
                    raise ValueError(
                        f"{name}.when.{parent}: {v!r} is not a choice of {parent} {_allowed(seen[parent].choices)}"
                    )
        seen[name] = p


# -- hyperparameters checked against their declarations ------------------------------------------------


def _check_hparams(
    models: Sequence[type[BaseModel]], values: dict[str, Any], owner: str, exclude: Sequence[str] = ()
) -> dict[str, Any]:
    """``values`` as their owners accept them (see ``study.hparams.check_value``), or SubPathError at the
    first bad one."""
    out = {}
    for name, value in values.items():
        try:
            out[name] = hp.check_value(models, name, value, exclude, owner)
        except hp.HparamError as e:
            raise SubPathError(name, str(e).removeprefix(f"{name}: ")) from None
    return out


def _check_space(models: Sequence[type[BaseModel]], space: dict[str, Any], owner: str) -> None:
    """Each search-space parameter is a declared hyperparameter, of a compatible type, whose bounds (or
    choices) are values the hyperparameter accepts."""
    for name, p in space.items():
        try:
            hp.field(models, name, LNL_EXCLUDE, owner)
            kind = hp.kind(models, name)
        except hp.HparamError as e:
            raise SubPathError(name, str(e)) from None
        if isinstance(p, CategoricalParam):
            for i, c in enumerate(p.choices):
                _bound(models, name, f"choices[{i}]", c)
            continue
        if kind is not None and kind not in (int, float):
            raise SubPathError(
                f"{name}.type",
                f"{name} is {hp.allowed_text(hp.field(models, name))}; search it with type categorical",
            )
        if kind is int and isinstance(p, FloatParam):
            raise SubPathError(f"{name}.type", f"{name} is an integer; search it with type int")
        _bound(models, name, "low", p.low)
        _bound(models, name, "high", p.high)


def _bound(models: Sequence[type[BaseModel]], name: str, where: str, value: Any) -> None:
    try:
        hp.check_value(models, name, value, LNL_EXCLUDE)
    except hp.HparamError as e:
        raise SubPathError(
            f"{name}.{where}", f"{value!r} is outside what {name} accepts: {str(e).split('; ')[-1]}"
        ) from None


# -- axes -------------------------------------------------------------------------------------------


class SplitSpec(Strict):
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)


class AugmentSpec(Strict):
    """Training augmentation of an LNL trial (``study.data.pipeline.AugmentConfig``); ``augment: none``
    in a spec turns it off."""

    #: area range of the random resized crop, as a fraction of the image
    scale: tuple[float, float] = (0.7, 1.0)
    flip: bool = True
    vflip: bool = False
    #: maximum rotation in degrees
    rotation: float = Field(0.0, ge=0.0, le=180.0)
    #: brightness/contrast jitter strength
    jitter: float = Field(0.0, ge=0.0, le=1.0)
    #: maximum translation as a fraction of the side
    translate: float = Field(0.0, ge=0.0, lt=1.0)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < v[0] <= v[1] <= 1.0:
            raise ValueError(f"scale {list(v)} must satisfy 0 < low <= high <= 1")
        return v

    def config(self) -> AugmentConfig:
        return AugmentConfig(**self.model_dump())


Augment = Literal["none"] | AugmentSpec


class ShiftedTestSpec(Strict):
    """A second data set with the same classes, evaluated at the selected epoch (distribution shift)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    _n = field_validator("name")(classmethod(lambda cls, v: _name_in(v, DATASETS, "dataset")))

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _dataset_options(info.data.get("name"), v)


def _dataset_options(name: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Each option checked against the dataset's declaration, then the options together (required ones,
    options that must agree)."""
    if name not in DATASETS:
        return options  # the name's own error is reported
    checked = _check_hparams([DATASETS[name].Options], options, f"dataset {name}")
    try:
        DATASETS[name].check_options(checked)
    except DataError as e:
        raise ValueError(str(e)) from None
    return checked


class DatasetSpec(Strict):
    name: str
    #: label of this entry in cells and MLflow tags (default: name); lets one dataset appear twice
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    options: dict[str, Any] = Field(default_factory=dict)
    splits: SplitSpec = SplitSpec()
    shifted_test: ShiftedTestSpec | None = None
    #: groups of confusable classes (class names or indices) for class_dependent noise, replacing the
    #: dataset's default groups
    noise_groups: list[list[int | str]] | None = None
    #: per-class factors of the rate of class_dependent noise (class name or index: factor; default 1):
    #: class c flips with probability rate x factor, e.g. MURA {abnormal: 1.0, normal: 0.5}
    noise_class_scale: dict[str, Annotated[float, Field(ge=0.0)]] | None = None
    #: number of images, for `study plan`'s compute estimate where the dataset's size is not known
    estimated_images: int | None = Field(None, gt=0)
    #: training augmentation of this dataset's trials (default: the dataset's own, see docs/datasets.md)
    augment: Augment | None = None

    _n = field_validator("name")(classmethod(lambda cls, v: _name_in(v, DATASETS, "dataset")))

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return _dataset_options(info.data.get("name"), v)

    @model_validator(mode="after")
    def _fractions(self) -> DatasetSpec:
        if self.splits.val_fraction + self.splits.test_fraction >= 1.0:
            raise SubPathError("splits", "val_fraction + test_fraction must be below 1 (nothing left to train on)")
        return self

    @property
    def key(self) -> str:
        return self.id or self.name


class NoiseSpec(Strict):
    #: synthetic noise kinds (study.noise.KINDS), each at every rate of ``rates``
    kinds: list[str] = Field(default_factory=list)
    rates: list[float] = Field(default_factory=list)
    #: recorded label sources: one annotator column of every dataset (``annotator_columns`` of a manifest) or
    #: an aggregate of all of them (majority, random, worst); each is a noise setting of its own, a cell's
    #: noise kind ``recorded:<source>`` at rate 0 (no synthetic noise on top), beside kinds x rates
    recorded: list[str] = Field(default_factory=list)
    #: extra options of study.noise.inject_noise (NOISE_OPTIONS): exact (every kind), groups (class_dependent,
    #: annotators), targets (asymmetric: one destination class per class, by name or index, for every dataset),
    #: transition (kind transition), annotators, skills, coverage, aggregate (kind annotators); an option of
    #: kinds that noise.kinds does not list is refused
    options: dict[str, Any] = Field(default_factory=dict)
    #: corrupt the validation labels too (the default); Dedieu et al. keep them clean
    noisy_validation: bool = True

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        for k in v:
            _name_in(k, NOISE_KINDS, "noise kind")
        if len(set(v)) != len(v):
            raise ValueError("duplicate noise kinds")
        return v

    @field_validator("recorded")
    @classmethod
    def _recorded(cls, v: list[str]) -> list[str]:
        for source in v:
            if not source or not all(c.isalnum() or c in "_.-" for c in source):
                raise ValueError(
                    f"recorded source {source!r}: an annotator column (letters, digits, '_', '.', '-') or one of "
                    f"{', '.join(NOISE_AGGREGATES)}"
                )
        if len(set(v)) != len(v):
            raise ValueError("duplicate recorded sources")
        return v

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        for r in v:
            if not 0.0 <= r < 1.0:
                raise ValueError(f"rate {r} must be in [0, 1)")
        if len(set(v)) != len(v):
            raise ValueError("duplicate noise rates")
        return v

    @field_validator("options")
    @classmethod
    def _opts(cls, v: dict[str, Any]) -> dict[str, Any]:
        for k in v:
            if k == "features":
                raise SubPathError(
                    "features",
                    "not a spec option: a trial computes the features of instance_dependent noise from its images "
                    "(study.noise.instance_features); remove options.features",
                )
            if k not in NOISE_OPTIONS:
                raise ValueError(f"unknown noise option {k!r} {_allowed(NOISE_OPTIONS)}")
        if "exact" in v and not isinstance(v["exact"], bool):
            raise SubPathError("exact", f"{v['exact']!r} is not allowed (allowed: true, false)")
        if any(k in v for k in ANNOTATOR_OPTIONS):
            try:
                annotator_settings(v)
            except NoiseOptionError as e:
                raise SubPathError(e.option, str(e)) from None
        if "targets" in v:
            _check_target_entries(v["targets"])
        return v

    @model_validator(mode="after")
    def _kinds_and_options(self) -> NoiseSpec:
        if not self.kinds and not self.recorded:
            raise ValueError(
                "no noise setting: give noise.kinds with noise.rates (synthetic noise), or noise.recorded (the "
                "labels a dataset's annotators gave), or both"
            )
        if self.kinds and not self.rates:
            raise SubPathError("rates", "noise.kinds needs at least one rate (e.g. [0.0, 0.2, 0.4])")
        if self.rates and not self.kinds:
            raise SubPathError(
                "kinds", "noise.rates apply to noise.kinds, which is empty; add a kind or remove the rates"
            )
        if "pairflip" in self.kinds and any(r >= 0.5 for r in self.rates):
            raise ValueError("pairflip needs every rate below 0.5")
        if "transition" in self.kinds and "transition" not in self.options:
            raise ValueError("kind 'transition' needs options.transition (a K x K row-stochastic matrix)")
        # the options that belong to some kinds only (study.noise.OPTION_KINDS; ``exact`` applies to every kind)
        for option in self.options:
            kinds = NOISE_OPTION_KINDS[option]
            if not any(k in self.kinds for k in kinds):
                others = f" ({', '.join(kinds[1:])} also read{'s' if len(kinds) == 2 else ''} it)" if kinds[1:] else ""
                raise SubPathError(
                    f"options.{option}",
                    f"applies only to noise kind{'s' if len(kinds) > 1 else ''} "
                    f"{' or '.join(repr(k) for k in kinds)}, which noise.kinds ({', '.join(self.kinds)}) does not "
                    f"list; add {kinds[0]} to noise.kinds or remove options.{option}{others}",
                )
        return self

    @property
    def cell_kinds(self) -> list[str]:
        """The noise kinds of the study's cells: ``kinds``, then ``recorded:<source>`` for each recorded source."""
        return [*self.kinds, *(recorded_kind(s) for s in self.recorded)]

    def settings(self) -> list[tuple[str, float]]:
        """The study's (kind, rate) noise settings: each kind at each rate, except that at rate 0 every kind is
        the clean set, so it appears once (under the first kind); then each recorded source at rate 0."""
        return noise_settings(self.kinds, self.rates, self.recorded)


class LabelsSpec(Strict):
    """The label-efficiency axis (Azizi et al. 2021): fractions of each training split whose labels are
    used, drawn stratified by class and nested (``study.data.splits.labelled_subset``); every class keeps
    at least one image. Absent: every label (the single value 1.0)."""

    fractions: list[float] = Field(min_length=1)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0.0 < f <= 1.0:
                raise ValueError(f"fraction {f} is outside (0, 1]; give the labelled share, e.g. 0.1 for 10%")
        if len(set(v)) != len(v):
            raise ValueError("duplicate fractions")
        return v


class SSLSpec(Strict):
    method: str
    #: label of this entry (default: method); two entries of one method with different hparams need ids
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    #: the method's hyperparameters (study.ssl.METHODS[method].Hparams: names, types, ranges)
    hparams: dict[str, Any] = Field(default_factory=dict)
    #: pretraining epochs, one number or per dataset id (key `default` for the others)
    epochs: int | dict[str, int] = 100
    batch_size: int = Field(256, ge=2)
    #: what the encoder starts from: random, imagenet, or a local torchvision-ResNet or timm file
    #: ``{weights: PATH, format: torchvision|timm, prefix: ""}`` (Azizi et al.: SimCLR on ImageNet; Dedieu et
    #: al.: frozen foundation encoders; docs/weights.md)
    init: str | WeightsInit = "random"
    #: this entry's encoder architecture, where it is not ``model.backbone`` (a registered backbone or
    #: ``timm:<architecture>``): Dedieu et al. compare ResNet-50, Swin-T and ViT foundation encoders in one study
    backbone: str | None = None

    _m = field_validator("method")(classmethod(lambda cls, v: _name_in(v, METHODS, "SSL method")))
    _b = field_validator("backbone")(classmethod(lambda cls, v: v if v is None else check_backbone(v)))

    @field_validator("hparams")
    @classmethod
    def _hparams(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        method = info.data.get("method")
        if method not in METHODS:
            return v
        checked = _check_hparams([METHODS[method].Hparams], v, f"SSL method {method}")
        METHODS[method].build_hparams(checked)  # checks that tie several names together (an HparamError)
        return checked

    @field_validator("init", mode="before")
    @classmethod
    def _init(cls, v: Any) -> str | WeightsInit:
        allowed = f"{', '.join(INITS)}, or {{weights: PATH, format: torchvision|timm, prefix: ''}}"
        if isinstance(v, str) and v not in INITS:
            raise ValueError(f"{v!r} is not allowed (allowed: {allowed})")
        if isinstance(v, str | WeightsInit):
            return v
        if not isinstance(v, dict):
            raise ValueError(f"{v!r} is not allowed (allowed: {allowed})")
        try:
            return WeightsInit(**v)
        except ValidationError as e:
            err = e.errors()[0]
            sub = ".".join(str(p) for p in err["loc"]) or "weights"
            msg = f"unknown field {_allowed(WeightsInit.model_fields)}" if err["type"] == "extra_forbidden" else ""
            raise SubPathError(sub, msg or _message(dict(err))) from None

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v: int | dict[str, int]) -> int | dict[str, int]:
        vals = v.values() if isinstance(v, dict) else [v]
        if any(e < 0 for e in vals):
            raise ValueError("epochs must be >= 0")
        return v

    @property
    def key(self) -> str:
        return self.id or self.method

    @property
    def needs_pretraining(self) -> bool:
        return bool(METHODS[self.method].trains)

    def epochs_for(self, dataset_key: str) -> int:
        if isinstance(self.epochs, int):
            return self.epochs
        return self.epochs.get(dataset_key, self.epochs.get("default", 100))


class HeadSpec(Strict):
    #: hidden widths of the MLP head (Dedieu et al.: [512, 128, 64]); empty = linear head
    hidden: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)
    #: keep the encoder frozen (embeddings + head protocol)
    frozen: bool = False


class ModelSelectionSpec(Strict):
    """``lnl[].model_selection``: the validation metric that selects the epoch, and the patience after which
    training stops (``study.train.EarlyStopping``; not the top-level ``early_stopping``, ASHA's pruning of trials
    across a cell). Dedieu et al. 2024: ``{monitor: val_loss, patience: 20}``."""

    #: val_f1 (macro-F1, higher is better) or val_loss (mean cross-entropy, lower is better)
    monitor: Literal["val_f1", "val_loss"] = "val_f1"
    #: epochs without a strict improvement before training stops (None: every epoch is trained)
    patience: int | None = Field(None, ge=1)


class NoiseKindOptions(Strict):
    """What an LNL entry changes for one noise kind (``lnl[].by_noise_kind.KIND``)."""

    #: hyperparameters that override or extend the entry's ``fixed`` (checked against the same declarations)
    fixed: dict[str, Any] = Field(default_factory=dict)


class LNLSpec(Strict):
    algorithm: str
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    #: hyperparameters used as given (optimiser fields, batch_size, or the algorithm's own; see
    #: ``lnl_models``), each checked against its declaration
    fixed: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, Param] = Field(default_factory=dict)
    head: HeadSpec = HeadSpec()
    #: training augmentation of this entry's trials (default: the dataset entry's)
    augment: Augment | None = None
    #: per noise kind, fixed hyperparameters that override or extend ``fixed`` in that kind's noisy cells
    #: (rate > 0); clean cells (rate 0) get ``fixed`` alone. Kinds must be among ``noise.kinds``; for recorded
    #: labels (always noisy) ``recorded:<source>``, or ``recorded`` for every source of ``noise.recorded``.
    by_noise_kind: dict[str, NoiseKindOptions] = Field(default_factory=dict)
    #: the epoch-selecting validation metric and the patience (default: val_f1, every epoch trained)
    model_selection: ModelSelectionSpec = ModelSelectionSpec()

    _a = field_validator("algorithm")(classmethod(lambda cls, v: _name_in(v, ALGORITHMS, "LNL algorithm")))

    @field_validator("fixed")
    @classmethod
    def _fixed(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        algorithm = info.data.get("algorithm")
        if algorithm not in ALGORITHMS:
            return v
        return _check_hparams(lnl_models(algorithm), v, f"LNL algorithm {algorithm}", LNL_EXCLUDE)

    @field_validator("by_noise_kind")
    @classmethod
    def _by_kind(cls, v: dict[str, NoiseKindOptions], info: ValidationInfo) -> dict[str, NoiseKindOptions]:
        """Each kind's ``fixed`` checked exactly as the entry's ``fixed`` is (name, type, range)."""
        for kind in v:
            try:
                if kind != RECORDED and recorded_source(kind) is None:
                    _name_in(kind, NOISE_KINDS, "noise kind")
            except ValueError as e:
                raise SubPathError(kind, f"{e}, or recorded (every recorded source), or recorded:<source>") from None
        algorithm = info.data.get("algorithm")
        if algorithm not in ALGORITHMS:
            return v
        out = {}
        for kind, opts in v.items():
            try:
                checked = _check_hparams(lnl_models(algorithm), opts.fixed, f"LNL algorithm {algorithm}", LNL_EXCLUDE)
            except SubPathError as e:
                raise SubPathError(f"{kind}.fixed.{e.sub}", str(e)) from None
            out[kind] = NoiseKindOptions(fixed=checked)
        return out

    @model_validator(mode="after")
    def _space(self) -> LNLSpec:
        try:
            check_conditions(self.search_space)
        except ValueError as e:
            raise SubPathError("search_space", str(e)) from None
        both = set(self.fixed) & set(self.search_space)
        if both:
            raise ValueError(f"{sorted(both)} are both fixed and searched; keep one")
        for kind, opts in self.by_noise_kind.items():
            both = set(opts.fixed) & set(self.search_space)
            if both:
                raise SubPathError(
                    f"by_noise_kind.{kind}.fixed",
                    f"{sorted(both)} are also searched; fix them or search them, not both",
                )
        try:
            _check_space(lnl_models(self.algorithm), self.search_space, f"LNL algorithm {self.algorithm}")
        except SubPathError as e:
            raise SubPathError(f"search_space.{e.sub}", str(e)) from None
        return self

    @property
    def key(self) -> str:
        return self.id or self.algorithm

    def fixed_for(self, noise_kind: str, noise_rate: float) -> dict[str, Any]:
        """The fixed hyperparameters of a cell of this noise: ``fixed``, updated with ``by_noise_kind``'s
        entry for the kind when the labels are noisy (a rate-0 cell of a synthetic kind is clean and gets
        ``fixed`` alone; recorded labels are noisy at rate 0: ``recorded:<source>``'s entry, else ``recorded``'s)."""
        source = recorded_source(noise_kind)
        extra = self.by_noise_kind.get(noise_kind)
        if extra is None and source is not None:
            extra = self.by_noise_kind.get(RECORDED)
        if extra is None or (noise_rate == 0.0 and source is None):
            return dict(self.fixed)
        return {**self.fixed, **extra.fixed}

    def point_hparams(self, noise_kind: str, noise_rate: float, hparams: dict[str, Any]) -> dict[str, Any]:
        """A trial's hyperparameters at a noise setting: the sampled ones of ``hparams`` (whatever no
        ``fixed`` of any kind names) and the fixed ones of that setting. Idempotent, so a cell's best
        configuration found at one noise kind is rerun at another with that kind's fixed values."""
        fixed_names = set(self.fixed).union(*(o.fixed for o in self.by_noise_kind.values()))
        sampled = {k: v for k, v in hparams.items() if k not in fixed_names}
        return {**self.fixed_for(noise_kind, noise_rate), **sampled}


class ModelSpec(Strict):
    #: a registered backbone (study.models.BACKBONES) or any timm architecture as ``timm:<architecture>``
    backbone: str = "resnet18"
    #: side of the square images after decoding (None: the dataset's own); for a timm backbone the default is
    #: its weights' input size (``_timm_resolution``)
    resolution: int | None = Field(None, ge=8, le=4096)

    _b = field_validator("backbone")(classmethod(lambda cls, v: check_backbone(v)))

    @model_validator(mode="before")
    @classmethod
    def _timm_resolution(cls, data: Any) -> Any:
        """Without ``resolution``, a timm backbone takes its architecture's ``pretrained_cfg`` input size (224 for
        ViT-B/16, Swin-T, ResNet-50): an external encoder then sees images at the scale its weights were
        trained on, and the resolved spec says so. An unknown architecture is left to the backbone's check."""
        if not isinstance(data, dict) or data.get("resolution") is not None:
            return data
        backbone = data.get("backbone")
        if not isinstance(backbone, str) or not is_timm(backbone):
            return data
        try:
            check_timm_name(backbone)
        except ValueError:
            return data
        return {**data, "resolution": native_size(backbone)}

    @model_validator(mode="after")
    def _timm_input_size(self) -> ModelSpec:
        if is_timm(self.backbone) and self.resolution is not None:
            try:
                check_input_size(self.backbone, self.resolution)
            except ValueError as e:
                raise SubPathError("resolution", str(e)) from None
        return self


class TuningSpec(Strict):
    samples_per_cell: int = Field(8, gt=0)
    metric: str = "val_f1"
    #: the axes whose values define a cell; other axes take their first value while tuning and every
    #: value in stage `final`
    cell_axes: list[str] = Field(
        default_factory=lambda: ["dataset", "noise_kind", "noise_rate", "label_fraction", "ssl", "lnl"]
    )
    sampler: Literal["tpe", "random"] = "tpe"
    #: TPE's random start-up: the first this many trials of a cell are drawn at random (Optuna's default 10)
    n_startup_trials: int = Field(10, ge=0)
    sampler_seed: int = Field(0, ge=0, lt=2**31)

    _m = field_validator("metric")(classmethod(lambda cls, v: _name_in(v, tuple(METRICS), "metric")))

    @field_validator("cell_axes")
    @classmethod
    def _axes(cls, v: list[str]) -> list[str]:
        for a in v:
            _name_in(a, AXES, "axis")
        if "lnl" not in v:
            raise ValueError("must contain 'lnl' (search spaces belong to an algorithm)")
        return v

    @property
    def mode(self) -> str:
        return METRICS[self.metric]

    @property
    def is_random_search(self) -> bool:
        """Whether every sample of a cell is drawn at random: the random sampler, or TPE that never leaves
        its start-up (a cell's k-th ask sees at most k - 1 finished trials, and TPE models only once
        ``n_startup_trials`` have finished)."""
        return self.sampler == "random" or self.samples_per_cell <= self.n_startup_trials

    def sampler_text(self) -> str:
        """What the sampler does with this many samples per cell, for ``study plan``."""
        n, k = self.samples_per_cell, self.n_startup_trials
        if self.sampler == "random":
            return f"sampler: random, {n} samples per cell"
        if n <= k:
            return f"sampler: TPE, {n} samples per cell <= {k} start-up trials: this is random search"
        return f"sampler: TPE, {k} random start-up trials then TPE for up to {n - k} of {n} samples per cell"

    def warnings(self) -> list[str]:
        """Settings that run but do not do what their names say (printed by ``study validate``/``launch``)."""
        out = []
        if self.sampler == "tpe" and self.samples_per_cell <= self.n_startup_trials:
            out.append(
                f"tuning: sampler tpe with samples_per_cell {self.samples_per_cell} <= n_startup_trials "
                f"{self.n_startup_trials} is random search; raise samples_per_cell above n_startup_trials, "
                "lower n_startup_trials, or say sampler: random"
            )
        if self.sampler == "random" and "n_startup_trials" in self.model_fields_set:
            out.append("tuning.n_startup_trials: applies to sampler tpe only; the random sampler ignores it")
        return out


class EarlyStoppingSpec(Strict):
    """ASHA (Li et al. 2020), one bracket per cell."""

    enabled: bool = True
    grace_period: int = Field(1, gt=0)
    reduction_factor: float = Field(2.0, gt=1.0)


class Resources(Strict):
    cpus: float = Field(1.0, gt=0)
    #: fractional GPUs share a device; ignored (with a warning) on a cluster without GPUs
    gpus: float = Field(0.0, ge=0)
    #: host memory (GB) one trial or job may take: Ray starts no more of them on a node than its memory
    #: holds (Ray's ``memory`` resource), and ``study plan``/``launch`` refuse a spec whose training and
    #: validation inputs (estimated) exceed it, or a node that has less; unset: neither
    memory_gb: float | None = Field(None, gt=0)


class ResourcesSpec(Strict):
    pretrain: Resources = Resources()
    trial: Resources = Resources()
    max_concurrent_trials: int | None = Field(None, gt=0)
    #: the share of a trial's device memory (its ``trial.gpus`` of the GPU) that its training and validation
    #: inputs may take on the device, and of a pretraining job's (``pretrain.gpus``) for its training images;
    #: inputs that need more stay in host memory and move batch by batch (``study.experiment.device_budget``;
    #: on a CPU the inputs are in host memory either way)
    device_data_share: float = Field(0.25, gt=0.0, le=1.0)
    #: stage lnl: how many of a cell's samples one Ray trial trains together as one batched model (packed
    #: trials, ``study.packing``), each still its own Optuna trial, MLflow run and ASHA entry; 1: one sample
    #: per trial; ``auto``: 8 where trials get a GPU, 1 on CPUs (where packing saves only a trial's fixed
    #: costs: docs/benchmarks.md). Algorithms that cannot be packed (``Algorithm.packable``: dividemix) run
    #: one sample per trial. Stage final: heads on embeddings (linear_probe) train this many of a cell's final
    #: runs (its seeds) together (``plan.pack_finals``)
    pack: int | Literal["auto"] = 1

    @field_validator("pack", mode="before")
    @classmethod
    def _pack(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError(
            f"{value!r} is not a pack size: give the number of a cell's samples one trial trains together "
            "(1: one per trial, 8: eight) or auto (8 where trials get a GPU, 1 on CPUs)"
        )


class FailuresSpec(Strict):
    #: retries of a trial that raised (from its last checkpoint); a non-finite loss is not retried
    max_retries: int = Field(1, ge=0)
    #: an LNL trial reports an epoch checkpoint every this many epochs (and always at its last epoch); a
    #: trial resumed or retried continues from its last checkpoint, so it computes at most this many
    #: epochs again (with the same results: the checkpoint holds the data order's generator state)
    checkpoint_every: int = Field(1, ge=1)


class StorageSpec(Strict):
    #: where study directories are created (`study launch --storage` overrides)
    root: str = "studies"
    #: the content-addressed cache (default: <root>/cache)
    cache: str | None = None
    #: decoded-dataset cache (default: the cache)
    data_cache: str | None = None


class TrackingSpec(Strict):
    #: MLflow tracking URI; default: sqlite:///<study dir>/mlflow.db, written from the driver only
    uri: str | None = None


Seed = Annotated[int, Field(strict=True, ge=0, lt=2**32)]
#: the largest cross-product a spec may describe (khanal2024 has 4500 points)
MAX_POINTS = 200_000


class PointSpec(Strict):
    """One point of the cross-product, by the entries' keys (dataset id, SSL and LNL entry ids)."""

    dataset: str
    noise_kind: str
    noise_rate: float
    ssl: str
    lnl: str
    seed: Seed
    label_fraction: float = 1.0


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    description: str = ""
    datasets: list[DatasetSpec] = Field(min_length=1)
    noise: NoiseSpec
    #: the labelled fraction of each training split, an axis (default: every label)
    labels: LabelsSpec | None = None
    ssl: list[SSLSpec] = Field(min_length=1)
    lnl: list[LNLSpec] = Field(min_length=1)
    #: trial seeds (numpy's seeds are 32-bit)
    seeds: list[Seed] = Field(min_length=1)
    model: ModelSpec = ModelSpec()
    tuning: TuningSpec = TuningSpec()
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    resources: ResourcesSpec = ResourcesSpec()
    failures: FailuresSpec = FailuresSpec()
    storage: StorageSpec = StorageSpec()
    tracking: TrackingSpec = TrackingSpec()
    #: run only these points of the cross-product (what `--smoke` writes: a covering subset); default all
    subset: list[PointSpec] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _cross(self) -> Spec:
        self._check_size()
        for field, keys in (
            ("datasets", [d.key for d in self.datasets]),
            ("ssl", [s.key for s in self.ssl]),
            ("lnl", [a.key for a in self.lnl]),
            ("seeds", self.seeds),
        ):
            dup = sorted({str(k) for k, n in Counter(keys).items() if n > 1})
            if dup:
                raise ValueError(f"{field}: duplicate entries {dup}; give them distinct ids")
        for i, entry in enumerate(self.ssl):
            self._check_ssl_entry(i, entry)
        if "transition" in self.noise.options:
            _check_transition_option(self.noise.options["transition"])
        if "targets" in self.noise.options:
            _check_targets_option(self)
        self._check_by_noise_kind()
        self._check_optim()
        self._check_subset()
        for i, d in enumerate(self.datasets):
            if d.noise_class_scale and "class_dependent" not in self.noise.kinds:
                raise ValueError(
                    f"datasets[{i}].noise_class_scale applies to class_dependent noise only; add class_dependent "
                    "to noise.kinds or remove it"
                )
        self._check_micle()
        self._check_recorded()
        if "class_dependent" in self.noise.kinds and "groups" not in self.noise.options:
            for i, d in enumerate(self.datasets):
                if not d.noise_groups and not DATASETS[d.name].noise_groups:
                    raise ValueError(
                        f"datasets[{i}]: {d.name} has no default groups of confusable classes for "
                        "class_dependent noise; set its noise_groups or noise.options.groups"
                    )
        return self

    def _check_ssl_entry(self, i: int, s: SSLSpec) -> None:
        """SSL entry ``i`` against the rest: its backbone (its own or ``model.backbone``) fits its method and
        init, and its per-dataset epochs name datasets of the spec."""
        dataset_keys = [d.key for d in self.datasets]
        backbone = self.backbone_of(s.key)
        named = f"ssl[{i}].backbone" if s.backbone else "model.backbone"
        if "imagenet" in (s.method, s.init) and backbone != "resnet18":
            where = "method" if s.method == "imagenet" else "init"
            raise ValueError(
                f"ssl[{i}].{where}: ImageNet weights exist for backbone resnet18 only, not "
                f"{backbone}; set {named}: resnet18 or start from random"
            )
        try:
            check_init(s.method, s.init, backbone)
        except ValueError as e:
            raise ValueError(f"ssl[{i}].init: {e} ({named} is {backbone})") from None
        if METHODS[s.method].takes_tiles and is_timm(backbone) and pretrained_cfg(backbone).get("fixed_input_size"):
            raise ValueError(
                f"ssl[{i}].method: {s.method} feeds the backbone tiles smaller than the images, and {backbone} "
                f"takes {native_size(backbone)} px inputs only; give this entry a convolutional backbone "
                f"({named}: e.g. timm:resnet50 or resnet18)"
            )
        if s.backbone is not None and is_timm(s.backbone) and s.backbone != self.model.backbone:
            if self.model.resolution is None:
                raise ValueError(
                    f"ssl[{i}].backbone: a timm encoder beside model.backbone {self.model.backbone} needs "
                    f"model.resolution (its weights' input size is {native_size(s.backbone)} px)"
                )
            try:
                check_input_size(s.backbone, self.model.resolution)
            except ValueError as e:
                raise ValueError(f"ssl[{i}].backbone: {e}") from None
        for k in s.epochs if isinstance(s.epochs, dict) else ():
            if k != "default" and k not in dataset_keys:
                raise ValueError(
                    f"ssl[{i}].epochs.{k}: not a dataset of this spec {_allowed([*dataset_keys, 'default'])}"
                )

    def _check_size(self) -> None:
        settings = len(self.noise.kinds) * len(self.noise.rates) + len(self.noise.recorded)
        points = len(self.datasets) * settings * len(self.label_fractions) * len(self.ssl) * len(self.lnl)
        points *= len(self.seeds)
        if points > MAX_POINTS:
            raise ValueError(
                f"the cross-product has {points} points (datasets x noise kinds x rates x label fractions x ssl x "
                f"lnl x seeds), more than {MAX_POINTS}; split the study into several specs or use fewer values per axis"
            )

    def _check_by_noise_kind(self) -> None:
        for i, a in enumerate(self.lnl):
            for kind in a.by_noise_kind:
                if kind == RECORDED and self.noise.recorded:
                    continue
                if kind not in self.noise.cell_kinds:
                    where = "noise.recorded" if kind == RECORDED or recorded_source(kind) else "noise.kinds"
                    raise ValueError(
                        f"lnl[{i}].by_noise_kind.{kind}: not a noise kind of this spec "
                        f"{_allowed(self.noise.cell_kinds)}; add it to {where} or remove the entry"
                    )

    def _check_optim(self) -> None:
        """An LNL entry's optimiser settings agree with each other and its epochs (``coteaching`` needs Adam,
        milestones fall before the last epoch) for every value its search can sample, in every noise kind."""
        for i, a in enumerate(self.lnl):
            searched = {
                k: p.choices if isinstance(p, CategoricalParam) else [p.low, p.high] for k, p in a.search_space.items()
            }
            # the plain fixed values first: a problem that only a kind's values bring is that kind's
            kinds = [("fixed", a.fixed)] + [(f"by_noise_kind.{k}.fixed", a.fixed_for(k, 1.0)) for k in a.by_noise_kind]
            for where, fixed in kinds:
                for name, message in optim_problems(a.epochs, fixed, searched):
                    place = "search_space" if name in a.search_space else where
                    raise ValueError(f"lnl[{i}].{place}.{name}: {message}")

    def _check_micle(self) -> None:
        """MICLe pairs two images of one patient: every dataset it pretrains on must be able to have some
        (the data's own check, at launch and in the trial: ``study.ssl.micle.require_patients``)."""
        pairs = {(p.dataset, p.ssl) for p in self.subset} if self.subset else None
        for i, s in enumerate(self.ssl):
            for j, d in enumerate(self.datasets if s.method == "micle" else ()):
                if (pairs is None or (d.key, s.key) in pairs) and not _may_have_patients(d):
                    with_patients = ", ".join(n for n, c in DATASETS.items() if c.has_patients)
                    raise ValueError(
                        f"ssl[{i}].method: micle needs several images per patient, and datasets[{j}] ({d.name}) "
                        f"has no patient ids; pretrain it with simclr, or use a dataset with patients "
                        f"({with_patients}; a manifest needs a patient_id column, docs/datasets.md), or a "
                        "stand-in's views (synthetic: views_per_patient, fashion_mnist: views)"
                    )

    def _check_recorded(self) -> None:
        """Every recorded source is an aggregate, or an annotator column of every dataset entry (read from the
        entry's options: ``Dataset.recorded_annotators``; launch checks the files)."""
        if not self.noise.recorded:
            return
        for i, d in enumerate(self.datasets):
            names = DATASETS[d.name].recorded_annotators(d.options)
            if not names:
                raise ValueError(
                    f"noise.recorded: datasets[{i}] ({d.name}) has no recorded annotators' labels; name its annotator "
                    "columns (a manifest's options.annotator_columns, docs/noise.md; the synthetic stand-in's "
                    "options.annotators) or remove noise.recorded"
                )
            for j, source in enumerate(self.noise.recorded):
                if source not in NOISE_AGGREGATES and source not in names:
                    raise ValueError(
                        f"noise.recorded[{j}]: {source!r} is neither an annotator column of datasets[{i}] "
                        f"({', '.join(names)}) nor an aggregate of them ({', '.join(NOISE_AGGREGATES)})"
                    )

    def _check_subset(self) -> None:
        axes = {
            "dataset": [d.key for d in self.datasets],
            "noise_kind": self.noise.cell_kinds,
            "noise_rate": self.noise.rates + ([0.0] if self.noise.recorded else []),
            "label_fraction": self.label_fractions,
            "ssl": [s.key for s in self.ssl],
            "lnl": [a.key for a in self.lnl],
            "seed": self.seeds,
        }
        for i, point in enumerate(self.subset or ()):
            for axis, values in axes.items():
                if getattr(point, axis) not in values:
                    raise ValueError(
                        f"subset[{i}].{axis}: {getattr(point, axis)!r} is not a value of the axis {_allowed(values)}"
                    )

    @property
    def label_fractions(self) -> list[float]:
        """The values of the label-efficiency axis: ``labels.fractions``, else every label."""
        return list(self.labels.fractions) if self.labels is not None else [1.0]

    @property
    def dataset_map(self) -> dict[str, DatasetSpec]:
        return {d.key: d for d in self.datasets}

    @property
    def ssl_map(self) -> dict[str, SSLSpec]:
        return {s.key: s for s in self.ssl}

    def backbone_of(self, ssl_key: str) -> str:
        """The encoder architecture of an SSL entry: its own ``backbone``, else ``model.backbone``."""
        return self.ssl_map[ssl_key].backbone or self.model.backbone

    @property
    def lnl_map(self) -> dict[str, LNLSpec]:
        return {a.key: a for a in self.lnl}


def _may_have_patients(d: DatasetSpec) -> bool:
    """Whether the dataset entry can have several images per patient: its class says so (mura, a manifest
    with a patient column), or an option makes them (the synthetic stand-in's ``views_per_patient``,
    Fashion-MNIST's ``views``)."""
    return DATASETS[d.name].may_have_patients(d.options)


def _check_transition_option(t: Any) -> None:
    """noise.options.transition is a square row-stochastic matrix (its size is checked against the data)."""
    where = "noise.options.transition"
    if not (isinstance(t, list) and t and all(isinstance(r, list) and len(r) == len(t) for r in t)):
        raise ValueError(f"{where}: a K x K matrix (a list of K rows of K numbers), one row per true class")
    try:
        transition_matrix(len(t), "transition", 0.0, transition=t)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{where}: {e}; each row gives the label probabilities of one true class and sums to 1"
        ) from None


def _check_target_entries(targets: Any) -> None:
    """noise.options.targets (asymmetric noise) as far as the spec alone shows: a list of class names or
    indices, none an index equal to its own position (its size and names are checked against each dataset's
    classes: ``_check_targets_option`` where the spec gives them, the data at launch otherwise)."""
    fix = (
        "give a list with one destination class (name or index) per class: targets[c] is where labels of class c "
        "are flipped to; leave targets out for the default c -> c+1 mod K"
    )
    if not isinstance(targets, list) or not targets:
        raise SubPathError("targets", f"{targets!r} is not a list of classes; {fix}")
    for c, v in enumerate(targets):
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0) or v == "":
            raise SubPathError("targets", f"targets[{c}] = {v!r} is neither a class name nor a class index; {fix}")
        if v == c:
            raise SubPathError("targets", f"targets[{c}] = {c} maps class {c} to itself; give each class another class")


def _check_targets_option(spec: Spec) -> None:
    """noise.options.targets against every dataset whose classes the spec alone gives (a dataset's fixed class
    names, or its options' class_names or num_classes); the others are checked against their data at launch."""
    targets = spec.noise.options["targets"]
    for i, d in enumerate(spec.datasets):
        options = DATASETS[d.name].check_options(d.options)
        names = DATASETS[d.name].known_classes or getattr(options, "class_names", None)
        count = len(names) if names else getattr(options, "num_classes", None)
        if not isinstance(count, int) or (not names and any(isinstance(v, str) for v in targets)):
            continue  # names the spec cannot resolve: checked against the data at launch
        classes = list(names) if names else [str(c) for c in range(count)]
        try:
            class_targets(targets, classes)
        except NoiseOptionError as e:
            every = (
                "; one list serves every dataset of the spec, so their class counts must agree (or leave targets out "
                "for the default c -> c+1 mod K)"
                if len(targets) != count
                else ""
            )
            raise ValueError(f"noise.options.targets: {e} (on datasets[{i}], {d.key}){every}") from None


# -- loading ----------------------------------------------------------------------------------------


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _TAGS:
            continue  # discriminator tags
        else:
            out += ("." if out else "") + str(part)
    return out


_TAGS = {"float": FloatParam, "int": IntParam, "categorical": CategoricalParam}


def _unwrap(ann: Any) -> Any:
    """The model inside list[...], dict[str, ...], Optional[...]; None when there is none."""
    while True:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
        origin, args = typing.get_origin(ann), [a for a in typing.get_args(ann) if a is not type(None)]
        if origin is dict:
            ann = args[1]
        elif origin is list or (origin is not None and len(args) == 1):
            ann = args[0]
        else:
            return None


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the last element of ``loc`` (to list its fields for an unknown key)."""
    model: Any = Spec
    for part in loc[:-1]:
        if part in _TAGS:
            model = _TAGS[part]
            continue
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            continue  # a dict key (a parameter name): the value's model stays pending
        model = _unwrap(field.annotation)
    return model


def _message(err: dict) -> str:
    t, msg = err["type"], err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if t == "extra_forbidden":
        model = _model_at(tuple(err["loc"]))
        return f"unknown field {_allowed(model.model_fields) if model else ''}".rstrip()
    if t == "missing":
        return "required field is missing"
    if t == "too_short" and isinstance(err.get("input"), list):
        n = err.get("ctx", {}).get("min_length", 1)
        return (
            f"must list at least {'one value' if n == 1 else f'{n} values'}, got an empty list"
            if not err["input"]
            else f"must list at least {n} values, got {len(err['input'])}"
        )
    if t == "literal_error":
        exp = err.get("ctx", {}).get("expected", "").replace(" or ", ", ").replace("'", "")
        return f"{err.get('input')!r} is not allowed (allowed: {exp})"
    if t == "union_tag_invalid":
        return f"unknown parameter type {err.get('input', {}).get('type')!r} (allowed: float, int, categorical)"
    if t == "union_tag_not_found":
        return "a search-space parameter needs 'type' (allowed: float, int, categorical)"
    return msg


def parse_spec(data: Any, source: str = "SPEC") -> Spec:
    """A ``Spec`` from already-parsed YAML, or ``SpecError`` listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(source, [("", f"a spec is a YAML mapping, got {type(data).__name__}")])
    try:
        return Spec.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            path = _loc(tuple(err["loc"]))
            msg = _message(err)
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, SubPathError):
                path = f"{path}.{cause.sub}" if path else cause.sub
            elif _names_subpath(msg):  # a model-level check reports the sub-path itself ("ssl[1].init: ...")
                sub, msg = msg.split(": ", 1)
                path = f"{path}.{sub}" if path else sub
            problems.append((path, msg))
        raise SpecError(source, problems) from None


def _names_subpath(msg: str) -> bool:
    """Whether ``msg`` starts with a field path of the spec (``ssl[1].init: ...``)."""
    if ": " not in msg:
        return False
    head = msg.split(": ", 1)[0]
    return (
        head.replace("[", "").replace("]", "").replace(".", "").replace("_", "").isalnum()
        and head.split("[")[0].split(".")[0] in Spec.model_fields
    )


#: the largest spec file read (a spec is a few kilobytes; this refuses a data file given by mistake)
MAX_SPEC_BYTES = 1 << 20


class _SpecLoader(yaml.SafeLoader):
    """Safe YAML that refuses what a spec never needs and that would hide a mistake: a key given twice
    (the second would silently replace the first) and aliases (``*name``: expanding nested ones can take
    gigabytes when the resolved spec is written)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not allowed in a spec; write the value out",
                self.peek_event().start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _read_text(p: Path) -> str:
    if p.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(
            str(p),
            [
                (
                    "",
                    f"{p.stat().st_size} bytes: a spec is a small YAML file (at most "
                    f"{MAX_SPEC_BYTES} bytes); is this the right file?",
                )
            ],
        )
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(str(p), [("", f"not UTF-8 text (byte {e.start}); a spec is a YAML text file")]) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(path), [("", "no such file (a spec is a YAML file, e.g. search_spaces/smoke.yaml)")])
    try:
        data = yaml.load(_read_text(p), Loader=_SpecLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x) or str(e)
        raise SpecError(
            str(path),
            [
                (
                    "",
                    f"not valid YAML{where}: {' '.join(what.split())}; fix the syntax there "
                    "(indentation, a missing ':' or closing bracket)",
                )
            ],
        ) from None
    return parse_spec(data, str(path))


#: fields added after studies were first frozen (``*``: every entry of a list): ``spec_to_yaml`` leaves
#: them out while they hold their defaults. A field added to the spec later belongs here.
LATER_FIELDS: tuple[str, ...] = (
    "subset",
    "tuning.n_startup_trials",
    "lnl.*.by_noise_kind",
    "ssl.*.backbone",
    "lnl.*.model_selection",
    "datasets.*.noise_class_scale",
    "labels",
)


def spec_to_yaml(spec: Spec) -> str:
    """The resolved spec (every default filled in), as frozen into a study directory. Fields added after
    studies were first frozen (``LATER_FIELDS``) are left out while they hold their defaults, so the text
    is as before the fields existed: a relaunch compares this text."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude=_later_keys_at_default(spec)), sort_keys=False)


def frozen_spec(text: str, source: str = "state.json (a frozen spec)") -> Spec:
    """The spec of a ``spec_to_yaml`` text (a study's frozen spec), checked again."""
    return parse_spec(yaml.safe_load(text), source)


def _later_keys_at_default(spec: Spec) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for dotted in LATER_FIELDS:
        _exclude(spec, dotted.split("."), out)
    return out


def _exclude(obj: Any, path: list[str], out: dict[Any, Any]) -> None:
    """Mark ``path`` (under ``obj``) in the exclude tree ``out`` where the field holds its default."""
    head, rest = path[0], path[1:]
    if head == "*":
        for i, item in enumerate(obj):
            sub: dict[Any, Any] = {}
            _exclude(item, rest, sub)
            if sub:
                out[i] = sub
        return
    value = getattr(obj, head)
    if not rest:
        if value == type(obj).model_fields[head].get_default(call_default_factory=True):
            out[head] = True
        return
    sub = out.setdefault(head, {})
    _exclude(value, rest, sub)
    if not sub:
        del out[head]
