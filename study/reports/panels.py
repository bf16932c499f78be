"""One renderer per panel kind of a dashboard definition: numbers from ``analysis``, figures with
matplotlib (Agg), and an HTML fragment for the dashboard page. ``RENDERERS`` maps kind to renderer."""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from study.reports import analysis
from study.reports.definitions import (
    CurvesPanel,
    DropHeatmapPanel,
    LabelEfficiencyPanel,
    PretrainPanel,
    RankingPanel,
    SelectionPanel,
    ShiftPanel,
    TablePanel,
)
from study.reports.store import AXES, Study, metric_histories, seed_results


@dataclass
class Context:
    """What every renderer reads: the study, its runs, and per-seed results of the dashboard's stage."""

    study: Study
    runs: pd.DataFrame
    #: {metric: seed results as stored (rate 0 under the kind that ran it)}
    results: dict[str, pd.DataFrame]
    #: {metric: seed results with rate 0 copied into every noise kind}
    curves: dict[str, pd.DataFrame]
    stage: str = "final"
    #: the points the spec asks for (its subset, if it has one), rate 0 copied into every kind; None
    #: without a readable spec. A panel lists as missing only what these points would have given it.
    expected: pd.DataFrame | None = None

    def expects(self, keys: list[str], rate: float | None = None) -> set[tuple] | None:
        """The ``keys`` combinations the expected points hold (at ``rate`` only, where given); None
        (everything is expected) without a spec."""
        if self.expected is None:
            return None
        exp = self.expected
        if rate is not None:
            exp = exp[np.isclose(exp["noise_rate"].astype(float), rate)]
        return {tuple(row) for row in exp[keys].drop_duplicates().itertuples(index=False)}


@dataclass
class Rendered:
    id: str
    title: str
    description: str
    body: str = ""  # HTML fragment
    pngs: dict[str, bytes] = field(default_factory=dict)
    csvs: dict[str, pd.DataFrame] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- helpers


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def img_tag(name: str, data: bytes) -> str:
    b64 = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img class="figure" alt="{html.escape(name)}" data-name="{html.escape(name)}" '
        f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(name)}</figcaption></figure>'
    )


def _facet_label(keys: list[str], values) -> str:
    values = values if isinstance(values, tuple) else (values,)
    return " | ".join(f"{v}" for k, v in zip(keys, values))


def _grid(n: int, ncols: int = 4, w: float = 3.6, h: float = 2.9):
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows + 0.6), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _empty(r: Rendered, why: str) -> Rendered:
    r.body = f'<p class="missing">Nothing to show: {html.escape(why)}</p>'
    r.missing.append(f"{r.title}: {why}")
    return r


def df_html(df: pd.DataFrame, float_digits: int = 3, classes: str = "data") -> str:
    return df.to_html(
        index=False, classes=classes, border=0, na_rep="—", float_format=lambda x: f"{x:.{float_digits}f}", escape=True
    )


def _metric_missing(ctx: Context, metric: str) -> str | None:
    res = ctx.results.get(metric)
    if res is None or res.empty:
        return f"no finished '{ctx.stage}' runs with metric {metric!r} yet"
    return None


# ---------------------------------------------------------------- renderers


