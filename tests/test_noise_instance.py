"""Instance-dependent and annotator label noise (docs/noise.md): rates, what depends on the sample, aggregation
against hand examples, determinism, saved records and rejected inputs; and the labels of the older kinds,
unchanged by the two new ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.bad_inputs import BASE_SPEC
from study.data import ImageData
from study.experiment import corrupt, trial_splits
from study.noise import (
    FEATURE_DIMS,
    KINDS,
    NoiseOptionError,
    aggregate_annotations,
    empirical_transition,
    inject_noise,
    instance_features,
    transition_matrix,
)
from study.tuning.plan import Point
from study.tuning.spec import parse_spec

K = 5


def blobs(n_per_class: int, k: int = K, dims: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and features: one Gaussian blob per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per_class)
    centres = rng.normal(0.0, 1.0, (k, dims))
    return y, centres[y] + rng.normal(0.0, 1.0, (y.size, dims))


# -- the older kinds ----------------------------------------------------------------------------------

#: drawn before instance_dependent and annotators were added (12 labels, 4 classes, rate 0.4, seed 9)
BEFORE = {
    ("symmetric", False): [0, 0, 3, 2, 1, 1, 1, 3, 2, 0, 1, 3],
    ("symmetric", True): [0, 1, 2, 3, 0, 3, 3, 3, 2, 1, 2, 0],
    ("uniform", False): [2, 0, 2, 3, 0, 1, 3, 3, 0, 2, 1, 3],
    ("uniform", True): [0, 1, 2, 3, 2, 1, 2, 3, 0, 2, 3, 2],
    ("pairflip", False): [1, 1, 3, 3, 1, 1, 2, 0, 1, 2, 2, 3],
    ("pairflip", True): [1, 1, 3, 3, 0, 1, 2, 0, 0, 2, 2, 3],
    ("class_dependent", False): [0, 1, 2, 3, 0, 1, 3, 2, 0, 1, 2, 2],
    ("class_dependent", True): [1, 1, 2, 3, 0, 0, 2, 2, 0, 1, 3, 3],
    ("transition", False): [3, 2, 0, 3, 3, 0, 1, 2, 0, 0, 1, 1],
    ("transition", True): [3, 0, 3, 1, 0, 2, 2, 2, 1, 1, 1, 3],
}
OLD_OPTIONS = {"class_dependent": {"groups": [[0, 1], [2, 3]]}, "transition": {"transition": np.full((4, 4), 0.25)}}


@pytest.mark.parametrize(("kind", "exact"), list(BEFORE))
def test_older_kinds_draw_the_labels_they_drew_before(kind, exact):
    y = np.arange(12) % 4
    out = inject_noise(y, 4, kind, 0.4, seed=9, exact=exact, **OLD_OPTIONS.get(kind, {}))
    assert out.labels.tolist() == BEFORE[kind, exact]
    assert out.flip_probabilities is None and out.annotator_labels is None


def test_new_kinds_come_last():
    assert KINDS[-3:] == ("instance_dependent", "annotators", "hard_instance")


# -- instance_dependent -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.3, 0.5])
def test_instance_dependent_realises_the_target_mean_rate(rate):
    y, x = blobs(800)
    out = inject_noise(y, K, "instance_dependent", rate, seed=1, features=x)
    q = out.flip_probabilities
    assert q is not None and q.shape == y.shape and np.all((q >= 0) & (q <= 1))
    # q_n ~ N(rate, 0.1^2) truncated to [0, 1]: at these rates the truncation moves the mean by < 0.001
    assert abs(q.mean() - rate) <= 5 * 0.1 / np.sqrt(y.size) + 1e-3
    # a label changes with probability q_n exactly (the true class is excluded from the softmax)
    se = np.sqrt(rate * (1 - rate) / y.size)
    assert abs(out.realized_rate - q.mean()) <= 5 * se
    assert out.realized_rate == pytest.approx(np.mean(out.labels != y))


def test_instance_dependent_at_rate_zero_changes_nothing():
    y, x = blobs(50)
    out = inject_noise(y, K, "instance_dependent", 0.0, seed=1, features=x)
    np.testing.assert_array_equal(out.labels, y)
    assert out.realized_rate == 0.0 and np.all(out.flip_probabilities == 0.0)
    np.testing.assert_allclose(out.transition, np.eye(K))


def test_expected_transition_is_row_stochastic_and_matches_the_draw():
    y, x = blobs(5000, k=4, dims=10, seed=3)
    out = inject_noise(y, 4, "instance_dependent", 0.4, seed=2, features=x)
    t = out.transition
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    assert np.all(t >= 0)
    np.testing.assert_allclose(np.diag(t), [1 - out.flip_probabilities[y == c].mean() for c in range(4)])
    # each label is an independent draw from its own row, so each entry of a class's row is a mean of 5000
    # Bernoulli draws whose probabilities average to T[c, j]: 5 binomial standard errors bound it
    emp = empirical_transition(y, out.labels, 4)
    tol = 5 * np.sqrt(t * (1 - t) / 5000) + 1e-9
    assert np.all(np.abs(emp - t) <= tol), (emp, t)


def test_expected_transition_of_an_absent_class_is_the_identity_row():
    y, x = blobs(100, k=3)
    out = inject_noise(y, 4, "instance_dependent", 0.3, seed=0, features=x)
    np.testing.assert_array_equal(out.transition[3], [0, 0, 0, 1])
    np.testing.assert_allclose(out.transition.sum(axis=1), 1.0)


def test_exact_changes_round_of_the_summed_flip_probabilities_per_class():
    counts = [101, 250, 333, 40, 7]
    y = np.random.default_rng(5).permutation(np.repeat(np.arange(K), counts))
    x = np.random.default_rng(6).normal(size=(y.size, 8))
    out = inject_noise(y, K, "instance_dependent", 0.37, seed=11, features=x, exact=True)
    for c in range(K):
        expected = int(np.floor(out.flip_probabilities[y == c].sum() + 0.5))
        assert int(np.sum(out.labels[y == c] != c)) == expected, c


def test_exact_favours_samples_with_higher_flip_probabilities():
    # over many seeds, a sample's chance of being changed follows its q_n
    y, x = blobs(200, k=2, dims=4)
    q_changed, q_kept = [], []
    for seed in range(30):
        out = inject_noise(y, 2, "instance_dependent", 0.3, seed=seed, features=x, exact=True)
        changed = out.labels != y
        q_changed.append(out.flip_probabilities[changed].mean())
        q_kept.append(out.flip_probabilities[~changed].mean())
    assert np.mean(q_changed) > np.mean(q_kept) + 0.02


def test_flip_probabilities_do_not_depend_on_the_image_but_destinations_do():
    """Xia et al.'s generator draws q_n before and apart from the features; the features choose where a
    changed label goes."""
    y, x = blobs(300)
    a = inject_noise(y, K, "instance_dependent", 0.4, seed=4, features=x)
    b = inject_noise(y, K, "instance_dependent", 0.4, seed=4, features=np.flip(x, axis=0).copy())
    np.testing.assert_array_equal(a.flip_probabilities, b.flip_probabilities)
    assert not np.array_equal(a.labels, b.labels)


def test_look_alike_samples_are_given_the_same_wrong_class():
    """What 'instance-dependent' means for this generator: samples that look alike (one tight cluster of a
    class) are mislabelled as the same wrong class, and other clusters of the class as other ones; under
    symmetric noise a cluster's wrong labels spread over every other class."""
    rng = np.random.default_rng(0)
    k, clusters, per = 4, 5, 200
    centres = rng.normal(0.0, 1.0, (k, clusters, 16))
    y = np.repeat(np.arange(k), clusters * per)
    cluster = np.tile(np.repeat(np.arange(clusters), per), k)
    x = centres[y, cluster] + rng.normal(0.0, 0.05, (y.size, 16))

    def modal_shares(labels: np.ndarray) -> tuple[list[float], list[int]]:
        shares, modes = [], []
        for c in range(k):
            for g in range(clusters):
                wrong = labels[(y == c) & (cluster == g) & (labels != y)]
                counts = np.bincount(wrong, minlength=k)
                shares.append(counts.max() / max(wrong.size, 1))
                modes.append(int(c * k + counts.argmax()))
        return shares, modes

    idn, modes = modal_shares(inject_noise(y, k, "instance_dependent", 0.4, seed=0, features=x).labels)
    sym, _ = modal_shares(inject_noise(y, k, "symmetric", 0.4, seed=0).labels)
    assert np.mean(idn) > 0.8 and np.mean(sym) < 0.5, (np.mean(idn), np.mean(sym))
    # not class-dependent noise in disguise: a class's clusters go to different wrong classes
    assert len(set(modes)) > k


def test_flip_probability_is_unrelated_to_how_hard_a_sample_is():
    """Near the class boundary is not more likely to be mislabelled (docs/noise.md): two overlapping Gaussian
    classes, each sample's loss under the Bayes-optimal (logistic) model of them, against its flip probability
    and its realised flip."""
    rng = np.random.default_rng(1)
    n = 4000
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(0.0, 1.0, (n, 2))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)
    logit = 2.0 * x[:, 0]  # log p(1|x) - log p(0|x) for unit-variance classes at -1 and +1
    loss = np.logaddexp(0.0, np.where(y == 1, -logit, logit))  # cross-entropy of the true class
    out = inject_noise(y, 2, "instance_dependent", 0.3, seed=3, features=x)
    r = np.corrcoef(out.flip_probabilities, loss)[0, 1]
    assert abs(r) < 4 / np.sqrt(n), r
    hard, easy = loss >= np.quantile(loss, 0.75), loss <= np.quantile(loss, 0.25)
    changed = out.labels != y
    se = np.sqrt(2 * 0.3 * 0.7 / (n // 4))
    assert abs(changed[hard].mean() - changed[easy].mean()) <= 4 * se


# -- hard_instance (Chen et al. 2021) ------------------------------------------------------------------


def overlapping_gaussians(n: int = 4000, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two unit-variance Gaussian classes at -1 and +1 on the first axis (a second, uninformative axis) and
    each sample's cross-entropy under the Bayes-optimal model of them: how hard the sample is."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(0.0, 1.0, (n, 2))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)
    logit = 2.0 * x[:, 0]
    return y, x, np.logaddexp(0.0, np.where(y == 1, -logit, logit))


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.4])
def test_hard_instance_flips_concentrate_on_the_hardest_samples(rate):
    """The acceptance's statistical test: higher flip probability <-> higher clean-model loss. Here the
    flip is decided by the clean model's confusion score, so the flipped samples are the hardest ones."""
    y, x, loss = overlapping_gaussians()
    out = inject_noise(y, 2, "hard_instance", rate, seed=3, features=x)
    changed = out.labels != y
    assert changed.sum() == round(rate * y.size) and out.realized_rate == pytest.approx(rate)
    # the flipped samples are (up to the logistic model's fit of the Bayes boundary) the rate's hardest share
    hardest = loss >= np.quantile(loss, 1.0 - rate)
    assert (changed & hardest).sum() >= 0.95 * changed.sum()
    assert loss[changed].mean() > 3 * loss[~changed].mean()
    # the confusion score ranks hardness: rank correlation with the Bayes loss
    r = np.corrcoef(np.argsort(np.argsort(out.confusion_scores)), np.argsort(np.argsort(loss)))[0, 1]
    assert r > 0.99


def test_hard_instance_sends_each_sample_to_the_class_it_is_confused_with():
    # three classes on a line: 0 at -3, 1 at 0, 2 at +3; class 1's samples near class 2 go to 2, near 0 to 0
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 600)
    x = (np.array([-3.0, 0.0, 3.0])[y] + rng.normal(0.0, 1.0, y.size))[:, None]
    out = inject_noise(y, 3, "hard_instance", 0.2, seed=0, features=x)
    moved = (y == 1) & (out.labels != y)
    assert moved.any()
    np.testing.assert_array_equal(out.labels[moved], np.where(x[moved, 0] > 0, 2, 0))
    assert set(out.labels[(y == 0) & (out.labels != y)]) == {1}  # class 0 borders class 1 only
    np.testing.assert_allclose(out.transition, empirical_transition(y, out.labels, 3))


def test_hard_instance_is_deterministic_and_saved(tmp_path):
    y, x, _ = overlapping_gaussians(400)
    a = inject_noise(y, 2, "hard_instance", 0.25, seed=5, features=x)
    b = inject_noise(y, 2, "hard_instance", 0.25, seed=5, features=x)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert inject_noise(y, 2, "hard_instance", 0.0, seed=5, features=x).realized_rate == 0.0
    a.save(tmp_path, y)
    scores = np.loadtxt(tmp_path / "confusion_scores.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(scores[:, 1], a.confusion_scores)
    summary = json.loads((tmp_path / "noise.json").read_text())
    assert summary["options"]["features"] == {"rows": 400, "dims": 2}
    assert summary["confusion_scores"]["max"] == pytest.approx(float(a.confusion_scores.max()))
    with pytest.raises(ValueError, match="features"):
        inject_noise(y, 2, "hard_instance", 0.25, seed=5)
    with pytest.raises(ValueError, match="no transition matrix of the class alone"):
        transition_matrix(2, "hard_instance", 0.2)


def test_instance_dependent_is_deterministic_and_pinned():
    y, x = blobs(100)
    a = inject_noise(y, K, "instance_dependent", 0.4, seed=7, features=x)
    b = inject_noise(y.copy(), K, "instance_dependent", 0.4, seed=7, features=x.copy())
    c = inject_noise(y, K, "instance_dependent", 0.4, seed=8, features=x)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.flip_probabilities, b.flip_probabilities)
    assert not np.array_equal(a.labels, c.labels)
    small = inject_noise(
        np.arange(10) % 3, 3, "instance_dependent", 0.5, seed=42, features=np.arange(20.0).reshape(10, 2)
    )
    assert small.labels.tolist() == PINNED_IDN


