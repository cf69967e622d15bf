"""What a target costs: the models and evaluations it implies and their estimated GPU time."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml

from advprune.settings import resolve
from advprune.identity import FULL, ModelKey


@dataclass(frozen=True)
class Cost:
    models: int
    per_dataset: dict[str, int]
    training_hours: float
    evaluation_hours: float

    @property
    def total_hours(self) -> float:
        return self.training_hours + self.evaluation_hours


def load_timings(path: str | Path | None = None, jobs_per_gpu: int = 1) -> dict[str, Any]:
    """SPEC's timings (advprune/timings.yaml), a file of that layout, or the JSON of `advprune bench` read at
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
    """A pruned run costs (e + (E - e) * keep) / E of a full one; evaluation scales with n_examples."""
    keys = list(keys)
    training = evaluation = 0.0
    per_dataset: dict[str, int] = {}
    for key in keys:
        if key.dataset not in timings["datasets"]:
            raise ValueError(f"no timings for dataset {key.dataset!r}; known: {', '.join(timings['datasets'])}")
        timing = timings["datasets"][key.dataset]
        epochs = resolve(key.dataset)["epochs"]
        share = 1.0 if key.strategy == FULL else (key.prune_epoch + (epochs - key.prune_epoch) * key.keep) / epochs
        training += timing["epoch_seconds"] * epochs * share
        if evaluated:
            evaluation += timing["autoattack_seconds_per_1000"] * n_examples / 1000
        per_dataset[key.dataset] = per_dataset.get(key.dataset, 0) + 1
    return Cost(len(keys), per_dataset, training / 3600, evaluation / 3600)
