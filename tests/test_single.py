"""The single-run entry point end to end on synthetic data, and its bad-input exits."""

from __future__ import annotations

import json

import numpy as np

from study.data import get_dataset, make_splits
from study.experiment import corrupt
from study.single import main, spec_of
from study.tuning.plan import Point


def test_single_run_prints_test_f1(capsys, tmp_path):
    rc = main(
        ["--dataset", "synthetic", "--epochs", "3", "--cache", str(tmp_path), "--json", "--rate", "0.2", "--lr", "0.05"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert set(summary) >= {"test_f1", "test_acc", "test_balanced_acc", "test_auroc", "test_f1_last5"}
    assert summary["test_f1"] > 0.5  # the synthetic classes are easy; 4 classes => chance is 0.25


def test_single_run_bad_inputs_exit_2(capsys, tmp_path):
    assert main(["--dataset", "cifar", "--cache", str(tmp_path)]) == 2
    assert "allowed:" in capsys.readouterr().err
    assert main(["--dataset", "synthetic", "--noise", "pairflip", "--rate", "0.6", "--cache", str(tmp_path)]) == 2
    assert "below 0.5" in capsys.readouterr().err


def test_test_labels_never_corrupted():
    data = get_dataset("synthetic", num_samples=400).load(None)
    s = make_splits(data, seed=0)
    args = type(
        "Args",
        (),
        dict(
            dataset="synthetic",
            limit=None,
            root=None,
            noise="symmetric",
            rate=0.6,
            lnl="ce",
            epochs=1,
            batch_size=32,
            lr=0.1,
            seed=0,
            backbone="small_cnn",
        ),
    )()
    point = Point("synthetic", "symmetric", 0.6, "random", "ce", 0)
    noisy, _info = corrupt(spec_of(args), data, s, point)
    np.testing.assert_array_equal(noisy[s.test], data.labels[s.test])
    assert np.mean(noisy[s.train] != data.labels[s.train]) > 0.4
