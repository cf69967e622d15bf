"""The kinds of artefact, one class each: what an artefact is built from and so its models, its rule's inputs, its
command, its caption facts and its provenance.

- `ModelGrid`: a figure or table drawn from the tidy table of its grid's models (config artefacts.<name>);
- `DataArtefact`: fig8 / table2, from datasets and one model's pruning decision (artefacts.<name>.pruned_model);
- `Simulation`: section 5.2's toy model, from its config alone;
- `Claims`: the paper's claims against the tidy tables of the model grids that advprune/claims.yaml names.

Every kind has one command, `python -m advprune build <name> ...`: `arguments` writes its words from the config (a
params value of the rule, so a config edit that changes them reruns the artefact) and `add_arguments` reads them
back. `build` calls the entry's builder, which returns what to save (advprune.report.output.Built); the command
saves it and writes its provenance in one place (advprune.report.output.save_artefact).

No torch, scipy or pandas here: the Snakefile imports this at every start. Builders are loaded by name when a
command runs, so no import statement leads from here to them (advprune.imports follows every import statement, and a
rule's code inputs are its builder's modules alone).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from advprune.identity import PRECISIONS, ModelKey, sorted_keys
from advprune.report.labels import display_name, join_names, numbers_text, pruned_fraction, seeds_text, strategy_label
from advprune.schedules import SCHEDULES

if TYPE_CHECKING:
    from advprune.report.output import Built

# The files an artefact writes, figures/<name>.<suffix>; each also writes figures/<name>.provenance.json.
FIGURE_FILES = ("pdf", "png")
TABLE_FILES = ("pdf", "png", "csv", "tex", "md")
CLAIMS_FILES = ("csv", "md")


# -- how the config describes an artefact ------------------------------------------------------------------------


def seeds_of(value: int | list[int]) -> list[int]:
    """`seeds: 5` means seeds 0..4; a list names them (adding one trains only that one)."""
    return list(range(value)) if isinstance(value, int) else list(value)


def active_roles(config: dict[str, Any]) -> list[str]:
    """The roles this run builds: config `roles`, or every role of `datasets`."""
    return config.get("roles") or list(config["datasets"])


def per_role(value: Any, role: str) -> Any:
    """A grid value given once for every role, or per role as a mapping."""
    return value[role] if isinstance(value, dict) else value


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def data_file(config: dict[str, Any], dataset: str) -> str:
    """A dataset's canonical file, as rules/data.smk writes it (`dataset` may be the `{dataset}` wildcard)."""
    return str(Path(config["data_root"], f"{dataset}.npz"))


def artefact_table(name: str) -> str:
    """A model grid's tidy table, one row per model of its grid (rules/aggregate.smk); `name` may be a wildcard."""
    return f"results/artefacts/{name}.csv"


def _selection_words(config: dict[str, Any]) -> list[str]:
    return ["--schedule", config["schedule_after_pruning"], "--precision", config["precision"]]


def _add_selection(parser: argparse.ArgumentParser) -> None:
    """The rows a model grid or the claims read: pruned runs of one schedule and runs of one precision."""
    parser.add_argument("--schedule", default="rescale", choices=SCHEDULES, help="pruned runs of this schedule")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="runs of this precision")


