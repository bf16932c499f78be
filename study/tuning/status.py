"""`study status`: trials by stage and state, and the errors with their reasons (from MLflow and Optuna)."""

from __future__ import annotations

import json
import sys


def collect(study_dir: str) -> dict:
    from optuna.trial import TrialState

    from study.tracking import Tracker
    from study.tuning.launch import open_study_dir
    from study.tuning.plan import make_plan
    from study.tuning.searcher import open_study

    spec, paths = open_study_dir(study_dir)
    st = paths.state
    tracker = Tracker(st["tracking_uri"], st["experiment"], st.get("artifact_location"))
    stages: dict[str, dict[str, int]] = {}
    errors = []
    for run in tracker.runs():
        tags = run.data.tags
        if tags.get("study.kind") != "trial":
            continue
        stage = tags.get("study.stage", "?")
        state = tags.get("study.state") or run.info.status.lower()
        stages.setdefault(stage, {})
        stages[stage][state] = stages[stage].get(state, 0) + 1
        if state == "failed":
            errors.append({"stage": stage, "trial": tags.get("study.trial_id"), "cell": tags.get("study.cell"),
                           "error": tags.get("study.error", "?"), "retries": tags.get("study.retries", "0")})
    cells = {}
    plan = make_plan(spec)
    for c in plan.cells:
        try:
            study = open_study(paths.optuna_url, c.id, spec.tuning.mode)
        except Exception:
            continue
        trials = study.get_trials(deepcopy=False)
        by = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        cells[c.id] = {**{k: v for k, v in by.items() if v}, "best": study.best_value if done else None}
    return {"study_dir": str(paths.dir), "stages": st["stages"], "runs": stages, "errors": errors, "cells": cells,
            "final_skipped_cells": st.get("final_skipped_cells", [])}


def status(study_dir: str, as_json: bool = False) -> int:
    info = collect(study_dir)
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['study_dir']}")
    print("stages: " + ", ".join(f"{k} {v}" for k, v in info["stages"].items()))
    for stage in ("pretrain", "lnl", "final"):
        if stage in info["runs"]:
            print(f"  {stage}: " + ", ".join(f"{n} {s}" for s, n in sorted(info["runs"][stage].items())))
    if info["cells"]:
        print(f"cells ({len(info['cells'])}):")
        for cid, c in info["cells"].items():
            best = f"best {c['best']:.4f}" if c.get("best") is not None else "no complete trial"
            states = ", ".join(f"{n} {s}" for s, n in c.items() if s != "best")
            print(f"  {cid}: {states or 'not started'}; {best}")
    if info["errors"]:
        print(f"errors ({len(info['errors'])}):")
        for e in info["errors"]:
            print(f"  [{e['stage']}] {e['trial']} {e['cell'] or ''}: {e['error']} (retries: {e['retries']})")
    for cid in info["final_skipped_cells"]:
        print(f"  final skipped for {cid}: no complete tuning trial", file=sys.stdout)
    return 0
