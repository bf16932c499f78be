"""The handlers of ``study report`` and ``study ui`` (``study.cli`` parses their arguments).
Exit codes: 0 success, 2 bad input (not a study, no MLflow store, bad dashboard definition).

``python -m study.reports.cli report|ui ...`` is ``study report|ui ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from study import cli
from study.reports.definitions import DefinitionError
from study.reports.report import make_report
from study.reports.store import StudyInputError
from study.reports.ui import serve


def report_main(args: argparse.Namespace) -> int:
    """``study report STUDY_DIR [--out DIR] [--dashboard DEF]`` (args.study_dir, args.out; optional args.dashboard)."""
    t0 = time.perf_counter()
    out = getattr(args, "out", None)
    if out and Path(out).expanduser().exists() and not Path(out).expanduser().is_dir():
        print(
            f"study report: --out {out}: is a file, not a folder; pass a folder (it is created if missing)",
            file=sys.stderr,
        )
        return 2
    try:
        rep = make_report(args.study_dir, out=getattr(args, "out", None), dashboard=getattr(args, "dashboard", None))
    except (StudyInputError, DefinitionError) as e:
        print(f"study report: {e}", file=sys.stderr)
        return 2
    print(f"report: {rep.html_path}")
    print(f"  {len(rep.files)} files in {rep.out_dir}; logged to MLflow run {rep.run_id} (stage report)")
    c = rep.counts
    print(
        f"  {c.get('present', 0)} of {c.get('expected', 0)} expected final runs finished; "
        f"{len(rep.missing)} missing items (missing.txt); {time.perf_counter() - t0:.1f} s"
    )
    return 0


def ui_main(args: argparse.Namespace) -> int:
    """``study ui STUDY_DIR [--port P]`` (args.study_dir, args.port)."""
    try:
        return serve(args.study_dir, port=getattr(args, "port", None) or 5000)
    except StudyInputError as e:
        print(f"study ui: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
