"""The numbers behind the report: pure pandas/scipy functions from per-seed results to tables.

Input everywhere is a "seed results" frame (``study.reports.store.seed_results``): one row per
(dataset, noise_kind, noise_rate, label_fraction, ssl, lnl, seed) with the metric in a column of its own name.
Standard deviations are sample standard deviations over seeds (ddof=1; NaN for one seed).
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from study.noise import recorded_source


def summary_table(
    res: pd.DataFrame, metric: str, rows: list[str], columns: list[str], best: str = "max"
) -> pd.DataFrame:
    """Long table: one row per rows × columns combination with ``mean``, ``std``, ``n_seeds`` and
    ``best`` (True for the best mean among the rows of each column; ties all marked)."""
    keys = [*columns, *rows]
    if res.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n_seeds", "best"])
    g = res.groupby(keys, dropna=False)[metric]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    target = out.groupby(columns, dropna=False)["mean"].transform("max" if best == "max" else "min")
    out["best"] = np.isclose(out["mean"], target, rtol=0, atol=1e-12)
    return out.sort_values(keys).reset_index(drop=True)


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def wide_table(
    long: pd.DataFrame, rows: list[str], columns: list[str], digits: int = 3, mark: str = "*"
) -> pd.DataFrame:
    """The papers' layout: rows × columns of "mean ± std", the best of each column suffixed with
    ``mark``; empty where a combination has no results."""
    if long.empty:
        return pd.DataFrame()
    cells = long.assign(
        text=[
            format_mean_std(m, s, digits) + (mark if b else "")
            for m, s, b in zip(long["mean"], long["std"], long["best"])
        ]
    )
    wide = cells.pivot_table(index=rows, columns=columns, values="text", aggfunc="first")
    return wide.fillna("")


def curve_stats(res: pd.DataFrame, metric: str, line: str, facets: list[str], x: str = "noise_rate") -> pd.DataFrame:
    """Per facet, line and x (``noise_rate``, or ``label_fraction`` for the label-efficiency panel): mean, std,
    min, max and count of the metric over seeds (and over the axes that are none of these)."""
    keys = [*facets, line, x]
    if res.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "min", "max", "n_seeds"])
    g = res.groupby(keys, dropna=False)[metric]
    return g.agg(mean="mean", std="std", min="min", max="max", n_seeds="count").reset_index()


def drop_table(
    res: pd.DataFrame, metric: str, rows: list[str], facets: list[str], baseline_rate: float = 0.0
) -> pd.DataFrame:
    """Mean metric at ``baseline_rate`` minus mean metric at each rate (over seeds), per facet and row.
    Rows without a baseline are left out (the report lists them as missing)."""
    keys = [*facets, *rows]
    cols = [*keys, "noise_rate", "baseline", "mean", "drop"]
    if res.empty:
        return pd.DataFrame(columns=cols)
    # average over the axes that are neither facet nor row (and over seeds)
    m = res.groupby([*keys, "noise_rate"], dropna=False)[metric].mean().rename("mean").reset_index()
    base = m[np.isclose(m["noise_rate"], baseline_rate)].drop(columns="noise_rate").rename(columns={"mean": "baseline"})
    out = m.merge(base, on=keys, how="inner")
    out["drop"] = out["baseline"] - out["mean"]
    return out[cols].sort_values([*keys, "noise_rate"]).reset_index(drop=True)


def auc_per_seed(res: pd.DataFrame, metric: str, method: str, groups: list[str], x: str = "noise_rate") -> pd.DataFrame:
    """Area under metric-vs-rate by the trapezoid rule, per group, method and seed.

    Within a group the curve is taken over the rates that every method has results at (so methods are
    compared over the same range); a (method, seed) missing one of those rates gets no area. ``auc_norm``
    is the area divided by the rate span: the mean metric over the range, comparable across groups.
    Groups with fewer than two common rates have no area."""
    cols = [*groups, method, "seed", "auc", "auc_norm", "rates"]
    out = []
    if res.empty:
        return pd.DataFrame(columns=cols)
    for gkey, g in res.groupby(groups, dropna=False):
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        per_method = g.groupby(method)[x].apply(lambda s: set(np.round(s, 9)))
        common = sorted(set.intersection(*per_method.tolist())) if len(per_method) else []
        if len(common) < 2:
            continue
        span = common[-1] - common[0]
        for (mval, seed), s in g.groupby([method, "seed"]):
            curve = s.assign(_x=np.round(s[x], 9)).drop_duplicates("_x").set_index("_x")[metric]
            if not all(r in curve.index for r in common):
                continue
            y = curve.loc[common].to_numpy(dtype=float)
            area = float(np.trapezoid(y, common))
            out.append((*gkey, mval, int(seed), area, area / span, ",".join(f"{r:g}" for r in common)))
    return pd.DataFrame(out, columns=cols)


def ranking(auc: pd.DataFrame, method: str, groups: list[str]) -> pd.DataFrame:
    """Methods ranked within each group by mean area (1 = most robust)."""
    cols = [*groups, "rank", method, "auc_mean", "auc_std", "auc_norm_mean", "n_seeds"]
    if auc.empty:
        return pd.DataFrame(columns=cols)
    g = auc.groupby([*groups, method], dropna=False)
    r = g.agg(
        auc_mean=("auc", "mean"), auc_std=("auc", "std"), auc_norm_mean=("auc_norm", "mean"), n_seeds=("auc", "count")
    ).reset_index()
    r["rank"] = r.groupby(groups, dropna=False)["auc_mean"].rank(ascending=False, method="min").astype(int)
    return r.sort_values([*groups, "rank", method])[cols].reset_index(drop=True)


def ranking_by_kind(res: pd.DataFrame, metric: str, method: str, groups: list[str]) -> pd.DataFrame:
    """Methods ranked separately within each noise kind: does a method (an SSL initialisation) help more
    under one kind of noise than under another (the papers' finding that SSL helps more under symmetric
    than class-dependent noise, as a table)?

    In each group (``groups``, with ``noise_kind`` among them) a method's score is its metric averaged over
    the kind's noisy settings that every method of the group has (a synthetic kind: its rates above 0; a
    recorded source ``recorded:<source>``: its one setting) and over seeds; methods are ranked by score
    (1 = best). Per (noise kind, method): the mean rank over the kind's groups, the mean score, and how many
    groups it was ranked in."""
    cols = ["noise_kind", method, "mean_rank", "mean_score", "groups"]
    if res.empty:
        return pd.DataFrame(columns=cols)
    keys = list(dict.fromkeys(["noise_kind", *groups]))
    recorded = res["noise_kind"].astype(str).map(recorded_source).notna()
    noisy = res[recorded | (res["noise_rate"] > 0)]
    rows = []
    for gkey, g in noisy.groupby(keys, dropna=False):
        per_method = g.groupby(method)["noise_rate"].apply(lambda s: set(np.round(s, 9)))
        common = set.intersection(*per_method.tolist()) if len(per_method) > 1 else set()
        if not common:
            continue
        kept = g[np.round(g["noise_rate"], 9).isin(common)]
        score = kept.groupby(method)[metric].mean()
        rank = score.rank(ascending=False, method="min")
        kind = gkey[keys.index("noise_kind")] if isinstance(gkey, tuple) else gkey
        rows += [(kind, m, float(rank[m]), float(score[m])) for m in score.index]
    if not rows:
        return pd.DataFrame(columns=cols)
    ranked = pd.DataFrame(rows, columns=["noise_kind", method, "rank", "score"])
    out = (
        ranked.groupby(["noise_kind", method])
        .agg(mean_rank=("rank", "mean"), mean_score=("score", "mean"), groups=("rank", "count"))
        .reset_index()
    )
    return out.sort_values(["noise_kind", "mean_rank", method])[cols].reset_index(drop=True)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down; monotone; capped at 1). NaNs stay NaN."""
    p = np.asarray(p, dtype=float)
    adj = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return adj
    order = np.argsort(q)
    stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
    res = np.empty(m)
    res[order] = np.minimum(stepped, 1.0)
    adj[ok] = res
    return adj


