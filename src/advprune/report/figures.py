"""The paper's figures 1-5 and 7, drawn from the tidy table (one panel per dataset present).

Every point is mean ± sd over runs, from `stats.summarise`, so n and collapsed runs are known per point: the title
states n once when it is the same for every point, otherwise each point carries its own "n="; points with collapsed
runs say how many. Collapsed runs are included in the means (the paper's MNIST sd of 7-11 points suggests it did the
same), and the title gives their total.

Figures are built on `matplotlib.figure.Figure` rather than pyplot: no GUI backend is ever selected (the file is
rendered by Agg/PDF from its suffix) and no global figure state is left behind. The output format follows `out`'s
suffix; the workflow asks for PDF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from advprune.report.labels import (
    KEEP_LABEL,
    METRIC_LABELS,
    PAPER_DATASET,
    STRATEGY_LABELS,
    STRATEGY_ORDER,
    display_name,
    ordered_datasets,
    ordered_strategies,
)
from advprune.report.selection import expand_full, require_single_setting, select
from advprune.report.stats import linear_fit, summarise
from advprune.runtime import atomic_path

# Okabe-Ito, a colour-blind-safe palette.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
STRATEGY_COLORS = {s: PALETTE[i] for i, s in enumerate(STRATEGY_ORDER)}
PAPER_STRATEGIES = ("high", "low", "low+high", "random")
# SPEC's grids, as defaults: the run table holds every model, and e.g. fig1's keep 0.7 runs at e = 3 are not fig3's.
FIG1_KEEPS = (0.9, 0.7)
FIG2_KEEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
GRID_KEEPS = (0.2, 0.4, 0.6, 0.8, 1.0)


def _checked(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """The figure's rows, refused when there are no pruned runs or when they mix settings."""
    if (df["strategy"] == "full").all():  # full-data runs alone match any selection
        raise ValueError(f"{what}: no rows of the run table (beyond full-data runs) match this figure's selection")
    require_single_setting(df, what)
    return df


def _keep_label(keep: float) -> str:
    return f"keep {keep:g} (p={round(1 - keep, 6):g} pruned)"


