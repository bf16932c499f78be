"""DivideMix (Li et al. 2020, "DivideMix: Learning with Noisy Labels as Semi-supervised Learning", ICLR).

Two networks. After ``warmup_epochs`` of plain cross-entropy (plus, with ``confidence_penalty``, the
negative entropy the authors add under asymmetric noise), each epoch starts with *co-divide*: every
network's per-sample training losses are normalised (and, with ``loss_window`` > 1, averaged over that
many epochs, as the authors do with 5 at 90% noise) and modelled by a two-component Gaussian mixture,
and the posterior of the low-mean component is the sample's probability of being clean. Each network
then trains on the division made by its peer: samples with clean probability above ``p_threshold`` are
labelled, the rest unlabelled, and it runs MixMatch (Berthelot et al. 2019) on them with *label
co-refinement* (labelled targets: the noisy label blended with the network's prediction by the clean
probability, sharpened) and *co-guessing* (unlabelled targets: both networks' averaged predictions over
two views, sharpened).

``organisation``: ``shared`` (default; a departure from the authors' loop) trains both networks on each
batch of the shared training loader, each splitting the batch into labelled and unlabelled parts by its
peer's division, so every sample is used once per epoch in the role the division gives it. ``authors``
is their loop: network 1, then network 2, each in its own pass over its labelled set in batches of the
loader's batch size, each batch with as many unlabelled samples drawn beside it from a shuffled
unlabelled set that is reshuffled and drawn again when used up. The loop's calls (one per loader batch)
carry that plan forward in even shares (``authors_plan``, ``train_step``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from sklearn.mixture import GaussianMixture
from torch import nn

from study import hparams
from study.data.pipeline import TensorLoader
from study.lnl.base import Algorithm, StepOutput, TrainViews


def gmm_clean_probability(losses: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-sample clean probability: posterior of the low-mean component of a 2-component GMM on losses.

    ``losses`` (N) are min-max normalised first, as in the paper.
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    span = x.max() - x.min()
    x = (x - x.min()) / (span if span > 0 else 1.0)
    gmm = GaussianMixture(n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, random_state=seed)
    gmm.fit(x)
    return np.asarray(gmm.predict_proba(x)[:, int(np.argmin(gmm.means_.ravel()))])


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening ``p^(1/T)`` renormalised over classes (B x K)."""
    p = p.pow(1.0 / temperature)
    return p / p.sum(dim=1, keepdim=True)


def mixmatch_mix(
    inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp of a batch with a permutation of itself, ``lam`` weighting the original (lam >= 0.5)."""
    return lam * inputs + (1 - lam) * inputs[perm], lam * targets + (1 - lam) * targets[perm]


def mixmatch_losses(
    logits: torch.Tensor, mixed_targets: torch.Tensor, num_labelled: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled soft cross-entropy over the first ``num_labelled`` rows, unlabelled mean squared error over the rest."""
    lx = logits[:num_labelled].float()
    lu = logits[num_labelled:].float()
    zero = logits.new_zeros(()).float()
    loss_x = -(F.log_softmax(lx, dim=1) * mixed_targets[:num_labelled]).sum(1).mean() if num_labelled else zero
    loss_u = ((torch.softmax(lu, dim=1) - mixed_targets[num_labelled:]) ** 2).mean() if lu.shape[0] else zero
    return loss_x, loss_u


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || mean prediction): keeps the mixed batch from collapsing onto few classes."""
    k = logits.shape[1]
    mean_p = torch.softmax(logits.float(), dim=1).mean(0)
    prior = torch.full_like(mean_p, 1.0 / k)
    return (prior * torch.log(prior / mean_p.clamp_min(1e-12))).sum()


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean ``sum p log p``: the confidence penalty the authors add in warm-up under asymmetric noise."""
    p = torch.softmax(logits.float(), dim=1)
    return (p * torch.log(p.clamp_min(1e-12))).sum(1).mean()