PINNED_IDN = [0, 1, 2, 0, 1, 0, 2, 2, 2, 0]


def test_features_option_is_recorded_by_its_shape():
    y, x = blobs(20)
    out = inject_noise(y, K, "instance_dependent", 0.2, seed=0, features=x)
    assert out.options == {"features": {"rows": 100, "dims": 12}}
    json.dumps(out.summary(y))  # JSON-able


# -- instance_features --------------------------------------------------------------------------------


def test_instance_features_of_small_grey_images_are_standardised_pixels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 12, 12, 1), dtype=np.uint8)
    f = instance_features(images)
    assert f.shape == (40, 144)  # 12 x 12 <= 16 x 16: every pixel, no projection
    flat = images.reshape(40, -1).astype(np.float64)
    np.testing.assert_allclose(f, (flat - flat.mean(0)) / flat.std(0), atol=1e-5)


def test_instance_features_average_large_images_and_project_colour():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (30, 64, 64), dtype=np.uint8)
    fg = instance_features(grey)
    assert fg.shape == (30, 256)
    pooled = grey.reshape(30, 16, 4, 16, 4).mean(axis=(2, 4)).reshape(30, -1)
    np.testing.assert_allclose(fg, (pooled - pooled.mean(0)) / pooled.std(0), atol=1e-5)
    colour = rng.integers(0, 256, (30, 28, 28, 3), dtype=np.uint8)
    fc = instance_features(colour)
    assert fc.shape == (30, FEATURE_DIMS) and np.all(np.isfinite(fc))
    np.testing.assert_array_equal(fc, instance_features(colour.copy()))  # a fixed projection


def test_instance_features_of_picked_rows_equal_those_of_the_subset():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (700, 40, 40, 3), dtype=np.uint8)  # more than one chunk
    idx = rng.permutation(700)[:650]
    np.testing.assert_allclose(instance_features(images, idx), instance_features(images[idx]), atol=1e-12)
    assert np.all(instance_features(np.full((5, 8, 8, 1), 7, np.uint8)) == 0.0)  # constant: zero, not NaN


