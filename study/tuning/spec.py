"""The study spec (``search_spaces/*.yaml``): typed, checked at the door, every error naming its field.

A spec names the axes of a study (datasets, noise kinds and rates, SSL pretrainings, LNL algorithms,
seeds), each algorithm's hyperparameter search space (Optuna distributions; a parameter may be
conditional on an earlier categorical one with ``when``), how cells are tuned, early stopping, the
resources of a pretraining job and of a trial, and where the study stores its state.

``load_spec(path)`` returns a ``Spec`` or raises ``SpecError`` whose lines read
``path/to/spec.yaml: path.to.field: problem (allowed: ...)``.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Names of the contract (DESIGN.md, Registries). A spec naming one of these validates even where the
# implementing module is not installed yet; `study launch` then checks the registry itself.
DATASET_NAMES = ("nct_crc_he", "covid_qu_ex", "fetal_planes", "mura", "dermnet", "folder", "manifest", "medmnist",
                 "fashion_mnist", "synthetic")
SSL_NAMES = ("random", "imagenet", "simclr", "moco_v2", "barlow_twins", "rotation", "jigsaw", "jigmag", "vae",
             "bigbigan", "micle")
#: initialisations that need no stage-1 training job
INIT_ONLY = ("random", "imagenet")
LNL_NAMES = ("ce", "co_teaching", "co_teaching_plus", "dividemix", "elr", "gce", "sce", "linear_probe")
NOISE_KINDS = ("symmetric", "uniform", "pairflip", "class_dependent", "transition")
BACKBONE_NAMES = ("resnet18", "small_cnn")
AXES = ("dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed")
#: hyperparameters that configure the optimiser (study.lnl.OptimConfig) or the loader, for every algorithm
OPTIM_PARAMS = ("optimizer", "lr", "momentum", "weight_decay", "schedule")
LOADER_PARAMS = ("batch_size",)
METRICS = {"val_f1": "max", "val_acc": "max", "val_balanced_acc": "max", "val_auroc": "max", "train_loss": "min"}


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
    def _range(self) -> "FloatParam":
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
    def _range(self) -> "IntParam":
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
                raise ValueError(f"{name}.when: {parent!r} is not an earlier parameter {_allowed(seen) if seen else ''}"
                                 .rstrip())
            if not isinstance(seen[parent], CategoricalParam):
                raise ValueError(f"{name}.when: {parent!r} must be categorical to condition on")
            for v in values if isinstance(values, list) else [values]:
                if v not in seen[parent].choices:
                    raise ValueError(f"{name}.when.{parent}: {v!r} is not a choice of {parent} "
                                     f"{_allowed(seen[parent].choices)}")
        seen[name] = p


# -- axes -------------------------------------------------------------------------------------------

class SplitSpec(Strict):
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)


class ShiftedTestSpec(Strict):
    """A second data set with the same classes, evaluated at the selected epoch (distribution shift)."""

    name: str
    options: dict[str, Any] = Field(default_factory=dict)

    _n = field_validator("name")(classmethod(lambda cls, v: _name_in(v, DATASET_NAMES, "dataset")))


class DatasetSpec(Strict):
    name: str
    #: label of this entry in cells and MLflow tags (default: name); lets one dataset appear twice
    id: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    splits: SplitSpec = SplitSpec()
    shifted_test: ShiftedTestSpec | None = None
    #: groups of confusable classes (class names or indices) for class_dependent noise, replacing the
    #: dataset's default groups
    noise_groups: list[list[int | str]] | None = None
    #: number of images, for `study plan`'s compute estimate where the dataset's size is not known
    estimated_images: int | None = Field(None, gt=0)

    _n = field_validator("name")(classmethod(lambda cls, v: _name_in(v, DATASET_NAMES, "dataset")))

    @property
    def key(self) -> str:
        return self.id or self.name


class NoiseSpec(Strict):
    kinds: list[str] = Field(min_length=1)
    rates: list[float] = Field(min_length=1)
    #: extra options of study.noise.inject_noise (exact, groups, transition)
    options: dict[str, Any] = Field(default_factory=dict)
    #: corrupt the validation labels too (DESIGN default); Dedieu et al. keep them clean
    noisy_validation: bool = True

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        for k in v:
            _name_in(k, NOISE_KINDS, "noise kind")
        if len(set(v)) != len(v):
            raise ValueError("duplicate noise kinds")
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
    def _opts(cls, v: dict) -> dict:
        allowed = ("exact", "groups", "transition")
        for k in v:
            if k not in allowed:
                raise ValueError(f"unknown noise option {k!r} {_allowed(allowed)}")
        return v

    @model_validator(mode="after")
    def _pairflip(self) -> "NoiseSpec":
        if "pairflip" in self.kinds and any(r >= 0.5 for r in self.rates):
            raise ValueError("pairflip needs every rate below 0.5")
        if "transition" in self.kinds and "transition" not in self.options:
            raise ValueError("kind 'transition' needs options.transition (a K x K row-stochastic matrix)")
        return self


class SSLSpec(Strict):
    method: str
    #: label of this entry (default: method); two entries of one method with different hparams need ids
    id: str | None = None
    hparams: dict[str, Any] = Field(default_factory=dict)
    #: pretraining epochs, one number or per dataset id (key `default` for the others)
    epochs: int | dict[str, int] = 100
    batch_size: int = Field(256, gt=0)
    #: what the encoder starts from (Azizi et al.: imagenet, then in-domain SSL)
    init: Literal["random", "imagenet"] = "random"

    _m = field_validator("method")(classmethod(lambda cls, v: _name_in(v, SSL_NAMES, "SSL method")))

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, v):
        vals = v.values() if isinstance(v, dict) else [v]
        if any(e < 0 for e in vals):
            raise ValueError("epochs must be >= 0")
        return v

    @property
    def key(self) -> str:
        return self.id or self.method

    @property
    def needs_pretraining(self) -> bool:
        return self.method not in INIT_ONLY

    def epochs_for(self, dataset_key: str) -> int:
        if isinstance(self.epochs, int):
            return self.epochs
        return self.epochs.get(dataset_key, self.epochs.get("default", 100))


class HeadSpec(Strict):
    #: hidden widths of the MLP head (Dedieu et al.: [512, 128, 64]); empty = linear head
    hidden: list[int] = Field(default_factory=list)
    #: keep the encoder frozen (embeddings + head protocol)
    frozen: bool = False


class LNLSpec(Strict):
    algorithm: str
    id: str | None = None
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    #: hyperparameters used as given (optimiser fields, batch_size, or the algorithm's own)
    fixed: dict[str, Any] = Field(default_factory=dict)
    search_space: dict[str, Param] = Field(default_factory=dict)
    head: HeadSpec = HeadSpec()

    _a = field_validator("algorithm")(classmethod(lambda cls, v: _name_in(v, LNL_NAMES, "LNL algorithm")))

    @model_validator(mode="after")
    def _space(self) -> "LNLSpec":
        check_conditions(self.search_space)
        both = set(self.fixed) & set(self.search_space)
        if both:
            raise ValueError(f"{sorted(both)} are both fixed and searched; keep one")
        known = algorithm_hparams(self.algorithm)
        if known is not None:
            allowed = (*OPTIM_PARAMS, *LOADER_PARAMS, *known)
            for name in (*self.fixed, *self.search_space):
                if name not in allowed:
                    raise ValueError(f"{name!r} is not a hyperparameter of {self.algorithm} {_allowed(allowed)}")
        return self

    @property
    def key(self) -> str:
        return self.id or self.algorithm


def algorithm_hparams(name: str) -> tuple[str, ...] | None:
    """The algorithm's own keyword hyperparameters (along its ``__init__`` chain up to ``Algorithm``),
    when it is registered; None where the registry is not importable or the name not yet registered."""
    try:
        from study.lnl import ALGORITHMS
        from study.lnl.base import Algorithm
        cls = dict.get(ALGORITHMS, name)
    except Exception:  # the registry is another module's; a broken import must not break validation
        return None
    if cls is None:
        return None
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is Algorithm or "__init__" not in klass.__dict__:
            if klass is Algorithm:
                break
            continue
        params = inspect.signature(klass.__dict__["__init__"]).parameters
        names += [n for n, p in params.items() if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break  # does not forward to the base
    return tuple(dict.fromkeys(names))


class ModelSpec(Strict):
    backbone: str = "resnet18"
    #: side of the square images after decoding (None: the dataset's own)
    resolution: int | None = Field(None, ge=8)

    _b = field_validator("backbone")(classmethod(lambda cls, v: _name_in(v, BACKBONE_NAMES, "backbone")))


class TuningSpec(Strict):
    samples_per_cell: int = Field(8, gt=0)
    metric: str = "val_f1"
    #: the axes whose values define a cell; other axes take their first value while tuning and every
    #: value in stage `final`
    cell_axes: list[str] = Field(default_factory=lambda: ["dataset", "noise_kind", "noise_rate", "ssl", "lnl"])
    sampler: Literal["tpe", "random"] = "tpe"
    sampler_seed: int = 0

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


class EarlyStoppingSpec(Strict):
    """ASHA (Li et al. 2020), one bracket per cell."""

    enabled: bool = True
    grace_period: int = Field(1, gt=0)
    reduction_factor: float = Field(2.0, gt=1.0)


class Resources(Strict):
    cpus: float = Field(1.0, gt=0)
    #: fractional GPUs share a device; ignored (with a warning) on a cluster without GPUs
    gpus: float = Field(0.0, ge=0)


class ResourcesSpec(Strict):
    pretrain: Resources = Resources()
    trial: Resources = Resources()
    max_concurrent_trials: int | None = Field(None, gt=0)


class FailuresSpec(Strict):
    #: retries of a trial that raised (from its last checkpoint); a non-finite loss is not retried
    max_retries: int = Field(1, ge=0)


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


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    datasets: list[DatasetSpec] = Field(min_length=1)
    noise: NoiseSpec
    ssl: list[SSLSpec] = Field(min_length=1)
    lnl: list[LNLSpec] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    model: ModelSpec = ModelSpec()
    tuning: TuningSpec = TuningSpec()
    early_stopping: EarlyStoppingSpec = EarlyStoppingSpec()
    resources: ResourcesSpec = ResourcesSpec()
    failures: FailuresSpec = FailuresSpec()
    storage: StorageSpec = StorageSpec()
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="after")
    def _cross(self) -> "Spec":
        for field, keys in (("datasets", [d.key for d in self.datasets]), ("ssl", [s.key for s in self.ssl]),
                            ("lnl", [a.key for a in self.lnl]), ("seeds", self.seeds)):
            dup = sorted({str(k) for k in keys if keys.count(k) > 1})
            if dup:
                raise ValueError(f"{field}: duplicate entries {dup}; give them distinct ids")
        for i, s in enumerate(self.ssl):
            if s.method == "random" and s.init == "imagenet":
                raise ValueError(f"ssl[{i}].init: method 'random' with init 'imagenet' is method 'imagenet'")
        if "transition" in self.noise.options:
            _check_transition_option(self.noise.options["transition"])
        _check_dataset_options(self.datasets)
        if "class_dependent" in self.noise.kinds and "groups" not in self.noise.options:
            from study.data import DATASETS
            for i, d in enumerate(self.datasets):
                cls = dict.get(DATASETS, d.name)
                if cls is not None and not d.noise_groups and not getattr(cls, "noise_groups", None):
                    raise ValueError(f"datasets[{i}]: {d.name} has no default groups of confusable classes for "
                                     "class_dependent noise; set its noise_groups"
                                     " or noise.options.groups")
        return self

    @property
    def dataset_map(self) -> dict[str, DatasetSpec]:
        return {d.key: d for d in self.datasets}

    @property
    def ssl_map(self) -> dict[str, SSLSpec]:
        return {s.key: s for s in self.ssl}

    @property
    def lnl_map(self) -> dict[str, LNLSpec]:
        return {a.key: a for a in self.lnl}


def _check_transition_option(t: Any) -> None:
    """noise.options.transition is a square row-stochastic matrix (its size is checked against the data)."""
    from study.noise import transition_matrix

    where = "noise.options.transition"
    if not (isinstance(t, list) and t and all(isinstance(r, list) and len(r) == len(t) for r in t)):
        raise ValueError(f"{where}: a K x K matrix (a list of K rows of K numbers), one row per true class")
    try:
        transition_matrix(len(t), "transition", 0.0, transition=t)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}; each row gives the label probabilities of one true class and sums to 1"
                         ) from None


def _check_dataset_options(datasets: list[DatasetSpec]) -> None:
    """Every dataset option is one the dataset's class takes (a typo fails here, not inside a trial)."""
    try:
        from study.data import dataset_option_names
    except Exception:  # the data package is another module's; a broken import must not break validation
        return
    for i, d in enumerate(datasets):
        entries = [(f"datasets[{i}].options", d.name, d.options)]
        if d.shifted_test is not None:
            entries.append((f"datasets[{i}].shifted_test.options", d.shifted_test.name, d.shifted_test.options))
        for where, name, options in entries:
            allowed = dataset_option_names(name)
            if allowed is None:
                continue
            unknown = [k for k in options if k not in allowed]
            if unknown:
                raise ValueError(f"{where}: unknown option {unknown[0]!r} for dataset {name} {_allowed(allowed)}")


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
    import typing

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
        msg = msg[len("Value error, "):]
    if t == "extra_forbidden":
        model = _model_at(tuple(err["loc"]))
        return f"unknown field {_allowed(model.model_fields) if model else ''}".rstrip()
    if t == "missing":
        return "required field is missing"
    if t == "too_short" and isinstance(err.get("input"), list):
        n = err.get("ctx", {}).get("min_length", 1)
        return (f"must list at least {'one value' if n == 1 else f'{n} values'}, got an empty list"
                if not err["input"] else f"must list at least {n} values, got {len(err['input'])}")
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
            # a model-level check reports the sub-path itself ("ssl[1].init: ...")
            if ": " in msg and msg.split(": ", 1)[0].replace("[", "").replace("]", "").replace(".", "").isalnum() \
                    and msg.split(": ", 1)[0].split("[")[0].split(".")[0] in Spec.model_fields:
                sub, msg = msg.split(": ", 1)
                path = f"{path}.{sub}" if path else sub
            problems.append((path, msg))
        raise SpecError(source, problems) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError(str(path), [("", "no such file (a spec is a YAML file, e.g. search_spaces/smoke.yaml)")])
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(str(x) for x in (getattr(e, "problem", None), getattr(e, "context", None)) if x) or str(e)
        raise SpecError(str(path), [("", f"not valid YAML{where}: {' '.join(what.split())}; fix the syntax there "
                                         "(indentation, a missing ':' or closing bracket)")]) from None
    return parse_spec(data, str(path))


def spec_to_yaml(spec: Spec) -> str:
    """The resolved spec (every default filled in), as frozen into a study directory."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


def is_finite(x: float) -> bool:
    return math.isfinite(x)
