"""Classification metrics of the contract: macro-F1 (headline), accuracy, balanced accuracy, macro AUROC,
per image and, where images belong to studies (MURA), per study.

Khanal et al. 2024 report macro-F1, balanced accuracy and AUROC; Azizi et al. 2021 top-1 accuracy and AUC;
MURA's benchmark (Rajpurkar et al. 2017) scores studies, each study's probability being the mean of its
images' (``study_metrics``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

log = logging.getLogger(__name__)


def balanced_accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    """Mean over the classes present in ``y_true`` of their recall (scikit-learn's ``balanced_accuracy_score``;
    a class absent from the truth has no recall and is left out). NaN for an empty set."""
    y_true, pred = np.asarray(y_true), np.asarray(pred)
    present = np.unique(y_true)
    if present.size == 0:
        return float("nan")
    return float(np.mean([np.mean(pred[y_true == c] == c) for c in present]))


def auroc(y_true: np.ndarray, probs: np.ndarray, where: str = "", quiet: bool = False) -> float:
    """AUROC of class probabilities ``probs`` (N x K): for K = 2 of the positive class (index 1), else the
    macro mean of the one-vs-rest AUROCs of the K classes (scikit-learn's ``multi_class="ovr"``, without its
    check that rows sum to one, which float32 softmax outputs may miss).

    Undefined when a class is absent from ``y_true`` (its one-vs-rest AUROC has no positives), or, for two
    classes, when only one is present: NaN, and a log line naming ``where`` and the absent classes (none
    when ``quiet``: a per-epoch validation metric would repeat it every epoch).
    """
    y_true = np.asarray(y_true)
    k = probs.shape[1]
    absent = [c for c in range(k) if not np.any(y_true == c)]
    if absent:
        if quiet:
            return float("nan")
        log.warning("%sauroc is undefined (NaN): class(es) %s absent from the labels", where, absent)
        return float("nan")
    if k == 2:
        return float(roc_auc_score(y_true == 1, probs[:, 1]))
    return float(np.mean([roc_auc_score(y_true == c, probs[:, c]) for c in range(k)]))


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, prefix: str = "", full: bool = False
) -> dict[str, Any]:
    """Metrics of predicted class probabilities ``probs`` (N x K) against ``y_true`` (N).

    Always ``f1`` (macro over the K classes) and ``acc``; with ``full`` also ``balanced_acc``, ``auroc``
    (``auroc``: NaN when undefined), ``per_class_f1`` and ``confusion`` (lists, for artifacts).
    """
    k = probs.shape[1]
    pred = probs.argmax(axis=1)
    out: dict[str, Any] = {
        f"{prefix}f1": float(f1_score(y_true, pred, average="macro", labels=np.arange(k), zero_division=0)),
        f"{prefix}acc": float(np.mean(pred == y_true)),
    }
    if full:
        out[f"{prefix}balanced_acc"] = balanced_accuracy(y_true, pred)
        out[f"{prefix}auroc"] = auroc(y_true, probs, where=prefix)
        out[f"{prefix}per_class_f1"] = f1_score(
            y_true, pred, average=None, labels=np.arange(k), zero_division=0
        ).tolist()
        out[f"{prefix}confusion"] = confusion_matrix(y_true, pred, labels=np.arange(k)).tolist()
    return out


def study_metrics(study_ids: np.ndarray, y_true: np.ndarray, probs: np.ndarray, prefix: str) -> dict[str, float]:
    """``f1``, ``acc`` and ``auroc`` per study: each study's probabilities are the mean of its images' and its
    label that of its images (the most frequent one, should they differ). ``study_ids`` N, ``y_true`` N,
    ``probs`` N x K."""
    ids, group = np.unique(np.asarray(study_ids), return_inverse=True)
    k = probs.shape[1]
    counts = np.bincount(group, minlength=len(ids)).astype(np.float64)
    mean = np.zeros((len(ids), k))
    np.add.at(mean, group, probs)
    mean /= counts[:, None]
    votes = np.zeros((len(ids), k), dtype=np.int64)
    np.add.at(votes, (group, np.asarray(y_true)), 1)
    labels = votes.argmax(axis=1)
    m = classification_metrics(labels, mean, prefix=prefix, full=True)
    return {f"{prefix}{name}": float(m[f"{prefix}{name}"]) for name in ("f1", "acc", "auroc")}


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
