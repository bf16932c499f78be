"""A real two-node Ray cluster on loopback (head on 127.0.0.2, worker on 127.0.0.3; Ray rewrites
127.0.0.1 to the machine's outward address, other loopback addresses it keeps): the smoke study runs
through the head on both nodes, survives
the loss of the worker node mid-trial, and records every trial once in an MLflow server.

Starts, as separate processes: a Ray head (`ray start --head`), a second Ray node (`ray start --address`),
and `mlflow server`, all on 127.0.0.1; stops each by process id at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port, kill_tree, processes_with

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"
BIN = Path(sys.executable).parent


def ray_env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_TMPDIR=str(tmp))
    return env


def mlflow_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [
        r for r in client.search_runs([exp.experiment_id], max_results=5000) if r.data.tags.get("study.kind") == "trial"
    ]


@pytest.fixture
def cluster(tmp_path):
    """A head and a worker node as separate `ray start` processes, and an MLflow server; torn down by pid."""
    tmp = Path("/tmp") / f"st{os.getpid()}"  # Ray's socket paths must stay short
    tmp.mkdir(exist_ok=True)
    env = ray_env(tmp)
    gcs, head_nm, worker_nm, mlflow_port = free_port(), free_port(), free_port(), free_port()
    started: list[psutil.Process] = []
    mlflow = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--artifacts-destination",
            str(tmp_path / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "mlflow.log", "w"),  # noqa: SIM115 (the child process owns it)
        start_new_session=True,
    )
    started.append(psutil.Process(mlflow.pid))
    try:
        common = ["--num-gpus", "0", "--disable-usage-stats"]
        subprocess.run(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.2",
                "--port",
                str(gcs),
                "--num-cpus",
                "1",
                "--node-manager-port",
                str(head_nm),
                "--include-dashboard",
                "false",
                "--temp-dir",
                str(tmp),
                "--resources",
                json.dumps({"head_node": 1}),
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        started += processes_with(f"--node_manager_port={head_nm}") + processes_with(f"--gcs_server_port={gcs}")
        subprocess.run(
            [
                str(BIN / "ray"),
                "start",
                "--address",
                f"127.0.0.2:{gcs}",
                "--node-ip-address",
                "127.0.0.3",
                "--num-cpus",
                "1",
                "--node-manager-port",
                str(worker_nm),
                "--resources",
                json.dumps({"worker_node": 1}),
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        worker = processes_with(f"--node_manager_port={worker_nm}")
        assert worker, "the worker node's raylet is not running"
        started += worker
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{mlflow_port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        yield {
            "address": f"127.0.0.2:{gcs}",
            "tracking_uri": f"http://127.0.0.1:{mlflow_port}",
            "worker_marker": f"--node_manager_port={worker_nm}",
            "env": env,
            "tmp": tmp,
        }
    finally:
        # everything this test started, by process id: the MLflow server, both nodes' raylets and their
        # workers, the GCS and the head's helpers (all carry the cluster's ports or temp dir)
        kill_tree(started + processes_with(str(tmp)) + processes_with(f"127.0.0.2:{gcs}"))


EPOCHS = 10


@pytest.mark.slow
@pytest.mark.timeout(1800)  # its own waits allow 900 s + 1200 s; about 10 to 12 min on 2 shared CPUs
def test_smoke_study_on_two_nodes_survives_node_loss(cluster, tmp_path):
    from study.tuning.plan import make_plan
    from study.tuning.spec import load_spec

    # the smoke study with trials long enough (10 epochs) that the node can be killed mid-trial
    spec_path = tmp_path / "smoke.yaml"
    spec_path.write_text(SMOKE.read_text().replace("epochs: 3", f"epochs: {EPOCHS}"))
    plan = make_plan(load_spec(spec_path))
    expected = len(plan.pretrain_jobs) + plan.tuning_trials + len(plan.final_runs)
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "study.cli",
            "launch",
            str(spec_path),
            "--address",
            cluster["address"],
            "--tracking-uri",
            cluster["tracking_uri"],
            "--storage",
            str(tmp_path / "studies"),
            "--name",
            "mn",
            "--quiet",
        ],
        cwd=ROOT,
        env=cluster["env"],
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "driver.log", "w"),  # noqa: SIM115 (the child process owns it)
        text=True,
        start_new_session=True,
    )
    try:
        # wait until a trial with a checkpoint runs on the worker node, then kill that node
        killed_on = None
        deadline = time.time() + 900
        while time.time() < deadline and driver.poll() is None:
            time.sleep(2)
            try:
                runs = mlflow_runs(cluster["tracking_uri"], "mn")
            except Exception:
                continue
            nodes = {r.data.tags.get("study.node_ids") for r in runs if r.data.tags.get("study.node_ids")}
            if len(nodes) >= 2:
                break
        node_sets = [set(r.data.tags["study.node_ids"].split(",")) for r in runs if r.data.tags.get("study.node_ids")]
        all_nodes = set().union(*node_sets) if node_sets else set()
        assert len(all_nodes) == 2, f"trials ran on {all_nodes}, expected both nodes"
        # the worker node is the one whose id is not the head's; find a running trial on it with >= 1 epoch
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=cluster["tracking_uri"])
        head_id = _head_node_id(cluster)
        while time.time() < deadline and driver.poll() is None:
            runs = mlflow_runs(cluster["tracking_uri"], "mn")
            on_worker = [
                r
                for r in runs
                if r.info.status == "RUNNING"
                and r.data.tags.get("study.stage") != "pretrain"
                and any(n != head_id for n in r.data.tags.get("study.node_ids", "").split(",") if n)
                and 1 <= len(client.get_metric_history(r.info.run_id, "train_loss")) <= EPOCHS - 4
            ]
            if on_worker:
                killed_on = on_worker[0].info.run_id
                kill_tree(processes_with(cluster["worker_marker"]))
                break
            time.sleep(1)
        assert killed_on, "no trial ran on the worker node long enough to checkpoint"
        _out, _ = driver.communicate(timeout=1200)
        assert driver.returncode == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            kill_tree([psutil.Process(driver.pid)])
    runs = mlflow_runs(cluster["tracking_uri"], "mn")
    ids = [r.data.tags["study.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == expected, "every trial recorded exactly once"
    moved = client.get_run(killed_on)
    assert moved.info.status in ("FINISHED", "KILLED"), moved.data.tags.get("study.error")
    assert int(moved.data.tags.get("study.retries", 0)) >= 1, (
        "the node loss did not interrupt the trial",
        moved.data.tags,
    )
    assert head_id in moved.data.tags["study.node_ids"].split(","), (
        "the trial continued on the remaining node",
        moved.data.tags,
        moved.info.status,
    )
    # it continued from an epoch checkpoint (not from scratch), and each epoch is recorded once even
    # when the epoch reported just before the kill had to be computed again
    assert int(moved.data.tags.get("study.resumed_from_epoch", 0)) >= 1, (
        "the trial restarted from scratch instead of its checkpoint",
        moved.data.tags,
    )
    steps = [m.step for m in client.get_metric_history(killed_on, "train_loss")]
    assert sorted(steps) == list(range(len(steps))), steps  # 0..last once each (ASHA may stop it early)


def _head_node_id(cluster) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import ray, json; ray.init(address='{}', log_to_driver=False); "
                "print(json.dumps([n['NodeID'] for n in ray.nodes() "
                "if n['Alive'] and n['Resources'].get('head_node')]))"
            ).format(cluster["address"]),
        ],
        env=cluster["env"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])[0]
