"""A study directory with fabricated-but-realistic MLflow runs, logged the way docs/architecture.md says a launched
study logs them: one experiment named after the spec, a parent run per cell (stage lnl) with one tuning
trial child, final-seed runs (stage final) as children of their cell, and pretraining runs (stage
pretrain) with per-epoch ``ssl_loss`` and ``knn_acc``. Tuning trials carry a deliberately absurd
``test_f1`` so that a report that reads them instead of the final runs fails its tests.

``build_fabricated_study`` is what the report and browser tests use in place of a launched smoke study.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

SPEC = {
    "name": "fabricated",
    "description": "fabricated runs for the report tests",
    "datasets": [{"name": "dermnet"}, {"name": "covid_qu_ex"}],
    "noise": {"kinds": ["symmetric", "class_dependent"], "rates": [0.0, 0.2, 0.4]},
    "ssl": [{"method": "random"}, {"method": "simclr"}, {"method": "moco_v2"}],
    "lnl": [{"algorithm": "ce"}, {"algorithm": "co_teaching"}],
    "seeds": [0, 1, 2],
}
SELECTING = ("co_teaching",)
EPOCHS = 4

_BASE = {"dermnet": 0.62, "covid_qu_ex": 0.86}
_SSL = {"random": (0.0, 0.50), "simclr": (0.05, 0.22), "moco_v2": (0.04, 0.30)}  # (clean bonus, slope)
_LNL = {"ce": 1.0, "co_teaching": 0.55}
_KIND = {"symmetric": 1.0, "class_dependent": 1.25}


def true_f1(dataset: str, kind: str, rate: float, ssl: str, lnl: str) -> float:
    bonus, slope = _SSL[ssl]
    return _BASE[dataset] + bonus - slope * _LNL[lnl] * _KIND[kind] * rate


def is_dropped(dataset: str, kind: str, rate: float, ssl: str, lnl: str, seed: int) -> bool:
    """Points missing from the partial study: a whole (covid, moco_v2, ce, rate 0.4) cell in both kinds,
    and seed 2 of (dermnet, symmetric, 0.2, simclr, co_teaching)."""
    if dataset == "covid_qu_ex" and ssl == "moco_v2" and lnl == "ce" and rate == 0.4:
        return True
    return (dataset, kind, rate, ssl, lnl, seed) == ("dermnet", "symmetric", 0.2, "simclr", "co_teaching", 2)


def _settings(kinds, rates):
    return [(k, r) for r in rates for i, k in enumerate(kinds) if not (r == 0.0 and i > 0)]


def _tags(**kv) -> dict[str, str]:
    return {k: str(v) for k, v in kv.items()}


def build_fabricated_study(study_dir: str | Path, *, partial: bool = False, rng_seed: int = 0) -> Path:
    """Write spec.yaml and log a whole (or, with ``partial``, an incomplete) study into
    STUDY_DIR/mlflow.db with artifacts under STUDY_DIR/mlartifacts. Returns the study directory."""
    d = Path(study_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    client = MlflowClient(tracking_uri=f"sqlite:///{(d / 'mlflow.db').resolve()}")
    exp = client.create_experiment(SPEC["name"], artifact_location=(d / "mlartifacts").resolve().as_uri())
    rng = np.random.default_rng(rng_seed)
    t0 = int(time.time() * 1000) - 10_000_000
    clock = iter(range(t0, t0 + 10_000_000, 1000))

    def run(
        name: str, tags: dict[str, str], metrics: list[Metric], params: dict | None = None, status: str = "FINISHED"
    ) -> str:
        r = client.create_run(exp, start_time=next(clock), tags=tags, run_name=name)
        rid = r.info.run_id
        client.log_batch(rid, metrics=metrics, params=[Param(k, str(v)) for k, v in (params or {}).items()])
        if status != "RUNNING":
            client.set_terminated(rid, status=status, end_time=next(clock))
        return rid

    datasets = [x["name"] for x in SPEC["datasets"]]
    ssls = [x["method"] for x in SPEC["ssl"]]
    lnls = [x["algorithm"] for x in SPEC["lnl"]]
    seeds = SPEC["seeds"]

    # stage 1: pretraining, one run per (dataset, SSL method that pretrains, seed)
    for ds in datasets:
        for ssl in ssls:
            if ssl == "random":
                continue
            for seed in seeds:
                knn = 0.55 + 0.5 * (0.5 - _SSL[ssl][1]) + 0.2 * _BASE[ds] - 0.1 + rng.normal(0, 0.01)
                ms = []
                for e in range(EPOCHS):
                    ms += [
                        Metric("ssl_loss", 5.0 / (e + 1), t0, e),
                        Metric("knn_acc", knn * (0.7 + 0.3 * e / (EPOCHS - 1)), t0, e),
                    ]
                run(
                    f"pretrain-{ds}-{ssl}-s{seed}",
                    _tags(**{"study.stage": "pretrain", "dataset": ds, "ssl": ssl, "seed": seed}),
                    ms,
                    {"method": ssl, "epochs": EPOCHS},
                )

    # stage 2: per cell a parent, a tuning trial and the final-seed runs
    for ds in datasets:
        for kind, rate in _settings(SPEC["noise"]["kinds"], SPEC["noise"]["rates"]):
            for ssl in ssls:
                for lnl in lnls:
                    cell = f"dataset={ds}|noise_kind={kind}|noise_rate={rate}|ssl={ssl}|lnl={lnl}"
                    axes = {"dataset": ds, "noise_kind": kind, "noise_rate": rate, "ssl": ssl, "lnl": lnl}
                    parent = run(
                        f"cell-{ds}-{kind}-{rate}-{ssl}-{lnl}",
                        _tags(**{"study.stage": "lnl", "study.cell": cell}, **axes),
                        [],
                    )
                    if rate == 0.2:  # a tuning trial: its test_f1 must never reach the report
                        run(
                            f"trial-{ds}-{kind}-{rate}-{ssl}-{lnl}-0",
                            _tags(
                                **{
                                    "study.stage": "lnl",
                                    "study.cell": cell,
                                    "mlflow.parentRunId": parent,
                                    "seed": seeds[0],
                                },
                                **axes,
                            ),
                            [Metric("val_f1", 0.5, t0, 0), Metric("test_f1", 0.01, t0, 0)],
                            {"lr": 0.05},
                        )
                    for seed in seeds:
                        f1 = float(np.clip(true_f1(ds, kind, rate, ssl, lnl) + rng.normal(0, 0.015), 0, 1))
                        ms = []
                        for e in range(EPOCHS):
                            frac = (e + 1) / EPOCHS
                            ms += [
                                Metric("train_loss", 1.5 - frac, t0, e),
                                Metric("val_f1", f1 * frac, t0, e),
                                Metric("val_acc", f1 * frac + 0.02, t0, e),
                            ]
                            if lnl in SELECTING:
                                ms += [
                                    Metric(
                                        "selected_label_precision",
                                        min(1.0, 1 - rate + rate * 0.7 * frac + rng.normal(0, 0.005)),
                                        t0,
                                        e,
                                    ),
                                    Metric("selected_label_recall", 1.0 - rate * 0.8 * frac, t0, e),
                                ]
                        ms += [
                            Metric("test_f1", f1, t0, EPOCHS),
                            Metric("test_acc", f1 + 0.03, t0, EPOCHS),
                            Metric("test_balanced_acc", f1 + 0.01, t0, EPOCHS),
                            Metric("test_auroc", min(1.0, f1 + 0.1), t0, EPOCHS),
                            Metric("test_f1_last5", f1 - 0.01, t0, EPOCHS),
                        ]
                        run(
                            f"final-{ds}-{kind}-{rate}-{ssl}-{lnl}-s{seed}",
                            _tags(
                                **{
                                    "study.stage": "final",
                                    "study.cell": cell,
                                    "mlflow.parentRunId": parent,
                                    "seed": seed,
                                },
                                **axes,
                            ),
                            ms,
                            {"lr": 0.05, "seed": seed},
                        )
    if partial:
        make_partial(d)
    return d


def make_partial(study_dir: str | Path) -> Path:
    """Turn a fabricated whole study into a partial one: delete the runs of ``is_dropped`` points (and
    the parent and trials of a cell left with no final run), and add a crashed and a still-running final
    run, neither of which may count."""
    d = Path(study_dir)
    client = MlflowClient(tracking_uri=f"sqlite:///{(d / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(SPEC["name"]).experiment_id
    runs = client.search_runs([exp], max_results=50_000)
    finals_left: dict[str, int] = {}
    for r in runs:
        t = r.data.tags
        if t.get("study.stage") != "final":
            continue
        point = (t["dataset"], t["noise_kind"], float(t["noise_rate"]), t["ssl"], t["lnl"], int(t["seed"]))
        if is_dropped(*point):
            client.delete_run(r.info.run_id)
        else:
            finals_left[t["study.cell"]] = finals_left.get(t["study.cell"], 0) + 1
    for r in runs:
        t = r.data.tags
        if t.get("study.stage") == "lnl" and not finals_left.get(t.get("study.cell", ""), 0):
            client.delete_run(r.info.run_id)
    axes = {"dataset": "dermnet", "noise_kind": "class_dependent", "noise_rate": 0.4, "ssl": "random", "lnl": "ce"}
    t0 = int(time.time() * 1000)
    r = client.create_run(exp, tags=_tags(**{"study.stage": "final", "seed": 7}, **axes), run_name="final-crashed")
    client.log_metric(r.info.run_id, "test_f1", 0.99, t0, 0)
    client.set_terminated(r.info.run_id, status="FAILED")
    r = client.create_run(exp, tags=_tags(**{"study.stage": "final", "seed": 8}, **axes), run_name="final-running")
    client.log_metric(r.info.run_id, "val_f1", 0.3, t0, 0)
    return d
