"""Table 1 and the schedule ablation in the paper's layout: ours above the paper's, cell by cell.

A table's cells are the (strategy, keep) pairs present in the rows it is given (the workflow's table holds exactly
the artefact's grid), in the paper's order: strategies as in the figures, keeps ascending, full data last, headed in
the paper's terms (p = fraction pruned = 1 - keep, "loss" = low+high). Rows are dataset x metric x (ours, paper):
ours is mean ± sd over all runs, with the count of collapsed runs after the AutoAttack cell; the paper's value is the
row below ("—" where it has no such cell). When runs collapsed, a second table gives ours without them. The numbers
behind both (`table_values`: means, sds, counts, the paper's values, ours - paper) are the CSV. For the demo's digits
datasets the paper's row holds the values of the dataset they stand in for, and the row label says so.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import pandas as pd

from advprune.report.labels import (
    TABLE_METRIC_LABELS, dataset_label, ordered_datasets, ordered_strategies, paper_dataset, time_device_text,
)
from advprune.report.paper import TABLE1, TABLE1_METRICS, TABLE1_N, cell_header
from advprune.identity import FULL
from advprune.report.output import Block
from advprune.report.selection import pruning_epochs, require_single_setting
from advprune.report.stats import summarise

SCHEDULE = "schedule_after_pruning"
MISSING = "—"  # where the paper has no value for a cell


def _tabulated_rows(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """The table's rows (the workflow's table holds exactly the artefact's grid), refused when there are none."""
    if df.empty:
        raise ValueError(f"{what}: no rows of the run table to tabulate")
    return df


def _epoch_text(epochs: Sequence[int]) -> str:
    return "e = " + ", ".join(map(str, epochs)) if epochs else "no pruning"


def _full_in_every_schedule(d: pd.DataFrame) -> pd.DataFrame:
    """Full-data runs have no schedule after pruning: they join the group of every schedule present."""
    full = d[SCHEDULE].isna()
    schedules = sorted(d.loc[~full, SCHEDULE].unique())
    if not schedules or not full.any():
        return d
    return pd.concat([d[~full], *(d[full].assign(**{SCHEDULE: s}) for s in schedules)], ignore_index=True)


def _cells(d: pd.DataFrame) -> list[tuple[str, str, float, int | None]]:
    """(header, strategy, keep, pruning epoch) per cell present: strategies in figure order, full data last, keeps
    ascending; the epoch joins the header only when the rows hold several."""
    epochs = pruning_epochs(d)
    keys = d[["strategy", "keep", "prune_epoch"]].drop_duplicates()
    rank = {s: i for i, s in enumerate([*ordered_strategies(set(keys["strategy"]) - {FULL}), FULL])}
    cells = []
    for strategy, keep, epoch in keys.itertuples(index=False, name=None):
        epoch = None if strategy == FULL or pd.isna(epoch) else int(epoch)
        header = cell_header((strategy, keep)) + (f" e={epoch}" if len(epochs) > 1 and epoch is not None else "")
        cells.append((header, strategy, keep, epoch))
    return sorted(set(cells), key=lambda c: (rank[c[1]], -1 if c[3] is None else c[3], c[2]))


