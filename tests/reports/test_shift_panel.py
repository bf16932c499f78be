"""The in-distribution against shifted-test panel on a hand-made results frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.reports.definitions import ShiftPanel, load_dashboard
from study.reports.panels import RENDERERS, Context, render_shift, shift_table
from study.reports.store import Study

PANEL = ShiftPanel(id="shift", kind="shift", title="Shift", metrics=["f1", "auroc"], rows=["dataset", "ssl"])


def _runs() -> pd.DataFrame:
    """Two SSL methods x two seeds on one dataset; one run without a shifted test; a parent and a failed run."""
    rows = []
    values = {  # (ssl, seed): test_f1, shifted_test_f1, test_auroc, shifted_test_auroc
        ("simclr", 0): (0.80, 0.60, 0.90, 0.70),
        ("simclr", 1): (0.70, 0.60, 0.80, 0.80),
        ("random", 0): (0.60, 0.30, 0.70, 0.50),
        ("random", 1): (0.50, 0.40, 0.60, np.nan),  # AUROC undefined on the shifted set: not logged
    }
    for i, ((ssl, seed), (tf, sf, ta, sa)) in enumerate(values.items()):
        rows.append(
            dict(
                run_id=f"r{i}",
                stage="final",
                status="FINISHED",
                is_parent=False,
                start_time=i,
                dataset="covid",
                noise_kind="symmetric",
                noise_rate=0.2,
                label_fraction=1.0,
                ssl=ssl,
                lnl="ce",
                seed=seed,
                test_f1=tf,
                shifted_test_f1=sf,
                test_auroc=ta,
                shifted_test_auroc=sa,
            )
        )
    extra = dict(rows[0], run_id="parent", is_parent=True, test_f1=0.0, shifted_test_f1=1.0)
    failed = dict(rows[0], run_id="failed", status="FAILED", seed=2, test_f1=0.0, shifted_test_f1=1.0)
    return pd.DataFrame([*rows, extra, failed])


def _ctx(spec: dict) -> Context:
    study = Study(Path("."), "sqlite://", "0", "x", spec)
    return Context(study, _runs(), {}, {}, "final", None)


SHIFTED_SPEC = {"datasets": [{"name": "covid_qu_ex", "shifted_test": {"name": "folder"}}]}


def test_shift_table_means_over_seeds_by_hand():
    t = shift_table(_runs(), "final", ["f1", "auroc"], ["dataset", "ssl"]).set_index(["ssl", "metric"])
    assert t.loc[("simclr", "f1"), "test"] == pytest.approx(0.75)
    assert t.loc[("simclr", "f1"), "shifted"] == pytest.approx(0.60)
    assert t.loc[("simclr", "f1"), "drop"] == pytest.approx(0.15)
    assert t.loc[("random", "f1"), "drop"] == pytest.approx(((0.6 - 0.3) + (0.5 - 0.4)) / 2)
    assert t.loc[("simclr", "auroc"), "drop"] == pytest.approx((0.2 + 0.0) / 2)
    # random's seed 1 has no shifted AUROC: its AUROC row holds seed 0 only
    assert t.loc[("random", "auroc"), "test"] == pytest.approx(0.70)
    assert t.loc[("random", "auroc"), "n_runs"] == 1 and t.loc[("random", "f1"), "n_runs"] == 2


def test_shift_panel_renders_table_and_figure():
    r = render_shift(_ctx(SHIFTED_SPEC), PANEL)
    assert not r.missing
    assert "shift.png" in r.pngs and "shift.csv" in r.csvs
    assert len(r.csvs["shift.csv"]) == 4  # 2 SSL methods x 2 metrics
    assert "drop = test minus shifted test" in r.body


def test_shift_panel_not_applicable_without_a_shifted_test():
    r = render_shift(_ctx({"datasets": [{"name": "covid_qu_ex"}]}), PANEL)
    assert "Not applicable" in r.body and not r.missing and not r.pngs


def test_shift_panel_missing_when_a_shifted_test_has_no_results():
    ctx = _ctx(SHIFTED_SPEC)
    ctx.runs = ctx.runs.drop(columns=["shifted_test_f1", "shifted_test_auroc"])
    r = render_shift(ctx, PANEL)
    assert r.missing and "shifted_test_f1" in r.missing[0]


def test_default_dashboard_has_the_shift_panel():
    dash = load_dashboard()
    panel = next(p for p in dash.panels if p.kind == "shift")
    assert panel.metrics == ["f1", "auroc"] and "ssl" in panel.rows
    assert RENDERERS["shift"] is render_shift


def test_fabricated_study_without_shifted_test_gets_a_neutral_note(partial_report):
    page = partial_report.html_path.read_text()
    assert "Not applicable: no dataset of this study has a shifted test set." in page
    assert not [m for m in partial_report.missing if m.startswith("In-distribution against shifted test")]
    assert not (partial_report.out_dir / "shift.png").exists()