def paired_tests(
    auc: pd.DataFrame,
    method: str,
    groups: list[str],
    test: str = "paired_t",
    correction: str = "holm",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every pair of methods within each group, paired on the seeds both have.

    Test: by default a two-sided paired t-test on the per-seed areas (scipy.stats.ttest_rel). Studies
    run 3 to 5 seeds; the exact Wilcoxon signed-rank test cannot reach p < 0.05 with fewer than 6 pairs
    (its smallest two-sided p is 2/2^n), so it would never call a difference significant here. The t-test
    assumes roughly normal seed-to-seed differences, which holds well enough for areas that average
    several rates; ``wilcoxon`` is available for larger seed counts.
    Correction: Holm-Bonferroni within each group (the family is that group's pairs). It controls the
    family-wise error rate under any dependence between the tests (the pairs share methods, so they are
    dependent) and is uniformly more powerful than plain Bonferroni.
    Pairs with fewer than 2 common seeds are not tested: ``note`` says "not enough seeds"."""
    cols = [
        *groups,
        "method_a",
        "method_b",
        "n_pairs",
        "mean_diff",
        "statistic",
        "p_value",
        "p_adjusted",
        "significant",
        "note",
    ]
    rows = []
    if auc.empty:
        return pd.DataFrame(columns=cols)
    for gkey, g in auc.groupby(groups, dropna=False):
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        wide = g.pivot_table(index="seed", columns=method, values="auc", aggfunc="first")
        block = []
        for a, b in itertools.combinations(sorted(wide.columns), 2):
            pair = wide[[a, b]].dropna()
            n = len(pair)
            d = (pair[a] - pair[b]).to_numpy()
            stat, p, note = np.nan, np.nan, ""
            if n < 2:
                note = "not enough seeds"
            elif np.allclose(d, 0):
                p, note = 1.0, "identical"
            elif np.allclose(d, d[0]):
                note = "constant difference: no seed-to-seed variance to test against"
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = stats.ttest_rel(pair[a], pair[b]) if test == "paired_t" else stats.wilcoxon(d)
                stat, p = float(r.statistic), float(r.pvalue)
            block.append([*gkey, a, b, n, float(d.mean()) if n else np.nan, stat, p, note])
        ps = np.array([r[-2] for r in block], dtype=float)
        adj = (
            holm(ps)
            if correction == "holm"
            else (np.minimum(ps * np.sum(~np.isnan(ps)), 1.0) if correction == "bonferroni" else ps)
        )
        for r, pa in zip(block, adj):
            rows.append([*r[:-1], pa, bool(pa < alpha) if not np.isnan(pa) else False, r[-1]])
    return pd.DataFrame(rows, columns=cols)


def pretrain_vs_robustness(
    runs: pd.DataFrame, auc: pd.DataFrame, quality_metric: str = "knn_acc", method: str = "ssl"
) -> pd.DataFrame:
    """One row per encoder (dataset × SSL method): the quality metric of its finished pretraining runs
    (mean over pretraining seeds) and its robustness (mean ``auc_norm`` over noise kinds, LNL algorithms
    and seeds). Encoders with only one of the two are kept, with NaN for the other."""
    cols = ["dataset", method, "quality", "n_pretrain_runs", "robustness", "n_auc"]
    q = pd.DataFrame(columns=["dataset", method, "quality", "n_pretrain_runs"])
    if not runs.empty and quality_metric in runs.columns:
        pre = runs[(runs["stage"] == "pretrain") & (runs["status"] == "FINISHED") & runs[quality_metric].notna()]
        if not pre.empty:
            q = (
                pre.groupby(["dataset", method])[quality_metric]
                .agg(quality="mean", n_pretrain_runs="count")
                .reset_index()
            )
    r = pd.DataFrame(columns=["dataset", method, "robustness", "n_auc"])
    if not auc.empty:
        r = auc.groupby(["dataset", method])["auc_norm"].agg(robustness="mean", n_auc="count").reset_index()
    if q.empty and r.empty:
        return pd.DataFrame(columns=cols)
    out = q.merge(r, on=["dataset", method], how="outer")
    return out[cols].sort_values(["dataset", method]).reset_index(drop=True)
