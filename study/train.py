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

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from study.data.pipeline import TensorLoader
from study.errors import NonFiniteLossError
from study.lnl.base import Algorithm
from study.metrics import auroc, balanced_accuracy, classification_metrics, selection_quality, study_metrics

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


def train_one_epoch(algo: Algorithm, loader: TensorLoader, epoch: int) -> tuple[float, np.ndarray | None]:
    """One pass over the noisy training set; the mean loss and the indices selected as clean (if any)."""
    algo.start_epoch(epoch, loader)
    algo.train()
    total, count, selected = 0.0, 0, []
    for step, (x, y, index) in enumerate(labelled_batches(loader)):
        out = algo.train_step(x, y, index, epoch)
        loss = float(out["loss"])
        if not math.isfinite(loss):
            raise NonFiniteLossError(f"non-finite loss ({loss}) at epoch {epoch}, step {step}")
        total += loss * x.shape[0]
        count += x.shape[0]
        if "selected" in out:
            selected.append(out["selected"].detach().cpu().numpy())
    sel = np.unique(np.concatenate(selected)) if selected else None
    return total / max(count, 1), sel


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
        probs, y = predict_probs(algo, val)
        metrics = {
            "epoch": epoch,
            "train_loss": loss,
            **classification_metrics(y, probs, prefix="val_"),
            # every tuning metric the spec may name (``tuning.spec.METRICS``), each epoch
            "val_balanced_acc": balanced_accuracy(y, probs.argmax(axis=1)),
            "val_auroc": auroc(y, probs, quiet=True),
            "val_loss": validation_loss(y, probs),
            "epoch_time": time.perf_counter() - t0,
        }
        if selected is not None and clean_train_labels is not None and noisy_train_labels is not None:
            metrics.update(
                selection_quality(selected, noisy_train_labels, clean_train_labels, among=train.indices.cpu().numpy())
            )
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
        if on_epoch is not None:
            on_epoch(epoch, metrics, res)
        if res.stopped_epoch is not None:
            break
    return res


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
    "FitResult",
    "NonFiniteLossError",
    "cpu_state",
    "final_test",
    "fit",
    "labelled_batches",
    "predict_probs",
    "train_one_epoch",
    "validation_loss",
]
