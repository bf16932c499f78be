"""The ``study`` command line (DESIGN.md, CLI). Exit codes: 0 success, 2 bad input, 1 a failed run."""

from __future__ import annotations

import argparse
import json
import sys

VERBS = {
    "validate": "check a spec; a one-line summary, or SPEC: path.to.field: problem",
    "plan": "dry run: cells, pretraining jobs, LNL trials, final-seed runs, estimated GPU-hours",
    "launch": "run a study; prints its study directory",
    "resume": "continue an interrupted study: nothing finished is rerun, nothing is lost",
    "status": "trials by stage and state; errors with reasons",
    "report": "tables, plots and an HTML dashboard from MLflow; also logged to MLflow",
    "ui": "MLflow UI for the study, bound to 127.0.0.1",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="study",
        description="Noisy-label robustness studies: datasets x noise x SSL pretraining x LNL algorithms x seeds, "
        "on Ray Tune with Optuna and MLflow.",
    )
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    s = sub.add_parser("validate", help=VERBS["validate"])
    s.add_argument("spec")
    s = sub.add_parser("plan", help=VERBS["plan"])
    s.add_argument("spec")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("launch", help=VERBS["launch"])
    s.add_argument("spec")
    s.add_argument("--storage")
    s.add_argument("--name")
    s.add_argument("--address")
    s.add_argument("--tracking-uri")
    s.add_argument("--quiet", action="store_true")
    s = sub.add_parser("resume", help=VERBS["resume"])
    s.add_argument("study_dir")
    s.add_argument("--address")
    s.add_argument("--quiet", action="store_true")
    s = sub.add_parser("status", help=VERBS["status"])
    s.add_argument("study_dir")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("report", help=VERBS["report"])
    s.add_argument("study_dir")
    s.add_argument("--out", help="output folder (default STUDY_DIR/report)")
    s.add_argument("--dashboard", help="dashboard definition YAML (default dashboards/default.yaml)")
    s = sub.add_parser("ui", help=VERBS["ui"])
    s.add_argument("study_dir")
    s.add_argument("--port", type=int, default=5000)
    return p


def _validate(args) -> int:
    from study.tuning.plan import make_plan
    from study.tuning.spec import load_spec

    spec = load_spec(args.spec)
    s = make_plan(spec).summary(spec)
    print(f"{args.spec}: ok: study {spec.name!r}, {s['cells']} cells, {s['pretraining_jobs']} pretraining jobs, "
          f"{s['lnl_trials']} LNL trials, {s['final_runs']} final runs")
    return 0


def _plan(args) -> int:
    from study.tuning.plan import format_plan, make_plan
    from study.tuning.spec import load_spec

    spec = load_spec(args.spec)
    plan = make_plan(spec)
    if args.json:
        out = plan.summary(spec)
        out["cell_ids"] = [c.id for c in plan.cells]
        out["pretraining_job_ids"] = [j.id for j in plan.pretrain_jobs]
        print(json.dumps(out, indent=2))
    else:
        print(format_plan(spec, plan, args.spec))
    return 0


def _launch(args) -> int:
    from study.tuning.launch import launch

    return launch(args.spec, storage=args.storage, name=args.name, address=args.address,
                  tracking_uri=args.tracking_uri, quiet=args.quiet)


def _resume(args) -> int:
    from study.tuning.launch import resume

    return resume(args.study_dir, address=args.address, quiet=args.quiet)


def _status(args) -> int:
    from study.tuning.status import status

    return status(args.study_dir, as_json=args.json)


def _report(args) -> int:
    from study.reports.cli import report_main

    return report_main(args)


def _ui(args) -> int:
    from study.reports.cli import ui_main

    return ui_main(args)


HANDLERS = {"validate": _validate, "plan": _plan, "launch": _launch, "resume": _resume, "status": _status,
            "report": _report, "ui": _ui}


def main(argv: list[str] | None = None) -> int:
    from study.tuning.errors import StudyInputError
    from study.tuning.spec import SpecError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        return HANDLERS[args.verb](args)
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    except StudyInputError as e:
        print(f"study {args.verb}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
