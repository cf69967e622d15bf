"""The paper's published numbers, as data (docs/method.md).

Table 1's "loss" columns are the low+high strategy, and its p is the fraction pruned, so p = 1 - keep.
Its CIFAR-10 columns are scrambled in the extracted text; docs/deviations.md says which assignment is used here and why.
"""

from __future__ import annotations

from advprune.identity import FULL
from advprune.report.labels import pruned_fraction, strategy_label

Cell = tuple[str, float]  # (strategy, keep)

# Table 1 column order, as the paper prints it.
TABLE1_CELLS: tuple[Cell, ...] = (("low+high", 0.4), ("low+high", 0.8), ("random", 0.4), ("random", 0.8), (FULL, 1.0))
TABLE1_METRICS = ("clean_acc_pct", "aa_acc_pct", "time_minutes")

_TABLE1_ROWS = {
    # (dataset, metric): (mean, sd) per cell in TABLE1_CELLS order; time in minutes on the authors' GPU.
    ("mnist", "clean_acc_pct"): ((94.60, 5.95), (94.10, 5.98), (98.01, 0.12), (97.78, 1.00), (97.67, 0.01)),
    ("mnist", "aa_acc_pct"): ((70.11, 7.81), (67.43, 9.80), (65.50, 0.013), (60.77, 11.0), (70.05, 7.29)),
    ("mnist", "time_minutes"): ((0.51, 0.01), (0.74, 0.02), (0.46, 0.01), (0.69, 0.02), (0.78, 0.02)),
    ("cifar10", "clean_acc_pct"): ((50.64, 2.09), (70.71, 1.42), (64.04, 1.48), (73.26, 0.85), (79.68, 0.27)),
    ("cifar10", "aa_acc_pct"): ((25.32, 1.43), (37.84, 1.11), (33.54, 1.30), (39.63, 0.62), (44.59, 0.27)),
    ("cifar10", "time_minutes"): ((16.57, 0.67), (26.43, 1.58), (15.96, 0.39), (25.58, 0.84), (30.16, 0.86)),
}

# (dataset, cell, metric) -> (mean, sd)
TABLE1: dict[tuple[str, Cell, str], tuple[float, float]] = {
    (dataset, cell, metric): value
    for (dataset, metric), values in _TABLE1_ROWS.items()
    for cell, value in zip(TABLE1_CELLS, values)
}
TABLE1_N = 30  # runs per cell

# The abstract: random pruning on CIFAR-10 that drops 40% of the data costs about 8 points of AutoAttack accuracy,
# keeping 20% about 14 (src/advprune/claims.yaml reads them the same way). (dataset, keep) -> points below full data.
ABSTRACT_RANDOM_DROPS: dict[tuple[str, float], float] = {("cifar10", 0.6): 8.0, ("cifar10", 0.2): 14.0}

# Table 2 (appendix A.1): (dataset, pruned) -> (rho, delta). "Pruned MNIST" is loss-based pruning at p = 0.4.
TABLE2: dict[tuple[str, bool], tuple[float, float]] = {
    ("mnist", False): (1015.55, 0.7698),
    ("mnist", True): (222.34, 1.4860),
    ("cifar10", False): (96.6625, 0.3571),
}


def cell_header(cell: Cell) -> str:
    """Table 1's column header in the paper's terms: 'loss p=0.6' for low+high at keep 0.4, 'full' for keep 1.0;
    strategies the table lacks by their figure labels ('high loss p=0.6')."""
    strategy, keep = cell
    if strategy == FULL:
        return FULL
    name = {"low+high": "loss", "random": "random"}.get(strategy) or strategy_label(strategy)
    return f"{name} p={pruned_fraction(keep)}"
