"""Pruning strategies (`advprune.pruning`): kept-count rounding, which tail is dropped, determinism, bad input."""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from advprune.pruning import NEEDS_SCORES, STRATEGIES, kept_indices, n_kept

SCORE_BASED = sorted(NEEDS_SCORES)


def expected_kept(n_points: int, keep: float) -> int:
    """round_half_up(keep * N) computed in decimal from the number as written (its shortest repr), at least 1."""
    exact = Decimal(str(keep)) * n_points
    return max(1, int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)))


keeps = st.floats(min_value=0.0, max_value=1.0, exclude_min=True, allow_nan=False)
# Scores with many ties: drawn from a few values, or a continuous range; moderate magnitudes, like losses.
tied_scores = st.integers(1, 120).flatmap(
    lambda n: hnp.arrays(np.float64, n, elements=st.sampled_from([0.0, 0.5, 1.0, 2.25, 7.0]))
)
spread_scores = st.integers(1, 120).flatmap(
    lambda n: hnp.arrays(np.float64, n, elements=st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))
)
score_arrays = st.one_of(tied_scores, spread_scores)


# -- n_kept ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_points", "keep", "expected"),
    [
        (10, 0.45, 5),  # 4.5 -> 5 (Python's round() and float products say 4)
        (10, 0.25, 3),  # 2.5 -> 3 (round() says 2)
        (10, 0.65, 7),  # 6.5 -> 7 (round() says 6)
        (10, 0.35, 4),  # 3.5 -> 4
        (3, 0.5, 2),  # 1.5 -> 2
        (1437, 0.6, 862),  # 862.2 -> 862 (digits' training set)
        (1437, 0.5, 719),  # 718.5 -> 719
        (1437, 0.7, 1006),  # 1005.9 -> 1006
        (1437, 0.1, 144),  # 143.7 -> 144
        (50000, 0.4, 20000),
        (60000, 0.1, 6000),
        (10, 0.01, 1),  # 0.1 -> 0 -> at least one point is kept
        (7, 1.0, 7),
        (1, 0.3, 1),
    ],
)
def test_n_kept_literal_examples(n_points: int, keep: float, expected: int) -> None:
    assert n_kept(n_points, keep) == expected


@settings(max_examples=300, deadline=None)
@given(n_points=st.integers(1, 100_000), keep=keeps)
def test_n_kept_is_decimal_round_half_up(n_points: int, keep: float) -> None:
    assert n_kept(n_points, keep) == expected_kept(n_points, keep)


def test_n_kept_accepts_numpy_floats() -> None:
    # Grids built with numpy (np.linspace, a pandas column) hand over np.float64, whose repr is "np.float64(0.45)".
    assert n_kept(10, np.float64(0.45)) == 5
    assert n_kept(1437, np.float32(0.5)) == 719
    assert kept_indices(np.arange(10.0), np.float64(0.45), "low", seed=0).tolist() == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.0000001, 1.5, float("nan"), float("inf")])
def test_n_kept_refuses_keep_outside_unit_interval(keep: float) -> None:
    with pytest.raises(ValueError, match="keep"):
        n_kept(10, keep)


# -- every strategy ---------------------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(scores=score_arrays, keep=keeps, seed=st.integers(0, 2**32 - 1), strategy=st.sampled_from(sorted(STRATEGIES)))
def test_every_strategy_returns_sorted_unique_subset_of_the_right_size(
    scores: np.ndarray, keep: float, seed: int, strategy: str
) -> None:
    kept = kept_indices(scores, keep, strategy, seed)
    n = len(scores)
    assert kept.ndim == 1
    assert np.issubdtype(kept.dtype, np.integer)
    assert len(kept) == n_kept(n, keep) == expected_kept(n, keep)
    assert np.all(np.diff(kept) > 0), "kept indices must be sorted and unique"
    assert kept.min() >= 0 and kept.max() < n


