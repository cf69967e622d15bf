"""Table 1 (ours beside the paper's, with the difference) and the schedule ablation, and their files.

A table's cells are the (strategy, keep) pairs present in the rows it is given (the workflow's table holds exactly
the artefact's grid), in the paper's order: strategies as in the figures, keeps ascending, full data last. Each cell
reports ours as "mean ± sd (n=...)", the paper's "mean ± sd" and ours - paper (means) where the paper has that cell
(low+high and random at keep 0.4 and 0.8, full data; "—" elsewhere), how many of our runs collapsed as "k/n collapsed"
(they are included in "ours"), and ours without the collapsed runs ("ours without collapsed"). Columns use the paper's own terms: p = fraction pruned = 1 - keep, "loss" = low+high.
For the demo's digits datasets the paper column holds the values of the dataset they stand in for, and the row label
says so: compare orderings, not digits.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure

from advprune.report.figures import save_figure
from advprune.report.labels import dataset_label, ordered_datasets, ordered_strategies, paper_dataset
from advprune.report.paper import TABLE1, TABLE1_METRICS, TABLE1_N, cell_header
from advprune.report.selection import FULL, require_single_setting, select
from advprune.report.stats import summarise
from advprune.runtime import atomic_path

TABLE_METRIC_LABELS = {
    "clean_acc_pct": "clean acc (%)",
    "aa_acc_pct": "AutoAttack acc (%)",
    "time_minutes": "time (min)",
}
SCHEDULE = "schedule_after_pruning"
MISSING = "—"  # where the paper has no value for a cell


def _rows(df: pd.DataFrame, what: str, prune_epoch: int | None) -> pd.DataFrame:
    d = df if prune_epoch is None else select(df, prune_epochs=[prune_epoch])
    if d.empty:
        at = "" if prune_epoch is None else f" at pruning epoch {prune_epoch}"
        raise ValueError(f"{what}: no rows of the run table{at} to tabulate")
    return d


def _epochs(d: pd.DataFrame) -> list[int]:
    return sorted(int(e) for e in d.loc[d["strategy"] != FULL, "prune_epoch"].dropna().unique())


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
    epochs = _epochs(d)
    keys = d[["strategy", "keep", "prune_epoch"]].drop_duplicates()
    rank = {s: i for i, s in enumerate([*ordered_strategies(set(keys["strategy"]) - {FULL}), FULL])}
    cells = []
    for strategy, keep, epoch in keys.itertuples(index=False, name=None):
        epoch = None if strategy == FULL or pd.isna(epoch) else int(epoch)
        header = cell_header((strategy, keep)) + (f" e={epoch}" if len(epochs) > 1 and epoch is not None else "")
        cells.append((header, strategy, keep, epoch))
    return sorted(set(cells), key=lambda c: (rank[c[1]], -1 if c[3] is None else c[3], c[2]))


def table_values(df: pd.DataFrame, *, prune_epoch: int | None = None, by: Sequence[str] = ()) -> pd.DataFrame:
    """Long, numeric form: one row per dataset x `by` x metric x cell present with our mean, sd, n, n_failed (over
    all runs), mean_ok, sd_ok, n_ok (over the runs that did not collapse), the paper's mean and sd (NaN where the paper has no such cell), and diff = our mean - the paper's. Cells without runs
    for a dataset have n = 0 and NaN statistics."""
    d = _rows(df, "table", prune_epoch)
    require_single_setting(d, "table", varying=by)
    d = d.assign(keep=d["keep"].round(6))  # so a cell's keep matches the paper's exactly
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


def _ours_text(mean: float, sd: float, n: int) -> str:
    if n == 0:
        return "no runs"
    return f"{mean:.2f} ± {sd:.2f} (n={n})" if n > 1 else f"{mean:.2f} (n=1)"


def _failure_text(failed: int, n: int) -> str:
    return f"{failed}/{n} collapsed"


def _paper_number(value: float) -> str:
    # Two decimals as the paper prints them, more where it printed more (its MNIST random p=0.6 AA sd is 0.013).
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


def _paper_text(mean: float, sd: float) -> str:
    return MISSING if math.isnan(mean) else f"{_paper_number(mean)} ± {_paper_number(sd)}"


def _diff_value(diff: float, paper_mean: float) -> float | str:
    if math.isnan(paper_mean):
        return MISSING
    return round(diff, 2)  # NaN where we have no runs: an empty field


def _wide(values: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per dataset x `by` x metric; per cell the columns ours (all runs), ours without collapsed, paper,
    ours - paper (all runs) and collapsed ("k/n collapsed")."""
    rows = []
    for _, group in values.groupby(["dataset", *by, "metric"], sort=False):
        first = group.iloc[0]
        row = {"dataset": dataset_label(first["dataset"]), **{b: first[b] for b in by},
               "metric": TABLE_METRIC_LABELS[first["metric"]]}  # fmt: skip
        for v in group.itertuples():
            row[f"{v.cell}: ours"] = _ours_text(v.mean, v.sd, v.n)
            row[f"{v.cell}: ours without collapsed"] = _ours_text(v.mean_ok, v.sd_ok, v.n_ok)
            row[f"{v.cell}: paper"] = _paper_text(v.paper_mean, v.paper_sd)
            row[f"{v.cell}: ours - paper"] = _diff_value(v.diff, v.paper_mean)
            row[f"{v.cell}: collapsed"] = _failure_text(v.n_failed, v.n)
        rows.append(row)
    return pd.DataFrame(rows).rename(columns={SCHEDULE: "schedule after pruning"})


