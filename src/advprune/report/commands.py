"""Thin entry points for the CLI: read inputs, select the rows an artefact uses, call the pure functions, write files.

Figures and Table 1 use the models of one `schedule_after_pruning` setting and one precision (the config's); the
schedule ablation uses both schedules. Full-data models match any schedule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from advprune import provenance
from advprune.datasets import load_canonical
from advprune.report import claims
from advprune.report.aggregate import collect, read_table, write_table
from advprune.report.embedding import draw_fig8, subsample, table2, table2_block, tsne_embedding
from advprune.report.figures import FIGURES
from advprune.report.selection import select
from advprune.report.tablefiles import draw_pdf, write_table_files
from advprune.report.tables import ablation_blocks, table1_blocks, table_values
from advprune.report.toy import draw_toy
from advprune.runtime import atomic_path, read_json
from advprune.toy import ToyParameters, simulate

TABLES = ("table1", "ablation_schedule")
TABLE_SUFFIXES = (".pdf", ".png", ".csv", ".tex", ".md")


def _figure_files(pdf: Path) -> list[Path]:
    """A figure's files: the PDF and the PNG that figures.save_figure writes beside it."""
    return [Path(pdf), Path(pdf).with_suffix(".png")]


def _table_files(stem: Path, pdf: Path | None = None) -> list[Path]:
    """A table's files: `pdf` (default `stem`.pdf) with its PNG, and `stem`.csv/.tex/.md."""
    return [*_figure_files(pdf if pdf is not None else stem.with_suffix(".pdf")),
            *(stem.with_suffix(suffix) for suffix in TABLE_SUFFIXES[2:])]


def _trained_model(run_dir: Path) -> dict:
    """An embedding's model, in the fields an artefact's provenance lists (from its train.json)."""
    record = read_json(run_dir / "train.json")
    return {
        "run_dir": str(run_dir), "method_version": record.get("method_version"), "device": record.get("device"),
        "jobs_on_device": record.get("jobs_on_device"), **provenance.model_fields(record),
    }


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
    runs = read_table(table_csv)
    df = select(runs, schedule=schedule, precision=precision, seeds=seeds)
    FIGURES[name](df, out, prune_epoch=prune_epoch)
    provenance.write_artefact_record(
        out, name, outputs=_figure_files(out), inputs=[table_csv], models=runs.to_dict("records"),
        parameters={"schedule": schedule, "precision": precision, "seeds": seeds, "prune_epoch": prune_epoch},
    )


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
    runs = read_table(table_csv)
    df = select(runs, precision=precision, seeds=seeds)
    if name == "table1":
        df = select(df, schedule=schedule)
        blocks, data = table1_blocks(df, prune_epoch=prune_epoch), table_values(df, prune_epoch=prune_epoch)
    elif name == "ablation_schedule":
        blocks = ablation_blocks(df, prune_epoch=prune_epoch)
        data = table_values(df, prune_epoch=prune_epoch, by=["schedule_after_pruning"])
    else:
        raise ValueError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    write_table_files(blocks, stem, data=data)
    draw_pdf(blocks, pdf)
    provenance.write_artefact_record(
        pdf, name, outputs=_table_files(stem, pdf), inputs=[table_csv], models=runs.to_dict("records"),
        parameters={"schedule": schedule, "precision": precision, "seeds": seeds, "prune_epoch": prune_epoch},
    )


def _embedding_provenance(name: str, variants: list[tuple[str, Path, Path | None]], outputs: list[Path],
                          parameters: dict) -> None:
    inputs = [path for _, canonical, pruning in variants for path in (canonical, pruning) if path is not None]
    models = [_trained_model(pruning.parent) for _, _, pruning in variants if pruning is not None]
    named = {variant: f"{data}:{pruning}" if pruning else str(data) for variant, data, pruning in variants}
    provenance.write_artefact_record(
        outputs[0], name, outputs=outputs, inputs=inputs, models=models, parameters={**parameters, "variants": named}
    )


def run_claims(
    tables: dict[str, Path], roles: dict[str, str], out_csv: Path, *, schedule: str = "rescale",
    precision: str = "fp32", n_resamples: int = 2000, seed: int = 0,
) -> None:
    """The claims table (claims.csv and claims.md beside it) from the artefact tables this configuration builds."""
    runs = {name: read_table(path) for name, path in tables.items()}
    selected = {name: select(df, schedule=schedule, precision=precision) for name, df in runs.items()}
    table = claims.claims_table(selected, roles, n_resamples=n_resamples, seed=seed)
    caption = (
        "Claims of the paper against this reproduction: our effect with a bootstrap 95% interval over runs "
        f"({n_resamples} resamples, seed {seed}), the paper's value, and the verdict by the rule fixed in "
        "advprune/claims.yaml before any result was seen."
    )
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_csv.with_suffix(".md")) as tmp:
        tmp.write_text(claims.markdown(table, caption))
    models = {row["run_dir"]: row for df in runs.values() for row in df.to_dict("records")}
    provenance.write_artefact_record(
        out_csv, "claims", outputs=[out_csv, out_csv.with_suffix(".md")], inputs=list(tables.values()),
        models=list(models.values()), parameters={"roles": dict(roles), "schedule": schedule, "precision": precision,
                                                  "n_resamples": n_resamples, "seed": seed},
    )


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
    _embedding_provenance("fig8", variants, _figure_files(out), {"n_points": n, "seed": seed})


def run_table2(variants: list[tuple[str, Path, Path | None]], stem: Path, pdf: Path, *, cut: float = 0.01) -> None:
    """Table 2 over the whole (kept) training sets: its statistics do not depend on the number of points."""
    table = table2([(name, *load_variant(canonical, pruning)) for name, canonical, pruning in variants], cut=cut)
    block = table2_block(table, cut)
    write_table_files([block], stem, data=table)
    draw_pdf([block], pdf)
    _embedding_provenance("table2", variants, _table_files(stem, pdf), {"cut": cut})


def run_toy(params: ToyParameters, pdf: Path, runs_csv: Path) -> None:
    """The toy model of section 5.2: simulate every seed, write the per-seed rows to `runs_csv`, the figure to `pdf`,
    the table beside it (.csv/.tex/.md) and `<pdf stem>.provenance.json`."""
    runs = simulate(params)
    write_table(runs, runs_csv)
    draw_toy(runs, params, pdf)
    stem = Path(pdf).with_suffix("")
    provenance.write_artefact_record(
        pdf, "toy", outputs=[*_table_files(stem), Path(runs_csv)], parameters=params.as_dict()
    )
