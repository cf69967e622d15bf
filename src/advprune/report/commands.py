"""Thin entry points for the CLI: read inputs, select the rows an artefact uses, call the pure functions, write files.

Figures and Table 1 use the models of one `schedule_after_pruning` setting and one precision (the config's); the
schedule ablation uses both schedules. Full-data models match any schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from advprune import METHOD_VERSION
from advprune.datasets import load_canonical
from advprune.report.aggregate import collect, read_table, write_table
from advprune.report.embedding import draw_fig8, subsample, table2, table2_caption, tsne_embedding
from advprune.report.figures import FIGURES
from advprune.report.selection import select
from advprune.report.tables import (
    ablation_caption,
    ablation_schedule,
    draw_table_pdf,
    table1,
    table1_caption,
    write_table_files,
)
from advprune.report.toy import draw_toy
from advprune.runtime import library_versions, write_json
from advprune.toy import ToyParameters, simulate

TABLES = ("table1", "ablation_schedule")


def run_aggregate(pairs: list[tuple[Path, Path]], out_csv: Path) -> None:
    """(train.json, metrics.json) pairs -> the tidy run table as CSV."""
    write_table(collect(pairs), out_csv)


def run_figure(
    name: str,
    table_csv: Path,
    out: Path,
    *,
    schedule: str = "rescale",
    precision: str = "fp32",
    seeds: Sequence[int] | None = None,
    prune_epoch: int | None = None,
) -> None:
    """Draw figure `name` (fig1-5, fig7) from every row of the run table of that schedule and precision (the
    workflow's table holds exactly the figure's grid); `prune_epoch` (None: all) selects pruned rows."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
    df = select(read_table(table_csv), schedule=schedule, precision=precision, seeds=seeds)
    FIGURES[name](df, out, prune_epoch=prune_epoch)


def run_table(
    name: str,
    table_csv: Path,
    stem: Path,
    pdf: Path,
    *,
    schedule: str = "rescale",
    precision: str = "fp32",
    seeds: Sequence[int] | None = None,
    prune_epoch: int | None = None,
) -> None:
    """Write table `name` as `stem`.csv/.tex/.md and as `pdf`, its cells from the (strategy, keep) pairs present;
    `prune_epoch` (None: all) selects pruned rows."""
    df = select(read_table(table_csv), precision=precision, seeds=seeds)
    if name == "table1":
        df = select(df, schedule=schedule)
        table, caption = table1(df, prune_epoch=prune_epoch), table1_caption(df, prune_epoch=prune_epoch)
    elif name == "ablation_schedule":
        table, caption = ablation_schedule(df, prune_epoch=prune_epoch), ablation_caption(df, prune_epoch=prune_epoch)
    else:
        raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    write_table_files(table, stem, caption)
    draw_table_pdf(table, pdf, caption)


def load_variant(canonical_npz: Path, pruning_npz: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A training set, or with a run's `pruning.npz` the part of it that run kept."""
    data = load_canonical(canonical_npz)
    if pruning_npz is None:
        return data.x_train, data.y_train
    with np.load(pruning_npz) as pruning:
        kept = pruning["kept"]
    if kept.size and (kept.min() < 0 or kept.max() >= len(data.y_train)):
        raise ValueError(f"{pruning_npz}: kept indices exceed the {len(data.y_train)} points of {canonical_npz}")
    return data.x_train[kept], data.y_train[kept]


def run_fig8(variants: list[tuple[str, Path, Path | None]], out: Path, *, n: int = 5000, seed: int = 0) -> None:
    """Figure 8 from (variant name, canonical .npz, pruning.npz or None): seeded subsample, PCA + t-SNE, scatter."""
    panels = []
    for name, canonical, pruning in variants:
        x, y = subsample(*load_variant(canonical, pruning), n=n, seed=seed)
        panels.append((name, tsne_embedding(x, seed), y))
    draw_fig8(panels, out)


def run_table2(variants: list[tuple[str, Path, Path | None]], stem: Path, pdf: Path, *, cut: float = 0.01) -> None:
    """Table 2 over the whole (kept) training sets: its statistics do not depend on the number of points."""
    table = table2([(name, *load_variant(canonical, pruning)) for name, canonical, pruning in variants], cut=cut)
    caption = table2_caption(table, cut)
    write_table_files(table, stem, caption)
    draw_table_pdf(table, pdf, caption)


def artefact_provenance(name: str, parameters: dict, outputs: Sequence[Path]) -> dict:
    """What an artefact was computed from: its resolved parameters (seeds included), the method version and the
    library versions. One call per artefact, so a workflow-wide provenance record can replace it."""
    return {
        "artefact": name,
        "method_version": METHOD_VERSION,
        "parameters": parameters,
        "versions": library_versions(extra=("pandas", "seaborn", "matplotlib")),
        "outputs": [str(path) for path in outputs],
    }


def run_toy(params: ToyParameters, pdf: Path, runs_csv: Path) -> None:
    """The toy model of section 5.2: simulate every seed, write the per-seed rows to `runs_csv`, the figure to `pdf`,
    the table beside it (.csv/.tex/.md) and `<pdf stem>.provenance.json`."""
    runs = simulate(params)
    write_table(runs, runs_csv)
    draw_toy(runs, params, pdf)
    stem = Path(pdf).with_suffix("")
    outputs = [Path(pdf), *(stem.with_suffix(ext) for ext in (".csv", ".tex", ".md")), Path(runs_csv)]
    write_json(stem.with_suffix(".provenance.json"), artefact_provenance("toy", params.as_dict(), outputs))
