"""Aggregates of a run for the report: means with 95% confidence intervals, curves over words and bits.

Kept apart from plotting so the numbers in tables and figures come from one place and are testable.
Curves of images with different caption lengths are aligned by carrying each image's last value
forward (after its last word Bob's image no longer changes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

# Two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30; beyond that the normal 1.96 is
# within 2%. Avoids a scipy dependency.
_T975 = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
]


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    if df <= 60:
        return 2.042 + (2.000 - 2.042) * (df - 30) / 30
    if df <= 120:
        return 2.000 + (1.980 - 2.000) * (df - 60) / 60
    return 1.960


@dataclass(frozen=True)
class MeanCI:
    """Mean of n values and its 95% t-interval half-width (nan when n < 2)."""

    n: int
    mean: float
    half: float

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def fmt(self, digits: int = 3) -> str:
        if self.n == 0:
            return "–"
        if math.isnan(self.half):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def mean_ci(values: Iterable[float]) -> MeanCI:
    """Mean and 95% confidence half-width (t distribution, sample standard deviation)."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    n = int(arr.size)
    if n == 0:
        return MeanCI(0, math.nan, math.nan)
    mean = float(arr.mean())
    if n < 2:
        return MeanCI(1, mean, math.nan)
    half = t975(n - 1) * float(arr.std(ddof=1)) / math.sqrt(n)
    return MeanCI(n, mean, half)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float, float]:
    """Proportion and its Wilson 95% interval (well-behaved at 0 and 1 with few images)."""
    if n == 0:
        return math.nan, math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


def pad_forward(curves: Sequence[Sequence[float]], length: int | None = None) -> np.ndarray:
    """Stack curves of different lengths into (n, length), carrying each one's last value forward."""
    if not curves:
        return np.zeros((0, length or 0))
    length = length or max(len(c) for c in curves)
    out = np.empty((len(curves), length), dtype=np.float64)
    for i, c in enumerate(curves):
        c = list(c)[:length]
        out[i, : len(c)] = c
        out[i, len(c) :] = c[-1] if c else math.nan
    return out


def band(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise mean, lower and upper 95% bounds of an (n_images, n_points) matrix."""
    stats = [mean_ci(matrix[:, j]) for j in range(matrix.shape[1])]
    mean = np.array([s.mean for s in stats])
    half = np.array([0.0 if math.isnan(s.half) else s.half for s in stats])
    return mean, mean - half, mean + half


def step_function_at(xs: Sequence[float], ys: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """Value of the right-continuous step function through (xs, ys) at each grid point.

    Used for LPIPS vs cumulative bits: Bob's image after x bits is the one of the last word fully
    received by then. xs must be non-decreasing and start at 0.
    """
    idx = np.searchsorted(np.asarray(xs, dtype=np.float64), grid, side="right") - 1
    idx = np.clip(idx, 0, len(ys) - 1)
    return np.asarray(ys, dtype=np.float64)[idx]


def success_curve(words_to_threshold: Sequence[int | None], length: int) -> np.ndarray:
    """Fraction of images that reached the threshold within k words, for k = 0..length-1."""
    n = len(words_to_threshold)
    if n == 0:
        return np.full(length, math.nan)
    return np.array([sum(1 for w in words_to_threshold if w is not None and w <= k) / n for k in range(length)])


# ---------------------------------------------------------------- words to threshold with failures counted
def penalised(values: Sequence[float | None], penalties: Sequence[float]) -> list[float]:
    """Each value, or its penalty where the transmission never reached the threshold (None).

    With penalty n+1 for an n-word caption, a scheme that rarely succeeds can no longer rank first on
    the mean over its few successes.
    """
    return [float(p) if v is None else float(v) for v, p in zip(values, penalties)]


def words_with_failures(words_to: Sequence[int | None], n_words: Sequence[int]) -> list[float]:
    """Words to a goal (the LPIPS threshold, every attribute right), a transmission that never reached it
    counted as n + 1 words, n being its caption's words the scheme sent from (the summary's `n_words`; for
    `only_heads` the whole caption, not the words it sent), the one n every column and statistic uses."""
    return penalised(words_to, [n + 1 for n in n_words])


def area_per_word(curve: Sequence[float]) -> float:
    """Area under LPIPS vs words, per word: the mean LPIPS after words 1..n (`curve[k]` after k words; the
    empty prompt's curve[0] is left out, being the same for every scheme). A curve of one value: that value.
    The report's area, the oracle's and the search benchmark's gap to the oracle all use it."""
    values = [float(v) for v in curve]
    if not values:
        return math.nan
    return float(np.mean(values[1:])) if len(values) > 1 else values[0]


def gap_to_oracle(curve: Sequence[float], oracle: Sequence[float]) -> float:
    """Area per word between a curve and the oracle's on the same caption: area_per_word(curve) minus
    area_per_word(oracle) (>= 0, the oracle being the best k-word subset at every k)."""
    return area_per_word(curve) - area_per_word(oracle)


def km_median(times: Sequence[float | None], censor_at: Sequence[float]) -> float | None:
    """Kaplan-Meier median of the time to the threshold; a failure is censored at `censor_at` (its caption length).

    None when the survival curve never falls to 0.5 (fewer than half reached it, counting censoring).
    """
    events = sorted({float(t) for t in times if t is not None})
    obs = [(float(c) if t is None else float(t), t is not None) for t, c in zip(times, censor_at)]
    surv = 1.0
    for t in events:
        at_risk = sum(1 for x, _ in obs if x >= t)
        d = sum(1 for x, e in obs if e and x == t)
        if at_risk:
            surv *= 1.0 - d / at_risk
        if surv <= 0.5 + 1e-12:
            return t
    return None


# ---------------------------------------------------------------- paired comparisons (same images)
def paired_p(diffs: Sequence[float], resamples: int = 20000, seed: int = 0) -> tuple[float, str]:
    """Two-sided p-value of 'the paired differences centre on 0', and the test's name.

    Wilcoxon signed-rank (scipy, zero differences dropped) when scipy is installed; otherwise a
    sign-flip permutation test of the mean (exact up to 16 pairs, else `resamples` seeded flips).
    nan when every difference is 0 or there is none.
    """
    d = np.asarray([x for x in diffs if x is not None and not math.isnan(x)], dtype=np.float64)
    if d.size == 0 or not np.any(d != 0):
        return math.nan, "none"
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        return sign_flip_p(d, resamples, seed), "sign-flip permutation"
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue), "Wilcoxon signed-rank"


