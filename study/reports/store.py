"""Finding a study's MLflow store and reading its runs into pandas (docs/architecture.md, MLflow conventions).

A study directory holds ``spec.yaml`` and, by default, ``mlflow.db`` (sqlite) with artifacts in
``mlartifacts/``; a study on a cluster names a server URI in its spec instead. The spec is read
defensively (plain YAML, not the typed spec model) so that a report still works on a spec written by an
older or newer ``study``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from study.noise import noise_settings, recorded_source
from study.storage import sqlite_problem

#: the axes of a study, in the order tables and facets use them
AXES = ("dataset", "noise_kind", "noise_rate", "label_fraction", "ssl", "lnl", "seed")


class StudyInputError(ValueError):
    """STUDY_DIR is not a study directory, or its MLflow store has nothing to report (exit code 2)."""


@dataclass
class Study:
    """Where a study lives and what its spec expects."""

    dir: Path
    tracking_uri: str
    experiment_id: str
    experiment_name: str
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def is_server(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    @property
    def artifact_root(self) -> Path:
        return self.dir / "mlartifacts"

    def expected_grid(self) -> dict[str, list] | None:
        """Axis values the spec asks for (ids where entries have them), or None without a readable spec."""
        s = self.spec
        try:
            grid = {
                "dataset": [d.get("id") or d["name"] for d in s["datasets"]],
                "noise_kind": list(s["noise"].get("kinds") or []),
                "noise_rate": [float(r) for r in s["noise"].get("rates") or []],
                "noise_recorded": list(s["noise"].get("recorded") or []),
                "label_fraction": [float(f) for f in (s.get("labels") or {}).get("fractions") or [1.0]],
                "ssl": [e.get("id") or e["method"] for e in s["ssl"]],
                "lnl": [e.get("id") or e["algorithm"] for e in s["lnl"]],
                "seed": [int(x) for x in s["seeds"]],
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        grid["ssl_method"] = {e.get("id") or e["method"]: e["method"] for e in s["ssl"]}
        grid["lnl_algorithm"] = {e.get("id") or e["algorithm"]: e["algorithm"] for e in s["lnl"]}
        # a spec with a subset (a smoke run's covering subset) expects only those points
        grid["subset"] = [
            (
                p["dataset"],
                p["noise_kind"],
                float(p["noise_rate"]),
                float(p.get("label_fraction", 1.0)),
                p["ssl"],
                p["lnl"],
                int(p["seed"]),
            )
            for p in s.get("subset") or []
        ]
        return grid


def expected_points(grid: dict[str, list]) -> pd.DataFrame:
    """Every (dataset, noise_kind, noise_rate, label_fraction, ssl, lnl, seed) the spec asks for (its subset,
    if it has one)."""
    rows = [
        (d, k, r, f, s, a, seed)
        for d in grid["dataset"]
        for (k, r) in noise_settings(grid["noise_kind"], grid["noise_rate"], grid.get("noise_recorded") or ())
        for f in grid.get("label_fraction") or [1.0]
        for s in grid["ssl"]
        for a in grid["lnl"]
        for seed in grid["seed"]
    ]
    subset = set(grid.get("subset") or ())
    if subset:
        rows = [r for r in rows if r in subset]
    return pd.DataFrame(rows, columns=list(AXES))


def _read_spec(study_dir: Path) -> dict[str, Any]:
    path = study_dir / "spec.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise StudyInputError(f"{study_dir}: cannot read spec.yaml ({e})") from e
    return data if isinstance(data, dict) else {}


def tracking_uri_of(study_dir: Path, spec: dict[str, Any]) -> str:
    """The spec's tracking URI (``tracking_uri`` at top level, or ``uri``/``tracking_uri`` under
    ``tracking:`` or ``storage:``), else the study's sqlite file."""
    candidates = [spec.get("tracking_uri")]
    for section in ("tracking", "storage"):
        sec = spec.get(section)
        if isinstance(sec, dict):
            candidates += [sec.get("tracking_uri"), sec.get("uri") if section == "tracking" else None]
    for c in candidates:
        if isinstance(c, str) and c.strip():
            return c.strip()
    return f"sqlite:///{(study_dir / 'mlflow.db').resolve()}"


def open_study(study_dir: str | Path) -> Study:
    """Locate the study's tracking store and experiment; raise StudyInputError with the reason if none."""
    from mlflow.tracking import MlflowClient

    d = Path(study_dir)
    if not d.is_dir():
        raise StudyInputError(f"{d}: not a directory")
    has_spec = (d / "spec.yaml").is_file()
    has_db = (d / "mlflow.db").is_file()
    if not has_spec and not has_db:
        raise StudyInputError(f"{d}: not a study directory (no spec.yaml and no mlflow.db)")
    spec = _read_spec(d) if has_spec else {}
    uri = tracking_uri_of(d, spec)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        raise StudyInputError(
            f"{d}: no MLflow store ({uri[len('sqlite:///') :]} does not exist; has the study been launched?)"
        )
    if uri.startswith("sqlite:///") and (why := sqlite_problem(Path(uri[len("sqlite:///") :]))):
        raise StudyInputError(
            f"{d}: the MLflow store {uri[len('sqlite:///') :]} is not readable ({why}); restore it from a copy "
            "(or a bucket's study folder), or relaunch the study"
        )
    client = MlflowClient(tracking_uri=uri)
    try:
        exps = client.search_experiments()
    except Exception as e:  # an unreachable server or a corrupt store: bad input, not a crash
        raise StudyInputError(f"{d}: cannot read the MLflow store at {uri} ({type(e).__name__}: {e})") from e
    name = spec.get("name")
    named = [e for e in exps if name and e.name == name]
    if named:
        exp = named[0]
    else:
        with_runs = [e for e in exps if client.search_runs([e.experiment_id], max_results=1)]
        if len(with_runs) != 1:
            choices = ", ".join(e.name for e in with_runs) or "none with runs"
            raise StudyInputError(
                f"{d}: cannot tell the study's MLflow experiment (spec name {name!r}; experiments: {choices})"
            )
        exp = with_runs[0]
    return Study(d, uri, exp.experiment_id, exp.name, spec)