def render_table(ctx: Context, p: TablePanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    if why := _metric_missing(ctx, p.metric):
        return _empty(r, why)
    long = analysis.summary_table(ctx.results[p.metric], p.metric, p.rows, p.columns, p.best)
    wide = analysis.wide_table(long, p.rows, p.columns, mark="*")
    r.csvs[f"{p.id}.csv"] = long
    flat = wide.copy()
    flat.columns = [" / ".join(str(x) for x in (c if isinstance(c, tuple) else (c,))) for c in flat.columns]
    r.csvs[f"{p.id}_wide.csv"] = flat.reset_index()
    # HTML: the best of each column in bold instead of the "*"
    body = wide.map(lambda s: f"<b>{html.escape(s[:-1])}</b>" if s.endswith("*") else html.escape(s))
    r.body = (
        body.to_html(escape=False, classes="data paper", border=0)
        + f'<p class="note">n seeds per cell: {int(long["n_seeds"].min())}–{int(long["n_seeds"].max())}. '
        f"Bold: best {p.best} mean in its column. CSV: {p.id}.csv (numbers), {p.id}_wide.csv.</p>"
    )
    return r


def render_curves(ctx: Context, p: CurvesPanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    if why := _metric_missing(ctx, p.metric):
        return _empty(r, why)
    st = analysis.curve_stats(ctx.curves[p.metric], p.metric, p.line, p.facets)
    r.csvs[f"{p.id}.csv"] = st
    r.pngs[f"{p.id}.png"] = _png(_lines_figure(st, p.metric, p.line, p.facets, ("noise_rate", "noise rate"), p.spread))
    r.body = img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"])
    return r


def _lines_figure(st: pd.DataFrame, metric: str, line: str, facets: list[str], x: tuple[str, str], spread: str):
    """One subplot per facet of ``curve_stats`` output: the mean against ``x`` (column, axis label), one line
    per ``line`` value, the seed spread (``std`` or ``minmax``) as a band."""
    xcol, xlabel = x
    groups = list(st.groupby(facets, dropna=False))
    lines = sorted(st[line].dropna().unique())
    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(lines)}
    fig, axes = _grid(len(groups))
    for ax, (key, g) in zip(axes, groups):
        for lv, s in g.groupby(line):
            s = s.sort_values(xcol)
            ax.plot(s[xcol], s["mean"], marker="o", ms=3, color=colors[lv], label=str(lv))
            lo, hi = (
                (s["mean"] - s["std"].fillna(0), s["mean"] + s["std"].fillna(0))
                if spread == "std"
                else (s["min"], s["max"])
            )
            ax.fill_between(s[xcol], lo, hi, color=colors[lv], alpha=0.18, linewidth=0)
        ax.set_title(_facet_label(facets, key), fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors[v], marker="o", label=str(v)) for v in lines]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(lines), 8), fontsize=8, title=line)
    return fig