# -- annotators: aggregation against hand examples ----------------------------------------------------

# three annotators, six samples (-1: the annotator did not label the sample)
HAND = np.array(
    [
        [0, 1, 2, 0, 1, -1],
        [0, 1, 1, 2, -1, -1],
        [0, 2, 1, 1, -1, 2],
    ]
)
HAND_CLEAN = np.array([0, 1, 1, 0, 1, 2])


def test_majority_against_hand_example():
    out = aggregate_annotations(HAND, HAND_CLEAN, 3, "majority", np.random.default_rng(0))
    assert out[[0, 1, 2, 4, 5]].tolist() == [0, 1, 1, 1, 2]
    assert out[3] in (0, 1, 2)  # three different labels: a tie among all three


def test_majority_breaks_ties_uniformly_at_random():
    tie = np.tile(HAND[:, [3]], 3000)  # the tied sample, 3000 times
    out = aggregate_annotations(tie, np.zeros(3000, int), 3, "majority", np.random.default_rng(1))
    share = np.bincount(out, minlength=3) / 3000
    np.testing.assert_allclose(share, 1 / 3, atol=5 * np.sqrt(2 / 9 / 3000))


def test_random_against_hand_example():
    out = aggregate_annotations(HAND, HAND_CLEAN, 3, "random", np.random.default_rng(0))
    assert out[[0, 4, 5]].tolist() == [0, 1, 2]  # one label given, or all agree
    for s in (1, 2, 3):
        assert out[s] in HAND[:, s]
    many = aggregate_annotations(np.tile(HAND[:, [1]], 3000), np.ones(3000, int), 3, "random", np.random.default_rng(2))
    assert np.mean(many == 1) == pytest.approx(2 / 3, abs=5 * np.sqrt(2 / 9 / 3000))  # two of three said 1


def test_worst_against_hand_example():
    out = aggregate_annotations(HAND, HAND_CLEAN, 3, "worst", np.random.default_rng(0))
    # sample 0: all right; 1: one wrong (2); 2: one wrong (2); 3: two wrong (2, 1); 4, 5: the one label right
    assert out[[0, 1, 2, 4, 5]].tolist() == [0, 2, 2, 1, 2]
    assert out[3] in (1, 2)
    many = aggregate_annotations(np.tile(HAND[:, [3]], 3000), np.zeros(3000, int), 3, "worst", np.random.default_rng(3))
    assert set(np.unique(many)) == {1, 2} and np.mean(many == 1) == pytest.approx(0.5, abs=0.05)


def test_aggregation_refuses_bad_annotations():
    with pytest.raises(ValueError, match="sample 1 has no annotation"):
        aggregate_annotations(np.array([[0, -1], [1, -1]]), np.array([0, 0]), 2, "majority", np.random.default_rng(0))
    with pytest.raises(ValueError, match="annotators x samples"):
        aggregate_annotations(np.array([0, 1]), np.array([0, 0]), 2, "majority", np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        aggregate_annotations(np.array([[0, 3]]), np.array([0, 0]), 2, "majority", np.random.default_rng(0))
    with pytest.raises(ValueError, match="aggregate 'mean' is unknown"):
        aggregate_annotations(np.array([[0, 1]]), np.array([0, 0]), 2, "mean", np.random.default_rng(0))


# -- annotators: rates, coverage, skills, groups ------------------------------------------------------


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        ("random", 0.2),  # each sample's label is one annotator's, wrong with probability e
        ("majority", 3 * 0.2**2 * 0.8 + 0.2**3),  # two classes: wrong when at least two of three are
        ("worst", 1 - 0.8**3),  # wrong when any of the three is
    ],
)
def test_aggregated_rate_differs_from_the_annotators_rate(aggregate, expected):
    y = np.repeat([0, 1], 10000)
    out = inject_noise(y, 2, "annotators", 0.2, seed=0, aggregate=aggregate)
    assert out.annotator_labels is not None and out.annotator_labels.shape == (3, y.size)
    assert abs((out.annotator_labels != y).mean() - 0.2) <= 5 * np.sqrt(0.16 / (3 * y.size))
    assert abs(out.realized_rate - expected) <= 5 * np.sqrt(expected * (1 - expected) / y.size)