def save_figure(fig: Figure, out: Path) -> None:
    """Write atomically: a killed job never leaves a half-written file that looks finished."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, bbox_inches="tight")


def _n_note(summaries: Sequence[pd.DataFrame], runs: pd.DataFrame) -> tuple[bool, str]:
    """(label each point with its n?, note for the title): n is stated once when it is the same for every point."""
    ns = sorted(pd.concat(summaries, ignore_index=True)["n"].unique())
    failed = int(runs["collapsed"].sum())  # runs, not points: a full-data run appears on every line
    n_text = f"n = {ns[0]} runs per point" if len(ns) == 1 else "n per point as labelled"
    failed_text = (
        "no collapsed runs" if failed == 0 else f"{failed} collapsed run(s), included in the means (labelled 'coll.')"
    )
    return len(ns) > 1, f"mean ± sd, {n_text}; {failed_text}"


def _draw_lines(
    ax: Axes,
    summary: pd.DataFrame,
    x: str,
    hue: str,
    hues: Sequence,
    label: Callable[[object], str],
    color: Callable[[object], str],
    show_n: bool,
    dodge: float,
    shared_x: float | None = None,
) -> None:
    """One errorbar line per hue value, shifted `dodge` x units apart so their bars stay readable.

    Points are labelled with n (when `show_n`) and their collapsed-run count (when non-zero); the point at `shared_x`
    (the full-data model every line shares) is labelled by the first line only.
    """
    for i, key in enumerate(hues):
        points = summary[summary[hue] == key].sort_values(x)
        xs = points[x].astype(float).to_numpy()
        shifted = xs + (i - (len(hues) - 1) / 2) * dodge
        ax.errorbar(
            shifted, points["mean"], yerr=points["sd"].fillna(0.0), marker="o", markersize=3, capsize=2, linewidth=1,
            color=color(key), label=label(key),
        )  # fmt: skip
        for x0, xi, mean, n, failed in zip(xs, shifted, points["mean"], points["n"], points["n_failed"]):
            text = ", ".join(t for t in (f"n={n}" if show_n else "", f"{failed} coll." if failed else "") if t)
            if text and not (i > 0 and x0 == shared_x):
                ax.annotate(text, (xi, mean), xytext=(2, 3), textcoords="offset points", fontsize=5, color=color(key))


def _figure_legend(fig: Figure, axes: np.ndarray) -> None:
    """One legend for the figure, below the panels: every panel draws the same kinds of line."""
    entries: dict[str, object] = {}
    for ax in axes.flat:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
    fig.legend(
        list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 4), fontsize=7
    )


def _panel_grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(4.0 * n_cols, 3.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat:
        ax.margins(x=0.08)  # room for the labels of the last point
    return fig, axes


def _strategy_lines(
    df: pd.DataFrame, out: Path, metrics: Sequence[str], strategies: Sequence[str], title: str
) -> None:
    """Metric(s) vs keep, one line per strategy, one column of panels per dataset, one row per metric."""
    # Full-data rows join the lines of the strategies actually present (all requested ones if only full data is).
    expanded = expand_full(df, [s for s in strategies if (df["strategy"] == s).any()] or strategies)
    datasets = ordered_datasets(expanded["dataset"])
    hues = ordered_strategies(expanded["strategy"])
    summaries = {m: summarise(expanded, ["dataset", "strategy", "keep"], m) for m in metrics}
    show_n, note = _n_note(list(summaries.values()), df)
    fig, axes = _panel_grid(len(metrics), len(datasets))
    for row, metric in enumerate(metrics):
        for col, dataset in enumerate(datasets):
            ax = axes[row, col]
            summary = summaries[metric][summaries[metric]["dataset"] == dataset]
            _draw_lines(
                ax, summary, "keep", "strategy", [h for h in hues if h in set(summary["strategy"])],
                lambda s: STRATEGY_LABELS.get(s, s), STRATEGY_COLORS.get, show_n, dodge=0.008, shared_x=1.0,
            )  # fmt: skip
            panel = f"({'ab'[row]}) " if len(metrics) > 1 else ""
            ax.set(title=f"{panel}{display_name(dataset)}", xlabel=KEEP_LABEL, ylabel=METRIC_LABELS[metric])
    _figure_legend(fig, axes)
    fig.suptitle(f"{title}\n{note}", fontsize=9)
    save_figure(fig, out)


def draw_fig1(df: pd.DataFrame, out: Path, *, keeps: Sequence[float] = FIG1_KEEPS) -> None:
    """AutoAttack accuracy vs pruning epoch, random pruning, one line per keep."""
    d = _checked(select(df[df["strategy"] == "random"], keeps=keeps), "fig1")
    summary = summarise(d, ["dataset", "keep", "prune_epoch"], "aa_acc_pct")
    show_n, note = _n_note([summary], d)
    datasets = ordered_datasets(d["dataset"])
    keeps = sorted(d["keep"].unique(), reverse=True)
    keep_colors = dict(zip(keeps, PALETTE))
    fig, axes = _panel_grid(1, len(datasets))
    for ax, dataset in zip(axes[0], datasets):
        panel = summary[summary["dataset"] == dataset]
        _draw_lines(
            ax, panel, "prune_epoch", "keep", [k for k in keeps if k in set(panel["keep"])], _keep_label,
            keep_colors.get, show_n, dodge=0.08,
        )  # fmt: skip
        ax.set(title=display_name(dataset), xlabel="pruning epoch e", ylabel=METRIC_LABELS["aa_acc_pct"])
    _figure_legend(fig, axes)
    fig.suptitle(f"Random pruning: AutoAttack accuracy vs pruning epoch\n{note}", fontsize=9)
    save_figure(fig, out)


def draw_fig2(
    df: pd.DataFrame, out: Path, *, prune_epoch: int = 1, keeps: Sequence[float] = FIG2_KEEPS
) -> None:
    """AutoAttack accuracy vs keep, random pruning at epoch `prune_epoch`, full data at keep 1.0."""
    d = _checked(select(df, strategies=["random"], keeps=keeps, prune_epochs=[prune_epoch]), "fig2")
    _strategy_lines(d, out, ["aa_acc_pct"], ["random"], f"Random pruning after e = {prune_epoch}")


def draw_strategy_comparison(
    df: pd.DataFrame,
    out: Path,
    *,
    prune_epoch: int = 3,
    keeps: Sequence[float] = GRID_KEEPS,
    strategies: Sequence[str] = PAPER_STRATEGIES,
) -> None:
    """(a) clean and (b) AutoAttack accuracy vs keep, one line per strategy (figures 3 and 4)."""
    d = _checked(select(df, strategies=strategies, keeps=keeps, prune_epochs=[prune_epoch]), "strategy comparison")
    _strategy_lines(
        d, out, ["clean_acc_pct", "aa_acc_pct"], strategies, f"Pruning strategies, pruning after e = {prune_epoch}"
    )


def _standing_in_for(df: pd.DataFrame, paper_dataset: str) -> pd.DataFrame:
    return df[df["dataset"].map(PAPER_DATASET) == paper_dataset]


def draw_fig3(df: pd.DataFrame, out: Path, **options: Any) -> None:
    """Figure 3: the strategy comparison on MNIST (or the demo's digits with MNIST settings)."""
    draw_strategy_comparison(_standing_in_for(df, "mnist"), out, **options)


def draw_fig4(df: pd.DataFrame, out: Path, **options: Any) -> None:
    """Figure 4: the strategy comparison on CIFAR-10 (or the demo's digits with CIFAR-10 settings)."""
    draw_strategy_comparison(_standing_in_for(df, "cifar10"), out, **options)


def _fig5_runs(df: pd.DataFrame, prune_epoch: int, keeps: Sequence[float]) -> pd.DataFrame:
    return _checked(select(df, strategies=["random"], keeps=keeps, prune_epochs=[prune_epoch]), "fig5")


def fig5_fits(df: pd.DataFrame, *, prune_epoch: int = 3, keeps: Sequence[float] = GRID_KEEPS) -> pd.DataFrame:
    """Per dataset, the least-squares line time_minutes = slope * keep + intercept over individual random runs."""
    d = expand_full(_fig5_runs(df, prune_epoch, keeps), ["random"])
    rows = []
    for dataset in ordered_datasets(d["dataset"]):
        runs = d[d["dataset"] == dataset]
        fit = linear_fit(runs["keep"].to_numpy(), runs["time_minutes"].to_numpy())
        rows.append({"dataset": dataset, "slope": fit.slope, "intercept": fit.intercept, "r2": fit.r2, "n": fit.n})
    return pd.DataFrame(rows, columns=["dataset", "slope", "intercept", "r2", "n"])


def draw_fig5(df: pd.DataFrame, out: Path, *, prune_epoch: int = 3, keeps: Sequence[float] = GRID_KEEPS) -> None:
    """Training + scoring time vs keep (random pruning), with a linear fit per dataset; states jobs per GPU."""
    d = _fig5_runs(df, prune_epoch, keeps)
    summary = summarise(expand_full(d, ["random"]), ["dataset", "keep"], "time_minutes")
    fits = fig5_fits(d, prune_epoch=prune_epoch, keeps=keeps).set_index("dataset")
    show_n, note = _n_note([summary], d)
    jobs = ", ".join(str(j) for j in sorted(d["jobs_on_device"].dropna().unique()))
    devices = ", ".join(sorted(d["device"].unique()))
    datasets = ordered_datasets(d["dataset"])
    fig, axes = _panel_grid(1, len(datasets))
    for ax, dataset in zip(axes[0], datasets):
        panel = summary[summary["dataset"] == dataset].assign(series="random")
        _draw_lines(ax, panel, "keep", "series", ["random"], lambda _: "random pruning, mean ± sd",
                    lambda _: STRATEGY_COLORS["random"], show_n, dodge=0.0)  # fmt: skip
        fit = fits.loc[dataset]
        if np.isfinite(fit["slope"]):
            xs = np.array([0.0, 1.0])
            label = f"fit: {fit['slope']:.3g}·keep + {fit['intercept']:.3g} min, R²={fit['r2']:.3f}"
            ax.plot(xs, fit["slope"] * xs + fit["intercept"], linestyle="--", linewidth=1, color="0.3", label=label)
        ax.set(title=display_name(dataset), xlabel=KEEP_LABEL, ylabel=METRIC_LABELS["time_minutes"])
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Time vs keep, random pruning after e = {prune_epoch}; jobs per GPU: {jobs}; device: {devices}\n{note}",
        fontsize=9,
    )
    save_figure(fig, out)


def draw_fig7(df: pd.DataFrame, out: Path, *, prune_epoch: int = 1, keeps: Sequence[float] = GRID_KEEPS) -> None:
    """AutoAttack accuracy vs keep, random vs low+high pruning at epoch `prune_epoch`."""
    strategies = ["low+high", "random"]
    d = _checked(select(df, strategies=strategies, keeps=keeps, prune_epochs=[prune_epoch]), "fig7")
    _strategy_lines(d, out, ["aa_acc_pct"], strategies, f"Random vs low+high pruning after e = {prune_epoch}")


FIGURES: dict[str, Callable[..., None]] = {
    "fig1": draw_fig1,
    "fig2": draw_fig2,
    "fig3": draw_fig3,
    "fig4": draw_fig4,
    "fig5": draw_fig5,
    "fig7": draw_fig7,
}