class DivideMix(Algorithm):
    name = "dividemix"
    selects_samples = True
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 6.84

    class Hparams(hparams.Hparams):
        alpha: float = Field(4.0, gt=0, description="MixMatch's Beta(alpha, alpha) mixing coefficient")
        temperature: float = Field(0.5, gt=0, description="sharpening temperature of the targets")
        p_threshold: float = Field(0.5, ge=0, le=1, description="clean probability above which a sample is labelled")
        lambda_u: float = Field(25.0, ge=0, description="weight of the unlabelled loss (after its ramp-up)")
        warmup_epochs: int = Field(10, ge=0, description="epochs of plain cross-entropy before co-divide")
        rampup_epochs: int = Field(16, ge=0, description="epochs of the linear ramp of lambda_u after warm-up")
        confidence_penalty: bool = Field(
            False, description="add the negative entropy of the predictions in warm-up (authors: asymmetric noise)"
        )
        loss_window: int = Field(
            1, ge=1, description="epochs of normalised losses averaged before the GMM (1: none; authors: 5 at 90%)"
        )
        organisation: Literal["shared", "authors"] = Field(
            "shared",
            description=(
                "shared: both networks on each loader batch, split by the peer's division; authors: each network "
                "its own pass over its labelled set, B labelled + B unlabelled per step, unlabelled recycled"
            ),
        )

    hp: Hparams

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rng = np.random.default_rng(self.seed)
        self.perm_gen = torch.Generator().manual_seed(self.seed)
        self.clean_prob: list[torch.Tensor] = []  # per network: N (dataset index -> clean probability)
        self.loss_history: list[list[np.ndarray]] = [[], []]
        self.views: TrainViews | None = None
        self.step, self.steps_per_epoch = 0, 1
        #: ``organisation: authors``: this epoch's steps as (network, labelled indices, unlabelled indices)
        self.plan: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.plan_done = 0
        self.last_loss = torch.zeros(())  # what a call without a due step reports (``authors_steps``)

    def build_nets(self, make_model: Callable[[], nn.Module]) -> list[nn.Module]:
        return [make_model().to(self.device), make_model().to(self.device)]

    # -- co-divide
    @torch.no_grad()
    def per_sample_losses(self, net: nn.Module, views: TrainViews) -> tuple[np.ndarray, np.ndarray]:
        """Cross-entropy of every training sample under ``net`` (eval mode, no augmentation), with indices."""
        net.eval()
        losses, indices = [], []
        for x, y, index in views.plain_batches():
            with torch.autocast(self.device.type, enabled=self.amp):
                logits = net(x).float()
            losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
            indices.append(index.cpu())
        return torch.cat(losses).numpy(), torch.cat(indices).numpy()

    def start_epoch(self, epoch: int, train: TensorLoader) -> None:
        super().start_epoch(epoch, train)
        if self.views is None or self.views.loader is not train:
            self.views = TrainViews(train, self.num_samples)
        self.step, self.steps_per_epoch = 0, max(len(train), 1)
        if epoch < self.hp.warmup_epochs:
            return
        self.clean_prob = []
        for k, net in enumerate(self.nets):
            losses, indices = self.per_sample_losses(net, self.views)
            losses = self.windowed_losses(k, losses)
            prob = torch.zeros(self.num_samples)
            prob[torch.from_numpy(indices)] = torch.from_numpy(gmm_clean_probability(losses)).float()
            self.clean_prob.append(prob.to(self.device))
        if self.hp.organisation == "authors":
            self.plan, self.plan_done = self.authors_plan(train.indices, train.batch_size), 0

    def windowed_losses(self, k: int, losses: np.ndarray) -> np.ndarray:
        """Network ``k``'s per-sample losses (N) min-max normalised, then averaged with its normalised losses
        of the previous ``loss_window - 1`` epochs (kept in the checkpoint) when ``loss_window`` > 1."""
        span = losses.max() - losses.min()
        losses = (losses - losses.min()) / (span if span > 0 else 1.0)
        if self.hp.loss_window == 1:
            return losses
        self.loss_history[k] = (self.loss_history[k] + [losses])[-self.hp.loss_window :]
        return np.asarray(np.mean(self.loss_history[k], axis=0))

    def authors_plan(self, indices: torch.Tensor, batch: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """The authors' epoch: network 0's steps, then network 1's. Each network's labelled set (its peer's
        clean probability above ``p_threshold``) is shuffled into batches of ``batch`` (the last one partial);
        each step gets the next ``batch`` of its unlabelled set, shuffled again whenever it runs out."""
        plan = []
        for k in (0, 1):
            w = self.clean_prob[1 - k][indices.to(self.clean_prob[1 - k].device)].cpu()
            labelled, unlabelled = indices[w > self.hp.p_threshold], indices[w <= self.hp.p_threshold]
            order = labelled[torch.randperm(len(labelled), generator=self.perm_gen)]
            pool = torch.empty(0, dtype=torch.long)
            for i in range(0, len(order), batch):
                if len(pool) == 0 and len(unlabelled):
                    pool = unlabelled[torch.randperm(len(unlabelled), generator=self.perm_gen)]
                plan.append((k, order[i : i + batch], pool[:batch]))
                pool = pool[batch:]
        return plan

    # -- training
    def train_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int) -> StepOutput:
        if epoch < self.hp.warmup_epochs:
            return self.warmup_step(x, y)
        if self.views is None:
            raise RuntimeError("dividemix: train_step before start_epoch")
        if self.hp.organisation == "authors":
            return self.authors_steps(epoch)
        x2 = self.views.views(index)  # a second augmented view of the batch
        losses, selected = [], []
        for k in (0, 1):
            net, peer = self.nets[k], self.nets[1 - k]
            w = self.clean_prob[1 - k][index]  # the peer divides: B clean probabilities
            labelled = w > self.hp.p_threshold
            loss = self.mixmatch_step(net, peer, self.optimizers[k], x, x2, y, w, labelled, epoch)
            losses.append(loss)
            selected.append(index[labelled])
        self.step += 1
        return {"loss": (losses[0] + losses[1]) / 2, "selected": torch.cat(selected)}

    def authors_steps(self, epoch: int) -> StepOutput:
        """This call's share of the epoch's plan (``authors_plan``): the steps due by it, spread evenly over
        the loader's calls (rounded up, so steps come first), each a MixMatch step of one network on a
        labelled batch and the unlabelled batch drawn beside it. A call with no step due reports the last
        step's loss again (the loop averages what calls report)."""
        assert self.views is not None
        self.step += 1
        upto = min(len(self.plan), math.ceil(self.step * len(self.plan) / self.steps_per_epoch))
        losses, selected = [], []
        for k, lab, unl in self.plan[self.plan_done : upto]:
            index = torch.cat([lab, unl])
            x1, x2 = self.views.views(index), self.views.views(index)
            y, w = self.views.labels_of(index), self.clean_prob[1 - k][index.to(self.device)]
            labelled = torch.arange(len(index), device=w.device) < len(lab)
            net, peer = self.nets[k], self.nets[1 - k]
            losses.append(self.mixmatch_step(net, peer, self.optimizers[k], x1, x2, y, w, labelled, epoch))
            selected.append(lab)
        self.plan_done = upto
        if losses:
            self.last_loss = torch.stack(losses).mean()
        return {"loss": self.last_loss, "selected": torch.cat(selected) if selected else torch.empty(0).long()}

    def warmup_step(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with torch.autocast(self.device.type, enabled=self.amp):
            logits = [net(x).float() for net in self.nets]
        loss = torch.stack([F.cross_entropy(lg, y) for lg in logits]).sum()
        if self.hp.confidence_penalty:
            loss = loss + torch.stack([negative_entropy(lg) for lg in logits]).sum()
        self.backward_many(loss, self.optimizers)
        self.step += 1
        return {"loss": loss.detach() / 2}

    def unlabelled_weight(self, epoch: int) -> float:
        """``lambda_u`` ramped linearly from the end of warm-up over ``rampup_epochs`` (as the authors do)."""
        current = epoch + self.step / self.steps_per_epoch
        ramp = np.clip((current - self.hp.warmup_epochs) / max(self.hp.rampup_epochs, 1), 0.0, 1.0)
        return float(self.hp.lambda_u * ramp)

    def mixmatch_step(
        self,
        net: nn.Module,
        peer: nn.Module,
        opt: torch.optim.Optimizer,
        x1: torch.Tensor,
        x2: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
        labelled: torch.Tensor,
        epoch: int,
    ) -> torch.Tensor:
        xl1, xl2, yl, wl = x1[labelled], x2[labelled], y[labelled], w[labelled]
        xu1, xu2 = x1[~labelled], x2[~labelled]
        nl, nu = xl1.shape[0], xu1.shape[0]
        k = self.num_classes
        with torch.no_grad():
            # co-guessing: both networks, two views, on the unlabelled part
            peer.eval()
            with torch.autocast(self.device.type, enabled=self.amp):
                pu = (
                    (
                        torch.softmax(net(xu1).float(), 1)
                        + torch.softmax(net(xu2).float(), 1)
                        + torch.softmax(peer(xu1).float(), 1)
                        + torch.softmax(peer(xu2).float(), 1)
                    )
                    / 4
                    if nu
                    else x1.new_zeros(0, k)
                )
                # label co-refinement: the noisy label blended with the net's own prediction by the peer's w
                px = (
                    (torch.softmax(net(xl1).float(), 1) + torch.softmax(net(xl2).float(), 1)) / 2
                    if nl
                    else x1.new_zeros(0, k)
                )
            peer.train()
            targets_u = sharpen(pu, self.hp.temperature) if nu else pu
            onehot = F.one_hot(yl, k).float()
            targets_x = sharpen(wl[:, None] * onehot + (1 - wl[:, None]) * px, self.hp.temperature) if nl else px

        # MixMatch: mix labelled and unlabelled (both views) with one Beta(alpha, alpha) coefficient
        lam = float(self.rng.beta(self.hp.alpha, self.hp.alpha))
        lam = max(lam, 1 - lam)
        inputs = torch.cat([xl1, xl2, xu1, xu2])  # (2 nl + 2 nu) x C x H x W
        targets = torch.cat([targets_x, targets_x, targets_u, targets_u])
        perm = torch.randperm(inputs.shape[0], generator=self.perm_gen).to(inputs.device)
        mixed_x, mixed_t = mixmatch_mix(inputs, targets, lam, perm)
        with torch.autocast(self.device.type, enabled=self.amp):
            logits = net(mixed_x).float()
        loss_x, loss_u = mixmatch_losses(logits, mixed_t, 2 * nl)
        loss = loss_x + self.unlabelled_weight(epoch) * loss_u + uniform_prior_penalty(logits)
        self.backward(loss, opt)
        return loss.detach()

    def extra_state(self) -> dict[str, Any]:
        return {
            "clean_prob": [p.cpu() for p in self.clean_prob],
            "loss_history": self.loss_history,
            "rng": self.rng.bit_generator.state,
            "perm_gen": self.perm_gen.get_state(),
            "plan": self.plan,
            "plan_done": self.plan_done,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.clean_prob = [p.to(self.device) for p in state.get("clean_prob", [])]
        self.loss_history = state.get("loss_history", [[], []])
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
        if "perm_gen" in state:
            self.perm_gen.set_state(state["perm_gen"])
        self.plan, self.plan_done = state.get("plan", []), state.get("plan_done", 0)
