"""The toy model of section 5.2 as a figure and a table, from the per-seed rows of `advprune.toy.simulate`.

Figure: (a) the fragile-set share of the kept points against keep, pruned by the adversarially trained classifier's
squared loss, one line per strategy (mean ± sd over seeds) with the paper's argument dashed; (b) the same scored by
the standard-trained twin, for which the argument makes no claim; (c) both classifiers' clean and robust accuracy and
the share of their weight on the robust feature x1. Table: one row per classifier x strategy x keep.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from advprune.report.style import REFERENCE_COLOR, STRATEGY_COLORS, STRATEGY_MARKERS
from advprune.report.labels import KEEP_LABEL, STRATEGY_LABELS, ordered_strategies
from advprune.report.output import Block, Built, suptitle
from advprune.toy import CLASSIFIERS, simulate
from advprune.toy_parameters import ToyParameters

SHARE_LABEL = "fragile-set share of the kept points"
CLASSIFIER_COLORS = ["0.15", "0.6"]  # robust, standard: greys, so no strategy's colour stands for a classifier
CLASSIFIER_FACTS = {"clean_acc": "clean acc", "robust_acc": "robust acc (at eps)",
                    "x1_weight_share": "|w1| / ||w||₁"}  # fmt: skip


def _settings_text(params: ToyParameters, runs: pd.DataFrame) -> str:
    return (
        f"d = {params.d}, p_R = {params.p_R:g}, p_robust = {params.p_robust:g}, p_fragile = {params.p_fragile:g}, "
        f"eps = {params.eps_over_eta:g} eta = {params.eps:.3g}, n = {params.n} per seed, "
        f"{runs['seed'].nunique()} seeds; mean ± sd over seeds"
    )


def classifier_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per classifier: mean and sd over seeds of its clean and robust accuracy and its weight share on x1."""
    per_seed = runs.drop_duplicates(["seed", "classifier"])
    return per_seed.groupby("classifier", sort=False)[list(CLASSIFIER_FACTS)].agg(["mean", "std"])


def _share_panel(ax: Axes, runs: pd.DataFrame, classifier: str, params: ToyParameters, title: str) -> None:
    rows = runs[runs["classifier"] == classifier]
    strategies = ordered_strategies(rows["strategy"].unique())
    palette = {STRATEGY_LABELS[s]: STRATEGY_COLORS[s] for s in strategies}
    sns.lineplot(
        data=rows.assign(pruning=rows["strategy"].map(STRATEGY_LABELS)), x="keep", y="fragile_share", hue="pruning",
        hue_order=list(palette), palette=palette, style="pruning", style_order=list(palette),
        markers={STRATEGY_LABELS[s]: STRATEGY_MARKERS[s] for s in strategies}, dashes=False, errorbar="sd",
        err_style="bars", markersize=5, linewidth=1, err_kws={"capsize": 2, "elinewidth": 1}, ax=ax,
    )  # fmt: skip
    expected = rows.dropna(subset=["expected_fragile_share"]).drop_duplicates(["strategy", "keep"])
    for strategy in strategies:
        line = expected[expected["strategy"] == strategy].sort_values("keep")
        if not line.empty and strategy != "random":  # random's expectation is the "before" line
            ax.plot(line["keep"], line["expected_fragile_share"], linestyle="--", linewidth=1,
                    color=STRATEGY_COLORS[strategy], label=f"{STRATEGY_LABELS[strategy]}: paper's argument")  # fmt: skip
    ax.axhline(1 - params.p_R, linestyle=":", linewidth=1, color=REFERENCE_COLOR, label="before pruning: 1 - p_R")
    ax.set(title=title, xlabel=KEEP_LABEL, ylabel=SHARE_LABEL, ylim=(0, 1))


def toy_figure(runs: pd.DataFrame, params: ToyParameters) -> Figure:
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    _share_panel(axes[0], runs, "robust", params, "(a) pruned by the robust classifier's loss")
    _share_panel(axes[1], runs, "standard", params, "(b) pruned by the standard twin's loss")
    # One legend for (a) and (b), below them: (b) draws a subset of (a)'s entries.
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[:2]:
        ax.get_legend().remove()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=7, title=_settings_text(params, runs),
               title_fontsize=7)  # fmt: skip
    facts = runs.drop_duplicates(["seed", "classifier"]).melt(
        id_vars=["seed", "classifier"], value_vars=list(CLASSIFIER_FACTS), var_name="quantity", value_name="value"
    )
    facts["quantity"] = facts["quantity"].map(CLASSIFIER_FACTS)
    sns.barplot(data=facts, x="quantity", y="value", hue="classifier", hue_order=list(CLASSIFIERS),
                palette=CLASSIFIER_COLORS, errorbar="sd", capsize=0.1, ax=axes[2])  # fmt: skip
    axes[2].set(title="(c) the two classifiers (test set)", xlabel="", ylabel="fraction", ylim=(0, 1.05))
    axes[2].legend(fontsize=7, title="classifier", title_fontsize=7)
    suptitle(fig, "Toy model of section 5.2: pruning by the squared loss |w'x - y|², ||w||₁ = 1")
    return fig


def toy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per classifier x strategy x keep: the fragile-set share before and after pruning (mean, sd over
    seeds) beside the paper's argument (under w = [1, 0, ..., 0]; empty for the standard-trained twin)."""
    keys = ["classifier", "strategy", "keep"]
    grouped = runs.groupby(keys, sort=False)
    table = pd.DataFrame({
        "seeds": grouped["seed"].nunique(),
        "points kept (mean)": grouped["n_kept"].mean().round(1),
        "fragile share before": grouped["fragile_share_before"].mean(),
        "fragile share after (mean)": grouped["fragile_share"].mean(),
        "fragile share after (sd)": grouped["fragile_share"].std(),
        "paper's argument": grouped["expected_fragile_share"].first(),
    }).reset_index()  # fmt: skip
    table["after - argument"] = table["fragile share after (mean)"] - table["paper's argument"]
    table["strategy"] = table["strategy"].map(STRATEGY_LABELS)
    table = table.rename(columns={"strategy": "pruning"})
    return table.round({c: 4 for c in table.columns if "share" in c or "argument" in c})


def toy_caption(runs: pd.DataFrame, params: ToyParameters) -> str:
    summary = classifier_summary(runs)
    means = summary.xs("mean", axis=1, level=1)
    facts = "; ".join(
        f"{c}: clean acc {m.clean_acc:.3f}, robust acc {m.robust_acc:.3f}, share of |w| on x1 {m.x1_weight_share:.3f}"
        for c, m in means.iterrows()
    )
    return (
        f"Toy model of section 5.2 ({_settings_text(params, runs)}). Fragile-set share of the points kept after "
        f"pruning by the squared loss of each classifier; 'paper's argument' is its expectation under "
        f"w = [1, 0, ..., 0] (loss 4 where x1 != y, else 0; ties at random). Classifiers ({facts})."
    )


def build_toy(params: ToyParameters, runs: Path) -> Built:
    """The registry's builder: simulate every seed; the figure, the table and the per-seed rows (to the CSV `runs`)."""
    rows = simulate(params)
    return Built(figure=toy_figure(rows, params), blocks=[Block(toy_table(rows), toy_caption(rows, params))],
                 tables={Path(runs): rows}, parameters=params.as_dict())  # fmt: skip
