"""Asymmetric label noise (docs/noise.md, `asymmetric`): each class flips to one fixed other class at any rate in
[0, 1) (Patrini et al. 2017; Han et al. 2018's pair flipping), the kind that expresses Dedieu et al. 2024's
asymmetric noise up to 0.9. Realised rates and matrices against the intended ones, the default against
pairflip, determinism, refused inputs, and the spec's door (`study validate`, exit 2 naming the field)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from benchmarks.bad_inputs import BASE_SPEC
from study.cli import main
from study.experiment import load_dataset, noise_options
from study.lnl.base import expected_noise_fraction
from study.noise import (
    KINDS,
    OPTION_KINDS,
    NoiseOptionError,
    class_targets,
    empirical_transition,
    inject_noise,
    transition_matrix,
)
from study.tuning.preflight import preflight
from study.tuning.spec import SpecError, parse_spec

K = 5
N_PER_CLASS = 4000
#: a custom destination of each class (no class its own): 0 -> 3, 1 -> 0, 2 -> 4, 3 -> 1, 4 -> 2
CUSTOM = [3, 0, 4, 1, 2]
DEFAULT = [(c + 1) % K for c in range(K)]
RATES = [0.2, 0.6, 0.9]


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(K), N_PER_CLASS))


def intended(rate: float, targets: list[int]) -> np.ndarray:
    t = np.eye(K) * (1.0 - rate)
    for c, d in enumerate(targets):
        t[c, d] = rate
    return t


def options(targets: list[int]) -> dict[str, Any]:
    return {} if targets == DEFAULT else {"targets": targets}


# -- the definition -----------------------------------------------------------------------------------


def test_registered_with_its_option():
    assert "asymmetric" in KINDS
    assert OPTION_KINDS["targets"] == ("asymmetric",)
    assert "asymmetric" in OPTION_KINDS["exact"]


@pytest.mark.parametrize("targets", [DEFAULT, CUSTOM], ids=["default", "custom"])
@pytest.mark.parametrize("rate", [0.0, *RATES])
def test_matrix_is_one_minus_rate_on_the_diagonal_and_rate_at_the_target(rate, targets):
    t = transition_matrix(K, "asymmetric", rate, **options(targets))
    np.testing.assert_allclose(t, intended(rate, targets), atol=1e-15)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 0.45, 0.49])
def test_default_targets_give_pairflips_matrix_below_one_half(rate):
    for k in (2, 3, K, 9):
        np.testing.assert_array_equal(transition_matrix(k, "asymmetric", rate), transition_matrix(k, "pairflip", rate))


# -- realised against intended ------------------------------------------------------------------------


@pytest.mark.parametrize("targets", [DEFAULT, CUSTOM], ids=["default", "custom"])
@pytest.mark.parametrize("rate", RATES)
def test_independent_draws_realise_the_intended_matrix(labels, rate, targets):
    out = inject_noise(labels, K, "asymmetric", rate, seed=3, **options(targets))
    t = intended(rate, targets)
    np.testing.assert_allclose(out.transition, t, atol=1e-15)
    emp = empirical_transition(labels, out.labels, K)
    # each entry a binomial proportion over N_PER_CLASS draws: 3 standard errors (zero entries: exactly zero)
    tol = 3 * np.sqrt(t * (1 - t) / N_PER_CLASS) + 1e-12
    assert np.all(np.abs(emp - t) <= tol), (emp, t)
    se = np.sqrt(rate * (1 - rate) / labels.size)
    assert abs(out.realized_rate - rate) <= 3 * se, (out.realized_rate, rate)
    assert out.realized_rate == np.mean(out.labels != labels)
    # every changed label went to its class's target
    moved = out.labels != labels
    np.testing.assert_array_equal(out.labels[moved], np.asarray(targets)[labels[moved]])


@pytest.mark.parametrize("targets", [DEFAULT, CUSTOM], ids=["default", "custom"])
@pytest.mark.parametrize("rate", RATES)
def test_exact_changes_exactly_round_rate_n_of_each_class(rate, targets):
    # 1000 a class: rate * n_c is a whole number, so the realised matrix is the intended one exactly
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(K), 1000))
    out = inject_noise(y, K, "asymmetric", rate, seed=11, exact=True, **options(targets))
    np.testing.assert_allclose(out.empirical_transition(y), intended(rate, targets), atol=1e-12)
    assert out.realized_rate == pytest.approx(rate, abs=1e-12)
    # uneven classes: round(rate * n_c) changes (half up), every one to the class's target
    counts = [101, 250, 333, 40, 7]
    y = np.random.default_rng(5).permutation(np.repeat(np.arange(K), counts))
    out = inject_noise(y, K, "asymmetric", rate, seed=11, exact=True, **options(targets))
    for c, n_c in enumerate(counts):
        got = out.labels[y == c]
        assert int(np.sum(got != c)) == int(np.floor(rate * n_c + 0.5)), c
        assert set(got[got != c].tolist()) <= {targets[c]}, c


@pytest.mark.parametrize("targets", [DEFAULT, CUSTOM], ids=["default", "custom"])
def test_above_one_half_the_target_is_the_most_likely_label(labels, targets):
    """The point of the kind (Dedieu et al.'s rates up to 0.9): the clean class is no longer the mode."""
    out = inject_noise(labels, K, "asymmetric", 0.9, seed=4, **options(targets))
    assert empirical_transition(labels, out.labels, K).argmax(axis=1).tolist() == targets


def test_forget_rate_is_the_noise_rate(labels):
    """Co-teaching's `forget_rate: auto` (sum_i pi_i (1 - T_ii)) is the nominal rate, as for pairflip."""
    priors = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    for rate in RATES:
        t = transition_matrix(K, "asymmetric", rate, targets=CUSTOM)
        assert expected_noise_fraction(t, priors) == pytest.approx(rate)


# -- determinism --------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [False, True])
def test_same_seed_same_labels_other_seed_other_labels(labels, exact):
    a = inject_noise(labels, K, "asymmetric", 0.6, seed=7, exact=exact, targets=CUSTOM)
    b = inject_noise(labels.copy(), K, "asymmetric", 0.6, seed=7, exact=exact, targets=list(CUSTOM))
    c = inject_noise(labels, K, "asymmetric", 0.6, seed=8, exact=exact, targets=CUSTOM)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)
    # its own stream (keyed by the kind's name): not pairflip's labels even where the matrices agree
    pair = inject_noise(labels, K, "pairflip", 0.3, seed=7, exact=exact)
    asym = inject_noise(labels, K, "asymmetric", 0.3, seed=7, exact=exact)
    assert not np.array_equal(pair.labels, asym.labels)


