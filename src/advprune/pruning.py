"""Pruning strategies: pure functions from per-point scores to the indices that are kept.

`kept_indices(scores, keep, strategy, seed)`, in the spirit of DeepCore's `select()`. A new strategy is one function
`(scores, n_drop, rng) -> dropped indices` plus one entry in STRATEGIES, or from outside the package
`register_strategy` (see advprune.plugins).

Kept count: n_keep = round_half_up(keep * N), exactly in decimal (keep=0.45, N=10 keeps 5), at least 1.
Ties between equal scores are broken by index (stable sort), so the result is deterministic for a seed.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Callable

import numpy as np

DropRule = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def n_kept(n_points: int, keep: float) -> int:
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    # repr(float(...)): the shortest decimal that reads back as this float; numpy scalars' repr is "np.float64(0.45)".
    exact = (Decimal(repr(float(keep))) * n_points).to_integral_value(rounding=ROUND_HALF_UP)
    return max(1, int(exact))


def _ascending(scores: np.ndarray) -> np.ndarray:
    return np.argsort(scores, kind="stable")


def drop_random(scores: np.ndarray, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly at random; ignores the scores (none are computed for it)."""
    return rng.choice(len(scores), size=n_drop, replace=False)


def drop_low(scores: np.ndarray, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """The lowest-loss points."""
    return _ascending(scores)[:n_drop]


def drop_high(scores: np.ndarray, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """The highest-loss points."""
    return _ascending(scores)[len(scores) - n_drop :]


def drop_low_and_high(scores: np.ndarray, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """Half from each tail (paper, section 4.4); with an odd count the extra point comes from the high tail."""
    order = _ascending(scores)
    n_low = n_drop // 2
    return np.concatenate([order[:n_low], order[len(scores) - (n_drop - n_low) :]])


def drop_mean_distance(scores: np.ndarray, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """The paper's Algorithm 1 listing as written (lines 18-19): sort by |loss - mean loss| and drop the lowest, i.e.
    the points nearest the mean loss; both tails are kept. (Dropping both tails is `low+high`, section 4.4.)"""
    distance = np.abs(scores - scores.mean())
    return _ascending(distance)[:n_drop]


STRATEGIES: dict[str, DropRule] = {
    "random": drop_random,
    "low": drop_low,
    "high": drop_high,
    "low+high": drop_low_and_high,
    "mean-distance": drop_mean_distance,
}

# Strategies that need the scoring pass. `random` runs skip it: the paper's random runs are faster than its
# loss-based ones at equal keep in all four pairs, so its times include scoring only where scoring is needed.
NEEDS_SCORES = {"low", "high", "low+high", "mean-distance"}


def register_strategy(name: str, drop_rule: DropRule, *, needs_scores: bool) -> None:
    """Add a strategy from outside the package (a plugin). `needs_scores`: whether it reads the loss scores (else
    the scoring pass is skipped, as for `random`)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9+-]*", name):
        raise ValueError(f"strategy name {name!r} must be lowercase letters, digits, '+' and '-' (it is a path part)")
    if name in STRATEGIES:
        raise ValueError(f"pruning strategy {name!r} is already registered")
    STRATEGIES[name] = drop_rule
    if needs_scores:
        NEEDS_SCORES.add(name)


def kept_indices(scores: np.ndarray, keep: float, strategy: str, seed: int) -> np.ndarray:
    """Sorted indices of the points kept out of len(scores)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pruning strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    scores = np.asarray(scores, dtype=np.float64)
    if strategy in NEEDS_SCORES and not np.all(np.isfinite(scores)):
        raise ValueError(f"strategy {strategy!r} needs finite scores; got NaN or inf")
    n_drop = len(scores) - n_kept(len(scores), keep)
    dropped = STRATEGIES[strategy](scores, n_drop, np.random.default_rng(seed))
    mask = np.ones(len(scores), dtype=bool)
    mask[dropped] = False
    return np.flatnonzero(mask)
