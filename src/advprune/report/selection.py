"""Which rows of the tidy table an artefact uses.

A full-data model (strategy "full", keep 1.0) is shared by every artefact: it has no pruning epoch, no strategy and no
schedule after pruning, so it matches any of those filters and joins every strategy's line at keep 1.0.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from advprune.identity import FULL, normalise_keep

# Settings that are part of a model's identity but not an axis of any figure: mixing them in one point is a bug.
# What runs averaged or compared together must share: the method, and the points AutoAttack measured them on.
IDENTITY_SETTINGS = ("schedule_after_pruning", "precision", "method_version", "n_examples")


def select_rows(
    df: pd.DataFrame,
    *,
    datasets: Iterable[str] | None = None,
    strategies: Iterable[str] | None = None,
    keeps: Iterable[float] | None = None,
    prune_epochs: Iterable[int] | None = None,
    schedule: str | None = None,
    precision: str | None = None,
    seeds: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Rows matching every given filter (None = no filter).

    Full-data rows pass the strategy, pruning-epoch and schedule filters; the keep filter decides whether they join.
    """
    full = df["strategy"] == FULL
    mask = pd.Series(True, index=df.index)
    if datasets is not None:
        mask &= df["dataset"].isin(list(datasets))
    if strategies is not None:
        mask &= full | df["strategy"].isin(list(strategies))
    if keeps is not None:
        mask &= df["keep"].isin([normalise_keep(keep) for keep in keeps])
    if prune_epochs is not None:
        mask &= full | df["prune_epoch"].isin(list(prune_epochs))
    if schedule is not None:
        mask &= full | (df["schedule_after_pruning"] == schedule)
    if precision is not None:
        mask &= df["precision"] == precision
    if seeds is not None:
        mask &= df["seed"].isin(list(seeds))
    return df[mask]


def pruning_epochs(df: pd.DataFrame) -> list[int]:
    """The pruning epochs of the pruned rows, ascending (full-data rows have none)."""
    return sorted(int(e) for e in df.loc[df["strategy"] != FULL, "prune_epoch"].dropna().unique())


def expand_full(df: pd.DataFrame, strategies: Iterable[str] | None = None) -> pd.DataFrame:
    """Copy each full-data row into every strategy (default: the pruned strategies present), dropping the original.

    So a line per strategy runs from its smallest keep to 1.0, and all lines meet at the same full-data point.
    """
    full = df["strategy"] == FULL
    targets = sorted(set(df.loc[~full, "strategy"]) if strategies is None else set(strategies))
    copies = [df[full].assign(strategy=s) for s in targets]
    return pd.concat([df[~full], *copies], ignore_index=True)


def require_single_setting(df: pd.DataFrame, what: str, varying: Iterable[str] = ()) -> None:
    """Refuse to average over models that differ in schedule, precision, method version or AutoAttack's test points:
    select first.

    `varying` names settings the caller groups by itself (the schedule ablation), which may therefore differ.
    """
    for column in [c for c in IDENTITY_SETTINGS if c not in set(varying)]:
        values = sorted(df[column].dropna().astype(str).unique())
        if len(values) > 1:
            how = ("select one with --schedule / --precision" if column in ("schedule_after_pruning", "precision")
                   else "give it a table of runs with one value (collect the runs of one configuration)")
            raise ValueError(f"{what}: rows mix {column} values {values}, which are never averaged or compared "
                             f"together; {how}")