def test_annotators_transition_is_the_realised_one():
    y = np.repeat(np.arange(3), 400)
    out = inject_noise(y, 4, "annotators", 0.3, seed=1, annotators=5, aggregate="majority")
    np.testing.assert_allclose(out.transition[:3], empirical_transition(y, out.labels, 4)[:3])
    np.testing.assert_array_equal(out.transition[3], [0, 0, 0, 1])  # class 3 absent: identity row
    np.testing.assert_allclose(out.transition.sum(axis=1), 1.0)


def test_coverage_leaves_no_sample_unlabelled():
    y = np.repeat(np.arange(K), 2000)
    out = inject_noise(y, K, "annotators", 0.3, seed=2, coverage=0.3)
    labelled = out.annotator_labels >= 0
    assert labelled.any(axis=0).all()
    # each annotator labels a sample with probability c; a sample none drew (probability (1-c)^3) gets one
    expected = 0.3 + 0.7**3 / 3
    np.testing.assert_allclose(labelled.mean(axis=1), expected, atol=5 * np.sqrt(expected * (1 - expected) / y.size))
    assert np.all(out.annotator_labels[~labelled] == -1)


def test_skills_scale_each_annotators_error_rate():
    y = np.repeat(np.arange(K), 2000)
    out = inject_noise(y, K, "annotators", 0.4, seed=3, skills=[0.5, 1.0, 3.0])
    errors = (out.annotator_labels != y).mean(axis=1)
    np.testing.assert_allclose(errors[:2], [0.2, 0.4], atol=5 * np.sqrt(0.24 / y.size))
    assert errors[2] == 1.0  # min(1, 0.4 x 3): always wrong
    summary = out.summary(y)["annotators"]
    assert summary["count"] == 3 and summary["error_rates"] == pytest.approx(errors.tolist())


def test_annotators_err_within_groups():
    y = np.repeat(np.arange(K), 1000)
    out = inject_noise(y, K, "annotators", 0.3, seed=4, groups=[[0, 1], [2, 3]])
    given = out.annotator_labels
    assert np.all(given[:, y == 4] == 4)  # class 4 is in no group: never confused
    assert set(np.unique(given[:, y == 0])) == {0, 1} and set(np.unique(given[:, y == 2])) == {2, 3}


def test_exact_annotators_err_exactly_per_class():
    counts = [101, 250, 333, 40, 7]
    y = np.random.default_rng(5).permutation(np.repeat(np.arange(K), counts))
    out = inject_noise(y, K, "annotators", 0.3, seed=5, exact=True, coverage=0.6, skills=[1.0, 0.5, 2.0])
    for a, error in enumerate([0.3, 0.15, 0.6]):
        given = out.annotator_labels[a]
        for c in range(K):
            mine = given[(y == c) & (given >= 0)]
            assert int(np.sum(mine != c)) == int(np.floor(error * mine.size + 0.5 + 1e-9)), (a, c)


def test_annotators_are_deterministic_and_pinned():
    y = np.repeat(np.arange(K), 100)
    a = inject_noise(y, K, "annotators", 0.3, seed=7, coverage=0.5)
    b = inject_noise(y.copy(), K, "annotators", 0.3, seed=7, coverage=0.5)
    c = inject_noise(y, K, "annotators", 0.3, seed=8, coverage=0.5)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.annotator_labels, b.annotator_labels)
    assert not np.array_equal(a.annotator_labels, c.annotator_labels)
    small = inject_noise(np.arange(10) % 3, 3, "annotators", 0.5, seed=42, aggregate="random")
    assert small.labels.tolist() == PINNED_ANNOTATORS


PINNED_ANNOTATORS = [2, 1, 0, 2, 2, 2, 0, 0, 2, 0]


# -- records ------------------------------------------------------------------------------------------


