"""Table 1 (ours beside the paper's, with the difference) and the schedule ablation, and their files.

Each cell reports ours as "mean ± sd (n=...)", the paper's "mean ± sd", ours - paper (means) and how many of our
runs collapsed (they are included in the means). Columns use the paper's own terms: p = fraction pruned = 1 - keep,
"loss" = low+high. For the demo's digits datasets the paper column holds the values of the dataset they stand in for,
and the row label says so: compare orderings, not digits.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Sequence

import pandas as pd
from matplotlib.figure import Figure

from advprune.report.figures import save_figure
from advprune.report.labels import PAPER_DATASET, dataset_label, ordered_datasets, paper_dataset
from advprune.report.paper import TABLE1, TABLE1_CELLS, TABLE1_METRICS, TABLE1_N, Cell, cell_header
from advprune.report.selection import require_single_setting, select
from advprune.report.stats import summarise
from advprune.runtime import atomic_path

TABLE_METRIC_LABELS = {
    "clean_acc_pct": "clean acc (%)",
    "aa_acc_pct": "AutoAttack acc (%)",
    "time_minutes": "time (min)",
}
SCHEDULE = "schedule_after_pruning"


def table_values(
    df: pd.DataFrame, *, cells: Sequence[Cell] = TABLE1_CELLS, prune_epoch: int = 3, by: Sequence[str] = ()
) -> pd.DataFrame:
    """Long, numeric form: one row per dataset x `by` x metric x cell with our mean, sd, n, n_failed, the paper's
    mean and sd, and diff = our mean - the paper's. Cells without runs have n = 0 and NaN statistics."""
    d = select(df, strategies=[s for s, _ in cells], keeps=[k for _, k in cells], prune_epochs=[prune_epoch])
    if d.empty:
        raise ValueError(f"table: no runs match cells {list(cells)} with pruning epoch {prune_epoch}")
    require_single_setting(d, "table", varying=by)
    d = d.assign(keep=d["keep"].round(6))  # so a cell's keep finds its rows by exact lookup
    keys = ["dataset", *by, "strategy", "keep"]
    summaries = {m: summarise(d, keys, m).set_index(keys) for m in TABLE1_METRICS}
    datasets = ordered_datasets(d["dataset"])
    groups = sorted(
        d[["dataset", *by]].drop_duplicates().itertuples(index=False, name=None),
        key=lambda g: (datasets.index(g[0]), *map(str, g[1:])),
    )
    rows = []
    for group in groups:
        for metric in TABLE1_METRICS:
            for cell in cells:
                key = (*group, *cell)
                ours = summaries[metric].loc[key] if key in summaries[metric].index else None
                paper_mean, paper_sd = TABLE1.get((paper_dataset(group[0]), cell, metric), (math.nan, math.nan))
                mean = ours["mean"] if ours is not None else math.nan
                rows.append({
                    "dataset": group[0], **dict(zip(by, group[1:])), "metric": metric, "cell": cell_header(cell),
                    "strategy": cell[0], "keep": cell[1], "mean": mean,
                    "sd": ours["sd"] if ours is not None else math.nan,
                    "n": int(ours["n"]) if ours is not None else 0,
                    "n_failed": int(ours["n_failed"]) if ours is not None else 0,
                    "paper_mean": paper_mean, "paper_sd": paper_sd, "diff": mean - paper_mean,
                })  # fmt: skip
    return pd.DataFrame(rows)


def _ours_text(mean: float, sd: float, n: int) -> str:
    if n == 0:
        return "no runs"
    return f"{mean:.2f} ± {sd:.2f} (n={n})" if n > 1 else f"{mean:.2f} (n=1)"


def _paper_number(value: float) -> str:
    # Two decimals as the paper prints them, more where it printed more (its MNIST random p=0.6 AA sd is 0.013).
    return f"{value:.2f}" if round(value, 2) == value else f"{value:g}"


