"""The report's statistics on tiny frames against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from study.reports import analysis
from study.reports.store import with_clean_in_every_kind


def _res(rows):
    return pd.DataFrame(rows, columns=["dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed", "test_f1"])


def test_holm_matches_hand_computation():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01=0.03, 2*0.02=0.04, 1*0.04=0.04 (monotone)
    adj = analysis.holm(np.array([0.04, 0.01, 0.02, np.nan]))
    np.testing.assert_allclose(adj[:3], [0.04, 0.03, 0.04])
    assert np.isnan(adj[3])
    np.testing.assert_allclose(analysis.holm(np.array([0.5, 0.6])), [1.0, 1.0])  # 2*0.5 caps the rest
    assert analysis.holm(np.array([0.9, 0.8])).max() <= 1.0


def test_auc_is_trapezoid_over_common_rates_per_seed():
    rows = []
    for seed in (0, 1):
        for r, a, b in ((0.0, 0.9, 0.9), (0.2, 0.8, 0.6), (0.4, 0.7, 0.3)):
            rows += [
                ("d", "symmetric", r, "simclr", "ce", seed, a + 0.01 * seed),
                ("d", "symmetric", r, "random", "ce", seed, b),
            ]
    rows.append(("d", "symmetric", 0.6, "simclr", "ce", 0, 0.1))  # only one method has 0.6: not used
    auc = analysis.auc_per_seed(_res(rows), "test_f1", "ssl", ["dataset", "noise_kind", "lnl"])
    s0 = auc[(auc.ssl == "simclr") & (auc.seed == 0)].iloc[0]
    assert s0.auc == pytest.approx(0.2 * (0.9 + 0.8) / 2 + 0.2 * (0.8 + 0.7) / 2)
    assert s0.auc_norm == pytest.approx(s0.auc / 0.4)
    assert s0.rates == "0,0.2,0.4"
    rank = analysis.ranking(auc, "ssl", ["dataset", "noise_kind", "lnl"])
    assert rank.set_index("ssl").loc["simclr", "rank"] == 1


def test_paired_tests_not_enough_seeds_and_t_test():
    auc = pd.DataFrame(
        {
            "g": "x",
            "ssl": ["a", "a", "a", "b", "b", "b", "c"],
            "seed": [0, 1, 2, 0, 1, 2, 0],
            "auc": [0.30, 0.32, 0.35, 0.20, 0.25, 0.24, 0.1],
        }
    )
    t = analysis.paired_tests(auc, "ssl", ["g"])
    ab = t[(t.method_a == "a") & (t.method_b == "b")].iloc[0]
    from scipy import stats

    ref = stats.ttest_rel([0.30, 0.32, 0.35], [0.20, 0.25, 0.24])
    assert ab.p_value == pytest.approx(ref.pvalue)
    assert ab.n_pairs == 3
    ac = t[(t.method_a == "a") & (t.method_b == "c")].iloc[0]
    assert ac.note == "not enough seeds" and not ac.significant and np.isnan(ac.p_value)
    # one tested pair in the family: Holm leaves its p as is
    assert ab.p_adjusted == pytest.approx(ref.pvalue)


def test_summary_table_marks_best_per_column_and_uses_sample_std():
    rows = [
        ("d", "s", 0.2, "a", "ce", 0, 0.5),
        ("d", "s", 0.2, "a", "ce", 1, 0.7),
        ("d", "s", 0.2, "b", "ce", 0, 0.4),
        ("d", "s", 0.2, "b", "ce", 1, 0.4),
    ]
    t = analysis.summary_table(_res(rows), "test_f1", ["ssl", "lnl"], ["dataset", "noise_kind", "noise_rate"])
    a = t[t.ssl == "a"].iloc[0]
    assert a["mean"] == pytest.approx(0.6) and a["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert a.best and not t[t.ssl == "b"].iloc[0].best
    wide = analysis.wide_table(t, ["ssl", "lnl"], ["dataset", "noise_kind", "noise_rate"])
    assert wide.loc[("a", "ce")].iloc[0] == "0.600 ± 0.141*"


def test_clean_runs_are_shared_by_every_noise_kind_and_drop_is_from_rate_0():
    rows = [
        ("d", "symmetric", 0.0, "a", "ce", 0, 0.9),
        ("d", "symmetric", 0.2, "a", "ce", 0, 0.8),
        ("d", "pairflip", 0.2, "a", "ce", 0, 0.6),
    ]
    both = with_clean_in_every_kind(_res(rows), ["symmetric", "pairflip"])
    assert len(both) == 4 and set(both[both.noise_rate == 0].noise_kind) == {"symmetric", "pairflip"}
    drop = analysis.drop_table(both, "test_f1", ["dataset", "ssl"], ["noise_kind", "lnl"])
    pf = drop[(drop.noise_kind == "pairflip") & (drop.noise_rate == 0.2)].iloc[0]
    assert pf["drop"] == pytest.approx(0.3)
