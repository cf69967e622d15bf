"""The paper's figures 1-5 and 7, drawn with seaborn from the tidy table (one panel per dataset present).

A figure plots every row of the table it is given: the workflow builds one table per artefact holding exactly the
models of that artefact's grid (`advprune build` selects its schedule and precision), so lines, keeps and pruning
epochs come from the data, never from a built-in grid.

seaborn draws each point as the mean ± sd (ddof=1) of the per-run rows, and every run is a faint dot beside it: the
runs of one point are often far from normal (a seed whose training failed scores near 0% beside seeds near 70%),
which a mean ± sd alone hides, and whose bars then reach below 0%. The annotations come from
`stats.summarise` over the same rows, so n and collapsed runs are known per point: the legend's title states n once
when it is the same for every point, otherwise each point carries its own "n="; points with collapsed runs say how
many. Collapsed runs are included in the means (the paper's MNIST sd of 7-11 points suggests it did the same), and
the legend's title gives their total. The title is one short line; the report's caption, written from the config,
says the rest. Each strategy has one colour and marker (`style`); the paper's values, where it gives numbers, are
drawn hollow beside ours. Full-data runs (keep 1.0) are copied into every line (`selection.expand_full`), so all
lines meet at the same point; in figure 1, whose x axis is the pruning epoch, they are a horizontal reference.

Figures are built on `matplotlib.figure.Figure` and seaborn's `ax=` API rather than pyplot: no GUI backend is ever
selected (the file is rendered by Agg/PDF from its suffix) and no global figure state is left behind. `build_*`
functions return the Figure, which `advprune build` writes (`output.save_artefact`: the PDF and a PNG beside it);
the artefact registry (advprune.artefacts) names which function builds which figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from advprune.report.labels import (
    KEEP_LABEL,
    METRIC_LABELS,
    display_name,
    ordered_datasets,
    ordered_strategies,
    paper_dataset,
    pruned_fraction,
    strategy_label,
    time_device_text,
)
from advprune.identity import FULL, normalise_keep
from advprune.report.output import suptitle, wrap_to_inches
from advprune.report.paper import ABSTRACT_RANDOM_DROPS, TABLE1
from advprune.report.selection import expand_full, pruning_epochs, require_single_setting
from advprune.report.stats import linear_fit, summarise
from advprune.report.style import DASHES, PAPER_MARKER, REFERENCE_COLOR, strategy_color, strategy_marker


PAPER_TABLE1_LABEL = "paper, Table 1 (hollow: mean, dotted: ± sd)"
PAPER_ABSTRACT_LABEL = "paper: full data (Table 1), minus the abstract's 8 and 14 points"
POINT_LABEL = "point-label"  # gid of the n / collapsed labels, which _separate_point_labels moves apart
RUN_DOTS = "runs"  # gid of the dots that draw each run

# Columns added to the runs while drawing: the line a run belongs to, its dodged x, whether it is a full-data run.
LINE, X_PLOT, IS_FULL = "line", "x_plotted", "is_full"


# ---------------------------------------------------------------------------------------------------------------------
# Rows and lines


def _drawn_rows(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """The figure's rows, with IS_FULL; refused when there are no pruned runs or when they mix settings."""
    if df.empty or (df["strategy"] == FULL).all():  # full-data runs alone match any selection
        raise ValueError(f"{what}: no rows of the run table (beyond full-data runs) to draw")
    require_single_setting(df, what)
    return df.assign(**{IS_FULL: df["strategy"] == FULL})


def _pruned(d: pd.DataFrame) -> pd.DataFrame:
    return d[d["strategy"] != FULL]


def _epoch_text(epochs: Sequence[int]) -> str:
    nbsp = "\u00a0"  # a wrapped title never splits "e = 3"
    if len(epochs) == 1:
        return f"e{nbsp}={nbsp}{epochs[0]}"
    return f"e{nbsp}∈{nbsp}{{" + f",{nbsp}".join(map(str, epochs)) + "}"


def keep_label(keep: float) -> str:
    return f"keep {keep:g} (p={pruned_fraction(keep)} pruned)"


