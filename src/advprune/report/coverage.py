"""How often each candidate 95% interval covers the true difference, simulated from recorded runs.

A scenario compares two groups of cells of a tidy model table (the published record's `models.csv`). Each repetition
draws `seeds` runs per cell, with replacement, from that cell's recorded runs (collapsed runs included, so the
draws have the record's skew and outliers), pools each group, computes every candidate interval, and checks whether it
contains the true difference: the difference between the groups' means (or event rates) over the recorded runs,
which is exactly the population the draws come from. The claims rules use an interval only if it covers at least
94% at both 10 and 30 seeds per cell (tests/test_claims_coverage.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from advprune.report import intervals

Cell = tuple[str, float]  # (strategy, keep)


@dataclass(frozen=True)
class Scenario:
    name: str
    a: tuple[Cell, ...]
    b: tuple[Cell, ...]
    metric: str = "aa_acc_pct"
    below: float | None = None  # the event "metric < below" as 0/100 per run (a failure rate)
    event: str | None = None  # or a boolean column as 0/100 per run (e.g. collapsed)
    seeds: tuple[int, ...] | None = None  # seeds per cell to simulate, if not the simulation's own

    @property
    def rates(self) -> bool:
        return self.below is not None or self.event is not None


def cell_values(models: pd.DataFrame, scenario: Scenario, cell: Cell) -> np.ndarray:
    strategy, keep = cell
    rows = models[(models["strategy"] == strategy) & (models["keep"] == keep)]
    if rows.empty:
        raise ValueError(f"scenario {scenario.name}: no runs of {strategy} keep {keep:g} in the table")
    if scenario.event is not None:
        return 100.0 * rows[scenario.event].astype(bool).to_numpy(float)
    values = rows[scenario.metric].astype(float).to_numpy()
    return 100.0 * (values < scenario.below) if scenario.below is not None else values


def simulate(
    models: pd.DataFrame, scenarios: list[Scenario], *, seeds: tuple[int, ...] = (10, 30), repetitions: int = 4000,
    methods: Mapping[str, list[str]] | None = None, n_resamples: int = 999, seed: int = 0,
) -> pd.DataFrame:
    """One row per scenario, seeds per cell and method: coverage, its Monte Carlo standard error, and the mean width.
    `methods` narrows the candidates per kind ({"means": [...], "rates": [...]}); all by default."""
    rng = np.random.default_rng(seed)
    rows = []
    for scenario in scenarios:
        population = {
            side: [cell_values(models, scenario, cell) for cell in getattr(scenario, side)] for side in ("a", "b")
        }
        truth = np.concatenate(population["a"]).mean() - np.concatenate(population["b"]).mean()
        kind = "rates" if scenario.rates else "means"
        candidates = intervals.candidates(scenario.rates, n_resamples=n_resamples)
        names = list(candidates) if methods is None else methods[kind]
        for n in scenario.seeds or seeds:
            hits, widths = {m: 0 for m in names}, {m: 0.0 for m in names}
            for _ in range(repetitions):
                a, b = (np.concatenate([rng.choice(v, n) for v in population[side]]) for side in ("a", "b"))
                for m in names:
                    low, high = candidates[m](a, b, rng)
                    hits[m] += bool(low <= truth <= high)
                    widths[m] += high - low
            for m in names:
                coverage = hits[m] / repetitions
                rows.append({
                    "scenario": scenario.name, "seeds_per_cell": n, "method": m, "coverage": coverage,
                    "mc_se": float(np.sqrt(coverage * (1 - coverage) / repetitions)),
                    "mean_width": widths[m] / repetitions, "truth": float(truth), "repetitions": repetitions,
                })  # fmt: skip
    return pd.DataFrame(rows)


# The scenarios of the MNIST record (docs/results/mnist-cpu): Table 1's comparisons, the failure rates under both
# definitions, and a comparison pooled over cells as Figure 3's claim pools its keeps.
LOSS_04, LOSS_08, RANDOM_04, RANDOM_08, FULL_DATA = (
    ("low+high", 0.4), ("low+high", 0.8), ("random", 0.4), ("random", 0.8), ("full", 1.0))
PRUNED = (LOSS_04, LOSS_08, RANDOM_04, RANDOM_08)
MNIST_SCENARIOS = [
    Scenario("loss 0.4 - random 0.4 (AutoAttack)", (LOSS_04,), (RANDOM_04,)),
    Scenario("loss 0.4 - full (AutoAttack)", (LOSS_04,), (FULL_DATA,)),
    Scenario("loss 0.8 - random 0.8 (AutoAttack)", (LOSS_08,), (RANDOM_08,)),
    Scenario("loss 0.4+0.8 - random 0.4+0.8, pooled (AutoAttack)", (LOSS_04, LOSS_08), (RANDOM_04, RANDOM_08),
             seeds=(5, 10, 30)),
    Scenario("pruned - full, monitor collapses (rate)", PRUNED, (FULL_DATA,), event="collapsed"),
    Scenario("pruned - full, AutoAttack failures (rate)", PRUNED, (FULL_DATA,), below=27.77),
]


def main(argv: list[str] | None = None) -> None:
    """python -m advprune.report.coverage MODELS_CSV OUT_CSV [REPETITIONS]: every candidate on MNIST_SCENARIOS."""
    import sys
    import warnings

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        raise SystemExit("usage: python -m advprune.report.coverage MODELS_CSV OUT_CSV [REPETITIONS]")
    warnings.simplefilter("ignore")  # BCa on a degenerate resample (a group without events) warns each time
    repetitions = int(args[2]) if len(args) == 3 else 4000
    table = simulate(pd.read_csv(args[0]), MNIST_SCENARIOS, repetitions=repetitions)
    table.to_csv(args[1], index=False)
    print(table.pivot_table(index=["scenario", "seeds_per_cell"], columns="method", values="coverage").round(3))


if __name__ == "__main__":
    main()
