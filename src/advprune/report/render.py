"""A model-grid artefact (advprune.kinds.ModelGrid) from its tidy table: `advprune build fig4 --table ...`.

Reads the table, keeps the rows the artefact draws (the config's precision and, for artefacts of one schedule, its
`schedule_after_pruning`; full-data models match any schedule) and calls the entry's builder. The workflow's table
holds exactly the artefact's grid, so nothing else is filtered; `prune_epoch` and `seeds` are for drawing a subset
by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from advprune.report.aggregate import read_table
from advprune.report.output import Built, save_artefact
from advprune.report.selection import select_rows


def build_grid(
    artefact: Any,
    table_csv: Path,
    *,
    schedule: str = "rescale",
    precision: str = "fp32",
    seeds: Sequence[int] | None = None,
    prune_epoch: int | None = None,
) -> Built:
    """The figure or table of `artefact`, a ModelGrid entry (advprune.kinds; not imported, as no builder depends on the
    registry), from the rows it draws, with every row of the table as its models."""
    runs = read_table(table_csv)
    rows = select_rows(
        runs, precision=precision, seeds=seeds, schedule=schedule if artefact.one_schedule else None,
        prune_epochs=None if prune_epoch is None else [prune_epoch],
    )
    return Built.of(
        artefact.load_builder()(rows), inputs=[Path(table_csv)], models=runs.to_dict("records"),
        parameters={"schedule": schedule, "precision": precision, "seeds": seeds, "prune_epoch": prune_epoch},
    )


def render(artefact: Any, table_csv: Path, pdf: Path, **selection: Any) -> None:
    """Build the artefact from `table_csv` and save it: `pdf`, the other files beside it, its provenance."""
    save_artefact(artefact, build_grid(artefact, table_csv, **selection), pdf)
