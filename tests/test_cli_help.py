"""``study --help`` lists the CLI verbs (docs/architecture.md, CLI)."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_design_verbs():
    out = subprocess.run([sys.executable, "-m", "study.cli", "--help"], capture_output=True, text=True, check=True)
    for verb in ("validate", "plan", "launch", "resume", "status", "report", "ui"):
        assert verb in out.stdout


def test_no_verb_exits_2():
    assert subprocess.run([sys.executable, "-m", "study.cli"], capture_output=True).returncode == 2
