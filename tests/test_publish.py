"""`advprune publish`: a run's finished models join a reproduction record by identity, published rows never change,
each artefact's rows come from the configuration's grid, and every derived file is written from the record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import metrics_record, train_record

from advprune import cli
from advprune.identity import EVALUATION_FILE, ModelKey
from advprune.report.labels import seed_ranges, seeds_text

ROOT = Path(__file__).resolve().parents[1]
N = 100  # AutoAttack points of the fake run


def finish(run: Path, key: ModelKey, aa: float, *, collapsed: bool = False) -> None:
    """A model directory as the workflow leaves it: train.json and its evaluation."""
    directory = run / key.directory
    directory.mkdir(parents=True)
    history = [{"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "pgd_acc": 0.5, "lr": 0.1, "n_points": 100,
                "seconds": 1.0, "weights_sha256": f"{key.seed}-{e}" if e <= 3 or not key.prunes else f"{key}-{e}"}
               for e in range(1, 11)]  # fmt: skip
    train = train_record(
        dataset=key.dataset, strategy=key.strategy, keep=key.keep, prune_epoch=key.prune_epoch, seed=key.seed,
        schedule_after_pruning=key.schedule, method_version=2, n_kept=int(100 * key.keep), history=history,
        collapsed=collapsed, collapse_epoch=9 if collapsed else None,
        provenance={"commit": "abc", "dirty": False, "created_utc": "2026-12-06T09:00:00+00:00"},
    )  # fmt: skip
    acc = {"apgd-ce": aa + 3, "apgd-t": aa + 2, "fab-t": aa + 1, "square": aa}
    metrics = metrics_record(dataset=key.dataset, n_examples=N, autoattack_acc=aa / 100,
                             robust_acc_after={k: v / 100 for k, v in acc.items()})  # fmt: skip
    (directory / "train.json").write_text(json.dumps(train))
    (directory / EVALUATION_FILE.format(n=N)).write_text(json.dumps(metrics))


TABLE1_CELLS = [("full", 1.0), ("random", 0.4), ("low+high", 0.4), ("random", 0.8), ("low+high", 0.8)]


def table1_key(strategy: str, keep: float, seed: int) -> ModelKey:
    return ModelKey.create("mnist", strategy, keep, 3, seed)


def publish(run: Path, record: Path, seeds_max: int, *extra: str) -> int:
    return cli.main([
        "publish", str(run), str(record),
        "--configfile", str(ROOT / "config.yaml"), str(ROOT / "profiles/cpu/cpu.yaml"),
        "--set", f"seeds_max={seeds_max}", "--set", f"n_examples={N}", "--artefact", "table1", "--role", "mnist=mnist",
        *extra,
    ])  # fmt: skip


def test_a_record_grows_by_model_identity_and_never_changes_a_row(tmp_path: Path):
    rng = np.random.default_rng(0)
    first, record = tmp_path / "sitting1", tmp_path / "record"
    for seed in range(2):
        for strategy, keep in TABLE1_CELLS:
            finish(first, table1_key(strategy, keep, seed), float(rng.uniform(40, 80)))
    assert publish(first, record, 2) == 0
    published, published_text = pd.read_csv(record / "models.csv"), (record / "models.csv").read_text()
    assert len(published) == 10 and set(published["seed"]) == {0, 1}

    # A later sitting, on another machine: only seed 2's models are there. They are appended; seeds 0-1 stay as
    # published, although their files are gone.
    second = tmp_path / "sitting2"
    for strategy, keep in TABLE1_CELLS:
        finish(second, table1_key(strategy, keep, 2), float(rng.uniform(40, 80)))
    assert publish(second, record, 3) == 0
    grown = pd.read_csv(record / "models.csv")
    assert len(grown) == 15
    pd.testing.assert_frame_equal(grown.iloc[:10], published)
    assert (record / "models.csv").read_text().startswith(published_text)  # byte for byte: no float reformatted
    runs = pd.read_csv(record / "runs.csv")
    assert list(runs["run_dir"]) == list(grown["run_dir"])
    # Per model, the monitor and the weights per epoch: a seed's models share epochs 1-3 and part after.
    digests = runs.set_index("run_dir")["weights_sha256_by_epoch"].str.split()
    full, pruned = (digests[table1_key(s, k, 2).directory] for s, k in (TABLE1_CELLS[0], TABLE1_CELLS[1]))
    assert full[:3] == pruned[:3] and full[3] != pruned[3]
    # The derived files: the artefact's rows, its drawing, the claims by both rules and on APGD only, the cells.
    table1 = pd.read_csv(record / "artefacts" / "table1.csv")
    assert len(table1) == 15 and (record / "table1.pdf").is_file() and (record / "table1.md").is_file()
    for name in ("claims.csv", "claims-v1.csv", "claims-apgd.csv"):
        claims = pd.read_csv(record / name)
        assert (claims.loc[claims["dataset"] == "mnist", "n_runs"] > 0).any(), name
    apgd = pd.read_csv(record / "claims-apgd.csv").set_index("id")
    assert "mnist-loss-beats-random-apgd" in apgd.index
    cells = pd.read_csv(record / "cells.csv")
    assert set(cells["metric"]) == {"clean_acc_pct", "aa_acc_pct", "time_minutes", "aa_after_apgd_t_pct"}
    apgd_full = cells[(cells["metric"] == "aa_after_apgd_t_pct") & (cells["strategy"] == "full")].iloc[0]
    aa_full = cells[(cells["metric"] == "aa_acc_pct") & (cells["strategy"] == "full")].iloc[0]
    assert apgd_full["mean"] == pytest.approx(aa_full["mean"] + 2)  # the fake evaluations: APGD-T = AA + 2
    facts = json.loads((record / "facts.json").read_text())
    assert facts["models"] == 15 and facts["models_per_artefact"] == {"table1": 15}


def test_a_published_model_found_again_with_other_numbers_is_refused(tmp_path: Path, capsys):
    run, record = tmp_path / "run", tmp_path / "record"
    for strategy, keep in TABLE1_CELLS:
        finish(run, table1_key(strategy, keep, 0), 60.0)
    assert publish(run, record, 1) == 0
    before = (record / "models.csv").read_bytes()
    retrained = tmp_path / "retrained"
    finish(retrained, table1_key("random", 0.4, 0), 20.0)
    assert publish(retrained, record, 1) == 2
    err = capsys.readouterr().err
    assert "random_keep0.4_e3_rescale/seed0: aa_acc_pct is 20.0 in the run but 60.0 in the record" in err
    assert (record / "models.csv").read_bytes() == before


@pytest.mark.parametrize(("case", "expected"), [
    ("no run directory", "no such run directory"),
    ("no log", "none.log: no such file"),
    ("an artefact left out", "holds fig3 too, and its claims are computed from every artefact it holds"),
    ("fewer seeds", "table1: this configuration's grid leaves out 5 of the 10 models"),
])  # fmt: skip
def test_a_publication_that_would_drop_or_misread_is_refused_before_it_writes(tmp_path: Path, capsys, case, expected):
    """Each refused in one line, and no file of the record changes: a publication with a wrong run directory would
    rewrite the record from no new model; one without an artefact the record holds would turn its claims "not
    measured"; one without the run's seeds_max would redraw every artefact and verdict from fewer seeds."""
    run, record = tmp_path / "run", tmp_path / "record"
    for seed in range(2):
        for strategy, keep in TABLE1_CELLS:
            finish(run, table1_key(strategy, keep, seed), 60.0 + seed)
    assert publish(run, record, 2, "--artefact", "fig3") == 0
    capsys.readouterr()
    files = {path: path.read_bytes() for path in record.rglob("*") if path.is_file()}
    finish(run, table1_key("full", 1.0, 2), 50.0)  # a new model: a publication would write
    run_dir, seeds_max, *extra = {
        "no run directory": (tmp_path / "nowhere", 3, "--artefact", "fig3"),
        "no log": (run, 3, "--artefact", "fig3", "--log", str(tmp_path / "none.log")),
        "an artefact left out": (run, 3),
        "fewer seeds": (run, 1, "--artefact", "fig3"),
    }[case]  # fmt: skip
    assert publish(run_dir, record, seeds_max, *extra) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert {path: path.read_bytes() for path in record.rglob("*") if path.is_file()} == files
    assert publish(run, record, 3, "--artefact", "fig3") == 0  # the run's own configuration publishes
    assert "11 models, 1 new (table1: 11, fig3: " in capsys.readouterr().out


