"""How much of a difference is noise: the course's one statistics toolkit.

Every verdict in the notebooks (which stage, which learning rate, which k, which strategy) comes from here,
with one rule: at 95% confidence, two accuracies *tie* unless the interval of their difference excludes zero.

- ``accuracy_interval``: an accuracy with its Wilson interval (rule of three when no or every image is wrong).
- ``mean_interval``: the mean of a score measured on independent units (e.g. one purity per channel), with
  its Student-t interval.
- ``paired``: two models scored on the *same* images: McNemar's exact test and the exact interval of the
  paired difference (conditional on the images where they disagree).
- ``unpaired``: two accuracies on *different* images (or without per-image results, where it is the cautious
  choice): Newcombe's interval of the difference.
- ``compare``: "better", "worse" or "tie", with a sentence a notebook can print.
- ``choose``: among candidates listed cheapest first, the first one that ties with the best.
- ``timing_summary``: min, median and spread of repeated timings.
- ``require_not_test``: every selection helper refuses a split named test (select on validation, test once).

Scores are given as correctness vectors (one bool per image, e.g. ``preds == labels``) or, for the unpaired
interval only, as ``(correct, n)`` counts.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import beta, binom, norm
from scipy.stats import t as student_t

__all__ = [
    "Interval",
    "Comparison",
    "Choice",
    "Timing",
    "accuracy_interval",
    "mean_interval",
    "paired",
    "unpaired",
    "compare",
    "choose",
    "timing_summary",
    "require_not_test",
]

LEVEL = 0.95


def require_not_test(split: str) -> None:
    """Raise if ``split`` names the test set: choices are made on validation data, the test set is touched once."""
    if not isinstance(split, str) or not split.strip():
        raise ValueError("Name the split the choice is made on, e.g. on='validation'.")
    if "test" in re.split(r"[^a-z0-9]+", split.lower()):
        raise ValueError(
            f"Choosing on the split {split!r} selects on test data: choose on a validation split, "
            "then score the test set once for the chosen model."
        )


def _counts(scores) -> tuple[int, int]:
    """(correct, n) from a correctness vector or a ``(correct, n)`` pair of ints."""
    if isinstance(scores, tuple) and len(scores) == 2 and all(isinstance(v, (int, np.integer)) for v in scores):
        if isinstance(scores[0], bool):
            raise ValueError("Pass scores as a correctness vector, or as a (correct, n) pair of ints.")
        k, n = int(scores[0]), int(scores[1])
        if not 0 <= k <= n or n == 0:
            raise ValueError(f"(correct, n) = {scores}: need 0 <= correct <= n and n > 0.")
        return k, n
    v = _vector(scores)
    return int(v.sum()), v.size


def _vector(scores) -> np.ndarray:
    v = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores).reshape(-1)
    if v.size == 0:
        raise ValueError("No scores: pass one correctness value (True/False) per image.")
    if v.dtype != bool and not np.isin(v, (0, 1)).all():
        raise ValueError("Scores must be correctness values (True/False or 0/1 per image), e.g. preds == labels.")
    return v.astype(bool)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


@dataclass(frozen=True)
class Interval:
    """An accuracy and its interval; ``margin`` is the larger distance from the accuracy to an end."""

    acc: float
    low: float
    high: float
    n: int

    @property
    def margin(self) -> float:
        return max(self.acc - self.low, self.high - self.acc)

    def __str__(self) -> str:
        return f"{_pct(self.acc)} ± {100 * self.margin:.1f} (n={self.n:,})"


def accuracy_interval(scores, level: float = LEVEL) -> Interval:
    """Accuracy with its Wilson score interval; with no errors (or no successes) the rule of three, 3/n."""
    k, n = _counts(scores)
    p = k / n
    if k == n:
        return Interval(p, max(0.0, 1 - 3 / n), 1.0, n)
    if k == 0:
        return Interval(p, 0.0, min(1.0, 3 / n), n)
    z = norm.ppf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, centre - half, centre + half, n)


def mean_interval(values, level: float = LEVEL) -> Interval:
    """The mean of one score per independent unit (a channel, a run) with its Student-t interval.

    For accuracies use ``accuracy_interval``; this is for averages of other scores, e.g. the class purity of
    each of a layer's channels. Needs at least two values.
    """
    v = np.asarray(values.cpu() if hasattr(values, "cpu") else values, dtype=float).reshape(-1)
    if v.size < 2:
        raise ValueError(f"mean_interval needs at least two values to measure their spread, got {v.size}.")
    m = float(v.mean())
    half = float(student_t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Interval(m, m - half, m + half, int(v.size))


@dataclass(frozen=True)
class Comparison:
    """A minus B: ``diff`` (fraction), its interval [low, high], and the verdict it supports.

    ``margin`` is the distance from ``diff`` to the interval's end on the side of zero, so the verdict is a tie
    exactly when ``abs(diff) <= margin``. ``p`` is McNemar's exact p-value (paired) or None (unpaired).
    """

    a: str
    b: str
    acc_a: float
    acc_b: float
    diff: float
    low: float
    high: float
    paired: bool
    on: str
    p: float | None = None
    verdict: str = field(init=False)

    def __post_init__(self) -> None:
        v = "better" if self.low > 0 else "worse" if self.high < 0 else "tie"
        object.__setattr__(self, "verdict", v)

    @property
    def margin(self) -> float:
        return self.diff - self.low if self.diff >= 0 else self.high - self.diff

    @property
    def sentence(self) -> str:
        how = "same images, paired" if self.paired else "unpaired"
        diff = f"{_pts(self.diff)} points ± {100 * self.margin:.1f} ({how}, on {self.on})"
        if self.verdict == "tie":
            return f"{self.a} {_pct(self.acc_a)} vs {self.b} {_pct(self.acc_b)}: {diff}, a tie within noise."
        return f"{self.a} {_pct(self.acc_a)} is {self.verdict} than {self.b} {_pct(self.acc_b)}: {diff}."

    def __str__(self) -> str:
        return self.sentence


def paired(a, b, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(diff, low, high, p) for two correctness vectors on the same images (A minus B).

    McNemar's exact test: of the m images where the models disagree, A alone is right on n10; under "no
    difference" n10 ~ Binomial(m, 1/2). The interval is the Clopper-Pearson interval of n10/m mapped to
    (n10 - n01)/n, so it excludes 0 exactly when p < 1 - level.
    """
    va, vb = _vector(a), _vector(b)
    if va.shape != vb.shape:
        raise ValueError(
            f"Paired scores need the same images: got {va.size} and {vb.size} scores (use paired=False otherwise)."
        )
    n = va.size
    n10, n01 = int((va & ~vb).sum()), int((~va & vb).sum())
    m = n10 + n01
    diff = (n10 - n01) / n
    if m == 0:
        return diff, 0.0, 0.0, 1.0
    alpha = 1 - level
    lo = beta.ppf(alpha / 2, n10, m - n10 + 1) if n10 > 0 else 0.0
    hi = beta.ppf(1 - alpha / 2, n10 + 1, m - n10) if n10 < m else 1.0
    p = min(1.0, 2 * min(binom.cdf(n10, m, 0.5), binom.sf(n10 - 1, m, 0.5)))
    return diff, m * (2 * lo - 1) / n, m * (2 * hi - 1) / n, float(p)


def unpaired(a, b, level: float = LEVEL) -> tuple[float, float, float]:
    """(diff, low, high) for two independent accuracies (A minus B): Newcombe's hybrid score interval,
    built from the two Wilson intervals."""
    ia, ib = accuracy_interval(a, level), accuracy_interval(b, level)
    d = ia.acc - ib.acc
    low = d - math.hypot(ia.acc - ia.low, ib.high - ib.acc)
    high = d + math.hypot(ia.high - ia.acc, ib.acc - ib.low)
    return d, low, high


def compare(a, b, *, on: str, paired: bool = True, names: tuple[str, str] = ("A", "B"), level: float = LEVEL):
    """Compare A with B on the split ``on`` (never test): a ``Comparison`` with ``.verdict`` in
    {"better", "worse", "tie"} (A relative to B), ``.diff``, ``.margin`` and a printable ``.sentence``.

    ``paired=True`` (the default) when both were scored on the same images, which is the sharper test.
    """
    require_not_test(on)
    if paired:
        d, low, high, p = _paired(a, b, level)
    else:
        (d, low, high), p = unpaired(a, b, level), None
    acc_a, acc_b = (k / n for k, n in (_counts(a), _counts(b)))
    return Comparison(names[0], names[1], acc_a, acc_b, d, low, high, paired, on, p)


_paired = paired  # ``compare`` has a parameter named ``paired``


@dataclass(frozen=True)
class Choice:
    """The outcome of ``choose``: the chosen candidate, the best-scoring one, those tied with it, and why.

    ``comparisons[c]`` compares candidate ``c`` with the best (absent for the best itself)."""

    chosen: object
    best: object
    tied: list
    acc: dict
    comparisons: dict
    on: str
    label: Callable[[object], str] = str

    @property
    def sentence(self) -> str:
        a, lb = self.acc, self.label
        if self.chosen == self.best:
            others = [lb(c) for c in self.tied if c != self.best]
            tail = f"; tied with it within noise: {', '.join(others)}" if others else "; every other one is worse"
            return f"{lb(self.chosen)} ({_pct(a[self.chosen])} on {self.on}) is chosen: the best{tail}."
        c = self.comparisons[self.chosen]
        return (
            f"{lb(self.chosen)} ({_pct(a[self.chosen])} on {self.on}) is chosen: it ties with the best, "
            f"{lb(self.best)} ({_pct(a[self.best])}; {_pts(c.diff)} points ± {100 * c.margin:.1f}), "
            "and comes first in the list."
        )

    def __str__(self) -> str:
        return self.sentence


def choose(
    candidates: Mapping[object, object],
    *,
    on: str,
    paired: bool = True,
    level: float = LEVEL,
    label: Callable[[object], str] = str,
) -> Choice:
    """The rule for every choice in the course: find the best-scoring candidate; every candidate whose
    ``compare`` with it is a tie is as good within noise; choose the *first* of those in the order given.

    List candidates in order of preference (cheapest, simplest or earliest first). ``candidates`` maps a name to
    a correctness vector (all on the same images when ``paired``) or, with ``paired=False``, a (correct, n) pair.
    ``label`` names a candidate in the sentences (e.g. ``lambda lr: f"{lr:.0e}"``).
    """
    require_not_test(on)
    if not candidates:
        raise ValueError("No candidates to choose from.")
    scores = dict(candidates)
    acc = {s: k / n for s, (k, n) in ((s, _counts(v)) for s, v in scores.items())}
    names = list(acc)
    best = max(names, key=lambda s: acc[s])  # the first of equal maxima
    comps = {
        s: compare(scores[s], scores[best], on=on, paired=paired, names=(label(s), label(best)), level=level)
        for s in names
        if s != best
    }
    tied = [s for s in names if s == best or comps[s].verdict == "tie"]
    return Choice(tied[0], best, tied, acc, comps, on, label)


@dataclass(frozen=True)
class Timing:
    """Repeated timings: the minimum (the best estimate of the cost), the median and the spread (max - min)."""

    min: float
    median: float
    spread: float
    n: int

    def __str__(self) -> str:
        return f"min {_secs(self.min)}, median {_secs(self.median)}, spread {_secs(self.spread)} ({self.n} runs)"


def _secs(t: float) -> str:
    return f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s"


def timing_summary(times: Sequence[float]) -> Timing:
    """Min, median and spread (max - min) of repeated timings in seconds; report the min as the cost."""
    ts = [float(t) for t in times]
    if not ts:
        raise ValueError("No timings: time the code a few times (e.g. 5 repeats) and pass the list.")
    return Timing(min(ts), statistics.median(ts), max(ts) - min(ts), len(ts))
