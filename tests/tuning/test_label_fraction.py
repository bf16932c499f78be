"""The label-efficiency axis (``labels.fractions``): the door, the plan and its points, cell ids and tags,
the smoke covering subset, noise drawn on the labelled subset, and existing specs left as they were."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from study.data import ImageData
from study.data.splits import labelled_subset
from study.experiment import corrupt, trial_splits
from study.noise import inject_noise
from study.tuning.plan import Point, TrialConfig, format_plan, make_plan
from study.tuning.smoke import covering_subset
from study.tuning.spec import SpecError, load_spec, parse_spec, spec_to_yaml

SPECS = sorted((Path(__file__).resolve().parents[2] / "search_spaces").glob("*.yaml"))
SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"
#: the axes and their order before the label fraction existed
OLD_AXES = ("dataset", "noise_kind", "noise_rate", "ssl", "lnl", "seed")


def _smoke(**changes) -> dict:
    d = yaml.safe_load(SMOKE.read_text())
    d.update(changes)
    return d


def _problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as e:
        parse_spec(data)
    return e.value.problems


# -- the door ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [[0.0], [-0.2], [1.5], [0.1, 0.1], []])
def test_the_door_refuses_fractions_outside_zero_one_duplicates_and_an_empty_list(bad):
    (path, message), *_ = _problems(_smoke(labels={"fractions": bad}))
    assert path == "labels.fractions"
    assert ("outside (0, 1]" in message) or ("duplicate" in message) or ("at least one" in message)


def test_the_door_refuses_unknown_keys_and_subset_fractions_off_the_axis():
    problems = dict(_problems(_smoke(labels={"counts": [10]})))
    assert "unknown field" in problems["labels.counts"] and "fractions" in problems["labels.counts"]
    assert problems["labels.fractions"] == "required field is missing"
    point = {"dataset": "synthetic", "noise_kind": "symmetric", "noise_rate": 0.4, "ssl": "random", "lnl": "ce"}
    data = _smoke(labels={"fractions": [0.5, 1.0]}, subset=[{**point, "seed": 0, "label_fraction": 0.25}])
    (path, message), *_ = _problems(data)
    assert path == "subset[0].label_fraction" and "0.5, 1.0" in message


def test_a_spec_without_labels_has_the_single_fraction_one_and_writes_no_labels_key():
    spec = load_spec(SMOKE)
    assert spec.labels is None and spec.label_fractions == [1.0]
    assert "labels" not in yaml.safe_load(spec_to_yaml(spec))
    with_labels = parse_spec(_smoke(labels={"fractions": [0.1, 1.0]}))
    assert yaml.safe_load(spec_to_yaml(with_labels))["labels"] == {"fractions": [0.1, 1.0]}


# -- plan, points, ids, tags ----------------------------------------------------------------------------


def test_fractions_multiply_cells_and_runs_but_not_pretraining():
    base = make_plan(load_spec(SMOKE))
    spec = parse_spec(_smoke(labels={"fractions": [0.25, 1.0]}))
    plan = make_plan(spec)
    assert len(plan.cells) == 2 * len(base.cells) and len(plan.final_runs) == 2 * len(base.final_runs)
    assert [j.id for j in plan.pretrain_jobs] == [j.id for j in base.pretrain_jobs]
    assert {p.label_fraction for _, p in plan.final_runs} == {0.25, 1.0}
    # tuning happens per fraction: each cell tunes at its own fraction
    assert all(c.tune_point.label_fraction == dict(c.values)["label_fraction"] for c in plan.cells)
    # at fraction 1 the cells are those of the spec without labels; at 0.25 the id names the fraction
    ones = [c.id for c in plan.cells if c.tune_point.label_fraction == 1.0]
    assert ones == [c.id for c in base.cells]
    quarter = [c.id for c in plan.cells if c.tune_point.label_fraction == 0.25]
    assert quarter == [
        i.replace("noise_rate=0.0|", "noise_rate=0.0|label_fraction=0.25|").replace(
            "noise_rate=0.4|", "noise_rate=0.4|label_fraction=0.25|"
        )
        for i in ones
    ]
    # the estimate scales the LNL cost by the labelled share; pretraining is the same
    assert plan.gpu_hours["pretraining"] == base.gpu_hours["pretraining"]
    assert plan.gpu_hours["final"] == pytest.approx(base.gpu_hours["final"] * 1.25)
    text = format_plan(spec, plan, "smoke.yaml")
    assert "2 label fractions (0.25, 1) x" in text and "label_fraction" in text
    assert plan.summary(spec)["axes"]["label_fractions"] == 2


def test_label_fraction_outside_the_cell_axes_is_tuned_at_the_first_fraction_and_run_at_every_one():
    d = _smoke(labels={"fractions": [0.5, 1.0]})
    d["tuning"]["cell_axes"] = ["dataset", "noise_kind", "noise_rate", "ssl", "lnl"]
    plan = make_plan(parse_spec(d))
    assert len(plan.cells) == len(make_plan(load_spec(SMOKE)).cells)
    assert all(c.tune_point.label_fraction == 0.5 for c in plan.cells)
    assert {p.label_fraction for _, p in plan.final_runs} == {0.5, 1.0}


def test_tags_and_stored_config_name_the_fraction_only_below_one():
    p = Point("synthetic", "symmetric", 0.4, "random", "ce", 0, 0.25)
    cfg = TrialConfig(stage="final", id="c", point=p)
    assert cfg.axes() == {
        **dict(zip(OLD_AXES, ("synthetic", "symmetric", 0.4, "random", "ce", 0))),
        "label_fraction": 0.25,
    }
    assert TrialConfig.from_ray(cfg.to_ray()) == cfg
    full = TrialConfig(stage="final", id="c", point=Point("synthetic", "symmetric", 0.4, "random", "ce", 0))
    assert tuple(full.axes()) == OLD_AXES and tuple(full.to_ray()["trial"]["point"]) == OLD_AXES
    # a config Ray stored before the axis existed still loads, at every label
    old = {"trial": {**full.to_ray()["trial"]}}
    assert TrialConfig.from_ray(old).point == full.point and full.point.label_fraction == 1.0


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_existing_specs_keep_their_cell_ids_tags_and_params(path):
    """A spec without labels.fractions keeps the ids, tags and stored configs it had before the axis."""
    data = yaml.safe_load(path.read_text())
    data.pop("labels", None)  # azizi2021 uses the axis since; the rest of it is as before
    spec = parse_spec(data)
    plan = make_plan(spec)
    old_cell_axes = [a for a in spec.tuning.cell_axes if a != "label_fraction"]
    for cell, point in plan.final_runs:
        assert cell.id == "|".join(f"{a}={point.get(a)}" for a in old_cell_axes)
        cfg = TrialConfig(stage="final", id=cell.id, point=point)
        assert tuple(cfg.axes()) == OLD_AXES
        assert tuple(cfg.model_dump(mode="json", exclude_defaults=True)["point"]) == OLD_AXES
    assert all("label_fraction" not in p for p in covering_subset(spec))


# -- smoke covering subset ------------------------------------------------------------------------------


def test_covering_subset_has_every_fraction_and_a_complete_label_efficiency_group():
    spec = parse_spec(_smoke(labels={"fractions": [0.1, 0.5, 1.0]}))
    points = [Point(**{"label_fraction": 1.0, **p}) for p in covering_subset(spec)]
    assert {p.label_fraction for p in points} == {0.1, 0.5, 1.0}
    first = ("synthetic", "symmetric", 0.0, "ce", 0)
    group = {
        (p.ssl, p.label_fraction) for p in points if (p.dataset, p.noise_kind, p.noise_rate, p.lnl, p.seed) == first
    }
    assert group == {(s, f) for s in ("random", "simclr") for f in (0.1, 0.5, 1.0)}
    # the rate anchor is still complete, at the first fraction
    rates = {(p.ssl, p.noise_rate) for p in points if p.label_fraction == 0.1 and p.lnl == "ce" and p.seed == 0}
    assert rates == {(s, r) for s in ("random", "simclr") for r in (0.0, 0.4)}
    assert len(points) == len(set(points))
    parse_spec({**_smoke(labels={"fractions": [0.1, 0.5, 1.0]}), "subset": covering_subset(spec)})


# -- noise after subsetting -------------------------------------------------------------------------------


def test_noise_is_drawn_on_the_labelled_subset_with_the_trial_seed():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=300)
    data = ImageData("synthetic", np.zeros((300, 4, 4, 1), np.uint8), labels, ["a", "b", "c"])
    spec = parse_spec(_smoke(labels={"fractions": [0.2, 1.0]}))
    point = Point("synthetic", "symmetric", 0.4, "random", "ce", 1, 0.2)
    splits = trial_splits(spec, data, point)
    full = trial_splits(spec, data, Point("synthetic", "symmetric", 0.4, "random", "ce", 1))
    assert np.array_equal(splits.train, labelled_subset(full.train, labels, 0.2, seed=1))
    assert np.array_equal(splits.val, full.val) and np.array_equal(splits.test, full.test)
    noisy, noise = corrupt(spec, data, splits, point)
    idx = np.concatenate([splits.train, splits.val])
    expected = inject_noise(labels[idx], 3, "symmetric", 0.4, 1)
    assert np.array_equal(noise.labels, expected.labels) and np.array_equal(noisy[idx], expected.labels)
    rest = np.setdiff1d(full.train, splits.train)  # unlabelled: not used, never corrupted
    assert len(rest) > 0 and np.array_equal(noisy[rest], labels[rest])
    assert np.array_equal(noisy[splits.test], labels[splits.test])
