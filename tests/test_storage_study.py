"""The smoke study with `--storage s3://bucket/studies` against a real S3-compatible server on 127.0.0.1
(`moto_server`, a separate process): everything the study keeps (spec, state, Optuna, Ray Tune's state and
trial checkpoints, the encoder cache, MLflow artifacts) lands in the bucket; the driver and its local Ray
are killed (SIGKILL) mid-stage, and `study resume s3://bucket/studies/NAME` from a driver with an empty
local disk completes the study without rerunning a finished trial, each trial recorded once in MLflow.

Stops everything it started by process id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.conftest import ROOT, SMOKE, free_port, kill_tree, processes_with

BIN = Path(sys.executable).parent
BUCKET = "bucket"
NAME = "s3smoke"
EPOCHS = 4


@pytest.fixture
def s3(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "moto.log", "w"),  # noqa: SIM115 (the child process owns it)
        start_new_session=True,
    )
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
    }
    try:
        import boto3

        deadline = time.time() + 60
        while True:
            try:
                client = boto3.client(
                    "s3",
                    endpoint_url=env["AWS_ENDPOINT_URL"],
                    region_name="us-east-1",
                    aws_access_key_id="test",
                    aws_secret_access_key="test",
                )
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        yield env, client
    finally:
        kill_tree([psutil.Process(server.pid)])


def keys(client, prefix: str = "") -> list[str]:
    out, token = [], None
    while True:
        kw = {"Bucket": BUCKET, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
        page = client.list_objects_v2(**kw)
        out += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return out


def remote_trials(client, stage: str) -> dict[str, str]:
    """Ray trial id -> status, from the newest experiment state Ray has uploaded for ``stage``."""
    states = sorted(
        k
        for k in keys(client, f"studies/{NAME}/tune/{stage}/")
        if k.rsplit("/", 1)[-1].startswith("experiment_state-") and k.endswith(".json")
    )
    if not states:
        return {}
    data = json.loads(client.get_object(Bucket=BUCKET, Key=states[-1])["Body"].read())
    out = {}
    for trial_json, _ in data["trial_data"]:
        t = json.loads(trial_json)
        out[t["trial_id"]] = t["status"]
    return out


def reports_of(client, stage: str, trial_id: str) -> bytes:
    """A trial's ``result.json`` in the bucket: Ray appends a line per report, so a rerun trial changes it.
    (Its checkpoints are no evidence: an ended trial's are deleted.)"""
    found = [k for k in keys(client, f"studies/{NAME}/tune/{stage}/") if f"/lnl_trainable_{trial_id}" in k]
    key = next(k for k in found if k.endswith("/result.json"))
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def driver(tmp_path: Path, env: dict, node: str, argv: list[str], log: str) -> subprocess.Popen:
    ray_tmp = Path("/tmp") / f"s3st{os.getpid()}{node}"  # Ray's socket paths must stay short
    ray_tmp.mkdir(exist_ok=True)
    e = {**env, "STUDY_NODE_CACHE": str(tmp_path / node), "RAY_TMPDIR": str(ray_tmp)}
    return subprocess.Popen(
        [sys.executable, "-m", "study.cli", *argv],
        cwd=ROOT,
        env=e,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / log, "w"),
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2.5 min on an idle 2-CPU machine, 9 min when other work shares the CPUs
def test_smoke_study_on_s3_survives_a_killed_driver(s3, tmp_path):
    env, client = s3
    from study.tuning.plan import make_plan
    from study.tuning.spec import load_spec

    # the smoke study, one noise rate, trials of EPOCHS epochs (long enough to be caught mid-stage)
    spec = yaml.safe_load(SMOKE.read_text())
    spec["noise"]["rates"] = [0.4]
    for entry in spec["lnl"]:
        entry["epochs"] = EPOCHS
    spec_path = tmp_path / "smoke.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    plan = make_plan(load_spec(spec_path))
    expected = len(plan.pretrain_jobs) + plan.tuning_trials + len(plan.final_runs)
    uri = f"s3://{BUCKET}/studies/{NAME}"
    t0 = time.perf_counter()
    first = driver(
        tmp_path,
        env,
        "head1",
        ["launch", str(spec_path), "--storage", f"s3://{BUCKET}/studies", "--name", NAME, "--quiet"],
        "launch.log",
    )
    ray_tmp1 = f"/tmp/s3st{os.getpid()}head1"
    finished_before, caught = {}, None
    try:
        deadline = time.time() + 900
        while time.time() < deadline and first.poll() is None and caught is None:
            time.sleep(1)
            for stage in ("lnl", "final"):
                trials = remote_trials(client, stage)
                done = {t for t, s in trials.items() if s == "TERMINATED"}
                if len(done) >= 2 and len(done) < len(trials):
                    # everything finished so far, as the bucket holds it, with its reports; then the
                    # head "dies": the driver and its Ray processes, at once
                    finished_before = {t: reports_of(client, stage, t) for t in done}
                    kill_tree([psutil.Process(first.pid), *processes_with(ray_tmp1)])
                    caught = stage
                    break
        assert caught, (
            "never saw a stage with finished and unfinished trials in the bucket",
            first.poll(),
            (tmp_path / "launch.log").read_text()[-3000:],
        )
    finally:
        if first.poll() is None:
            kill_tree([psutil.Process(first.pid)])
        kill_tree(processes_with(ray_tmp1))
    state = json.loads(client.get_object(Bucket=BUCKET, Key=f"studies/{NAME}/state.json")["Body"].read())
    assert state["stages"][caught] == "running", state["stages"]

    # a new driver with an empty local disk resumes the study from the bucket alone
    second = driver(tmp_path, env, "head2", ["resume", uri, "--quiet"], "resume.log")
    try:
        out, _ = second.communicate(timeout=1200)
    finally:
        if second.poll() is None:
            kill_tree([psutil.Process(second.pid)])
        kill_tree(processes_with(f"/tmp/s3st{os.getpid()}head2"))
    assert second.returncode == 0, (tmp_path / "resume.log").read_text()[-3000:]
    assert out.strip().splitlines()[-1] == uri
    elapsed = time.perf_counter() - t0

    # nothing finished before the kill ran again: its reports in the bucket are the same
    for trial_id, reports in finished_before.items():
        assert reports_of(client, caught, trial_id) == reports, f"finished trial {trial_id} was rerun"
    statuses = remote_trials(client, caught)
    assert all(s == "TERMINATED" for s in statuses.values()), (statuses, (tmp_path / "resume.log").read_text()[-3000:])

    # everything is in the bucket
    objects = keys(client)
    study = f"studies/{NAME}/"
    for name in ("spec.yaml", "state.json", "optuna.db", "mlflow.db"):
        assert study + name in objects, name
    for stage in ("pretrain", "lnl", "final"):
        assert any(k.startswith(f"{study}tune/{stage}/experiment_state-") for k in objects), stage
    for stage in ("lnl", "final"):  # every trial has ended: its checkpoints are deleted from the bucket too
        assert any(k.startswith(f"{study}tune/{stage}/") and k.endswith("/result.json") for k in objects), stage
        assert not [k for k in objects if k.startswith(f"{study}tune/{stage}/") and "/checkpoint_" in k], stage
    encoders = [k for k in objects if k.startswith("studies/cache/ssl/") and k.endswith("/encoder.pt")]
    assert len(encoders) == len(spec["ssl"]) * len(spec["seeds"]), encoders  # random init and SimCLR per seed
    assert not any(k.endswith(".claim") for k in objects)
    assert any(k.startswith(f"{study}mlartifacts/") and k.endswith("best_checkpoint.pt") for k in objects)
    state = json.loads(client.get_object(Bucket=BUCKET, Key=f"{study}state.json")["Body"].read())
    assert set(state["stages"].values()) == {"done"} and state["errors"] == {"pretrain": 0, "lnl": 0, "final": 0}
    assert state["final_skipped_cells"] == []  # every cell's Optuna study came through the kill

    # MLflow (the bucket's mlflow.db): every trial exactly once, finished or pruned, artifacts in the bucket
    db = tmp_path / "mlflow.db"
    db.write_bytes(client.get_object(Bucket=BUCKET, Key=f"{study}mlflow.db")["Body"].read())
    con = sqlite3.connect(db)
    rows = con.execute(
        "select t.value, r.status, r.artifact_uri from runs r join tags t on t.run_uuid = r.run_uuid "
        "where t.key = 'study.trial_id'"
    ).fetchall()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)) == expected, (len(ids), len(set(ids)), expected)
    assert {r[1] for r in rows} <= {"FINISHED", "KILLED"}, rows
    assert all(r[2].startswith(f"s3://{BUCKET}/{study}mlartifacts/") for r in rows), rows[0]
    print(f"s3 smoke study (killed during {caught}, resumed): {elapsed:.0f}s")
