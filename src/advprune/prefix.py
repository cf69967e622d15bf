"""A seed's first e full-data epochs, trained once: the prefix that every pruned model pruning at epoch e forks from.

Before it prunes, a pruned model trains on the full data, and those epochs depend on the dataset, the settings, the
precision, the seed and the schedule policy (`rescale` and `fixed` give the same learning rates before pruning, but
not always to the last bit), never on the strategy or the keep. So one prefix per (dataset, precision, schedule, e,
seed) holds the whole training state after epoch e (weights, optimiser, schedule position, every RNG), and each fork
starts from it through the code that resumes a run: on the CPU a fork is bit for bit the model trained from scratch.

e = 0 has no prefix: there is nothing to share but the initialisation, which the seed alone gives.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from advprune.identity import FULL, ModelKey
from advprune.runtime import RunFailure, write_json

# torch is imported where a prefix is read or written: the workflow plans with PrefixKey, and its DAG is built
# without torch.
if TYPE_CHECKING:
    import numpy as np
    import torch

    from advprune.training import Trainer

_log = logging.getLogger(__name__)

PREFIX_ROOT = "results/prefixes"
# As Snakemake wildcards and as str.format fields, like identity.MODEL_DIRECTORY.
PREFIX_DIRECTORY = PREFIX_ROOT + "/{dataset}/{precision}/{schedule}_e{epoch}/seed{seed}"
PREFIX_FILE = "prefix.pt"
# Written into a fork's directory before its first checkpoint, and kept: the workflow reads it to know that an
# unfinished run (one with a resume.pt) started from a prefix (advprune.prefix.started_from_prefix).
FORK_RECORD = "fork.json"


class DamagedPrefix(RunFailure):
    """A prefix file that cannot be read as one: removed, so that the next run of the workflow rebuilds it (or, where
    forks of it are trained already, trains the fork that refused it from scratch: rules/prefix.smk)."""


class ForeignPrefix(ValueError):
    """A whole prefix of another run, settings or epoch: refused and left as it is (as a foreign resume.pt is)."""


@dataclass(frozen=True)
class PrefixKey:
    dataset: str
    precision: str
    schedule: str
    epoch: int
    seed: int

    @classmethod
    def of(cls, key: ModelKey) -> "PrefixKey | None":
        """The prefix a model forks from; None for the full-data model and for pruning at epoch 0."""
        if not key.prunes or key.prune_epoch == 0:
            return None
        return cls(key.dataset, key.precision, key.schedule, key.prune_epoch, key.seed)

    @classmethod
    def from_args(cls, args: Any, settings: Mapping[str, Any]) -> "PrefixKey":
        """The key of `advprune prefix`'s parsed arguments and the settings they resolve to: the pair of `argv`."""
        return cls(args.dataset, settings["precision"], settings["schedule_after_pruning"], args.prune_epoch, args.seed)

    def argv(self) -> list[str]:
        """The words of `advprune prefix` that name this prefix; `from_args` reads them back."""
        return ["--dataset", self.dataset, "--prune-epoch", str(self.epoch), "--seed", str(self.seed),
                "--precision", self.precision, "--schedule-after-pruning", self.schedule]  # fmt: skip

    @property
    def directory(self) -> str:
        return PREFIX_DIRECTORY.format(dataset=self.dataset, precision=self.precision, schedule=self.schedule,
                                       epoch=self.epoch, seed=self.seed)  # fmt: skip

    @property
    def path(self) -> str:
        return f"{self.directory}/{PREFIX_FILE}"

    @property
    def full_key(self) -> ModelKey:
        """The run a prefix trains: the full-data model of its seed, stopped after `epoch` epochs."""
        return ModelKey.create(self.dataset, FULL, 1.0, None, self.seed, precision=self.precision)

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Refuse resolved settings that this prefix cannot be trained under (as ModelKey.check_settings): an epoch
        outside their training, or another precision or schedule after pruning than the key names."""
        if not 1 <= self.epoch < settings["epochs"]:
            raise ValueError(f"--prune-epoch must be in [1, {settings['epochs'] - 1}] for a prefix (training has "
                             f"{settings['epochs']} epochs; pruning at epoch 0 shares nothing), got {self.epoch}")
        if (self.precision, self.schedule) != (settings["precision"], settings["schedule_after_pruning"]):
            raise ValueError(f"prefix {self} does not match the settings' precision and schedule_after_pruning")


def prefix_trainer(key: PrefixKey, settings: dict[str, Any], x_train: "np.ndarray", y_train: "np.ndarray",
                   **trainer_options: Any) -> "Trainer":
    """The trainer of a prefix: the full-data run of its seed, under the schedule policy of its forks."""
    from advprune.training import Trainer

    key.check_settings(settings)
    trainer = Trainer(key.full_key, settings, x_train, y_train, **trainer_options)
    # Trainer names the full-data model's schedule `rescale` (it never prunes); the prefix's steps follow its forks'.
    trainer.settings = trainer.settings.replace(schedule_after_pruning=key.schedule)
    return trainer


def build_prefix(trainer: "Trainer", epoch: int) -> Path:
    """Train (or resume, or keep) the prefix in trainer.out_dir: its resume.pt becomes prefix.pt after `epoch`
    epochs, so a prefix job killed at any moment resumes like any training. A valid prefix.pt is kept; a damaged
    or foreign one is refused, said so in one line, and rebuilt."""
    path = trainer.out_dir / PREFIX_FILE
    if path.exists():
        try:
            read_prefix(path, trainer.identity_record(), epoch, trainer.device)
            _log.info("%s holds this prefix already", path)
            return path
        except ValueError as error:
            _log.warning("refused %s, rebuilding it: %s", path, " ".join(str(error).split()))
            path.unlink()
    if trainer.try_resume():
        _log.info("resuming the prefix after epoch %d", trainer.state.epoch)
    trainer.fit(stop_at=epoch)
    os.replace(trainer.resume_path, path)  # atomic: a prefix.pt is always whole
    return path


def prefix_identity(trainer: "Trainer") -> dict[str, Any]:
    """The identity (Trainer.identity_record) of the prefix a pruned run forks from: the full-data run of its seed under
    its own settings."""
    from advprune.checkpoint import run_identity

    # As the prefix job's own Trainer writes it (a full-data run's identity names one schedule; the prefix's own
    # schedule is in its path, PrefixKey).
    return run_identity(PrefixKey.of(trainer.key).full_key, trainer.settings, trainer.dataset_sha256)


def read_prefix(path: Path, identity: dict[str, Any], epoch: int, device: "torch.device") -> dict[str, Any]:
    """The prefix's checkpoint, checked to be whole, of the run `identity` (resume_state.read_checkpoint_of), and
    after `epoch` unpruned epochs: ForeignPrefix for a whole prefix of another run or epoch, ValueError for a damaged
    one, in one line."""
    from advprune.resume_state import ForeignCheckpoint, read_checkpoint_of

    try:
        checkpoint = read_checkpoint_of(path, identity, device)
    except ForeignCheckpoint:
        raise ForeignPrefix(f"{path} is the prefix of another run or other settings than this one's; it was left "
                            "untouched") from None
    state = checkpoint["state"]
    if state["epoch"] != epoch or state["kept"] is not None or len(state["history"]) != epoch:
        raise ForeignPrefix(f"{path} holds the state after epoch {state['epoch']}, not after the {epoch} full-data "
                            "epochs of this prefix")
    return checkpoint


def adopt_prefix(trainer: "Trainer", path: Path) -> dict[str, Any]:
    """Write a pruned run's resume.pt from its prefix (Trainer.fork_from resumes from it); returns the record that
    train.json keeps as `forked_from`. A prefix that cannot be read is removed (DamagedPrefix); one of another run
    is refused and left as it is."""
    from advprune.checkpoint import save_checkpoint

    path = Path(path)
    try:
        checkpoint = read_prefix(path, prefix_identity(trainer), trainer.key.prune_epoch, trainer.device)
    except ForeignPrefix:
        raise
    except ValueError as error:
        path.unlink(missing_ok=True)
        raise DamagedPrefix(f"refused a damaged prefix: {' '.join(str(error).split())}; it was removed, so running "
                            "the workflow again rebuilds it (or trains this model from scratch where other forks of it "
                            "are trained)") from None
    record = {"prefix": str(path), "epoch": trainer.key.prune_epoch,
              "weights_sha256": checkpoint["state"]["history"][-1]["weights_sha256"]}  # fmt: skip
    write_json(trainer.out_dir / FORK_RECORD, record)
    state = {**checkpoint["state"], "forked_from": record}
    save_checkpoint(trainer.resume_path, {**checkpoint, **trainer.identity_record(), "state": state, "complete": False})
    return record


def started_from_prefix(model_directory: str | os.PathLike) -> bool | None:
    """Whether a model's run forked from a prefix, from its files alone (read when the workflow plans): a finished
    one by its train.json, an unfinished one by its fork record; None for a run not begun yet (the workflow's plan
    decides). A model trained from scratch (every model trained before prefixes, among them) is left so: its rule's
    inputs stay the ones recorded for it, so it is not replanned; a fork keeps its prefix input as well."""
    directory = Path(model_directory)
    summary = directory / "train.json"
    if summary.exists():
        try:
            return json.loads(summary.read_text()).get("forked_from") is not None
        except ValueError:  # a damaged train.json: its model is not one to plan around
            return False
    if (directory / "resume.pt").exists() or (directory / "model.pt").exists():
        return (directory / FORK_RECORD).exists()
    return None