def test_a_pinned_draw():
    """The same labels on any machine (PCG64 streams are platform-independent)."""
    out = inject_noise(np.arange(12) % 4, 4, "asymmetric", 0.7, seed=9)
    assert out.labels.tolist() == PINNED


#: drawn when the kind was added (12 labels, 4 classes, rate 0.7, seed 9, default targets)
PINNED = [1, 2, 2, 3, 1, 2, 3, 0, 1, 2, 2, 0]


def test_options_are_recorded(tmp_path):
    y = np.arange(40) % K
    out = inject_noise(y, K, "asymmetric", 0.6, seed=0, targets=np.array(CUSTOM))
    meta = out.summary(y)
    assert meta["kind"] == "asymmetric" and meta["rate"] == 0.6 and meta["options"] == {"targets": CUSTOM}
    out.save(tmp_path, y)
    assert (tmp_path / "noise.json").is_file()


# -- refused inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "targets", "says"),
    [
        (1.0, None, r"outside \[0, 1\)"),
        (1.5, None, r"outside \[0, 1\)"),
        (-0.1, None, r"outside \[0, 1\)"),
        (0.2, [1, 2, 3, 4], "targets has 4 entries for 5 classes; give one destination class per class"),
        (0.2, [1, 2, 2, 4, 0], r"targets\[2\] = 2 maps class 2 to itself; give each class another class"),
        (0.2, [1, 2, 3, 4, 5], r"targets\[4\] = 5 is outside \[0, 5\); give a class index in \[0, 5\)"),
        (0.2, [1, 2, 3, -1, 0], r"targets\[3\] = -1 is outside \[0, 5\)"),
        (0.2, [1, 2.0, 3, 4, 0], r"targets\[1\] = 2.0 is not a class index; give an integer"),
        (0.2, [1, True, 3, 4, 0], r"targets\[1\] = True is not a class index"),
        (0.2, "12340", "targets must be a list of 5 class indices"),
    ],
)
def test_refused(rate, targets, says):
    opts = {} if targets is None else {"targets": targets}
    with pytest.raises(ValueError, match=says) as e:
        inject_noise(np.arange(20) % K, K, "asymmetric", rate, seed=0, **opts)
    if targets is not None:
        assert isinstance(e.value, NoiseOptionError) and e.value.option == "targets"


def test_targets_belong_to_asymmetric_only():
    with pytest.raises(NoiseOptionError, match="applies only to noise kind asymmetric, not to 'pairflip'"):
        inject_noise(np.arange(20) % K, K, "pairflip", 0.2, seed=0, targets=CUSTOM)


def test_class_targets_resolves_names_and_refuses_unknown_ones():
    names = ["ADI", "BACK", "DEB"]
    assert class_targets(["DEB", 0, "BACK"], names) == [2, 0, 1]
    with pytest.raises(NoiseOptionError, match=r"targets\[1\] = 'TUM' is not a class of this dataset \(classes: ADI"):
        class_targets(["DEB", "TUM", "BACK"], names)
    with pytest.raises(NoiseOptionError, match=r"targets\[2\] = 'DEB' maps class 2 \(DEB\) to itself"):
        class_targets(["BACK", "ADI", "DEB"], names)


