"""Recorded labels (docs/noise.md, "Recorded labels"): a manifest's annotator columns as noise settings.

Hand-computed aggregates and rates, the manifest's reading and refusals, the spec's door, a trial's labels,
launch's check of the files, the smoke stand-in and the report's per-kind ranking.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from benchmarks.bad_inputs import BASE_SPEC
from study.data import DataError, get_dataset
from study.experiment import corrupt, load_dataset, trial_splits
from study.noise import recorded_kind, recorded_noise, recorded_source
from study.reports.analysis import ranking_by_kind
from study.reports.store import expected_points, with_clean_in_every_kind
from study.tuning.plan import Point, make_plan, noise_settings
from study.tuning.preflight import noise_problems
from study.tuning.smoke import smoke_spec
from study.tuning.spec import SpecError, parse_spec
from tests.data.test_loaders import write_image

# five samples, three annotators (-1: did not label); reference labels 0 1 2 0 1
CLEAN = np.array([0, 1, 2, 0, 1])
GIVEN = np.array(
    [
        [0, 0, 1],  # majority 0 (right); worst 1
        [1, 2, 2],  # majority 2 (wrong); worst 2
        [2, -1, 2],  # majority 2 (right); worst 2 (no wrong annotation)
        [1, 1, -1],  # majority 1 (wrong); worst 1
        [1, 1, 1],  # majority 1 (right); worst 1
    ]
)
NAMES = ["r1", "r2", "r3"]


def test_majority_and_worst_by_hand():
    maj = recorded_noise(CLEAN, GIVEN, NAMES, 3, "majority", 0)
    np.testing.assert_array_equal(maj.labels, [0, 2, 2, 1, 1])
    assert maj.realized_rate == pytest.approx(2 / 5) and maj.rate == maj.realized_rate
    assert maj.kind == "recorded:majority" and maj.options == {"source": "majority", "annotators": NAMES}
    # realised matrix against the reference: class 0 (two samples): one right, one to 1; class 1: one to 2
    np.testing.assert_allclose(maj.transition, [[0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 1]])
    worst = recorded_noise(CLEAN, GIVEN, NAMES, 3, "worst", 0)
    np.testing.assert_array_equal(worst.labels, [1, 2, 2, 1, 1])
    assert worst.realized_rate == pytest.approx(3 / 5)
    np.testing.assert_array_equal(worst.annotator_labels, GIVEN.T)


def test_one_annotator_and_random():
    r1 = recorded_noise(CLEAN, GIVEN, NAMES, 3, "r1", 7)
    np.testing.assert_array_equal(r1.labels, [0, 1, 2, 1, 1])
    assert r1.realized_rate == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match=r"annotator 'r2' did not label 1 of the 5 samples; name an aggregate"):
        recorded_noise(CLEAN, GIVEN, NAMES, 3, "r2", 0)
    rnd = recorded_noise(CLEAN, GIVEN, NAMES, 3, "random", 3)
    for label, row in zip(rnd.labels, GIVEN, strict=True):
        assert label in row[row >= 0]  # one of the sample's own annotations
    again = recorded_noise(CLEAN, GIVEN, NAMES, 3, "random", 3)
    np.testing.assert_array_equal(rnd.labels, again.labels)  # deterministic in the seed


def test_majority_ties_are_seeded():
    given = np.array([[0, 1]] * 200)  # every sample a tie between 0 and 1
    a = recorded_noise(np.zeros(200, int), given, ["a", "b"], 2, "majority", 0).labels
    b = recorded_noise(np.zeros(200, int), given, ["a", "b"], 2, "majority", 0).labels
    c = recorded_noise(np.zeros(200, int), given, ["a", "b"], 2, "majority", 1).labels
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and 0.35 < a.mean() < 0.65


@pytest.mark.parametrize(
    ("source", "given", "match"),
    [
        ("r9", GIVEN, r"'r9' is neither an annotator \(r1, r2, r3\) nor an aggregate"),
        ("majority", GIVEN[:, :2][:4], r"samples x annotators \(5 x 3\)"),
        ("majority", np.array([[0, 0, 3]] * 5), r"must lie in \[0, 3\)"),
    ],
)
def test_invalid_recorded_inputs_rejected(source, given, match):
    with pytest.raises(ValueError, match=match):
        recorded_noise(CLEAN, given, NAMES, 3, source, 0)


def test_kind_names():
    assert recorded_kind("worst") == "recorded:worst"
    assert recorded_source("recorded:reader_1") == "reader_1" and recorded_source("symmetric") is None


def test_summary_and_files_name_the_annotators(tmp_path):
    noisy = recorded_noise(CLEAN, GIVEN, NAMES, 3, "majority", 0)
    noisy.save(tmp_path, CLEAN)
    table = pd.read_csv(tmp_path / "annotator_labels.csv")
    assert list(table.columns) == ["index", *NAMES]
    np.testing.assert_array_equal(table[NAMES].to_numpy(), GIVEN)
    summary = noisy.summary(CLEAN)
    assert summary["annotators"]["names"] == NAMES
    assert summary["annotators"]["error_rates"] == pytest.approx([1 / 5, 2 / 4, 2 / 4])


# -- a manifest's annotator columns --------------------------------------------------------------------


def write_manifest(folder, rows=24, extra=""):
    """``rows`` images, reference labels a/b/c, three annotators: r1 always right, r2 wrong on every third
    image, r3 leaves every fourth image unlabelled and is otherwise right."""
    classes = ["a", "b", "c"]
    lines = ["path,clean_label,r1,r2,r3" + extra]
    for i in range(rows):
        write_image(folder / "img" / f"{i}.png", 7 * i, size=12)
        c = classes[i % 3]
        r2 = classes[(i + 1) % 3] if i % 3 == 0 else c
        r3 = "" if i % 4 == 0 else c
        lines.append(f"img/{i}.png,{c},{c},{r2},{r3}")
    path = folder / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_reads_annotator_columns(tmp_path):
    csv = write_manifest(tmp_path)
    ds = get_dataset("manifest", manifest=csv, label_column="clean_label", annotator_columns=["r1", "r2", "r3"])
    data = ds.load(tmp_path / "cache")
    assert data.annotators == ["r1", "r2", "r3"] and data.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(data.annotations[:, 0], data.labels)
    assert (data.annotations[::3, 1] != data.labels[::3]).all()
    np.testing.assert_array_equal(data.annotations[::4, 2], -1)
    cached = ds.load(tmp_path / "cache")  # from the cache: the same annotations
    np.testing.assert_array_equal(cached.annotations, data.annotations)
    assert cached.annotators == data.annotators
    # without annotator columns the cache key and the data are those of before
    plain = get_dataset("manifest", manifest=csv, label_column="clean_label").load(tmp_path / "cache")
    assert plain.annotations is None and plain.cache_key != data.cache_key


@pytest.mark.parametrize(
    ("options", "edit", "match"),
    [
        ({"annotator_columns": ["r1", "r9"]}, None, r"no column 'r9' .*annotator_columns must name columns"),
        (
            {"annotator_columns": ["r1", "clean_label"]},
            None,
            r"'clean_label' is both an annotator column and the label",
        ),
        (
            {"annotator_columns": ["r1", "r2"]},
            ("img/4.png,b,b,b,", "img/4.png,b,,,"),
            r"labels.csv:6: no annotator column",
        ),
        (
            {"annotator_columns": ["r1"]},
            ("img/1.png,b,b,", "img/1.png,b,zebra,"),
            r"labels.csv:3: annotator column 'r1' gives 'zebra'",
        ),
    ],
)
def test_manifest_refuses_bad_annotator_columns(tmp_path, options, edit, match):
    csv = write_manifest(tmp_path)
    if edit:
        csv.write_text(csv.read_text().replace(*edit))
    with pytest.raises(DataError, match=match):
        get_dataset("manifest", manifest=csv, label_column="clean_label", **options).load(None)


@pytest.mark.parametrize(("columns", "match"), [(["r1", "r1"], "names a column twice"), (["r 1"], "letters, digits")])
def test_manifest_options_checked_without_files(columns, match):
    with pytest.raises(DataError, match=match):
        get_dataset("manifest", manifest="/nowhere.csv", annotator_columns=columns)


# -- the spec ------------------------------------------------------------------------------------------


def spec_dict(csv, recorded=("majority", "worst", "r1"), kinds=("symmetric",), rates=(0.0, 0.3), **extra):
    noise = {"recorded": list(recorded)}
    if kinds:
        noise.update(kinds=list(kinds), rates=list(rates))
    return {
        **copy.deepcopy(BASE_SPEC),
        "datasets": [
            {
                "name": "manifest",
                "id": "readers",
                "options": {
                    "manifest": str(csv),
                    "label_column": "clean_label",
                    "annotator_columns": ["r1", "r2", "r3"],
                    "resolution": 12,
                },
                "splits": {"val_fraction": 0.25, "test_fraction": 0.25},
            }
        ],
        "noise": noise,
        **extra,
    }


def test_recorded_sources_are_noise_settings(tmp_path):
    spec = parse_spec(spec_dict(tmp_path / "labels.csv"))
    assert noise_settings(spec) == [
        ("symmetric", 0.0),
        ("symmetric", 0.3),
        ("recorded:majority", 0.0),
        ("recorded:worst", 0.0),
        ("recorded:r1", 0.0),
    ]
    assert len(make_plan(spec).final_runs) == 5
    only = parse_spec(spec_dict(tmp_path / "labels.csv", kinds=()))
    assert noise_settings(only) == [("recorded:majority", 0.0), ("recorded:worst", 0.0), ("recorded:r1", 0.0)]


def test_by_noise_kind_applies_to_recorded_cells(tmp_path):
    lnl = [
        {
            "algorithm": "co_teaching",
            "epochs": 4,
            "fixed": {"forget_rate": 0.2},
            "by_noise_kind": {
                "recorded": {"fixed": {"forget_rate": "auto"}},
                "recorded:worst": {"fixed": {"forget_rate": 0.5}},
            },
        }
    ]
    spec = parse_spec(spec_dict(tmp_path / "labels.csv", lnl=lnl))
    entry = spec.lnl[0]
    assert entry.fixed_for("symmetric", 0.0)["forget_rate"] == 0.2  # clean
    assert entry.fixed_for("recorded:majority", 0.0)["forget_rate"] == "auto"  # recorded labels are noisy
    assert entry.fixed_for("recorded:worst", 0.0)["forget_rate"] == 0.5  # its own entry first


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: s["noise"].update(recorded=["r9"]), r"noise.recorded\[0\]: 'r9' is neither an annotator column"),
        (lambda s: s["datasets"][0]["options"].pop("annotator_columns"), r"has no recorded annotators' labels"),
        (lambda s: s["noise"].update(recorded=["a b"]), r"recorded source 'a b'"),
        (lambda s: s["noise"].update(recorded=["worst", "worst"]), "duplicate recorded sources"),
        (lambda s: s.update(noise={"recorded": []}), "no noise setting"),
        (lambda s: s.update(noise={"kinds": ["symmetric"], "recorded": ["worst"]}), "needs at least one rate"),
        (
            lambda s: s["lnl"][0].update(by_noise_kind={"recorded:r2": {"fixed": {}}}),
            r"by_noise_kind.recorded:r2: not a noise kind of this spec",
        ),
    ],
)
def test_the_door_refuses_bad_recorded_settings(tmp_path, edit, match):
    data = spec_dict(tmp_path / "labels.csv")
    edit(data)
    with pytest.raises(SpecError, match=match):
        parse_spec(data)


def test_a_study_grows_by_appended_recorded_sources(tmp_path):
    from study.tuning.errors import StudyInputError
    from study.tuning.grow import check_growth

    launched = parse_spec(spec_dict(tmp_path / "labels.csv", recorded=("majority",)))
    grown = parse_spec(spec_dict(tmp_path / "labels.csv", recorded=("majority", "worst")))
    part = check_growth(launched, grown, "grown.yaml")
    assert [c.id for c in part.cells] == [c.id for c in make_plan(grown).cells if "recorded:worst" in c.id]
    with pytest.raises(StudyInputError, match=r"noise.recorded.0: launched 'majority', now 'worst'"):
        check_growth(launched, parse_spec(spec_dict(tmp_path / "labels.csv", recorded=("worst",))), "changed.yaml")


# -- a trial, launch's check, smoke, report --------------------------------------------------------------


def test_a_trial_trains_on_the_recorded_labels(tmp_path):
    csv = write_manifest(tmp_path)
    spec = parse_spec(spec_dict(csv))
    data = load_dataset(spec, "readers", tmp_path / "cache")
    point = Point("readers", "recorded:majority", 0.0, "random", "ce", 4)
    splits = trial_splits(spec, data, point)
    noisy, out = corrupt(spec, data, splits, point)
    idx = np.concatenate([splits.train, splits.val])
    expected = recorded_noise(data.labels[idx], data.annotations[idx], data.annotators, 3, "majority", 4)
    np.testing.assert_array_equal(noisy[idx], expected.labels)
    np.testing.assert_array_equal(noisy[splits.test], data.labels[splits.test])  # the reference
    assert out.kind == "recorded:majority" and out.realized_rate == expected.realized_rate
    r1 = corrupt(spec, data, splits, Point("readers", "recorded:r1", 0.0, "random", "ce", 4))[0]
    np.testing.assert_array_equal(r1, data.labels)  # r1 is always right


def test_launch_refuses_an_annotator_who_left_images_unlabelled(tmp_path):
    csv = write_manifest(tmp_path)
    spec = parse_spec(spec_dict(csv, recorded=("majority", "r3")))
    data = load_dataset(spec, "readers", tmp_path / "cache")
    problems = noise_problems(spec, data, "readers")
    assert len(problems) == 1 and problems[0][0] == "noise.recorded[1]"
    assert "annotator 'r3' did not label 6 of the 24 samples" in problems[0][1]


def test_smoke_simulates_the_annotators(tmp_path):
    spec = parse_spec(spec_dict(tmp_path / "labels.csv"))
    smoke = smoke_spec(spec)
    stand = smoke.spec.datasets[0]
    assert stand.name == "synthetic" and stand.options["annotators"] == ["r1", "r2", "r3"]
    assert any("annotators' labels simulated" in n for n in smoke.notes)
    kinds = {p.noise_kind for _, p in make_plan(smoke.spec).final_runs}
    assert {"recorded:majority", "recorded:worst", "recorded:r1"} <= kinds
    data = load_dataset(smoke.spec, "readers", tmp_path / "cache")
    assert data.annotations.shape == (len(data), 3)
    wrong = (data.annotations != data.labels[:, None]).mean()
    assert 0.1 < wrong < 0.35  # annotator_error 0.3 redrawn from 3 classes: about 0.2 wrong


def test_report_keeps_recorded_labels_out_of_the_clean_set():
    grid = {
        "dataset": ["d"],
        "noise_kind": ["symmetric", "pairflip"],
        "noise_rate": [0.0, 0.4],
        "noise_recorded": ["majority"],
        "ssl": ["random"],
        "lnl": ["ce"],
        "seed": [0],
    }
    exp = expected_points(grid)
    assert set(zip(exp["noise_kind"], exp["noise_rate"], strict=True)) == {
        ("symmetric", 0.0),
        ("symmetric", 0.4),
        ("pairflip", 0.4),
        ("recorded:majority", 0.0),
    }
    filled = with_clean_in_every_kind(exp, grid["noise_kind"])
    copied = filled[(filled["noise_kind"] == "pairflip") & (filled["noise_rate"] == 0.0)]
    assert len(copied) == 1  # the clean point, not the recorded one
    assert len(filled[filled["noise_kind"] == "recorded:majority"]) == 1


def test_ssl_ranked_separately_per_noise_kind():
    rows = []
    # simclr best under symmetric noise, worst under recorded labels; rate 0 (clean) is not ranked
    scores = {
        ("symmetric", 0.0): {"random": 0.9, "simclr": 0.8},
        ("symmetric", 0.2): {"random": 0.6, "simclr": 0.7},
        ("symmetric", 0.4): {"random": 0.4, "simclr": 0.6},
        ("recorded:worst", 0.0): {"random": 0.5, "simclr": 0.45},
    }
    for (kind, rate), by_ssl in scores.items():
        for ssl, f1 in by_ssl.items():
            for seed in (0, 1):
                rows.append(("d", kind, rate, 1.0, ssl, "ce", seed, f1 + 0.01 * seed))
    res = pd.DataFrame(
        rows, columns=["dataset", "noise_kind", "noise_rate", "label_fraction", "ssl", "lnl", "seed", "test_f1"]
    )
    out = ranking_by_kind(res, "test_f1", "ssl", ["dataset", "noise_kind", "lnl"])
    ranks = {(r.noise_kind, r.ssl): r.mean_rank for r in out.itertuples()}
    assert ranks == {
        ("symmetric", "simclr"): 1.0,
        ("symmetric", "random"): 2.0,
        ("recorded:worst", "random"): 1.0,
        ("recorded:worst", "simclr"): 2.0,
    }
    score = out.set_index(["noise_kind", "ssl"])["mean_score"]
    assert score[("symmetric", "simclr")] == pytest.approx((0.7 + 0.6) / 2 + 0.005)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_study_on_a_real_multi_reader_manifest(tmp_path):
    """Not the stand-in: a manifest with three reader columns and a clean column, launched for real (two
    recorded sources and symmetric noise, tiny scale), then reported."""
    import subprocess
    import sys

    import yaml
    from mlflow.tracking import MlflowClient

    from study.tracking.store import default_tracking_uri

    csv = write_manifest(tmp_path / "data", rows=48)
    data = spec_dict(csv, recorded=("majority", "worst"), rates=(0.0, 0.3), name="readers-real")
    spec_path = tmp_path / "readers.yaml"
    spec_path.write_text(yaml.safe_dump(data))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "study.cli", *args], capture_output=True, text=True, timeout=900)

    proc = cli("launch", str(spec_path), "--storage", str(tmp_path / "out"), "--name", "readers-real", "--quiet")
    assert proc.returncode == 0, proc.stderr[-4000:]
    study_dir = tmp_path / "out" / "readers-real"
    assert proc.stdout.strip().splitlines()[-1] == str(study_dir)
    client = MlflowClient(tracking_uri=default_tracking_uri(study_dir))
    exp = client.get_experiment_by_name("readers-real")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    finals = [r for r in runs if r.data.tags.get("study.stage") == "final" and r.data.tags.get("study.kind") == "trial"]
    kinds = {r.data.tags["noise_kind"] for r in finals}
    assert kinds == {"symmetric", "recorded:majority", "recorded:worst"}
    assert all(r.info.status == "FINISHED" and "test_f1" in r.data.metrics for r in finals)
    worst = next(r for r in finals if r.data.tags["noise_kind"] == "recorded:worst")
    files = {f.path for f in client.list_artifacts(worst.info.run_id)}
    assert {"noise.json", "annotator_labels.csv"} <= files
    report = cli("report", str(study_dir))
    assert report.returncode == 0, report.stderr[-3000:]
    table = pd.read_csv(study_dir / "report" / "f1_table.csv")
    assert {"recorded:majority", "recorded:worst"} <= set(table["noise_kind"])
    assert (study_dir / "report" / "missing.txt").read_text() == ""