@dataclass(frozen=True)
class Lines:
    """Runs with a `LINE` column, the line order, and per line its colour and marker (its strategy's) and dashes."""

    runs: pd.DataFrame
    order: list[str]
    palette: dict[str, str]
    markers: dict[str, str]
    dashes: dict[str, object]

    def only(self, runs: pd.DataFrame) -> "Lines":
        return replace(self, runs=runs)


def strategy_lines(d: pd.DataFrame) -> Lines:
    """One line per strategy present (and per pruning epoch, when the rows hold several), full data in every line."""
    epochs = pruning_epochs(d)
    keys = _pruned(d)[["strategy", "prune_epoch"]].drop_duplicates()
    rank = {s: i for i, s in enumerate(ordered_strategies(keys["strategy"]))}
    keys = sorted(keys.itertuples(index=False, name=None), key=lambda k: (rank[k[0]], -1 if pd.isna(k[1]) else k[1]))

    def label(strategy: str, epoch: object) -> str:
        return strategy_label(strategy) + (f", e = {epoch}" if len(epochs) > 1 else "")

    order = [label(s, e) for s, e in keys]
    dashes = {label(s, e): DASHES[epochs.index(int(e)) % len(DASHES)] if len(epochs) > 1 else "" for s, e in keys}
    # expand_full copies each full-data row into every line: the line label stands in for the strategy.
    lines = [FULL if s == FULL else label(s, e) for s, e in zip(d["strategy"], d["prune_epoch"])]
    runs = expand_full(d.assign(strategy=lines)).rename(columns={"strategy": LINE})
    return Lines(runs, order, {label(s, e): strategy_color(s) for s, e in keys},
                 {label(s, e): strategy_marker(s) for s, e in keys}, dashes)  # fmt: skip


def keep_lines(d: pd.DataFrame) -> Lines:
    """Figure 1: one line per keep present (and per strategy, when the rows hold several); no full-data rows."""
    pruned = _pruned(d)
    strategies = ordered_strategies(pruned["strategy"])
    keys = sorted(pruned[["strategy", "keep"]].drop_duplicates().itertuples(index=False, name=None),
                  key=lambda k: (strategies.index(k[0]), k[1]))  # fmt: skip

    def label(strategy: str, keep: float) -> str:
        return keep_label(keep) + (f", {strategy_label(strategy)}" if len(strategies) > 1 else "")

    order = [label(s, k) for s, k in keys]
    runs = pruned.assign(**{LINE: [label(s, k) for s, k in zip(pruned["strategy"], pruned["keep"])]})
    # One strategy, one colour and marker: its keeps differ by dash pattern.
    nth = {(s, k): [k2 for s2, k2 in keys if s2 == s].index(k) for s, k in keys}
    return Lines(runs, order, {label(s, k): strategy_color(s) for s, k in keys},
                 {label(s, k): strategy_marker(s) for s, k in keys},
                 {label(s, k): DASHES[nth[(s, k)] % len(DASHES)] for s, k in keys})  # fmt: skip


def _dodged(lines: Lines, x: str) -> Lines:
    """Shift each line's x by a small step (a fraction of the closest x spacing) so error bars stay readable."""
    xs = np.unique(lines.runs[x].dropna().astype(float).to_numpy())
    step = 0.05 * (float(np.diff(xs).min()) if len(xs) > 1 else 1.0)
    index = {line: i for i, line in enumerate(lines.order)}
    centre = (len(lines.order) - 1) / 2
    shift = lines.runs[LINE].map(lambda line: (index[line] - centre) * step)
    return lines.only(lines.runs.assign(**{X_PLOT: lines.runs[x].astype(float) + shift}))


def point_summary(lines: Lines, x: str, metric: str) -> pd.DataFrame:
    """Per dataset, line and x: the mean ± sd, n and collapsed runs that seaborn plots and the labels state."""
    return summarise(lines.runs, ["dataset", LINE, IS_FULL, x, X_PLOT], metric)


# ---------------------------------------------------------------------------------------------------------------------
# Drawing


def _n_note(summaries: Sequence[pd.DataFrame], runs: pd.DataFrame) -> tuple[bool, str]:
    """(label each point with its n?, note for the legend's title): what the data says and no caption can (the
    caption is written from the config); n is stated once when it is the same for every point."""
    ns = sorted(pd.concat(summaries, ignore_index=True)["n"].unique())
    failed = int(runs["collapsed"].astype(bool).sum())  # runs, not points: a full-data run appears on every line
    total = len(runs)
    n_text = f"n = {ns[0]} runs per point" if len(ns) == 1 else "n per point as labelled"
    rate = f"failure rate {failed}/{total} runs collapsed ({100 * failed / total:.0f}%)" if total else "no runs"
    failed_text = rate if failed == 0 else f"{rate}, in the means ('coll.')"
    return len(ns) > 1, f"mean ± sd, dots: single runs, {n_text}; {failed_text}"


def _point_text(n: int, failed: int, show_n: bool) -> str:
    return ", ".join(t for t in (f"n={n}" if show_n else "", f"{failed}/{n} coll." if failed else "") if t)


def _draw_lines(ax: Axes, lines: Lines, summary: pd.DataFrame, x: str, metric: str, show_n: bool) -> None:
    """seaborn's mean ± sd lines for one panel's runs, a dot per run, then the n / collapsed labels from `summary`.

    The full-data point every line shares is labelled by the first line only.
    """
    present = set(lines.runs[LINE])
    order = [line for line in lines.order if line in present]
    sns.lineplot(
        data=lines.runs[[LINE, X_PLOT, metric]], x=X_PLOT, y=metric, hue=LINE, hue_order=order, style=LINE,
        style_order=order, palette={line: lines.palette[line] for line in order},
        markers={line: lines.markers[line] for line in order}, dashes={line: lines.dashes[line] for line in order},
        errorbar=None, markersize=5, linewidth=1, ax=ax,
    )  # fmt: skip
    # The sd bars from `summary`, as numbers: seaborn's own (err_style="bars") hand matplotlib pandas Series, which it
    # probes with float(), a pandas FutureWarning (an error in a coming pandas) for a line of one point.
    for line in order:
        bars = summary[summary[LINE] == line].sort_values(X_PLOT)
        ax.errorbar(bars[X_PLOT].to_numpy(float), bars["mean"].to_numpy(float), yerr=bars["sd"].to_numpy(float),
                    linestyle="", color=lines.palette[line], capsize=2, elinewidth=1)
        _run_dots(ax, lines.runs, line, metric, lines.palette[line], with_full=line == order[0])
    for p in summary.itertuples(index=False):
        line = getattr(p, LINE)
        text = _point_text(p.n, p.n_failed, show_n)
        if text and not (getattr(p, IS_FULL) and line != order[0]):
            ax.annotate(text, (getattr(p, X_PLOT), p.mean), xytext=(2, 3), textcoords="offset points", fontsize=5,
                        color=lines.palette[line], gid=POINT_LABEL)  # fmt: skip
    ticks = sorted(lines.runs[x].dropna().astype(float).unique())
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])


def _run_dots(ax: Axes, runs: pd.DataFrame, line: str, metric: str, color: str, with_full: bool) -> None:
    """Each run of `line` as a small translucent dot at its point's x; the full-data runs every line shares are
    drawn once, with the first line (as their label is)."""
    mine = runs[(runs[LINE] == line) & (with_full | ~runs[IS_FULL])].dropna(subset=[X_PLOT, metric])
    # Above the bars of their own colour, with a white rim, so that a dot on its bar stays visible.
    ax.scatter(mine[X_PLOT].to_numpy(float), mine[metric].to_numpy(float), s=10, color=color, alpha=0.6,
               edgecolors="white", linewidths=0.3, zorder=2.5, gid=RUN_DOTS)  # fmt: skip


def _separate_point_labels(fig: Figure) -> Figure:
    """Move the n / collapsed labels apart where they would overlap (points of several lines at one x with close
    means; "n=1" over "n=5" reads "n=15"): bottom to top, each label that overlaps one placed before is lifted just
    above it. Measured once the figure is laid out, in display units, and moved in points, as the labels are placed."""
    fig.draw_without_rendering()
    points_per_pixel = 72 / fig.dpi
    for ax in fig.axes:
        labels = sorted((t for t in ax.texts if t.get_gid() == POINT_LABEL), key=lambda t: t.get_window_extent().y0)
        placed = []
        for label in labels:
            box = label.get_window_extent()
            lift = 0.0
            for other in sorted(placed, key=lambda b: b.y0):
                if box.translated(0, lift).overlaps(other):
                    lift = other.y1 + 1 - box.y0
            if lift:
                x, y = label.xyann
                label.xyann = (x, y + lift * points_per_pixel)
            placed.append(box.translated(0, lift))
    return fig


def _take_legend(ax: Axes) -> None:
    if ax.get_legend() is not None:
        ax.get_legend().remove()


def _figure_legend(fig: Figure, axes: np.ndarray, note: str) -> None:
    """One legend for the figure, below the panels (every panel draws the same kinds of line), titled by `note`."""
    entries: dict[str, object] = {}
    for ax in axes.flat:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(text, handle)
        _take_legend(ax)
    fig.legend(
        list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 4), fontsize=7,
        title=wrap_to_inches(note, fig.get_figwidth(), 7), title_fontsize=7,
    )


def _paper_points(ax: Axes, points: Sequence[tuple[float, float, float, str, str]], label: str) -> None:
    """The paper's values (x, mean, sd, colour, marker) as hollow markers with sd bars, at their exact x (ours are
    dodged beside them); one grey legend entry for all, so the legend says which marks are the paper's."""
    for x, mean, sd, color, marker in points:
        ax.plot([x], [mean], marker=marker, color=color, linestyle="none", gid="paper", **PAPER_MARKER)
        ax.vlines([x], [mean - sd], [mean + sd], colors=color, linewidth=0.8, linestyles=":", gid="paper")
    if points:
        markers = {p[4] for p in points}
        ax.plot([], [], marker=markers.pop() if len(markers) == 1 else "o", color=REFERENCE_COLOR, linestyle="none",
                label=label, **PAPER_MARKER)  # fmt: skip


def _table1_points(dataset: str, metric: str, strategies: Sequence[str], keeps: Sequence[float]) -> list:
    """Table 1's cells for the dataset `dataset` stands for, at the strategies and keeps drawn (full data at 1.0)."""
    paper = paper_dataset(dataset)
    drawn_keeps = {normalise_keep(k) for k in keeps}
    points = []
    for (name, (strategy, keep), m), (mean, sd) in TABLE1.items():
        drawn = strategy in strategies or (strategy == FULL and strategies)
        if name == paper and m == metric and drawn and normalise_keep(keep) in drawn_keeps:
            color, marker = (REFERENCE_COLOR, "o") if strategy == FULL else (strategy_color(strategy),
                                                                              strategy_marker(strategy))  # fmt: skip
            points.append((keep, mean, sd, color, marker))
    return points


def _abstract_points(dataset: str, keeps: Sequence[float]) -> list:
    """The abstract's random-pruning costs (about 8 points at keep 0.6, 14 at keep 0.2) below the paper's full-data
    AutoAttack accuracy, for the dataset `dataset` stands for, at the keeps drawn; the full-data value itself too."""
    paper = paper_dataset(dataset)
    full = TABLE1.get((paper, (FULL, 1.0), "aa_acc_pct"))
    drops = {k: d for (name, k), d in ABSTRACT_RANDOM_DROPS.items() if name == paper}
    if full is None or not drops:
        return []
    wanted = {**drops, 1.0: 0.0}
    drawn_keeps = {normalise_keep(k) for k in keeps}
    return [(k, full[0] - d, 0.0, REFERENCE_COLOR, "s") for k, d in sorted(wanted.items())
            if normalise_keep(k) in drawn_keeps]


