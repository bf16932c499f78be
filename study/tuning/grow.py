"""Growing a finished study: ``study resume STUDY --grow EDITED.yaml`` (docs/architecture.md, Growing a
study).

A study runs the spec it was launched with, and ``study resume`` refuses a ``spec.yaml`` edited since.
The one edit it takes, on request, adds values at the end of the axes (datasets, noise kinds and rates,
recorded label sources, label fractions, SSL and LNL entries, seeds, subset points) and changes nothing
else: every cell, pretraining job and final run of the launched spec is then one of the grown spec's, with
the same settings and the same tuning point (a cell tunes at its axes' first values, which appending
leaves alone). The study's next generation runs only what is new (``Plan.without``): new pretraining jobs,
new cells tuned, and final runs at new points, of new cells and of earlier cells with their tuned
configuration. Each generation's stages are Ray Tune experiments of their own (``tune/STAGE.N``), the
Optuna studies and the MLflow experiment are the study's, so reports and the UI show every generation
together.
"""

from __future__ import annotations

from typing import Any

from study.tuning.errors import StudyInputError
from study.tuning.plan import Plan, make_plan
from study.tuning.spec import Spec, frozen_spec

#: the spec's axis lists, as paths into its dumped form: values may be appended to these
AXIS_LISTS: tuple[tuple[str, ...], ...] = (
    ("datasets",),
    ("noise", "kinds"),
    ("noise", "rates"),
    ("noise", "recorded"),
    ("labels", "fractions"),
    ("ssl",),
    ("lnl",),
    ("seeds",),
    ("subset",),
)
#: free text that may change without changing any trial
FREE_TEXT: tuple[tuple[str, ...], ...] = (("description",),)
_MISSING = object()


def _comparable(spec: Spec) -> dict[str, Any]:
    """The spec as compared: every default filled in, the label fractions as the axis holds them (no
    ``labels`` section means the one fraction 1.0)."""
    data = spec.model_dump(mode="json")
    data["labels"] = {**(data.get("labels") or {}), "fractions": spec.label_fractions}
    return data


def growth_problems(launched: Spec, grown: Spec) -> list[str]:
    """What ``grown`` changes beyond appending axis values to ``launched``, one line per field; empty when
    it only grows it."""
    problems: list[str] = []
    _compare(_comparable(launched), _comparable(grown), (), problems)
    return problems


def _compare(old: Any, new: Any, path: tuple[str, ...], problems: list[str]) -> None:
    where = ".".join(path) or "the spec"
    if path in FREE_TEXT:
        return
    if path in AXIS_LISTS:
        old_list = [] if old in (None, _MISSING) else old
        new_list = [] if new in (None, _MISSING) else new
        if len(new_list) < len(old_list):
            problems.append(
                f"{where}: launched {_short(old)}, now {_short(new)}; a grown study keeps the launched values, "
                "in their order, and adds new ones at the end"
            )
            return
        for i, value in enumerate(old_list):  # each launched value as it was, at its place
            _compare(value, new_list[i], (*path, str(i)), problems)
        return
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            _compare(old.get(key, _MISSING), new.get(key, _MISSING), (*path, str(key)), problems)
        return
    if old != new:
        problems.append(f"{where}: launched {_short(old)}, now {_short(new)}")


def _short(value: Any) -> str:
    text = "absent" if value is _MISSING else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_growth(launched: Spec, grown: Spec, grown_source: str) -> Plan:
    """The part of ``grown``'s plan that ``launched`` did not run; a ``StudyInputError`` naming the fields
    when ``grown`` changes more than its axes, or adds nothing."""
    problems = growth_problems(launched, grown)
    if problems:
        shown = "\n  ".join(problems[:20]) + ("\n  ..." if len(problems) > 20 else "")
        raise StudyInputError(
            f"{grown_source} does not only grow the study's spec:\n  {shown}\n"
            "A grown study keeps every launched setting and adds values at the end of its axes (datasets, "
            "noise kinds and rates, recorded label sources, label fractions, ssl and lnl entries, seeds, subset "
            "points). To change "
            "settings, launch the spec as a new study: `study launch "
            f"{grown_source} --name NEW_NAME` (its pretraining and decoded data are reused from the cache)."
        )
    part = make_plan(grown).without(make_plan(launched))
    if part.empty:
        raise StudyInputError(
            f"{grown_source} adds nothing to the study: no new cell, pretraining job or final run. Append "
            "values to an axis (e.g. a seed to `seeds`, a rate to `noise.rates`)."
        )
    return part


def generation_plan(spec: Spec, state) -> Plan:
    """What the study's current generation runs: the whole plan in generation 0, else what the spec plans
    beyond the previous generation's spec (``StudyState.earlier_specs``)."""
    plan = make_plan(spec)
    if not state.earlier_specs:
        return plan
    return plan.without(make_plan(frozen_spec(state.earlier_specs[-1])))


__all__ = ["AXIS_LISTS", "check_growth", "generation_plan", "growth_problems"]
