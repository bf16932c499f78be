"""Writes docs/hyperparameters.md from the declarations beside the code (`python scripts/hyperparameters_doc.py`).

The tables are generated, never edited by hand: ``tests/test_hyperparameters_doc.py`` fails when the file
and the declarations disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from study.data import DATASETS
from study.hparams import describe
from study.lnl import ALGORITHMS
from study.lnl.base import LoaderHparams, OptimConfig
from study.ssl import METHODS

DOC = Path(__file__).resolve().parents[1] / "docs" / "hyperparameters.md"


def table(models: list[type[BaseModel]], exclude: tuple[str, ...] = ()) -> list[str]:
    rows = describe(models, exclude)
    if not rows:
        return ["(none)", ""]
    out = ["| name | default | allowed | meaning |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['name']}` | `{r['default']}` | {r['allowed']} | {r['doc']} |")
    return [*out, ""]


def render() -> str:
    lines = [
        "# Hyperparameters",
        "",
        "Generated from the declarations beside the code by `python scripts/hyperparameters_doc.py`; do not",
        "edit by hand. A spec's `ssl[].hparams`, `lnl[].fixed`, `lnl[].search_space` and `datasets[].options`",
        "are checked against these at the door (name, type, range; a search space's bounds and choices too).",
        "",
        "## Every LNL entry: optimiser and loader",
        "",
        *table([OptimConfig, LoaderHparams], exclude=("epochs",)),
        "## LNL algorithms",
        "",
    ]
    for name, cls in ALGORITHMS.items():
        lines += [f"### `{name}` (step cost {cls.step_cost:g}× CE)", "", *table([cls.Hparams])]
    lines += ["## SSL methods", ""]
    for name, cls in METHODS.items():
        cost = f" (pretraining cost {cls.step_cost:g}× a supervised epoch)" if cls.trains else ""
        lines += [f"### `{name}`{cost}", "", *table([cls.Hparams])]
    lines += ["## Dataset options", ""]
    for name, cls in DATASETS.items():
        lines += [f"### `{name}`", "", *table([cls.Options])]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