def test_each_row_names_its_own_models_directory(tmp_path: Path):
    """Directories sort as text (seed10 before seed2, low+high_... before low_...), rows by model: a row must still get
    its own directory. (It once got the n-th directory: seeds 10-29 and low+high alone hid that, fig3's low showed it.)"""
    run, record = tmp_path / "run", tmp_path / "record"
    aa = {}
    for i, (strategy, keep, seed) in enumerate([(s, k, seed) for seed in (2, 10) for s, k in [*TABLE1_CELLS,
                                                                                             ("low", 0.4)]]):
        aa[table1_key(strategy, keep, seed).directory] = 40.0 + i
        finish(run, table1_key(strategy, keep, seed), 40.0 + i)
    assert publish(run, record, 11) == 0
    models = pd.read_csv(record / "models.csv")
    assert len(models) == len(aa)
    for row in models.itertuples():
        train = json.loads((run / row.run_dir / "train.json").read_text())
        assert (train["strategy"], train["keep"], train["seed"]) == (row.strategy, row.keep, row.seed), row.run_dir
        assert row.aa_acc_pct == pytest.approx(aa[row.run_dir])
    assert publish(run, record, 11) == 0  # published again from the same run: every row found with its numbers


def test_only_the_configured_grid_enters_an_artefact(tmp_path: Path):
    """A model outside table1's grid (another keep) is in models.csv but not in artefacts/table1.csv."""
    run, record = tmp_path / "run", tmp_path / "record"
    for strategy, keep in [*TABLE1_CELLS, ("random", 0.6)]:
        finish(run, table1_key(strategy, keep, 0), 60.0)
    assert publish(run, record, 1) == 0
    assert len(pd.read_csv(record / "models.csv")) == 6
    assert 0.6 not in set(pd.read_csv(record / "artefacts" / "table1.csv")["keep"])


