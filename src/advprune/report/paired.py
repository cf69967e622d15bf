"""A sensitivity of the difference claims, chosen after the data were seen: the runs paired by seed.

The models of one seed share their first e epochs (they prune from one state; the record shows it by their weight
digests), and the MNIST record's failures cluster by seed: seed 16's models fail in every cell of Table 1. Rules v2
compare two groups of runs as independent samples (Welch, Newcombe). Where the runs of a seed go the same way, that
independence assumption errs in two directions:
- a difference of two cells: the shared part cancels, so the unpaired interval is wider than the data need;
- a side that pools several cells of the same seeds (the reliability claims pool four pruned cells): its runs are
  not independent draws, so the unpaired interval is narrower than the data allow.
Pairing handles both: per seed, the mean of its runs on each side (a rate: the share of its runs that failed), and a
one-sample t interval of the per-seed differences (scipy.stats.ttest_1samp) at the level the rules use for the
claim's kind of measure. Only seeds with a run in every cell of both sides count. This is not a verdict: the analysis
was chosen after the 30-seed run's first results; `rule_reading` says what the claim's rule would read off the paired
interval, for information only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from advprune.report.claim_rules import Claim, Rules
from advprune.report.claims import cell_rows, cells_of, measure_type, run_values, verdict

COLUMNS = [
    "id", "claim", "reading", "ours", "ci_low", "ci_high", "confidence", "n_seeds", "r_sides", "coverage_resampled",
    "rule_reading",
]  # fmt: skip
# r_sides: Pearson's correlation of the two sides' per-seed values, the reason pairing matters (empty if either side
# does not vary). coverage_resampled: how often the paired interval covers the record's own mean difference when whole
# seeds are drawn from the record with replacement (REPETITIONS times, as many seeds as it holds): unlike rules v2's
# intervals, this one was not chosen by the coverage simulation, so it carries its own check.
REPETITIONS = 4000


def per_seed(runs: pd.DataFrame, side: Mapping | list, measure: Mapping[str, Any]) -> pd.Series:
    """Per seed, the mean of the side's per-run values over its cells (a rate in percent of the seed's runs); seeds
    without a run in every cell of the side are left out."""
    frames = []
    for cell in cells_of(side):
        rows = cell_rows(runs, cell)
        values = run_values(rows, measure["metric"], measure.get("below"))
        frames.append(pd.Series(values.to_numpy(), index=rows["seed"].to_numpy()).groupby(level=0).mean())
    table = pd.concat(frames, axis=1, join="inner")
    return table.mean(axis=1)


def seed_resampling_coverage(differences: np.ndarray, confidence: float, *, repetitions: int = REPETITIONS,
                             seed: int = 0) -> float:
    """Share of the t intervals, on as many seeds drawn with replacement from `differences`, that cover its mean."""
    rng = np.random.default_rng(seed)
    n = len(differences)
    draws = differences[rng.integers(0, n, size=(repetitions, n))]
    means, sds = draws.mean(axis=1), draws.std(axis=1, ddof=1)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sds / math.sqrt(n)
    return float(np.mean(np.abs(means - differences.mean()) <= half + 1e-12))


def paired_row(claim: Claim, runs: pd.DataFrame, rules: Rules) -> dict[str, Any]:
    """The claim's difference read on per-seed differences: mean, t interval, seeds, the sides' correlation."""
    measure = claim.measure
    a, b = per_seed(runs, measure["a"], measure), per_seed(runs, measure["b"], measure)
    both = a.index.intersection(b.index)
    a, b = a.loc[both], b.loc[both]
    confidence = rules.confidence[measure_type(measure)]
    row = {"id": claim.id, "claim": claim.claim, "reading": claim.reading, "ours": math.nan, "ci_low": math.nan,
           "ci_high": math.nan, "confidence": confidence, "n_seeds": len(both), "r_sides": math.nan,
           "coverage_resampled": math.nan, "rule_reading": ""}  # fmt: skip
    if len(both) < 2:
        return row
    differences = (a - b).to_numpy()
    row["ours"] = float(differences.mean())
    if np.ptp(differences) == 0:
        row["ci_low"] = row["ci_high"] = row["ours"]
    else:
        ci = stats.ttest_1samp(differences, 0.0).confidence_interval(confidence)
        row["ci_low"], row["ci_high"] = float(ci.low), float(ci.high)
    row["coverage_resampled"] = seed_resampling_coverage(differences, confidence)
    if np.ptp(a) > 0 and np.ptp(b) > 0:
        row["r_sides"] = float(stats.pearsonr(a, b).statistic)
    row["rule_reading"] = verdict(claim.test, row["ci_low"], row["ci_high"])
    return row


def paired_table(tables: Mapping[str, pd.DataFrame], roles: Mapping[str, str], rules: Rules) -> pd.DataFrame:
    """Every difference claim of the rules whose artefact and dataset are present and whose sides share a seed,
    paired by seed."""
    rows = []
    for claim in rules.claims:
        if claim.measure["kind"] != "difference" or claim.artefact not in tables or claim.role not in roles:
            continue
        runs = tables[claim.artefact]
        row = paired_row(claim, runs[runs["dataset"] == roles[claim.role]], rules)
        if row["n_seeds"]:  # a dataset or cell without runs: nothing to pair
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)
