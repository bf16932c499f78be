"""Label-noise injection (docs/architecture.md, Label noise).

Every kind is defined by its intended transition matrix ``T`` (``T[i, j]`` = probability that a sample of
true class ``i`` is given label ``j``); a noisy label set is a draw from the rows of ``T``.

- ``symmetric``: off-diagonal mass ``rate`` spread uniformly over the other K-1 classes (the true class is
  never redrawn), as in Han et al. 2018 (Co-teaching) and Patrini et al. 2017.
- ``uniform``: DivideMix-style (Li et al. 2020): a corrupted label is redrawn from all K classes, so the
  realized rate is about ``rate * (K-1)/K``.
- ``pairflip``: class c goes to c+1 mod K with probability ``rate`` (Han et al. 2018).
- ``class_dependent``: flips only inside groups of confusable classes, uniformly to the other members of
  the group (Khanal et al. 2024); classes outside every group keep their labels. ``class_scale`` (one
  factor per class, default 1) makes the rates per class: class c flips with probability
  ``rate * class_scale[c]``, so that on a binary dataset (MURA: one group of two classes) class-dependent
  noise differs from symmetric noise.
- ``transition``: any row-stochastic ``transition=T``, used as given (``rate`` is not used).

With ``exact=True`` the number of changed labels of class c is exactly ``round((1 - T[c, c]) * n_c)``
(rounded half up)
(``round(rate * n_c)`` for symmetric, pairflip and grouped classes) and the changed samples are spread
over their destination classes in proportion to ``T[c, j]`` by largest remainders; otherwise each sample
is drawn independently from its row. Draws use NumPy's PCG64 generator, whose streams are the same on
every platform, so the same inputs give the same labels on any machine.

The random stream of a draw is keyed by the seed and the kind's name (its CRC-32), so adding or
reordering kinds in ``KINDS`` changes no kind's labels. Earlier versions keyed it by the kind's position
in ``KINDS``: the noisy labels of studies made before this change differ, once, from those drawn now
(within a study they stay fixed, so the resume guarantee holds).

Functions here are pure: arrays in, arrays out.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("symmetric", "uniform", "pairflip", "class_dependent", "transition")

_ROW_TOL = 1e-6


@dataclass(frozen=True)
class NoisyLabels:
    """A noisy label set with the matrix it was drawn from.

    ``labels``: the noisy labels; ``transition``: the intended K x K row-stochastic matrix;
    ``realized_rate``: the fraction of labels that differ from the clean ones.
    """

    labels: np.ndarray
    transition: np.ndarray
    realized_rate: float
    kind: str = ""
    rate: float = 0.0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def empirical_transition(self, clean: np.ndarray) -> np.ndarray:
        """The transition matrix realised on ``clean`` (rows of classes absent from ``clean`` are zero)."""
        return empirical_transition(clean, self.labels, self.transition.shape[0])

    def summary(self, clean: np.ndarray) -> dict[str, Any]:
        """A JSON-able record: kind, rate, seed, options, realized rate, intended and empirical matrices."""
        return {
            "kind": self.kind,
            "rate": self.rate,
            "seed": self.seed,
            "options": self.options,
            "realized_rate": self.realized_rate,
            "transition": self.transition.tolist(),
            "empirical_transition": self.empirical_transition(clean).tolist(),
        }

    def save(self, folder: str | Path, clean: np.ndarray, indices: np.ndarray | None = None) -> list[Path]:
        """Write ``noisy_labels.csv`` (index, clean, noisy) and ``noise.json`` (``summary``) into ``folder``;
        returns the two paths (the artifacts later stages log to MLflow)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        idx = np.arange(len(self.labels)) if indices is None else np.asarray(indices)
        table = np.stack([idx, np.asarray(clean), self.labels], axis=1)
        csv = folder / "noisy_labels.csv"
        np.savetxt(csv, table, fmt="%d", delimiter=",", header="index,clean,noisy", comments="")
        js = folder / "noise.json"
        js.write_text(json.dumps(self.summary(clean), indent=1))
        return [csv, js]


def empirical_transition(clean: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalised confusion of noisy against clean labels, K x K."""
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (np.asarray(clean, dtype=np.int64), np.asarray(noisy, dtype=np.int64)), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    rows: np.ndarray = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    return rows


def transition_matrix(num_classes: int, kind: str, rate: float, **options: Any) -> np.ndarray:
    """The intended transition matrix of a noise kind; raises ValueError on invalid inputs."""
    k = _check_num_classes(num_classes)
    if kind not in KINDS:
        raise ValueError(f"noise kind {kind!r} is unknown (allowed: {', '.join(KINDS)})")
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
    # class_dependent
    groups = _check_groups(options.get("groups"), k)
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

    Options: ``exact`` (bool), ``groups`` and ``class_scale`` (class_dependent), ``transition`` (transition kind).

    The random stream is keyed by ``seed`` and the kind's name, not by its position in ``KINDS`` as in
    earlier versions: labels of studies made before this change differ, once, from those drawn now
    (within a study they stay fixed, so the resume guarantee holds).
    """
    unknown = set(options) - {"exact", "groups", "class_scale", "transition"}
    if unknown:
        raise ValueError(f"unknown noise options {sorted(unknown)} (allowed: exact, groups, class_scale, transition)")
    k = _check_num_classes(num_classes)
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer) and not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("labels must be integers")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= k):
        bad = y[(y < 0) | (y >= k)][:5].tolist()
        raise ValueError(f"labels must lie in [0, {k}) for num_classes={k}; found {bad}")
    t = transition_matrix(k, kind, rate, **{key: v for key, v in options.items() if key != "exact"})
    exact = bool(options.get("exact", False))
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _kind_code(kind)]))
    noisy = _draw_exact(y, t, rng) if exact else _draw(y, t, rng)
    realized = float(np.mean(noisy != y)) if y.size else 0.0
    return NoisyLabels(
        labels=noisy,
        transition=t,
        realized_rate=realized,
        kind=kind,
        rate=float(rate) if kind != "transition" else float(1.0 - np.mean(np.diag(t))),
        seed=int(seed),
        options={key: (v.tolist() if isinstance(v, np.ndarray) else v) for key, v in options.items()},
    )


def _draw(y: np.ndarray, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each sample's label drawn independently from its row of ``t`` (inverse CDF)."""
    u = rng.random(len(y))
    cdf: np.ndarray = np.cumsum(t, axis=1)
    cdf[:, -1] = 1.0  # guard against rounding: every u < 1 finds a class
    noisy: np.ndarray = (u[:, None] >= cdf[y]).sum(axis=1).astype(np.int64)
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


def _check_scale(scale: Any, k: int) -> np.ndarray:
    if scale is None:
        return np.ones(k)
    s = np.asarray(scale, dtype=float)
    if s.shape != (k,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"class_scale must be {k} non-negative factors, one per class; got {scale!r}")
    return s


def _check_groups(groups: Any, k: int) -> list[tuple[int, ...]]:
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
            raise ValueError(f"class_dependent group {list(g)} needs at least two classes")
        for c in g:
            if c < 0 or c >= k:
                raise ValueError(f"class_dependent group {list(g)} has class {c} outside [0, {k})")
            if c in seen:
                raise ValueError(f"class {c} appears in more than one class_dependent group")
            seen.add(c)
        out.append(g)
    if not out:
        raise ValueError("class_dependent noise needs at least one group of two or more classes")
    return out