def _paper_text(mean: float, sd: float) -> str:
    return "" if math.isnan(mean) else f"{_paper_number(mean)} ± {_paper_number(sd)}"


def _wide(values: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """One row per dataset x `by` x metric; per cell the columns ours, paper, ours - paper and collapsed."""
    rows = []
    for _, group in values.groupby(["dataset", *by, "metric"], sort=False):
        first = group.iloc[0]
        row = {"dataset": dataset_label(first["dataset"]), **{b: first[b] for b in by},
               "metric": TABLE_METRIC_LABELS[first["metric"]]}  # fmt: skip
        for v in group.itertuples():
            row[f"{v.cell}: ours"] = _ours_text(v.mean, v.sd, v.n)
            row[f"{v.cell}: paper"] = _paper_text(v.paper_mean, v.paper_sd)
            row[f"{v.cell}: ours - paper"] = round(v.diff, 2)
            row[f"{v.cell}: collapsed"] = v.n_failed
        rows.append(row)
    return pd.DataFrame(rows).rename(columns={SCHEDULE: "schedule after pruning"})


def table1(df: pd.DataFrame, *, prune_epoch: int = 3) -> pd.DataFrame:
    """Paper Table 1: datasets x {clean acc, AutoAttack acc, time} rows, the five cells as columns."""
    return _wide(table_values(df, prune_epoch=prune_epoch), ())


def _cifar_like(df: pd.DataFrame) -> pd.DataFrame:
    d = df[df["dataset"].map(PAPER_DATASET) == "cifar10"]
    if d.empty:
        raise ValueError("ablation_schedule: no CIFAR-10 (or digits-cifar) runs in the table")
    return d


def ablation_schedule(df: pd.DataFrame, *, prune_epoch: int = 3) -> pd.DataFrame:
    """Table 1's four pruned cells on CIFAR-10 (or its stand-in) under each `schedule_after_pruning` setting."""
    values = table_values(_cifar_like(df), cells=TABLE1_CELLS[:4], prune_epoch=prune_epoch, by=[SCHEDULE])
    return _wide(values, [SCHEDULE])


def _run_facts(d: pd.DataFrame) -> str:
    jobs = ", ".join(str(j) for j in sorted(d["jobs_on_device"].dropna().unique()))
    ns = sorted(d.groupby(["dataset", "strategy", "keep", SCHEDULE], dropna=False).size().unique())
    n_text = f"n = {ns[0]} runs per cell" if len(ns) == 1 else f"n = {ns[0]}-{ns[-1]} runs per cell (see each cell)"
    return (
        f"Ours: mean ± sd, {n_text}; collapsed runs are counted and included in the means. "
        f"Time = training + scoring in minutes on {', '.join(sorted(d['device'].unique()))}, jobs per GPU: {jobs} "
        "(paper-comparable times need 1)."
    )


def table1_caption(df: pd.DataFrame, *, prune_epoch: int = 3) -> str:
    d = select(df, strategies=["low+high", "random"], keeps=[k for _, k in TABLE1_CELLS], prune_epochs=[prune_epoch])
    return (
        f"Table 1: RS-FGSM training with data pruned once after e = {prune_epoch} epochs; p = fraction pruned "
        f"(keep = 1 - p), loss = low+high. {_run_facts(d)} Paper: mean ± sd over n = {TABLE1_N}. "
        "Rows for digits stand-ins show the paper's values for the dataset in brackets: compare orderings, not digits."
    )


def ablation_caption(df: pd.DataFrame, *, prune_epoch: int = 3) -> str:
    d = select(_cifar_like(df), strategies=["low+high", "random"], keeps=[0.4, 0.8], prune_epochs=[prune_epoch])
    return (
        f"Schedule ablation (beyond the paper): Table 1's pruned cells, pruned after e = {prune_epoch}, with the "
        f"learning-rate schedule rescaled to the steps taken or fixed for full data. {_run_facts(d)} "
        "The paper's values (schedule unstated) are repeated for each setting."
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
