"""Intervals for the difference between two groups of runs, and the seeds a claim would need to be decided.

Every interval here is computed by scipy.stats; the claims rules (claims.yaml) name which one each measure uses and at
which nominal level, chosen by simulation (advprune.report.coverage, checked by tests/test_claims_coverage.py):
- a difference of means (accuracies): Welch's t interval (`scipy.stats.ttest_ind(..., equal_var=False)`), at 97%;
- a difference of rates (failures per run, as percentages): Newcombe's hybrid score interval (Newcombe 1998, method
  10), which combines each group's Wilson score interval (`scipy.stats.binomtest(...).proportion_ci("wilson")`);
- the bootstrap candidates (percentile, basic, BCa) through `scipy.stats.bootstrap`, groups resampled independently.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
Interval = tuple[float, float]


def welch(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Welch's interval for mean(a) - mean(b) (unequal variances, Satterthwaite's degrees of freedom)."""
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread at all: the difference is known exactly
        return float(a.mean() - b.mean()), float(a.mean() - b.mean())
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def newcombe(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Newcombe's hybrid score interval for rate(a) - rate(b), with a and b each 0 or 100 per run (percentages of
    runs); each rate's Wilson score interval from scipy."""
    (ka, na), (kb, nb) = _events(a), _events(b)
    pa, pb = ka / na, kb / nb
    la, ua = _wilson(ka, na, confidence)
    lb, ub = _wilson(kb, nb, confidence)
    low = pa - pb - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = pa - pb + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return 100.0 * low, 100.0 * high


def _events(values: np.ndarray) -> tuple[int, int]:
    if not np.isin(values, (0.0, 100.0)).all():
        raise ValueError("a rate interval needs per-run values of 0 or 100 (an event's percentage per run)")
    return int((values == 100.0).sum()), len(values)


def _wilson(k: int, n: int, confidence: float) -> Interval:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def bootstrap(a: np.ndarray, b: np.ndarray, *, method: str, n_resamples: int, rng: np.random.Generator) -> Interval:
    """scipy's bootstrap interval for mean(a) - mean(b), each group resampled on its own."""
    result = stats.bootstrap(
        (a, b), lambda x, y, axis: x.mean(axis) - y.mean(axis), n_resamples=n_resamples, vectorized=True,
        paired=False, confidence_level=CONFIDENCE, method=method, rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _bootstrap_candidate(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, *, method: str,
                         n_resamples: int) -> Interval:  # fmt: skip
    return bootstrap(a, b, method=method, n_resamples=n_resamples, rng=rng)


Method = Callable[[np.ndarray, np.ndarray, np.random.Generator], Interval]


def candidates(rates: bool, *, n_resamples: int = 999) -> dict[str, Method]:
    """The intervals a coverage simulation compares, by name: for rates Newcombe's beside the generic ones; Welch's
    also at the higher nominal levels that the rules may choose for it."""
    methods = {
        "welch": lambda a, b, rng: welch(a, b),
        "welch 96%": lambda a, b, rng: welch(a, b, 0.96),
        "welch 97%": lambda a, b, rng: welch(a, b, 0.97),
        **{
            f"{method} bootstrap": functools.partial(_bootstrap_candidate, method=method, n_resamples=n_resamples)
            for method in ("percentile", "basic", "BCa")
        },
    }
    if rates:
        methods = {"newcombe": lambda a, b, rng: newcombe(a, b), **methods}
    return methods


# -- power: how many seeds would decide an undecided claim --------------------------------------------------------

MAX_SEEDS = 10_000


def seeds_for_power(
    distance: float, sd_a: float, sd_b: float, *, cells_a: int = 1, cells_b: int = 1, power: float = 0.8,
    confidence: float = CONFIDENCE,
) -> float:
    """Seeds per cell at which the near end of a Welch interval at `confidence` clears a boundary `distance` away
    from the true effect with probability `power`, if the runs spread as sd_a and sd_b (a group that pools several
    cells has cells_x runs per seed). Computed with scipy's noncentral t; inf if more than MAX_SEEDS
    (or the effect sits on the boundary)."""
    if distance <= 0 or not math.isfinite(distance):
        return math.inf

    def achieved(seeds: int) -> float:
        va, vb = sd_a**2 / (cells_a * seeds), sd_b**2 / (cells_b * seeds)
        se = math.sqrt(va + vb)
        if se == 0:
            return 1.0
        df = (va + vb) ** 2 / (va**2 / (cells_a * seeds - 1) + vb**2 / (cells_b * seeds - 1)) if va * vb else (
            cells_a * seeds - 1 if va else cells_b * seeds - 1)
        critical = stats.t.ppf(1 - (1 - confidence) / 2, df)
        return float(stats.nct.sf(critical, df, distance / se))

    if achieved(MAX_SEEDS) < power:
        return math.inf
    low, high = 2, MAX_SEEDS  # power grows with the seeds: the first that reaches it, by bisection
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if achieved(middle) < power else (low, middle)
    return low
