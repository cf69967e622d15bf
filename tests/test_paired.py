"""The seed-paired sensitivity of the difference claims (advprune.report.paired), against scipy's paired t test as the
oracle, on runs made here: a seed effect shared by a seed's runs in every cell, as the record's failures show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advprune.report import paired
from advprune.report.claim_rules import Claim, load_rules

RULES = load_rules("v2")


def runs(seeds: int = 30, *, seed_sd: float = 20.0, run_sd: float = 5.0, shift: float = -4.0) -> pd.DataFrame:
    """AutoAttack accuracies of Table 1's MNIST cells: each seed's own level plus a little noise per
    run; low+high keep 0.4 sits `shift` points off the others."""
    rng = np.random.default_rng(1)
    level = 55 + rng.normal(0, seed_sd, seeds)
    rows = []
    for strategy, keep, offset in (("full", 1.0, 0.0), ("random", 0.4, 0.0), ("low+high", 0.4, shift),
                                   ("random", 0.8, 0.0), ("low+high", 0.8, 0.0)):  # fmt: skip
        for s in range(seeds):
            aa = level[s] + offset + rng.normal(0, run_sd)
            rows.append({"dataset": "mnist", "strategy": strategy, "keep": keep, "seed": s, "aa_acc_pct": aa,
                         "collapsed": bool(aa < 30)})  # fmt: skip
    return pd.DataFrame(rows)


def claim(a, b, **measure) -> Claim:
    template = next(c for c in RULES.claims if c.id == "mnist-loss-beats-random")
    return Claim(**{**template.__dict__, "measure": {"kind": "difference", "metric": "aa_acc_pct", "a": a, "b": b,
                                                     **measure}})  # fmt: skip


LOSS, RANDOM = {"strategy": "low+high", "keep": 0.4}, {"strategy": "random", "keep": 0.4}
FULL = {"strategy": "full", "keep": 1.0}


def test_two_cells_paired_by_seed_give_scipys_paired_t_interval_narrower_than_welchs() -> None:
    df = runs()
    row = paired.paired_row(claim(LOSS, RANDOM), df, RULES)
    a = df[(df.strategy == "low+high") & (df.keep == 0.4)].sort_values("seed")["aa_acc_pct"].to_numpy()
    b = df[(df.strategy == "random") & (df.keep == 0.4)].sort_values("seed")["aa_acc_pct"].to_numpy()
    oracle = stats.ttest_rel(a, b).confidence_interval(0.97)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((oracle.low, oracle.high))
    assert row["ours"] == pytest.approx(a.mean() - b.mean())
    assert row["n_seeds"] == 30 and row["confidence"] == 0.97
    assert row["r_sides"] == pytest.approx(stats.pearsonr(a, b).statistic)
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.97)
    assert row["ci_high"] - row["ci_low"] < (welch.high - welch.low) / 2  # the seed effect cancels
    assert row["ci_high"] < 0 and row["rule_reading"] == "not reproduced"  # the rule: greater, margin 1


def test_a_pooled_side_is_one_value_per_seed_and_seeds_missing_a_cell_are_left_out() -> None:
    df = runs()
    df = df[~((df.strategy == "random") & (df.keep == 0.8) & (df.seed >= 20))]  # a cell still running: seeds 0-19
    measure = {"below": 30.0}
    row = paired.paired_row(claim([RANDOM, {"strategy": "random", "keep": 0.8}, LOSS], FULL, **measure), df, RULES)
    assert row["n_seeds"] == 20 and row["confidence"] == 0.95  # a rate: the rules' level for rates
    failed = df.assign(failed=100.0 * (df.aa_acc_pct < 30)).pivot_table(index="seed", columns=["strategy", "keep"],
                                                                        values="failed").dropna()  # fmt: skip
    pruned = failed[[("random", 0.4), ("random", 0.8), ("low+high", 0.4)]].mean(axis=1)
    oracle = stats.ttest_rel(pruned, failed[("full", 1.0)]).confidence_interval(0.95)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((oracle.low, oracle.high))


def test_the_collapse_rate_reads_the_monitor_flag() -> None:
    df = runs()
    row = paired.paired_row(claim(LOSS, FULL, metric="collapse_pct"), df, RULES)
    by_seed = df.pivot_table(index="seed", columns=["strategy", "keep"], values="collapsed", aggfunc="mean")
    assert row["ours"] == pytest.approx(100 * (by_seed[("low+high", 0.4)].mean() - by_seed[("full", 1.0)].mean()))


def test_resampled_coverage_is_near_the_nominal_level_for_well_behaved_differences() -> None:
    rng = np.random.default_rng(2)
    coverage = [paired.seed_resampling_coverage(rng.normal(0, 1, 30), 0.95, seed=k) for k in range(5)]
    assert 0.90 < np.mean(coverage) < 0.97
    # One failure in five seeds: a third of the redraws hold none, and their interval (no spread) covers nothing.
    assert paired.seed_resampling_coverage(np.r_[np.zeros(4), 100.0], 0.95) < 0.7


def test_the_table_holds_each_difference_claim_with_runs_on_both_sides() -> None:
    table = paired.paired_table({"table1": runs()}, {"mnist": "mnist", "cifar10": "cifar10"}, RULES)
    expected = [c.id for c in RULES.claims if c.measure["kind"] == "difference" and c.artefact == "table1"
                and c.role == "mnist"]  # fmt: skip
    assert list(table["id"]) == expected and list(table.columns) == paired.COLUMNS
    reliability = [c for c in expected if "fewer" in c]  # they pool the keep-0.8 cells: none, nothing to pair
    without = paired.paired_table({"table1": runs().query("keep != 0.8")}, {"mnist": "mnist"}, RULES)
    assert reliability and list(without["id"]) == [c for c in expected if c not in reliability]
    assert paired.paired_table({"table1": runs()}, {"cifar10": "cifar10"}, RULES).empty