def table1(df: pd.DataFrame, *, prune_epoch: int | None = None) -> pd.DataFrame:
    """Paper Table 1: datasets x {clean acc, AutoAttack acc, time} rows, one column group per cell present."""
    return _wide(table_values(df, prune_epoch=prune_epoch), ())


def ablation_schedule(df: pd.DataFrame, *, prune_epoch: int | None = None) -> pd.DataFrame:
    """Table 1's cells present under each `schedule_after_pruning` setting present (full data joins each)."""
    return _wide(table_values(df, prune_epoch=prune_epoch, by=[SCHEDULE]), [SCHEDULE])


def _run_facts(d: pd.DataFrame) -> str:
    jobs = ", ".join(str(j) for j in sorted(d["jobs_on_device"].dropna().unique()))
    ns = sorted(d.groupby(["dataset", "strategy", "keep", "prune_epoch", SCHEDULE], dropna=False).size().unique())
    n_text = f"n = {ns[0]} runs per cell" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} runs per cell (see each cell)"
    return (
        f"Ours: mean ± sd, {n_text}; "
        "collapsed runs are counted (k/n collapsed) and included in 'ours'; 'ours without collapsed' leaves them out. "
        f"Time = training + scoring in minutes on {', '.join(sorted(d['device'].dropna().unique()))}, "
        f"jobs per GPU: {jobs} (paper-comparable times need 1)."
    )


def table1_caption(df: pd.DataFrame, *, prune_epoch: int | None = None) -> str:
    d = _rows(df, "table1", prune_epoch)
    return (
        f"Table 1: RS-FGSM training with data pruned once after {_epoch_text(_epochs(d))} epochs; p = fraction pruned "
        f"(keep = 1 - p), loss = low+high. {_run_facts(d)} Paper (pruned after e = 3): mean ± sd over "
        f"n = {TABLE1_N}, {MISSING} where the paper has no such cell. Rows for digits stand-ins show the paper's "
        "values for the dataset in brackets: compare orderings, not digits."
    )


def ablation_caption(df: pd.DataFrame, *, prune_epoch: int | None = None) -> str:
    d = _rows(df, "ablation_schedule", prune_epoch)
    return (
        f"Schedule ablation (beyond the paper): Table 1's cells, pruned after {_epoch_text(_epochs(d))}, with the "
        f"learning-rate schedule rescaled to the steps taken or fixed for full data. {_run_facts(d)} "
        f"The paper's values (schedule unstated; {MISSING} where it has no such cell) are repeated for each setting."
    )


def _text(value: object) -> str:
    """How a cell reads in .md, .tex and .pdf; numbers are already rounded where they are made."""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is pd.NA else str(value)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


def latex_escape(text: str) -> str:
    """pandas escapes the cells and headers of `to_latex`, not its caption."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def markdown(table: pd.DataFrame, caption: str) -> str:
    """A GitHub-flavoured markdown table, caption first (no `tabulate` dependency)."""

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(_text(c).replace("|", "\\|") for c in cells) + " |"

    body = [line(table.columns), "|" + "|".join("---" for _ in table.columns) + "|"]
    body += [line(row) for row in table.itertuples(index=False, name=None)]
    return f"{caption}\n\n" + "\n".join(body) + "\n"


def write_table_files(table: pd.DataFrame, stem: Path, caption: str) -> None:
    """`stem`.csv, `stem`.tex (escaped, with caption; needs booktabs) and `stem`.md, each written atomically."""
    stem = Path(stem)
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    latex = table.to_latex(
        index=False, escape=True, na_rep="", float_format=_text, caption=latex_escape(caption), label=f"tab:{stem.name}"
    )
    with atomic_path(stem.with_suffix(".tex")) as tmp:
        tmp.write_text(latex)
    with atomic_path(stem.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(table, caption))


def draw_table_pdf(table: pd.DataFrame, out_pdf: Path, title: str) -> None:
    """The table as a figure, so each artefact also exists as `figures/<name>.pdf`."""
    headers = [str(c).replace(": ", "\n") for c in table.columns]
    cells = [[_text(v) for v in row] for row in table.itertuples(index=False, name=None)]
    # Width from the longest text per column (about 0.065 in per character at 7 pt).
    widths = [max(len(line) for text in [h, *col] for line in text.split("\n")) for h, col in zip(headers, zip(*cells))]
    fig = Figure(figsize=(max(6.0, 0.065 * sum(widths) + 0.5), 0.9 + 0.25 * (len(cells) + 2)))
    ax = fig.add_subplot()
    ax.axis("off")
    grid = ax.table(cellText=cells, colLabels=headers, loc="center", cellLoc="center")
    grid.auto_set_font_size(False)
    grid.set_fontsize(7)
    grid.auto_set_column_width(list(range(len(headers))))
    for (row, _), cell in grid.get_celld().items():
        if row == 0:
            cell.set_height(cell.get_height() * 2)  # two-line headers
    ax.set_title(textwrap.fill(title, width=int(fig.get_figwidth() * 14)), fontsize=8)
    save_figure(fig, out_pdf)
