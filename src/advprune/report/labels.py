"""Names as readers see them: datasets, strategies, metrics, and which paper dataset a demo dataset stands in for.

The one place these mappings are written; figures and tables import them from here.
"""

from __future__ import annotations

from typing import Any, Iterable

from advprune.identity import FULL

DISPLAY_NAMES = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "digits-mnist": "digits (MNIST settings)",
    "digits-cifar": "digits (CIFAR-10 settings)",
}

# The offline demo's digits variants run the paper's MNIST / CIFAR-10 recipes; the paper's numbers for those
# recipes are what they stand in for (compare orderings, not digits).
PAPER_DATASET = {"mnist": "mnist", "cifar10": "cifar10", "digits-mnist": "mnist", "digits-cifar": "cifar10"}

# Line order (and so colour order) of strategies in every figure; "full" is keep 1.0 and joins every line.
STRATEGY_ORDER = ("high", "low", "low+high", "random", "mean-distance")
STRATEGY_LABELS = {
    "high": "high loss",
    "low": "low loss",
    "low+high": "low+high loss",
    "random": "random",
    "mean-distance": "drop nearest mean loss (Alg. 1)",
    FULL: "full data",
}

METRIC_LABELS = {
    "clean_acc_pct": "clean accuracy (%)",
    "aa_acc_pct": "AutoAttack accuracy (%)",
    "time_minutes": "time, training + scoring (min)",
}

# The same metrics in a table's narrow first column.
TABLE_METRIC_LABELS = {
    "clean_acc_pct": "clean (%)",
    "aa_acc_pct": "AutoAttack (%)",
    "time_minutes": "time (min)",
}

KEEP_LABEL = "proportion of training data kept (keep)"


def pruned_fraction(keep: float) -> str:
    """The paper's p (fraction pruned) of a keep, as text: keep 0.4 -> '0.6' (no float noise such as 0.6000000001)."""
    return f"{round(1.0 - keep, 6):g}"

PRUNED_SUFFIX = " pruned"


def join_names(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def numbers_text(values: list[Any]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def seed_ranges(seeds: list[int]) -> str:
    """'0-9, 12, 14-16': the `seeds` as runs of consecutive ones."""
    seeds, parts, start = sorted(seeds), [], None
    for i, seed in enumerate(seeds):
        if start is None:
            start = seed
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(f"{start}" if start == seed else f"{start}-{seed}")
            start = None
    return ", ".join(parts)


def seeds_text(seeds: list[int]) -> str:
    """'5 seeds (0-4)', '3 seeds (0, 2-3)', '1 seed (7)'."""
    return f"{len(seeds)} seed{'s' * (len(seeds) != 1)} ({seed_ranges(seeds)})"


def strategy_label(strategy: str) -> str:
    """A strategy as readers see it; a plugin's strategy by its own name."""
    return STRATEGY_LABELS.get(strategy, strategy)


def display_name(dataset: str) -> str:
    return DISPLAY_NAMES.get(dataset, dataset)


def paper_dataset(dataset: str) -> str | None:
    """The paper dataset whose values apply to `dataset`, or None when the paper has none."""
    return PAPER_DATASET.get(dataset)


def dataset_label(dataset: str) -> str:
    """Row label that says when the paper's values belong to another dataset, e.g. 'digits-mnist (paper: MNIST)'."""
    paper = paper_dataset(dataset)
    if paper is None or paper == dataset:
        return display_name(dataset)
    return f"{dataset} (paper: {display_name(paper)})"


def ordered_datasets(datasets: Iterable[str]) -> list[str]:
    """Paper datasets first, then the demo's, then anything else alphabetically: a stable panel order."""
    known = list(DISPLAY_NAMES)
    unique = set(datasets)
    return [d for d in known if d in unique] + sorted(unique - set(known))


def ordered_strategies(strategies: Iterable[str]) -> list[str]:
    unique = set(strategies)
    return [s for s in STRATEGY_ORDER if s in unique] + sorted(unique - set(STRATEGY_ORDER))


def parse_variant(name: str) -> tuple[str, bool]:
    """'<dataset>' or '<dataset> pruned' -> (dataset, pruned): how fig8 panels and table2 rows are named."""
    pruned = name.endswith(PRUNED_SUFFIX)
    dataset = name[: -len(PRUNED_SUFFIX)] if pruned else name
    from advprune.settings import known_datasets  # a plugin's dataset too (docs/extending.md)

    if dataset not in known_datasets():
        raise ValueError(
            f"dataset variant {name!r}: expected '<dataset>' or '<dataset>{PRUNED_SUFFIX}' "
            f"with <dataset> one of {', '.join(known_datasets())}"
        )
    return dataset, pruned


def variant_label(name: str) -> str:
    dataset, pruned = parse_variant(name)
    return display_name(dataset) + (", pruned" if pruned else "")


def time_device_text(devices: Iterable[str], jobs_on_device: Iterable[int]) -> str:
    """Where times were measured and how many jobs shared the device, as a figure or table states it. A GPU job counts
    the jobs that shared its GPU; a CPU job does not count its neighbours, so for CPU times the record of the run
    must say how many ran at once."""
    devices = sorted(set(devices))
    if devices and all(device.startswith("cpu") for device in devices):
        return (f"device: {', '.join(devices)}; how many jobs shared the CPU is not recorded, and CPU minutes are not "
                "comparable with the paper's GPU minutes")
    jobs = ", ".join(str(j) for j in sorted(set(jobs_on_device)))
    return f"device: {', '.join(devices)}, jobs per GPU: {jobs} (the paper's: one)"
