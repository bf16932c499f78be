"""The interface every learning-with-noisy-labels algorithm implements, and what they share.

An algorithm owns its networks and optimisers. The training loop (``study.train.fit``) calls
``start_epoch`` then ``train_step`` per batch; a step returns a dict whose ``loss`` key is required, and
sample-selecting algorithms add ``selected`` (the dataset indices they trained on as clean), which the
loop turns into label precision/recall outside the algorithm. Algorithms see only noisy labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from study.data.pipeline import AugmentConfig, TensorLoader, augment, to_float


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule. Khanal et al.'s LNL stage: SGD momentum 0.9, wd 1e-4, lr 0.01, cosine."""

    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | constant
    epochs: int = 10


def make_optimizer(params, cfg: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer {cfg.optimizer!r} is unknown (allowed: sgd, adam)")


def lr_at(epoch: int, cfg: OptimConfig) -> float:
    """The learning rate of an epoch: cosine from ``lr`` to 0 over ``epochs``, or constant."""
    if cfg.schedule == "cosine":
        return float(0.5 * cfg.lr * (1 + np.cos(np.pi * epoch / max(cfg.epochs, 1))))
    return cfg.lr


class TrainViews:
    """Fresh augmented views of training samples, gathered by dataset index from a loader's raw images.

    Algorithms that need more than the one view the loader yields (DivideMix's two views per sample) or
    an evaluation pass over the whole training set (its per-sample losses) build one in ``start_epoch``.
    """

    def __init__(self, loader: TensorLoader, num_samples: int) -> None:
        self.loader = loader
        self.row_of = torch.full((num_samples,), -1, dtype=torch.long)
        self.row_of[loader.indices] = torch.arange(len(loader.indices))
        self.augment_cfg = loader.augment_cfg or AugmentConfig()

    def views(self, index: torch.Tensor) -> torch.Tensor:
        """One augmented view (B x C x H x W) of the samples with these dataset indices."""
        rows = self.row_of[index.cpu()].to(self.loader.device)
        return augment(to_float(self.loader.images[rows]), self.augment_cfg, self.loader.generator)

    def plain_batches(self, batch_size: int = 512):
        """``(x, y, index)`` over the whole training set in order, without augmentation (for evaluation)."""
        n = self.loader.images.shape[0]
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            yield to_float(self.loader.images[sl]), self.loader.labels[sl], self.loader.indices[sl]


class Algorithm:
    """Base: one network trained with ``loss_fn``; subclasses override ``loss_fn`` or ``train_step``."""

    name: ClassVar[str] = ""
    selects_samples: ClassVar[bool] = False

    def __init__(self, make_model: Callable[[], nn.Module], num_classes: int, num_samples: int,
                 optim: OptimConfig, device: torch.device, noise_rate: float | None = None,
                 amp: bool = False, **hparams: Any) -> None:
        if hparams:
            raise TypeError(f"{self.name}: unknown hyperparameters {sorted(hparams)}")
        self.num_classes, self.num_samples = num_classes, num_samples
        self.optim_cfg, self.device, self.noise_rate = optim, device, noise_rate
        self.amp = amp and device.type == "cuda"
        self.nets = self.build_nets(make_model)
        self.optimizers = [make_optimizer(n.parameters(), optim) for n in self.nets]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    # -- hooks
    def build_nets(self, make_model: Callable[[], nn.Module]) -> list[nn.Module]:
        return [make_model().to(self.device)]

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def start_epoch(self, epoch: int, train: TensorLoader) -> None:
        """Called before each epoch with the (noisy-label) training loader; sets the learning rate."""
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch, self.optim_cfg)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int) -> dict:
        net, opt = self.nets[0], self.optimizers[0]
        with torch.autocast(self.device.type, enabled=self.amp):
            loss = self.loss_fn(net(x), y, index)
        self.backward(loss, opt)
        return {"loss": loss.detach()}

    # -- shared
    def backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        self.backward_many(loss, [opt])

    def backward_many(self, loss: torch.Tensor, opts: list[torch.optim.Optimizer]) -> None:
        """One backward pass of a summed loss, then a step of each optimiser (independent networks)."""
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
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

    def state_dict(self) -> dict:
        return {"nets": [n.state_dict() for n in self.nets], "optimizers": [o.state_dict() for o in self.optimizers],
                "extra": self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        for n, s in zip(self.nets, state["nets"]):
            n.load_state_dict(s)
        for o, s in zip(self.optimizers, state["optimizers"]):
            o.load_state_dict(s)
        self.load_extra_state(state.get("extra", {}))

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass
