"""Label-noise injection (docs/architecture.md, Label noise).

Every kind is defined by its intended transition matrix ``T`` (``T[i, j]`` = probability that a sample of
true class ``i`` is given label ``j``); a noisy label set is a draw from the rows of ``T``.

- ``symmetric``: off-diagonal mass ``rate`` spread uniformly over the other K-1 classes (the true class is
  never redrawn), as in Han et al. 2018 (Co-teaching) and Patrini et al. 2017.
- ``uniform``: DivideMix-style (Li et al. 2020): a corrupted label is redrawn from all K classes, so the
  realized rate is about ``rate * (K-1)/K``.
- ``pairflip``: class c goes to c+1 mod K with probability ``rate`` (Han et al. 2018); needs rate < 0.5.
- ``asymmetric``: class-conditional flips of each class to one fixed other class (Patrini et al. 2017; Han
  et al. 2018's pair flipping): ``T[c, c] = 1 - rate``, ``T[c, targets[c]] = rate``, ``targets`` default
  c -> c+1 mod K (below 0.5 the same matrix as ``pairflip``), at any rate in [0, 1). Above 0.5 the noisy
  label of class c is more often ``targets[c]`` than c: the clean class is no longer the most likely label
  and cannot be recovered from the labels alone. That is what Dedieu et al. 2024's asymmetric noise at
  rates up to 0.9 means; this kind is how the project expresses it (their definition was not available
  to us, and their code has uniform noise only).
- ``class_dependent``: flips only inside groups of confusable classes, uniformly to the other members of
  the group (Khanal et al. 2024); classes outside every group keep their labels. ``class_scale`` (one
  factor per class, default 1) makes the rates per class: class c flips with probability
  ``rate * class_scale[c]``, so that on a binary dataset (MURA: one group of two classes) class-dependent
  noise differs from symmetric noise.
- ``transition``: any row-stochastic ``transition=T``, used as given (``rate`` is not used).
- ``instance_dependent``: Xia et al. 2020's generator (``_instance_dependent``): each sample its own flip
  probability and its own destination distribution, the latter from its ``features``; ``transition`` is the
  expected matrix (each class's rows averaged over its samples).
- ``annotators``: simulated annotators, each with its own confusion matrix, aggregated as in CIFAR-N
  (Wei et al. 2022; ``_annotators``); ``transition`` is the realised matrix of the aggregated labels.
- ``hard_instance``: Chen et al. 2021's instance-dependent noise (``_hard_instance``): a model trained on
  the clean labels scores each sample's most confusable wrong class; the ``rate`` share of samples it finds
  most confusable are given that class. Flips concentrate on hard samples; ``transition`` is the realised
  matrix.
- recorded labels (``recorded_noise``; a cell's kind ``recorded:<source>``): not drawn at all, the labels
  real annotators gave (a dataset's annotator columns), one annotator's or aggregated as CIFAR-N does;
  ``transition`` is their realised matrix against the dataset's reference labels.

With ``exact=True`` the number of changed labels of class c is exactly ``round((1 - T[c, c]) * n_c)``
(rounded half up)
(``round(rate * n_c)`` for symmetric, pairflip, asymmetric and grouped classes) and the changed samples are
spread over their destination classes in proportion to ``T[c, j]`` by largest remainders; otherwise each
sample is drawn independently from its row. Draws use NumPy's PCG64 generator, whose streams are the same on
every platform, so the same inputs give the same labels on any machine.

The random stream of a draw is keyed by the seed and the kind's name (its CRC-32), so adding or
reordering kinds in ``KINDS`` changes no kind's labels. Earlier versions keyed it by the kind's position
in ``KINDS``: the noisy labels of studies made before this change differ, once, from those drawn now
(within a study they stay fixed, so the resume guarantee holds).

Functions here are pure: arrays in, arrays out. docs/noise.md defines every kind with its paper and options.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KINDS = (
    "symmetric",
    "uniform",
    "pairflip",
    "asymmetric",
    "class_dependent",
    "transition",
    "instance_dependent",
    "annotators",
    "hard_instance",
)

#: how the ``annotators`` kind turns several labels of a sample into one (Wei et al. 2022, CIFAR-N)
AGGREGATES = ("majority", "random", "worst")

#: a cell's noise kind for recorded labels is ``recorded:<source>`` (``recorded_kind``): the source is one
#: annotator's column or an aggregate of all of them (``AGGREGATES``)
RECORDED = "recorded"

#: the noise kinds each option of ``inject_noise`` applies to; any other kind refuses it
OPTION_KINDS: dict[str, tuple[str, ...]] = {
    "exact": KINDS,
    "groups": ("class_dependent", "annotators"),
    "class_scale": ("class_dependent",),
    "targets": ("asymmetric",),
    "transition": ("transition",),
    "features": ("instance_dependent", "hard_instance"),
    "annotators": ("annotators",),
    "skills": ("annotators",),
    "coverage": ("annotators",),
    "aggregate": ("annotators",),
}

#: standard deviation of the per-sample flip probabilities of ``instance_dependent`` (Xia et al. 2020)
FLIP_STD = 0.1
#: ``instance_features``: images are area-averaged to at most this side, then projected to at most
#: ``FEATURE_DIMS`` features
FEATURE_SIDE = 16
FEATURE_DIMS = 256
#: ``hard_instance``'s clean model: full-batch gradient steps (each step's softmax enters the average, as
#: Chen et al. average a network's predictions over its training epochs), step size and L2 weight
HARD_STEPS = 100
HARD_LR = 0.5
HARD_L2 = 1e-4
#: the most annotators the ``annotators`` kind simulates (its labels are kept: annotators x samples)
MAX_ANNOTATORS = 100

_ROW_TOL = 1e-6


class NoiseOptionError(ValueError):
    """An invalid option of ``inject_noise``; ``option`` names it (a spec reports ``noise.options.<option>``)."""

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        super().__init__(message)


@dataclass(frozen=True)
class AnnotatorSettings:
    """The options of the ``annotators`` kind, checked (``annotator_settings``).

    ``count`` annotators; annotator a errs with probability ``min(1, rate * skills[a])`` (``skills`` empty:
    every factor 1); each labels a sample with probability ``coverage`` (a sample that none drew gets one
    annotator chosen at random); ``aggregate`` is one of ``AGGREGATES``.
    """

    count: int = 3
    skills: tuple[float, ...] = ()
    coverage: float = 1.0
    aggregate: str = "majority"

    def error_rates(self, rate: float) -> np.ndarray:
        """Each annotator's probability of giving a wrong label at the noise ``rate``."""
        skills = np.asarray(self.skills, dtype=np.float64) if self.skills else np.ones(self.count)
        errors: np.ndarray = np.minimum(1.0, rate * skills)
        return errors


@dataclass(frozen=True)
class NoisyLabels:
    """A noisy label set with the matrix it was drawn from.

    ``labels``: the noisy labels; ``transition``: the intended K x K row-stochastic matrix (``instance_dependent``:
    the expected one; ``annotators``: the realised one); ``realized_rate``: the fraction of labels that differ
    from the clean ones. ``flip_probabilities`` (``instance_dependent`` only): each sample's probability of
    being given another label. ``annotator_labels`` (``annotators`` only): annotators x samples, the label
    each annotator gave, -1 where it did not label the sample.
    """

    labels: np.ndarray
    transition: np.ndarray
    realized_rate: float
    kind: str = ""
    rate: float = 0.0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    flip_probabilities: np.ndarray | None = None
    annotator_labels: np.ndarray | None = None
    #: the annotators' names (recorded labels: the dataset's annotator columns); default annotator_0, ...
    annotator_names: tuple[str, ...] | None = None
    #: ``hard_instance`` only: each sample's confusion score (the clean model's averaged probability of its
    #: most likely wrong class) and that class
    confusion_scores: np.ndarray | None = None

    def empirical_transition(self, clean: np.ndarray) -> np.ndarray:
        """The transition matrix realised on ``clean`` (rows of classes absent from ``clean`` are zero)."""
        return empirical_transition(clean, self.labels, self.transition.shape[0])

    def summary(self, clean: np.ndarray) -> dict[str, Any]:
        """A JSON-able record: kind, rate, seed, options, realized rate, intended and empirical matrices;
        ``flip_probabilities`` as mean, min and max; the annotators' number, each one's fraction of samples
        labelled and its error rate on them."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "rate": self.rate,
            "seed": self.seed,
            "options": self.options,
            "realized_rate": self.realized_rate,
            "transition": self.transition.tolist(),
            "empirical_transition": self.empirical_transition(clean).tolist(),
        }
        for name, q in (("flip_probabilities", self.flip_probabilities), ("confusion_scores", self.confusion_scores)):
            if q is not None:
                out[name] = {"mean": float(q.mean()), "min": float(q.min()), "max": float(q.max())} if q.size else {}
        given = self.annotator_labels
        if given is not None:
            labelled = given >= 0
            wrong = labelled & (given != np.asarray(clean)[None, :])
            n = np.maximum(labelled.sum(axis=1), 1)
            out["annotators"] = {
                "count": int(given.shape[0]),
                "names": list(self._annotator_names()),
                "labelled": (labelled.sum(axis=1) / max(given.shape[1], 1)).tolist(),
                "error_rates": (wrong.sum(axis=1) / n).tolist(),
            }
        return out

    def save(self, folder: str | Path, clean: np.ndarray, indices: np.ndarray | None = None) -> list[Path]:
        """Write ``noisy_labels.csv`` (index, clean, noisy) and ``noise.json`` (``summary``) into ``folder``,
        with ``flip_probabilities.csv`` (index, flip_probability) for ``instance_dependent`` noise,
        ``confusion_scores.csv`` (index, confusion_score) for ``hard_instance`` noise and
        ``annotator_labels.csv`` (index, annotator_0, annotator_1, ...; -1: not labelled) for ``annotators``
        noise; returns the paths (the artifacts later stages log to MLflow)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        idx = np.arange(len(self.labels)) if indices is None else np.asarray(indices)
        table = np.stack([idx, np.asarray(clean), self.labels], axis=1)
        csv = folder / "noisy_labels.csv"
        np.savetxt(csv, table, fmt="%d", delimiter=",", header="index,clean,noisy", comments="")
        js = folder / "noise.json"
        js.write_text(json.dumps(self.summary(clean), indent=1))
        paths = [csv, js]
        per_sample = (
            ("flip_probabilities.csv", "flip_probability", self.flip_probabilities),
            ("confusion_scores.csv", "confusion_score", self.confusion_scores),
        )
        for name, column, values in per_sample:
            if values is None:
                continue
            path = folder / name
            fmt = ["%d", "%.9g"]
            np.savetxt(
                path, np.stack([idx, values], axis=1), fmt=fmt, delimiter=",", header=f"index,{column}", comments=""
            )
            paths.append(path)
        if self.annotator_labels is not None:
            given = folder / "annotator_labels.csv"
            header = ",".join(["index", *self._annotator_names()])
            np.savetxt(
                given,
                np.column_stack([idx, self.annotator_labels.T]),
                fmt="%d",
                delimiter=",",
                header=header,
                comments="",
            )
            paths.append(given)
        return paths

    def _annotator_names(self) -> tuple[str, ...]:
        count = 0 if self.annotator_labels is None else self.annotator_labels.shape[0]
        return self.annotator_names or tuple(f"annotator_{a}" for a in range(count))


def empirical_transition(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalised confusion of noisy against clean labels, K x K."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(clean, dtype=np.int64), np.asarray(noisy, dtype=np.int64)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    rows: np.ndarray = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return rows


def realised_transition(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """The empirical transition of a draw with no closed-form matrix, as its ``NoisyLabels.transition``: a
    class absent from ``clean`` gets the identity row (so the matrix stays row-stochastic)."""
    t = empirical_transition(clean, noisy, num_classes)
    absent = np.flatnonzero(np.bincount(np.asarray(clean, dtype=np.int64), minlength=num_classes) == 0)
    t[absent, absent] = 1.0
    return t


def transition_matrix(num_classes: int, kind: str, rate: float, **options: Any) -> np.ndarray:
    """The intended transition matrix of a noise kind; raises ValueError on invalid inputs.

    ``instance_dependent`` and ``annotators`` have none that the class alone determines: ``inject_noise``
    returns their expected (instance_dependent) or realised (annotators) matrix."""
    k = _check_num_classes(num_classes)
    _check_kind(kind)
    if kind in ("instance_dependent", "annotators", "hard_instance"):
        raise ValueError(
            f"{kind} noise has no transition matrix of the class alone (it depends on the samples); "
            "inject_noise returns the matrix of a draw"
        )
    if kind == "transition":
        return _check_transition(options.get("transition"), k)
    rate = _check_rate(rate)
    eye = np.eye(k)
    if kind == "symmetric":
        if rate >= (k - 1) / k:
            raise ValueError(
                f"symmetric noise rate {rate} must be below (K-1)/K = {(k - 1) / k:.4f} for K={k} classes, "
                "or the true class is no longer the most likely label"
            )
        return (1.0 - rate) * eye + rate / (k - 1) * (1.0 - eye)
    if kind == "uniform":
        return (1.0 - rate) * eye + rate / k * np.ones((k, k))
    if kind == "pairflip":
        if rate >= 0.5:
            raise ValueError(f"pairflip noise rate {rate} must be below 0.5")
        return (1.0 - rate) * eye + rate * np.roll(eye, 1, axis=1)
    if kind == "asymmetric":
        targets = _check_targets(options.get("targets"), k)
        t_asym = (1.0 - rate) * eye
        t_asym[np.arange(k), targets] += rate
        return t_asym
    # class_dependent
    groups = _check_groups(options.get("groups"), k, kind)
    t = eye.copy()
    scale = _check_scale(options.get("class_scale"), k)
    for group in groups:
        m = len(group)
        for c in group:
            r = rate * scale[c]
            if r >= (m - 1) / m:
                raise ValueError(
                    f"class_dependent noise rate {r:g} of class {c} (rate {rate} x class_scale {scale[c]:g}) must "
                    f"be below (m-1)/m = {(m - 1) / m:.4f} for the group {list(group)} of m={m} classes"
                )
            t[c, c] = 1.0 - r
            for d in group:
                if d != c:
                    t[c, d] = r / (m - 1)
    return t


def inject_noise(
    labels: np.ndarray | Sequence[int],
    num_classes: int,
    kind: str,
    rate: float,
    seed: int,
    **options: Any,
) -> NoisyLabels:
    """Corrupt ``labels`` with the noise ``kind`` at ``rate``, deterministically in all inputs.

    Options (``OPTION_KINDS``: the kinds each applies to; any other kind refuses it): ``exact`` (bool, every
    kind), ``groups`` (class_dependent, annotators), ``class_scale`` (class_dependent), ``targets``
    (asymmetric: the destination class of each class, default c+1 mod K), ``transition`` (transition kind),
    ``features`` (instance_dependent: N x D, one row per label), ``annotators``, ``skills``, ``coverage``,
    ``aggregate`` (annotators).

    The random stream is keyed by ``seed`` and the kind's name, not by its position in ``KINDS`` as in
    earlier versions: labels of studies made before this change differ, once, from those drawn now
    (within a study they stay fixed, so the resume guarantee holds).
    """
    _check_kind(kind)
    _check_options(kind, options)
    k = _check_num_classes(num_classes)
    y = _check_labels(labels, k)
    exact = bool(options.get("exact", False))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _kind_code(kind)]))
    recorded = {
        key: (v.tolist() if isinstance(v, np.ndarray) else v) for key, v in options.items() if key != "features"
    }
    flips: np.ndarray | None = None
    given: np.ndarray | None = None
    scores: np.ndarray | None = None
    if kind == "hard_instance":
        x = _check_features(options.get("features"), y.size)
        recorded["features"] = {"rows": int(x.shape[0]), "dims": int(x.shape[1])}
        noisy, t, scores = _hard_instance(y, k, _check_rate(rate), x, rng)
    elif kind == "instance_dependent":
        x = _check_features(options.get("features"), y.size)
        recorded["features"] = {"rows": int(x.shape[0]), "dims": int(x.shape[1])}
        noisy, t, flips = _instance_dependent(y, k, _check_rate(rate), x, exact, rng)
    elif kind == "annotators":
        groups = None if options.get("groups") is None else _check_groups(options["groups"], k, kind)
        settings = annotator_settings(options)
        noisy, t, given = _annotators(y, k, _check_rate(rate), settings, groups, exact, rng)
    else:
        t = transition_matrix(k, kind, rate, **{key: v for key, v in options.items() if key != "exact"})
        noisy = _draw_exact(y, t, rng) if exact else _draw(y, t, rng)
    realized = float(np.mean(noisy != y)) if y.size else 0.0
    return NoisyLabels(
        labels=noisy,
        transition=t,
        realized_rate=realized,
        kind=kind,
        rate=float(rate) if kind != "transition" else float(1.0 - np.mean(np.diag(t))),
        seed=int(seed),
        options=recorded,
        flip_probabilities=flips,
        annotator_labels=given,
        confusion_scores=scores,
    )


