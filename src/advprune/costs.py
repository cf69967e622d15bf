"""What a target costs: the models and evaluations it implies and their estimated GPU time."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from advprune.settings import resolve
from advprune.identity import FULL, ModelKey
from advprune.prefix import PrefixKey


@dataclass(frozen=True)
class Cost:
    models: int
    per_dataset: dict[str, int]
    # None where a dataset of the models has no timings (a plugin's, the demo's digits): its epochs still count.
    training_hours: float | None
    evaluation_hours: float | None
    # Training in full-data epochs (a pruned epoch counts its keep): every model from scratch, and as the workflow
    # trains them, each prefix's e epochs once for all its forks (advprune.prefix).
    epochs_from_scratch: float = 0.0
    epochs: float = 0.0

    @property
    def epochs_saved(self) -> float:
        return self.epochs_from_scratch - self.epochs

    @property
    def total_hours(self) -> float | None:
        if self.training_hours is None or self.evaluation_hours is None:
            return None
        return self.training_hours + self.evaluation_hours


def load_timings(path: str | Path | None = None, jobs_per_gpu: int = 1) -> dict[str, Any]:
    """The measured timings of docs/method.md (advprune/timings.yaml), a file of that layout, or the JSON of `advprune bench` read at
    `jobs_per_gpu` jobs per device."""
    from advprune.bench import SCHEMA, timings

    text = Path(path).read_text() if path else resources.files("advprune").joinpath("timings.yaml").read_text()
    data = yaml.safe_load(text)
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return timings(data, jobs_per_gpu, where=str(path))
    if jobs_per_gpu != 1:
        raise ValueError(f"--jobs-per-gpu {jobs_per_gpu} needs the JSON of `advprune bench` as --timings; "
                         f"{path or 'timings.yaml'} holds one-job timings")
    return data


def estimate(keys: Iterable[ModelKey], timings: dict[str, Any], n_examples: int, evaluated: bool = True) -> Cost:
    """A pruned run costs (e + (E - e) * keep) / E of a full one, less its first e epochs where it forks from a
    prefix, which costs e epochs once per (dataset, precision, schedule, e, seed); evaluation scales with
    n_examples. A prefix of one model saves nothing, so the estimate is the same where the workflow trains that
    model from scratch instead (it plans a prefix only where two or more models share it, plan.forks_by_prefix).
    Hours are None where a dataset has no timings (missing_timings names them)."""
    keys = list(keys)
    # Hours only where every dataset has timings: one without makes them None, so none are summed.
    seconds = None if missing_timings(keys, timings) else timings["datasets"]
    training = evaluation = from_scratch = trained = 0.0
    per_dataset: dict[str, int] = {}
    prefixes: set[PrefixKey] = set()
    for key in keys:
        epochs = resolve(key.dataset)["epochs"]
        share = 1.0 if key.strategy == FULL else (key.prune_epoch + (epochs - key.prune_epoch) * key.keep) / epochs
        prefix = PrefixKey.of(key)
        forked = epochs * share - (prefix.epoch if prefix else 0)
        if prefix is not None and prefix not in prefixes:
            prefixes.add(prefix)
            forked += prefix.epoch
        from_scratch, trained = from_scratch + epochs * share, trained + forked
        per_dataset[key.dataset] = per_dataset.get(key.dataset, 0) + 1
        if seconds is not None:
            training += seconds[key.dataset]["epoch_seconds"] * forked
            if evaluated:
                evaluation += seconds[key.dataset]["autoattack_seconds_per_1000"] * n_examples / 1000
    if seconds is None:
        return Cost(len(keys), per_dataset, None, None, from_scratch, trained)
    return Cost(len(keys), per_dataset, training / 3600, evaluation / 3600, from_scratch, trained)


def missing_timings(keys: Iterable[ModelKey], timings: dict[str, Any]) -> list[str]:
    """The datasets of these models that the timings do not cover, sorted."""
    return sorted({key.dataset for key in keys} - set(timings["datasets"]))
