"""`study ui` stops its MLflow server when it is terminated (SIGTERM), not only on Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import free_port


def test_sigterm_stops_the_mlflow_server(whole_study, tmp_path):
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "study.cli", "ui", str(whole_study), "--port", str(free_port())],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while not re.search(r"http://127\.0\.0\.1:\d+/", log.read_text()) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.5)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "no MLflow server process"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _gone, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if proc.poll() is None:
            proc.kill()