def _split(scores: np.ndarray, kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros(len(scores), dtype=bool)
    mask[kept] = True
    return scores[mask], scores[~mask]


@settings(max_examples=150, deadline=None)
@given(scores=score_arrays, keep=keeps)
def test_low_drops_the_lowest_scores(scores: np.ndarray, keep: float) -> None:
    kept_scores, dropped_scores = _split(scores, kept_indices(scores, keep, "low", seed=0))
    if len(dropped_scores):
        assert dropped_scores.max() <= kept_scores.min()


@settings(max_examples=150, deadline=None)
@given(scores=score_arrays, keep=keeps)
def test_high_drops_the_highest_scores(scores: np.ndarray, keep: float) -> None:
    kept_scores, dropped_scores = _split(scores, kept_indices(scores, keep, "high", seed=0))
    if len(dropped_scores):
        assert dropped_scores.min() >= kept_scores.max()


@settings(max_examples=150, deadline=None)
@given(scores=score_arrays, keep=keeps)
def test_low_high_drops_half_from_each_tail(scores: np.ndarray, keep: float) -> None:
    n = len(scores)
    kept = kept_indices(scores, keep, "low+high", seed=0)
    n_drop = n - len(kept)
    n_low, n_high = n_drop // 2, math.ceil(n_drop / 2)
    ordered = np.sort(scores)
    kept_sorted = np.sort(scores[kept])
    # The kept multiset of scores is exactly the middle of the sorted order (ties make indices ambiguous, values not).
    np.testing.assert_array_equal(kept_sorted, ordered[n_low : n - n_high])
    kept_scores, dropped_scores = _split(scores, kept)
    if n_low:
        assert np.sum(dropped_scores <= kept_scores.min()) >= n_low
    if n_high:
        assert np.sum(dropped_scores >= kept_scores.max()) >= n_high


@settings(max_examples=150, deadline=None)
@given(scores=score_arrays, keep=keeps)
def test_mean_distance_drops_the_points_nearest_the_mean(scores: np.ndarray, keep: float) -> None:
    """Algorithm 1, lines 18-19, as written: sort by |loss - mean loss|, drop the lowest."""
    kept = kept_indices(scores, keep, "mean-distance", seed=0)
    distance = np.abs(scores - scores.mean())
    kept_distance, dropped_distance = _split(distance, kept)
    if len(dropped_distance):
        assert dropped_distance.max() <= kept_distance.min()


def test_literal_examples_worked_by_hand() -> None:
    # index:               0    1    2    3    4    5    6    7    8    9
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 8.0, 2.0, 6.0, 4.0])
    # keep 0.7 of 10 keeps 7, drops 3.
    assert kept_indices(scores, 0.7, "low", 0).tolist() == [0, 2, 3, 4, 6, 8, 9]  # drops scores 0, 1, 2
    assert kept_indices(scores, 0.7, "high", 0).tolist() == [0, 1, 3, 5, 7, 8, 9]  # drops scores 9, 8, 7
    assert kept_indices(scores, 0.7, "low+high", 0).tolist() == [0, 1, 3, 4, 7, 8, 9]  # drops 0 (low) and 9, 8 (high)
    # mean 4.5; |s - mean|: 5 and 4 (indices 0, 9) are 0.5 away, 6 and 3 (indices 8, 3) 1.5 away, 7 and 2 (4, 7)
    # 2.5 away. Algorithm 1 drops the lowest distances, i.e. the middle of the loss range; both tails stay.
    assert kept_indices(scores, 0.6, "mean-distance", 0).tolist() == [1, 2, 4, 5, 6, 7]
    assert kept_indices(scores, 0.8, "mean-distance", 0).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert kept_indices(scores, 1.0, "low", 0).tolist() == list(range(10))


def test_ties_are_broken_by_index() -> None:
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    assert kept_indices(scores, 0.5, "low", 0).tolist() == [1, 2]  # drops the 0, then the first of the tied 1s
    assert kept_indices(scores, 0.5, "high", 0).tolist() == [0, 3]  # drops the last two of the tied 1s


# -- random -----------------------------------------------------------------------------------------------------------
def test_random_is_deterministic_for_a_seed_and_differs_across_seeds() -> None:
    scores = np.full(500, np.nan)  # random runs compute no scores
    first = kept_indices(scores, 0.5, "random", seed=3)
    np.testing.assert_array_equal(first, kept_indices(scores, 0.5, "random", seed=3))
    others = [kept_indices(scores, 0.5, "random", seed=s) for s in range(4, 9)]
    assert all(not np.array_equal(first, other) for other in others)
    assert len({tuple(o) for o in others}) == len(others)


def test_random_ignores_the_scores() -> None:
    np.testing.assert_array_equal(
        kept_indices(np.arange(100.0), 0.3, "random", seed=1), kept_indices(np.full(100, np.nan), 0.3, "random", seed=1)
    )


def test_random_keeps_points_from_everywhere() -> None:
    kept = kept_indices(np.zeros(10_000), 0.5, "random", seed=0)
    # Not a tail: each tenth of the index range keeps roughly half of its points.
    counts = np.bincount(kept // 1000, minlength=10)
    assert np.all((counts > 400) & (counts < 600)), counts


# -- bad input --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", SCORE_BASED)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_score_based_strategies_refuse_non_finite_scores(strategy: str, bad: float) -> None:
    scores = np.arange(10.0)
    scores[4] = bad
    with pytest.raises(ValueError, match="finite"):
        kept_indices(scores, 0.5, strategy, seed=0)


def test_score_based_strategies_are_all_but_random() -> None:
    assert set(STRATEGIES) == {"random", "low", "high", "low+high", "mean-distance"}
    assert NEEDS_SCORES == set(STRATEGIES) - {"random"}


def test_unknown_strategy_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(ValueError, match="unknown pruning strategy 'median'") as info:
        kept_indices(np.arange(10.0), 0.5, "median", seed=0)
    for name in STRATEGIES:
        assert name in str(info.value)


@given(scores=spread_scores, keep=keeps, strategy=st.sampled_from(SCORE_BASED))
@settings(max_examples=50, deadline=None)
def test_score_based_strategies_do_not_depend_on_the_seed(scores: np.ndarray, keep: float, strategy: str) -> None:
    assume(len(scores) > 1)
    np.testing.assert_array_equal(kept_indices(scores, keep, strategy, 0), kept_indices(scores, keep, strategy, 12345))
