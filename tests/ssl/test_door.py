"""The door for Azizi et al.'s stages: a weight-file init (`init: {weights: PATH}`) checked for its form by
`study validate` and for its file by `study launch`; MICLe refused on data without multi-image patients; the
smoke stand-in replaces a weight file by random weights and says so. Exit 2, the field, the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18 as tv_resnet18

from study.tuning.preflight import weight_file_problems
from study.tuning.smoke import smoke_spec
from study.tuning.spec import SpecError, parse_spec
from tests.tuning.test_preflight import assert_refused, run, spec_with


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("w") / "simclr_r18.pt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in tv_resnet18(weights=None).state_dict().items()}}, path)
    return path


def ssl_entries(*entries: dict[str, Any], backbone: str = "small_cnn") -> Any:
    return lambda s: s.update(ssl=list(entries), model={"backbone": backbone})


def problems_of(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as e:
        parse_spec(data)
    return e.value.problems


# -- the form of the init, at `study validate` --------------------------------------------------------------


@pytest.mark.parametrize(
    "init, path, words",
    [
        ("imagent", "ssl[0].init", ["'imagent' is not allowed", "random, imagenet, or {weights: PATH"]),
        (
            {"weights": "w.pt", "prefx": "a."},
            "ssl[0].init.prefx",
            ["unknown field (allowed: weights, format, prefix, inputs)"],
        ),
        (
            {"weights": "w.pt", "format": "tf"},
            "ssl[0].init.format",
            ["'tf' is not allowed (allowed: torchvision, timm)"],
        ),
        ({"prefix": "a."}, "ssl[0].init.weights", ["required field is missing"]),
    ],
)
def test_validate_names_the_init_field(init, path, words):
    data = spec_with(ssl_entries({"method": "simclr", "init": init}, backbone="resnet18"))
    [(where, msg)] = problems_of(data)
    assert where == path
    for w in words:
        assert w in msg, msg


def test_validate_refuses_inits_that_cannot_exist():
    cases = [
        (ssl_entries({"method": "pretrained"}, backbone="resnet50"), "needs init {weights: PATH}"),
        (ssl_entries({"method": "simclr", "init": {"weights": "w.pt"}}), "fits a torchvision ResNet"),
        (ssl_entries({"method": "random", "init": {"weights": "w.pt"}}, backbone="resnet50"), "method 'pretrained'"),
    ]
    for edit, words in cases:
        [(where, msg)] = problems_of(spec_with(edit))
        assert where == "ssl[0].init" and words in msg, msg


def test_a_weight_init_round_trips_through_the_resolved_spec(r18_file):
    from study.tuning.spec import spec_to_yaml

    init = {"weights": str(r18_file), "prefix": "encoder."}
    spec = parse_spec(spec_with(ssl_entries({"method": "pretrained", "init": init}, backbone="resnet18")))
    import yaml

    again = parse_spec(yaml.safe_load(spec_to_yaml(spec)))
    assert again.ssl[0].init == spec.ssl[0].init and again.ssl[0].init.prefix == "encoder."


# -- the file, at `study launch` ------------------------------------------------------------------------------


def test_launch_refuses_a_missing_weight_file(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "no_such.pt"
    data = spec_with(ssl_entries({"method": "pretrained", "init": {"weights": str(missing)}}, backbone="resnet50"))
    assert run("validate", data, tmp_path, capsys, monkeypatch)[0] == 0  # the form is fine; the file is launch's
    words = ["ssl[0].init.weights", str(missing), "no such weight file", "docs/weights.md"]
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), words)


def test_launch_refuses_a_file_that_does_not_fit_the_backbone(r18_file, tmp_path, capsys, monkeypatch):
    init = {"weights": str(r18_file), "prefix": "encoder."}
    data = spec_with(ssl_entries({"method": "pretrained", "init": init}, backbone="resnet50"))
    words = ["ssl[0].init.weights", str(r18_file), "does not fit backbone resnet50", "missing", "layer1.0.conv3"]
    assert_refused(*run("launch", data, tmp_path, capsys, monkeypatch), words)


def test_a_fitting_file_passes_and_a_wrong_prefix_is_named(r18_file):
    init = {"weights": str(r18_file), "prefix": "encoder."}
    spec = parse_spec(spec_with(ssl_entries({"method": "pretrained", "init": init}, backbone="resnet18")))
    assert weight_file_problems(spec) == []
    spec = parse_spec(
        spec_with(ssl_entries({"method": "pretrained", "init": {"weights": str(r18_file)}}, backbone="resnet18"))
    )
    [(where, msg)] = weight_file_problems(spec)
    # ResNet-18 has 122 entries, 120 without its classifier; under the prefix, fc.* is not recognised either
    assert where == "ssl[0].init.weights" and "missing 120 keys: conv1.weight" in msg
    assert "unexpected 122 keys: encoder.conv1.weight" in msg and "init.prefix" in msg


# -- MICLe needs patients --------------------------------------------------------------------------------------


def test_validate_refuses_micle_on_a_dataset_without_patients(tmp_path, capsys, monkeypatch):
    def edit(s: dict[str, Any]) -> None:
        s["datasets"].append({"name": "nct_crc_he", "options": {"root": str(tmp_path)}})
        s["ssl"] = [{"method": "simclr"}, {"method": "micle"}]

    code, err, _ = run("validate", spec_with(edit), tmp_path, capsys, monkeypatch)
    assert code == 2
    for w in ["ssl[1].method", "micle needs several images per patient", "datasets[0] (synthetic)", "manifest"]:
        assert w in err, err
    assert "patient_id column" in err and "simclr" in err


def test_validate_takes_micle_where_patients_can_be():
    def edit(s: dict[str, Any]) -> None:
        s["datasets"][0]["options"]["views_per_patient"] = 2
        s["ssl"] = [{"method": "micle"}]

    assert parse_spec(spec_with(edit)).ssl[0].method == "micle"


def manifest(folder: Path, patients: bool) -> Path:
    """12 tiny PNGs in 3 classes, two per patient where ``patients``."""
    rows = ["path,label" + (",patient_id" if patients else "")]
    for i in range(12):
        Image.new("RGB", (8, 8), (20 * i, 0, 0)).save(folder / f"{i}.png")
        rows.append(f"{i}.png,c{i % 3}" + (f",p{i // 2}" if patients else ""))
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return folder / "m.csv"


@pytest.mark.parametrize("patients", [False, True])
def test_launch_refuses_micle_on_a_manifest_without_patient_ids(patients, tmp_path, capsys, monkeypatch):
    csv = manifest(tmp_path, patients)

    def edit(s: dict[str, Any]) -> None:
        s["datasets"] = [{"name": "manifest", "options": {"manifest": str(csv)}}]
        s["ssl"] = [{"method": "micle"}]

    if patients:
        from study.tuning.preflight import preflight

        preflight(parse_spec(spec_with(edit)), "spec.yaml", str(tmp_path / "data"))  # no problem
        return
    code, err, storage = run("launch", spec_with(edit), tmp_path, capsys, monkeypatch)
    assert_refused(code, err, storage, ["ssl[0].method", "datasets[0] (manifest)", "carry no patient ids"])


# -- smoke mode -------------------------------------------------------------------------------------------------


def test_smoke_replaces_a_weight_file_by_random_weights_loudly(tmp_path):
    missing = str(tmp_path / "simclr_imagenet_r50.pt")  # never read: it does not even exist

    def edit(s: dict[str, Any]) -> None:
        s["datasets"][0]["options"]["views_per_patient"] = 2
        s["ssl"] = [
            {"method": "pretrained", "id": "sup", "init": {"weights": missing}},
            {"method": "micle", "init": {"weights": missing}, "epochs": 3},
        ]
        s["model"] = {"backbone": "resnet50", "resolution": 224}

    smoke = smoke_spec(parse_spec(spec_with(edit)))
    assert [(s.method, s.init) for s in smoke.spec.ssl] == [("random", "random"), ("micle", "random")]
    notes = "\n".join(smoke.notes)
    assert f"ssl 'sup': the weight file {missing} replaced by RANDOM weights" in notes
    assert f"ssl 'micle': starts from RANDOM weights instead of the weight file {missing}" in notes
    assert weight_file_problems(smoke.spec) == []


def test_the_azizi_spec_names_its_weight_files_at_the_door():
    from study.tuning.spec import load_spec

    spec = load_spec(Path(__file__).resolve().parents[2] / "search_spaces" / "azizi2021.yaml")
    assert spec.model.backbone == "resnet50" and spec.model.resolution == 224
    assert [(s.key, s.method) for s in spec.ssl] == [
        ("supervised_imagenet", "pretrained"),
        ("simclr_imagenet", "pretrained"),
        ("simclr", "simclr"),
        ("micle", "micle"),
    ]
    assert all(d.name == "manifest" and d.shifted_test is not None for d in spec.datasets)
    problems = weight_file_problems(spec)  # this machine has none of the files
    assert [p for p, _ in problems] == [f"ssl[{i}].init.weights" for i in range(4)]
    assert "/models/simclr_imagenet_resnet50_1x.pt: no such weight file" in problems[1][1]