def test_missing_names_what_the_record_lacks_seed_by_seed(tmp_path: Path, capsys):
    run, record = tmp_path / "run", tmp_path / "record"
    for strategy, keep in TABLE1_CELLS:
        finish(run, table1_key(strategy, keep, 0), 60.0)
    assert publish(run, record, 1) == 0
    capsys.readouterr()
    base = ["missing", str(record), "--configfile", str(ROOT / "config.yaml"), str(ROOT / "profiles/cpu/cpu.yaml"),
            "--set", f"n_examples={N}", "--set", "seeds_max=3", "--artefact", "table1"]  # fmt: skip
    assert cli.main(base) == 0
    targets = capsys.readouterr().out.split()
    expected = [table1_key(s, k, seed).evaluation_file(N) for seed in (1, 2) for s, k in TABLE1_CELLS]
    assert sorted(targets) == sorted(expected) and len(targets) == 10
    assert [t.split("/seed")[1][0] for t in targets] == ["1"] * 5 + ["2"] * 5  # seed by seed
    assert cli.main([*base, "--only", "random=0.4", "--only", "random=0.8"]) == 0
    assert capsys.readouterr().out.split() == [table1_key("random", k, seed).evaluation_file(N)
                                               for seed in (1, 2) for k in (0.4, 0.8)]  # fmt: skip
    assert cli.main([*base, "--only", "random=most"]) == 2
    assert "--only 'random=most': KEEP must be a number" in capsys.readouterr().err
    # A cell of no grid named would list nothing, and a run would train nothing without a word.
    assert cli.main([*base, "--only", "random=0.3"]) == 2
    assert "--only random=0.3: no such cell in the grids of table1 (full=1, low+high=0.4" in capsys.readouterr().err


