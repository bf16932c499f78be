"""Headless Debian Chromium for the browser tests: installed by scripts/install_chromium.sh where missing."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def ensure_chromium() -> str:
    """The browser's path; installs Debian's chromium if needed. Raises RuntimeError with the reason."""
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "install_chromium.sh")], capture_output=True, text=True, timeout=1200
    )
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(
            f"Chromium is needed for the browser tests and could not be installed: "
            f"{r.stderr.strip() or r.stdout.strip()}"
        )
    return r.stdout.strip().splitlines()[-1]


def chromium(
    browser: str,
    url: str,
    profile: Path,
    *,
    screenshot: Path | None = None,
    dump_dom: bool = False,
    budget_ms: int | None = None,
    timeout: float = 180,
    width: int = 1400,
) -> str:
    """Load ``url`` headless in a ``width`` x 1000 window; its DOM when ``dump_dom``."""
    extra = [f"--window-size={width},1000"]
    extra += [f"--virtual-time-budget={budget_ms}"] if budget_ms else []
    extra += [f"--screenshot={screenshot}"] if screenshot is not None else []
    extra += ["--dump-dom"] if dump_dom else []
    # One retry with a fresh profile: in one CI run headless Chromium never finished the MLflow UI page
    # (180 s, CPU shared with a study); the same page renders in seconds otherwise. A second hang fails.
    retry = profile.with_name(f"{profile.name}-retry")
    for prof in (profile, retry):
        proc = subprocess.Popen(
            [browser, *FLAGS, f"--user-data-dir={prof}", *extra, url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the renderer and GPU helper processes too
            proc.communicate()
            if prof == retry:
                raise
            continue
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited {proc.returncode}: {err[-2000:]}")
        return out
