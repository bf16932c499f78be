"""The benchmark runner lists every benchmark of the issue, and the cheap ones print `name: value` lines."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "overhead",
    "parallel",
    "reuse",
    "input_pipeline",
    "linear_probe",
    "gpu_throughput",
    "chaos",
    "bad_inputs",
    "ssl_knn",
    "lnl",
    "disk",
    "ssl_effect",
    "method_cost",
    "packing",
}
LINE = re.compile(r"^[a-z0-9_]+: \S")


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_runner_lists_every_benchmark_and_rejects_unknown_names():
    out = bench()
    assert out.returncode == 0, out.stderr
    assert {ln.split(":")[0] for ln in out.stdout.splitlines()} == EXPECTED
    bad = bench("nope")
    assert bad.returncode == 2 and "allowed" in bad.stderr


def test_long_size_only_where_a_benchmark_has_one():
    out = bench("reuse", "--long")
    assert out.returncode == 2 and "no --long size" in out.stderr and out.stdout == ""
    both = bench("ssl_knn", "--quick", "--long")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_reuse_counts_the_khanal_grid():
    out = bench("reuse")
    assert out.returncode == 0, out.stderr
    vals = dict(ln.split(": ", 1) for ln in out.stdout.splitlines() if LINE.match(ln))
    # 5 datasets x 8 trained SSL methods x 3 seeds, against one pretraining per LNL run with a trained encoder
    assert vals["reuse_study_pretraining_jobs"] == "120"
    assert int(vals["reuse_naive_pretraining_jobs"]) == 4400  # (4000 tuning + 1500 final) x 8/10 SSL entries
    assert float(vals["reuse_naive_total_gpu_hours"]) > float(vals["reuse_study_total_gpu_hours"])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only behaviour")
def test_gpu_throughput_says_it_needs_a_gpu():
    out = bench("gpu_throughput")
    assert out.returncode == 0 and out.stdout.strip() == "gpu_throughput_available: 0"


def test_ssl_effect_is_a_valid_study_spec_with_its_declared_sizes():
    """The SSL effect benchmark is a spec the door accepts: every pretraining job once per (method, seed),
    and every (init, algorithm, noise, seed) run, random init among them."""
    from benchmarks.ssl_effect import FULL, QUICK, VIEWS, _spec, _versus
    from study.tuning.plan import make_plan

    assert "micle" in VIEWS.methods and VIEWS.views == 2
    for size in (FULL, QUICK, VIEWS):
        plan = make_plan(_spec(size))
        assert len(plan.pretrain_jobs) == len(size.methods) * len(size.seeds)
        inits = 1 + len(size.methods)
        assert len(plan.final_runs) == inits * len(size.algos) * len(size.noises) * len(size.seeds)
    assert _versus([0.6, 0.7, 0.8], [0.5, 0.5, 0.5]) == "+0.2000 ± 0.0577 (3.5 SE)"
    assert "one seed" in _versus([0.6], [0.5])


def test_ssl_effect_refuses_an_algorithm_or_block_it_does_not_have(monkeypatch):
    out = bench("ssl_effect", "--algo", "dividemix")
    assert out.returncode == 2 and "--algo dividemix is not one of" in out.stderr
    out = bench("lnl", "--algo", "ce")
    assert out.returncode == 2 and "lnl has no --algo option" in out.stderr
    monkeypatch.setenv("SSL_EFFECT_BLOCKS", "views,nope")
    out = bench("ssl_effect")
    assert out.returncode == 2 and "SSL_EFFECT_BLOCKS names 'nope'" in out.stderr


def test_linear_probe_grid_is_a_valid_study_spec_with_its_declared_sizes(tmp_path):
    """The linear_probe benchmark's grid is a spec the door accepts: one pretrained encoder, every noise
    rate x seed a final run of the linear_probe entry."""
    from torchvision.models import resnet18

    from benchmarks.linear_probe import FULL, QUICK, _points, _spec
    from study.tuning.plan import make_plan

    weights = tmp_path / "r18.pt"
    torch.save(resnet18(weights=None).state_dict(), weights)
    for size in (FULL, QUICK):
        spec = _spec(size, weights)
        plan = make_plan(spec)
        assert len(plan.final_runs) == len(size.rates) * len(size.seeds) == len(_points(spec, size))
        assert spec.lnl[0].fixed["hidden"] == [512, 128, 64] and not spec.noise.noisy_validation
    assert len(FULL.seeds) == 4  # the paper's four seeds


def test_linear_probe_variants_run_and_agree_at_a_tiny_size(tmp_path):
    """Each timed variant runs through the API it measures (a renamed call fails here, not after a long
    benchmark run), and heads on cached embeddings score what heads on images through the encoder do."""
    from benchmarks.linear_probe import Size, batched, embeddings_once, packed, per_trial, prepare

    size = Size(150, 3, 32, (0.0, 0.4), (0, 1), 2)
    spec, caches = prepare(size, tmp_path)
    _, f1_trial = per_trial(spec, size, caches["per_trial"])
    _, f1_once = embeddings_once(spec, size, caches["embeddings_once"])
    _, batched_rate, single_rate, chosen, probe_s = batched(spec, size, caches["batched"])
    _, f1_packed = packed(spec, size, caches["packed"])  # two seeds per packed trial
    assert len(f1_trial) == 4 and f1_trial == pytest.approx(f1_once, abs=1e-6)
    assert f1_packed == pytest.approx(f1_once, abs=1e-4)  # the study's packed heads are its trials' heads
    assert batched_rate > 0 and single_rate > 0 and chosen in ("batched", "sequential") and probe_s > 0
    assert list((caches["embeddings_once"] / "embeddings").glob("*.npy"))  # computed once into the cache


def test_packing_study_is_one_cell_of_eight_samples_packed_or_not(tmp_path):
    from benchmarks import packing
    from study.tuning.plan import make_plan, tuning_ray_trials
    from study.tuning.spec import load_spec

    n, epochs = packing.STUDY_QUICK
    trials = {}
    for pack, cpus in ((packing.MEMBERS, 2), (1, 1)):
        path = tmp_path / f"p{pack}.yaml"
        path.write_text(packing.SPEC.format(name=f"p{pack}", n=n, epochs=epochs, pack=pack, cpus=cpus))
        spec = load_spec(path)
        plan = make_plan(spec)
        assert len(plan.cells) == 1 and plan.tuning_trials == packing.MEMBERS
        assert spec.lnl[0].epochs == epochs and not spec.early_stopping.enabled
        trials[pack] = tuning_ray_trials(spec, plan, gpu=False)
    assert trials == {packing.MEMBERS: 1, 1: packing.MEMBERS}