def test_missing_refuses_a_folder_that_is_no_record_unless_it_starts_one(tmp_path: Path, capsys):
    """A mistyped record path would list every model of the grids, published ones too, to be trained again."""
    args = ["--configfile", str(ROOT / "config.yaml"), str(ROOT / "profiles/cpu/cpu.yaml"), "--set",
            f"n_examples={N}", "--set", "seeds_max=2", "--artefact", "table1"]  # fmt: skip
    assert cli.main(["missing", str(tmp_path / "typo"), *args]) == 2
    assert "typo holds no models.csv: check the path, or pass --new-record" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert cli.main(["missing", str(tmp_path / "a-file"), "--new-record", *args]) == 2
    assert "a-file: not a folder" in capsys.readouterr().err
    assert cli.main(["missing", str(tmp_path / "new"), "--new-record", *args]) == 0
    assert len(capsys.readouterr().out.split()) == 2 * len(TABLE1_CELLS)


def test_run_record_refuses_a_short_command_line_in_one_line():
    import subprocess

    result = subprocess.run(["bash", str(ROOT / "scripts" / "run-record.sh"), "docs/results/x"], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "usage:" in result.stderr


def run_record(record: Path, logs: Path, env: dict[str, str]) -> "subprocess.CompletedProcess":
    """scripts/run-record.sh for seeds 0-1 of table1 at n = N, with the record's seed-0 models published."""
    import subprocess

    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "run-record.sh"), str(record), str(logs), "--configfile", "config.yaml",
         "profiles/cpu/cpu.yaml", "--set", "seeds_max=2", "--set", f"n_examples={N}", "--artefact", "table1"],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.slow
def test_run_record_asks_snakemake_for_the_missing_models_only(tmp_path: Path):
    """One call per CHUNK models, the targets being what `advprune missing` names (a dry run: -n)."""
    import os

    run, record, logs = tmp_path / "run", tmp_path / "record", tmp_path / "logs"
    for strategy, keep in TABLE1_CELLS:
        finish(run, table1_key(strategy, keep, 0), 60.0)
    assert publish(run, record, 1) == 0
    env = {**os.environ, "CHUNK": "4", "SNAKEMAKE_ARGS": "-n --quiet"}
    result = run_record(record, logs, env)
    assert result.returncode == 0, result.stderr
    calls = sorted(logs.glob("chunk-*.log"))
    assert [c.name for c in calls] == ["chunk-001.log", "chunk-002.log"]  # seed 1's five models in calls of 4
    asked = [line for c in calls for line in c.read_text().splitlines() if "Command:" in line]
    assert "seed1/autoattack-n100.json" in asked[0] and "seed0" not in " ".join(asked)


def test_publish_writes_the_readmes_tables_between_their_markers_and_leaves_the_prose(tmp_path: Path):
    """The README's tables come from the record's files, rewritten at each publish; the author's prose and a table
    without markers stay as written; a begin marker without its end is refused before anything is written."""
    from advprune.report import record_readme

    run, record = tmp_path / "run", tmp_path / "record"
    rng = np.random.default_rng(1)
    for seed in range(2):
        for strategy, keep in TABLE1_CELLS:
            finish(run, table1_key(strategy, keep, seed), float(rng.uniform(40, 80)))
    record.mkdir()
    prose = "# A record\n\nOur words, kept.\n\n"
    marked = "".join(f"{record_readme.BEGIN.format(name=name)}\nstale\n{record_readme.END}\n\nmore words\n\n"
                     for name in ("verdicts", "cells"))  # fmt: skip
    (record / "README.md").write_text(prose + marked)
    assert publish(run, record, 2) == 0
    readme = (record / "README.md").read_text()
    assert readme.startswith(prose) and readme.count("more words") == 2 and "stale" not in readme
    tables = record_readme.published(record / "README.md")
    assert tables == {name: record_readme.blocks(record)[name] for name in ("verdicts", "cells")}
    cells = pd.read_csv(record / "cells.csv")
    full = cells[(cells["metric"] == "aa_acc_pct") & (cells["strategy"] == "full")].iloc[0]
    assert f"{full['mean']:.2f} ± {full['sd']:.2f} (2)" in tables["cells"]
    assert "| On MNIST, loss-based pruning (low+high) is more robust than random pruning" in tables["verdicts"]
    assert "inconclusive (2 vs 2; fewer than 10 runs in a group)" in tables["verdicts"]  # why, not only what
    seeds = record_readme.blocks(record)["seeds"].splitlines()
    assert "| table1 | full data | 2 | 0-1 |" in seeds and "| table1 | random, keep 0.4 | 2 | 0-1 |" in seeds
    assert seed_ranges([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8" and seed_ranges([3]) == "3"
    assert seeds_text([8, 7, 0]) == "3 seeds (0, 7-8)" and seeds_text([4]) == "1 seed (4)"

    broken = readme + record_readme.BEGIN.format(name="apgd") + "\nno end\n"
    (record / "README.md").write_text(broken)
    with pytest.raises(ValueError, match="no '<!-- /advprune publish -->' after it"):
        record_readme.update(record / "README.md", record_readme.blocks(record))
    assert (record / "README.md").read_text() == broken


@pytest.mark.slow
def test_run_record_trains_with_the_code_of_another_checkout(tmp_path: Path):
    """CODE_CHECKOUT: the targets are this checkout's `advprune missing`, the Snakemake calls run in (and with the
    package of) the other checkout, e.g. a worktree of the commit a record's earlier rows name."""
    import os
    import subprocess

    from workflow_helpers import copy_workflow

    code = copy_workflow(tmp_path / "code")
    with open(code / "Snakefile", "a") as snakefile:
        snakefile.write('\nimport advprune\nprint("planned by the package at", advprune.__file__)\n')
    run, record, logs = tmp_path / "run", tmp_path / "record", tmp_path / "logs"
    for strategy, keep in TABLE1_CELLS:
        finish(run, table1_key(strategy, keep, 0), 60.0)
    assert publish(run, record, 1) == 0
    env = {**os.environ, "CHUNK": "10", "SNAKEMAKE_ARGS": "-n --quiet", "CODE_CHECKOUT": str(code)}
    result = run_record(record, logs, env)
    assert result.returncode == 0, result.stderr
    log = (logs / "chunk-001.log").read_text()
    assert f"planned by the package at {code / 'src' / 'advprune' / '__init__.py'}" in log, log[-2000:]
    assert "seed1/autoattack-n100.json" in log and "seed0/" not in log

    bad = subprocess.run(["bash", str(ROOT / "scripts" / "run-record.sh"), str(record), str(logs), "--artefact", "x"],
                         capture_output=True, text=True, env={**env, "CODE_CHECKOUT": str(tmp_path)})  # fmt: skip
    assert bad.returncode == 2 and "has no Snakefile" in bad.stderr


def test_the_verdict_table_says_what_an_all_of_claims_parts_found(tmp_path: Path):
    """A claim made of parts ("low is the worst" = low below each other strategy) has no interval of its own: the
    README's verdict says how its parts' verdicts stand, read from the parts' own rows (the rules name the parts)."""
    from advprune.report import claims, record_readme

    whole = next(c for c in claims.load_rules("v2").claims if c.measure["kind"] == "all_of")
    parts = whole.measure["claims"]
    assert len(parts) == 3

    def row(claim_id: str, verdict: str, **extra) -> dict:
        return {"id": claim_id, "claim": claim_id, "reading": "pooled", "dataset": "mnist", "ours": np.nan,
                "ci_low": np.nan, "ci_high": np.nan, "n_runs": 40, "n_a": np.nan, "n_b": np.nan, "paper": np.nan,
                "verdict": verdict, "rule": "", "interval": "", "seeds_needed": np.nan, "source": "Figure 3b",
                "note": "", **extra}  # fmt: skip

    rows = [row(whole.id, "inconclusive", note="(its note is not read)")]
    rows += [row(part, verdict) for part, verdict in zip(parts, ["reproduced", "inconclusive", "inconclusive"])]
    pd.DataFrame(rows).to_csv(tmp_path / "claims.csv", index=False)
    (line,) = [line for line in record_readme.verdict_table(tmp_path).splitlines() if f"| {whole.id} |" in line]
    assert "| inconclusive (its 3 parts below: 2 inconclusive, 1 reproduced) |" in line
