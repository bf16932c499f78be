"""Headless Debian Chromium for the browser tests: installed by scripts/install_chromium.sh where missing."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000"]


def ensure_chromium() -> str:
    """The browser's path; installs Debian's chromium if needed. Raises RuntimeError with the reason."""
    r = subprocess.run(["bash", str(REPO / "scripts" / "install_chromium.sh")], capture_output=True, text=True,
                       timeout=1200)
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError(f"Chromium is needed for the browser tests and could not be installed: "
                           f"{r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip().splitlines()[-1]


def chromium(browser: str, url: str, profile: Path, *, screenshot: Path | None = None, dump_dom: bool = False,
             budget_ms: int | None = None, timeout: float = 180) -> str:
    args = [browser, *FLAGS, f"--user-data-dir={profile}"]
    if budget_ms:
        args.append(f"--virtual-time-budget={budget_ms}")
    if screenshot is not None:
        args.append(f"--screenshot={screenshot}")
    if dump_dom:
        args.append("--dump-dom")
    r = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"chromium exited {r.returncode}: {r.stderr[-2000:]}")
    return r.stdout