def sign_flip_p(d: np.ndarray, resamples: int = 20000, seed: int = 0) -> float:
    """Permutation p-value of |mean| under random sign flips of the paired differences (two-sided)."""
    d = np.asarray(d, dtype=np.float64)
    n = d.size
    observed = abs(d.mean())
    if n <= 16:
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(resamples, n))
    means = np.abs((signs * d).mean(axis=1))
    return float(np.mean(means >= observed - 1e-12))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error), in the input order; nan stays nan."""
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def fmt_p(p: float) -> str:
    """A p-value for a table: 3 significant digits, '<0.001' below that, '–' when there is none."""
    if p is None or math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def jackknife_ci(n: int, statistic: Any, level: float = 0.95) -> tuple[float, float, float]:
    """Statistic on items 0..n-1 and its jackknife normal interval: estimate +- z * jackknife SE.

    For set statistics such as FID, KID and IS a bootstrap resample repeats images, which biases the
    statistic itself (duplicates shrink the covariance, repeat kernel terms, narrow the marginal): on a
    100-image run the percentile interval of FID-world lay wholly above the estimate. Leaving one image
    out repeats none, and the interval is centred on the estimate.
    """
    from statistics import NormalDist

    est = float(statistic(list(range(n))))
    if n < 3:
        return est, math.nan, math.nan
    loo = np.array([float(statistic([j for j in range(n) if j != i])) for i in range(n)])
    se = math.sqrt((n - 1) / n * float(np.sum((loo - loo.mean()) ** 2)))
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    return est, est - z * se, est + z * se


def mean_over_bits(cum_bits: Sequence[float], lpips: Sequence[float], horizon: float) -> float:
    """Area under the LPIPS-vs-bits step function on [0, horizon], divided by horizon (mean LPIPS per bit).

    The image after the last word is carried to the horizon, so transmissions of one image share it
    (the largest caption cost of that image) and cheaper captions are credited for stopping early.
    """
    xs = np.asarray(cum_bits, dtype=np.float64)
    ys = np.asarray(lpips, dtype=np.float64)
    if horizon <= 0:
        return float(ys[-1])
    edges = np.append(np.clip(xs, 0, horizon), horizon)
    return float(np.sum(ys * np.diff(edges)) / horizon)