# -- the kinds -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artefact:
    """An entry of the registry. Its kind (the subclass) says what it is built from."""

    name: str
    # "module:function", loaded by name when the artefact is built; its arguments are its kind's, and it returns
    # what to save: a matplotlib Figure, a table as (blocks, values) (advprune.report.tables), or a Built.
    builder: str
    files: tuple[str, ...] = FIGURE_FILES
    # Config keys of artefacts.<name> passed on to its builder as options, e.g. n_points -> --n-points.
    options: tuple[str, ...] = ()
    # Files of the package, besides its modules, that the builder reads (their edits rebuild the artefact).
    package_data: tuple[str, ...] = ()
    # Other outputs than figures/<name>.*, by name (an option of its command): the toy model's per-seed rows.
    extra_outputs: dict[str, str] = field(default_factory=dict)
    # A job of its own under a cluster executor, with these resources; otherwise it runs in the main process.
    resources: dict[str, int] = field(default_factory=dict)
    # config artefacts.<name> when the config has none: a new artefact's grid can live beside its entry.
    default_config: dict[str, Any] | None = None

    # Whether `advprune cost` counts its models' evaluations (a data artefact reads one model's pruning only).
    evaluated: ClassVar[bool] = True
    # The module that reads the kind's inputs and calls the builder, where it is not the builder's own module.
    entry_module: ClassVar[str | None] = None
    # Whether the keeps of its config (keep, pruned_model.keep) are those of trained models, which their directories
    # name (advprune.plan checks that a directory name can hold them).
    keeps_name_models: ClassVar[bool] = True

    # -- files and rule ---------------------------------------------------------------------------------------------

    @property
    def writes_csv(self) -> bool:
        """Whether its files include figures/<name>.csv, its table as data (a table, the claims, the toy): its rule
        is then tabulate_<name> rather than draw_<name> (a kind may name its rule otherwise: simulate_<name>)."""
        return "csv" in self.files

    @property
    def rule(self) -> str:
        """Its Snakemake rule: draw_<name> for a figure, tabulate_<name> for a table (Simulation overrides it)."""
        return f"{'tabulate' if self.writes_csv else 'draw'}_{self.name}"

    @property
    def caption(self) -> str:
        """The report caption, relative to the checkout (a Jinja template filled from `caption_facts`)."""
        return f"captions/{self.name}.rst"

    def report_category(self, suffix: str) -> str:
        """The section of the HTML report that shows its file of this suffix (a table's CSV, the toy's figure)."""
        return "Tables" if suffix == "csv" or self.rule.startswith("tabulate_") else "Figures"

    @property
    def paths(self) -> dict[str, str]:
        return {suffix: f"figures/{self.name}.{suffix}" for suffix in self.files}

    @property
    def main_file(self) -> str:
        """The file its command names with --out (its first: the PDF, or the claims' CSV); the others lie beside."""
        return self.paths[self.files[0]]

    @property
    def targets(self) -> list[str]:
        """The files `snakemake <name>` asks for (a figure's PNG comes with its PDF)."""
        return [path for suffix, path in self.paths.items() if suffix != "png"]

    @property
    def code_modules(self) -> list[str]:
        """The modules whose imports (advprune.imports) are the code its rule depends on: the kind's entry module and
        the builder's module (loaded by name, so no import statement leads to it)."""
        return list(dict.fromkeys(filter(None, [self.entry_module, self.builder_module])))

    @property
    def builder_module(self) -> str:
        return self.builder.partition(":")[0]

    def load_builder(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.builder_module), self.builder.partition(":")[2])

    # -- planning ---------------------------------------------------------------------------------------------------

    def roles(self, config: dict[str, Any]) -> list[str]:
        """The roles it covers in this run: its own `roles`, restricted to the config's top-level `roles`."""
        return [role for role in config["artefacts"][self.name].get("roles", []) if role in active_roles(config)]

    def is_built(self, config: dict[str, Any]) -> bool:
        """Whether this configuration builds it (`all`): it has a role left."""
        return bool(self.roles(config))

    def models(self, config: dict[str, Any]) -> list[ModelKey]:
        """The trained models it is built from."""
        return []

    def check_config(self, config: dict[str, Any]) -> None:
        """Refuse (ValueError naming the key) what the JSON schema cannot say about its config artefacts.<name> and
        only its kind knows; advprune.plan.check_config calls it, after the checks every kind shares, for each
        artefact the config names. Nothing by default."""

    # -- its rule and command ---------------------------------------------------------------------------------------

    def inputs(self, config: dict[str, Any]) -> dict[str, Any]:
        """Its rule's inputs besides its code (rules/common.smk adds that)."""
        return {}

    def command(self, config: dict[str, Any]) -> list[str]:
        """The `python -m advprune` words of its rule: its kind's arguments, then where its files go."""
        extra = [word for name, path in self.extra_outputs.items() for word in (f"--{name}", path)]
        return ["build", self.name, *self.arguments(config), *extra, "--out", self.main_file]

    def arguments(self, config: dict[str, Any]) -> list[str]:
        """Its kind's words of `build <name>`, all known from the config: what `add_arguments` reads back."""
        return self._option_words(config)

    def _option_words(self, config: dict[str, Any]) -> list[str]:
        """The entry's options from config artefacts.<name>, as `--n-points 500` (a list gives several values; `seeds`
        as a count means 0..n-1)."""
        spec, words = config["artefacts"][self.name], []
        for key in self.options:
            value = seeds_of(spec[key]) if key == "seeds" else spec[key]
            words += [f"--{key.replace('_', '-')}", *map(str, as_list(value))]
        return words

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The options of `advprune build <name>`."""
        beside = ", ".join(self.files[1:])
        parser.add_argument("--out", type=Path, required=True, help=f"its .{self.files[0]}; its other files "
                            f"({beside + ', ' if beside else ''}provenance.json) are written beside it")
        for name in self.extra_outputs:
            parser.add_argument(f"--{name}", type=Path, required=True, help=f"CSV of its {name}")

    def build(self, args: argparse.Namespace) -> Built:
        """What to save, from the parsed options of `build <name>` (the builder's work)."""
        raise NotImplementedError

    # -- its report caption -----------------------------------------------------------------------------------------

    def caption_facts(self, config: dict[str, Any]) -> dict[str, Any]:
        """What its caption states about the run (advprune.report.captions)."""
        return run_facts(config, self.roles(config))


def run_facts(config: dict[str, Any], roles: list[str]) -> dict[str, Any]:
    """The run's settings in words, as every caption may state them."""
    return {
        "datasets": join_names([display_name(config["datasets"][r]) for r in roles]) if roles else "none",
        "n_examples": config["n_examples"],
        "precision": config["precision"],
        "schedule": config["schedule_after_pruning"],
        "device": config["device"],
    }


@dataclass(frozen=True)
class ModelGrid(Artefact):
    """Drawn from the tidy table of its grid's models (config artefacts.<name>): its builder takes the table's rows."""

    # The rows of the config's schedule_after_pruning only; False: of every schedule present.
    one_schedule: bool = True

    entry_module: ClassVar[str] = "advprune.report.render"

    def models(self, config: dict[str, Any]) -> list[ModelKey]:
        """Every model its grid names, deduplicated and sorted."""
        spec = config["artefacts"][self.name]
        keys = {
            ModelKey.create(config["datasets"][role], strategy, keep, epoch, seed, precision=config["precision"],
                            schedule=schedule)
            for role in self.roles(config)
            for strategy in spec["strategies"]
            for keep in as_list(per_role(spec["keep"], role))
            for epoch in as_list(per_role(spec["prune_epoch"], role))
            for schedule in spec.get("schedules", [config["schedule_after_pruning"]])
            for seed in self.seeds(config)
        }  # fmt: skip
        return sorted_keys(keys)

    def seeds(self, config: dict[str, Any]) -> list[int]:
        """Its seeds, capped at the first `seeds_max` (a budget knob: raising it later trains only the rest)."""
        seeds = seeds_of(config["artefacts"][self.name]["seeds"])
        cap = config.get("seeds_max")
        return seeds if cap is None else seeds[:cap]

    def inputs(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"table": artefact_table(self.name)}

    def arguments(self, config: dict[str, Any]) -> list[str]:
        return ["--table", artefact_table(self.name), *_selection_words(config)]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--table", type=Path, required=True, help="tidy CSV from `collect`")
        parser.add_argument("--prune-epoch", type=int, help="only pruned runs of this epoch, for a subset drawn by "
                            "hand (default: every row of the table, as the workflow draws it)")
        _add_selection(parser)
        super().add_arguments(parser)

    def build(self, args: argparse.Namespace) -> Built:
        render = importlib.import_module(self.entry_module)
        return render.build_grid(self, args.table, schedule=args.schedule, precision=args.precision,
                                 prune_epoch=args.prune_epoch)  # fmt: skip

    def caption_facts(self, config: dict[str, Any]) -> dict[str, Any]:
        spec, roles = config["artefacts"][self.name], self.roles(config)
        return super().caption_facts(config) | {
            "strategies": join_names([strategy_label(s) for s in spec["strategies"]]),
            "keep": _per_role_text(config, roles, spec["keep"]),
            "prune_epoch": _per_role_text(config, roles, spec["prune_epoch"]),
            "seeds": seeds_text(self.seeds(config)),
            "models": len(self.models(config)),
        }


def _per_role_text(config: dict[str, Any], roles: list[str], value: Any) -> str:
    """'3', '1, 3' or, for a per-role mapping, 'MNIST: 1, 2; CIFAR-10: 1, 3'."""
    if isinstance(value, dict):
        return "; ".join(f"{display_name(config['datasets'][r])}: {_per_role_text(config, roles, value[r])}"
                         for r in roles)  # fmt: skip
    return numbers_text(as_list(value))


# fig8's options in `build fig8`: (type, help)
_DATA_OPTIONS = {
    "n_points": (int, "seeded subsample per panel (default 5000)"),
    "seed": (int, "seed of the subsample and of PCA + t-SNE, not a model's (default 0)"),
}


def _variant(text: str) -> tuple[str, Path, Path | None]:
    """NAME=DATA[:PRUNING] -> (name, canonical .npz, pruning.npz or None)."""
    name, sep, files = text.partition("=")
    if not sep or not files:
        raise ValueError(f"--variant {text!r} is not of the form NAME=DATA[:PRUNING]")
    data, _, pruning = files.partition(":")
    return name, Path(data), Path(pruning) if pruning else None


@dataclass(frozen=True)
class DataArtefact(Artefact):
    """Built from the canonical data of each of its roles and the kept set of one model (artefacts.<name>.pruned_model);
    its builder takes the variants (name, data, pruning or None) and its options."""

    evaluated: ClassVar[bool] = False

    def is_built(self, config: dict[str, Any]) -> bool:
        """Only with its pruned model's role too."""
        return super().is_built(config) and self._spec(config)["role"] in active_roles(config)

    def _spec(self, config: dict[str, Any]) -> dict[str, Any]:
        return config["artefacts"][self.name]["pruned_model"]

    def pruned_model(self, config: dict[str, Any]) -> ModelKey:
        """The one model whose kept set it shows as "pruned"."""
        spec = self._spec(config)
        return ModelKey.create(
            config["datasets"][spec["role"]], spec["strategy"], spec["keep"], spec["prune_epoch"], spec["seed"],
            precision=config["precision"], schedule=config["schedule_after_pruning"],
        )

    def models(self, config: dict[str, Any]) -> list[ModelKey]:
        return [self.pruned_model(config)]

    def inputs(self, config: dict[str, Any]) -> dict[str, Any]:
        datasets = [config["datasets"][role] for role in self.roles(config)]
        return {"data": [data_file(config, d) for d in datasets], "pruning": self._pruning(config)}

    def _pruning(self, config: dict[str, Any]) -> str:
        return f"{self.pruned_model(config).directory}/pruning.npz"

    def arguments(self, config: dict[str, Any]) -> list[str]:
        """One `--variant NAME=DATA[:PRUNING]` per panel/row: each role's dataset, plus the pruned model's kept set
        right after the dataset it was trained on."""
        pruned, words = self.pruned_model(config), []
        for role in self.roles(config):
            dataset = config["datasets"][role]
            words += ["--variant", f"{dataset}={data_file(config, dataset)}"]
            if dataset == pruned.dataset:
                words += ["--variant", f"{dataset} pruned={data_file(config, dataset)}:{self._pruning(config)}"]
        return words + super().arguments(config)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--variant", action="append", required=True, metavar="NAME=DATA[:PRUNING]",
                            help="a panel/row: '<dataset>=<canonical.npz>' or "
                            "'<dataset> pruned=<canonical.npz>:<pruning.npz>'")
        for key in self.options:
            kind, text = _DATA_OPTIONS[key]
            parser.add_argument(f"--{key.replace('_', '-')}", type=kind, help=text)
        super().add_arguments(parser)

    def build(self, args: argparse.Namespace) -> Built:
        given = {key: getattr(args, key) for key in self.options if getattr(args, key) is not None}
        return self.load_builder()([_variant(text) for text in args.variant], **given)

    def caption_facts(self, config: dict[str, Any]) -> dict[str, Any]:
        spec, model = config["artefacts"][self.name], self._spec(config)
        return super().caption_facts(config) | {
            "n_points": spec.get("n_points", 5000),
            "seed": spec["seed"],
            "pruned": (
                f"{display_name(config['datasets'][model['role']])} as kept by {strategy_label(model['strategy'])} "
                f"pruning at keep {model['keep']:g} (p = {pruned_fraction(model['keep'])}), pruned after "
                f"{model['prune_epoch']} epochs, seed {model['seed']}"
            ),
        }