def test_save_writes_flip_probabilities_and_annotator_labels(tmp_path):
    y, x = blobs(20)
    idn = inject_noise(y, K, "instance_dependent", 0.3, seed=0, features=x)
    paths = idn.save(tmp_path / "idn", y, indices=np.arange(500, 600))
    assert [p.name for p in paths] == ["noisy_labels.csv", "noise.json", "flip_probabilities.csv"]
    table = np.loadtxt(paths[2], delimiter=",", skiprows=1)
    np.testing.assert_array_equal(table[:, 0], np.arange(500, 600))
    np.testing.assert_allclose(table[:, 1], idn.flip_probabilities, rtol=1e-8)
    meta = json.loads(paths[1].read_text())
    q = idn.flip_probabilities
    assert meta["flip_probabilities"] == pytest.approx({"mean": q.mean(), "min": q.min(), "max": q.max()})
    assert "annotators" not in meta

    ann = inject_noise(y, K, "annotators", 0.3, seed=0, coverage=0.5, annotators=4)
    paths = ann.save(tmp_path / "ann", y)
    assert [p.name for p in paths] == ["noisy_labels.csv", "noise.json", "annotator_labels.csv"]
    assert paths[2].read_text().splitlines()[0] == "index,annotator_0,annotator_1,annotator_2,annotator_3"
    table = np.loadtxt(paths[2], delimiter=",", skiprows=1, dtype=int)
    np.testing.assert_array_equal(table[:, 1:], ann.annotator_labels.T)
    meta = json.loads(paths[1].read_text())
    assert meta["annotators"]["count"] == 4 and len(meta["annotators"]["labelled"]) == 4
    assert meta["options"] == {"coverage": 0.5, "annotators": 4} and "flip_probabilities" not in meta


# -- rejected inputs ----------------------------------------------------------------------------------

Y = np.arange(20) % 5
X = np.random.default_rng(0).normal(size=(20, 3))


@pytest.mark.parametrize(
    ("kwargs", "option", "match"),
    [
        (dict(kind="instance_dependent"), "features", "needs features"),
        (dict(kind="instance_dependent", features=X[:19]), "features", "19 rows for 20 labels"),
        (dict(kind="instance_dependent", features=X[:, 0]), "features", "N x D"),
        (dict(kind="instance_dependent", features=np.where(np.eye(20, 3) > 0, np.nan, X)), "features", "non-finite"),
        (dict(kind="instance_dependent", features=np.where(np.eye(20, 3) > 0, np.inf, X)), "features", "row 0"),
        (dict(kind="instance_dependent", features=[["a"] * 3] * 20), "features", "array of numbers"),
        (
            dict(kind="symmetric", features=X),
            "features",
            "applies only to noise kinds instance_dependent and hard_instance",
        ),
        (dict(kind="instance_dependent", features=X, coverage=0.5), "coverage", "only to noise kind annotators"),
        (dict(kind="annotators", annotators=0), "annotators", r"integer in \[1, 100\]"),
        (dict(kind="annotators", annotators=True), "annotators", "integer"),
        (dict(kind="annotators", annotators=2.5), "annotators", "integer"),
        (dict(kind="annotators", annotators=101), "annotators", "integer"),
        (dict(kind="annotators", skills=[1.0, 1.0]), "skills", "3 positive numbers"),
        (dict(kind="annotators", annotators=2, skills=[1.0, 0.0]), "skills", "2 positive numbers"),
        (dict(kind="annotators", skills=[1.0, -1.0, 1.0]), "skills", "positive"),
        (dict(kind="annotators", skills=[1.0, float("nan"), 1.0]), "skills", "positive"),
        (dict(kind="annotators", skills=["x", 1, 1]), "skills", "positive"),
        (dict(kind="annotators", skills=3.0), "skills", "positive"),
        (dict(kind="annotators", coverage=0.0), "coverage", r"outside \(0, 1\]"),
        (dict(kind="annotators", coverage=1.5), "coverage", r"outside \(0, 1\]"),
        (dict(kind="annotators", coverage=float("nan")), "coverage", r"outside \(0, 1\]"),
        (dict(kind="annotators", coverage="all"), "coverage", r"outside \(0, 1\]"),
        (dict(kind="annotators", aggregate="mean"), "aggregate", r"allowed: majority, random, worst"),
        (dict(kind="symmetric", aggregate="majority"), "aggregate", "applies only to noise kind annotators"),
        (dict(kind="symmetric", groups=[[0, 1]]), "groups", "class_dependent and annotators"),
        (dict(kind="annotators", transition=np.eye(5)), "transition", "applies only to noise kind transition"),
        (dict(kind="annotators", class_scale=[1.0] * 5), "class_scale", "only to noise kind class_dependent"),
    ],
)
def test_invalid_options_rejected_naming_the_option(kwargs, option, match):
    with pytest.raises(NoiseOptionError, match=match) as caught:
        inject_noise(Y, 5, rate=0.2, seed=0, **kwargs)
    assert caught.value.option == option


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(kind="annotators", groups=[[0, 7]]), "annotators group"),
        (dict(kind="annotators", groups=[[0, 1], [1, 2]]), "more than one annotators group"),
        (dict(kind="annotators", rate=1.0), r"outside \[0, 1\)"),
        (dict(kind="instance_dependent", rate=-0.1, features=X), r"outside \[0, 1\)"),
        (dict(kind="annotators", flavour=1), "unknown noise options"),
    ],
)
def test_invalid_inputs_rejected(kwargs, match):
    kwargs = {"rate": 0.2, **kwargs}
    with pytest.raises(ValueError, match=match):
        inject_noise(Y, 5, seed=0, **kwargs)