# -- instance_dependent -------------------------------------------------------------------------------


def _instance_dependent(
    y: np.ndarray, k: int, rate: float, x: np.ndarray, exact: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance-dependent noise as generated by Xia et al. 2020 ("Part-dependent Label Noise: Towards
    Instance-dependent Label Noise", NeurIPS 2020: the generator of their synthetic instance-dependent noise,
    "IDN" in later work); returns the noisy labels, the expected transition matrix and each sample's flip
    probability.

    1. flip probabilities q_n ~ N(rate, 0.1^2) truncated to [0, 1] (by redrawing those outside);
    2. W_c ~ N(0, 1), one D x K matrix per true class c;
    3. sample n of class c: scores x_n W_c over the K classes, the true class's set to minus infinity;
       its row is q_n * softmax(scores) off the diagonal and 1 - q_n on it;
    4. the noisy label is drawn from that row.

    Departure: at ``rate`` 0 every q_n is 0 (the truncated normal's mean there is 0.08, but a rate-0 cell is
    a study's clean reference). ``exact``: in each class c exactly round(sum of its q_n) samples change
    (rounded half up); each sample's chance of being among them is its q_n scaled to that total (systematic
    sampling in a seeded random order), and a changed sample's label is drawn from its own row's
    off-diagonal part. q_n is drawn apart from the features: how likely a label is to change does not depend
    on what the sample looks like; where it goes does.
    """
    n = y.size
    q = _truncated_normal(rate, FLIP_STD, n, rng) if rate > 0 else np.zeros(n)
    w = rng.standard_normal((k, x.shape[1], k))  # one D x K projection per true class
    dest = _destinations(y, k, x, w)  # N x K, rows sum to 1, zero on the true class
    rows = q[:, None] * dest
    rows[np.arange(n), y] = 1.0 - q
    if exact:
        noisy = _draw_instances_exact(y, k, q, dest, rng)
    else:
        noisy = _draw_rows(rows, rng)
    # the expected matrix: each class's rows averaged over its samples (absent classes: identity rows)
    t = np.eye(k)
    for c in np.unique(y):
        t[c] = rows[y == c].mean(axis=0)
    return noisy, t, q


def _hard_instance(
    y: np.ndarray, k: int, rate: float, x: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instance-dependent noise as generated by Chen et al. 2021 ("Beyond Class-Conditional Assumption: A
    Primary Attempt to Combat Instance-Dependent Label Noise", AAAI 2021); returns the noisy labels, their
    realised transition matrix and each sample's confusion score.

    1. a classifier is trained on the clean labels, and its softmax outputs are averaged over training;
    2. each sample's candidate is the class other than its own with the highest averaged probability, its
       score that probability;
    3. the round(rate * N) samples with the highest scores are given their candidate.

    So the samples a clean model finds hardest to tell from another class are the mislabelled ones, and
    each goes to the class it is confused with. Departures (docs/noise.md): the classifier is a multinomial
    logistic regression on ``features`` (``instance_features`` of the images), ``HARD_STEPS`` full-batch
    gradient steps from zero weights, averaging every step's softmax, where the authors train a CNN on the
    images and average its epochs' outputs; the count is rounded half up (the authors truncate, and at a
    count of 0 their slice takes every sample); ties in the score are broken by a seeded random order.
    """
    n = y.size
    onehot = np.eye(k)[y]
    w = np.zeros((x.shape[1], k))
    b = np.zeros(k)
    avg = np.zeros((n, k))
    for _ in range(HARD_STEPS):
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        avg += p
        grad = p - onehot
        w -= HARD_LR * (x.T @ grad / max(n, 1) + HARD_L2 * w)
        b -= HARD_LR * grad.mean(axis=0)
    avg /= HARD_STEPS
    wrong = avg.copy()
    wrong[np.arange(n), y] = -1.0
    candidate = wrong.argmax(axis=1)
    score = wrong[np.arange(n), candidate]
    m = int(np.floor(rate * n + 0.5 + 1e-9))
    order = np.lexsort((rng.permutation(n), -score))  # highest score first, ties in a seeded order
    noisy = y.copy()
    noisy[order[:m]] = candidate[order[:m]]
    t = realised_transition(y, noisy, k)
    return noisy, t, score


def _destinations(y: np.ndarray, k: int, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """softmax(x_n W_{y_n}) over the classes other than y_n (zero at y_n): where a flipped label goes."""
    scores = np.empty((y.size, k))
    for c in range(k):
        idx = np.flatnonzero(y == c)
        scores[idx] = x[idx] @ w[c]
    scores[np.arange(y.size), y] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    dest: np.ndarray = np.exp(scores)
    dest /= dest.sum(axis=1, keepdims=True)
    return dest


def _truncated_normal(mean: float, std: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` draws of N(mean, std^2) truncated to [0, 1]: draws outside are redrawn until none is."""
    out = rng.normal(mean, std, n)
    bad = (out < 0.0) | (out > 1.0)
    while bad.any():
        out[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (out < 0.0) | (out > 1.0)
    return out


def _draw_instances_exact(
    y: np.ndarray, k: int, q: np.ndarray, dest: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Exactly round(sum q_n) changes in each class, sample n chosen with probability q_n scaled to that total;
    a changed label drawn from the sample's destinations."""
    noisy = y.copy()
    for c in range(k):
        idx = np.flatnonzero(y == c)
        m = int(np.floor(q[idx].sum() + 0.5 + 1e-9))
        if m == 0:
            continue
        chosen = idx[_systematic(_inclusion(q[idx], m), m, rng)]
        noisy[chosen] = _draw_rows(dest[chosen], rng)
    return noisy


def _inclusion(q: np.ndarray, m: int) -> np.ndarray:
    """Inclusion probabilities proportional to ``q``, capped at 1, summing to ``m`` (<= the number of q > 0)."""
    p: np.ndarray = np.minimum(q * (m / q.sum()), 1.0)
    for _ in range(p.size):
        short = m - p.sum()
        free = p < 1.0
        if short <= 1e-9 or not free.any():
            break
        p[free] *= 1.0 + short / p[free].sum()
        np.minimum(p, 1.0, out=p)
    return p


def _systematic(p: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` distinct indices, index i with probability ``p[i]`` (each <= 1, summing to m): systematic sampling
    (Madow 1949) in a random order: m points one apart from a uniform start, each picking the index whose
    stretch of the cumulated ``p`` it falls in."""
    order = rng.permutation(p.size)
    edges = np.cumsum(p[order])
    edges *= m / edges[-1]
    edges[-1] = m  # rounding: every point (all below m) finds an index
    points = rng.random() + np.arange(m)
    picked: np.ndarray = order[np.searchsorted(edges, points, side="right")]
    return picked


def instance_features(images: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
    """Features of images for ``instance_dependent`` noise: N x D float64, D <= ``FEATURE_DIMS`` (256).

    ``images`` is N x H x W x C (or N x H x W), any numeric dtype; ``indices`` picks the rows to use (default
    all) and is read in chunks, so a memory-mapped dataset is not copied whole. Each image is area-averaged to at
    most ``FEATURE_SIDE`` x ``FEATURE_SIDE`` (16 x 16) pixels per channel, each of those values standardised
    over the N images (zero mean, unit variance; a constant one becomes 0), and, where more than 256 remain
    (RGB: 768), projected to 256 by a fixed Gaussian matrix with N(0, 1/256) entries (seeded by a constant, the
    same for every study), which keeps inner products and norms approximately (Johnson-Lindenstrauss), so the
    scores x W of Xia et al.'s generator keep their scale. Xia et al. use the full flattened, normalised image;
    averaging first keeps the cost linear in the pixels (a 224 px RGB image has 150,528 values).
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be N x H x W x C or N x H x W, got shape {images.shape}")
    idx = np.arange(images.shape[0]) if indices is None else np.asarray(indices, dtype=np.int64)
    h, w = images.shape[1], images.shape[2]
    channels = images.shape[3] if images.ndim == 4 else 1
    rows, cols = _bins(h, FEATURE_SIDE), _bins(w, FEATURE_SIDE)
    area = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))[None, :, :, None]
    d = rows.size * cols.size * channels
    dims = min(d, FEATURE_DIMS)
    if idx.size == 0:
        return np.empty((0, dims))
    pooled = np.empty((idx.size, d), dtype=np.float32)
    chunk = max(1, 2**22 // max(h * w * channels, 1))
    for start in range(0, idx.size, chunk):
        block = images[idx[start : start + chunk]].reshape(-1, h, w, channels)
        sums = np.add.reduceat(np.add.reduceat(block, rows, axis=1, dtype=np.float64), cols, axis=2)
        pooled[start : start + chunk] = (sums / area).reshape(len(block), d)
    mean = pooled.mean(axis=0, dtype=np.float64)
    std = pooled.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0
    proj = None
    if d > FEATURE_DIMS:
        proj_rng = np.random.default_rng(np.random.SeedSequence([_kind_code("instance_features"), d]))
        proj = proj_rng.standard_normal((d, dims)) / np.sqrt(dims)
    out = np.empty((idx.size, dims))
    step = max(1, 2**20 // d)
    for start in range(0, idx.size, step):
        z = (pooled[start : start + step] - mean) / std
        out[start : start + step] = z if proj is None else z @ proj
    return out


def _bins(size: int, most: int) -> np.ndarray:
    """Start of each of min(size, most) nearly equal bins covering ``size`` pixels."""
    starts: np.ndarray = np.floor(np.linspace(0, size, min(size, most), endpoint=False)).astype(np.int64)
    return starts


# -- recorded labels ----------------------------------------------------------------------------------


def recorded_kind(source: str) -> str:
    """A cell's noise kind for the recorded labels of ``source`` (an annotator column or an aggregate)."""
    return f"{RECORDED}:{source}"


def recorded_source(kind: str) -> str | None:
    """The label source of a recorded-labels kind (``recorded:<source>``), None for a synthetic kind."""
    prefix = f"{RECORDED}:"
    return kind[len(prefix) :] if kind.startswith(prefix) else None


def noise_settings(
    kinds: Sequence[str], rates: Sequence[float], recorded: Sequence[str] = ()
) -> list[tuple[str, float]]:
    """A study's (kind, rate) noise settings: each kind at each rate, except that at rate 0 every kind is the
    clean set, so it appears once (under the first kind); then each recorded source, ``recorded:<source>`` at
    rate 0 (recorded labels have no synthetic noise on top)."""
    out = [(kind, float(rate)) for rate in rates for i, kind in enumerate(kinds) if rate != 0.0 or i == 0]
    return out + [(recorded_kind(source), 0.0) for source in recorded]


def recorded_noise(
    clean: np.ndarray | Sequence[int],
    annotations: np.ndarray,
    annotators: Sequence[str],
    num_classes: int,
    source: str,
    seed: int,
) -> NoisyLabels:
    """The training labels real annotators gave, as a noisy label set against the reference labels ``clean``.

    ``annotations``: samples x annotators, the class index each annotator gave, -1 where it did not label the
    sample (a dataset's annotator columns, ``ImageData.annotations``); ``annotators``: their names. ``source``
    is one annotator's name (every sample must carry its label) or an aggregate of all of them
    (``AGGREGATES``, CIFAR-N's conventions, ``aggregate_annotations``: the majority's ties and ``random``'s
    choices are drawn from a stream keyed by ``seed`` and the kind's name). Nothing is drawn otherwise: the
    transition and the realised rate are those of the recorded labels against ``clean``; ``rate`` records the
    realised rate (a recorded source has no nominal one)."""
    k = _check_num_classes(num_classes)
    y = _check_labels(clean, k)
    given = np.asarray(annotations)
    names = tuple(str(a) for a in annotators)
    if given.ndim != 2 or given.shape != (y.size, len(names)):
        raise ValueError(f"annotations must be samples x annotators ({y.size} x {len(names)}), got shape {given.shape}")
    given = given.astype(np.int64).T
    kind = recorded_kind(source)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _kind_code(kind)]))
    if source in AGGREGATES:
        if not names:
            raise ValueError(f"recorded labels: aggregate {source!r} needs at least one annotator column")
        noisy = aggregate_annotations(given, y, k, source, rng)
    elif source in names:
        noisy = given[names.index(source)].copy()
        missing = int((noisy < 0).sum())
        if missing:
            raise ValueError(
                f"recorded labels: annotator {source!r} did not label {missing} of the {y.size} samples; name an "
                f"aggregate of all annotators ({', '.join(AGGREGATES)}) instead, or give that column a label in "
                "every row"
            )
        if noisy.size and noisy.max() >= k:
            raise ValueError(f"annotations must lie in [0, {k}), or be -1 where not labelled")
    else:
        raise ValueError(
            f"recorded label source {source!r} is neither an annotator ({', '.join(names) or 'none'}) nor an "
            f"aggregate ({', '.join(AGGREGATES)})"
        )
    t = realised_transition(y, noisy, k)
    realized = float(np.mean(noisy != y)) if y.size else 0.0
    return NoisyLabels(
        labels=noisy,
        transition=t,
        realized_rate=realized,
        kind=kind,
        rate=realized,
        seed=int(seed),
        options={"source": source, "annotators": list(names)},
        annotator_labels=given,
        annotator_names=names,
    )