def load_runs(study: Study) -> pd.DataFrame:
    """All runs of the study's experiment, one row each: ``run_id``, ``status``, ``parent_run_id``,
    ``stage``, ``cell``, the seven axes (typed; missing tags are NA, except ``label_fraction``, which is 1
    on every run with a noise rate: the tag is written only below 1) and every metric's latest value under
    its own name. The report's own run (stage ``report``) is left out."""
    import mlflow

    mlflow.set_tracking_uri(study.tracking_uri)
    raw = mlflow.search_runs(experiment_ids=[study.experiment_id], output_format="pandas")
    if not isinstance(raw, pd.DataFrame) or raw.empty:
        return pd.DataFrame(columns=["run_id", "status", "parent_run_id", "stage", "cell", *AXES])

    def tag(name: str) -> pd.Series:
        col = f"tags.{name}"
        return raw[col] if col in raw.columns else pd.Series([None] * len(raw), index=raw.index)

    df = pd.DataFrame(
        {
            "run_id": raw["run_id"],
            "run_name": tag("mlflow.runName"),
            "status": raw["status"],
            "start_time": raw["start_time"],
            "parent_run_id": tag("mlflow.parentRunId"),
            "stage": tag("study.stage"),
            "cell": tag("study.cell"),
        }
    )
    for ax in AXES:
        df[ax] = tag(ax)
    df["noise_rate"] = pd.to_numeric(df["noise_rate"], errors="coerce")
    fraction = pd.to_numeric(df["label_fraction"], errors="coerce")
    df["label_fraction"] = fraction.where(fraction.notna() | df["noise_rate"].isna(), 1.0)
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    metrics = raw[[c for c in raw.columns if c.startswith("metrics.")]]
    metrics.columns = [c[len("metrics.") :] for c in metrics.columns]
    df = pd.concat([df, metrics], axis=1)
    df = df[df["stage"] != "report"].reset_index(drop=True)
    parents = set(df["parent_run_id"].dropna())
    df["is_parent"] = df["run_id"].isin(parents)
    return df


def seed_results(runs: pd.DataFrame, stage: str = "final", metric: str = "test_f1") -> pd.DataFrame:
    """One row per (dataset, noise_kind, noise_rate, label_fraction, ssl, lnl, seed): the metric of the finished run of
    ``stage`` that carries it. Parent runs are left out (a cell's parent may summarise its children);
    where one point has two runs (a resumed study should never do this) the later one counts."""
    if runs.empty or metric not in runs.columns:
        return pd.DataFrame(columns=[*AXES, metric, "run_id"])
    sel = runs[(runs["stage"] == stage) & (runs["status"] == "FINISHED") & ~runs["is_parent"] & runs[metric].notna()]
    sel = sel.dropna(subset=[a for a in AXES])
    sel = sel.sort_values("start_time").drop_duplicates(list(AXES), keep="last")
    out = sel[[*AXES, metric, "run_id"]].reset_index(drop=True)
    out["seed"] = out["seed"].astype(int)
    return out


def synthetic_only(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of synthetic noise kinds (recorded label sources left out: each is one setting, no curve)."""
    if df.empty:
        return df
    return df[df["noise_kind"].astype(str).map(recorded_source).isna()].reset_index(drop=True)


def with_clean_in_every_kind(df: pd.DataFrame, kinds: list[str] | None = None) -> pd.DataFrame:
    """Rate-0 results belong to every synthetic noise kind (a study runs the clean set once, under its first
    kind): copy them into each other kind so every curve starts at rate 0. Recorded labels
    (``recorded:<source>``, at rate 0) are not clean: neither copied nor given copies."""
    if df.empty:
        return df
    recorded = df["noise_kind"].astype(str).map(recorded_source).notna()
    kinds = list(kinds) if kinds else list(pd.unique(df.loc[~recorded, "noise_kind"]))
    key = [a for a in ("dataset", "label_fraction", "ssl", "lnl", "seed") if a in df.columns]
    clean = df[(df["noise_rate"] == 0.0) & ~recorded]  # recorded labels sit at rate 0 but are not clean
    copies = []
    for k in kinds:
        have = clean.loc[clean["noise_kind"] == k, key]
        add = clean[clean["noise_kind"] != k].drop_duplicates(key).assign(noise_kind=k)
        add = add.merge(have, on=key, how="left", indicator=True)
        copies.append(add[add["_merge"] == "left_only"].drop(columns="_merge"))
    return pd.concat([df, *copies], ignore_index=True) if copies else df


def metric_histories(study: Study, run_ids: list[str], keys: list[str]) -> pd.DataFrame:
    """Per-step values of ``keys`` for ``run_ids``: columns run_id, key, step, value."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=study.tracking_uri)
    rows = []
    for rid, key in itertools.product(run_ids, keys):
        for m in client.get_metric_history(rid, key):
            rows.append((rid, key, m.step, m.value))
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
