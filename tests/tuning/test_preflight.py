"""The door sees everything a trial reads (issue 15): a shifted test set that does not load or does not match
its training dataset, a missing ImageNet weight file, noise options for kinds the spec does not have. Each
fails `study launch` (or already `study validate`) with exit 2, the field and the fix, and leaves no study."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from benchmarks.bad_inputs import BASE_SPEC
from study.cli import main
from study.ssl.init import ENV_VAR, TORCHVISION_FILE
from study.tuning.preflight import class_mismatch, preflight, weight_problems
from study.tuning.spec import SpecError, parse_spec

#: the training dataset of BASE_SPEC (3 classes, 8 px RGB) as a shifted test set, before a case breaks it
SHIFTED = {"name": "synthetic", "options": {"num_samples": 30, "num_classes": 3, "image_size": 8, "seed": 7}}


def spec_with(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(BASE_SPEC)
    edit(data)
    return data


def shifted(**options: Any) -> Callable[[dict[str, Any]], None]:
    def edit(s: dict[str, Any]) -> None:
        s["datasets"][0]["shifted_test"] = {"name": SHIFTED["name"], "options": {**SHIFTED["options"], **options}}

    return edit


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ImageNet weight lookup finds nothing: no $STUDY_IMAGENET_WEIGHTS, torch hub in an empty folder."""
    hub = tmp_path / "empty_hub"
    hub.mkdir()
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def run(verb: str, data: dict[str, Any], tmp_path: Path, capsys, monkeypatch) -> tuple[int, str, Path]:
    """``study validate|launch`` in-process on ``data``; the exit code, stderr and the storage folder."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    storage = tmp_path / "storage"
    storage.mkdir(exist_ok=True)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    args = [verb, str(spec)]
    if verb == "launch":
        args += ["--storage", str(storage), "--name", "x", "--quiet", "--tracking-uri", uri]
    code = main(args)
    return code, capsys.readouterr().err, storage


def assert_refused(code: int, err: str, storage: Path, words: list[str]) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, f"{w!r} not in: {err}"
    assert list(storage.iterdir()) == [], "a refused launch leaves nothing in the storage folder"


# -- caught by `study launch` (they need the data or this machine's files) --------------------------------

LAUNCH_CASES = {
    "shifted test with other classes": (
        shifted(num_classes=4),
        ["datasets[0].shifted_test", "not classes of synthetic: class_3", "class_0, class_1, class_2, in that order"],
    ),
    "shifted test in another class order": (
        shifted(class_names=["class_2", "class_1", "class_0"]),
        ["datasets[0].shifted_test", "the same classes in another order", "in that order"],
    ),
    "shifted test with other channels": (
        shifted(channels=1),
        ["datasets[0].shifted_test", "1-channel", "set shifted_test.options.channels: 3"],
    ),
}


@pytest.mark.parametrize("case", list(LAUNCH_CASES))
def test_launch_refuses_a_shifted_test_that_does_not_match(case, tmp_path, capsys, monkeypatch):
    edit, words = LAUNCH_CASES[case]
    data = spec_with(edit)
    assert run("validate", data, tmp_path, capsys, monkeypatch)[0] == 0  # a data check: launch's, not the spec's
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), words)


def test_launch_refuses_a_shifted_test_whose_folder_is_missing(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "no_such_shifted"

    def edit(s: dict[str, Any]) -> None:
        s["datasets"][0]["shifted_test"] = {"name": "folder", "options": {"root": str(missing)}}

    code, err, storage = run("launch", spec_with(edit), tmp_path, capsys, monkeypatch)
    assert_refused(code, err, storage, ["datasets[0].shifted_test", str(missing), "not a directory", "sub-folder"])


@pytest.mark.parametrize(
    "ssl, field",
    [
        ([{"method": "imagenet"}], "ssl[0].method"),
        ([{"method": "random"}, {"method": "simclr", "init": "imagenet"}], "ssl[1].init"),
    ],
)
def test_launch_refuses_a_missing_imagenet_weight_file(ssl, field, no_weights, tmp_path, capsys, monkeypatch):
    data = spec_with(lambda s: s.update(ssl=ssl, model={"backbone": "resnet18"}))
    code, err, storage = run("launch", data, tmp_path, capsys, monkeypatch)
    where = str(no_weights / "checkpoints" / TORCHVISION_FILE)
    assert_refused(code, err, storage, [field, "ImageNet ResNet-18 weights not found", where, f"${ENV_VAR}"])
    assert err.count("weights not found") == 1  # only the entry that needs them


def test_weight_file_found_where_the_trials_look(tmp_path, monkeypatch, no_weights):
    spec = parse_spec(spec_with(lambda s: s.update(ssl=[{"method": "imagenet"}], model={"backbone": "resnet18"})))
    assert [p for p, _ in weight_problems(spec)] == ["ssl[0].method"]
    weights = tmp_path / TORCHVISION_FILE
    weights.write_bytes(b"")
    monkeypatch.setenv(ENV_VAR, str(weights))
    assert weight_problems(spec) == []
    assert weight_problems(parse_spec(copy.deepcopy(BASE_SPEC))) == []  # random init reads no file


def test_a_matching_shifted_test_passes_and_is_decoded(tmp_path):
    spec = parse_spec(spec_with(shifted()))
    facts = preflight(spec, "spec.yaml", str(tmp_path / "data"))
    assert facts["synthetic"].classes == 3
    decoded = [p for p in (tmp_path / "data" / "datasets").iterdir() if (p / "meta.json").is_file()]
    assert len(decoded) == 2  # the training set and the shifted test set, where the trials find them


def test_every_problem_is_reported_at_once(tmp_path, no_weights):
    def edit(s: dict[str, Any]) -> None:
        shifted(num_classes=4, channels=1)(s)
        s.update(ssl=[{"method": "imagenet"}], model={"backbone": "resnet18"})

    with pytest.raises(SpecError) as e:
        preflight(parse_spec(spec_with(edit)), "spec.yaml", str(tmp_path / "data"))
    assert [p for p, _ in e.value.problems] == ["datasets[0].shifted_test"] * 2 + ["ssl[0].method"]


def test_class_mismatch_says_what_differs():
    train = ["a", "b", "c"]
    assert "missing from the shifted test set: c" in class_mismatch(train, ["a", "b"], "d")
    assert "not classes of d: x" in class_mismatch(train, ["a", "b", "c", "x"], "d")
    both = class_mismatch(train, ["a", "x", "c"], "d")
    assert "missing from the shifted test set: b" in both and "not classes of d: x" in both
    assert "another order (c, b, a; d: a, b, c)" in class_mismatch(train, ["c", "b", "a"], "d")


# -- caught by `study validate` already (the spec alone shows them) ---------------------------------------

VALIDATE_CASES = {
    "groups without class_dependent": (
        lambda s: s["noise"].update(options={"groups": [[0, 1]]}),
        ["noise.options.groups", "'class_dependent'", "add class_dependent to noise.kinds or remove options.groups"],
    ),
    "transition without the transition kind": (
        lambda s: s["noise"].update(options={"transition": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}),
        ["noise.options.transition", "add transition to noise.kinds or remove options.transition"],
    ),
    # search_spaces/azizi2021.yaml before its fix: a manifest shifted test given its folder, not its CSV
    "manifest shifted test without its manifest": (
        lambda s: s["datasets"][0].update(shifted_test={"name": "manifest", "options": {"root": "/data/cxr_shifted"}}),
        ["datasets[0].shifted_test.options", "the option manifest", "is required"],
    ),
    "annotator option without the annotators kind": (
        lambda s: s["noise"].update(options={"coverage": 0.5}),
        ["noise.options.coverage", "'annotators'", "add annotators to noise.kinds or remove options.coverage"],
    ),
    "features in a spec": (
        lambda s: s["noise"].update(kinds=["instance_dependent"], options={"features": [[0.0]]}),
        ["noise.options.features", "not a spec option", "from its images", "remove options.features"],
    ),
    "no annotators": (
        lambda s: s["noise"].update(kinds=["annotators"], options={"annotators": 0}),
        ["noise.options.annotators", "an integer in [1, 100]", "got 0"],
    ),
    "annotators not an integer": (
        lambda s: s["noise"].update(kinds=["annotators"], options={"annotators": 2.5}),
        ["noise.options.annotators", "an integer"],
    ),
    "skills of the wrong length": (
        lambda s: s["noise"].update(kinds=["annotators"], options={"annotators": 2, "skills": [1.0]}),
        ["noise.options.skills", "2 positive numbers, one factor per annotator"],
    ),
    "skills not positive": (
        lambda s: s["noise"].update(kinds=["annotators"], options={"skills": [1.0, 0.0, 1.0]}),
        ["noise.options.skills", "3 positive numbers"],
    ),
    "coverage above one": (
        lambda s: s["noise"].update(kinds=["annotators"], options={"coverage": 1.5}),
        ["noise.options.coverage", "outside (0, 1]"],
    ),
    "unknown aggregate": (
        lambda s: s["noise"].update(kinds=["annotators"], options={"aggregate": "mean"}),
        ["noise.options.aggregate", "allowed: majority, random, worst"],
    ),
}


@pytest.mark.parametrize("verb", ["validate", "launch"])
@pytest.mark.parametrize("case", list(VALIDATE_CASES))
def test_the_spec_alone_refuses(case, verb, tmp_path, capsys, monkeypatch):
    edit, words = VALIDATE_CASES[case]
    assert_refused(*run(verb, spec_with(edit), tmp_path, capsys, monkeypatch), words)


@pytest.mark.parametrize(
    "noise",
    [
        {"kinds": ["symmetric", "class_dependent"], "rates": [0.2], "options": {"groups": [[0, 1]], "exact": True}},
        {"kinds": ["transition"], "rates": [0.2], "options": {"transition": [[0.8, 0.2, 0], [0, 1, 0], [0, 0, 1]]}},
        {"kinds": ["pairflip", "uniform"], "rates": [0.2], "options": {"exact": True}},  # exact applies to every kind
        {"kinds": ["instance_dependent"], "rates": [0.0, 0.4], "options": {"exact": True}},
        {
            "kinds": ["symmetric", "annotators"],
            "rates": [0.2],
            "options": {"annotators": 4, "skills": [1, 1, 2, 0.5], "coverage": 0.6, "aggregate": "worst"},
        },
        {"kinds": ["annotators"], "rates": [0.2], "options": {"groups": [[0, 1]]}},  # annotators read groups too
    ],
)
def test_noise_options_for_kinds_the_spec_has(noise):
    parse_spec(spec_with(lambda s: s.update(noise=noise)))


def test_new_noise_kinds_pass_the_data_checks(tmp_path):
    noise = {"kinds": ["instance_dependent", "annotators"], "rates": [0.0, 0.3], "options": {"coverage": 0.5}}
    preflight(parse_spec(spec_with(lambda s: s.update(noise=noise))), "spec.yaml", str(tmp_path / "data"))


def test_annotator_groups_that_do_not_fit_the_data_are_refused(tmp_path):
    noise = {"kinds": ["annotators"], "rates": [0.3], "options": {"groups": [[0, 7]]}}
    with pytest.raises(SpecError) as e:
        preflight(parse_spec(spec_with(lambda s: s.update(noise=noise))), "spec.yaml", str(tmp_path / "data"))
    assert e.value.problems == [
        ("noise", "annotators at rate 0.3 on synthetic: annotators group [0, 7] has class 7 outside [0, 3)")
    ]
