"""The benchmark runner lists every benchmark of the issue, and the cheap ones print `name: value` lines."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

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
