"""Packed networks: P networks of one architecture trained as one batched model.

HFTA (Wang et al., "Horizontally Fused Training Array", MLSys 2021) trains many same-architecture models of a
hyperparameter sweep as one fused job, because one small model leaves most of an accelerator idle.
``torch.func`` does the same in plain PyTorch: ``stack_module_state`` stacks the members' parameters and
buffers along a new first dimension, and ``vmap`` over ``functional_call`` runs the architecture once on
all of them.

Each member keeps its own parameters, BatchNorm statistics (the stacked buffers are updated in place, one
slice per member), batches (its own samples and labels: inputs are P x B x ...), learning rate, momentum
and weight decay. The loss to differentiate is the sum of the members' mean losses, so each member's
gradient is its own, and ``PackedSGD``'s step is element-wise within a member: P packed members follow
the same trajectories as P networks trained one by one with ``torch.optim.SGD`` (up to floating-point
reassociation; ``tests/test_packing.py``). ``keep`` drops members (a pruned trial stops costing compute).

Batching does not always pay: on 2 CPU cores ``vmap`` over eight small CNNs is slower than stepping them
one after another (``python -m benchmarks packing``, docs/benchmarks.md), while on a GPU one small model
leaves most of the device idle.
``PackedNets.execution`` is "vmap" (one batched call) or "loop" (each member's slice of the stacked
tensors in turn: the same arithmetic, the same results); ``choose_execution`` times both on the pack's real
shapes and keeps the faster, so packing is never slower than training the members one by one.

This is the engine of packed trials (#21); trials do not use it yet.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap


class PackedNets:
    """P networks of one architecture as stacked parameters (P x ...) and buffers, run with ``vmap``."""

    def __init__(self, nets: Sequence[nn.Module]) -> None:
        if not nets:
            raise ValueError("PackedNets needs at least one network")
        shapes = {tuple((k, tuple(v.shape)) for k, v in n.state_dict().items()) for n in nets}
        if len(shapes) != 1:
            raise ValueError("PackedNets: the networks differ in architecture (state_dict keys or shapes)")
        params, buffers = stack_module_state(list(nets))
        self.params: dict[str, torch.Tensor] = params
        self.buffers: dict[str, torch.Tensor] = buffers
        self._template = copy.deepcopy(nets[0]).to("meta")
        self.training = nets[0].training
        #: "vmap": the members in one batched call; "loop": one after another (``choose_execution``)
        self.execution = "vmap"

    @property
    def size(self) -> int:
        return next(iter(self.params.values())).shape[0]

    def train(self, mode: bool = True) -> PackedNets:
        self.training = mode
        self._template.train(mode)
        return self

    def eval(self) -> PackedNets:
        return self.train(False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: P x B x ... (each member its own batch) -> P x B x ... outputs."""
        if x.shape[0] != self.size:
            raise ValueError(f"PackedNets: inputs for {x.shape[0]} members, the pack has {self.size}")

        def one(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = functional_call(self._template, (params, buffers), (xb,))
            return out

        if self.execution == "loop":  # slices are views: BatchNorm updates the stacked buffers in place
            return torch.stack(
                [
                    one({k: v[i] for k, v in self.params.items()}, {k: v[i] for k, v in self.buffers.items()}, x[i])
                    for i in range(self.size)
                ]
            )
        return vmap(one, randomness="different")(self.params, self.buffers, x)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """Member ``member``'s weights and buffers, as its own network's ``state_dict``."""
        return {k: v[member].detach().clone() for k, v in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, member: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in {**self.params, **self.buffers}.items():
                v[member].copy_(state[k])

    def keep(self, members: Sequence[int]) -> None:
        """Keep only ``members`` (in that order): the others stop costing compute."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        self.params = {
            k: v.detach().index_select(0, index.to(v.device)).requires_grad_(v.requires_grad)
            for k, v in self.params.items()
        }
        self.buffers = {k: v.index_select(0, index.to(v.device)) for k, v in self.buffers.items()}


#: the clock of ``elapsed`` (a test replaces it)
_clock = time.perf_counter


def elapsed(device: torch.device, run: Callable[[], object]) -> float:
    """Seconds ``run()`` takes on ``device``: work queued on a GPU is finished before the clock starts and
    before it stops. The timer of the batched-or-not probes (``choose_execution``, ``train_heads``)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = _clock()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return _clock() - start


def choose_execution(nets: PackedNets, x: torch.Tensor, y: torch.Tensor, steps: int = 3) -> str:
    """Time ``steps`` forward and backward passes of the pack on ``x`` (P x B x ...) and ``y`` (P x B)
    batched ("vmap") and one member after another ("loop"), after a warm-up pass each; set and return the
    faster. The members' BatchNorm statistics and gradients are restored afterwards: the probe leaves no
    trace in the training."""

    def passes(n: int) -> None:
        for _ in range(n):
            loss = packed_cross_entropy(nets(x), y).sum()
            loss.backward()  # type: ignore[no-untyped-call]  # torch's Tensor.backward is unannotated

    saved = {k: v.clone() for k, v in nets.buffers.items()}
    times = {}
    for mode in ("vmap", "loop"):
        nets.execution = mode
        passes(1)
        times[mode] = elapsed(x.device, lambda: passes(steps))
    with torch.no_grad():
        for k, v in nets.buffers.items():
            v.copy_(saved[k])
    for p in nets.params.values():
        p.grad = None
    nets.execution = min(times, key=lambda m: times[m])
    return nets.execution


class PackedSGD:
    """SGD (momentum, weight decay: ``torch.optim.SGD``'s update, no dampening or Nesterov) over packed
    parameters, with a learning rate, momentum and weight decay per member."""

    def __init__(
        self,
        nets: PackedNets,
        lr: Sequence[float],
        momentum: Sequence[float] | float = 0.0,
        weight_decay: Sequence[float] | float = 0.0,
    ) -> None:
        self.nets = nets
        p = nets.size
        self.lr = self._per_member(lr, p, "lr")
        self.momentum = self._per_member(momentum, p, "momentum")
        self.weight_decay = self._per_member(weight_decay, p, "weight_decay")
        self.buf: dict[str, torch.Tensor | None] = dict.fromkeys(nets.params)

    @staticmethod
    def _per_member(value: Sequence[float] | float, p: int, name: str) -> torch.Tensor:
        t = torch.as_tensor(value, dtype=torch.float32).flatten()
        if t.numel() == 1:
            t = t.repeat(p)
        if t.numel() != p:
            raise ValueError(f"PackedSGD: {name} has {t.numel()} values for {p} members")
        return t

    def zero_grad(self) -> None:
        for v in self.nets.params.values():
            v.grad = None

    def _shaped(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self) -> None:
        for k, p in self.nets.params.items():
            if p.grad is None:
                continue
            d = p.grad + self._shaped(self.weight_decay, p) * p
            mom = self._shaped(self.momentum, p)
            buf = self.buf[k]
            buf = d.clone() if buf is None else mom * buf + d  # torch: the first step's buffer is the gradient
            self.buf[k] = buf
            step = torch.where(mom > 0, buf, d)
            p.sub_(self._shaped(self.lr, p) * step)

    def keep(self, members: Sequence[int]) -> None:
        """Keep the optimiser state of ``members`` (call with ``PackedNets.keep``)."""
        index = torch.as_tensor(list(members), dtype=torch.long)
        self.lr, self.momentum, self.weight_decay = (t[index] for t in (self.lr, self.momentum, self.weight_decay))
        self.buf = {k: None if b is None else b.index_select(0, index.to(b.device)) for k, b in self.buf.items()}


def packed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per member, the mean cross-entropy of its batch: logits P x B x K, labels P x B -> P losses. Their
    sum is what to differentiate: each member's gradient is then its own."""
    p, b, k = logits.shape
    loss = nn.functional.cross_entropy(logits.reshape(p * b, k), labels.reshape(p * b), reduction="none")
    return loss.view(p, b).mean(1)


__all__ = ["PackedNets", "PackedSGD", "choose_execution", "elapsed", "packed_cross_entropy"]
