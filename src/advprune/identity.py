"""What identifies a trained model, written once: its key, the directory it lives in, its evaluation file.

A model's directory names every setting that changes its weights: dataset, precision, strategy, keep, pruning
epoch, schedule after pruning and seed. Every keep = 1.0 request is the one full-data model of its dataset, precision
and seed (strategy `FULL`, no pruning epoch, no schedule), so no model is trained twice. The planner
(`advprune.plan`), the trainer, the aggregator and the report all take these names from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from advprune.pruning import STRATEGIES
from advprune.schedules import SCHEDULES

PRECISIONS = ("fp32", "bf16")  # the precision directory of a model: fp32, or bf16 autocast
FULL = "full"  # the strategy name of the full-data model, whatever strategy or epoch a keep = 1.0 request named
MODEL_ROOT = "results/models"
# As Snakemake wildcards and as str.format fields: the workflow's rules and ModelKey.directory use the same text.
MODEL_DIRECTORY = MODEL_ROOT + "/{dataset}/{precision}/{run}/seed{seed}"
EVALUATION_FILE = "autoattack-n{n}.json"  # AutoAttack on the first n test points, in the model's directory
# What `train` writes in a run directory (and its lock and epoch checkpoint): no other command may write over them.
RUN_FILES = ("model.pt", "train.json", "pruning.npz", "resume.pt", ".train.lock")


def normalise_keep(keep: float) -> float:
    """A keep as the model's directory writes it (`:g`, six significant digits): 0.30000000000000004 and 0.3 are one
    keep, and a key never holds more digits than its path."""
    return float(f"{float(keep):g}")


@dataclass(frozen=True, order=True)
class ModelKey:
    """One trained model: the settings its directory names. Build it with `create` (or `from_run_name`), which
    validates and maps every keep = 1.0 request onto the full-data model."""

    dataset: str
    precision: str
    strategy: str
    keep: float
    prune_epoch: int | None
    schedule: str | None
    seed: int

    @classmethod
    def create(
        cls, dataset: str, strategy: str, keep: float, prune_epoch: int | None, seed: int, *,
        precision: str = "fp32", schedule: str | None = "rescale", epochs: int | None = None,
    ) -> "ModelKey":
        """Validate (with `epochs`, the pruning epoch against the training's length) and normalise."""
        if not 0 < keep <= 1:
            raise ValueError(f"--keep must be in (0, 1], got {keep}")
        if seed < 0:
            raise ValueError(f"--seed must be >= 0, got {seed}")
        keep = normalise_keep(keep)
        if keep == 1.0:
            return cls(dataset, precision, FULL, 1.0, None, None, int(seed))
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown --strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
        if prune_epoch is None:
            span = f" in [0, {epochs - 1}] (training has {epochs} epochs; " if epochs else " ("
            raise ValueError(
                f"--keep {keep:g} prunes: pass --prune-epoch E, the full-data epochs before pruning, an integer"
                f"{span}the paper's Table 1 uses 3), or --keep 1.0"
            )
        if epochs is not None and not 0 <= prune_epoch < epochs:
            raise ValueError(
                f"--prune-epoch must be in [0, {epochs - 1}] (training has {epochs} epochs), got {prune_epoch}"
            )
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule after pruning must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        return cls(dataset, precision, strategy, keep, int(prune_epoch), schedule, int(seed))

    @classmethod
    def from_settings(
        cls, dataset: str, strategy: str, keep: float, prune_epoch: int | None, seed: int, settings: dict[str, Any],
    ) -> "ModelKey":
        """The key of a training with these resolved settings (advprune.settings.resolve): their precision, schedule
        after pruning and number of epochs."""
        return cls.create(dataset, strategy, keep, prune_epoch, seed, precision=settings["precision"],
                          schedule=settings["schedule_after_pruning"], epochs=settings["epochs"])  # fmt: skip

    @classmethod
    def from_run_name(cls, dataset: str, precision: str, run: str, seed: int | str) -> "ModelKey":
        """The key of a model directory's parts (the workflow's wildcards): `run` is `full` or
        `<strategy>_keep<keep>_e<epoch>_<schedule>`."""
        if run == FULL:
            return cls.create(dataset, FULL, 1.0, None, int(seed), precision=precision)
        match = re.fullmatch(r"(?P<strategy>.+)_keep(?P<keep>[0-9.]+)_e(?P<epoch>\d+)_(?P<schedule>\w+)", run)
        if match is None:
            raise ValueError(f"not a run name: {run!r}")
        return cls.create(dataset, match["strategy"], float(match["keep"]), int(match["epoch"]), int(seed),
                          precision=precision, schedule=match["schedule"])  # fmt: skip

    @classmethod
    def from_args(cls, args: Any, settings: Mapping[str, Any]) -> "ModelKey":
        """The key of `advprune train`'s parsed arguments (the words of `argv`, with any others the command takes)
        and the settings they resolve to: the pair of `argv`, tested on every model of the paper's plan."""
        return cls.from_settings(args.dataset, args.strategy, args.keep, args.prune_epoch, args.seed, settings)

    def argv(self) -> list[str]:
        """The words of `advprune train` that name this model; `from_args` reads them back. The full-data model says
        `--strategy random --keep 1.0`, as every command of a finished model has (a changed word is a changed
        params value, which would make Snakemake train it again)."""
        words = [
            "--dataset", self.dataset, "--strategy", self.strategy if self.prunes else "random",
            "--keep", str(self.keep), "--seed", str(self.seed), "--precision", self.precision,
        ]  # fmt: skip
        if self.prunes:
            words += ["--prune-epoch", str(self.prune_epoch), "--schedule-after-pruning", self.schedule]
        return words

    @property
    def prunes(self) -> bool:
        return self.strategy != FULL

    @property
    def run(self) -> str:
        """The directory part that names strategy, keep, pruning epoch and schedule."""
        if not self.prunes:
            return FULL
        return f"{self.strategy}_keep{self.keep:g}_e{self.prune_epoch}_{self.schedule}"

    @property
    def directory(self) -> str:
        return MODEL_DIRECTORY.format(dataset=self.dataset, precision=self.precision, run=self.run, seed=self.seed)

    def evaluation_file(self, n_examples: int) -> str:
        return f"{self.directory}/{EVALUATION_FILE.format(n=n_examples)}"

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Refuse resolved settings (advprune.settings.resolve) of another precision or schedule after pruning than
        the key names: training them into its directory would give that directory another model."""
        schedule = settings["schedule_after_pruning"] if self.prunes else None
        if (self.precision, self.schedule) != (settings["precision"], schedule):
            raise ValueError(
                f"model {self.run} ({self.precision}, schedule {self.schedule}) does not match the settings' precision "
                f"{settings['precision']!r} and schedule_after_pruning {settings['schedule_after_pruning']!r}; build "
                "the key with ModelKey.from_settings"
            )

    def checkpoint_fields(self) -> dict[str, Any]:
        """What a checkpoint stores as its run (its settings hold precision and schedule): a resumed or evaluated
        checkpoint must match these. The same five fields as every checkpoint written so far."""
        return {"dataset": self.dataset, "strategy": self.strategy, "keep": self.keep,
                "prune_epoch": self.prune_epoch, "seed": self.seed}  # fmt: skip

    def sort_key(self) -> tuple:
        """Dataset, precision, strategy, keep, epoch, schedule, seed; the full-data model's missing parts first."""
        return (self.dataset, self.precision, self.strategy, self.keep, -1 if self.prune_epoch is None else
                self.prune_epoch, self.schedule or "", self.seed)  # fmt: skip


def sorted_keys(keys: Iterable[ModelKey]) -> list[ModelKey]:
    return sorted(set(keys), key=ModelKey.sort_key)


def run_pattern(strategies: Iterable[str] = STRATEGIES) -> str:
    """Regex for a run name (the workflow's {run} wildcard), built from the strategy registry, so a plugin's
    strategy needs no edit here."""
    names = "|".join(re.escape(name) for name in strategies)
    return rf"{FULL}|(?:{names})_keep0?\.\d+_e\d+_(?:{'|'.join(SCHEDULES)})"
