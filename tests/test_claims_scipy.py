"""The claims' bootstrap and the time fit come from scipy (scipy.stats.bootstrap, scipy.stats.linregress): on a fixed
table their intervals agree with the hand-written percentile bootstrap they replaced, within that bootstrap's own
seed-to-seed noise, and give the same verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from advprune.report import claims
from advprune.report.stats import linear_fit

RESAMPLES = 1000
REFERENCE_SEEDS = 8


def handwritten_interval(statistic, groups, *, n_resamples, rng):
    """The implementation scipy replaced (as of commit cd83ff8), kept here as the oracle."""
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        values[i] = statistic({name: rng.choice(v, size=len(v), replace=True) for name, v in groups.items()})
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def fixed_table() -> pd.DataFrame:
    """Ten seeds per cell of a Table 1 + Figure 3-like grid on one dataset, drawn once from a fixed generator."""
    rng = np.random.default_rng(17)
    cells = {("full", 1.0): 66.0}
    for strategy, shift in (("random", 0.0), ("low+high", 3.0), ("low", -8.0)):
        for keep in (0.2, 0.4, 0.6, 0.8):
            cells[(strategy, keep)] = 50.0 + 15.0 * keep + shift
    rows = []
    for (strategy, keep), mean in cells.items():
        for seed in range(10):
            rows.append({
                "dataset": "mnist", "strategy": strategy, "keep": keep, "seed": seed, "collapsed": False,
                "aa_acc_pct": mean + rng.normal(0.0, 4.0),
                "time_seconds": 10.0 + 90.0 * keep + rng.normal(0.0, 2.0),
            })  # fmt: skip
    return pd.DataFrame(rows)


MEASURES = {
    "difference": {"kind": "difference", "metric": "aa_acc_pct", "a": {"strategy": "low+high", "keep": 0.4},
                   "b": {"strategy": "random", "keep": 0.4}},
    "ratio": {"kind": "ratio", "metric": "time_seconds", "a": {"strategy": "random", "keep": 0.2},
              "b": {"strategy": "full", "keep": 1.0}},
    "linear_r2": {"kind": "linear_r2", "metric": "time_seconds", "strategy": "random"},
    "worst_gap": {"kind": "worst_gap", "metric": "aa_acc_pct", "strategy": "low"},
}  # fmt: skip
TESTS = {
    "difference": {"kind": "greater", "margin": 1.0},
    "ratio": {"kind": "about", "value": 0.3, "tolerance": 0.1},
    "linear_r2": {"kind": "at_least", "threshold": 0.95},
    "worst_gap": {"kind": "less", "margin": 1.0},
}


@pytest.mark.parametrize("kind", list(MEASURES))
def test_scipy_intervals_agree_with_the_handwritten_bootstrap(kind: str) -> None:
    make_groups, statistic = claims._measure(MEASURES[kind])
    groups, missing = make_groups(fixed_table(), MEASURES[kind])
    assert missing is None
    reference = np.array([
        handwritten_interval(statistic, groups, n_resamples=RESAMPLES, rng=np.random.default_rng(seed))
        for seed in range(REFERENCE_SEEDS)
    ])
    ours = np.array(claims.bootstrap_interval(statistic, groups, n_resamples=RESAMPLES, rng=np.random.default_rng(0)))
    noise = reference.std(axis=0, ddof=1)  # seed-to-seed spread of each end of the old interval
    assert np.all(noise > 0), "the reference must vary with its seed, or the tolerance below is void"
    # A fresh draw lies within 4 sd of the old draws' mean (t with 7 df: beyond that well under 1% of the time).
    assert np.all(np.abs(ours - reference.mean(axis=0)) <= 4 * noise * math.sqrt(1 + 1 / REFERENCE_SEEDS)), (
        kind, ours, reference.mean(axis=0), noise)
    # ...and the verdict, a function of the interval, is the one the old bootstrap gave on this table.
    assert claims.verdict(TESTS[kind], *ours) == claims.verdict(TESTS[kind], *reference[0])


def test_the_interval_covers_the_estimate_and_bca_is_available() -> None:
    make_groups, statistic = claims._measure(MEASURES["difference"])
    groups, _ = make_groups(fixed_table(), MEASURES["difference"])
    estimate = statistic(groups)
    for method in ("percentile", "BCa"):
        low, high = claims.bootstrap_interval(statistic, groups, n_resamples=RESAMPLES, rng=np.random.default_rng(0),
                                              method=method)
        assert low < estimate < high, method


def test_linear_fit_matches_least_squares() -> None:
    rng = np.random.default_rng(0)
    x = np.repeat([0.2, 0.4, 0.6, 0.8, 1.0], 4)
    y = 3.0 * x + 1.0 + rng.normal(0, 0.1, len(x))
    fit = linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    r2 = 1 - ((y - (slope * x + intercept)) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert (fit.slope, fit.intercept, fit.r2, fit.n) == pytest.approx((slope, intercept, r2, len(x)))
    assert linear_fit(x, np.full(len(x), 5.0)).r2 == 1.0  # a flat line fits a constant exactly
    assert math.isnan(linear_fit(np.ones(3), np.arange(3.0)).r2)


def test_the_bootstrap_resamples_equal_sized_cells_independently() -> None:
    """The runs of two cells are not pairs (seed 3 of one cell has nothing to do with seed 3 of the other). Cells of
    the same size whose runs move together (b = a + 3, in the same order): resampled as pairs, every resample's
    difference of means is -3 exactly and the interval has no width; resampled independently it is about
    2 x 1.96 standard errors of a difference of two independent means wide."""
    a = np.random.default_rng(3).normal(60.0, 4.0, 10)
    groups = {"a": a, "b": a + 3.0}
    low, high = claims.bootstrap_interval(lambda g: g["a"].mean() - g["b"].mean(), groups, n_resamples=RESAMPLES,
                                          rng=np.random.default_rng(0))
    standard_error = math.sqrt(a.var() / len(a) + (a + 3.0).var() / len(a))  # the bootstrap's plug-in variances
    assert low < -3.0 < high
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.2)
