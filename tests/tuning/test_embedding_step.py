"""The embedding step before stages lnl and final: one Ray task per (dataset, encoder, preprocessing) fills
the embedding cache, so a ``linear_probe`` trial after it runs no encoder pass at all; a failed job is
reported with its reason and the study goes on (its trials compute the embeddings themselves)."""

from __future__ import annotations

import pytest
import ray
import torch
import yaml

from study.experiment import build_trial
from study.tuning.embeddings import compute_embeddings, embedding_jobs
from study.tuning.plan import Point
from study.tuning.spec import Resources, parse_spec
from tests.lnl.test_embeddings_once import SPECS, forward_calls  # noqa: F401  (a fixture)


def two_entry_spec():
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["lnl"] = [
        {"algorithm": "linear_probe", "epochs": 2, "batch_size": 64, "fixed": {"lr": 0.05, "hidden": [16]}},
        {"algorithm": "ce", "epochs": 1, "batch_size": 64, "fixed": {"lr": 0.05}},
    ]
    return parse_spec(d)


def points(spec, lnl: str, seeds=(0,)) -> list[Point]:
    return [Point("synthetic", "symmetric", r, "simclr", lnl, s) for s in seeds for r in (0.0, 0.4)]


def test_one_job_per_dataset_and_encoder_and_only_for_trials_on_embeddings():
    spec = two_entry_spec()
    probe = spec.lnl[0].key
    jobs = embedding_jobs(spec, [*points(spec, probe, seeds=(0, 1)), *points(spec, spec.lnl[1].key)])
    # the noise settings share an encoder; each seed has its own SimCLR encoder; CE trials read images
    assert [(p.lnl, p.seed) for p in jobs] == [(probe, 0), (probe, 1)]


@pytest.fixture(scope="module")
def local_ray():
    from study.tuning.driver import loopback_node

    with loopback_node():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_after_the_step_a_trial_runs_no_encoder_pass(local_ray, tmp_path, forward_calls):  # noqa: F811
    spec = two_entry_spec()
    probe = spec.lnl[0].key
    res = Resources(cpus=1, gpus=0)
    out = compute_embeddings(spec, points(spec, probe), str(tmp_path), str(tmp_path), res, False, quiet=True)
    assert list(out.values()) == [None]
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    trial = build_trial(
        spec, points(spec, probe)[1], {"lr": 0.05, "hidden": [16]}, torch.device("cpu"), tmp_path, tmp_path
    )
    trial.final_metrics(trial.fit(), tmp_path)
    assert forward_calls["n"] == 0  # the task in a Ray worker ran the encoder; this process never did


def test_a_failed_job_is_reported_and_the_study_goes_on(local_ray, tmp_path, capsys):
    spec = two_entry_spec()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    res = Resources(cpus=1, gpus=0)
    out = compute_embeddings(spec, points(spec, spec.lnl[0].key), str(not_a_folder), str(not_a_folder), res, False)
    (error,) = out.values()
    assert error
    assert "computing the embeddings of synthetic under simclr (seed 0) failed" in capsys.readouterr().err