def table_values(df: pd.DataFrame, *, by: Sequence[str] = ()) -> pd.DataFrame:
    """Long, numeric form: one row per dataset x `by` x metric x cell present with our mean, sd, n, n_failed (over
    all runs), mean_ok, sd_ok, n_ok (over the runs that did not collapse), the paper's mean and sd (NaN where the paper has no such cell), and diff = our mean - the paper's. Cells without runs
    for a dataset have n = 0 and NaN statistics."""
    d = _tabulated_rows(df, "table")
    require_single_setting(d, "table", varying=by)
    if SCHEDULE in by:
        d = _full_in_every_schedule(d)
    cells = _cells(d)
    header = {(s, k, e): h for h, s, k, e in cells}
    d = d.assign(cell=[
        header[(s, k, None if s == FULL or pd.isna(e) else int(e))]
        for s, k, e in zip(d["strategy"], d["keep"], d["prune_epoch"])
    ])  # fmt: skip
    keys = ["dataset", *by, "cell"]
    summaries = {m: summarise(d, keys, m).set_index(keys) for m in TABLE1_METRICS}
    datasets = ordered_datasets(d["dataset"])
    groups = sorted(
        d[["dataset", *by]].drop_duplicates().itertuples(index=False, name=None),
        key=lambda g: (datasets.index(g[0]), *map(str, g[1:])),
    )
    rows = []
    for group in groups:
        for metric in TABLE1_METRICS:
            for name, strategy, keep, epoch in cells:
                key = (*group, name)
                ours = summaries[metric].loc[key] if key in summaries[metric].index else None
                paper_mean, paper_sd = TABLE1.get((paper_dataset(group[0]), (strategy, keep), metric),
                                                  (math.nan, math.nan))  # fmt: skip
                mean = ours["mean"] if ours is not None else math.nan
                rows.append({
                    "dataset": group[0], **dict(zip(by, group[1:])), "metric": metric, "cell": name,
                    "strategy": strategy, "keep": keep, "prune_epoch": epoch, "mean": mean,
                    "sd": ours["sd"] if ours is not None else math.nan,
                    "n": int(ours["n"]) if ours is not None else 0,
                    "n_failed": int(ours["n_failed"]) if ours is not None else 0,
                    "mean_ok": ours["mean_ok"] if ours is not None else math.nan,
                    "sd_ok": ours["sd_ok"] if ours is not None else math.nan,
                    "n_ok": int(ours["n_ok"]) if ours is not None else 0,
                    "paper_mean": paper_mean, "paper_sd": paper_sd, "diff": mean - paper_mean,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _number(value: float, metric: str) -> str:
    # One decimal for accuracies (as the paper's text quotes them), two for times in minutes (MNIST's are ~0.5).
    return f"{value:.2f}" if metric == "time_minutes" else f"{value:.1f}"


def _ours_text(mean: float, sd: float, n: int, metric: str) -> str:
    if n == 0:
        return MISSING
    return f"{_number(mean, metric)} ± {_number(sd, metric)}" if n > 1 else _number(mean, metric)


def _paper_number(value: float) -> str:
    # Two decimals as the paper prints them, more where it printed more (its MNIST random p=0.6 AA sd is 0.013).
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


def _paper_text(mean: float, sd: float) -> str:
    return MISSING if math.isnan(mean) else f"{_paper_number(mean)} ± {_paper_number(sd)}"


def _collapse_mark(v: pd.Series) -> str:
    """Collapsed runs as a count under the AutoAttack cell, where a collapse shows (they enter every row's mean); the
    line break keeps the PDF's columns narrow, Markdown and LaTeX print it as a space."""
    if v["metric"] != "aa_acc_pct" or v["n_failed"] == 0:
        return ""
    return f"\n({v['n_failed']}/{v['n']} coll.)"


def layout(values: pd.DataFrame, by: Sequence[str] = (), *, without_collapsed: bool = False) -> pd.DataFrame:
    """The paper's layout from `table_values`: rows dataset x `by` x metric x (ours, paper), one column per cell;
    ours is mean ± sd over all runs (or over the runs that did not collapse), the paper's the line below."""
    rows = {}
    cells = list(dict.fromkeys(values["cell"]))
    for _, v in values.iterrows():
        labels = (dataset_label(v["dataset"]), *(v[b] for b in by), TABLE_METRIC_LABELS[v["metric"]])
        mean, sd, n = (v["mean_ok"], v["sd_ok"], v["n_ok"]) if without_collapsed else (v["mean"], v["sd"], v["n"])
        rows.setdefault((*labels, "ours"), {})[v["cell"]] = (
            _ours_text(mean, sd, n, v["metric"]) + _collapse_mark(v)
        )
        rows.setdefault((*labels, "paper"), {})[v["cell"]] = _paper_text(v["paper_mean"], v["paper_sd"])
    names = ["dataset", *("schedule" if b == SCHEDULE else b for b in by), "metric", ""]
    return pd.DataFrame.from_dict(rows, orient="index", columns=cells).rename_axis(names)


def table1(df: pd.DataFrame, *, without_collapsed: bool = False) -> pd.DataFrame:
    """Paper Table 1: rows dataset x {clean acc, AutoAttack acc, time} x (ours, paper), one column per cell."""
    return layout(table_values(df), without_collapsed=without_collapsed)


def ablation_schedule(df: pd.DataFrame, *, without_collapsed: bool = False) -> pd.DataFrame:
    """Table 1's cells present under each `schedule_after_pruning` setting present (full data joins each)."""
    values = table_values(df, by=[SCHEDULE])
    return layout(values, [SCHEDULE], without_collapsed=without_collapsed)


def _run_facts(d: pd.DataFrame) -> tuple[str, str]:
    """("n = 10" runs per cell, the sentence on time: device and jobs per GPU)."""
    ns = sorted(d.groupby(["dataset", "strategy", "keep", "prune_epoch", SCHEDULE], dropna=False).size().unique())
    n_text = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]}"
    where = time_device_text(d["device"].dropna(), d["jobs_on_device"].dropna())
    return n_text, f"Time = training + scoring; {where}"


