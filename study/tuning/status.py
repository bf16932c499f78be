"""`study status`: trials by stage and state, and the errors with their reasons (from MLflow and Optuna).

Reads the study's ``state.json`` through ``StudyState`` (a corrupt one is bad input, exit 2) and never
writes the study's files: a study under a URI is read from a view of its bucket, not from the driver's
working copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.trial import TrialState

from study.storage import sqlite_problem
from study.tracking import Tracker
from study.tracking.store import TAG_CELL, TAG_ERROR, TAG_KIND, TAG_RETRIES, TAG_STAGE, TAG_STATE, TAG_TRIAL_ID
from study.tuning.errors import StudyInputError
from study.tuning.plan import make_plan
from study.tuning.spec import Spec
from study.tuning.studydir import STAGES, StudyPaths, open_study_dir


def collect(study_dir: str) -> dict:
    """What ``study status --json`` prints."""
    spec, paths = open_study_dir(study_dir)
    state = paths.state
    stores = [paths.dir / "optuna.db"]
    if state.tracking_uri.startswith("sqlite:///"):
        stores.append(Path(state.tracking_uri[len("sqlite:///") :]))
    for db in stores:
        if why := sqlite_problem(db):
            raise StudyInputError(
                f"{paths.location}: {db.name} is not readable ({why}); restore it from a copy (a study under a "
                "bucket URI keeps one in its study folder)"
            )
    runs, errors = _trial_runs(Tracker(state.tracking_uri, state.experiment, state.artifact_location))
    return {
        "study_dir": paths.location,
        "stages": dict(state.stages),
        "runs": runs,
        "errors": errors,
        "cells": _cells(spec, paths),
        #: what a cell's "best" is: the tuning metric on the validation split (noisy labels unless
        #: noise.noisy_validation is false)
        "tuning_metric": spec.tuning.metric,
        "validation": "noisy" if spec.noise.noisy_validation else "clean",
        "final_skipped_cells": state.final_skipped_cells,
    }


def _trial_runs(tracker: Tracker) -> tuple[dict[str, dict[str, int]], list[dict]]:
    """Trial runs counted by stage and state, and the failed ones with their reasons."""
    stages: dict[str, dict[str, int]] = {}
    errors = []
    for run in tracker.runs():
        tags = run.data.tags
        if tags.get(TAG_KIND) != "trial":
            continue
        stage = tags.get(TAG_STAGE, "?")
        state = tags.get(TAG_STATE) or run.info.status.lower()
        stages.setdefault(stage, {})
        stages[stage][state] = stages[stage].get(state, 0) + 1
        if state == "failed":
            errors.append(
                {
                    "stage": stage,
                    "trial": tags.get(TAG_TRIAL_ID),
                    "cell": tags.get(TAG_CELL),
                    "error": tags.get(TAG_ERROR, "?"),
                    "retries": tags.get(TAG_RETRIES, "0"),
                }
            )
    return stages, errors


def _cells(spec: Spec, paths: StudyPaths) -> dict[str, dict]:
    """Per cell that has an Optuna study: its trials by state and its best value."""
    existing = set(optuna.get_all_study_names(paths.optuna_url))
    cells = {}
    for c in make_plan(spec).cells:
        if c.id not in existing:
            continue  # stage lnl has not asked this cell yet
        study = optuna.load_study(study_name=c.id, storage=paths.optuna_url)
        trials = study.get_trials(deepcopy=False)
        by = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
        cells[c.id] = {**{k: v for k, v in by.items() if v}, "best": study.best_value if by["complete"] else None}
    return cells


def status(study_dir: str, as_json: bool = False) -> int:
    info = collect(study_dir)
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(info["study_dir"])
    print("stages: " + ", ".join(f"{k} {v}" for k, v in info["stages"].items()))
    for stage in STAGES:
        if stage in info["runs"]:
            print(f"  {stage}: " + ", ".join(f"{n} {s}" for s, n in sorted(info["runs"][stage].items())))
    if info["cells"]:
        print(
            f"cells ({len(info['cells'])}); best = {info['tuning_metric']} on the {info['validation']} "
            "validation split:"
        )
        for cid, c in info["cells"].items():
            best = f"best {c['best']:.4f}" if c.get("best") is not None else "no complete trial"
            states = ", ".join(f"{n} {s}" for s, n in c.items() if s != "best")
            print(f"  {cid}: {states or 'not started'}; {best}")
    if info["errors"]:
        print(f"errors ({len(info['errors'])}):")
        for e in info["errors"]:
            print(f"  [{e['stage']}] {e['trial']} {e['cell'] or ''}: {e['error']} (retries: {e['retries']})")
    for cid in info["final_skipped_cells"]:
        print(f"  final skipped for {cid}: no complete tuning trial")
    return 0
