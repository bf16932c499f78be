"""Balanced accuracy, AUROC (binary and macro one-vs-rest) and the per-study metrics, against values computed by
hand and scikit-learn as an oracle; undefined cases give NaN, never an error."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from study.metrics import auroc, balanced_accuracy, classification_metrics, study_metrics


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.8])  # predictions 0, 1, 0, 1
    probs = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(y, probs, prefix="test_", full=True)
    # positive-class AUROC: of the 4 (positive, negative) pairs, (0.4 vs 0.6) is the only one misordered
    assert m["test_auroc"] == pytest.approx(3 / 4)
    assert m["test_acc"] == pytest.approx(0.5)
    assert m["test_balanced_acc"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert m["test_f1"] == pytest.approx(0.5)  # each class: precision 1/2, recall 1/2


def test_balanced_accuracy_by_hand_and_against_sklearn():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2])
    assert balanced_accuracy(y, pred) == pytest.approx((3 / 4 + 1 + 1 / 2) / 3)
    assert balanced_accuracy(y, pred) == pytest.approx(balanced_accuracy_score(y, pred))
    assert math.isnan(balanced_accuracy(np.array([], int), np.array([], int)))


def test_multiclass_auroc_is_the_macro_one_vs_rest_mean():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    logits = rng.normal(size=(40, 4)) + 1.5 * np.eye(4)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    oracle = roc_auc_score(y, probs, multi_class="ovr", average="macro")
    assert auroc(y, probs) == pytest.approx(oracle)
    m = classification_metrics(y, probs, prefix="x_", full=True)
    assert m["x_auroc"] == pytest.approx(oracle)
    assert m["x_f1"] == pytest.approx(f1_score(y, probs.argmax(1), average="macro"))
    # float32 softmax rows that miss a sum of one by more than scikit-learn's tolerance still score
    assert auroc(y, probs.astype(np.float32) * 1.001) == pytest.approx(oracle, abs=1e-6)


def test_undefined_auroc_is_nan_with_a_note(caplog):
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    with caplog.at_level(logging.WARNING, logger="study.metrics"):
        m = classification_metrics(np.array([0, 1, 0]), probs, prefix="shifted_test_", full=True)
    assert math.isnan(m["shifted_test_auroc"])  # class 2 never occurs: its one-vs-rest AUROC has no positives
    assert "shifted_test_auroc is undefined" in caplog.text and "[2]" in caplog.text
    assert m["shifted_test_balanced_acc"] == pytest.approx(1.0)
    one_class = classification_metrics(np.array([1, 1]), np.array([[0.3, 0.7], [0.6, 0.4]]), full=True)
    assert math.isnan(one_class["auroc"]) and one_class["balanced_acc"] == pytest.approx(0.5)


def test_study_metrics_average_each_studys_image_probabilities():
    # three studies: A (2 images, label 1), B (3 images, label 0), C (1 image, label 1)
    ids = np.array(["A", "B", "A", "B", "C", "B"])
    y = np.array([1, 0, 1, 0, 1, 0])
    p1 = np.array([0.9, 0.2, 0.3, 0.8, 0.4, 0.65])
    probs = np.stack([1 - p1, p1], axis=1)
    m = study_metrics(ids, y, probs, prefix="test_study_")
    # study probabilities: A (0.9 + 0.3) / 2 = 0.6 -> 1 (right); B (0.2 + 0.8 + 0.65) / 3 = 0.55 -> 1 (wrong);
    # C 0.4 -> 0 (wrong)
    assert m["test_study_acc"] == pytest.approx(1 / 3)
    # class 0: no true positive -> F1 0; class 1: precision 1/2 (A of A, B), recall 1/2 (A of A, C) -> F1 1/2
    assert m["test_study_f1"] == pytest.approx(1 / 4)
    # positives A 0.6 and C 0.4 against the negative B 0.55: one of the two pairs ordered
    assert m["test_study_auroc"] == pytest.approx(1 / 2)
    assert set(m) == {"test_study_f1", "test_study_acc", "test_study_auroc"}
    # image level, for contrast: images 0 and 1 right, 2 of 6
    assert classification_metrics(y, probs)["acc"] == pytest.approx(2 / 6)