def _notes(d: pd.DataFrame, without_collapsed: bool) -> str:
    _, time_text = _run_facts(d)
    collapsed = (
        "(k/n coll.): k of the cell's n runs collapsed (catastrophic overfitting) and are left out of every row."
        if without_collapsed
        else "(k/n coll.): k of the cell's n runs collapsed (catastrophic overfitting); they are in every row's mean."
    )
    stand_ins = any(paper_dataset(x) not in (None, x) for x in d["dataset"].unique())
    return (
        f"p = fraction pruned (keep = 1 - p); loss = low+high. Pruned after {_epoch_text(pruning_epochs(d))} epochs (the "
        f"paper: e = 3). {collapsed} Paper: mean ± sd over n = {TABLE1_N}; {MISSING}: no such cell. {time_text}."
        + (" Stand-in datasets show the paper's values for the dataset they stand in for: compare orderings, not "
           "digits." if stand_ins else "")
    )  # fmt: skip


def _title(what: str, d: pd.DataFrame, without_collapsed: bool) -> str:
    n_text, _ = _run_facts(d)
    runs = "the runs that did not collapse" if without_collapsed else f"all runs, {n_text} per cell"
    return f"{what}: ours (mean ± sd over {runs}) above the paper's."


def _blocks(d: pd.DataFrame, what: str, build: Callable[..., pd.DataFrame]) -> list[Block]:
    """The table over all runs; when any run collapsed, a second one without the collapsed runs."""
    blocks = [Block(build(d), _title(what, d, False), _notes(d, False), "paper")]
    if d["collapsed"].astype(bool).any():
        blocks.append(Block(build(d, without_collapsed=True), _title(f"{what}, collapsed runs left out", d, True),
                            _notes(d, True), "paper"))  # fmt: skip
    return blocks


def table1_blocks(df: pd.DataFrame) -> list[Block]:
    return _blocks(_tabulated_rows(df, "table1"), "Table 1", table1)


def ablation_blocks(df: pd.DataFrame) -> list[Block]:
    """Beyond the paper; its values are repeated under each schedule (the paper does not state its own)."""
    rows = _tabulated_rows(df, "ablation_schedule")
    return _blocks(rows, "Schedule after pruning (beyond the paper)", ablation_schedule)


# The registry's builders (advprune.artefacts): the rows of the artefact's table -> (blocks, the CSV's values).


def tabulate_table1(df: pd.DataFrame) -> tuple[list[Block], pd.DataFrame]:
    return table1_blocks(df), table_values(df)


def tabulate_ablation_schedule(df: pd.DataFrame) -> tuple[list[Block], pd.DataFrame]:
    return ablation_blocks(df), table_values(df, by=[SCHEDULE])
