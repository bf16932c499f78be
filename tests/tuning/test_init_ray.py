"""Which Ray a study runs on: --address, else RAY_ADDRESS (`ray job submit`), else a Ray of its own."""

from __future__ import annotations

import ray

from study.tuning import driver


def calls(monkeypatch, address, env):
    seen = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(kw))
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    driver.init_ray(address, quiet=True)
    return seen[0]


def test_address_argument_wins(monkeypatch):
    assert calls(monkeypatch, "10.0.0.1:6379", "10.0.0.2:6379")["address"] == "10.0.0.1:6379"


def test_job_submit_entrypoint_attaches_to_its_cluster(monkeypatch):
    kw = calls(monkeypatch, None, "10.0.0.2:6379")
    assert kw["address"] == "10.0.0.2:6379" and "num_cpus" not in kw  # Ray refuses num_cpus when attaching


def test_without_either_a_local_ray_is_started_not_any_running_one(monkeypatch):
    kw = calls(monkeypatch, None, None)
    assert kw["address"] == "local" and kw["include_dashboard"] is False
