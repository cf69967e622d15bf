"""advprune.report: the tidy table, statistics, selection, figures and tables, on synthetic runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from advprune.report import commands
from advprune.report.aggregate import ATTACKS, COLUMNS, DTYPES, RunRecordError, collect, read_table, write_table
from advprune.report.figures import FIGURES, draw_strategy_comparison, fig5_fits
from advprune.report.paper import TABLE1, TABLE1_CELLS, cell_header
from advprune.report.selection import expand_full, require_single_setting, select
from advprune.report.stats import linear_fit, summarise
from advprune.report.tables import ablation_schedule, draw_table_pdf, table1, table_values, write_table_files

# ---------------------------------------------------------------------------------------------------------------------
# Synthetic inputs


def train_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "dataset": "mnist", "strategy": "random", "keep": 0.4, "prune_epoch": 3, "seed": 0,
        "schedule_after_pruning": "rescale", "precision": "fp32", "method_version": 1, "n_train": 100, "n_kept": 40,
        "train_seconds": 30.0, "scoring_seconds": 1.5, "collapsed": False, "collapse_epoch": None,
        "history": [
            {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "pgd_acc": 0.3, "lr": 0.1, "n_points": 100,
             "seconds": 1.0},
            {"epoch": 2, "train_loss": 0.5, "train_acc": 0.8, "pgd_acc": 0.6, "lr": 0.0, "n_points": 40,
             "seconds": 0.5},
        ],
        "device": "cpu (test)", "jobs_on_device": 1, "versions": {"torch": "x"}, "settings": {},
    }  # fmt: skip
    return record | overrides


def metrics_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "dataset": "mnist", "model": "m.pt", "eps": 0.3, "n_examples": 100, "clean_acc": 0.98, "autoattack_acc": 0.7,
        "robust_acc_after": {"apgd-ce": 0.8, "apgd-t": 0.75, "fab-t": 0.72, "square": 0.7},
        "attacks_run": list(ATTACKS), "eval_seconds": 12.0, "device": "cpu (test)", "warnings": [],
    }  # fmt: skip
    return record | overrides


def write_pair(root: Path, name: str, train: dict[str, Any], metrics: dict[str, Any]) -> tuple[Path, Path]:
    run = root / name
    run.mkdir(parents=True)
    (run / "train.json").write_text(json.dumps(train))
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run / "train.json", run / "metrics.json"


def make_runs(datasets: tuple[str, ...] = ("mnist", "cifar10"), seeds: int = 3) -> pd.DataFrame:
    """A tidy table covering every figure's and table's grid, with noisy but known structure."""
    rng = np.random.default_rng(0)
    rows = []

    def add(dataset: str, strategy: str, keep: float, epoch: int | None, seed: int, **extra: Any) -> None:
        time = 0.5 + 2.0 * keep + rng.normal(0, 0.01)
        row = {
            "dataset": dataset, "strategy": strategy, "keep": keep, "prune_epoch": epoch, "seed": seed,
            "schedule_after_pruning": None if strategy == "full" else "rescale", "precision": "fp32",
            "method_version": 1, "n_train": 1000, "n_kept": int(1000 * keep), "train_seconds": 60 * time,
            "scoring_seconds": 0.0, "time_seconds": 60 * time, "time_minutes": time,
            "clean_acc_pct": 90 + 5 * keep + rng.normal(), "aa_acc_pct": 40 + 20 * keep + rng.normal(),
            **{f"aa_after_{a.replace('-', '_')}_pct": 50.0 for a in ATTACKS}, "n_examples": 100,
            "eval_seconds": 3.0, "collapsed": False, "collapse_epoch": None, "final_pgd_acc_pct": 50.0,
            "device": "cpu (test)", "jobs_on_device": 1, "run_dir": f"runs/{dataset}/{strategy}/{keep}/{epoch}/{seed}",
        }  # fmt: skip
        rows.append(row | extra)

    for dataset in datasets:
        for seed in range(seeds):
            add(dataset, "full", 1.0, None, seed)
            for strategy in ("high", "low", "low+high", "random"):
                for keep in (0.2, 0.4, 0.6, 0.8):
                    for epoch in (1, 3):
                        add(dataset, strategy, keep, epoch, seed)
            for keep in (0.7, 0.9):  # fig1's runs; at e = 1 and 3 they must stay out of figures 3-5 and 7
                for epoch in (1, 3, 5):
                    add(dataset, "random", keep, epoch, seed)
    # One collapsed run, so the figures must annotate it.
    rows[0] |= {"collapsed": True, "collapse_epoch": 4, "aa_acc_pct": 0.0}
    return pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES)


# ---------------------------------------------------------------------------------------------------------------------
# aggregate


def test_collect_builds_one_row_per_model(tmp_path: Path) -> None:
    pairs = [
        write_pair(tmp_path, "b", train_record(seed=1, train_seconds=40.0, scoring_seconds=2.0), metrics_record()),
        write_pair(
            tmp_path, "a",
            train_record(strategy="full", keep=1.0, prune_epoch=None, schedule_after_pruning=None, scoring_seconds=0.0),
            metrics_record(robust_acc_after={"apgd-ce": 0.1}),
        ),
    ]  # fmt: skip
    df = collect(pairs)
    assert list(df.columns) == COLUMNS
    assert list(df["strategy"]) == ["full", "random"]  # sorted rows
    pruned = df[df["strategy"] == "random"].iloc[0]
    assert pruned["time_seconds"] == pytest.approx(40.0 + 2.0)
    assert pruned["time_minutes"] == pytest.approx(42.0 / 60)
    assert pruned["aa_acc_pct"] == pytest.approx(70.0)
    assert pruned["final_pgd_acc_pct"] == pytest.approx(60.0)  # the last epoch's
    assert pruned["run_dir"] == str(tmp_path / "b")
    full = df[df["strategy"] == "full"].iloc[0]
    assert pd.isna(full["prune_epoch"]) and full["aa_after_apgd_ce_pct"] == pytest.approx(10.0)
    assert math.isnan(full["aa_after_square_pct"])  # an attack that did not run

    write_table(df, tmp_path / "runs.csv")
    pd.testing.assert_frame_equal(read_table(tmp_path / "runs.csv"), df)


@pytest.mark.parametrize(
    ("which", "key", "record"),
    [
        ("train.json", "seed", {k: v for k, v in train_record().items() if k != "seed"}),
        ("train.json", "collapsed", train_record(collapsed=1)),
        ("metrics.json", "autoattack_acc", metrics_record(autoattack_acc=70.0)),  # percent, not a fraction
    ],
)
def test_collect_names_the_file_and_key(tmp_path: Path, which: str, key: str, record: dict[str, Any]) -> None:
    train, metrics = (record, metrics_record()) if which == "train.json" else (train_record(), record)
    pair = write_pair(tmp_path, "run", train, metrics)
    with pytest.raises(RunRecordError, match=rf"{tmp_path / 'run' / which}.*'{key}'"):
        collect([pair])


# ---------------------------------------------------------------------------------------------------------------------
# stats and selection


def test_summarise_counts_failures_and_ok_runs() -> None:
    df = make_runs(("mnist",), seeds=4).query("strategy == 'random' and keep == 0.4 and prune_epoch == 3").copy()
    df["collapsed"] = [True, False, False, False]
    df.loc[df.index[0], "aa_acc_pct"] = 1.0
    single = make_runs(("cifar10",), seeds=1).query("strategy == 'random' and keep == 0.4 and prune_epoch == 3")
    summary = summarise(pd.concat([df, single]), ["dataset", "keep"], "aa_acc_pct").set_index("dataset")

    values, ok = df["aa_acc_pct"].to_numpy(), df["aa_acc_pct"].to_numpy()[1:]
    row = summary.loc["mnist"]
    assert row["mean"] == pytest.approx(values.mean()) and row["sd"] == pytest.approx(values.std(ddof=1))
    assert (row["n"], row["n_failed"], row["n_ok"]) == (4, 1, 3)
    assert row["mean_ok"] == pytest.approx(ok.mean()) and row["sd_ok"] == pytest.approx(ok.std(ddof=1))
    assert summary.loc["cifar10", "n"] == 1 and math.isnan(summary.loc["cifar10", "sd"])


def test_summarise_keeps_groups_with_missing_keys() -> None:
    df = make_runs(("mnist",), seeds=2)
    summary = summarise(df, ["strategy", "prune_epoch"], "aa_acc_pct")
    full = summary[summary["strategy"] == "full"]
    assert len(full) == 1 and pd.isna(full["prune_epoch"].iloc[0]) and full["n"].iloc[0] == 2


def test_expand_full_joins_every_strategy_line() -> None:
    df = select(make_runs(("mnist",), seeds=2), strategies=["low+high", "random"], prune_epochs=[1])
    expanded = expand_full(df)
    assert "full" not in set(expanded["strategy"])
    for strategy in ("low+high", "random"):
        at_one = expanded[(expanded["strategy"] == strategy) & (expanded["keep"] == 1.0)]
        assert len(at_one) == (df["strategy"] == "full").sum() == 2


def test_select_lets_full_rows_through_strategy_epoch_and_schedule() -> None:
    df = make_runs(("mnist",), seeds=1)
    chosen = select(df, strategies=["random"], prune_epochs=[1], schedule="rescale", keeps=[0.4, 1.0])
    assert sorted(chosen["strategy"]) == ["full", "random"]
    assert select(df, strategies=["random"], keeps=[0.7])["strategy"].eq("random").all()
    assert select(make_runs(), datasets=["cifar10"], seeds=[1])[["dataset", "seed"]].drop_duplicates().shape == (1, 2)


def test_mixed_schedules_are_refused() -> None:
    df = make_runs(("cifar10",), seeds=2)
    df.loc[df.index[-1], "schedule_after_pruning"] = "fixed"
    with pytest.raises(ValueError, match="schedule_after_pruning"):
        require_single_setting(df, "test")
    require_single_setting(df, "test", varying=["schedule_after_pruning"])


def test_linear_fit_recovers_a_known_line() -> None:
    x = np.repeat([0.2, 0.4, 0.6, 0.8, 1.0], 6)
    y = 3.0 * x + 0.5 + np.random.default_rng(1).normal(0, 0.01, len(x))
    fit = linear_fit(x, y)
    assert fit.slope == pytest.approx(3.0, abs=0.05) and fit.intercept == pytest.approx(0.5, abs=0.05)
    assert fit.r2 > 0.99
    assert math.isnan(linear_fit(np.ones(3), np.arange(3.0)).slope)


def test_fig5_fit_recovers_the_slope_of_synthetic_times() -> None:
    df = make_runs(seeds=3)
    fits = fig5_fits(df).set_index("dataset")
    assert list(fits.index) == ["mnist", "cifar10"]
    assert list(fits["n"]) == [3 * 5, 3 * 5]  # seeds x (random at keep 0.2-0.8, e = 3, and full data); not keep 0.7
    assert fits["slope"].to_numpy() == pytest.approx([2.0, 2.0], abs=0.05)  # make_runs: time = 0.5 + 2 keep
    assert fits["intercept"].to_numpy() == pytest.approx([0.5, 0.5], abs=0.05)


# ---------------------------------------------------------------------------------------------------------------------
# figures


def is_pdf(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_writes_a_pdf(tmp_path: Path, name: str) -> None:
    out = tmp_path / "figures" / f"{name}.pdf"
    FIGURES[name](make_runs(), out)
    assert is_pdf(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left behind


def test_figures_refuse_an_empty_selection(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no rows"):
        draw_strategy_comparison(make_runs(), tmp_path / "x.pdf", prune_epoch=99)


# ---------------------------------------------------------------------------------------------------------------------
# tables


def test_table1_difference_is_ours_minus_paper() -> None:
    df = make_runs(seeds=3)
    values = table_values(df)
    for v in values.itertuples():
        cell = (v.strategy, v.keep)
        runs = select(df, strategies=[v.strategy], keeps=[v.keep], prune_epochs=[3])
        runs = runs[(runs["dataset"] == v.dataset) & (runs["strategy"] == v.strategy)]
        paper_mean, _ = TABLE1[(v.dataset, cell, v.metric)]
        assert v.mean == pytest.approx(runs[v.metric].mean())
        assert v.diff == pytest.approx(runs[v.metric].mean() - paper_mean)

    wide = table1(df)
    assert len(wide) == 2 * 3  # datasets x metrics
    row = wide[(wide["dataset"] == "MNIST") & (wide["metric"] == "AutoAttack acc (%)")].iloc[0]
    ours = values.query("dataset == 'mnist' and metric == 'aa_acc_pct' and cell == 'loss p=0.6'").iloc[0]
    assert row["loss p=0.6: ours - paper"] == pytest.approx(round(ours["mean"] - 70.11, 2))
    assert row["loss p=0.6: paper"] == "70.11 ± 7.81"
    assert row["full: ours"].endswith("(n=3)")
    assert row["full: collapsed"] == 1  # make_runs' collapsed run is mnist's first full-data run


def test_table1_headers_use_fraction_pruned_and_stand_ins_say_so() -> None:
    assert [cell_header(c) for c in TABLE1_CELLS] == [
        "loss p=0.6", "loss p=0.2", "random p=0.6", "random p=0.2", "full"
    ]  # fmt: skip
    wide = table1(make_runs(("digits-mnist",), seeds=2))
    assert set(wide["dataset"]) == {"digits-mnist (paper: MNIST)"}
    assert wide["random p=0.2: paper"].iloc[0] == "97.78 ± 1.00"


def test_ablation_covers_both_schedules_of_the_cifar_stand_in() -> None:
    df = make_runs(("mnist", "digits-cifar"), seeds=2)
    fixed = df[(df["dataset"] == "digits-cifar") & (df["strategy"] != "full")].assign(schedule_after_pruning="fixed")
    table = ablation_schedule(pd.concat([df, fixed], ignore_index=True))
    assert set(table["dataset"]) == {"digits-cifar (paper: CIFAR-10)"}
    assert sorted(table["schedule after pruning"].unique()) == ["fixed", "rescale"]
    assert "full: ours" not in table.columns and len(table) == 2 * 3


def test_table_files_are_written(tmp_path: Path) -> None:
    table = table1(make_runs())
    write_table_files(table, tmp_path / "table1", "A caption with n = 3 | and a pipe")
    csv, tex, md = (tmp_path / f"table1.{s}" for s in ("csv", "tex", "md"))
    assert pd.read_csv(csv).shape == table.shape
    assert "\\caption{A caption with n = 3" in tex.read_text() and "acc (\\%)" in tex.read_text()  # escaped
    lines = md.read_text().splitlines()
    rows = [line for line in lines if line.startswith("|")]
    assert len(rows) == len(table) + 2  # header, separator, one line per table row
    assert all(line.count(" | ") == len(table.columns) - 1 for line in rows[2:])
    draw_table_pdf(table, tmp_path / "table1.pdf", "Table 1")
    assert is_pdf(tmp_path / "table1.pdf")


# ---------------------------------------------------------------------------------------------------------------------
# entry points


def test_commands_go_from_json_files_to_artefacts(tmp_path: Path) -> None:
    pairs = []
    for seed in range(2):
        for strategy, keep in TABLE1_CELLS:
            full = strategy == "full"
            train = train_record(
                strategy=strategy, keep=keep, seed=seed, prune_epoch=None if full else 3,
                schedule_after_pruning=None if full else "rescale", train_seconds=60.0 * keep + seed,
            )  # fmt: skip
            pairs.append(write_pair(tmp_path / "runs", f"{strategy}-{keep}-{seed}", train, metrics_record()))
    commands.run_aggregate(pairs, tmp_path / "runs.csv")
    commands.run_table("table1", tmp_path / "runs.csv", tmp_path / "tables" / "table1", tmp_path / "table1.pdf")
    commands.run_figure("fig5", tmp_path / "runs.csv", tmp_path / "fig5.pdf")
    assert is_pdf(tmp_path / "table1.pdf") and is_pdf(tmp_path / "fig5.pdf")
    assert "jobs per GPU: 1" in (tmp_path / "tables" / "table1.md").read_text()
    with pytest.raises(ValueError, match="unknown figure"):
        commands.run_figure("fig6", tmp_path / "runs.csv", tmp_path / "fig6.pdf")