def _panel_grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(4.0 * n_cols, 3.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.flat:
        ax.margins(x=0.08)  # room for the labels of the last point
    return fig, axes


def _strategies_text(d: pd.DataFrame, sep: str = ", ") -> str:
    return sep.join(strategy_label(s) for s in ordered_strategies(_pruned(d)["strategy"]))


def _strategy_figure(d: pd.DataFrame, metrics: Sequence[str], title: str, paper: str = "") -> Figure:
    """Metric(s) vs keep, one line per strategy present, one column of panels per dataset, one row per metric;
    `paper` = "table1" or "abstract" draws those values of the paper beside ours."""
    lines = _dodged(strategy_lines(d), "keep")
    datasets = ordered_datasets(lines.runs["dataset"])
    summaries = {m: point_summary(lines, "keep", m) for m in metrics}
    show_n, note = _n_note(list(summaries.values()), d)
    fig, axes = _panel_grid(len(metrics), len(datasets))
    for row, metric in enumerate(metrics):
        for col, dataset in enumerate(datasets):
            ax = axes[row, col]
            panel = lines.only(lines.runs[lines.runs["dataset"] == dataset])
            summary = summaries[metric][summaries[metric]["dataset"] == dataset]
            _draw_lines(ax, panel, summary, "keep", metric, show_n)
            keeps = sorted(panel.runs["keep"].unique())
            strategies = list(_pruned(d)["strategy"].unique())
            if paper == "table1":
                _paper_points(ax, _table1_points(dataset, metric, strategies, keeps), PAPER_TABLE1_LABEL)
            elif paper == "abstract":
                _paper_points(ax, _abstract_points(dataset, keeps), PAPER_ABSTRACT_LABEL)
            label = f"({'ab'[row]}) " if len(metrics) > 1 else ""
            ax.set(title=f"{label}{display_name(dataset)}", xlabel=KEEP_LABEL, ylabel=METRIC_LABELS[metric])
    _figure_legend(fig, axes, note)
    suptitle(fig, f"{title} ({_epoch_text(pruning_epochs(d))})")
    return _separate_point_labels(fig)


# ---------------------------------------------------------------------------------------------------------------------
# The figures


def build_fig1(df: pd.DataFrame) -> Figure:
    """AutoAttack accuracy vs pruning epoch, one line per keep present; full data (if any) as a reference band."""
    d = _drawn_rows(df, "fig1")
    lines = _dodged(keep_lines(d), "prune_epoch")
    summary = point_summary(lines, "prune_epoch", "aa_acc_pct")
    full = summarise(d[d[IS_FULL]], ["dataset"], "aa_acc_pct")
    show_n, note = _n_note([summary, full], d)
    datasets = ordered_datasets(d["dataset"])
    fig, axes = _panel_grid(1, len(datasets))
    for ax, dataset in zip(axes[0], datasets):
        panel = lines.only(lines.runs[lines.runs["dataset"] == dataset])
        if not panel.runs.empty:
            _draw_lines(ax, panel, summary[summary["dataset"] == dataset], "prune_epoch", "aa_acc_pct", show_n)
        for ref in full[full["dataset"] == dataset].itertuples(index=False):
            ax.axhline(ref.mean, linestyle="--", linewidth=1, color=REFERENCE_COLOR, label="full data, mean ± sd")
            if math.isfinite(ref.sd):
                ax.axhspan(ref.mean - ref.sd, ref.mean + ref.sd, color=REFERENCE_COLOR, alpha=0.12, linewidth=0)
            text = _point_text(ref.n, ref.n_failed, show_n)
            if text:
                ax.annotate(text, (0.0, ref.mean), xycoords=("axes fraction", "data"), xytext=(2, 3),
                            textcoords="offset points", fontsize=5, color=REFERENCE_COLOR, gid=POINT_LABEL)  # fmt: skip
        ax.set(title=display_name(dataset), xlabel="pruning epoch e", ylabel=METRIC_LABELS["aa_acc_pct"])
    _figure_legend(fig, axes, note)
    suptitle(fig, f"AutoAttack accuracy vs pruning epoch ({_strategies_text(d)})")
    return _separate_point_labels(fig)


def build_fig2(df: pd.DataFrame) -> Figure:
    """AutoAttack accuracy vs keep for the (random) pruning present, full data at keep 1.0."""
    d = _drawn_rows(df, "fig2")
    return _strategy_figure(d, ["aa_acc_pct"], f"AutoAttack accuracy vs keep, {_strategies_text(d)}", "abstract")


def build_strategy_comparison(df: pd.DataFrame) -> Figure:
    """(a) clean and (b) AutoAttack accuracy vs keep, one line per strategy present (figures 3 and 4)."""
    d = _drawn_rows(df, "strategy comparison")
    return _strategy_figure(d, ["clean_acc_pct", "aa_acc_pct"], "Accuracy vs keep, by strategy", "table1")


def build_fig7(df: pd.DataFrame) -> Figure:
    """AutoAttack accuracy vs keep, one line per strategy present (random and low+high in the paper)."""
    d = _drawn_rows(df, "fig7")
    return _strategy_figure(d, ["aa_acc_pct"], f"AutoAttack accuracy vs keep: {_strategies_text(d, ' vs ')}")


def fig5_fits(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and line, the least-squares line time_minutes = slope * keep + intercept over individual runs
    (full-data runs included in every line)."""
    lines = strategy_lines(_drawn_rows(df, "fig5"))
    rows = []
    for dataset in ordered_datasets(lines.runs["dataset"]):
        for line in lines.order:
            runs = lines.runs[(lines.runs["dataset"] == dataset) & (lines.runs[LINE] == line)]
            runs = runs[runs["time_minutes"].notna()]
            if runs.empty:
                continue
            fit = linear_fit(runs["keep"].to_numpy(), runs["time_minutes"].to_numpy())
            rows.append({"dataset": dataset, LINE: line, "slope": fit.slope, "intercept": fit.intercept,
                         "r2": fit.r2, "n": fit.n})  # fmt: skip
    return pd.DataFrame(rows, columns=["dataset", LINE, "slope", "intercept", "r2", "n"])


def build_fig5(df: pd.DataFrame) -> Figure:
    """Training + scoring time vs keep, with a linear fit per line and dataset; states jobs per GPU and device."""
    d = _drawn_rows(df, "fig5")
    lines = _dodged(strategy_lines(d), "keep")
    summary = point_summary(lines, "keep", "time_minutes")
    fits = fig5_fits(d)
    show_n, note = _n_note([summary], d)
    where = time_device_text(d["device"].dropna(), d["jobs_on_device"].dropna())
    datasets = ordered_datasets(d["dataset"])
    fig, axes = _panel_grid(1, len(datasets))
    for ax, dataset in zip(axes[0], datasets):
        panel = lines.only(lines.runs[lines.runs["dataset"] == dataset])
        _draw_lines(ax, panel, summary[summary["dataset"] == dataset], "keep", "time_minutes", show_n)
        for fit in fits[fits["dataset"] == dataset].itertuples(index=False):
            if not np.isfinite(fit.slope):
                continue
            xs = np.array([0.0, float(panel.runs["keep"].max())])
            which = f" ({getattr(fit, LINE)})" if len(lines.order) > 1 else ""
            label = f"fit{which}: {fit.slope:.3g}·keep + {fit.intercept:.3g} min, R²={fit.r2:.3f}"
            ax.plot(xs, fit.slope * xs + fit.intercept, linestyle="--", linewidth=1,
                    color=lines.palette[getattr(fit, LINE)] if which else REFERENCE_COLOR, label=label)  # fmt: skip
        ax.set(title=display_name(dataset), xlabel=KEEP_LABEL, ylabel=METRIC_LABELS["time_minutes"])
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)  # per panel: the fits differ between datasets
    # Times from a shared device are not the paper's: the device and how many jobs shared it stay on the figure.
    legend_note = wrap_to_inches(
        f"{note}; {where}", fig.get_figwidth() / len(datasets), 7
    )
    axes[0, 0].legend(fontsize=7, title=legend_note, title_fontsize=7)
    suptitle(fig, f"Time (training + scoring) vs keep, {_strategies_text(d)} ({_epoch_text(pruning_epochs(d))})")
    return _separate_point_labels(fig)