def render_drop_heatmap(ctx: Context, p: DropHeatmapPanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    if why := _metric_missing(ctx, p.metric):
        return _empty(r, why)
    res = ctx.curves[p.metric]
    drop = analysis.drop_table(res, p.metric, p.rows, p.facets, p.baseline_rate)
    have = res.groupby([*p.facets, *p.rows], dropna=False).size().index
    with_base = drop.groupby([*p.facets, *p.rows], dropna=False).size().index
    expected_base = ctx.expects([*p.facets, *p.rows], p.baseline_rate)
    for k in have.difference(with_base):
        if expected_base is not None and (k if isinstance(k, tuple) else (k,)) not in expected_base:
            continue  # the spec (a smoke run's subset) never asked for this group's baseline
        r.missing.append(f"{p.title}: no rate-{p.baseline_rate:g} results for " + _facet_label([*p.facets, *p.rows], k))
    if drop.empty:
        return _empty(r, f"no results at the baseline rate {p.baseline_rate:g}")
    r.csvs[f"{p.id}.csv"] = drop
    groups = list(drop.groupby(p.facets, dropna=False))
    vmax = max(float(np.nanmax(np.abs(drop["drop"].to_numpy()))), 1e-6)
    nrows_max = max(g.groupby(p.rows).ngroups for _, g in groups)
    fig, axes = _grid(len(groups), ncols=2, w=5.2, h=0.9 + 0.32 * nrows_max)
    im = None
    for ax, (key, g) in zip(axes, groups):
        m = g.pivot_table(index=p.rows, columns="noise_rate", values="drop", aggfunc="first")
        im = ax.imshow(m.to_numpy(dtype=float), cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
        ax.set_xticks(range(m.shape[1]), [f"{c:g}" for c in m.columns], fontsize=7)
        ax.set_yticks(
            range(m.shape[0]), [" / ".join(map(str, i if isinstance(i, tuple) else (i,))) for i in m.index], fontsize=7
        )
        for (i, j), v in np.ndenumerate(m.to_numpy(dtype=float)):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6)
        ax.set_xlabel("noise rate", fontsize=8)
        ax.set_title(_facet_label(p.facets, key), fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes[: len(groups)], shrink=0.8, label=f"{p.metric} lost")
    r.pngs[f"{p.id}.png"] = _png(fig)
    r.body = img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"])
    return r


def _auc(ctx: Context, metric: str, method: str, groups: list[str]) -> pd.DataFrame:
    res = ctx.curves.get(metric)
    if res is None or res.empty:
        return pd.DataFrame()
    return analysis.auc_per_seed(res, metric, method, groups)


def render_ranking(ctx: Context, p: RankingPanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    if why := _metric_missing(ctx, p.metric):
        return _empty(r, why)
    auc = _auc(ctx, p.metric, p.method, p.groups)
    by_kind = analysis.ranking_by_kind(ctx.results.get(p.metric, pd.DataFrame()), p.metric, p.method, p.groups)
    if not by_kind.empty:
        r.csvs[f"{p.id}_by_noise_kind.csv"] = by_kind
    if auc.empty:
        if by_kind.empty:
            return _empty(r, "no group has results at two or more common noise rates")
        r.body = _by_kind_html(by_kind, p)
        return r
    rank = analysis.ranking(auc, p.method, p.groups)
    tests = analysis.paired_tests(auc, p.method, p.groups, p.test, p.correction, p.alpha)
    r.csvs[f"{p.id}_auc_per_seed.csv"] = auc
    r.csvs[f"{p.id}.csv"] = rank
    r.csvs[f"{p.id}_tests.csv"] = tests
    # overall: mean rank over groups
    overall = (
        rank.groupby(p.method)["rank"].agg(mean_rank="mean", groups="count").reset_index().sort_values("mean_rank")
    )
    overall_norm = auc.groupby(p.method)["auc_norm"].mean().rename("mean_auc_norm")
    overall = overall.merge(overall_norm, on=p.method)
    r.csvs[f"{p.id}_overall.csv"] = overall
    fig, ax = plt.subplots(figsize=(5.5, 0.8 + 0.35 * len(overall)), layout="constrained")
    order = overall.sort_values("mean_rank", ascending=False)
    ax.barh(order[p.method].astype(str), order["mean_rank"], color="#4c72b0")
    ax.set_xlabel(f"mean rank over {int(overall['groups'].max())} groups (1 = most robust)", fontsize=8)
    ax.tick_params(labelsize=8)
    r.pngs[f"{p.id}.png"] = _png(fig)
    n_sig = int(tests["significant"].sum())
    n_nes = int((tests["note"] == "not enough seeds").sum())
    tested = tests[tests["note"] != "not enough seeds"]
    sig = tests[tests["significant"]]
    r.body = (
        img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"])
        + "<h4>Overall</h4>"
        + df_html(overall)
        + _by_kind_html(by_kind, p)
        + "<h4>Per group</h4>"
        + df_html(rank)
        + f"<h4>Paired tests ({'paired t-test' if p.test == 'paired_t' else 'Wilcoxon signed-rank'}, "
        f"{p.correction} correction per group, alpha {p.alpha:g})</h4>"
        + f'<p class="note">{len(tested)} pairs tested, {n_sig} significant; {n_nes} pairs: '
        f"not enough seeds (fewer than 2 paired seeds).</p>"
        + ("<h5>Significant differences</h5>" + df_html(sig, 4) if n_sig else "")
        + "<details><summary>All pairs</summary>"
        + df_html(tests, 4)
        + "</details>"
    )
    return r


def _by_kind_html(by_kind: pd.DataFrame, p: RankingPanel) -> str:
    """The ranking within each noise kind (``analysis.ranking_by_kind``): mean rank, one column per kind."""
    if by_kind.empty:
        return ""
    wide = by_kind.pivot_table(index=p.method, columns="noise_kind", values="mean_rank", aggfunc="first")
    wide = wide.reindex(wide.mean(axis=1).sort_values().index)
    return (
        "<h4>By noise kind</h4>"
        + f'<p class="note">{p.method} ranked separately within each noise kind (1 = best): mean rank over the '
        f"kind's groups, by the mean {p.metric} over its noisy settings (a recorded label source: its one "
        "setting) and seeds.</p>" + df_html(wide.reset_index(), 2)
    )


def _trains(ctx: Context, ssl: str) -> bool:
    """Whether the SSL entry ``ssl`` (its id) pretrains, so has a kNN accuracy to plot: initialisations
    (random, ImageNet, a weight file) do not. Without a spec, an entry counts as pretraining."""
    from study.ssl import METHODS

    grid = ctx.study.expected_grid()
    method = (grid or {}).get("ssl_method", {}).get(ssl, ssl)
    return method not in METHODS or METHODS[method].trains


def render_pretrain(ctx: Context, p: PretrainPanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    auc = _auc(ctx, p.metric, "ssl", ["dataset", "noise_kind", "lnl"])
    pts = analysis.pretrain_vs_robustness(ctx.runs, auc, p.quality_metric, "ssl")
    robust_expected = None  # the encoders whose expected points make a complete curve; None: all
    if ctx.expected is not None:
        full = analysis.auc_per_seed(ctx.expected.assign(_one=1.0), "_one", "ssl", ["dataset", "noise_kind", "lnl"])
        robust_expected = {tuple(x) for x in full[["dataset", "ssl"]].drop_duplicates().itertuples(index=False)}
    if pts.empty:
        return _empty(r, f"no pretraining runs with {p.quality_metric!r} and no robustness results yet")
    r.csvs[f"{p.id}.csv"] = pts
    for _, row in pts.iterrows():
        if pd.isna(row["quality"]) and _trains(ctx, row["ssl"]):
            r.missing.append(
                f"{p.title}: no finished pretraining run with {p.quality_metric} for {row['dataset']} / {row['ssl']}"
            )
        if pd.isna(row["robustness"]) and (robust_expected is None or (row["dataset"], row["ssl"]) in robust_expected):
            r.missing.append(
                f"{p.title}: no robustness (complete F1-vs-rate curve) for {row['dataset']} / {row['ssl']}"
            )
    both = pts.dropna(subset=["quality", "robustness"])
    if both.empty:
        r.body = (
            df_html(pts) + '<p class="missing">No encoder has both a pretraining score and a robustness score yet.</p>'
        )
        return r
    fig, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
    markers = "osD^v<>P*X"
    for i, (ds, g) in enumerate(both.groupby("dataset")):
        ax.scatter(g["quality"], g["robustness"], marker=markers[i % len(markers)], s=40, label=str(ds))
        for _, row in g.iterrows():
            ax.annotate(
                str(row["ssl"]),
                (row["quality"], row["robustness"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel(f"{p.quality_metric} (pretraining)", fontsize=9)
    ax.set_ylabel(f"robustness: mean normalised AUC of {p.metric}", fontsize=9)
    ax.legend(fontsize=8, title="dataset")
    ax.grid(alpha=0.3)
    r.pngs[f"{p.id}.png"] = _png(fig)
    r.body = img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"]) + df_html(pts)
    return r


def _selecting(ctx: Context) -> list[str] | None:
    """The study's LNL entries whose algorithm selects samples; None without a readable spec."""
    from study.lnl import ALGORITHMS

    grid = ctx.study.expected_grid()
    if grid is None:
        return None
    names = grid["lnl_algorithm"]
    return [k for k, a in names.items() if a in ALGORITHMS and ALGORITHMS[a].selects_samples]


def render_selection(ctx: Context, p: SelectionPanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    if _selecting(ctx) == []:  # not applicable: a neutral note, nothing missing
        r.body = '<p class="note">Not applicable: none of this study\'s LNL algorithms selects samples.</p>'
        return r
    runs = ctx.runs
    present = [m for m in p.metrics if m in runs.columns]
    if runs.empty or not present:
        return _empty(r, f"no run logged {', '.join(p.metrics)} (no sample-selecting algorithm has run)")
    sel = runs[(runs["stage"] == p.stage) & (runs["status"] == "FINISHED") & ~runs["is_parent"]]
    sel = sel[sel[present].notna().any(axis=1)]
    if sel.empty:
        return _empty(r, f"no finished '{p.stage}' run logged {', '.join(p.metrics)}")
    hist = metric_histories(ctx.study, sel["run_id"].tolist(), present)
    hist = hist.merge(sel[["run_id", "dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed"]], on="run_id")
    st = (
        hist.groupby([*p.facets, p.line, "key", "step"], dropna=False)["value"]
        .agg(mean="mean", std="std", n_runs="count")
        .reset_index()
    )
    r.csvs[f"{p.id}.csv"] = st
    groups = list(st.groupby(p.facets, dropna=False))
    fig, axes = _grid(len(groups) * len(present), ncols=4)
    lines = sorted(st[p.line].dropna().unique())
    colors = {v: plt.cm.viridis(i / max(1, len(lines) - 1)) for i, v in enumerate(lines)}
    i = 0
    for key, g in groups:
        for m in present:
            ax = axes[i]
            i += 1
            for lv, s in g[g["key"] == m].groupby(p.line):
                s = s.sort_values("step")
                ax.plot(
                    s["step"],
                    s["mean"],
                    marker=".",
                    color=colors[lv],
                    label=f"{lv:g}" if isinstance(lv, float) else str(lv),
                )
                ax.fill_between(
                    s["step"],
                    s["mean"] - s["std"].fillna(0),
                    s["mean"] + s["std"].fillna(0),
                    color=colors[lv],
                    alpha=0.15,
                    linewidth=0,
                )
            ax.set_title(f"{_facet_label(p.facets, key)}\n{m.replace('selected_label_', 'label ')}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], color=colors[v], marker=".", label=f"{v:g}" if isinstance(v, float) else str(v))
        for v in lines
    ]
    fig.legend(
        handles=handles,
        loc="outside upper center",
        ncol=min(len(lines), 8),
        fontsize=8,
        title=p.line,
    )
    r.pngs[f"{p.id}.png"] = _png(fig)
    r.body = img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"])
    return r


def _has_shifted_test(ctx: Context) -> bool | None:
    """Whether any dataset entry of the study's spec has a shifted test set; None without a readable spec."""
    datasets = ctx.study.spec.get("datasets") if isinstance(ctx.study.spec, dict) else None
    if not isinstance(datasets, list):
        return None
    return any(isinstance(d, dict) and d.get("shifted_test") for d in datasets)


def shift_table(runs: pd.DataFrame, stage: str, metrics: list[str], rows: list[str]) -> pd.DataFrame:
    """Per ``rows`` value and metric m: the means over seeds (and any axis not in ``rows``) of ``test_m``,
    ``shifted_test_m`` and their drop (test minus shifted, per run), over the runs that logged both."""
    frames = []
    for m in metrics:
        test = seed_results(runs, stage, f"test_{m}").rename(columns={f"test_{m}": "test"})
        shifted = seed_results(runs, stage, f"shifted_test_{m}").rename(columns={f"shifted_test_{m}": "shifted"})
        both = test.merge(shifted[[*AXES, "shifted"]], on=list(AXES))
        if both.empty:
            continue
        both["drop"] = both["test"] - both["shifted"]
        agg = both.groupby(rows, dropna=False).agg(
            test=("test", "mean"), shifted=("shifted", "mean"), drop=("drop", "mean"), n_runs=("seed", "size")
        )
        frames.append(agg.reset_index().assign(metric=m))
    if not frames:
        return pd.DataFrame(columns=[*rows, "metric", "test", "shifted", "drop", "n_runs"])
    return pd.concat(frames, ignore_index=True)[[*rows, "metric", "test", "shifted", "drop", "n_runs"]]


def render_shift(ctx: Context, p: ShiftPanel) -> Rendered:
    r = Rendered(p.id, p.title, p.description)
    if _has_shifted_test(ctx) is False:  # not applicable: a neutral note, nothing missing
        r.body = '<p class="note">Not applicable: no dataset of this study has a shifted test set.</p>'
        return r
    table = shift_table(ctx.runs, ctx.stage, list(p.metrics), p.rows)
    if table.empty:
        names = ", ".join(f"shifted_test_{m}" for m in p.metrics)
        return _empty(r, f"no finished '{ctx.stage}' run logged {names} with its test_ counterpart")
    r.csvs[f"{p.id}.csv"] = table
    label = table[p.rows].astype(str).agg(" / ".join, axis=1)
    metrics = list(pd.unique(table["metric"]))
    fig, axes = _grid(len(metrics), ncols=len(metrics), w=4.6, h=0.9 + 0.3 * label.nunique())
    for ax, m in zip(axes, metrics):
        t = table[table["metric"] == m]
        y = np.arange(len(t))
        ax.barh(y - 0.2, t["test"], height=0.4, color="#4c72b0", label="test")
        ax.barh(y + 0.2, t["shifted"], height=0.4, color="#dd8452", label="shifted test")
        ax.set_yticks(y, label[t.index], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(m, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    r.pngs[f"{p.id}.png"] = _png(fig)
    r.body = (
        img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"])
        + df_html(table)
        + '<p class="note">drop = test minus shifted test (larger = less robust to the shift); means over seeds.</p>'
    )
    return r


def _fractions(ctx: Context) -> list[float]:
    """The study's label fractions: the spec's, else those its results have."""
    grid = ctx.study.expected_grid()
    if grid is not None:
        return list(grid["label_fraction"])
    seen = {float(f) for res in ctx.results.values() if not res.empty for f in res["label_fraction"].dropna()}
    return sorted(seen)


def _fraction_gaps(ctx: Context, p: LabelEfficiencyPanel, st: pd.DataFrame) -> list[str]:
    """Facet, line and fraction combinations the spec's points would give that have no result."""
    keys = [*p.facets, p.line, "label_fraction"]
    expected = ctx.expects(keys)
    if expected is None:
        return []
    have = {tuple(row) for row in st[keys].itertuples(index=False)}
    return [
        f"{p.title}: no result for {_facet_label([*p.facets, p.line], k[:-1])} at labelled fraction {k[-1]:g}"
        for k in sorted(expected - have, key=str)
    ]


def render_label_efficiency(ctx: Context, p: LabelEfficiencyPanel) -> Rendered:
    """The metric against the labelled fraction of the training split (Azizi et al. 2021, label efficiency)."""
    r = Rendered(p.id, p.title, p.description)
    if len(_fractions(ctx)) < 2:  # not applicable: a neutral note, nothing missing
        r.body = (
            '<p class="note">Not applicable: this study trains at one labelled fraction '
            "(set <code>labels.fractions</code> in the spec to draw the metric against it).</p>"
        )
        return r
    if why := _metric_missing(ctx, p.metric):
        return _empty(r, why)
    st = analysis.curve_stats(ctx.curves[p.metric], p.metric, p.line, p.facets, x="label_fraction")
    r.csvs[f"{p.id}.csv"] = st
    r.missing += _fraction_gaps(ctx, p, st)
    fig = _lines_figure(st, p.metric, p.line, p.facets, ("label_fraction", "labelled fraction"), p.spread)
    r.pngs[f"{p.id}.png"] = _png(fig)
    r.body = img_tag(f"{p.id}.png", r.pngs[f"{p.id}.png"])
    return r


RENDERERS = {
    "table": render_table,
    "curves": render_curves,
    "drop_heatmap": render_drop_heatmap,
    "ranking": render_ranking,
    "pretrain_vs_robustness": render_pretrain,
    "selection": render_selection,
    "shift": render_shift,
    "label_efficiency": render_label_efficiency,
}


def write(r: Rendered, out: Path) -> list[Path]:
    """Write a panel's PNGs and CSVs under ``out``; return their paths."""
    paths = []
    for name, data in r.pngs.items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    for name, df in r.csvs.items():
        df.to_csv(out / name, index=False)
        paths.append(out / name)
    return paths
