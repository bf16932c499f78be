"""Classification metrics of the contract: macro-F1 (headline), accuracy, balanced accuracy, macro AUROC."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, prefix: str = "", full: bool = False
) -> dict[str, Any]:
    """Metrics of predicted class probabilities ``probs`` (N x K) against ``y_true`` (N).

    Always ``f1`` (macro) and ``acc``; with ``full`` also ``balanced_acc``, ``auroc`` (macro one-vs-rest,
    NaN when a class is absent), ``per_class_f1`` and ``confusion`` (lists, for artifacts).
    """
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    out: dict[str, Any] = {
        f"{prefix}f1": float(f1_score(y_true, pred, average="macro", labels=np.arange(k), zero_division=0)),
        f"{prefix}acc": float(np.mean(pred == y_true)),
    }
    if full:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[f"{prefix}balanced_acc"] = float(balanced_accuracy_score(y_true, pred))
            try:
                if k == 2:
                    out[f"{prefix}auroc"] = float(roc_auc_score(y_true, probs[:, 1]))
                else:
                    out[f"{prefix}auroc"] = float(
                        roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=np.arange(k))
                    )
            except ValueError:
                out[f"{prefix}auroc"] = float("nan")
        out[f"{prefix}per_class_f1"] = f1_score(
            y_true, pred, average=None, labels=np.arange(k), zero_division=0
        ).tolist()
        out[f"{prefix}confusion"] = confusion_matrix(y_true, pred, labels=np.arange(k)).tolist()
    return out


def selection_quality(
    selected: np.ndarray, noisy: np.ndarray, clean: np.ndarray, among: np.ndarray | None = None
) -> dict[str, float]:
    """Precision and recall of a selected (believed clean) set against the known clean samples.

    ``noisy`` and ``clean`` are indexed by dataset index; ``among`` are the indices the algorithm chose
    from (the training split), so that recall counts only the clean samples it could have selected, not
    the validation and test samples of the same arrays. Computed outside the algorithms, which never see
    which labels are corrupted.
    """
    pool = np.zeros(len(noisy), dtype=bool)
    pool[np.arange(len(noisy)) if among is None else np.asarray(among)] = True
    is_clean = (noisy == clean) & pool
    sel = np.zeros(len(noisy), dtype=bool)
    sel[selected] = True
    if np.any(sel & ~pool):
        raise ValueError("selection_quality: selected indices outside the training split")
    tp = int(np.sum(sel & is_clean))
    return {
        "selected_label_precision": tp / max(int(sel.sum()), 1),
        "selected_label_recall": tp / max(int(is_clean.sum()), 1),
    }


def macro_f1_batched(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Macro-F1 of H label sets at once: ``y_true``, ``y_pred`` H x N integer tensors -> H tensor.

    Classes absent from both truth and prediction count as F1 0, as ``classification_metrics`` does
    (scikit-learn's ``labels=range(K), zero_division=0``).
    """
    h = y_true.shape[0]
    offset = torch.arange(h, device=y_true.device)[:, None] * num_classes
    count = h * num_classes
    tp = torch.bincount((offset + y_true)[y_true == y_pred], minlength=count).view(h, num_classes).float()
    support = torch.bincount((offset + y_true).reshape(-1), minlength=count).view(h, num_classes).float()
    predicted = torch.bincount((offset + y_pred).reshape(-1), minlength=count).view(h, num_classes).float()
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    return f1.mean(dim=1)
