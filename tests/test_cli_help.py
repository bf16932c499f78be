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


def test_every_verb_describes_its_options_and_defaults():
    from study.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # argparse keeps the sub-parsers here
    for verb, sub in verbs.items():
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"study {verb}: {action.dest} has no help text"
    launch = verbs["launch"].format_help()
    assert "default: the spec's storage.root" in launch and "default: a private Ray" in launch
    assert "(default: 5000)" in verbs["ui"].format_help()


def test_ui_port_out_of_range_exits_2_at_once():
    for port in ("99999", "-1", "0", "web"):
        r = subprocess.run(
            [sys.executable, "-m", "study.cli", "ui", "somewhere", "--port", port], capture_output=True, text=True
        )
        assert r.returncode == 2 and "--port" in r.stderr, (port, r.stderr)
