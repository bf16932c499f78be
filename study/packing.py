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

``PackStep`` is the trial-side engine of packed trials (#21): P members of one tuning cell (the same data,
labels and batches; each its own hyperparameters, ``Algorithm``, networks and torch optimisers) stepped on
one shared batch, either one after another (``train_step``) or with each network slot's live parameters
stacked (differentiably: gradients flow back into each member's own parameters, which its own optimiser
steps) and run once with ``vmap``. ``study.train.fit_pack`` drives it epoch by epoch.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

if TYPE_CHECKING:  # study.lnl imports this module's timer
    from study.lnl.base import Algorithm, StepOutput

#: how ``PackStep`` runs its members: "auto" times the other two on the first batch and keeps the faster
EXECUTIONS = ("auto", "vmap", "loop")
#: one member's batch: inputs, labels, dataset indices
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


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


def _cloned(state: Any) -> Any:
    """A copy of a nested state (dicts, lists, tuples) with its tensors cloned where they are."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _cloned(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_cloned(v) for v in state)
    return state


def _stochastic(net: nn.Module) -> bool:
    """Whether a forward pass of ``net`` in its present mode draws random numbers (an active dropout)."""
    for m in net.modules():
        p = getattr(m, "p", None) if isinstance(m, nn.modules.dropout._DropoutNd) else getattr(m, "drop_prob", None)
        if m.training and isinstance(p, float) and p > 0:
            return True
    return False


class PackStep:
    """One training step of P members of a packed trial on one shared batch ``(x, y, index)``.

    The members are ``Algorithm`` s of one class with networks of one architecture; each keeps its own
    networks, optimisers, learning-rate schedule, GradScaler and training memory (ELR's targets), and its
    step gives what its own ``train_step`` would (``study.train.fit_pack``; tests/test_packed_fit.py).

    ``execution``: "loop" calls each member's ``train_step`` in turn (exactly separate trials' arithmetic;
    any algorithm). "vmap" (``packable`` algorithms only) stacks, for each network slot, the members' live
    parameters (``torch.stack``: differentiable) and copies of their buffers, runs the architecture once
    with ``torch.func.vmap`` over ``functional_call`` under autocast, copies the updated BatchNorm
    statistics back into each member's buffers, takes each member's ``step_loss`` of its slice, runs one
    backward pass of the members' scaled losses (each member's gradient is its own) and steps each
    member's optimisers through its scaler, as ``Algorithm.backward_many`` does: the same trajectories up to
    floating-point reassociation. "auto" times both on the first batch (``choose``) and keeps the faster;
    a pack of one member, or of algorithms that are not packable, runs "loop".

    A network with an active dropout (training mode, p > 0) draws random numbers that ``vmap`` cannot give
    each member as its own network would, so such steps run "loop" whatever ``execution`` says (members
    then draw from the one global generator in turn). Other random operations in a forward pass make the
    vmap path raise; "auto" then keeps "loop".
    """

    def __init__(self, members: Sequence[Algorithm], execution: str = "auto", probe_steps: int = 2) -> None:
        if not members:
            raise ValueError("PackStep needs at least one member")
        if execution not in EXECUTIONS:
            raise ValueError(f"PackStep: execution is one of {', '.join(EXECUTIONS)}, not {execution!r}")
        kinds = {type(m) for m in members}
        if len(kinds) != 1:
            raise ValueError(f"PackStep: the members are of different algorithms ({sorted(k.name for k in kinds)})")
        archs = {tuple(tuple((k, tuple(v.shape)) for k, v in n.state_dict().items()) for n in m.nets) for m in members}
        if len(archs) != 1:
            raise ValueError("PackStep: the members' networks differ in number or architecture")
        if execution == "vmap" and not members[0].packable:
            raise ValueError(f"PackStep: {members[0].name} is not packable (its own train_step); use loop or auto")
        self.members = list(members)
        #: "vmap" or "loop" once chosen; "auto" until the first call chooses
        self.execution = execution
        self.probe_steps = probe_steps
        #: the probe's seconds per execution (``choose``), for logging
        self.timings: dict[str, float] = {}
        self._templates = [copy.deepcopy(n).to("meta") for n in members[0].step_nets]

    def __len__(self) -> int:
        return len(self.members)

    def drop(self, members: Iterable[Algorithm]) -> None:
        """Stop stepping ``members`` (pruned, failed or stopped): the others go on as they were."""
        gone = {id(m) for m in members}
        self.members = [m for m in self.members if id(m) not in gone]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, epoch: int) -> list[StepOutput]:
        """Step every member on the one batch; their step outputs, in member order."""
        return self.step_each([(m, (x, y, index)) for m in self.members], epoch)

    def step_each(self, steps: Sequence[tuple[Algorithm, Batch]], epoch: int) -> list[StepOutput]:
        """Step each given member (of this pack) on its own batch ``(x, y, index)`` (members of different
        points: their own samples and labels); their step outputs, in the order given. Batches of different
        shapes run one after another."""
        if not steps:
            return []
        if len({tuple(b[0].shape) for _, b in steps}) > 1:  # batches of different sizes cannot be stacked
            return [m.train_step(*b, epoch) for m, b in steps]
        if self.execution == "auto":
            self.choose(steps, epoch)
        if self.execution == "loop" or self._stochastic():
            return [m.train_step(*b, epoch) for m, b in steps]
        members = [m for m, _ in steps]
        losses, outs = self._batched_losses(steps, epoch)
        for m in members:
            for opt in m.optimizers:
                opt.zero_grad(set_to_none=True)
        torch.autograd.backward([m.scaler.scale(loss) for m, loss in zip(members, losses)])
        for m in members:
            for opt in m.optimizers:
                m.scaler.step(opt)
            m.scaler.update()
        return outs

    def choose(self, steps: Sequence[tuple[Algorithm, Batch]], epoch: int) -> str:
        """Time ``probe_steps`` forward and backward passes of the members on these batches, batched ("vmap")
        and one after another ("loop"), after a warm-up pass each; set and return the faster.

        No optimiser steps: the members' BatchNorm statistics, training memory and own generators
        (``extra_state``), gradients and torch's random generators are restored afterwards, so the probe
        changes no member's trajectory."""
        if len(steps) < 2 or not self.members[0].packable or self._stochastic():
            self.execution = "loop"
            return self.execution
        members = [m for m, _ in steps]
        device = members[0].device
        buffers = [[b.detach().clone() for n in m.nets for b in n.buffers()] for m in members]
        extra = [_cloned(m.extra_state()) for m in members]
        devices = [device] if device.type == "cuda" else []
        self.timings = {}
        try:
            with torch.random.fork_rng(devices=devices):
                for mode in ("vmap", "loop"):
                    self._probe_pass(mode, steps, epoch)  # warm-up
                    passes = [functools.partial(self._probe_pass, mode, steps, epoch)] * self.probe_steps
                    self.timings[mode] = elapsed(device, lambda: [run() for run in passes])  # noqa: B023
        except RuntimeError:  # vmap refused the forward (a random op) or ran out of memory: one by one
            self.timings = {"loop": 0.0}
        finally:
            with torch.no_grad():
                for m, saved, state in zip(members, buffers, extra):
                    for b, v in zip((b for n in m.nets for b in n.buffers()), saved):
                        b.copy_(v)
                    m.load_extra_state(state)
                    for n in m.nets:
                        for p in n.parameters():
                            p.grad = None
        self.execution = min(self.timings, key=lambda k: self.timings[k])
        return self.execution

    def _probe_pass(self, mode: str, steps: Sequence[tuple[Algorithm, Batch]], epoch: int) -> None:
        """One forward and backward pass of every member (no optimiser step), batched or one by one."""
        if mode == "vmap":
            torch.autograd.backward(self._batched_losses(steps, epoch)[0])
            return
        for m, (x, y, index) in steps:
            own = m.train_inputs(x, index, epoch)
            with torch.autocast(m.device.type, enabled=m.amp):
                logits = [n(own) for n in m.step_nets]
            loss, _ = m.step_loss(logits, y, index, epoch)
            torch.autograd.backward(loss)

    def _stochastic(self) -> bool:
        return any(_stochastic(n) for m in self.members for n in m.step_nets)

    def _batched_logits(self, members: Sequence[Algorithm], inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per network slot, the members' outputs on their inputs (P x B x K), from their stacked live
        parameters: one input shared by all (the same tensor) or each member its own (stacked); the
        BatchNorm statistics the pass updates are copied back into each member's buffers."""
        lead = members[0]
        shared = all(t is inputs[0] for t in inputs)
        x: torch.Tensor = inputs[0] if shared else torch.stack(list(inputs))
        in_dim = None if shared else 0
        out = []
        with torch.autocast(lead.device.type, enabled=lead.amp):
            for k, template in enumerate(self._templates):
                nets = [m.step_nets[k] for m in members]
                for t, n in zip(template.modules(), nets[0].modules()):  # the members' modes (frozen encoders)
                    t.training = n.training
                named = [dict(n.named_parameters()) for n in nets]
                params = {name: torch.stack([p[name] for p in named]) for name in named[0]}  # P x ...
                owned = [dict(n.named_buffers()) for n in nets]
                buffers = {name: torch.stack([b[name].detach() for b in owned]) for name in owned[0]}

                def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
                    logits: torch.Tensor = functional_call(template, (p, b), (xb,))  # noqa: B023 (called at once)
                    return logits

                out.append(vmap(one, in_dims=(0, 0, in_dim), randomness="error")(params, buffers, x))
                with torch.no_grad():  # BatchNorm's running statistics and counters, member by member
                    for i, b in enumerate(owned):
                        for name, v in b.items():
                            v.copy_(buffers[name][i])
        return out

    def _batched_losses(
        self, steps: Sequence[tuple[Algorithm, Batch]], epoch: int
    ) -> tuple[list[torch.Tensor], list[StepOutput]]:
        """Each member's ``step_loss`` of its slice of one batched forward pass over the members'
        ``train_inputs``, on its batch's labels."""
        inputs = [m.train_inputs(x, index, epoch) for m, (x, _, index) in steps]
        logits = self._batched_logits([m for m, _ in steps], inputs)
        losses, outs = [], []
        for i, (m, (_, y, index)) in enumerate(steps):
            loss, out = m.step_loss([lg[i] for lg in logits], y, index, epoch)
            losses.append(loss)
            outs.append(out)
        return losses, outs


__all__ = [
    "EXECUTIONS",
    "PackStep",
    "PackedNets",
    "PackedSGD",
    "choose_execution",
    "elapsed",
    "packed_cross_entropy",
]
