"""Browser acceptance test: headless Chromium (Debian package, installed here if missing) opens the
HTML dashboard of a finished study and the MLflow UI served by ``study ui``, takes screenshots, and
checks that the figures and the expected runs are on the page. Screenshots are kept under pytest's
temporary directory (printed on failure)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import pytest

from study.tuning.plan import make_plan
from study.tuning.spec import load_spec
from tests.conftest import SMOKE, free_port
from tests.reports.browser import chromium, ensure_chromium

pytestmark = pytest.mark.slow
#: the start of the SVG path of MLflow 3's "finished" status icon (a running run's is a clock, "M7.25 4v4")
CHECK_ICON = "M11.53 6.53"


@pytest.fixture(scope="module")
def browser():
    try:
        return ensure_chromium()
    except RuntimeError as e:
        pytest.fail(str(e))


def test_dashboard_and_mlflow_ui_in_a_browser(browser, smoke_study, tmp_path):
    from study.reports.cli import report_main

    study = smoke_study
    plan = make_plan(load_spec(SMOKE))
    assert report_main(argparse.Namespace(study_dir=str(study), out=None)) == 0
    page = study / "report" / "dashboard.html"

    # the dashboard: every figure decoded and laid out, every panel present
    shot = tmp_path / "dashboard.png"
    chromium(browser, page.as_uri(), tmp_path / "p1", screenshot=shot)
    assert shot.stat().st_size > 20_000
    dom = chromium(browser, page.as_uri(), tmp_path / "p2", dump_dom=True)
    assert len(re.findall(r'<img class="figure"', dom)) == 5
    for panel in (
        "f1_table",
        "robustness_curves",
        "f1_drop",
        "ssl_ranking",
        "pretrain_quality",
        "selection",
        "missing",
    ):
        assert f'data-panel="{panel}"' in dom
    assert f"Complete: all {len(plan.final_runs)} expected final runs are finished." in dom
    assert "<b>" in dom  # best-per-column marks in the table

    # the MLflow UI served by `study ui`
    port = free_port()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    log = tmp_path / "ui.log"  # a file, not a pipe: the server's access log must never block on a full pipe
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "study.reports.cli", "ui", str(study), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"MLflow UI for study .*?(http://127\.0\.0\.1:\d+/\S+)", log.read_text())
            url = m.group(1) if m else None
            time.sleep(0.5)
        assert url, "study ui printed no URL"
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/")
        assert url.endswith("/runs?workflowType=machine_learning&viewStateShareKey=study")  # the study's view
        ui_shot = tmp_path / "mlflow_ui.png"
        chromium(browser, url, tmp_path / "p3", screenshot=ui_shot, budget_ms=15000)
        assert ui_shot.stat().st_size > 20_000
        # wide enough that ag-grid renders every selected column (it leaves out those beyond the window)
        dom = chromium(browser, url, tmp_path / "p4", dump_dom=True, budget_ms=15000, width=3600)
        assert "smoke" in dom  # the experiment
        assert ">report<" in dom  # the report run with the artifacts
        for cell in plan.cells:  # every cell's parent run (its trials are nested under it)
            assert cell.id in dom, cell.id
        # the training view (not GenAI) with the study's columns: ag-grid names a column by its key
        assert "Model training" in dom
        for col in ("metrics.`test_f1`", "metrics.`val_f1`", "tags.`study.cell`"):
            assert f'col-id="{col}"' in dom, col
        # every top-level run (the cells' parents, the pretraining runs, the report run) is finished: its
        # status icon is the check mark, and no run shows the clock icon of a running one
        status = re.findall(r'role="gridcell" col-id="runDateAndNestInfo".*?<path[^>]*d="([^"]{0,11})', dom, flags=re.S)
        assert status and all(d == CHECK_ICON for d in status), status
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"screenshots: {shot} {ui_shot}")
