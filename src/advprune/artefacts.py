"""The artefact registry: every figure and table of the workflow, what kind it is, what builds it and what it writes.

One entry per artefact. The planner (`advprune.plan`), the rules (`rules/artefacts.smk` makes one rule per entry),
the command line (`render`, `embed`, `cost`) and the report captions read this table; nothing else lists artefacts.
Adding a figure is an entry here, its drawing function and its caption, `captions/<name>.rst`
(docs/extending.md). Pure Python with no imports of the package: the Snakefile reads it at every start.
"""

from __future__ import annotations

import copy
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

# Kinds: what an artefact is built from, and so its rule's inputs and its command.
MODEL_GRID = "model grid"  # the tidy table of its grid's models (config artefacts.<name>), `advprune render`
DATA = "data"  # datasets and one model's pruning decision (config artefacts.<name>.pruned_model), `advprune embed`
SIMULATION = "simulation"  # its config alone (section 5.2's toy model), `advprune toy`
CLAIMS = "claims"  # the tidy tables of the model grids that advprune/claims.yaml names, `advprune claims`

# The files an artefact writes, figures/<name>.<suffix>; each also writes figures/<name>.provenance.json.
FIGURE_FILES = ("pdf", "png")
TABLE_FILES = ("pdf", "png", "csv", "tex", "md")
CLAIMS_FILES = ("csv", "md")

# The module that runs a kind's command and calls the builder (besides the builder's own module).
_ENTRY_MODULES = {MODEL_GRID: "advprune.report.render"}


@dataclass(frozen=True)
class Artefact:
    name: str
    kind: str
    # "module:function". A model grid's builder takes the rows of its tidy table and returns a matplotlib Figure
    # (figures) or (blocks, values) (tables: advprune.report.tables); other kinds' builders write their files.
    builder: str
    files: tuple[str, ...] = FIGURE_FILES
    # Model grids: the rows of one schedule_after_pruning (the config's) only; False: of every schedule present.
    one_schedule: bool = True
    # Config keys of artefacts.<name> handed to a data artefact's builder as options, e.g. n_points -> --n-points.
    options: tuple[str, ...] = ()
    # Files of the package, besides its modules, that the builder reads (their edits redraw the artefact).
    package_data: tuple[str, ...] = ()
    # Other outputs than figures/<name>.*, by name: the toy model's per-seed rows.
    extra_outputs: dict[str, str] = field(default_factory=dict)
    # A job of its own under a cluster executor, with these resources; otherwise it runs in the main process.
    resources: dict[str, int] = field(default_factory=dict)
    # config artefacts.<name> when the config has none: a new artefact's grid can live beside its entry.
    default_config: dict[str, Any] | None = None

    @property
    def is_table(self) -> bool:
        return "csv" in self.files

    @property
    def rule(self) -> str:
        """Its Snakemake rule: draw_<name> for a figure, tabulate_<name> for a table, simulate_<name>."""
        verb = "simulate" if self.kind == SIMULATION else "tabulate" if self.is_table else "draw"
        return f"{verb}_{self.name}"

    @property
    def caption(self) -> str:
        """The report caption, relative to the checkout (a Jinja template filled from the config)."""
        return f"captions/{self.name}.rst"

    def report_category(self, suffix: str) -> str:
        """The section of the HTML report that shows its file of this suffix (a table's CSV, the toy's figure)."""
        if self.kind == CLAIMS:
            return "Claims"
        return "Tables" if suffix == "csv" or self.rule.startswith("tabulate_") else "Figures"

    @property
    def paths(self) -> dict[str, str]:
        return {suffix: f"figures/{self.name}.{suffix}" for suffix in self.files}

    @property
    def code_modules(self) -> list[str]:
        """The modules whose imports (advprune.imports) are the code its rule depends on: the kind's entry module and
        the builder's module (loaded by name, so no import statement leads to it)."""
        return list(dict.fromkeys([*filter(None, [_ENTRY_MODULES.get(self.kind)]), self.builder_module]))

    @property
    def builder_module(self) -> str:
        return self.builder.partition(":")[0]

    def load_builder(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.builder_module), self.builder.partition(":")[2])


def _figure(name: str, builder: str, **more: Any) -> Artefact:
    return Artefact(name, MODEL_GRID, f"advprune.report.figures:{builder}", **more)


def _table(name: str, builder: str, **more: Any) -> Artefact:
    return Artefact(name, MODEL_GRID, f"advprune.report.tables:{builder}", TABLE_FILES, **more)


# artefacts.toy's keys, each an option of `advprune toy` (advprune.toy.ToyParameters)
_TOY_OPTIONS = ("d", "p_R", "p_robust", "p_fragile", "n", "eps_over_eta", "steps", "lr", "keep", "strategies", "seeds")
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
    Artefact("fig8", DATA, "advprune.report.embedding:run_fig8", options=("n_points", "seed"), resources=_T_SNE),
    Artefact("table2", DATA, "advprune.report.embedding:run_table2", TABLE_FILES, resources=_T_SNE),
    Artefact("toy", SIMULATION, "advprune.report.toy:run_toy", TABLE_FILES, options=_TOY_OPTIONS,
             extra_outputs={"runs": "results/artefacts/toy.csv"}),  # fmt: skip
    Artefact("claims", CLAIMS, "advprune.report.claims:run_claims", CLAIMS_FILES,
             package_data=("claims.yaml", "claims-v1.yaml")),
)
BY_NAME: dict[str, Artefact] = {artefact.name: artefact for artefact in ARTEFACTS}


def names(*kinds: str) -> tuple[str, ...]:
    """The artefacts of these kinds (all, without a kind), in the registry's order."""
    return tuple(a.name for a in ARTEFACTS if not kinds or a.kind in kinds)


def get(name: str, *kinds: str) -> Artefact:
    """The entry of `name`; a ValueError naming the known ones when there is none (of these kinds)."""
    artefact = BY_NAME.get(name)
    if artefact is None or (kinds and artefact.kind not in kinds):
        raise ValueError(f"unknown artefact {name!r}; known: {', '.join(names(*kinds))}")
    return artefact


def with_default_configs(artefacts_config: dict[str, Any]) -> dict[str, Any]:
    """config artefacts.* completed with the entries' default_config where the config names none."""
    defaults = {a.name: copy.deepcopy(a.default_config) for a in ARTEFACTS if a.default_config is not None}
    return {**defaults, **artefacts_config}
