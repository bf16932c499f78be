"""The interface every learning-with-noisy-labels algorithm implements, and what they share.

An algorithm owns its networks and optimisers. The training loop (``study.train.fit``) calls
``start_epoch`` then ``train_step`` per batch; a step returns a dict whose ``loss`` key is required, and
sample-selecting algorithms add ``selected`` (the dataset indices they trained on as clean), which the
loop turns into label precision/recall outside the algorithm. Algorithms see only noisy labels.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, NotRequired, TypedDict

import numpy as np
import torch
from pydantic import Field, ValidationError, model_validator
from torch import nn

from study import hparams
from study.data.pipeline import AugmentConfig, TensorLoader

#: Adam's beta1 before and from ``decay_start`` in the Co-teaching authors' schedule (their mom1, mom2)
COTEACHING_BETA1 = (0.9, 0.1)


class OptimConfig(hparams.Hparams):
    """Optimiser and schedule. Khanal et al.'s LNL stage: SGD momentum 0.9, wd 1e-4, lr 0.01, cosine.

    ``step`` with ``milestones: [150]``, ``gamma: 0.1`` over 300 epochs is DivideMix's schedule (Li et al.
    2020); ``coteaching`` is the Co-teaching authors' Adam schedule (Han et al. 2018; ``lr_at``, ``beta1_at``).
    """

    optimizer: Literal["sgd", "adam"] = Field("sgd", description="optimiser of every network")
    lr: float = Field(0.01, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (unused by adam)")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay")
    schedule: Literal["constant", "cosine", "step", "coteaching"] = Field(
        "cosine",
        description=(
            "constant; cosine from lr to 0 over epochs; step (lr x gamma at each of milestones); coteaching "
            "(adam only: lr constant until decay_start, then linear to 0; Adam beta1 0.9, then 0.1)"
        ),
    )
    milestones: list[Annotated[int, Field(gt=0)]] = Field(
        [], description="step: the epochs (0-based) from which lr is multiplied by gamma once more"
    )
    gamma: float = Field(0.1, gt=0, le=1, description="step: the factor applied to lr at each milestone")
    decay_start: int = Field(
        80, ge=0, description="coteaching: the epoch (0-based) from which lr decays linearly and Adam's beta1 is 0.1"
    )
    epochs: int = Field(10, gt=0, description="training epochs (the length of the cosine schedule)")

    @model_validator(mode="after")
    def _consistent(self) -> OptimConfig:
        found = self.problem()
        if found is not None:
            raise ValueError(f"{found[0]}: {found[1]}")
        return self

    def problem(self) -> tuple[str, str] | None:
        """The first setting that contradicts another, as (field, message saying the fix); None if none."""
        if self.schedule == "coteaching" and self.optimizer != "adam":
            return "schedule", (
                f"'coteaching' is the Co-teaching authors' Adam schedule (it sets Adam's beta1), but optimizer is "
                f"{self.optimizer!r}; set optimizer: adam, or choose schedule constant, cosine or step"
            )
        if self.schedule == "coteaching" and self.decay_start >= self.epochs:
            return "decay_start", (
                f"{self.decay_start} is not below the entry's {self.epochs} epochs, so the schedule would never "
                f"decay; set decay_start below {self.epochs} (the authors: 80 of 200)"
            )
        if self.schedule == "step":
            if not self.milestones:
                return "milestones", "schedule 'step' needs milestones (e.g. [150] of 300 epochs, DivideMix's)"
            if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
                return "milestones", f"{self.milestones} must be strictly increasing"
            if self.milestones[-1] >= self.epochs:
                return "milestones", (
                    f"{self.milestones} must lie within the entry's {self.epochs} epochs (1 to {self.epochs - 1}); "
                    "lower them or raise the entry's epochs"
                )
        return None


def optim_problems(
    epochs: int, fixed: Mapping[str, Any], searched: Mapping[str, Sequence[Any]] | None = None
) -> list[tuple[str, str]]:
    """Contradictions between an LNL entry's optimiser settings, each as (field, message), for the door.

    ``fixed``: the entry's fixed values (other names are ignored); ``searched``: the values a searched
    optimiser field can take that bound its range (a categorical's choices, a range's low and high). Every
    combination of them with the fixed values is checked, so no sample can fail inside a trial.
    """
    names = set(OptimConfig.model_fields) - {"epochs"}
    base = {k: v for k, v in fixed.items() if k in names}
    options = {k: list(v) for k, v in (searched or {}).items() if k in names}
    found: dict[tuple[str, str], None] = {}
    for combo in itertools.product(*options.values()):
        values = {**base, **dict(zip(options, combo)), "epochs": epochs}
        problem = OptimConfig.model_construct(**values).problem()
        if problem is not None:
            found[problem] = None
    return list(found)


class LoaderHparams(hparams.Hparams):
    """The training loader's settings that a spec may fix or search like any hyperparameter."""

    batch_size: int = Field(128, gt=0, description="training batch size")


