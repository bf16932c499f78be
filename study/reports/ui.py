"""``study ui``: the MLflow UI for one study, bound to 127.0.0.1, in the foreground until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from study.reports.store import Study, open_study
from study.tracking.view import apply_view, runs_url


def server_command(study: Study, port: int) -> list[str]:
    """``mlflow server`` on the study's backend store and artifact root, loopback only."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        study.tracking_uri,
        "--default-artifact-root",
        study.artifact_root.resolve().as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def set_view(study: Study) -> None:
    """Give the study's experiment its UI view where it lacks it (studies launched before views existed)."""
    from mlflow.tracking import MlflowClient

    try:
        apply_view(MlflowClient(tracking_uri=study.tracking_uri), study.experiment_id)
    except Exception as e:  # the UI still opens, without the preset columns
        print(f"study ui: could not set the study's view on its experiment ({e})", file=sys.stderr)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll the server's /health until it answers, the process dies or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(study_dir: str | Path, port: int = 5000, out=sys.stdout) -> int:
    """Start the UI, print its URL once it answers, wait until interrupted. Exit code 1 if the server
    does not start (port taken, store unreadable)."""
    study = open_study(study_dir)
    set_view(study)
    if study.is_server:
        print(
            f"study {study.experiment_name!r} tracks to a server; its UI: "
            f"{runs_url(study.tracking_uri, study.experiment_id)}",
            file=out,
            flush=True,
        )
        return 0
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(server_command(study, port), env=env)
    # SIGTERM (a service manager, `kill`) stops the MLflow server too, as Ctrl-C does
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: only Ctrl-C stops the server
        previous = None
    try:
        if not wait_ready(base, proc):
            print(
                f"study ui: the MLflow server did not start on 127.0.0.1:{port} (is the port in use? try --port)",
                file=sys.stderr,
            )
            return 1
        print(
            f"MLflow UI for study {study.experiment_name!r}: {runs_url(base, study.experiment_id)}",
            file=out,
            flush=True,
        )
        print(
            "MLflow opens its Assistant panel once per browser on a local server: its x closes it for good.",
            file=out,
            flush=True,
        )
        print("Ctrl-C to stop.", file=out, flush=True)
        return 0 if proc.wait() == 0 else 1
    except KeyboardInterrupt:
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
