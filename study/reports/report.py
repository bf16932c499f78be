"""``study report``: read a study's MLflow runs, render a dashboard definition, write PNGs, CSVs and one
self-contained HTML page under STUDY_DIR/report/, and log them to the study's report run in MLflow."""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from study.reports import panels
from study.reports.definitions import Dashboard, load_dashboard
from study.reports.store import (
    AXES,
    Study,
    expected_points,
    load_runs,
    open_study,
    seed_results,
    synthetic_only,
    with_clean_in_every_kind,
)

DASHBOARD_FILE = "dashboard.html"
MANIFEST_FILE = "manifest.json"
REPORT_STAGE = "report"


@dataclass
class Report:
    out_dir: Path
    html_path: Path
    files: list[Path]
    missing: list[str]
    run_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


def quiet_mlflow() -> None:
    """No telemetry from a report (nothing leaves the machine) and no per-call INFO lines."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def missing_points(study: Study, runs: pd.DataFrame, res: pd.DataFrame, stage: str) -> tuple[list[str], dict]:
    """What the spec asks for and the store does not have yet, as readable lines, plus counts."""
    lines: list[str] = []
    grid = study.expected_grid()
    have = res[list(AXES)].copy()
    if grid is None:
        if res.empty:
            return [f"no finished '{stage}' runs yet"], {"expected": 0, "present": 0}
        # without a spec, the cross product of what was observed is what is expected
        grid = {a: sorted(res[a].dropna().unique().tolist()) for a in AXES}
        lines.append("spec.yaml not readable: expecting the cross product of the axis values seen")
    exp = expected_points(grid)
    exp["noise_rate"] = exp["noise_rate"].astype(float)
    have["noise_rate"] = have["noise_rate"].astype(float)
    have["seed"] = have["seed"].astype(int)
    merged = exp.merge(have.drop_duplicates(), how="left", on=list(AXES), indicator=True)
    miss = merged[merged["_merge"] == "left_only"]
    counts = {"expected": len(exp), "present": len(exp) - len(miss)}
    if len(miss):
        # the labelled fraction is named only where the study has several (one: every label, as before the axis)
        cell_axes = [a for a in AXES if a != "seed" and (a != "label_fraction" or len(grid["label_fraction"]) > 1)]
        for key, g in miss.groupby(cell_axes):
            lines.append(
                f"no finished {stage} run: "
                + ", ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in zip(cell_axes, key))
                + f", seed {', '.join(str(s) for s in sorted(g['seed']))}"
            )
    st = runs[(runs["stage"] == stage) & ~runs["is_parent"]] if not runs.empty else runs
    for status in ("RUNNING", "SCHEDULED", "FAILED", "KILLED"):
        n = int((st["status"] == status).sum()) if not st.empty else 0
        counts[status.lower()] = n
        if n:
            names = ", ".join(st.loc[st["status"] == status, "run_name"].astype(str).head(10))
            lines.append(f"{n} {stage} run(s) {status}: {names}{' …' if n > 10 else ''}")
    return lines, counts


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1f3a5f;color:#fff;padding:16px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;font-size:13px;opacity:.9}nav{padding:8px 28px;background:#e8edf3;font-size:13px}
nav a{margin-right:14px;color:#1f3a5f}main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde3ea;border-radius:6px;padding:12px 18px;margin:16px 0}
section h2{font-size:18px;margin:4px 0 4px}.desc{color:#555;font-size:13px;margin:0 0 10px}
table.data{border-collapse:collapse;font-size:12px;margin:6px 0}table.data td,table.data th{border:1px solid #dde3ea;padding:3px 7px;text-align:right}
table.data th{background:#f1f4f8}img.figure{max-width:100%;height:auto}figure{margin:6px 0}figcaption{font-size:11px;color:#777}
.missing{color:#a33}.note{font-size:12px;color:#555}ul.missing li{font-size:12px}.ok{color:#276b2f}
"""


def render_html(
    study: Study, dash: Dashboard, rendered: list[panels.Rendered], missing: list[str], counts: dict[str, int]
) -> str:
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    nav = "".join(f'<a href="#{r.id}">{html.escape(r.title)}</a>' for r in rendered)
    secs = "".join(
        f'<section id="{r.id}" class="panel" data-panel="{r.id}"><h2>{html.escape(r.title)}</h2>'
        f'<p class="desc">{html.escape(r.description)}</p>{r.body}</section>'
        for r in rendered
    )
    if missing:
        shown = missing[:200]
        miss = (
            f'<p class="missing">{counts.get("present", 0)} of {counts.get("expected", 0)} expected '
            f'{dash.stage} runs are finished; this report shows what exists.</p><ul class="missing">'
            + "".join(f"<li>{html.escape(m)}</li>" for m in shown)
            + (f"<li>… and {len(missing) - len(shown)} more</li>" if len(missing) > len(shown) else "")
            + "</ul>"
        )
    else:
        miss = f'<p class="ok">Complete: all {counts.get("expected", 0)} expected {dash.stage} runs are finished.</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(dash.title)}: {html.escape(study.experiment_name)}</title>