class StepOutput(TypedDict):
    """What a training step returns; ``fit`` logs ``loss`` and scores ``selected`` against the true labels."""

    loss: torch.Tensor
    #: dataset indices the step trained on as clean (sample-selecting algorithms only)
    selected: NotRequired[torch.Tensor]


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    trainable = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(trainable, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_at(epoch: int, cfg: OptimConfig) -> float:
    """The learning rate of a 0-based epoch under ``cfg.schedule``.

    cosine: ``lr/2 (1 + cos(pi e / epochs))``; step: ``lr gamma^(number of milestones <= e)``; coteaching:
    ``lr`` before ``decay_start``, then ``lr (epochs - e) / (epochs - decay_start)``; constant: ``lr``.
    """
    if cfg.schedule == "cosine":
        return float(0.5 * cfg.lr * (1 + np.cos(np.pi * epoch / max(cfg.epochs, 1))))
    if cfg.schedule == "step":
        return float(cfg.lr * cfg.gamma ** sum(1 for m in cfg.milestones if epoch >= m))
    if cfg.schedule == "coteaching" and epoch >= cfg.decay_start:
        return float(cfg.lr * (cfg.epochs - epoch) / (cfg.epochs - cfg.decay_start))
    return cfg.lr


def beta1_at(epoch: int, cfg: OptimConfig) -> float | None:
    """Adam's beta1 of an epoch where the schedule sets it (``coteaching``: 0.9, then 0.1 from
    ``decay_start``), else None (the optimiser's own)."""
    if cfg.schedule != "coteaching":
        return None
    return COTEACHING_BETA1[1] if epoch >= cfg.decay_start else COTEACHING_BETA1[0]


def set_schedule(opt: torch.optim.Optimizer, epoch: int, cfg: OptimConfig) -> None:
    """Write the epoch's learning rate (and Adam's beta1, where the schedule sets it) into ``opt``."""
    beta1 = beta1_at(epoch, cfg)
    for g in opt.param_groups:
        g["lr"] = lr_at(epoch, cfg)
        if beta1 is not None and "betas" in g:
            g["betas"] = (beta1, g["betas"][1])


def class_priors(labels: Sequence[int] | np.ndarray, rows: np.ndarray, num_classes: int) -> np.ndarray:
    """The class frequencies (K) of ``labels[rows]``: the training split's priors, for ``expected_noise_fraction``."""
    counts = np.bincount(np.asarray(labels)[rows], minlength=num_classes).astype(np.float64)
    return np.asarray(counts / max(counts.sum(), 1.0))


def expected_noise_fraction(transition: np.ndarray, priors: np.ndarray) -> float:
    """The expected fraction of corrupted labels, ``sum_i pi_i (1 - T_ii)``, of a K x K transition matrix
    ``T`` (row: true class) and the true classes' priors ``pi`` (K, summing to 1)."""
    t, pi = np.asarray(transition, dtype=np.float64), np.asarray(priors, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or pi.shape != (t.shape[0],):
        raise ValueError(f"need a K x K transition matrix and K priors, got {t.shape} and {pi.shape}")
    return float(np.clip(np.sum(pi * (1.0 - np.diag(t))) / max(pi.sum(), 1e-12), 0.0, 1.0))


class TrainViews:
    """Fresh augmented views of training samples, gathered by dataset index from a loader's raw images.

    Algorithms that need more than the one view the loader yields (DivideMix's two views per sample) or
    an evaluation pass over the whole training set (its per-sample losses) build one in ``start_epoch``.
    """

    def __init__(self, loader: TensorLoader, num_samples: int) -> None:
        if loader.labels is None:
            raise ValueError("TrainViews needs a training loader with labels")
        self.loader = loader
        self.row_of = torch.full((num_samples,), -1, dtype=torch.long)
        self.row_of[loader.indices] = torch.arange(len(loader.indices))
        self.augment_cfg = loader.augment_cfg or AugmentConfig()

    def views(self, index: torch.Tensor) -> torch.Tensor:
        """One augmented view (B x C x H x W) of the samples with these dataset indices."""
        return self.loader.train_inputs(self.loader.take(self.row_of[index.cpu()]), self.augment_cfg)

    def labels_of(self, index: torch.Tensor) -> torch.Tensor:
        """The (noisy) training labels of the samples with these dataset indices."""
        return self.loader.take_labels(self.row_of[index.cpu()])

    def plain_batches(self, batch_size: int = 512) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(x, y, index)`` over the whole training set in order, without augmentation (for evaluation)."""
        n = self.loader.images.shape[0]
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            yield self.loader.eval_inputs(self.loader.take(sl)), self.loader.take_labels(sl), self.loader.indices[sl]


class Algorithm:
    """Base: one network trained with ``loss_fn``; subclasses override ``loss_fn``, ``step_loss`` (the loss of
    their networks' outputs) or ``train_step`` (a step of their own, which a packed trial runs member by member).

    A subclass declares its hyperparameters once, as a nested ``class Hparams(study.hparams.Hparams)``
    with the paper's defaults and the allowed ranges, and reads them from ``self.hp``; the spec checks
    its entries against the same declaration. ``seed`` is the trial's seed, for an algorithm's own
    random draws.
    """

    name: ClassVar[str] = ""
    selects_samples: ClassVar[bool] = False
    #: the algorithm's hyperparameters (none here); a subclass declares its own nested ``Hparams``
    Hparams: ClassVar[type[hparams.Hparams]] = hparams.Hparams
    #: compute of one training step relative to plain cross-entropy (``study plan``'s estimate)
    step_cost: ClassVar[float] = 1.0
    #: its step is the base ``train_step`` (``step_loss`` of its ``step_nets``' outputs on its ``train_inputs``)
    #: and reads nothing of the loader but the batch: a packed trial (``study.train.fit_pack``) can step several
    #: members on one loader's batches, and ``study.packing.PackStep`` run their networks as one batched call
    packable: ClassVar[bool] = False
    #: trains a head on a frozen encoder's embeddings: a study trial gives it the cached embeddings of every
    #: split as its inputs (N x D rows) and an identity encoder, instead of images and the encoder
    on_embeddings: ClassVar[bool] = False
    hp: hparams.Hparams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Hparams" in cls.__dict__ and cls.name:  # its own declaration: name the owner in messages
            cls.Hparams.owner = f"LNL algorithm {cls.name}"

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        num_classes: int,
        num_samples: int,
        optim: OptimConfig,
        device: torch.device,
        noise_rate: float | None = None,
        expected_noise: float | None = None,
        amp: bool = False,
        seed: int = 0,
        **hparams: Any,
    ) -> None:
        self.hp = self.build_hparams(hparams)
        self.num_classes, self.num_samples = num_classes, num_samples
        self.optim_cfg, self.device, self.noise_rate, self.seed = optim, device, noise_rate, seed
        #: the expected corrupted fraction of the training labels (``expected_noise_fraction``), where known
        self.expected_noise = expected_noise
        self.amp = amp and device.type == "cuda"
        self.nets = self.build_nets(make_model)
        self.optimizers = [make_optimizer(n.parameters(), optim) for n in self.nets]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    @classmethod
    def build_hparams(cls, values: dict[str, Any]) -> hparams.Hparams:
        """``cls.Hparams`` of ``values``, checked as the spec checks them; a name or value it does not
        accept raises ``HparamError`` naming the algorithm, the hyperparameter and what is allowed."""
        where = f"LNL algorithm {cls.name!r}"
        try:
            return cls.Hparams(**hparams.check_values([cls.Hparams], values))
        except hparams.HparamError as e:
            raise hparams.HparamError(f"{where}: {e}") from None
        except ValidationError as e:  # a check across fields, beyond the per-value ones
            raise hparams.HparamError(f"{where}: {e}") from None

    # -- hooks
    def build_nets(self, make_model: Callable[[], nn.Module]) -> list[nn.Module]:
        return [make_model().to(self.device)]

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def start_epoch(self, epoch: int, train: TensorLoader) -> None:
        """Called before each epoch with the (noisy-label) training loader; sets the learning rate (and
        Adam's beta1 where the schedule sets it)."""
        for opt in self.optimizers:
            set_schedule(opt, epoch, self.optim_cfg)

    def step_loss(
        self, logits: list[torch.Tensor], y: torch.Tensor, index: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, StepOutput]:
        """The step's differentiable loss and its output from the outputs of the networks on the batch
        (``logits[k]`` = ``self.nets[k](x)``, B x K). Base: ``loss_fn`` of the first network's logits.

        A packed trial (``study.packing.PackStep``) calls it with each member's slice of the batched
        outputs; what it changes in the algorithm (ELR's targets) lives in ``extra_state``."""
        loss = self.loss_fn(logits[0], y, index)
        return loss, {"loss": loss.detach()}

    @property
    def step_nets(self) -> list[nn.Module]:
        """The networks a training step forwards on ``train_inputs`` (``step_loss`` gets their outputs, in this
        order); base: ``nets``. A packed trial stacks these across its members."""
        return self.nets

    def train_inputs(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """What the step's networks take for the batch ``x`` (the samples ``index``); base: ``x`` itself.
        An algorithm that perturbs or replaces its inputs (linear_probe's feature noise) draws from its own
        generator here, so that in a packed trial each member draws what its own trial would."""
        return x

    def train_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int) -> StepOutput:
        """Forward every network (under autocast) on ``train_inputs``, ``step_loss``, one backward and a step
        of each optimiser."""
        inputs = self.train_inputs(x, index, epoch)
        with torch.autocast(self.device.type, enabled=self.amp):
            logits = [net(inputs) for net in self.step_nets]
        loss, out = self.step_loss(logits, y, index, epoch)
        self.backward_many(loss, self.optimizers)
        return out

    # -- shared
    def backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        self.backward_many(loss, [opt])

    def backward_many(self, loss: torch.Tensor, opts: list[torch.optim.Optimizer]) -> None:
        """One backward pass of a summed loss, then a step of each optimiser (independent networks)."""
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        torch.autograd.backward(self.scaler.scale(loss))
        for opt in opts:
            self.scaler.step(opt)
        self.scaler.update()

    def train(self) -> None:
        for n in self.nets:
            n.train()

    def eval(self) -> None:
        for n in self.nets:
            n.eval()

    @torch.no_grad()
    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluation logits: the mean of the networks' softmax, as log-probabilities."""
        with torch.autocast(self.device.type, enabled=self.amp):
            probs = torch.stack([torch.softmax(n(x).float(), dim=1) for n in self.nets]).mean(0)
        return torch.log(probs.clamp_min(1e-12))

    def state_dict(self) -> dict[str, Any]:
        return {
            "nets": [n.state_dict() for n in self.nets],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, s in zip(self.nets, state["nets"]):
            n.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        self.load_extra_state(state.get("extra", {}))

    def weights(self) -> dict[str, Any]:
        """What evaluation reads (the networks' parameters and buffers), without the optimisers and
        training memory of ``state_dict``: the training loop keeps this for the best and last epochs."""
        return {"nets": [n.state_dict() for n in self.nets]}

    def load_weights(self, weights: Mapping[str, Any]) -> None:
        """Load ``weights()`` (or a whole ``state_dict()``: only its networks are read) for evaluation."""
        for n, s in zip(self.nets, weights["nets"]):
            n.load_state_dict(s)

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass
