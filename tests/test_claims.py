"""The claims table: claims.yaml is well formed, the verdict rules do what it says, the measures and the bootstrap
recover known effects from synthetic runs, and `python -m advprune claims` writes the table and its provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_report import make_runs

from advprune import cli
from advprune.report import claims
from advprune.report.aggregate import COLUMNS, write_table
from advprune.artefacts import names
from advprune.kinds import ModelGrid

R, NR, INC, NM = claims.REPRODUCED, claims.NOT_REPRODUCED, claims.INCONCLUSIVE, claims.NOT_MEASURED


@pytest.mark.parametrize("version", list(claims.RULES_FILES))
def test_packaged_claims_are_well_formed(version):
    loaded = claims.load_rules(version).claims
    assert len({c.id for c in loaded}) == len(loaded) >= 10
    for claim in loaded:
        assert claim.artefact in names(ModelGrid) and claim.role in ("mnist", "cifar10")
        if claim.measure["kind"] == "all_of":
            continue
        metric = claim.measure["metric"]
        assert metric in COLUMNS or metric == "collapse_pct", claim.id
        cells = [c for name in ("a", "b") if name in claim.measure for c in np.atleast_1d(claim.measure[name])]
        for cell in cells:  # the full-data model is keep 1.0 and nothing else is
            assert (cell["strategy"] == "full") == (cell["keep"] == 1.0), claim.id


def test_a_malformed_claim_is_refused_by_name():
    text = "- {id: x, claim: c, source: s, artefact: table1, role: mnist, paper: null,\n" \
           "   measure: {kind: median, metric: aa_acc_pct}, test: {kind: greater, margin: 1}}"
    with pytest.raises(ValueError, match="claim x: measure kind 'median'"):
        claims.load_claims(text)
    with pytest.raises(ValueError, match="claim x: test"):
        claims.load_claims(text.replace("median", "difference").replace("margin: 1", "threshold: 1"))


@pytest.mark.parametrize(
    ("test", "interval", "expected"),
    [
        ({"kind": "greater", "margin": 1.0}, (0.1, 3.0), R),
        ({"kind": "greater", "margin": 1.0}, (-0.5, 0.9), NR),   # rules out an effect worth claiming
        ({"kind": "greater", "margin": 1.0}, (-6.0, -2.0), NR),  # the opposite effect
        ({"kind": "greater", "margin": 1.0}, (-0.5, 2.0), INC),
        ({"kind": "greater", "margin": 1.0}, (0.0, 2.0), INC),   # touching 0 is not beyond it
        ({"kind": "less", "margin": 1.0}, (-3.0, -0.1), R),
        ({"kind": "less", "margin": 1.0}, (-0.9, 0.5), NR),
        ({"kind": "less", "margin": 1.0}, (-2.0, 0.5), INC),
        ({"kind": "about", "value": 8.0, "tolerance": 3.0}, (5.0, 11.0), R),
        ({"kind": "about", "value": 8.0, "tolerance": 3.0}, (11.5, 14.0), NR),
        ({"kind": "about", "value": 8.0, "tolerance": 3.0}, (1.0, 4.9), NR),
        ({"kind": "about", "value": 8.0, "tolerance": 3.0}, (4.0, 9.0), INC),
        ({"kind": "at_least", "threshold": 0.95}, (0.95, 0.99), R),
        ({"kind": "at_least", "threshold": 0.95}, (0.5, 0.94), NR),
        ({"kind": "at_least", "threshold": 0.95}, (0.9, 0.99), INC),
        ({"kind": "not_worse", "margin": 4.0}, (-3.9, 5.0), R),
        ({"kind": "not_worse", "margin": 4.0}, (-9.0, -4.1), NR),
        ({"kind": "not_worse", "margin": 4.0}, (-4.0, 2.0), INC),  # touching -D is not beyond it
        ({"kind": "not_worse", "margin": 4.0}, (-12.0, -4.0), INC),
    ],
)  # fmt: skip
def test_verdict_rules(test, interval, expected):
    assert claims.verdict(test, *interval) == expected


def runs(cells: dict[tuple[str, float], np.ndarray], metric: str = "aa_acc_pct") -> pd.DataFrame:
    rows = [
        {"dataset": "mnist", "strategy": s, "keep": k, metric: v, "collapsed": False}
        for (s, k), values in cells.items() for v in values
    ]  # fmt: skip
    return pd.DataFrame(rows)


def claim(measure: dict, test: dict, artefact: str = "table1") -> claims.Claim:
    return claims.Claim("t", "a test claim", "nowhere", artefact, "mnist", measure, None, test)


DIFFERENCE = {"kind": "difference", "metric": "aa_acc_pct", "a": {"strategy": "low+high", "keep": 0.4},
              "b": {"strategy": "random", "keep": 0.4}}  # fmt: skip
GREATER = {"kind": "greater", "margin": 1.0}


def test_a_clear_difference_is_reproduced_and_its_interval_covers_it():
    rng = np.random.default_rng(1)
    df = runs({("low+high", 0.4): 70 + rng.normal(0, 1, 30), ("random", 0.4): 65 + rng.normal(0, 1, 30)})
    row = claims.evaluate(claim(DIFFERENCE, GREATER), df, "mnist")
    assert row["verdict"] == R and row["n_runs"] == 60 and (row["n_a"], row["n_b"]) == (30, 30) and not row["note"]
    assert row["ci_low"] < 5.0 < row["ci_high"] and row["ci_high"] - row["ci_low"] < 2.0
    means = df.groupby("strategy").aa_acc_pct.mean()
    assert row["ours"] == pytest.approx(means["low+high"] - means["random"])


def test_no_difference_with_many_runs_is_not_reproduced_and_with_few_is_inconclusive():
    rng = np.random.default_rng(2)
    same = runs({("low+high", 0.4): 65 + rng.normal(0, 0.5, 30), ("random", 0.4): 65 + rng.normal(0, 0.5, 30)})
    assert claims.evaluate(claim(DIFFERENCE, GREATER), same, "mnist")["verdict"] == NR
    noisy = runs({("low+high", 0.4): 65 + rng.normal(0, 10, 6), ("random", 0.4): 65 + rng.normal(0, 10, 6)})
    assert claims.evaluate(claim(DIFFERENCE, GREATER), noisy, "mnist")["verdict"] == INC


V1 = claims.load_rules("v1")


def test_too_few_runs_give_an_interval_but_no_verdict():
    few = runs({("low+high", 0.4): 70.0 + np.arange(9.0), ("random", 0.4): 50.0 + np.arange(9.0)})
    row = claims.evaluate(claim(DIFFERENCE, GREATER), few, "mnist")
    assert row["ci_low"] > 0 and row["verdict"] == INC and "fewer than 10 runs in a group" in row["note"]
    assert claims.evaluate(claim(DIFFERENCE, GREATER), few, "mnist", rules=V1)["verdict"] == R  # v1 needed 5
    ten = runs({("low+high", 0.4): 70.0 + np.arange(10.0), ("random", 0.4): 50.0 + np.arange(10.0)})
    assert claims.evaluate(claim(DIFFERENCE, GREATER), ten, "mnist")["verdict"] == R


def test_a_pooled_side_needs_five_runs_in_every_cell():
    pooled = {**DIFFERENCE, "a": [{"strategy": "low+high", "keep": 0.4}, {"strategy": "low+high", "keep": 0.8}]}
    df = runs({("low+high", 0.4): 70.0 + np.arange(12.0), ("low+high", 0.8): 70.0 + np.arange(4.0),
               ("random", 0.4): 50.0 + np.arange(16.0)})  # fmt: skip
    row = claims.evaluate(claim(pooled, GREATER), df, "mnist")
    assert row["n_runs"] == 32 and (row["n_a"], row["n_b"]) == (16, 16) and row["verdict"] == INC
    assert row["note"] == "fewer than 5 runs in a pooled cell"


def test_v2_intervals_are_welch_for_means_and_newcombe_for_rates():
    rng = np.random.default_rng(3)
    a, b = rng.normal(70, 5, 12), rng.normal(60, 9, 15)
    row = claims.evaluate(claim(DIFFERENCE, GREATER), runs({("low+high", 0.4): a, ("random", 0.4): b}), "mnist")
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.97)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((welch.low, welch.high))
    assert row["interval"] == "welch 97%"
    rate = {**DIFFERENCE, "metric": "aa_acc_pct", "below": 65.0}
    row = claims.evaluate(claim(rate, GREATER), runs({("low+high", 0.4): a, ("random", 0.4): b}), "mnist")
    assert row["interval"] == "newcombe 95%"
    assert row["ours"] == pytest.approx(100 * ((a < 65).mean() - (b < 65).mean()))


def test_the_v1_bootstrap_is_seeded():
    rng = np.random.default_rng(3)
    df = runs({("low+high", 0.4): rng.normal(0, 5, 8), ("random", 0.4): rng.normal(0, 5, 8)})
    first, second = (claims.evaluate(claim(DIFFERENCE, GREATER), df, "mnist", seed=7, rules=V1) for _ in range(2))
    assert (first["ci_low"], first["ci_high"]) == (second["ci_low"], second["ci_high"])
    other = claims.evaluate(claim(DIFFERENCE, GREATER), df, "mnist", seed=8, rules=V1)
    assert (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])


def test_missing_cells_are_not_measured_and_say_which():
    df = runs({("random", 0.4): np.array([60.0, 61.0])})
    row = claims.evaluate(claim(DIFFERENCE, GREATER), df, "mnist")
    assert row["verdict"] == NM and "low+high keep 0.4" in row["note"]
    row = claims.evaluate(claim(DIFFERENCE, GREATER), None, None)
    assert row["verdict"] == NM and "does not build table1" in row["note"]
    one_each = runs({("low+high", 0.4): np.array([70.0]), ("random", 0.4): np.array([60.0])})
    row = claims.evaluate(claim(DIFFERENCE, GREATER), one_each, "mnist")
    assert row["verdict"] == INC and row["ours"] == 10.0 and np.isnan(row["ci_low"])


def test_linear_time_is_recognised_and_a_curve_is_not():
    measure = {"kind": "linear_r2", "metric": "time_seconds", "strategy": "random"}
    test = {"kind": "at_least", "threshold": 0.95}
    rng = np.random.default_rng(4)

    def times(of_keep) -> pd.DataFrame:
        keeps = (0.2, 0.4, 0.6, 0.8, 1.0)
        cells = {("random" if k < 1 else "full", k): of_keep(k) + rng.normal(0, 0.1, 10) for k in keeps}
        return runs(cells, metric="time_seconds")

    assert claims.evaluate(claim(measure, test, "fig5"), times(lambda k: 10 + 100 * k), "mnist")["verdict"] == R
    curve = times(lambda k: 100 * np.exp(-8 * k))
    assert claims.evaluate(claim(measure, test, "fig5"), curve, "mnist")["verdict"] == NR
    two_keeps = runs({("random", 0.4): np.ones(3), ("full", 1.0): np.ones(3)}, metric="time_seconds")
    row = claims.evaluate(claim(measure, test, "fig5"), two_keeps, "mnist")
    assert row["verdict"] == NM and "3 or more keep values" in row["note"]


def test_worst_gap_finds_the_worst_strategy():
    measure = {"kind": "worst_gap", "metric": "aa_acc_pct", "strategy": "low"}
    rng = np.random.default_rng(5)
    cells = {}
    for keep in (0.2, 0.6):
        cells |= {("low", keep): 40 + rng.normal(0, 1, 5), ("high", keep): 50 + rng.normal(0, 1, 5),
                  ("random", keep): 55 + rng.normal(0, 1, 5)}  # fmt: skip
    row = claims.evaluate(claim(measure, {"kind": "less", "margin": 1.0}, "fig3"), runs(cells), "mnist", rules=V1)
    assert row["verdict"] == R and row["ours"] == pytest.approx(-10.0, abs=1.5)
    only_low = runs({("low", 0.2): np.ones(3), ("full", 1.0): np.ones(3)})
    assert claims.evaluate(claim(measure, GREATER, "fig3"), only_low, "mnist", rules=V1)["verdict"] == NM


def test_failure_rates_pool_cells():
    measure = {"kind": "difference", "metric": "collapse_pct", "b": {"strategy": "full", "keep": 1.0},
               "a": [{"strategy": "random", "keep": 0.4}, {"strategy": "random", "keep": 0.8}]}  # fmt: skip
    pruned = [{"strategy": "random", "keep": k, "collapsed": False} for k in (0.4, 0.8) for _ in range(10)]
    full = [{"strategy": "full", "keep": 1.0, "collapsed": i < 4} for i in range(10)]
    df = pd.DataFrame(pruned + full).assign(dataset="mnist")
    row = claims.evaluate(claim(measure, {"kind": "less", "margin": 5.0}), df, "mnist")
    assert row["ours"] == pytest.approx(-40.0) and row["n_runs"] == 30 and row["verdict"] == R


def test_the_claims_command_writes_table_markdown_and_provenance(tmp_path: Path):
    paths = {}
    for name, grid in {"table1": dict(strategies=("low+high", "random"), keeps=(0.4, 0.8, 1.0), epochs=(3,)),
                       "fig5": dict(strategies=("random",), epochs=(3,))}.items():  # fmt: skip
        paths[name] = tmp_path / f"{name}.csv"
        write_table(make_runs(seeds=10, **grid), paths[name])
    out = tmp_path / "figures" / "claims.csv"
    args = ["claims", "--out", str(out), "--role", "mnist=mnist", "--role", "cifar10=cifar10", "--resamples", "200"]
    args += [f"--table={name}={path}" for name, path in paths.items()]
    assert cli.main(args) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == claims.COLUMNS and len(table) == len(claims.load_claims())
    measured = table[table.verdict != NM]
    expected = {"mnist-loss-beats-random", "cifar10-loss-worse-than-random", "mnist-time-linear-in-keep"}
    assert expected <= set(measured.id)
    assert set(table[table.verdict == NM].id) >= {"mnist-low-loss-hurts-most", "cifar10-random-keep0.6-costs-8-points"}
    # make_runs' times are linear in keep, so the linearity claims hold
    assert set(table.loc[table.id.str.contains("time-linear"), "verdict"]) == {R}
    markdown = out.with_suffix(".md").read_text()
    assert "| claim | reading | dataset | ours | CI | interval |" in markdown and "Verdicts:" in markdown
    record = json.loads((tmp_path / "figures" / "claims.provenance.json").read_text())
    assert record["artefact"] == "claims" and record["models_summary"]["n_models"] > 0
    assert {Path(i["path"]).name for i in record["inputs"]} == {"table1.csv", "fig5.csv"}


def test_the_claims_command_refuses_malformed_pairs(tmp_path: Path, capsys):
    assert cli.main(["claims", "--out", str(tmp_path / "c.csv"), "--role", "mnist"]) == 2
    assert "--role 'mnist' is not of the form NAME=VALUE" in capsys.readouterr().err
