"""chaos: SIGKILL the driver of the smoke study at three random moments, resume each time, compare with a clean run.

1. An uninterrupted `study launch` of search_spaces/smoke.yaml (the reference).
2. The same spec and seeds in another study: the driver (and the local Ray it started, its process group)
   gets SIGKILL at three random moments of the study's progress (seeded: once a random number of its
   trials have ended, plus a random 0-10 s, so mostly mid-trial), `study resume` continuing it after each;
   then a last resume to the end.
3. Checks: the same set of trials (stage, cell or pretraining job, point, hyperparameters) in both studies,
   each trial exactly once in MLflow, every run terminal, and the same final-stage test metrics (max
   absolute difference of test_f1 per final run; CPU, so equal up to floating point).
4. Compute lost: the interrupted study's wall time (all sessions together) minus the clean run's, and the
   trials that had to continue from a checkpoint.

``python -m benchmarks chaos`` (about 15 minutes on 2 cores; ``--quick`` kills once instead of three times)
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "search_spaces" / "smoke.yaml"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "study.cli", *args, "--quiet"]


def _run_to_end(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"chaos: {' '.join(cmd[2:])} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0


def _terminal_trials(study_dir: Path) -> int:
    """Trials of the study that have ended, read from its MLflow sqlite file read-only (an MLflow client
    would create or migrate the file under the driver's feet)."""
    db = study_dir / "mlflow.db"
    if not db.is_file():
        return -1
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute(
                "SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE t.key = 'study.kind' AND t.value = 'trial' AND r.status != 'RUNNING'"
            ).fetchone()[0]
    except sqlite3.Error:  # no tables yet, or busy
        return -1


def _run_and_kill(cmd: list[str], study_dir: Path, after_trials: int, extra: float) -> tuple[float, bool]:
    """Run until ``after_trials`` trials of the study are terminal, then ``extra`` seconds more (mid-trial),
    then SIGKILL its process group; (seconds it ran, whether it was killed)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while proc.poll() is None and _terminal_trials(study_dir) < after_trials:
        time.sleep(2)
    try:
        proc.wait(timeout=extra)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(2)  # let the killed Ray's processes go
        return time.perf_counter() - t0, True
    if proc.returncode != 0:
        raise SystemExit(f"chaos: {' '.join(cmd[2:])} failed with exit {proc.returncode}")
    return time.perf_counter() - t0, False


def _runs(study_dir: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(study_dir.name)
    out, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id], filter_string="tags.`study.kind` = 'trial'", max_results=1000, page_token=token
        )
        out += list(page)
        token = page.token
        if not token:
            return out


def _key(run) -> str:
    """What identifies a trial across two studies of one spec (not Ray's trial id, not Optuna's number)."""
    params = {k: v for k, v in run.data.params.items() if not k.startswith("optuna_trial")}
    return json.dumps(params, sort_keys=True)


def main(quick: bool = False) -> None:
    kills = 1 if quick else 3
    rng = random.Random(0)
    keep = os.environ.get("CHAOS_KEEP")  # a folder to keep both studies in, for inspection
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(keep or tmp)
        t_clean = _run_to_end(_cli("launch", str(SMOKE), "--storage", str(work / "a"), "--name", "clean"))
        chaos_dir = work / "b" / "chaos"
        sessions, killed = [], 0
        cmd = _cli("launch", str(SMOKE), "--storage", str(work / "b"), "--name", "chaos")
        total = len(_runs(work / "a" / "clean"))
        # random moments of the study's progress: after a random number of finished trials, plus 0-10 s
        moments = sorted(rng.sample(range(1, total - 1), kills))
        for after in moments:
            seconds, was_killed = _run_and_kill(cmd, chaos_dir, after, rng.uniform(0.0, 10.0))
            sessions.append(round(seconds, 1))
            killed += was_killed
            if not was_killed:
                break
            cmd = _cli("resume", str(chaos_dir))
        if killed == kills:
            sessions.append(round(_run_to_end(cmd), 1))
        clean, chaos = _runs(work / "a" / "clean"), _runs(chaos_dir)

    def by_key(runs):
        out: dict[str, list] = {}
        for r in runs:
            out.setdefault(_key(r), []).append(r)
        return out

    kc, kx = by_key(clean), by_key(chaos)
    ids = [r.data.tags["study.trial_id"] for r in chaos]
    finals = [k for k, rs in kc.items() if rs[0].data.tags.get("study.stage") == "final"]
    diffs = [
        abs(kc[k][0].data.metrics["test_f1"] - kx[k][0].data.metrics["test_f1"])
        for k in finals
        if k in kx and "test_f1" in kx[k][0].data.metrics and "test_f1" in kc[k][0].data.metrics
    ]
    restored = sum(1 for r in chaos if r.data.tags.get("study.resumed_from_epoch"))

    def show(r) -> str:
        p = r.data.params
        return f"{p.get('stage')} {p.get('cell', p.get('id', ''))} " + json.dumps(
            {k: v for k, v in p.items() if k.startswith("hparams.")}, sort_keys=True
        )

    for k in sorted(set(kc) ^ set(kx)):
        side = "clean" if k in kc else "interrupted"
        print(f"# only in {side}: {show((kc.get(k) or kx.get(k))[0])}")
    for rs in kx.values():
        if len(rs) > 1:
            print(f"# {len(rs)} runs in the interrupted study: {show(rs[0])}")
    print(f"chaos_kills: {killed}")
    print(f"chaos_session_s: {json.dumps(sessions)}")
    print(f"chaos_trials_clean: {len(clean)}")
    print(f"chaos_trials_interrupted: {len(chaos)}")
    print(f"chaos_same_trial_set: {set(kc) == set(kx)}")
    print(f"chaos_trials_only_in_clean: {len(set(kc) - set(kx))}")
    print(f"chaos_trials_only_in_interrupted: {len(set(kx) - set(kc))}")
    print(f"chaos_each_trial_once_in_mlflow: {len(ids) == len(set(ids)) and all(len(v) == 1 for v in kx.values())}")
    print(f"chaos_all_runs_terminal: {all(r.info.status in ('FINISHED', 'KILLED', 'FAILED') for r in chaos)}")
    print(f"chaos_final_runs_compared: {len(diffs)}/{len(finals)}")
    print(f"chaos_final_test_f1_max_abs_diff: {max(diffs) if diffs else float('nan'):.6f}")
    print(f"chaos_final_runs_differing: {sum(d > 1e-6 for d in diffs)}")
    print(f"chaos_trials_continued_from_checkpoint: {restored}")
    print(f"chaos_clean_wall_s: {t_clean:.1f}")
    print(f"chaos_interrupted_wall_s: {sum(sessions):.1f}")
    print(f"chaos_compute_lost_s: {sum(sessions) - t_clean:.1f}")
    print(f"chaos_compute_lost_fraction: {(sum(sessions) - t_clean) / t_clean:.3f}")
