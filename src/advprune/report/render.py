"""`advprune render NAME`: one model-grid artefact (advprune.artefacts) from its tidy table, with its provenance.

Reads the table, keeps the rows the artefact draws (the config's precision and, for artefacts of one schedule, its
`schedule_after_pruning`; full-data models match any schedule), calls the registry's builder and writes the files
its entry names. The workflow's table holds exactly the artefact's grid, so nothing else is filtered; `prune_epoch`
and `seeds` are for drawing a subset by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from advprune import provenance
from advprune.artefacts import MODEL_GRID, get
from advprune.report.aggregate import read_table
from advprune.report.output import files_beside, save_figure, save_table
from advprune.report.selection import select_rows


def render(
    name: str,
    table_csv: Path,
    pdf: Path,
    *,
    schedule: str = "rescale",
    precision: str = "fp32",
    seeds: Sequence[int] | None = None,
    prune_epoch: int | None = None,
) -> None:
    """Write artefact `name`'s files (`pdf` and the others beside it) and `<pdf stem>.provenance.json`."""
    artefact = get(name, MODEL_GRID)
    runs = read_table(table_csv)
    rows = select_rows(
        runs, precision=precision, seeds=seeds, schedule=schedule if artefact.one_schedule else None,
        prune_epochs=None if prune_epoch is None else [prune_epoch],
    )
    built = artefact.load_builder()(rows)
    if artefact.is_table:
        blocks, values = built
        save_table(blocks, pdf, data=values)
    else:
        save_figure(built, pdf)
    provenance.write_artefact_record(
        pdf, name, outputs=files_beside(pdf, artefact.files), inputs=[table_csv], models=runs.to_dict("records"),
        parameters={"schedule": schedule, "precision": precision, "seeds": seeds, "prune_epoch": prune_epoch},
    )
