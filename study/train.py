"""The LNL training loop and its honest evaluation protocol.

``fit`` sees the noisy training and validation sets only: it trains epoch by epoch, selects the epoch by
a validation metric (``EarlyStopping.monitor``: macro-F1 by default, or the cross-entropy loss as Dedieu
et al. 2024 do), stops once that metric has not improved for ``patience`` epochs (never by default), and
keeps the networks' weights (``Algorithm.weights``: no optimiser state) of the selected epoch and of the
last five. The test split is not an argument of ``fit``; ``final_test`` evaluates the kept states on it
once, after training (``test_f1`` at the selected epoch, ``test_f1_last5`` over the last five epochs
trained).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from study.data.pipeline import TensorLoader
from study.errors import NonFiniteLossError
from study.lnl.base import Algorithm, StepOutput
from study.metrics import auroc, balanced_accuracy, classification_metrics, selection_quality, study_metrics
from study.packing import PackStep

#: the epochs at the end of training whose clean-test F1 is averaged into ``test_f1_last5``
LAST_EPOCHS = 5
#: the probability floor of the validation loss (a confident wrong prediction costs at most -log of it)
PROB_FLOOR = 1e-12


@dataclass(frozen=True)
class EarlyStopping:
    """Which validation metric selects the epoch (``val_f1``: higher is better; ``val_loss``, the mean
    cross-entropy of the validation labels: lower is better), and after how many epochs without a strict
    improvement of it training stops (``patience``; None: train every epoch)."""

    monitor: str = "val_f1"
    patience: int | None = None

    def __post_init__(self) -> None:
        if self.monitor not in ("val_f1", "val_loss"):
            raise ValueError(f"early stopping monitors val_f1 or val_loss, not {self.monitor!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"early stopping patience is at least 1 epoch (or None), got {self.patience}")

    def score(self, metrics: dict[str, Any]) -> float:
        """Higher is better, whichever the metric."""
        value = float(metrics[self.monitor])
        return value if self.monitor == "val_f1" else -value

    def stops(self, history: list[dict[str, Any]]) -> bool:
        """Whether training stops after the last epoch of ``history``: ``patience`` epochs have passed since
        the first epoch with the best score (later epochs that only equal it are not improvements)."""
        if self.patience is None or not history:
            return False
        best = int(np.argmax([self.score(h) for h in history]))
        return len(history) - 1 - best >= self.patience


def validation_loss(y: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy of labels ``y`` (N) under class probabilities ``probs`` (N x K)."""
    picked = probs[np.arange(len(y)), np.asarray(y, dtype=np.int64)]
    return float(-np.log(np.maximum(picked, PROB_FLOOR)).mean())


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    best_val_f1: float = -math.inf  # val_f1 at the selected epoch (whichever metric selected it)
    best_state: dict[str, Any] | None = None
    last_states: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # why training stopped early (a non-finite loss), if it did
    best_score: float = -math.inf  # the selecting metric's score there (``EarlyStopping.score``)
    stopped_epoch: int | None = None  # the last epoch trained, when patience ran out before the last

    def to_state(self) -> dict[str, Any]:
        """Plain containers and tensors only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_val_f1": float(self.best_val_f1),
            "best_state": self.best_state,
            "last_states": self.last_states,
            "best_score": float(self.best_score),
            "stopped_epoch": self.stopped_epoch,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FitResult:
        """A result from ``to_state``; one saved before ``best_score`` existed was selected by val_f1."""
        state = {"best_score": state.get("best_val_f1", -math.inf), **state}
        return cls(**state)


def cpu_state(state: Any) -> Any:
    """A copy of a nested state with its tensors copied to the CPU and its dicts, lists and tuples rebuilt
    (for keeping or saving: later training steps do not change it)."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", copy=True)
    if isinstance(state, dict):
        return {k: cpu_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(cpu_state(v) for v in state)
    return state


def labelled_batches(loader: TensorLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(x, y, index)`` batches of a loader that must carry labels (training and evaluation both do)."""
    for x, y, index in loader:
        if y is None:
            raise ValueError("the loader has no labels")
        yield x, y, index


@torch.no_grad()
def predict_probs(algo: Algorithm, loader: TensorLoader) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N x K) and labels (N) over a loader, in evaluation mode."""
    algo.eval()
    probs, labels = [], []
    for x, y, _ in labelled_batches(loader):
        probs.append(torch.softmax(algo.predict_logits(x).float(), dim=1).cpu())
        labels.append(y.cpu())
    return torch.cat(probs).numpy(), torch.cat(labels).numpy()


class EpochTally:
    """A member's training loss and selected samples over one epoch, batch by batch (``train_one_epoch``'s
    bookkeeping, shared with ``fit_pack``)."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0
        self.selected: list[np.ndarray] = []

    def add(self, out: StepOutput, batch: int, epoch: int, step: int) -> None:
        """Count a step's output; a non-finite loss raises ``NonFiniteLossError``."""
        loss = float(out["loss"])
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss ({loss}) at epoch {epoch}, step {step}")
        self.total += loss * batch
        self.count += batch
        if "selected" in out:
            self.selected.append(out["selected"].detach().cpu().numpy())

    def result(self) -> tuple[float, np.ndarray | None]:
        """The mean loss per sample and the indices selected as clean (None: the algorithm selects none)."""
        sel = np.unique(np.concatenate(self.selected)) if self.selected else None
        return self.total / max(self.count, 1), sel


def train_one_epoch(algo: Algorithm, loader: TensorLoader, epoch: int) -> tuple[float, np.ndarray | None]:
    """One pass over the noisy training set; the mean loss and the indices selected as clean (if any)."""
    algo.start_epoch(epoch, loader)
    algo.train()
    tally = EpochTally()
    for step, (x, y, index) in enumerate(labelled_batches(loader)):
        tally.add(algo.train_step(x, y, index, epoch), x.shape[0], epoch, step)
    return tally.result()


def epoch_metrics(
    algo: Algorithm,
    val: TensorLoader,
    epoch: int,
    loss: float,
    selected: np.ndarray | None,
    started: float,
    train_indices: torch.Tensor,
    clean_train_labels: np.ndarray | None = None,
    noisy_train_labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """An epoch's metrics: the training loss, every validation metric a study may tune on, the seconds since
    ``started`` (``time.perf_counter``) and, for a sample-selecting algorithm, the precision and recall of
    its selection among ``train_indices`` (from the clean labels, outside the algorithm)."""
    probs, y = predict_probs(algo, val)
    metrics = {
        "epoch": epoch,
        "train_loss": loss,
        **classification_metrics(y, probs, prefix="val_"),
        # every tuning metric the spec may name (``tuning.spec.METRICS``), each epoch
        "val_balanced_acc": balanced_accuracy(y, probs.argmax(axis=1)),
        "val_auroc": auroc(y, probs, quiet=True),
        "val_loss": validation_loss(y, probs),
        "epoch_time": time.perf_counter() - started,
    }
    if selected is not None and clean_train_labels is not None and noisy_train_labels is not None:
        metrics.update(
            selection_quality(selected, noisy_train_labels, clean_train_labels, among=train_indices.cpu().numpy())
        )
    return metrics


def record_epoch(
    res: FitResult, algo: Algorithm, metrics: dict[str, Any], epochs: int, stopping: EarlyStopping
) -> None:
    """Add an epoch's metrics to the result: its history, the best epoch by ``stopping``'s metric and its
    weights, the last epochs' weights, and ``stopped_epoch`` when patience runs out before the last epoch."""
    epoch = int(metrics["epoch"])
    res.history.append(metrics)
    # weights only, and the last epochs' only once they may be among the last (with patience, any
    # epoch may be): a checkpoint carries these
    kept = stopping.patience is not None or epoch >= epochs - LAST_EPOCHS
    score = stopping.score(metrics)
    if score > res.best_score or kept:
        state = cpu_state(algo.weights())
        if score > res.best_score:
            res.best_epoch, res.best_score, res.best_state = epoch, score, state
            res.best_val_f1 = metrics["val_f1"]
        if kept:
            res.last_states = [*res.last_states, state][-LAST_EPOCHS:]
    if stopping.stops(res.history) and epoch < epochs - 1:
        res.stopped_epoch = epoch


def fit(
    algo: Algorithm,
    train: TensorLoader,
    val: TensorLoader,
    epochs: int,
    clean_train_labels: np.ndarray | None = None,
    noisy_train_labels: np.ndarray | None = None,
    start_epoch: int = 0,
    result: FitResult | None = None,
    on_epoch: Callable[[int, dict[str, Any], FitResult], None] | None = None,
    stopping: EarlyStopping = EarlyStopping(),
) -> FitResult:
    """Train for ``epochs``, selecting the epoch by ``stopping.monitor`` on the validation split (noisy
    labels unless the study says otherwise) and stopping after ``stopping.patience`` epochs without a
    better one (the result's ``stopped_epoch``; ``on_epoch`` sees it set at the epoch that stops).

    ``clean_train_labels`` (indexed by dataset index, like ``noisy_train_labels``) serve only the
    diagnostics of sample selection and never reach the algorithm. ``on_epoch(epoch, metrics, result)``
    is called after each epoch (for logging, checkpoints, early stopping; it may raise to stop).
    A non-finite loss raises ``NonFiniteLossError`` after writing its message to the result's ``error``:
    a caller that passes its own ``result`` keeps the epochs that did finish.
    """
    res = result or FitResult()
    if stopping.stops(res.history):  # restored after the epoch that stopped it
        return res
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        try:
            loss, selected = train_one_epoch(algo, train, epoch)
        except NonFiniteLossError as e:  # recorded on the result, which the caller may hold
            res.error = str(e)
            raise
        metrics = epoch_metrics(
            algo, val, epoch, loss, selected, t0, train.indices, clean_train_labels, noisy_train_labels
        )
        record_epoch(res, algo, metrics, epochs, stopping)
        if on_epoch is not None:
            on_epoch(epoch, metrics, res)
        if res.stopped_epoch is not None:
            break
    return res


@dataclass
class PackMember:
    """One member of a packed trial: its algorithm, its training loader (members holding the same loader
    object take the same batches), its validation loader, the training labels its selection diagnostics read
    (as ``fit``'s; members at one point share all of these, a cell's final seeds have their own) and its
    result."""

    algo: Algorithm
    train: TensorLoader
    val: TensorLoader
    clean_labels: np.ndarray | None = None
    noisy_labels: np.ndarray | None = None
    result: FitResult = field(default_factory=FitResult)
    #: False once pruned (``on_epoch``), failed (a non-finite loss) or stopped by patience; a member that
    #: trained every epoch stays live
    live: bool = True


def fit_pack(
    members: list[PackMember],
    epochs: int,
    start_epoch: int = 0,
    on_epoch: Callable[[int, dict[int, dict[str, Any]]], Iterable[int] | None] | None = None,
    stopping: EarlyStopping = EarlyStopping(),
    execution: str = "auto",
) -> None:
    """``fit`` for the members of a packed trial at once, epoch by epoch in lockstep; each member's result
    is what ``fit`` would give it alone (``tests/test_packed_fit.py``).

    Each epoch every live member starts its epoch (its schedule) on its loader; then, step by step, each
    distinct loader gives its next batch and every member steps on its loader's batch: ``packable``
    algorithms all in one ``study.packing.PackStep`` (with ``execution``: members sharing a loader run on one
    batch, members with loaders of their own (other points) on theirs, stacked), others each alone (they
    cannot share a loader). Then, per member, the validation metrics (on its ``val``, diagnostics against its
    labels) and its result's bookkeeping (``record_epoch``, as ``fit``); ``epoch_time`` is the
    pack's wall time of the epoch (every member's training and validation), the same for all.
    ``on_epoch(epoch, {member index: metrics})`` sees the members that finished the epoch (it is not called
    for an epoch none finished) and returns the indices of those to stop (pruned), or None.

    A member whose loss turns non-finite gets ``fit``'s ``NonFiniteLossError`` message as its result's
    ``error`` and stops there; the others go on. A member stops after ``on_epoch`` once its patience has
    run out (``stopped_epoch``). Training ends when no member is live or at ``epochs``. To resume, give
    each member its restored algorithm and result and pass ``start_epoch``: members whose result has an
    error or has stopped are not trained.
    """
    for m in members:
        if m.result.error is not None or m.result.stopped_epoch is not None or stopping.stops(m.result.history):
            m.live = False
    step_of = _pack_steps(members, execution)
    for epoch in range(start_epoch, epochs):
        live = [i for i, m in enumerate(members) if m.live]
        if not live:
            break
        t0 = time.perf_counter()
        tallies = {i: EpochTally() for i in live}
        for i in live:
            members[i].algo.start_epoch(epoch, members[i].train)
            members[i].algo.train()
        # training: each loader's batches once, in lockstep; each step, every live member on its loader's batch
        batches = {id(members[i].train): labelled_batches(members[i].train) for i in live}
        for s in itertools.count():
            drawn = {key: b for key, it in batches.items() if (b := next(it, None)) is not None}
            going = [i for i in live if members[i].live and id(members[i].train) in drawn]
            if not going:
                break
            for step in {id(step_of[i]): step_of[i] for i in going}.values():
                mine = [i for i in going if step_of[i] is step]
                outs = step.step_each([(members[i].algo, drawn[id(members[i].train)]) for i in mine], epoch)
                for i, out in zip(mine, outs):
                    try:
                        tallies[i].add(out, drawn[id(members[i].train)][0].shape[0], epoch, s)
                    except NonFiniteLossError as e:  # this member stops; the others go on
                        members[i].result.error, members[i].live = str(e), False
                        step.drop([members[i].algo])
        # validation and each member's bookkeeping, as ``fit``
        done = [i for i in live if members[i].live]
        metrics = {}
        for i in done:
            loss, selected = tallies[i].result()
            m = members[i]
            metrics[i] = epoch_metrics(
                m.algo, m.val, epoch, loss, selected, t0, m.train.indices, m.clean_labels, m.noisy_labels
            )
        seconds = time.perf_counter() - t0
        for i in done:
            metrics[i]["epoch_time"] = seconds
            record_epoch(members[i].result, members[i].algo, metrics[i], epochs, stopping)
        if not done:  # every member that trained this epoch failed
            continue
        pruned = set(on_epoch(epoch, metrics) or ()) if on_epoch is not None else set()
        for i in done:
            m = members[i]
            if i in pruned or m.result.stopped_epoch is not None:
                m.live = False
                step_of[i].drop([m.algo])


def _pack_steps(members: list[PackMember], execution: str) -> dict[int, PackStep]:
    """Each live member's ``PackStep``: one for all when their algorithm is ``packable``, else one each
    (members that cannot be packed must not share a loader)."""
    live = [i for i, m in enumerate(members) if m.live]
    algos = [members[i].algo for i in live]
    if len({type(a) for a in algos}) == 1 and algos and algos[0].packable:
        step = PackStep(algos, execution)
        return dict.fromkeys(live, step)
    loaders = [id(members[i].train) for i in live]
    if len(set(loaders)) < len(loaders):
        raise ValueError(f"fit_pack: {algos[0].name} is not packable; give each of its members its own loader")
    return {i: PackStep([members[i].algo], execution) for i in live}


def final_test(
    algo: Algorithm, result: FitResult, test: TensorLoader, study_ids: np.ndarray | None = None
) -> dict[str, Any]:
    """Clean-test metrics at the best-validation epoch, and ``test_f1_last5`` over the last five epochs;
    with ``study_ids`` (one per test image: MURA's studies), ``test_study_*`` from the same predictions.

    Leaves the best epoch's weights in ``algo`` (its optimisers keep the last epoch's state).
    """
    if result.best_state is None:
        raise ValueError("final_test needs a fit result with at least one epoch")
    last5 = []
    for state in result.last_states:
        algo.load_weights(state)
        probs, y = predict_probs(algo, test)
        last5.append(classification_metrics(y, probs)["f1"])
    algo.load_weights(result.best_state)
    probs, y = predict_probs(algo, test)
    out = classification_metrics(y, probs, prefix="test_", full=True)
    if study_ids is not None:
        out.update(study_metrics(study_ids, y, probs, prefix="test_study_"))
    out["test_f1_last5"] = float(np.mean(last5))
    out["best_epoch"] = result.best_epoch
    return out


__all__ = [
    "LAST_EPOCHS",
    "EarlyStopping",
    "EpochTally",
    "FitResult",
    "NonFiniteLossError",
    "PackMember",
    "cpu_state",
    "epoch_metrics",
    "final_test",
    "fit",
    "fit_pack",
    "labelled_batches",
    "predict_probs",
    "record_epoch",
    "train_one_epoch",
    "validation_loss",
]
