"""The shared work of every SSL method: hyperparameters, optimiser and schedule, the training loop and
the kNN monitor. A method subclasses ``SSLMethod``, builds its heads in ``build`` and returns a dict with
a required ``loss`` from ``training_step`` (the solo-learn layout); methods that update several networks
in turn (BigBiGAN) override ``step`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, cast

import numpy as np
import torch
from pydantic import Field, ValidationError
from torch import nn

import study.hparams
from study.data.pipeline import STANDARD, AugmentConfig, Normalization, TensorLoader, to_float
from study.errors import NonFiniteLossError
from study.ssl.transforms import view

# Shared declarations: a method that changes a default writes ``lr: LearningRate = 0.03`` and keeps the range.
Optimizer = Annotated[Literal["adam", "adamw", "sgd", "lars"], Field(description="optimiser")]
LearningRate = Annotated[
    float,
    Field(gt=0, description="base learning rate (scaled by batch / lr_reference_batch where the method sets one)"),
]
WeightDecay = Annotated[float, Field(ge=0, description="weight decay (not on biases and norm parameters)")]
Momentum = Annotated[float, Field(ge=0, lt=1, description="SGD / LARS momentum")]
WarmupEpochs = Annotated[int, Field(ge=0, description="linear warm-up epochs before the cosine decay")]
CropMin = Annotated[float, Field(gt=0, le=1, description="smallest crop area, a fraction of the image's")]
Jitter = Annotated[float, Field(ge=0, le=1, description="brightness/contrast jitter strength")]


class SSLMethod(nn.Module):
    """Base of a registered SSL method. ``backbone`` is the encoder that stage 2 uses.

    Hyperparameters are keyword arguments checked against the method's nested ``Hparams`` declaration
    (the shared fields below, overridden and extended by each method with the papers' values); an unknown
    name, a wrong type or a value out of range fails with what is allowed. ``self.hp`` is the checked
    declaration.
    """

    class Hparams(study.hparams.Hparams):
        """The optimiser and schedule every method shares."""

        optimizer: Optimizer = "adam"
        lr: LearningRate = 1e-3
        weight_decay: WeightDecay = 1e-6
        momentum: Momentum = 0.9
        warmup_epochs: WarmupEpochs = 0

    hp: Hparams

    name: ClassVar[str] = ""
    #: False for initialisations (random, imagenet) that return the encoder untrained
    trains: ClassVar[bool] = True
    #: whether the backbone sees crops smaller than the images (tiles): it must then take any input size
    takes_tiles: ClassVar[bool] = False
    #: compute of one pretraining epoch per image relative to a supervised epoch of the same backbone
    #: (views, forward, backward, update), for ``study plan``'s estimate; measured by
    #: ``python -m benchmarks method_cost`` (docs/benchmarks.md) and set on each method
    step_cost: ClassVar[float] = 1.0
    #: the batch size the paper's learning rates are given for; the loop scales them by batch / this
    lr_reference_batch: ClassVar[int | None] = None
    #: the encoder's input normalisation (``train_ssl`` sets it: ImageNet's for an ImageNet-initialised one)
    norm: Normalization = STANDARD

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name and "Hparams" in cls.__dict__:  # messages and the docs name the method
            cls.Hparams.owner = f"SSL method {cls.name}"

    # ------------------------------------------------------------------------------ hyperparameters

    @classmethod
    def build_hparams(cls, hparams: Mapping[str, Any] | None) -> SSLMethod.Hparams:
        """``cls.Hparams`` of ``hparams`` over the defaults, checked as the spec checks them; a name or value
        it does not accept raises ``HparamError`` (a ValueError) naming the method, the hyperparameter and
        what is allowed."""
        where = f"SSL method {cls.name!r}"
        try:
            checked = study.hparams.check_values([cls.Hparams], dict(hparams or {}))  # names, types, ranges
            return cls.Hparams(**checked)  # the whole declaration: checks that tie several names together
        except study.hparams.HparamError as e:
            raise study.hparams.HparamError(f"{where}: {e}") from None
        except ValidationError as e:
            problems = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
            raise study.hparams.HparamError(f"{where}: {problems}") from None

    @classmethod
    def resolve_hparams(cls, hparams: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every hyperparameter of the method, ``hparams`` over the defaults, checked (see ``build_hparams``):
        the dict the pretraining cache key hashes."""
        return cls.build_hparams(hparams).model_dump()

    # ------------------------------------------------------------------------------ construction

    def __init__(self, backbone: nn.Module, in_channels: int, image_size: int, **hparams: Any) -> None:
        super().__init__()
        self.hp = self.build_hparams(hparams)
        self.backbone = backbone
        self.feature_dim = feature_dim(backbone)
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.generator = torch.Generator().manual_seed(0)  # views; reseeded by the loop
        self.build()

    def build(self) -> None:
        """Create the method's heads and losses (self.hp is set)."""

    def bind(self, images: torch.Tensor, patient_ids: np.ndarray | None) -> None:
        """Called once before training with the training images (N x H x W x C uint8, on the training
        device or, beyond its budget, in host memory) and their patient ids; methods that draw extra images
        (MICLe) keep them. The method is already on the training device."""

    # ------------------------------------------------------------------------------ views

    def augment_config(self) -> AugmentConfig:
        """The method's geometric and brightness/contrast augmentation (override per method)."""
        return AugmentConfig(scale=(0.6, 1.0), flip=True)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """One random view of a float batch B x C x H x W (no colour distortion; see ``ContrastiveMethod``)."""
        return view(x, self.augment_config(), self.generator)

    # ------------------------------------------------------------------------------ optimisation

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters; weight decay only on weights (not on biases and norm parameters)."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for p in self.parameters():
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [make_optimizer(self.parameter_groups(), self.hp)]

    def training_step(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """One batch of un-augmented images B x C x H x W -> {'loss': scalar, ...}."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, index: torch.Tensor, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """One optimisation step; returns floats with a required ``loss``."""
        out = self.training_step(x, index)
        loss = out["loss"]
        check_finite(loss)
        opt = optimizers[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated
        opt.step()
        self.after_step()
        return {k: float(v.detach()) for k, v in out.items()}

    def after_step(self) -> None:
        """Called after each optimiser step (MoCo's momentum update)."""


class ContrastiveMethod(SSLMethod):
    """Base of the methods that compare two views of an image (SimCLR, MoCo v2, Barlow Twins, MICLe).

    Their views follow Azizi et al. 2021 (Big Self-Supervised Models Advance Medical Image
    Classification): random resized crop, flip, rotation up to 45 degrees and brightness/contrast jitter
    0.5, no blur; RGB images also get saturation jitter and random grayscale (SimCLR's colour distortion).
    """

    class Hparams(SSLMethod.Hparams):
        crop_min: CropMin = 0.08
        rotation: float = Field(45.0, ge=0, le=180, description="largest rotation of a view, degrees")
        jitter: Jitter = 0.5
        saturation: float = Field(0.5, ge=0, le=1, description="saturation jitter strength (RGB images)")
        grayscale_p: float = Field(0.2, ge=0, le=1, description="probability of a grayscale view (RGB images)")

    hp: Hparams

    def augment_config(self) -> AugmentConfig:
        return AugmentConfig(scale=(self.hp.crop_min, 1.0), flip=True, rotation=self.hp.rotation, jitter=self.hp.jitter)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        return view(
            x, self.augment_config(), self.generator, saturation=self.hp.saturation, grayscale_p=self.hp.grayscale_p
        )


def feature_dim(backbone: nn.Module) -> int:
    """The width of a backbone's features (``study.models`` sets ``feature_dim`` on every backbone; torch's
    stubs type any module attribute as a tensor or module)."""
    return int(cast(int, backbone.feature_dim))


def check_finite(loss: torch.Tensor) -> None:
    if not torch.isfinite(loss.detach()).all():
        raise NonFiniteLossError(f"SSL loss became non-finite ({float(loss.detach())})")


def make_optimizer(groups: list[dict[str, Any]], hp: SSLMethod.Hparams) -> torch.optim.Optimizer:
    """Adam, AdamW, SGD (momentum) or LARS (You et al. 2017, as lightly implements it), by ``hp.optimizer``."""
    lr, wd = hp.lr, hp.weight_decay
    for g in groups:
        g.setdefault("weight_decay", wd)
    if hp.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if hp.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=hp.momentum, weight_decay=wd)
    from lightly.utils.lars import LARS

    lars: torch.optim.Optimizer = LARS(groups, lr=lr, momentum=hp.momentum, weight_decay=wd)
    return lars


def lr_schedule(epochs: int, steps_per_epoch: int, warmup_epochs: float) -> np.ndarray:
    """Per-step learning-rate factor: linear warm-up, then cosine to zero (DINO's precomputed schedule).

    Warm-up lasts ``warmup_epochs`` but at most a tenth of a short run, so a 3-epoch run is not all warm-up.
    """
    total = max(1, epochs * steps_per_epoch)
    warm = int(min(warmup_epochs, epochs / 10) * steps_per_epoch)
    steps = np.arange(total)
    cos = 0.5 * (1 + np.cos(np.pi * (steps - warm) / max(1, total - warm)))
    warmup = (steps + 1) / max(1, warm)
    return np.where(steps < warm, warmup, cos)


# ---------------------------------------------------------------------------------------- kNN monitor


@torch.no_grad()
def embed(
    encoder: nn.Module,
    images: np.ndarray | torch.Tensor,
    device: torch.device,
    batch_size: int = 512,
    norm: Normalization = STANDARD,
) -> torch.Tensor:
    """L2-normalised embeddings (N x D, on the device) of uint8 images N x H x W x C, in evaluation mode."""
    was_training = encoder.training
    encoder.eval()
    imgs = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    out = []
    for i in range(0, imgs.shape[0], batch_size):
        x = to_float(imgs[i : i + batch_size].to(device), norm)
        out.append(nn.functional.normalize(encoder(x).float(), dim=1))
    encoder.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 1, device=device)


@torch.no_grad()
def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> float:
    """Weighted kNN accuracy on L2-normalised features (Wu et al. 2018, the usual SSL monitor): each test
    sample's k nearest training samples by cosine similarity vote with weight exp(sim / temperature)."""
    if test_feats.shape[0] == 0:
        return float("nan")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    k = min(k, train_feats.shape[0])
    correct = 0
    for i in range(0, test_feats.shape[0], chunk):
        sim = test_feats[i : i + chunk] @ train_feats.T  # b x N
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, train_labels[top_idx], (top_sim / temperature).exp())
        correct += int((votes.argmax(1) == test_labels[i : i + chunk]).sum())
    return correct / test_feats.shape[0]