# -- annotators ---------------------------------------------------------------------------------------


def _annotators(
    y: np.ndarray,
    k: int,
    rate: float,
    settings: AnnotatorSettings,
    groups: list[tuple[int, ...]] | None,
    exact: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels from simulated annotators aggregated into one per sample; returns the aggregated labels, their
    realised transition matrix (no closed form exists; absent classes: identity rows) and the annotators'
    labels (annotators x samples, -1: not labelled).

    Annotator a errs with probability ``min(1, rate * skill_a)``, uniformly to the other classes, or, with
    ``groups``, to the other members of the class's group (classes outside every group are always right), as
    class_dependent noise does; nothing keeps an annotator better than chance. Each labels each sample with
    probability ``coverage``; a sample that no annotator drew gets one, chosen at random. ``exact``: each
    annotator errs on exactly round(error * n) of the samples of each class it labels. ``rate`` is the
    annotators' own error rate: the aggregated labels' realised rate differs (``aggregate_annotations``).
    """
    a, n = settings.count, y.size
    # who labels what
    labelled = rng.random((a, n)) < settings.coverage
    orphans = np.flatnonzero(~labelled.any(axis=0))
    labelled[rng.integers(0, a, orphans.size), orphans] = True
    # what each annotator says
    given = np.full((a, n), -1, dtype=np.int64)
    for i, error in enumerate(settings.error_rates(rate)):
        t = _annotator_matrix(k, float(error), groups)
        idx = np.flatnonzero(labelled[i])
        given[i, idx] = _draw_exact(y[idx], t, rng) if exact else _draw(y[idx], t, rng)
    noisy = aggregate_annotations(given, y, k, settings.aggregate, rng)
    t_real = realised_transition(y, noisy, k)
    return noisy, t_real, given


def _annotator_matrix(k: int, error: float, groups: list[tuple[int, ...]] | None) -> np.ndarray:
    """One annotator's confusion matrix: ``error`` spread uniformly over the other classes, or over the other
    members of each group (classes outside every group never confused)."""
    eye = np.eye(k)
    if groups is None:
        uniform: np.ndarray = (1.0 - error) * eye + error / (k - 1) * (1.0 - eye)
        return uniform
    t = eye.copy()
    for group in groups:
        for c in group:
            t[c, list(group)] = error / (len(group) - 1)
            t[c, c] = 1.0 - error
    return t


def aggregate_annotations(
    annotations: np.ndarray, clean: np.ndarray, num_classes: int, aggregate: str, rng: np.random.Generator
) -> np.ndarray:
    """One label per sample from several annotators' (``annotations``: annotators x samples, -1 where an annotator
    did not label the sample; every sample needs one), following CIFAR-N's conventions (Wei et al. 2022,
    "Learning with Noisy Labels Revisited: A Study Using Real-World Human Annotations", ICLR 2022):

    - ``majority``: the most frequent label, ties broken by a seeded random choice among the tied labels;
    - ``random``: the label of one of the sample's annotators, chosen at random;
    - ``worst``: a wrong label wherever an annotator gave one (several: one of the wrong annotations, chosen at
      random), else the clean label.

    ``clean`` is read by ``worst`` only.
    """
    given = np.asarray(annotations, dtype=np.int64)
    if given.ndim != 2:
        raise ValueError(f"annotations must be annotators x samples, got shape {given.shape}")
    if aggregate not in AGGREGATES:
        raise NoiseOptionError("aggregate", f"aggregate {aggregate!r} is unknown (allowed: {', '.join(AGGREGATES)})")
    a, n = given.shape
    if given.size and (given.min() < -1 or given.max() >= num_classes):
        raise ValueError(f"annotations must lie in [0, {num_classes}), or be -1 where not labelled")
    labelled = given >= 0
    if n and not labelled.any(axis=0).all():
        raise ValueError(f"sample {int(np.flatnonzero(~labelled.any(axis=0))[0])} has no annotation")
    cols = np.arange(n)
    if aggregate == "majority":
        counts = np.zeros((n, num_classes), dtype=np.int64)
        for i in range(a):
            np.add.at(counts, (cols[labelled[i]], given[i, labelled[i]]), 1)
        tied = counts == counts.max(axis=1, keepdims=True)
        majority: np.ndarray = np.argmax(np.where(tied, rng.random((n, num_classes)), -1.0), axis=1)
        return majority
    if aggregate == "random":
        pick = np.argmax(np.where(labelled, rng.random((a, n)), -1.0), axis=0)
        chosen: np.ndarray = given[pick, cols]
        return chosen
    # worst
    y = np.asarray(clean, dtype=np.int64)
    wrong = labelled & (given != y[None, :])
    pick = np.argmax(np.where(wrong, rng.random((a, n)), -1.0), axis=0)
    worst: np.ndarray = np.where(wrong.any(axis=0), given[pick, cols], y)
    return worst


def annotator_settings(options: Mapping[str, Any]) -> AnnotatorSettings:
    """The ``annotators`` kind's options (``annotators``, ``skills``, ``coverage``, ``aggregate``; others are
    ignored here) checked and with their defaults; a ``NoiseOptionError`` naming the option otherwise."""
    count = options.get("annotators", 3)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_ANNOTATORS:
        raise NoiseOptionError(
            "annotators",
            f"annotators must be an integer in [1, {MAX_ANNOTATORS}] (how many label each sample), got {count!r}",
        )
    count = int(count)
    skills: tuple[float, ...] = ()
    if options.get("skills") is not None:
        raw = options["skills"]
        try:
            values = [float(v) for v in raw if not isinstance(v, bool)]
        except (TypeError, ValueError):
            values = []
        if len(values) != count or len(values) != len(raw) or not all(np.isfinite(v) and v > 0 for v in values):
            raise NoiseOptionError(
                "skills",
                f"skills must be {count} positive numbers, one factor per annotator (its error rate is "
                f"min(1, rate x skill)); got {raw!r}",
            )
        skills = tuple(values)
    coverage = options.get("coverage", 1.0)
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float, np.number)) or not 0.0 < coverage <= 1.0:
        raise NoiseOptionError(
            "coverage", f"coverage {coverage!r} is outside (0, 1] (the fraction of samples each annotator labels)"
        )
    aggregate = options.get("aggregate", "majority")
    if aggregate not in AGGREGATES:
        raise NoiseOptionError("aggregate", f"aggregate {aggregate!r} is unknown (allowed: {', '.join(AGGREGATES)})")
    return AnnotatorSettings(count=count, skills=skills, coverage=float(coverage), aggregate=str(aggregate))


# -- drawing ------------------------------------------------------------------------------------------


def _draw(y: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each sample's label drawn independently from its row of ``t`` (inverse CDF)."""
    return _draw_rows(t[y], rng)