@pytest.mark.parametrize("kind", ["instance_dependent", "annotators"])
def test_no_transition_matrix_from_the_class_alone(kind):
    with pytest.raises(ValueError, match="no transition matrix of the class alone"):
        transition_matrix(5, kind, 0.2)


# -- a trial's noise ----------------------------------------------------------------------------------


@pytest.mark.parametrize("noisy_validation", [True, False])
def test_a_trial_draws_instance_dependent_noise_from_its_own_images(noisy_validation):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=120)
    images = rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8)
    data = ImageData("synthetic", images, labels, ["a", "b", "c"])
    noise = {"kinds": ["instance_dependent"], "rates": [0.4], "noisy_validation": noisy_validation}
    spec = parse_spec({**BASE_SPEC, "noise": noise})
    point = Point("synthetic", "instance_dependent", 0.4, "random", "ce", 1)
    splits = trial_splits(spec, data, point)
    noisy, out = corrupt(spec, data, splits, point)
    idx = np.concatenate([splits.train, splits.val]) if noisy_validation else splits.train
    expected = inject_noise(labels[idx], 3, "instance_dependent", 0.4, 1, features=instance_features(images, idx))
    np.testing.assert_array_equal(out.labels, expected.labels)
    np.testing.assert_array_equal(noisy[idx], expected.labels)
    assert out.options["features"] == {"rows": idx.size, "dims": 192}  # 8 x 8 x 3: every pixel
    np.testing.assert_array_equal(noisy[splits.test], labels[splits.test])


def test_a_trial_passes_the_annotator_options_of_its_spec():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=120)
    data = ImageData("synthetic", np.zeros((120, 4, 4, 1), np.uint8), labels, ["a", "b", "c"])
    options = {"annotators": 4, "coverage": 0.5, "aggregate": "worst", "exact": True}
    spec = parse_spec(
        {**BASE_SPEC, "noise": {"kinds": ["symmetric", "annotators"], "rates": [0.3], "options": options}}
    )
    point = Point("synthetic", "annotators", 0.3, "random", "ce", 2)
    _, out = corrupt(spec, data, trial_splits(spec, data, point), point)
    assert out.options == options and out.annotator_labels.shape[0] == 4
    _, sym = corrupt(
        spec, data, trial_splits(spec, data, point), Point("synthetic", "symmetric", 0.3, "random", "ce", 2)
    )
    assert sym.options == {"exact": True}  # only the options its kind reads
