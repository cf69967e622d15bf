"""The published MNIST reproduction record (docs/results/mnist-cpu) is consistent with itself: every number in it is
recomputed here from its per-model CSV with plain pandas or the claims command, every model row carries its
provenance, the rules that judge it were committed before its new models were trained, and models that share a seed
are shown to share their weights until they prune."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from advprune import METHOD_VERSION, cli

RECORD = Path(__file__).resolve().parents[1] / "docs" / "results" / "mnist-cpu"
REPO = RECORD.parents[2]
CELL = ["strategy", "keep"]
METRICS = ["clean_acc_pct", "aa_acc_pct", "time_minutes", "aa_after_apgd_t_pct"]
FIRST_RECORD = 50  # models.csv's first 50 rows: the 10-seed record, run from a copy of the tree without .git


@pytest.fixture(scope="module")
def models() -> pd.DataFrame:
    return pd.read_csv(RECORD / "models.csv")


@pytest.fixture(scope="module")
def table1() -> pd.DataFrame:
    return pd.read_csv(RECORD / "artefacts" / "table1.csv")


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)


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
    assert len(models) >= FIRST_RECORD
    assert (models["method_version"] == METHOD_VERSION).all()
    assert models["dataset"].eq("mnist").all() and models["n_examples"].nunique() == 1
    for column in ("config_sha256", "dataset_sha256", "run_dir", "device"):
        assert models[column].notna().all() and (models[column].astype(str) != "").all(), column
    assert not models.duplicated(["strategy", "keep", "prune_epoch", "seed"]).any()
    # The first record ran from a copy without .git (no commit in its rows; code.json names it). Every later model
    # ran from a committed, clean checkout: its rows name the commit and are not dirty.
    assert (RECORD / "code.json").exists()
    later = models.iloc[FIRST_RECORD:]
    for side in ("train", "eval"):
        assert later[f"{side}_commit"].notna().all() and (later[f"{side}_dirty"] == False).all(), side  # noqa: E712


def test_the_commits_of_the_rows_are_commits_of_this_repository(models: pd.DataFrame) -> None:
    commits = set(models[["train_commit", "eval_commit"]].stack().dropna())
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone does not hold the run's commits")
    for commit in commits:
        assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, commit


def test_the_code_of_the_first_run_is_a_commit_of_this_repository() -> None:
    """code.json holds the sha256 of every source file the first run used; the commit it names holds exactly those."""
    code = json.loads((RECORD / "code.json").read_text())
    if _git("cat-file", "-e", f"{code['commit']}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {code['commit']} is not in this clone's history (a shallow clone?)")
    listed = _git("ls-tree", "-r", "--name-only", code["commit"], "src").stdout.split()
    assert sorted(p for p in listed if "__pycache__" not in p) == sorted(code["files"])
    for path, digest in code["files"].items():
        blob = subprocess.run(["git", "-C", str(REPO), "show", f"{code['commit']}:{path}"], capture_output=True,
                              check=True).stdout  # fmt: skip
        assert hashlib.sha256(blob).hexdigest() == digest, path


def test_the_rules_v2_were_committed_before_the_first_new_model_was_trained() -> None:
    """The commit that added claims-v1.yaml beside the new claims.yaml (rules v2) precedes the first job of the
    first sitting after the 10-seed record (facts.json, from the Snakemake console logs) and every new model."""
    added = _git("log", "--diff-filter=A", "--format=%H %cI", "--", "src/advprune/claims-v1.yaml").stdout.split()
    if not added:
        pytest.skip("the rules' history is not in this clone")
    committed = datetime.fromisoformat(added[1])
    facts = json.loads((RECORD / "facts.json").read_text())
    new_sittings = [s for s in facts["run_sittings"] if s["log"].startswith("chunk-")]
    assert new_sittings, "facts.json names no sitting of the 30-seed run"
    first_job = datetime.fromisoformat(new_sittings[0]["first_job"]).replace(tzinfo=committed.tzinfo)
    assert committed < first_job
    runs = pd.read_csv(RECORD / "runs.csv")
    trained = pd.to_datetime(runs["trained_utc"].dropna(), utc=True)
    assert len(trained) == len(runs) - FIRST_RECORD and (trained > committed).all()


def test_the_artefact_tables_are_the_records_rows_of_their_grids(models: pd.DataFrame, table1: pd.DataFrame) -> None:
    indexed = models.set_index("run_dir")
    for path in (RECORD / "artefacts").glob("*.csv"):
        rows = pd.read_csv(path).set_index("run_dir")
        assert rows.index.isin(indexed.index).all(), path.name
        pd.testing.assert_frame_equal(rows, indexed.loc[rows.index], check_dtype=False, obj=path.name)
    assert set(zip(table1["strategy"], table1["keep"].round(6))) == {
        ("full", 1.0), ("random", 0.4), ("random", 0.8), ("low+high", 0.4), ("low+high", 0.8)}
    assert table1.groupby(CELL).size().min() >= 10  # at least 10 seeds in every cell


def test_cells_csv_equals_the_means_recomputed_from_the_models(table1: pd.DataFrame) -> None:
    ours = _ours(table1)
    cells = pd.read_csv(RECORD / "cells.csv").assign(keep=lambda d: d["keep"].round(6))
    merged = ours.merge(cells, on=["strategy", "keep", "metric"], suffixes=("", "_published"), validate="1:1")
    assert len(merged) == len(ours) == len(cells)
    for column in ("n", "mean", "sd", "n_failed", "n_ok", "mean_ok", "sd_ok"):
        pd.testing.assert_series_equal(
            merged[column], merged[f"{column}_published"], check_names=False, check_dtype=False, rtol=1e-9
        )
    # Ours against the paper's mean: Welch's test from the two summaries (the paper's n is 30), recomputed.
    compared = merged.dropna(subset=["paper_mean"])
    assert len(compared) == 3 * table1.groupby(CELL).ngroups
    for c in compared.itertuples():
        p = stats.ttest_ind_from_stats(c.mean, c.sd, c.n, c.paper_mean, c.paper_sd, 30, equal_var=False).pvalue
        assert c.paper_welch_p == pytest.approx(p, rel=1e-9), (c.strategy, c.keep, c.metric)


def test_the_published_table1_shows_those_numbers(table1: pd.DataFrame) -> None:
    """table1.md's 'ours' entries read the recomputed cells' mean ± sd (one decimal for accuracies, two for minutes),
    with the collapsed runs counted after the AutoAttack cell."""
    ours = _ours(table1)
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
    assert checked == 3 * table1.groupby(CELL).ngroups


def test_the_facts_are_those_of_the_per_model_files(models: pd.DataFrame) -> None:
    """facts.json's counts and times, recomputed from models.csv and runs.csv (Snakemake's benchmark files per model);
    the run's wall time is the sum of its sittings (a run resumed later spans several console logs)."""
    facts = json.loads((RECORD / "facts.json").read_text())
    runs = pd.read_csv(RECORD / "runs.csv")
    assert facts["models"] == len(models) == len(runs) and list(runs["run_dir"]) == list(models["run_dir"])
    assert facts["collapsed_runs"] == int(models["collapsed"].sum()) == int(runs["collapsed"].sum())
    assert facts["train_wall_s_median"] == pytest.approx(runs["train_wall_s"].median())
    assert facts["eval_wall_s_median"] == pytest.approx(runs["eval_wall_s"].median())
    assert facts["run_wall_s"] == sum(sitting["wall_s"] for sitting in facts["run_sittings"])
    first = [sitting["first_job"] for sitting in facts["run_sittings"]]
    assert first == sorted(first)  # the sittings in the order they ran
    for name, n in facts["models_per_artefact"].items():
        assert len(pd.read_csv(RECORD / "artefacts" / f"{name}.csv")) == n, name