<style>{_CSS}</style></head><body>
<header><h1>{html.escape(dash.title)}</h1>
<p>Study <b id="study-name">{html.escape(study.experiment_name)}</b> · {html.escape(str(study.dir))}</p>
<p>MLflow: {html.escape(study.tracking_uri)} (experiment {html.escape(study.experiment_id)}) · generated {now}</p></header>
<nav>{nav}<a href="#missing">What is missing</a></nav><main>{secs}
<section id="missing" class="panel" data-panel="missing"><h2>What is missing</h2>{miss}</section>
</main></body></html>
"""


def _report_run(study: Study) -> str:
    """The study's report run (stage ``report``): reused if it exists, created once otherwise."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=study.tracking_uri)
    found = client.search_runs(
        [study.experiment_id],
        filter_string=f"tags.`study.stage` = '{REPORT_STAGE}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(study.experiment_id, run_name="report", tags={"study.stage": REPORT_STAGE})
    return run.info.run_id


def log_report(study: Study, out: Path, files: list[Path], counts: dict[str, int]) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=study.tracking_uri)
    rid = _report_run(study)
    for f in files:
        client.log_artifact(rid, str(f), artifact_path="report")
    client.set_tag(rid, "study.report.generated_at", _dt.datetime.now().isoformat(timespec="seconds"))
    for k, v in counts.items():
        client.log_metric(rid, f"report_{k}_runs", float(v))
    client.set_terminated(rid, status="FINISHED")
    return rid


def _clear_previous(out: Path) -> None:
    """Remove the files the previous report wrote here (and only those)."""
    m = out / MANIFEST_FILE
    if not m.is_file():
        return
    try:
        names = json.loads(m.read_text()).get("files", [])
    except (OSError, ValueError):
        return
    for n in names:
        p = out / Path(n).name
        if p.is_file():
            p.unlink()


def make_report(
    study_dir: str | Path,
    out: str | Path | None = None,
    dashboard: str | Path | None = None,
    log_to_mlflow: bool = True,
) -> Report:
    """Render ``dashboard`` (default dashboards/default.yaml) for the study at ``study_dir`` into ``out``
    (default STUDY_DIR/report). Raises StudyInputError where STUDY_DIR is not a study."""
    quiet_mlflow()
    study = open_study(study_dir)
    dash = load_dashboard(dashboard)
    runs = load_runs(study)
    metrics = sorted({getattr(p, "metric", None) for p in dash.panels} - {None})
    results = {m: seed_results(runs, dash.stage, m) for m in metrics}
    grid = study.expected_grid()
    kinds = grid["noise_kind"] if grid else None
    # curves over the noise rate: synthetic kinds only (a recorded source is one setting, not a curve)
    curves = {m: with_clean_in_every_kind(synthetic_only(r), kinds) for m, r in results.items()}
    expected = with_clean_in_every_kind(synthetic_only(expected_points(grid)), kinds) if grid else None
    ctx = panels.Context(study, runs, results, curves, dash.stage, expected)

    rendered = [panels.RENDERERS[p.kind](ctx, p) for p in dash.panels]
    first = results.get("test_f1", next(iter(results.values()))) if results else pd.DataFrame(columns=AXES)
    missing, counts = missing_points(study, runs, first, dash.stage)
    for r in rendered:
        missing += r.missing

    out_dir = Path(out) if out else study.dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(out_dir)
    files: list[Path] = []
    for r in rendered:
        files += panels.write(r, out_dir)
    (out_dir / "missing.txt").write_text("\n".join(missing) + ("\n" if missing else ""))
    files.append(out_dir / "missing.txt")
    page = out_dir / DASHBOARD_FILE
    page.write_text(render_html(study, dash, rendered, missing, counts))
    files.append(page)
    (out_dir / MANIFEST_FILE).write_text(json.dumps({"files": [f.name for f in files]}, indent=1))
    rid = log_report(study, out_dir, files, counts) if log_to_mlflow else None
    return Report(out_dir, page, files, missing, rid, counts)
