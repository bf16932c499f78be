"""Fixtures shared across test packages."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(marker: str) -> list:
    """Processes whose command line holds ``marker`` (the ones a test started, by their temp paths)."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def kill_tree(procs: list) -> None:
    """SIGKILL these processes and their descendants, by process id, and wait for them."""
    import psutil

    victims = []
    for p in procs:
        try:
            victims += [p, *p.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """The smoke study (search_spaces/smoke.yaml), launched once per test session through the CLI."""
    root = tmp_path_factory.mktemp("studies")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "launch", str(SMOKE), "--storage", str(root), "--name", "smoke", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"smoke study: {time.perf_counter() - t0:.0f}s")
    assert proc.stdout.strip().splitlines()[-1] == str(root / "smoke")
    return root / "smoke"
