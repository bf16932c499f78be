"""Every registered algorithm: one short CPU run on tiny synthetic data through fit and final_test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data import get_dataset, make_splits
from study.data.pipeline import AugmentConfig, TensorLoader
from study.hparams import HparamError
from study.lnl import ALGORITHMS, OptimConfig
from study.metrics import selection_quality
from study.models import Classifier, SmallCNN
from study.noise import inject_noise
from study.train import FitResult, NonFiniteLossError, final_test, fit

HPARAMS = {
    "co_teaching": {"tk": 1},
    "co_teaching_plus": {"tk": 1, "init_epochs": 1},
    "dividemix": {"warmup_epochs": 1},
    "linear_probe": {"hidden": (16,)},
}


@pytest.fixture(scope="module")
def tiny():
    data = get_dataset("synthetic", num_samples=160, image_size=16).load(None)
    splits = make_splits(data, val_fraction=0.2, test_fraction=0.2, seed=0)
    labels = np.asarray(data.labels)
    noisy = labels.copy()
    noisy[splits.train] = inject_noise(labels[splits.train], data.num_classes, "symmetric", 0.3, 0).labels
    return data, splits, labels, noisy


def loaders(data, splits, labels, noisy):
    train = TensorLoader(
        data.images[splits.train],
        noisy[splits.train],
        32,
        shuffle=True,
        augment_cfg=AugmentConfig(),
        indices=splits.train,
    )
    val = TensorLoader(data.images[splits.val], noisy[splits.val], 64)
    test = TensorLoader(data.images[splits.test], labels[splits.test], 64)
    return train, val, test


def make_model_for(data):
    def make_model():
        return Classifier(SmallCNN(data.channels, data.resolution, width=8), data.num_classes)  # tiny: CPU tests

    return make_model


def test_registry_names_match_design():
    # the contract's names (a superset: registering a new algorithm needs no edit here)
    assert set(ALGORITHMS) >= {
        "ce",
        "co_teaching",
        "co_teaching_plus",
        "dividemix",
        "elr",
        "gce",
        "sce",
        "linear_probe",
    }


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_short_run(name, tiny):
    data, splits, labels, noisy = tiny
    torch.manual_seed(0)
    train, val, test = loaders(data, splits, labels, noisy)
    algo = ALGORITHMS[name](
        make_model_for(data),
        data.num_classes,
        len(data),
        OptimConfig(lr=0.05, epochs=3),
        torch.device("cpu"),
        noise_rate=0.3,
        seed=0,
        **HPARAMS.get(name, {}),
    )
    res = fit(algo, train, val, 3, clean_train_labels=labels, noisy_train_labels=noisy)
    assert len(res.history) == 3 and all(np.isfinite(h["train_loss"]) for h in res.history)
    if algo.selects_samples:
        h = res.history[-1]
        assert 0 <= h["selected_label_precision"] <= 1 and 0 < h["selected_label_recall"] <= 1
    out = final_test(algo, res, test)
    assert {
        "test_f1",
        "test_acc",
        "test_balanced_acc",
        "test_auroc",
        "test_f1_last5",
        "test_per_class_f1",
        "test_confusion",
    } <= set(out)
    # the whole state round-trips (checkpoints, resume); the kept epochs are weights only
    algo.load_state_dict(algo.state_dict())
    assert set(res.best_state) == {"nets"}
    algo.load_weights(res.best_state)


def test_unknown_hyperparameter_fails(tiny):
    data = tiny[0]
    with pytest.raises(HparamError, match=r"'co_teaching': .*'bogus'.*allowed: forget_rate, tk, c"):
        ALGORITHMS["co_teaching"](make_model_for(data), 4, len(data), OptimConfig(), torch.device("cpu"), bogus=1)


def test_out_of_range_hyperparameter_fails_before_building_networks(tiny):
    data = tiny[0]

    def make_model():
        raise AssertionError("networks built before the hyperparameters were checked")

    with pytest.raises(HparamError, match=r"'gce': q: 1\.5 is not allowed"):
        ALGORITHMS["gce"](make_model, 4, len(data), OptimConfig(), torch.device("cpu"), q=1.5)


def test_non_finite_loss_stops_training(tiny):
    data, splits, labels, noisy = tiny
    train, val, _ = loaders(data, splits, labels, noisy)
    algo = ALGORITHMS["ce"](make_model_for(data), data.num_classes, len(data), OptimConfig(), torch.device("cpu"))
    algo.loss_fn = lambda logits, y, index: logits.sum() * float("nan")
    result = FitResult()
    with pytest.raises(NonFiniteLossError, match="epoch 0, step 0"):
        fit(algo, train, val, 1, result=result)
    assert result.error is not None and "non-finite" in result.error and not result.history


def test_selection_quality_counts_only_the_training_split():
    noisy = np.array([0, 1, 1, 0, 2, 2, 2, 2])
    clean = np.array([0, 0, 1, 0, 2, 2, 2, 2])  # indices 4..7 are val/test: clean, never selectable
    train = np.array([0, 1, 2, 3])  # clean: 0, 2, 3
    q = selection_quality(np.array([0, 1, 2]), noisy, clean, among=train)
    assert q == {"selected_label_precision": 2 / 3, "selected_label_recall": 2 / 3}
    assert selection_quality(train, noisy, clean, among=train)["selected_label_recall"] == 1.0
    with pytest.raises(ValueError, match="outside the training split"):
        selection_quality(np.array([5]), noisy, clean, among=train)


def test_fit_recall_is_one_when_every_training_sample_is_selected(tiny):
    """fit receives dataset-length label arrays (validation and test included); recall must count only the
    clean training samples an algorithm could select."""
    data, splits, labels, noisy = tiny

    class SelectAll(ALGORITHMS["ce"]):
        selects_samples = True

        def train_step(self, x, y, index, epoch):
            return {**super().train_step(x, y, index, epoch), "selected": index}

    train, val, _ = loaders(data, splits, labels, noisy)
    algo = SelectAll(make_model_for(data), data.num_classes, len(data), OptimConfig(epochs=1), torch.device("cpu"))
    h = fit(algo, train, val, 1, clean_train_labels=labels, noisy_train_labels=noisy).history[-1]
    clean_frac = float(np.mean(noisy[splits.train] == labels[splits.train]))
    assert h["selected_label_recall"] == 1.0
    assert h["selected_label_precision"] == pytest.approx(clean_frac) and clean_frac < 1.0


def test_dividemix_authors_organisation_runs_its_whole_plan(tiny):
    data, splits, labels, noisy = tiny
    torch.manual_seed(0)
    train, val, _ = loaders(data, splits, labels, noisy)
    algo = ALGORITHMS["dividemix"](
        make_model_for(data),
        data.num_classes,
        len(data),
        OptimConfig(lr=0.05, epochs=2),
        torch.device("cpu"),
        seed=0,
        warmup_epochs=1,
        organisation="authors",
    )
    res = fit(algo, train, val, 2, clean_train_labels=labels, noisy_train_labels=noisy)
    assert all(np.isfinite(h["train_loss"]) for h in res.history)
    # every planned step ran: each network's labelled set, in batches of 32, one pass
    assert algo.plan and algo.plan_done == len(algo.plan)
    for k in (0, 1):
        peer = algo.clean_prob[1 - k][torch.as_tensor(splits.train)]
        batches = [lab for net, lab, _ in algo.plan if net == k]
        assert [len(b) for b in batches[:-1]] == [32] * (len(batches) - 1)
        assert sorted(torch.cat(batches).tolist()) == sorted(splits.train[(peer > 0.5).numpy()].tolist())
    algo.load_state_dict(algo.state_dict())