@dataclass(frozen=True)
class Simulation(Artefact):
    """Built from its config alone (section 5.2's toy model: the fields of advprune.toy_parameters.ToyParameters are
    its options)."""

    evaluated: ClassVar[bool] = False
    keeps_name_models: ClassVar[bool] = False  # its keeps are the simulation's fractions: no directory names them

    @property
    def rule(self) -> str:
        return f"simulate_{self.name}"

    def check_config(self, config: dict[str, Any]) -> None:
        """Its parameters, checked as the simulation checks them (advprune.toy_parameters), before any job runs."""
        from advprune.toy_parameters import ToyParameters

        ToyParameters.from_config(config["artefacts"][self.name]).check(f"artefacts.{self.name}")

    def is_built(self, config: dict[str, Any]) -> bool:
        """Whenever the config has its parameters: it needs no dataset."""
        return self.name in config["artefacts"]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from advprune.toy_parameters import ToyParameters

        # One option per field of ToyParameters, its default (config.yaml's artefacts.toy) and its help; a tuple
        # field takes several values of its elements' type.
        for option in dataclasses.fields(ToyParameters):
            default, flag = option.default, "--" + option.name.replace("_", "-")
            several = isinstance(default, tuple)
            parser.add_argument(flag, dest=option.name, type=type(default[0] if several else default),
                                nargs="+" if several else None, default=list(default) if several else default,
                                help=option.metadata["help"])  # fmt: skip
        super().add_arguments(parser)

    def build(self, args: argparse.Namespace) -> Built:
        from advprune.toy_parameters import ToyParameters

        values = {key: getattr(args, key) for key in self.options}
        params = ToyParameters(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})
        params.check()  # before the simulation
        return self.load_builder()(params, **{name: getattr(args, name) for name in self.extra_outputs})