def test_models_of_one_seed_share_their_weights_until_they_prune(models: pd.DataFrame) -> None:
    """runs.csv's per-epoch weight digests (recorded from this version of the code on): every pruned model holds,
    after its pruning epoch e, the weights of the full-data model of its seed after e epochs; one epoch later, not.
    Where that full-data model predates the digests (Figure 3's seeds 0-4), the pruned models of the seed hold the
    same weights after e epochs as one another, and each its own one epoch later."""
    runs = pd.read_csv(RECORD / "runs.csv").merge(models[["run_dir", "prune_epoch"]], on="run_dir")
    runs = runs.dropna(subset=["weights_sha256_by_epoch"])
    digests = {row.run_dir: row.weights_sha256_by_epoch.split() for row in runs.itertuples()}
    full = {row.seed: digests[row.run_dir] for row in runs.itertuples() if row.strategy == "full"}
    compared = {"with full data": 0, "with one another": 0}
    for seed, pruned in runs[runs["strategy"] != "full"].groupby("seed"):
        epochs = set(pruned["prune_epoch"].astype(int))
        assert len(epochs) == 1, f"seed {seed}: models pruned after different epochs {epochs}"
        e = epochs.pop()
        if seed in full:
            reference, how = full[seed], "with full data"
        elif len(pruned) > 1:
            reference, how = digests[pruned["run_dir"].iloc[0]], "with one another"
        else:
            continue
        for run_dir in pruned["run_dir"]:
            assert digests[run_dir][:e] == reference[:e], run_dir
        after = [digests[run_dir][e] for run_dir in pruned["run_dir"]] + ([full[seed][e]] if seed in full else [])
        assert len(set(after)) == len(after), f"seed {seed}: two models hold the same weights after epoch {e + 1}"
        compared[how] += len(pruned)
    if not any(compared.values()):
        pytest.skip("no pruned models of the record share a seed with per-epoch digests yet")


@pytest.mark.parametrize(("rules", "published"), [("v2", "claims.csv"), ("v1", "claims-v1.csv")])
def test_the_published_claims_are_what_the_claims_command_computes_from_the_record(tmp_path, rules, published) -> None:
    """`advprune claims` over the record's artefact tables gives the published claims, by rules v2 (claims.csv) and by
    the first rules, v1 (claims-v1.csv, shown beside v2's): a change to the claims code that moves an interval or a
    verdict shows here, and the record is republished."""
    out = tmp_path / "claims.csv"
    tables = [f"--table={path.stem}={path}" for path in sorted((RECORD / "artefacts").glob("*.csv"))]
    assert cli.main(["claims", *tables, "--role=mnist=mnist", "--out", str(out), "--rules", rules]) == 0
    published, recomputed = pd.read_csv(RECORD / published), pd.read_csv(out)
    pd.testing.assert_frame_equal(published, recomputed, check_exact=False, rtol=1e-9)


def test_an_altered_model_row_changes_the_recomputed_verdict_numbers(tmp_path, table1: pd.DataFrame) -> None:
    """The recomputation above can fail: one run's AutoAttack accuracy altered by 30 points moves the interval."""
    altered = table1.copy()
    index = altered.index[(altered["strategy"] == "full")][0]
    altered.loc[index, "aa_acc_pct"] = (altered.loc[index, "aa_acc_pct"] + 30) % 100
    altered.to_csv(tmp_path / "table1.csv", index=False)
    out = tmp_path / "claims.csv"
    table = f"--table=table1={tmp_path / 'table1.csv'}"
    assert cli.main(["claims", table, "--role=mnist=mnist", "--out", str(out)]) == 0
    recomputed = pd.read_csv(out).set_index("id")
    published = pd.read_csv(RECORD / "claims.csv").set_index("id")
    claim = "mnist-loss-beats-full"
    assert not np.isclose(recomputed.loc[claim, "ci_low"], published.loc[claim, "ci_low"])


def test_the_readmes_tables_are_what_publish_writes_from_the_record() -> None:
    """Every number in the README's tables is generated from the record's files (themselves recomputed from
    models.csv above): a number altered by hand in the README fails here."""
    from advprune.report import record_readme

    tables = record_readme.published(RECORD / "README.md")
    assert set(tables) == {"seeds", "verdicts", "apgd", "paired", "cells"}
    assert tables == record_readme.blocks(RECORD)


def _headline() -> str:
    """The repository README's "Results so far" paragraph, which quotes this record."""
    text = (REPO / "README.md").read_text()
    start = text.index("**Results so far**")
    return " ".join(text[start:text.index("\n\n", start)].split())


def test_the_repository_readme_quotes_the_record_as_published(models: pd.DataFrame, table1: pd.DataFrame) -> None:
    """The README's headline is written by hand after each publication: every number in it is the record's, so a
    publication that leaves it stale fails here."""
    import re

    headline = _headline()
    assert f"{len(models)} models" in headline
    for artefact in ("table1", "fig3"):
        seeds = pd.read_csv(RECORD / "artefacts" / f"{artefact}.csv").groupby(CELL)["seed"].nunique()
        span = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}-{seeds.max()}"
        assert re.search(rf"{ {'table1': 'Table 1', 'fig3': 'Figure 3'}[artefact]}'s cells: {span} seeds", headline), \
            (artefact, span)
    cells = pd.read_csv(RECORD / "cells.csv").set_index(["metric", "strategy", "keep"])
    full = cells.loc[("aa_acc_pct", "full", 1.0)]
    runs = table1[table1["strategy"] == "full"]
    assert f"sd {full['sd']:.0f} points against {full['paper_sd']:.1f}" in headline
    assert f"{int((runs['aa_acc_pct'] < 28).sum())} of {len(runs)} runs below 28%" in headline
    for strategy, keep in (("low+high", 0.4), ("full", 1.0)):
        cell = cells.loc[("aa_acc_pct", strategy, keep)]
        assert f"{cell['mean']:.1f} against {cell['paper_mean']:.2f}" in headline, strategy  # the paper's 2 decimals
        p = cell["paper_welch_p"]
        assert (f"p = {p:.2g}" if p >= 0.001 else f"p = {p:.1g}") in headline, strategy  # as the record's table
    claims = pd.read_csv(RECORD / "claims.csv")
    measured = claims[claims["verdict"] != "not measured"]
    assert ("every verdict is inconclusive" in headline) == (measured["verdict"] == "inconclusive").all()


def test_the_repository_readmes_model_costs_are_the_records(models: pd.DataFrame) -> None:
    """README ("On a CPU") quotes the record's per-model wall times: recomputed from runs.csv."""
    text = " ".join((REPO / "README.md").read_text().split())
    runs = pd.read_csv(RECORD / "runs.csv")
    train, aa = runs["train_wall_s"] / 60, runs["eval_wall_s"] / 60
    broken = runs[runs["aa_acc_pct"] < 5]
    assert (
        f"({len(models)} models, two one-thread jobs on a machine shared with other work) a model's median wall time "
        f"was {train.median():.1f} minutes of training and {aa.median():.1f} of AutoAttack at n = 500 (quartiles {train.quantile(0.25):.1f}-"
        f"{train.quantile(0.75):.1f} and {aa.quantile(0.25):.1f}-{aa.quantile(0.75):.1f} minutes; the "
        f"{len(broken)} models that AutoAttack left below 5% took a median of "
        f"{broken['eval_wall_s'].median() / 60:.1f} minutes of AutoAttack)"
    ) in text


def _prose(text: str) -> str:
    """The record README without the tables publish writes (tested above), whitespace collapsed: the hand-written
    sentences, which a republication can leave stale."""
    import re

    return " ".join(re.sub(r"<!-- advprune publish: .*?<!-- /advprune publish -->", " ", text, flags=re.S).split())


def _stale_numbers(prose: str) -> list[str]:
    """Every interval, mean ± sd, Welch p, seeds-for-power figure, full-data failure and Figure 3 pooled mean the prose
    quotes, checked against the record's files at the precision quoted; returns what does not match."""
    import re

    def at(quoted: str, value: float) -> bool:
        decimals = len(quoted.split(".")[1]) if "." in quoted else 0
        return f"{value:.{decimals}f}".replace("-0.0", "0.0") == quoted.lstrip("+").replace("-0.0", "0.0")

    claims = pd.concat([pd.read_csv(RECORD / name) for name in ("claims.csv", "claims-v1.csv", "claims-apgd.csv")])
    claims = claims.dropna(subset=["ci_low"])
    cells = pd.read_csv(RECORD / "cells.csv")
    loss, full = (cells[(cells.metric == "aa_acc_pct") & (cells.strategy == s)].iloc[0] for s in ("low+high", "full"))
    # The paper's own interval for loss keep 0.4 against full data (30 runs each, Welch, 95%): what rules v2 cite.
    se2 = loss["paper_sd"] ** 2 / 30 + full["paper_sd"] ** 2 / 30
    df = se2**2 / ((loss["paper_sd"] ** 2 / 30) ** 2 / 29 + (full["paper_sd"] ** 2 / 30) ** 2 / 29)
    gap, half = loss["paper_mean"] - full["paper_mean"], stats.t.ppf(0.975, df) * se2**0.5
    paired = pd.read_csv(RECORD / "claims-paired.csv")
    intervals = [(r.ci_low, r.ci_high) for r in pd.concat([claims, paired]).itertuples()] + [(gap - half, gap + half)]
    stale = []
    for lo, hi in re.findall(r"\[(-?\d+\.\d+), (-?\d+\.\d+)\]", prose):
        if not any(at(lo, x) and at(hi, y) for x, y in intervals):
            stale.append(f"[{lo}, {hi}]")
    pairs = [(r.mean, r.sd) for r in cells.itertuples()] + [(r.paper_mean, r.paper_sd) for r in cells.itertuples()]
    for mean, sd in re.findall(r"(\d+\.\d+) ± (\d+\.\d+)", prose):
        if not any(at(mean, x) and at(sd, y) for x, y in pairs if pd.notna(x)):
            stale.append(f"{mean} ± {sd}")
    ps = {f"{p:.2g}" if p >= 0.001 else f"{p:.1g}" for p in cells["paper_welch_p"].dropna()}
    for p in re.findall(r"\bp = ([\d.e-]*\d)", prose):
        if p not in ps | {"0.2", "0.4", "0.6", "0.8"}:  # those four: the paper's p, the fraction pruned
            stale.append(f"p = {p}")
    needed = {f"{n:.0f}" for n in claims["seeds_needed"].dropna()}
    for found in re.findall(r"about (\d+) seeds per cell|about (\d+) and (\d+)\b", prose):
        stale += [f"about {n}" for n in found if n and n not in needed]
    table1 = pd.read_csv(RECORD / "artefacts" / "table1.csv")
    runs = table1[table1.strategy == "full"]
    failed = runs[runs.aa_acc_pct < 28].sort_values("seed")
    match = re.search(r"(\d+) of (\d+) full-data runs score below 28% \(seeds ([\d, and]+): ([\d., and]+)\)", prose)
    quoted = match and (match[1], match[2], re.findall(r"\d+", match[3]), re.findall(r"\d+\.\d", match[4]))
    if quoted != (str(len(failed)), str(len(runs)), [str(s) for s in failed.seed],
                  [f"{x:.1f}" for x in failed.aa_acc_pct]):  # fmt: skip
        stale.append(f"full-data failures: {quoted}")
    # "seed S scores a, b, c, d and e": its AutoAttack accuracy in Table 1's five cells, in the README's order.
    order = [("full", 1.0), ("low+high", 0.4), ("random", 0.4), ("low+high", 0.8), ("random", 0.8)]
    by_seed = table1.set_index(["seed", "strategy", "keep"])["aa_acc_pct"]
    five = r"seed (\d+) scores (\d+\.\d), (\d+\.\d), (\d+\.\d), (\d+\.\d) and (\d+\.\d)"
    for seed, *scores in re.findall(five, prose):
        actual = [f"{by_seed.get((int(seed), s, k), float('nan')):.1f}" for s, k in order]
        if actual != scores:
            stale.append(f"seed {seed} scores {scores}, not {actual}")
    from advprune.report.record_readme import failure_threshold

    fig3 = pd.read_csv(RECORD / "artefacts" / "fig3.csv")
    pruned = fig3[fig3.strategy != "full"].assign(failed=lambda d: d.aa_acc_pct < failure_threshold())
    pooled = pruned.groupby("strategy").agg(mean=("aa_acc_pct", "mean"), failed=("failed", "sum"))
    match = re.search(r"accuracy is (\d+\.\d)% for high loss, (\d+\.\d)% for low loss, (\d+\.\d)% for low\+high and "
                      r"(\d+\.\d)% for random; (\d+), (\d+), (\d+) and (\d+) of those runs", prose)  # fmt: skip
    order = ["high", "low", "low+high", "random"]
    expected = [f"{pooled.loc[s, 'mean']:.1f}" for s in order] + [str(pooled.loc[s, "failed"]) for s in order]
    if not match or list(match.groups()) != expected:
        stale.append(f"Figure 3 pooled means: {match and match.groups()} against {expected}")
    return stale