def _draw_rows(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row, drawn from the row's probabilities (N x K; inverse CDF, one uniform per row)."""
    u = rng.random(len(rows))
    cdf: np.ndarray = np.cumsum(rows, axis=1)
    cdf[:, -1] = 1.0  # guard against rounding: every u < 1 finds a class
    noisy: np.ndarray = (u[:, None] >= cdf).sum(axis=1).astype(np.int64)
    return noisy


def _draw_exact(y: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round((1 - T[c, c]) n_c)`` changes per class, spread by largest remainders over the row."""
    noisy = y.copy()
    k = t.shape[0]
    for c in range(k):
        idx = np.flatnonzero(y == c)
        n_c = idx.size
        off = t[c].copy()
        off[c] = 0.0
        # rounded half up; the epsilon absorbs float error in 1 - T[c, c] (0.23 * 250 is 57.5, not 57.4999)
        n_flip = int(np.floor(off.sum() * n_c + 0.5 + 1e-9))
        if n_flip == 0 or off.sum() <= 0:
            continue
        quota = off / off.sum() * n_flip
        counts = np.floor(quota).astype(np.int64)
        remainder = n_flip - counts.sum()
        if remainder:
            # Ties are broken by a seeded random order so that no class is favoured systematically.
            order = np.lexsort((rng.permutation(k), -(quota - counts)))
            counts[order[:remainder]] += 1
        chosen = rng.permutation(idx)[:n_flip]
        noisy[chosen] = np.repeat(np.arange(k), counts)
    return noisy


def _kind_code(kind: str) -> int:
    """A stable number for a noise kind, from its name alone (CRC-32; Python's ``hash`` of a string changes
    from one process to the next): the second key of the kind's seed stream, so a kind's labels do not
    depend on which other kinds exist or on their order."""
    return zlib.crc32(kind.encode("utf-8"))


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"noise kind {kind!r} is unknown (allowed: {', '.join(KINDS)})")


def _check_options(kind: str, options: Mapping[str, Any]) -> None:
    """Every option known and one that ``kind`` reads (``OPTION_KINDS``)."""
    unknown = set(options) - set(OPTION_KINDS)
    if unknown:
        raise ValueError(f"unknown noise options {sorted(unknown)} (allowed: {', '.join(OPTION_KINDS)})")
    for option in options:
        kinds = OPTION_KINDS[option]
        if kind not in kinds:
            raise NoiseOptionError(
                option,
                f"noise option {option!r} applies only to noise kind{'s' if len(kinds) > 1 else ''} "
                f"{' and '.join(kinds)}, not to {kind!r}",
            )


def _check_labels(labels: np.ndarray | Sequence[int], k: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("labels must be integers")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= k):
        bad = y[(y < 0) | (y >= k)][:5].tolist()
        raise ValueError(f"labels must lie in [0, {k}) for num_classes={k}; found {bad}")
    return y


def _check_features(features: Any, n: int) -> np.ndarray:
    if features is None:
        raise NoiseOptionError(
            "features",
            "instance_dependent noise needs features=X, an N x D array with one row per label "
            "(study.noise.instance_features makes them from images)",
        )
    try:
        x = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError):
        raise NoiseOptionError("features", "features must be an N x D array of numbers") from None
    if x.ndim != 2 or x.shape[1] < 1:
        raise NoiseOptionError("features", f"features must be an N x D array (D >= 1), got shape {x.shape}")
    if x.shape[0] != n:
        raise NoiseOptionError("features", f"features has {x.shape[0]} rows for {n} labels; give one row per label")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise NoiseOptionError(
            "features", f"features has non-finite values (NaN or inf), first in row {int(np.flatnonzero(~finite)[0])}"
        )
    return x


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    return int(num_classes)


def _check_rate(rate: float) -> float:
    try:
        r = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"noise rate must be a number in [0, 1), got {rate!r}") from None
    if not np.isfinite(r) or r < 0.0 or r >= 1.0:
        raise ValueError(f"noise rate {rate!r} is outside [0, 1)")
    return r


def _check_transition(t: Any, k: int) -> np.ndarray:
    if t is None:
        raise ValueError("transition noise needs transition=T, a K x K row-stochastic matrix")
    m = np.asarray(t, dtype=np.float64)
    if m.shape != (k, k):
        raise ValueError(f"transition matrix must be {k} x {k} for num_classes={k}, got shape {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("transition matrix is not row-stochastic: it has negative or non-finite entries")
    sums = m.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _ROW_TOL)
    if bad.size:
        raise ValueError(
            f"transition matrix is not row-stochastic: row {int(bad[0])} sums to {sums[bad[0]]:.6f}, not 1"
        )
    rows: np.ndarray = m / sums[:, None]
    return rows


def class_targets(targets: Any, class_names: Sequence[str]) -> list[int]:
    """The ``targets`` option of ``asymmetric`` noise given by class name or index (a spec's
    ``noise.options.targets``) as class indices of a dataset with ``class_names``; a ``NoiseOptionError``
    naming the entry otherwise (an unknown name, and everything ``_check_targets`` refuses)."""
    names = list(class_names)
    if isinstance(targets, (list, tuple)):
        resolved: list[Any] = []
        for c, v in enumerate(targets):
            if isinstance(v, str):
                if v not in names:
                    raise NoiseOptionError(
                        "targets",
                        f"targets[{c}] = {v!r} is not a class of this dataset (classes: {', '.join(names)}); "
                        "give a class name or index",
                    )
                if names.index(v) == c:
                    raise NoiseOptionError(
                        "targets", f"targets[{c}] = {v!r} maps class {c} ({v}) to itself; give each class another class"
                    )
                v = names.index(v)
            resolved.append(v)
        targets = resolved
    return _check_targets(targets, len(names))


def _check_targets(targets: Any, k: int) -> list[int]:
    """``asymmetric``'s destination of each class: K class indices, none its own class; default c+1 mod K."""
    if targets is None:
        return [(c + 1) % k for c in range(k)]
    example = f"e.g. {[(c + 1) % k for c in range(k)]}, the default"
    if isinstance(targets, np.ndarray):
        targets = targets.tolist()
    if not isinstance(targets, (list, tuple)):
        raise NoiseOptionError(
            "targets",
            f"targets must be a list of {k} class indices, targets[c] the class that labels of class c are "
            f"flipped to ({example}); got {targets!r}",
        )
    if len(targets) != k:
        raise NoiseOptionError(
            "targets",
            f"targets has {len(targets)} entries for {k} classes; give one destination class per class ({example})",
        )
    out = []
    for c, v in enumerate(targets):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise NoiseOptionError("targets", f"targets[{c}] = {v!r} is not a class index; give an integer in [0, {k})")
        if not 0 <= v < k:
            raise NoiseOptionError("targets", f"targets[{c}] = {v} is outside [0, {k}); give a class index in [0, {k})")
        if v == c:
            raise NoiseOptionError(
                "targets",
                f"targets[{c}] = {c} maps class {c} to itself; give each class another class ({example})",
            )
        out.append(int(v))
    return out


def _check_scale(scale: Any, k: int) -> np.ndarray:
    if scale is None:
        return np.ones(k)
    s = np.asarray(scale, dtype=float)
    if s.shape != (k,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"class_scale must be {k} non-negative factors, one per class; got {scale!r}")
    return s


def _check_groups(groups: Any, k: int, kind: str) -> list[tuple[int, ...]]:
    if groups is None:
        raise ValueError(
            "class_dependent noise needs groups=[[...], [...]] of confusable classes "
            "(datasets provide defaults: their noise_groups, e.g. study.data.DATASETS[name].noise_groups)"
        )
    seen: set[int] = set()
    out = []
    for group in groups:
        g = tuple(int(c) for c in group)
        if len(g) < 2:
            raise ValueError(f"{kind} group {list(g)} needs at least two classes")
        for c in g:
            if c < 0 or c >= k:
                raise ValueError(f"{kind} group {list(g)} has class {c} outside [0, {k})")
            if c in seen:
                raise ValueError(f"class {c} appears in more than one {kind} group")
            seen.add(c)
        out.append(g)
    if not out:
        raise ValueError(f"{kind} noise needs at least one group of two or more classes")
    return out
