"""Summary statistics shared by every figure and table, so n and the failure count are always at hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


def summarise(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Per group of `by`: mean, sd (ddof=1, NaN for n=1) and n of `value`; n_failed = collapsed runs among them;
    mean_ok, sd_ok, n_ok = the same over the runs that did not collapse.

    Rows whose `value` is missing are not counted at all. Groups with missing keys (a full-data run's pruning epoch)
    are kept, not dropped.
    """
    present = df[df[value].notna()]
    collapsed = present["collapsed"].astype(bool)
    work = present[by].assign(_v=present[value].astype(float), _failed=collapsed, _ok=present[value].where(~collapsed))
    out = work.groupby(by, dropna=False, sort=True).agg(
        mean=("_v", "mean"),
        sd=("_v", "std"),
        n=("_v", "count"),
        n_failed=("_failed", "sum"),
        mean_ok=("_ok", "mean"),
        sd_ok=("_ok", "std"),
        n_ok=("_ok", "count"),
    )
    return out.reset_index().astype({"n": int, "n_failed": int, "n_ok": int})


@dataclass(frozen=True)
class LinearFit:
    slope: float
    intercept: float
    r2: float
    n: int


def linear_fit(x: np.ndarray, y: np.ndarray) -> LinearFit:
    """Ordinary least squares y = slope * x + intercept with its R^2 (scipy.stats.linregress); NaN where x takes
    fewer than two values. A constant y is fitted exactly (R^2 = 1), where linregress reports r = 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0.0:
        return LinearFit(math.nan, math.nan, math.nan, len(x))
    fit = stats.linregress(x, y)
    r2 = 1.0 if np.ptp(y) == 0.0 else float(fit.rvalue) ** 2
    return LinearFit(float(fit.slope), float(fit.intercept), r2, len(x))
