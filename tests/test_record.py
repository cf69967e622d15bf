"""The published MNIST reproduction record (docs/results/mnist-cpu) is consistent with itself: every table in it is
recomputed here from its per-model CSV with plain pandas, and every model row carries its provenance."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from advprune import METHOD_VERSION

RECORD = Path(__file__).resolve().parents[1] / "docs" / "results" / "mnist-cpu"
CELL = ["strategy", "keep"]
METRICS = ["clean_acc_pct", "aa_acc_pct", "time_minutes"]


@pytest.fixture(scope="module")
def models() -> pd.DataFrame:
    return pd.read_csv(RECORD / "models.csv")


def _ours(models: pd.DataFrame) -> pd.DataFrame:
    """Per cell and metric: mean, sample sd and count over all runs, and over the runs that did not collapse."""
    rows = []
    for (strategy, keep), runs in models.groupby(CELL):
        ok = runs[~runs["collapsed"]]
        for metric in METRICS:
            rows.append({
                "strategy": strategy, "keep": round(keep, 6), "metric": metric, "n": len(runs),
                "mean": runs[metric].mean(), "sd": runs[metric].std(ddof=1), "n_failed": int(runs["collapsed"].sum()),
                "n_ok": len(ok), "mean_ok": ok[metric].mean(), "sd_ok": ok[metric].std(ddof=1),
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_every_model_row_has_provenance_and_the_current_method(models: pd.DataFrame) -> None:
    assert len(models) >= 50
    assert (models["method_version"] == METHOD_VERSION).all()
    assert models["dataset"].eq("mnist").all() and models["n_examples"].nunique() == 1
    for column in ("config_sha256", "dataset_sha256", "run_dir", "device"):
        assert models[column].notna().all() and (models[column].astype(str) != "").all(), column
    # The run's tree was a copy without .git (so no commit in the rows); code.json names the commit instead.
    assert models["train_commit"].notna().all() or (RECORD / "code.json").exists()
    assert not models.duplicated(["strategy", "keep", "prune_epoch", "seed"]).any()
    assert models.groupby(CELL).size().min() >= 10  # the must: at least 10 seeds in every cell


def test_the_code_of_the_run_is_a_commit_of_this_repository() -> None:
    """code.json holds the sha256 of every source file the run used; the commit it names holds exactly those."""
    code = json.loads((RECORD / "code.json").read_text())
    repo = RECORD.parents[2]
    known = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{code['commit']}^{{commit}}"],
                           capture_output=True)  # fmt: skip
    if known.returncode != 0:
        pytest.skip(f"commit {code['commit']} is not in this clone's history (a shallow clone?)")
    listed = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", code["commit"], "src"],
                            capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert sorted(p for p in listed if "__pycache__" not in p) == sorted(code["files"])
    for path, digest in code["files"].items():
        blob = subprocess.run(["git", "-C", str(repo), "show", f"{code['commit']}:{path}"], capture_output=True,
                              check=True).stdout  # fmt: skip
        assert hashlib.sha256(blob).hexdigest() == digest, path


def test_cells_csv_equals_the_means_recomputed_from_the_models(models: pd.DataFrame) -> None:
    ours = _ours(models)
    cells = pd.read_csv(RECORD / "cells.csv").assign(keep=lambda d: d["keep"].round(6))
    merged = ours.merge(cells, on=["strategy", "keep", "metric"], suffixes=("", "_published"), validate="1:1")
    assert len(merged) == len(ours) == len(cells)
    for column in ("n", "mean", "sd", "n_failed", "n_ok", "mean_ok", "sd_ok"):
        pd.testing.assert_series_equal(
            merged[column], merged[f"{column}_published"], check_names=False, check_dtype=False, rtol=1e-9
        )


def test_the_published_table1_shows_those_numbers(models: pd.DataFrame) -> None:
    """table1.csv holds the recomputed cells; each 'ours' entry of table1.md reads their mean ± sd (one decimal for
    accuracies, two for minutes), with the collapsed runs counted after the AutoAttack cell."""
    ours = _ours(models)
    values = pd.read_csv(RECORD / "table1.csv").assign(keep=lambda d: d["keep"].round(6))
    merged = ours.merge(values, on=["strategy", "keep", "metric"], suffixes=("", "_published"), validate="1:1")
    assert len(merged) == len(ours)
    for column in ("n", "mean", "sd", "n_failed"):
        assert np.allclose(merged[column], merged[f"{column}_published"], rtol=1e-9), column
    labels = {"clean (%)": "clean_acc_pct", "AutoAttack (%)": "aa_acc_pct", "time (min)": "time_minutes"}
    table = (RECORD / "table1.md").read_text().split("\n\n")[1].splitlines()  # the first table: all runs
    header = [c.strip() for c in table[0].strip("|").split("|")]
    checked, metric = 0, None
    for line in table[2:]:
        row = [c.strip() for c in line.strip("|").split("|")]
        metric = labels.get(row[1], metric)
        if row[2] != "ours":
            continue
        for cell, text in zip(header[3:], row[3:]):
            name, _, pruned = cell.partition(" p=")
            strategy = {"loss": "low+high", "random": "random", "full": "full"}[name]
            keep = 1.0 if strategy == "full" else round(1 - float(pruned), 6)
            c = ours[(ours["strategy"] == strategy) & (ours["keep"] == keep) & (ours["metric"] == metric)].iloc[0]
            digits = 2 if metric == "time_minutes" else 1
            expected = f"{c['mean']:.{digits}f} ± {c['sd']:.{digits}f}"
            if metric == "aa_acc_pct" and c["n_failed"]:
                expected += f" ({c['n_failed']}/{c['n']} coll.)"
            assert text == expected, (metric, cell)
            checked += 1
    assert checked == 3 * models.groupby(CELL).ngroups


def test_claims_count_the_runs_of_the_record(models: pd.DataFrame) -> None:
    claims = pd.read_csv(RECORD / "claims.csv")
    measured = claims[claims["n_runs"] > 0]
    assert len(measured) > 0
    assert (measured["n_runs"] <= len(models)).all()
    assert set(measured["dataset"]) == {"mnist"}


def test_the_facts_are_those_of_the_per_model_files(models: pd.DataFrame) -> None:
    """facts.json's counts and times, recomputed from models.csv and runs.csv (Snakemake's benchmark files per model);
    the run's wall time is the sum of its sittings (a run resumed later spans several console logs)."""
    facts = json.loads((RECORD / "facts.json").read_text())
    runs = pd.read_csv(RECORD / "runs.csv")
    assert facts["models"] == len(models) == len(runs)
    assert facts["collapsed_runs"] == int(models["collapsed"].sum()) == int(runs["collapsed"].sum())
    assert facts["train_wall_s_median"] == pytest.approx(runs["train_wall_s"].median())
    assert facts["eval_wall_s_median"] == pytest.approx(runs["eval_wall_s"].median())
    assert facts["run_wall_s"] == sum(sitting["wall_s"] for sitting in facts["run_sittings"])
    first = [sitting["first_job"] for sitting in facts["run_sittings"]]
    assert first == sorted(first)  # the sittings in the order they ran


@pytest.mark.parametrize(("rules", "published"), [("v2", "claims.csv"), ("v1", "claims-v1.csv")])
def test_the_published_claims_are_what_the_claims_command_computes_from_the_record(tmp_path, rules, published) -> None:
    """`advprune claims` over the record's own models.csv gives the published claims, by rules v2 (claims.csv) and by
    the first rules, v1 (claims-v1.csv, shown beside v2's): a change to the claims code that moves an interval or a
    verdict shows here, and the record is republished."""
    from advprune import cli

    out = tmp_path / "claims.csv"
    table = f"--table=table1={RECORD / 'models.csv'}"
    assert cli.main(["claims", table, "--role=mnist=mnist", "--out", str(out), "--rules", rules]) == 0
    published, recomputed = pd.read_csv(RECORD / published), pd.read_csv(out)
    pd.testing.assert_frame_equal(published, recomputed, check_exact=False, rtol=1e-9)
