"""The artefact registry: every figure and table of the workflow, its kind, what builds it and what it writes.

One entry per artefact, an instance of its kind (advprune.kinds: ModelGrid, DataArtefact, Simulation, Claims), which
owns its models, its rule's inputs and command, its caption facts and how it is built. The planner
(`advprune.plan`), the rules (`rules/artefacts.smk` makes one rule per entry), the command line (`build`, `cost`)
and the report captions read this table; nothing else lists artefacts. Adding a figure is an entry here, its
drawing function and its caption, `captions/<name>.rst` (docs/extending.md). No torch, scipy or pandas: the
Snakefile reads it at every start.
"""

from __future__ import annotations

import copy
from typing import Any

from advprune.kinds import TABLE_FILES, Artefact, Claims, DataArtefact, ModelGrid, Simulation
from advprune.toy_parameters import TOY_OPTIONS


def _figure(name: str, builder: str, **more: Any) -> ModelGrid:
    return ModelGrid(name, f"advprune.report.figures:{builder}", **more)


def _table(name: str, builder: str, **more: Any) -> ModelGrid:
    return ModelGrid(name, f"advprune.report.tables:{builder}", TABLE_FILES, **more)


_T_SNE = {"mem_mb": 8000, "runtime": 30}  # t-SNE of thousands of points: minutes and GBs, so a job of its own

ARTEFACTS: tuple[Artefact, ...] = (
    _figure("fig1", "build_fig1"),
    _figure("fig2", "build_fig2"),
    _table("table1", "tabulate_table1"),
    _figure("fig3", "build_strategy_comparison"),  # MNIST (or its stand-in): the rows the workflow gives it
    _figure("fig4", "build_strategy_comparison"),  # CIFAR-10 (or its stand-in)
    _figure("fig5", "build_fig5"),
    _figure("fig7", "build_fig7"),
    _table("ablation_schedule", "tabulate_ablation_schedule", one_schedule=False),
    DataArtefact("fig8", "advprune.report.embedding:build_fig8", options=("n_points", "seed"), resources=_T_SNE),
    DataArtefact("table2", "advprune.report.embedding:build_table2", TABLE_FILES, resources=_T_SNE),
    Simulation("toy", "advprune.report.toy:build_toy", TABLE_FILES, options=TOY_OPTIONS,
               extra_outputs={"runs": "results/artefacts/toy.csv"}),  # fmt: skip
    Claims("claims", "advprune.report.claims:build_claims", package_data=("claims.yaml", "claims-v1.yaml")),
)
BY_NAME: dict[str, Artefact] = {artefact.name: artefact for artefact in ARTEFACTS}


def names(*kinds: type[Artefact]) -> tuple[str, ...]:
    """The artefacts of these kinds (all, without a kind), in the registry's order."""
    return tuple(a.name for a in ARTEFACTS if not kinds or isinstance(a, kinds))


def get(name: str, *kinds: type[Artefact]) -> Artefact:
    """The entry of `name`; a ValueError naming the known ones when there is none (of these kinds)."""
    artefact = BY_NAME.get(name)
    if artefact is None or (kinds and not isinstance(artefact, kinds)):
        raise ValueError(f"unknown artefact {name!r}; known: {', '.join(names(*kinds))}")
    return artefact


def with_default_configs(artefacts_config: dict[str, Any]) -> dict[str, Any]:
    """config artefacts.* completed with the entries' default_config where the config names none."""
    defaults = {a.name: copy.deepcopy(a.default_config) for a in ARTEFACTS if a.default_config is not None}
    return {**defaults, **artefacts_config}
