"""The label-efficiency panel on hand-made results, the store's expected grid with the axis, and the
report's missing points naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.reports import panels
from study.reports.definitions import LabelEfficiencyPanel, load_dashboard
from study.reports.report import missing_points
from study.reports.store import AXES, Study, expected_points, with_clean_in_every_kind

PANEL = LabelEfficiencyPanel(kind="label_efficiency", id="label_efficiency", title="F1 vs labels")
#: test F1 by (ssl, fraction) for seeds 0 and 1
F1 = {
    ("random", 0.1): (0.30, 0.40),
    ("random", 1.0): (0.60, 0.70),
    ("simclr", 0.1): (0.50, 0.70),
    ("simclr", 1.0): (0.80, 0.80),
}


def _spec(fractions: list[float] | None) -> dict:
    spec = {
        "name": "le",
        "datasets": [{"name": "synthetic"}],
        "noise": {"kinds": ["symmetric"], "rates": [0.4]},
        "ssl": [{"method": "random"}, {"method": "simclr"}],
        "lnl": [{"algorithm": "ce"}],
        "seeds": [0, 1],
    }
    return spec if fractions is None else {**spec, "labels": {"fractions": fractions}}


def _results(drop: tuple[str, float] | None = None) -> pd.DataFrame:
    rows = [
        ("synthetic", "symmetric", 0.4, f, ssl, "ce", seed, f1)
        for (ssl, f), values in F1.items()
        if (ssl, f) != drop
        for seed, f1 in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=[*AXES, "test_f1"])


def _ctx(spec: dict, res: pd.DataFrame) -> panels.Context:
    study = Study(Path("."), "sqlite:///none", "0", "le", spec)
    grid = study.expected_grid()
    assert grid is not None
    expected = with_clean_in_every_kind(expected_points(grid), grid["noise_kind"])
    return panels.Context(study, pd.DataFrame(), {"test_f1": res}, {"test_f1": res}, "final", expected)


def test_panel_draws_mean_and_spread_over_seeds_per_ssl_and_fraction():
    r = panels.render_label_efficiency(_ctx(_spec([0.1, 1.0]), _results()), PANEL)
    assert r.missing == [] and "label_efficiency.png" in r.pngs and "<img" in r.body
    st = r.csvs["label_efficiency.csv"].set_index(["ssl", "label_fraction"])
    assert st.loc[("simclr", 0.1), "mean"] == pytest.approx(0.60)
    assert st.loc[("simclr", 0.1), "std"] == pytest.approx(np.sqrt(0.02))  # (0.1² + 0.1²) / (2 - 1)
    assert st.loc[("random", 1.0), "mean"] == pytest.approx(0.65)
    assert st.loc[("simclr", 1.0), "std"] == pytest.approx(0.0)
    assert (st["n_seeds"] == 2).all() and len(st) == 4
    assert set(st.reset_index().columns) >= {"dataset", "noise_kind", "noise_rate", "lnl"}


def test_panel_lists_a_missing_fraction_of_a_line():
    r = panels.render_label_efficiency(_ctx(_spec([0.1, 1.0]), _results(drop=("random", 0.1))), PANEL)
    assert r.missing == [
        "F1 vs labels: no result for synthetic | symmetric | 0.4 | ce | random at labelled fraction 0.1"
    ]


def test_one_fraction_is_not_applicable_and_nothing_is_missing():
    res = _results()
    res = res[res["label_fraction"] == 1.0]
    for spec in (_spec(None), _spec([1.0]), _spec([0.5])):
        r = panels.render_label_efficiency(_ctx(spec, res), PANEL)
        assert "Not applicable" in r.body and r.missing == [] and r.pngs == {}


def test_expected_points_carry_the_fraction_and_missing_points_name_it():
    study = Study(Path("."), "sqlite:///none", "0", "le", _spec([0.1, 1.0]))
    grid = study.expected_grid()
    assert grid is not None and grid["label_fraction"] == [0.1, 1.0]
    assert len(expected_points(grid)) == 2 * 2 * 2  # fractions x ssl x seeds
    lines, counts = missing_points(study, pd.DataFrame(), _results(drop=("random", 0.1)), "final")
    assert counts == {"expected": 8, "present": 6, "running": 0, "scheduled": 0, "failed": 0, "killed": 0}
    assert lines == [
        "no finished final run: dataset=synthetic, noise_kind=symmetric, noise_rate=0.4, label_fraction=0.1, "
        "ssl=random, lnl=ce, seed 0, 1"
    ]
    # a study without labels expects every label, and its lines do not name the fraction
    old = Study(Path("."), "sqlite:///none", "0", "le", _spec(None))
    res = _results(drop=("random", 1.0))
    lines, _ = missing_points(old, pd.DataFrame(), res[res["label_fraction"] == 1.0], "final")
    assert lines == [
        "no finished final run: dataset=synthetic, noise_kind=symmetric, noise_rate=0.4, ssl=random, lnl=ce, seed 0, 1"
    ]


def test_subset_points_with_a_fraction_are_expected_at_it():
    spec = _spec([0.1, 1.0])
    point = {"dataset": "synthetic", "noise_kind": "symmetric", "noise_rate": 0.4, "ssl": "simclr", "lnl": "ce"}
    spec["subset"] = [{**point, "seed": 0, "label_fraction": 0.1}, {**point, "seed": 1}]
    grid = Study(Path("."), "sqlite:///none", "0", "le", spec).expected_grid()
    assert grid is not None
    assert expected_points(grid)[["label_fraction", "seed"]].values.tolist() == [[0.1, 0], [1.0, 1]]


def test_default_dashboard_ends_with_the_label_efficiency_panel():
    panel = load_dashboard().panels[-1]
    assert isinstance(panel, LabelEfficiencyPanel) and panel.line == "ssl"
    assert panel.facets == ["dataset", "noise_kind", "noise_rate", "lnl"]