# -- the spec's door ----------------------------------------------------------------------------------


def spec_with(noise: dict[str, Any], datasets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE_SPEC)  # synthetic, 3 classes
    data["noise"] = noise
    if datasets is not None:
        data["datasets"] = datasets
    return data


def validate(data: dict[str, Any], tmp_path: Path, capsys) -> tuple[int, str]:
    """``study validate`` in-process: the exit code and what it printed."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["validate", str(spec)])
    out = capsys.readouterr()
    return code, out.out + out.err


CRC = {"name": "nct_crc_he", "options": {"resolution": 224}}  # nine classes known without the data


@pytest.mark.parametrize(
    ("noise", "datasets"),
    [
        ({"kinds": ["asymmetric"], "rates": [0.0, 0.2, 0.6, 0.9]}, None),
        ({"kinds": ["uniform", "asymmetric"], "rates": [0.0, 0.9], "options": {"exact": True}}, None),
        ({"kinds": ["asymmetric"], "rates": [0.9], "options": {"targets": [2, 0, 1]}}, None),
        (
            {"kinds": ["asymmetric"], "rates": [0.9], "options": {"targets": ["BACK", "ADI", 3, 4, 5, 6, 7, 8, "DEB"]}},
            [CRC],
        ),
    ],
)
def test_a_spec_with_asymmetric_up_to_0_9_validates(noise, datasets, tmp_path, capsys):
    code, out = validate(spec_with(noise, datasets), tmp_path, capsys)
    assert code == 0, out
    assert ": ok: study 'bad'" in out
    assert parse_spec(spec_with(noise, datasets)).noise.kinds == noise["kinds"]


@pytest.mark.parametrize(
    ("noise", "datasets", "words"),
    [
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": [1, 2]}},
            None,
            ["noise.options.targets", "targets has 2 entries for 3 classes", "(on datasets[0], synthetic)"],
        ),
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": [0, 2, 1]}},
            None,
            ["noise.options.targets", "targets[0] = 0 maps class 0 to itself", "give each class another class"],
        ),
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": [1, 2, 3]}},
            None,
            ["noise.options.targets", "targets[2] = 3 is outside [0, 3)", "give a class index in [0, 3)"],
        ),
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": ["BACK", "TUMOUR", 3, 4, 5, 6, 7, 8, 0]}},
            [CRC],
            ["noise.options.targets", "targets[1] = 'TUMOUR' is not a class of this dataset", "ADI, BACK"],
        ),
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": ["BACK", "ADI", "DEB", 4, 5, 6, 7, 8, 0]}},
            [CRC],
            ["noise.options.targets", "targets[2] = 'DEB' maps class 2 (DEB) to itself"],
        ),
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": "next"}},
            None,
            ["noise.options.targets", "not a list of classes", "targets[c] is where labels of class c"],
        ),
        (
            {"kinds": ["asymmetric"], "rates": [0.2], "options": {"targets": [1, None, 0]}},
            None,
            ["noise.options.targets", "targets[1] = None is neither a class name nor a class index"],
        ),
        (
            {"kinds": ["pairflip"], "rates": [0.2], "options": {"targets": [1, 2, 0]}},
            None,
            ["noise.options.targets", "'asymmetric'", "add asymmetric to noise.kinds or remove options.targets"],
        ),
        ({"kinds": ["asymmetric"], "rates": [0.2, 1.0]}, None, ["noise.rates", "[0, 1)"]),
    ],
)
def test_bad_targets_exit_2_naming_the_field(noise, datasets, words, tmp_path, capsys):
    code, out = validate(spec_with(noise, datasets), tmp_path, capsys)
    assert code == 2, out
    assert "Traceback" not in out
    for w in words:
        assert w in out, f"{w!r} not in: {out}"


def test_names_the_spec_cannot_check_are_checked_against_the_data(tmp_path):
    """A dataset whose class names only its data knows: names pass the door, the data check (launch) refuses
    an unknown one, and known ones reach inject_noise as class indices."""
    bad = parse_spec(spec_with({"kinds": ["asymmetric"], "rates": [0.4], "options": {"targets": ["x", 2, 0]}}))
    with pytest.raises(SpecError) as e:
        preflight(bad, "spec.yaml", str(tmp_path / "data"))
    [(path, msg)] = e.value.problems
    assert path == "noise" and "targets[0] = 'x' is not a class of this dataset (classes: class_0" in msg
    good = parse_spec(spec_with({"kinds": ["asymmetric"], "rates": [0.4], "options": {"targets": ["class_2", 2, 0]}}))
    preflight(good, "spec.yaml", str(tmp_path / "data"))
    data = load_dataset(good, good.datasets[0].key, tmp_path / "data")
    assert noise_options(good, data, good.datasets[0].key, "asymmetric") == {"targets": [2, 2, 0]}
    assert noise_options(good, data, good.datasets[0].key, "uniform") == {}
