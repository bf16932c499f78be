"""Dashboard definitions: what ``study report`` renders, read from ``dashboards/*.yaml``.

A definition lists panels; each panel has a ``kind`` (one renderer in ``study.reports.panels``), the
metric it reads and how it is faceted. Keys are checked at the door: an unknown or mistyped key fails
with its path and the allowed fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from study.reports.store import AXES

#: the shipped definitions, at the repository root
DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"
_GROUP_AXES = tuple(a for a in AXES if a != "seed")


class DefinitionError(ValueError):
    """A dashboard definition that does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _axes(v: list[str]) -> list[str]:
    for a in v:
        if a not in _GROUP_AXES:
            raise ValueError(f"unknown axis {a!r} (allowed: {', '.join(_GROUP_AXES)})")
    return v


class _Panel(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    title: str
    description: str = ""


class TablePanel(_Panel):
    """Metric mean ± std over seeds, rows × columns; the best row of each column marked."""

    kind: Literal["table"]
    metric: str = "test_f1"
    rows: list[str] = ["ssl", "lnl"]
    columns: list[str] = ["dataset", "noise_kind", "noise_rate"]
    best: Literal["max", "min"] = "max"
    _a = field_validator("rows", "columns")(classmethod(lambda cls, v: _axes(v)))


class CurvesPanel(_Panel):
    """Metric against noise rate, one line per ``line`` value, one subplot per facet; seed spread shown."""

    kind: Literal["curves"]
    metric: str = "test_f1"
    line: str = "ssl"
    facets: list[str] = ["dataset", "lnl", "noise_kind"]
    spread: Literal["std", "minmax"] = "std"
    _a = field_validator("facets")(classmethod(lambda cls, v: _axes(v)))


class DropHeatmapPanel(_Panel):
    """Metric lost from the baseline rate (mean over seeds) to each rate; rows × rates, one per facet."""

    kind: Literal["drop_heatmap"]
    metric: str = "test_f1"
    rows: list[str] = ["dataset", "ssl"]
    facets: list[str] = ["noise_kind", "lnl"]
    baseline_rate: float = 0.0
    _a = field_validator("rows", "facets")(classmethod(lambda cls, v: _axes(v)))


class RankingPanel(_Panel):
    """``method`` values ranked by the area under their metric-vs-rate curve within each group, with
    paired tests across seeds (see study.reports.analysis.paired_tests)."""

    kind: Literal["ranking"]
    metric: str = "test_f1"
    method: str = "ssl"
    groups: list[str] = ["dataset", "noise_kind", "lnl"]
    test: Literal["paired_t", "wilcoxon"] = "paired_t"
    correction: Literal["holm", "bonferroni", "none"] = "holm"
    alpha: float = Field(0.05, gt=0, lt=1)
    _a = field_validator("groups")(classmethod(lambda cls, v: _axes(v)))


class PretrainPanel(_Panel):
    """Pretraining quality (``quality_metric`` of the stage-pretrain runs) against robustness (mean
    normalised AUC of the ranking panel's metric), one point per encoder (dataset × SSL)."""

    kind: Literal["pretrain_vs_robustness"]
    quality_metric: str = "knn_acc"
    metric: str = "test_f1"


class SelectionPanel(_Panel):
    """Per-epoch precision/recall of the labels a sample-selecting algorithm keeps."""

    kind: Literal["selection"]
    metrics: list[str] = ["selected_label_precision", "selected_label_recall"]
    line: str = "noise_rate"
    facets: list[str] = ["dataset", "lnl", "noise_kind"]
    stage: str = "final"
    _a = field_validator("facets")(classmethod(lambda cls, v: _axes(v)))


class ShiftPanel(_Panel):
    """In-distribution against shifted test (Azizi et al. 2021): for each ``metrics`` name m, ``test_m`` and
    ``shifted_test_m`` and their drop, mean over seeds, one row per ``rows`` value; "not applicable" where
    the study has no shifted test set."""

    kind: Literal["shift"]
    metrics: list[Literal["f1", "acc", "balanced_acc", "auroc"]] = Field(["f1", "auroc"], min_length=1)
    rows: list[str] = ["dataset", "noise_kind", "noise_rate", "lnl", "ssl"]
    _a = field_validator("rows")(classmethod(lambda cls, v: _axes(v)))


class LabelEfficiencyPanel(_Panel):
    """Metric against the labelled fraction of the training split (Azizi et al. 2021), one line per
    ``line`` value, one subplot per facet; seed spread shown. A note only where the study has one fraction."""

    kind: Literal["label_efficiency"]
    metric: str = "test_f1"
    line: str = "ssl"
    facets: list[str] = ["dataset", "noise_kind", "noise_rate", "lnl"]
    spread: Literal["std", "minmax"] = "std"
    _a = field_validator("facets")(classmethod(lambda cls, v: _axes(v)))


Panel = Annotated[
    TablePanel
    | CurvesPanel
    | DropHeatmapPanel
    | RankingPanel
    | PretrainPanel
    | SelectionPanel
    | ShiftPanel
    | LabelEfficiencyPanel,
    Field(discriminator="kind"),
]


class Dashboard(_Strict):
    title: str = "Noisy-label robustness report"
    #: the stage whose finished runs carry the per-seed test metrics
    stage: str = "final"
    panels: list[Panel] = Field(min_length=1)

    @field_validator("panels")
    @classmethod
    def _unique(cls, v: list) -> list:
        ids = [p.id for p in v]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate panel ids {dup}")
        return v


def load_dashboard(path: str | Path | None = None) -> Dashboard:
    """Read a definition (default: dashboards/default.yaml); a name without a suffix is looked up in
    dashboards/."""
    if path is None:
        path = DASHBOARDS_DIR / "default.yaml"
    p = Path(path)
    if not p.suffix and not p.exists():
        p = DASHBOARDS_DIR / f"{p}.yaml"
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DefinitionError(f"{p}: cannot read ({e})") from e
    try:
        return Dashboard.model_validate(data)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise DefinitionError(f"{p}: {msgs}") from e
