"""Entry points for ``study report`` and ``study ui`` (wired into study/cli.py).
Exit codes: 0 success, 2 bad input (not a study, no MLflow store, bad dashboard definition)."""

from __future__ import annotations

import argparse
import sys
import time

from study.reports.definitions import DefinitionError
from study.reports.store import StudyInputError


def report_main(args: argparse.Namespace) -> int:
    """``study report STUDY_DIR [--out DIR]`` (args.study_dir, args.out; optional args.dashboard)."""
    from study.reports.report import make_report

    t0 = time.perf_counter()
    try:
        rep = make_report(args.study_dir, out=getattr(args, "out", None),
                          dashboard=getattr(args, "dashboard", None))
    except (StudyInputError, DefinitionError) as e:
        print(f"study report: {e}", file=sys.stderr)
        return 2
    print(f"report: {rep.html_path}")
    print(f"  {len(rep.files)} files in {rep.out_dir}; logged to MLflow run {rep.run_id} (stage report)")
    c = rep.counts
    print(f"  {c.get('present', 0)} of {c.get('expected', 0)} expected final runs finished; "
          f"{len(rep.missing)} missing items (missing.txt); {time.perf_counter() - t0:.1f} s")
    return 0


def ui_main(args: argparse.Namespace) -> int:
    """``study ui STUDY_DIR [--port P]`` (args.study_dir, args.port)."""
    from study.reports.ui import serve

    try:
        return serve(args.study_dir, port=getattr(args, "port", None) or 5000)
    except StudyInputError as e:
        print(f"study ui: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone runner (``python -m study.reports.cli report|ui ...``) until study/cli.py wires these."""
    p = argparse.ArgumentParser(prog="python -m study.reports.cli")
    sub = p.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("report")
    s.add_argument("study_dir")
    s.add_argument("--out")
    s.add_argument("--dashboard", help="a dashboards/*.yaml definition (default: dashboards/default.yaml)")
    s = sub.add_parser("ui")
    s.add_argument("study_dir")
    s.add_argument("--port", type=int, default=5000)
    args = p.parse_args(argv)
    return report_main(args) if args.verb == "report" else ui_main(args)


if __name__ == "__main__":
    sys.exit(main())