def test_the_records_prose_quotes_the_records_numbers() -> None:
    """The README's sentences are written by hand after each publication; every interval, mean ± sd, p, power figure,
    full-data failure, a seed's five Table 1 scores and Figure 3 pooled mean they quote is one of the record's files'
    numbers, so a republication that leaves a sentence stale fails here."""
    assert _stale_numbers(_prose((RECORD / "README.md").read_text())) == []


@pytest.mark.parametrize("quoted", [r"\[-?\d+\.\d+, -?(\d+\.\d+)\]", r"\d+\.\d+ ± (\d+\.\d+)", r"p = 0\.00(\d+)",
                                    r"accuracy is (\d+\.\d)% for high loss", r"of (\d+) full-data runs score",
                                    r"seed \d+ scores (\d+\.\d)"])
def test_a_stale_number_in_the_prose_is_found(quoted: str) -> None:
    """The check above can fail: the first number of each kind the prose quotes, altered by one in its last digit,
    is reported."""
    import re

    prose = _prose((RECORD / "README.md").read_text())
    match = re.search(quoted, prose)
    assert match, f"the prose quotes no {quoted}"
    number = match[1]
    altered = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert _stale_numbers(prose[: match.start(1)] + altered + prose[match.end(1):])


def test_the_seed_paired_sensitivity_is_scipys_paired_t_test_on_the_record() -> None:
    """claims-paired.csv recomputed with pandas and scipy.stats.ttest_rel: per seed, each side's mean over its cells
    (seeds with a run in every cell of both sides), the paired t interval at the rules' level."""
    from advprune.report.claim_rules import load_rules

    published = pd.read_csv(RECORD / "claims-paired.csv").set_index("id")
    rules = load_rules("v2")
    checked = 0
    for claim in rules.claims:
        measure = claim.measure
        if measure["kind"] != "difference" or claim.id not in published.index:
            continue
        table = pd.read_csv(RECORD / "artefacts" / f"{claim.artefact}.csv")
        rate = measure["metric"] == "collapse_pct" or "below" in measure
        values = (100.0 * table["collapsed"] if measure["metric"] == "collapse_pct"
                  else 100.0 * (table[measure["metric"]] < measure["below"]) if "below" in measure
                  else table[measure["metric"]])  # fmt: skip
        wide = table.assign(value=values).pivot_table(index="seed", columns=["strategy", "keep"], values="value")
        sides = [[(c["strategy"], float(c["keep"])) for c in (measure[s] if isinstance(measure[s], list)
                                                              else [measure[s]])] for s in ("a", "b")]  # fmt: skip
        complete = wide[sides[0] + sides[1]].dropna()
        a, b = complete[sides[0]].mean(axis=1), complete[sides[1]].mean(axis=1)
        level = rules.confidence["rates" if rate else "means"]
        ci = stats.ttest_rel(a, b).confidence_interval(level)
        row = published.loc[claim.id]
        assert row["n_seeds"] == len(complete) and row["confidence"] == level, claim.id
        expected = ((a - b).mean(), ci.low, ci.high)
        assert (row["ours"], row["ci_low"], row["ci_high"]) == pytest.approx(expected), claim.id
        checked += 1
    assert checked == len(published) >= 8