MAX_RESAMPLES = 1_000_000  # bootstrap resamples: 10^11 ran out of memory


@functools.cache
def _claimed_artefacts() -> frozenset[str]:
    """The artefacts advprune/claims.yaml's claims read, read once: the Snakefile asks for them several times."""
    from advprune.report.claim_rules import load_claims

    return frozenset(claim.artefact for claim in load_claims())


@dataclass(frozen=True)
class Claims(Artefact):
    """Built from the tidy tables of the model grids that its rules (advprune/claims.yaml) name and this
    configuration builds; claims on the others are reported as not measured."""

    files: tuple[str, ...] = CLAIMS_FILES  # its table's own layout: CSV and Markdown (its `Built.markdown`)

    def report_category(self, suffix: str) -> str:
        return "Claims"

    def roles(self, config: dict[str, Any]) -> list[str]:
        """Every role this run builds."""
        return active_roles(config)

    def is_built(self, config: dict[str, Any]) -> bool:
        return True

    def read_artefacts(self, config: dict[str, Any]) -> list[str]:
        """The model grids its claims read that this configuration builds."""
        from advprune import plan  # the planner imports the registry, which imports this module

        return sorted(_claimed_artefacts() & set(plan.built_artefacts(config)))

    def models(self, config: dict[str, Any]) -> list[ModelKey]:
        from advprune import artefacts  # the registry, which imports this module

        names = self.read_artefacts(config)
        return sorted_keys({key for name in names for key in artefacts.get(name).models(config)})

    def inputs(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"tables": [artefact_table(name) for name in self.read_artefacts(config)]}

    def arguments(self, config: dict[str, Any]) -> list[str]:
        return [
            *(f"--table={name}={artefact_table(name)}" for name in self.read_artefacts(config)),
            *(f"--role={role}={config['datasets'][role]}" for role in config["roles"]),
            *_selection_words(config),
        ]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--table", action="append", default=[], metavar="ARTEFACT=CSV",
                            help="an artefact's tidy CSV, e.g. table1=results/artefacts/table1.csv (repeatable)")
        parser.add_argument("--role", action="append", default=[], metavar="ROLE=DATASET",
                            help="the dataset standing in for the paper's, e.g. mnist=digits-mnist (repeatable)")
        _add_selection(parser)
        parser.add_argument("--rules", default="v2", choices=["v1", "v2"],
                            help="the verdict rules: v2 (claims.yaml, the default) or the first rules, v1 "
                            "(claims-v1.yaml)")
        parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
        parser.add_argument("--seed", type=int, default=0, help="the bootstrap intervals' seed (not a model's)")
        super().add_arguments(parser)

    def build(self, args: argparse.Namespace) -> Built:
        if not 100 <= args.resamples <= MAX_RESAMPLES:  # below: too coarse a 95% interval; above: out of memory
            raise ValueError(f"--resamples must be in [100, {MAX_RESAMPLES}] (at least 100 for a 95% interval), "
                             f"got {args.resamples}")
        from advprune.cli import parse_pairs

        tables = {name: Path(path) for name, path in parse_pairs(args.table, "--table").items()}
        roles = parse_pairs(args.role, "--role")
        return self.load_builder()(tables, roles, schedule=args.schedule, precision=args.precision,
                                   n_resamples=args.resamples, seed=args.seed, rules=args.rules)  # fmt: skip

    def caption_facts(self, config: dict[str, Any]) -> dict[str, Any]:
        from advprune import plan  # the planner imports the registry, which imports this module

        return super().caption_facts(config) | {"models": len(plan.all_models(config)),
                                                "seeds_max": config.get("seeds_max")}