# ---------------------------------------------------------------------------------------- training loop


def train_ssl(
    method: SSLMethod,
    train_images: np.ndarray,
    epochs: int,
    batch_size: int,
    device: torch.device,
    seed: int,
    knn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    patient_ids: np.ndarray | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    norm: Normalization = STANDARD,
    on_device: bool = True,
) -> list[dict[str, float]]:
    """Train ``method`` for ``epochs`` over ``train_images`` (N x H x W x C uint8); returns per-epoch metrics.

    ``knn`` = (bank images, bank labels, query images, query labels): each epoch reports the kNN accuracy of
    the backbone's embeddings of the queries (the clean validation split) against the bank (training images
    with their clean labels; a diagnostic only, nothing is selected by it). ``norm``: the encoder's input
    normalisation (``study.data.pipeline.normalization`` of its initialisation). ``on_device``: False keeps
    the images in host memory (each batch is copied to ``device``; the same batches).
    """
    torch.manual_seed(seed)
    method.generator.manual_seed(seed + 1)
    method.to(device)
    n = train_images.shape[0]
    bs = min(batch_size, n)
    loader = TensorLoader(
        train_images, None, bs, shuffle=True, device=device, seed=seed, drop_last=True, norm=norm, on_device=on_device
    )
    method.norm = norm
    method.bind(loader.images, patient_ids)
    optimizers = method.configure_optimizers()
    # methods whose paper states its learning rate for a reference batch scale it linearly (Goyal et al. 2017)
    scale = bs / method.lr_reference_batch if method.lr_reference_batch else 1.0
    base_lrs = [[g["lr"] * scale for g in opt.param_groups] for opt in optimizers]
    schedule = lr_schedule(epochs, len(loader), method.hp.warmup_epochs)
    history: list[dict[str, float]] = []
    it = 0
    for epoch in range(epochs):
        method.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        for x, _, index in loader:
            # learning rate of this step
            for opt, lrs in zip(optimizers, base_lrs):
                for g, lr in zip(opt.param_groups, lrs):
                    g["lr"] = lr * float(schedule[min(it, len(schedule) - 1)])
            # forward, backward, update
            out = method.step(x, index, optimizers)
            for k_, v in out.items():
                sums[k_] = sums.get(k_, 0.0) + v
            it += 1
        metrics = {("ssl_loss" if k_ == "loss" else f"ssl_{k_}"): v / max(1, len(loader)) for k_, v in sums.items()}
        metrics["epoch_seconds"] = time.perf_counter() - t0
        if knn is not None:
            metrics["knn_acc"] = knn_eval(method.backbone, knn, device, norm)
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, dict(metrics))
    return history


def knn_eval(
    encoder: nn.Module,
    knn: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    device: torch.device,
    norm: Normalization = STANDARD,
) -> float:
    bank_x, bank_y, query_x, query_y = knn
    bank = embed(encoder, bank_x, device, norm=norm)
    query = embed(encoder, query_x, device, norm=norm)
    return knn_accuracy(bank, torch.as_tensor(bank_y, device=device), query, torch.as_tensor(query_y, device=device))


def mlp(dims: list[int], batch_norm: bool = True, last_bias: bool = True) -> nn.Sequential:
    """Linear layers with (BatchNorm and) ReLU between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=last_bias or not last))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
