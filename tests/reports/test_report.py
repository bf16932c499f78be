"""``study report`` on a fabricated partial study: its tables against an independent pandas computation
over the MLflow runs, what it says is missing, the HTML page and the MLflow report run."""

from __future__ import annotations

import argparse
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from study.reports.cli import report_main
from study.reports.definitions import DASHBOARDS_DIR
from study.reports.report import make_report


def _final_runs(study_dir) -> pd.DataFrame:
    """Finished, active stage-final runs straight from MLflow, independently of study.reports.store."""
    mlflow.set_tracking_uri(f"sqlite:///{study_dir / 'mlflow.db'}")
    exp = mlflow.get_experiment_by_name("fabricated")
    df = mlflow.search_runs(
        [exp.experiment_id], filter_string="tags.`study.stage` = 'final' and attributes.status = 'FINISHED'"
    )
    return pd.DataFrame(
        {
            "dataset": df["tags.dataset"],
            "noise_kind": df["tags.noise_kind"],
            "noise_rate": df["tags.noise_rate"].astype(float),
            "ssl": df["tags.ssl"],
            "lnl": df["tags.lnl"],
            "seed": df["tags.seed"].astype(int),
            "f1": df["metrics.test_f1"],
        }
    )


def test_table_matches_pandas_over_mlflow_runs(partial_study, partial_report):
    ref = (
        _final_runs(partial_study)
        .groupby(["dataset", "noise_kind", "noise_rate", "ssl", "lnl"])["f1"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    got = pd.read_csv(partial_report.out_dir / "f1_table.csv")
    m = ref.merge(got, on=["dataset", "noise_kind", "noise_rate", "ssl", "lnl"], how="outer", indicator=True)
    assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"]
    np.testing.assert_allclose(m["mean_x"], m["mean_y"], rtol=1e-9)
    np.testing.assert_allclose(m["std_x"], m["std_y"], rtol=1e-9)
    assert (m["count"] == m["n_seeds"]).all()
    # 2 datasets x 5 noise settings x 3 SSL x 2 LNL, less the dropped covid/moco_v2/ce/0.4 cell in 2 kinds
    assert len(got) == 60 - 2
    # tuning trials (test_f1 0.01) and the crashed run (0.99) never count
    assert got["mean"].between(0.2, 0.98).all()
    # best per column: the highest mean among the (ssl, lnl) rows of each (dataset, kind, rate)
    best = got.loc[got.groupby(["dataset", "noise_kind", "noise_rate"])["mean"].idxmax()]
    assert best["best"].all() and got["best"].sum() == len(best)
    wide = pd.read_csv(partial_report.out_dir / "f1_table_wide.csv")
    assert wide.astype(str).apply(lambda c: c.str.endswith("*")).to_numpy().sum() == len(best)


def test_ranking_auc_matches_trapezoid_over_mlflow_runs(partial_study, partial_report):
    runs = _final_runs(partial_study)
    clean = runs[runs.noise_rate == 0].assign(noise_kind="class_dependent")
    runs = pd.concat([runs, clean])
    g = runs[(runs.dataset == "dermnet") & (runs.noise_kind == "class_dependent") & (runs.lnl == "ce")]
    auc = pd.read_csv(partial_report.out_dir / "ssl_ranking_auc_per_seed.csv")
    for (ssl, seed), s in g.groupby(["ssl", "seed"]):
        s = s.sort_values("noise_rate")
        want = np.trapezoid(s["f1"], s["noise_rate"])
        row = auc[
            (auc.dataset == "dermnet")
            & (auc.noise_kind == "class_dependent")
            & (auc.lnl == "ce")
            & (auc.ssl == ssl)
            & (auc.seed == seed)
        ]
        assert row["auc"].item() == pytest.approx(want)
    tests = pd.read_csv(partial_report.out_dir / "ssl_ranking_tests.csv")
    assert len(tests) == 8 * 3  # 2 datasets x 2 kinds x 2 LNL groups, 3 pairs each
    assert {"p_value", "p_adjusted", "significant"} <= set(tests.columns)
    assert (tests["p_adjusted"].dropna() >= tests["p_value"].dropna() - 1e-12).all()
    # random is far less robust than simclr in the fabricated data: some pair is significant
    assert tests["significant"].any()


def test_partial_study_says_what_is_missing(partial_report):
    text = "\n".join(partial_report.missing)
    assert "dataset=covid_qu_ex, noise_kind=symmetric, noise_rate=0.4, ssl=moco_v2, lnl=ce, seed 0, 1, 2" in text
    assert "dataset=dermnet, noise_kind=symmetric, noise_rate=0.2, ssl=simclr, lnl=co_teaching, seed 2" in text
    assert "FAILED: final-crashed" in text and "RUNNING: final-running" in text
    assert partial_report.counts["expected"] == 180 and partial_report.counts["present"] == 180 - 7
    page = partial_report.html_path.read_text()
    assert "173 of 180 expected" in page


def test_dashboard_is_self_contained_with_every_panel(partial_study, partial_report):
    page = partial_report.html_path.read_text()
    for panel in yaml.safe_load((DASHBOARDS_DIR / "default.yaml").read_text())["panels"]:
        assert f'data-panel="{panel["id"]}"' in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5
    assert not re.search(r'(src|href)="(https?:)?//', page)
    for f in ("robustness_curves.png", "f1_drop.png", "ssl_ranking.png", "pretrain_quality.png", "selection.png"):
        assert (partial_report.out_dir / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pts = pd.read_csv(partial_report.out_dir / "pretrain_quality.csv")
    assert set(pts.dropna(subset=["quality"])["ssl"]) == {"simclr", "moco_v2"}


def test_report_run_holds_the_artifacts_and_is_reused(partial_study, partial_report, tmp_path):
    client = mlflow.tracking.MlflowClient(f"sqlite:///{partial_study / 'mlflow.db'}")
    exp = client.get_experiment_by_name("fabricated").experiment_id
    names = {f.path for f in client.list_artifacts(partial_report.run_id, "report")}
    assert {"report/dashboard.html", "report/f1_table.csv", "report/robustness_curves.png"} <= names
    one = tmp_path / "one.yaml"
    one.write_text("panels:\n  - {id: t, kind: table, title: T}\n")
    again = make_report(partial_study, out=tmp_path / "out", dashboard=one)
    assert again.run_id == partial_report.run_id
    runs = client.search_runs([exp], filter_string="tags.`study.stage` = 'report'")
    assert len(runs) == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "dashboard.html",
        "manifest.json",
        "missing.txt",
        "t.csv",
        "t_wide.csv",
    ]


def test_exit_code_2_when_not_a_study(tmp_path, capsys):
    assert report_main(argparse.Namespace(study_dir=str(tmp_path / "nope"), out=None)) == 2
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "spec.yaml").write_text("name: s\n")
    assert report_main(argparse.Namespace(study_dir=str(tmp_path / "s"), out=None)) == 2
    assert "no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "s" / "report").exists()


def test_bad_dashboard_definition_names_the_field(partial_study, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("panels:\n  - {id: t, kind: table, title: T, colums: [ssl]}\n")
    args = argparse.Namespace(study_dir=str(partial_study), out=str(tmp_path / "o"), dashboard=str(bad))
    assert report_main(args) == 2
    assert "panels.0.table.colums" in capsys.readouterr().err
