"""advprune.report: the tidy table, statistics, selection, figures and tables, on synthetic runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from PIL import Image

from advprune.artefacts import get, names
from advprune.report.aggregate import ATTACKS, COLUMNS, DTYPES, RunRecordError, collect, read_table, write_table
from advprune.report.figures import fig5_fits
from advprune.report.output import save_figure
from advprune.report.paper import TABLE1, TABLE1_CELLS, cell_header
from advprune.kinds import ModelGrid
from advprune.report.render import render
from advprune.report.selection import expand_full, require_single_setting, select_rows
from advprune.report.stats import linear_fit, summarise
from advprune.report.tables import table_values

# The registry's figures drawn from a tidy table (the tables are test_tables.py's).
FIGURES = [name for name in names(ModelGrid) if not get(name).writes_csv]


def build(name: str, df: pd.DataFrame) -> Figure:
    """The registry's builder of figure `name`, as `advprune render` calls it."""
    return get(name, ModelGrid).load_builder()(df)


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


PAPER_STRATEGIES = ("high", "low", "low+high", "random")
GRID_KEEPS = (0.2, 0.4, 0.6, 0.8, 1.0)


def make_runs(
    datasets: tuple[str, ...] = ("mnist", "cifar10"),
    seeds: int = 3,
    *,
    strategies: tuple[str, ...] = PAPER_STRATEGIES,
    keeps: tuple[float, ...] = GRID_KEEPS,
    epochs: tuple[int, ...] = (1, 3),
    schedules: tuple[str, ...] = ("rescale",),
    collapse_first: bool = True,
) -> pd.DataFrame:
    """A tidy table holding exactly one grid (as the workflow writes one per artefact), with noisy but known
    structure; keep 1.0 in `keeps` means full-data runs."""
    rng = np.random.default_rng(0)
    rows = []

    def add(dataset: str, strategy: str, keep: float, epoch: int | None, seed: int, schedule: str | None) -> None:
        time = 0.5 + 2.0 * keep + rng.normal(0, 0.01)
        row = {
            "dataset": dataset, "strategy": strategy, "keep": keep, "prune_epoch": epoch, "seed": seed,
            "schedule_after_pruning": schedule, "precision": "fp32",
            "method_version": 1, "n_train": 1000, "n_kept": int(1000 * keep), "train_seconds": 60 * time,
            "scoring_seconds": 0.0, "time_seconds": 60 * time, "time_minutes": time,
            "clean_acc_pct": 90 + 5 * keep + rng.normal(), "aa_acc_pct": 40 + 20 * keep + (epoch or 0) + rng.normal(),
            **{f"aa_after_{a.replace('-', '_')}_pct": 50.0 for a in ATTACKS}, "n_examples": 100,
            "eval_seconds": 3.0, "collapsed": False, "collapse_epoch": None, "final_pgd_acc_pct": 50.0,
            "device": "cpu (test)", "jobs_on_device": 1,
            "run_dir": f"runs/{dataset}/{strategy}/{keep}/{epoch}/{schedule}/{seed}",
        }  # fmt: skip
        rows.append(row)

    for dataset in datasets:
        for seed in range(seeds):
            if 1.0 in keeps:
                add(dataset, "full", 1.0, None, seed, None)
            for strategy in strategies:
                for keep in (k for k in keeps if k != 1.0):
                    for epoch in epochs:
                        for schedule in schedules:
                            add(dataset, strategy, keep, epoch, seed, schedule)
    if collapse_first:  # one collapsed run (mnist's first full-data run when there is one): it must be annotated
        rows[0] |= {"collapsed": True, "collapse_epoch": 4, "aa_acc_pct": 0.0}
    return pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES)


# Each artefact's grid as config.yaml defines it (fewer seeds and fig1 epochs, so tests stay fast) ...
PAPER_GRIDS = {
    "fig1": dict(strategies=("random",), keeps=(0.9, 0.7), epochs=(1, 3, 5)),
    "fig2": dict(strategies=("random",), keeps=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), epochs=(1,)),
    "table1": dict(strategies=("low+high", "random"), keeps=(0.4, 0.8, 1.0), epochs=(3,)),
    "fig3": dict(datasets=("mnist",), epochs=(3,)),
    "fig4": dict(datasets=("cifar10",), epochs=(3,)),
    "fig5": dict(strategies=("random",), epochs=(3,)),
    "fig7": dict(strategies=("random", "low+high"), epochs=(1,)),
    "ablation_schedule": dict(
        datasets=("cifar10",), strategies=("low+high", "random"), keeps=(0.4, 0.8), epochs=(3,),
        schedules=("rescale", "fixed"),
    ),
}
# ... and as the offline demo's profile (profiles/demo/demo.yaml) reduces it.
DEMO = ("digits-mnist", "digits-cifar")
DEMO_GRIDS = {
    "fig1": dict(datasets=DEMO, strategies=("random",), keeps=(0.4,), epochs=(1, 3)),
    "fig2": dict(datasets=DEMO, strategies=("random",), keeps=(0.4, 1.0), epochs=(1,)),
    "table1": dict(datasets=DEMO, strategies=("low+high", "random"), keeps=(0.4, 0.8, 1.0), epochs=(3,)),
    "fig3": dict(datasets=("digits-mnist",), keeps=(0.4, 1.0), epochs=(3,)),
    "fig4": dict(datasets=("digits-cifar",), keeps=(0.4, 1.0), epochs=(3,)),
    "fig5": dict(datasets=DEMO, strategies=("random",), keeps=(0.4, 0.8, 1.0), epochs=(3,)),
    "fig7": dict(datasets=DEMO, strategies=("random", "low+high"), keeps=(0.4, 1.0), epochs=(3,)),
    "ablation_schedule": dict(
        datasets=("digits-cifar",), strategies=("low+high", "random"), keeps=(0.4,), epochs=(3,),
        schedules=("rescale", "fixed"),
    ),
}


def grid_runs(grids: dict[str, dict[str, Any]], name: str, seeds: int = 2, **options: Any) -> pd.DataFrame:
    return make_runs(seeds=seeds, **(grids[name] | options))


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
    df = select_rows(make_runs(("mnist",), seeds=2), strategies=["low+high", "random"], prune_epochs=[1])
    expanded = expand_full(df)
    assert "full" not in set(expanded["strategy"])
    for strategy in ("low+high", "random"):
        at_one = expanded[(expanded["strategy"] == strategy) & (expanded["keep"] == 1.0)]
        assert len(at_one) == (df["strategy"] == "full").sum() == 2


def test_select_lets_full_rows_through_strategy_epoch_and_schedule() -> None:
    df = make_runs(("mnist",), seeds=1)
    chosen = select_rows(df, strategies=["random"], prune_epochs=[1], schedule="rescale", keeps=[0.4, 1.0])
    assert sorted(chosen["strategy"]) == ["full", "random"]
    assert select_rows(df, strategies=["random"], keeps=[0.4])["strategy"].eq("random").all()
    chosen = select_rows(make_runs(), datasets=["cifar10"], seeds=[1])
    assert chosen[["dataset", "seed"]].drop_duplicates().shape == (1, 2)


def test_keeps_are_normalised_once_when_read_and_then_compared_exactly(tmp_path: Path) -> None:
    """A table's keep written with float noise (a hand-edited or foreign CSV) is read as the model's directory writes
    it, so select_rows's exact comparison finds it, and finds it from a noisy request as well; a different keep is
    not "close enough"."""
    df = make_runs(("mnist",), seeds=1)
    df.loc[df["keep"] == 0.4, "keep"] = 0.30000000000000004 + 0.1  # 0.4000000000000001
    write_table(df, tmp_path / "runs.csv")
    read = read_table(tmp_path / "runs.csv")
    assert set(read.loc[read["strategy"] != "full", "keep"]) >= {0.4}
    for request in (0.4, 0.1 + 0.30000000000000004):
        assert len(select_rows(read, strategies=["random"], keeps=[request])) > 0
    assert select_rows(read, strategies=["random"], keeps=[0.400001]).empty  # np.isclose called it 0.4


def _edited(df: pd.DataFrame, case: str) -> pd.DataFrame:
    """A run table as a careless hand, or two tables pasted together, leave it."""
    df = df.copy()
    if case == "text in a number column":
        df["aa_acc_pct"] = df["aa_acc_pct"].astype(object)
        df.loc[3, "aa_acc_pct"] = "70 %"
    elif case == "a fraction for a percent":
        df.loc[3, "aa_acc_pct"] = 7000.0
    elif case == "keep above 1":
        df.loc[df["strategy"] != "full", "keep"] *= 10
    elif case == "full data with a pruned keep":
        df.loc[df["strategy"] == "full", "keep"] = 0.5
    elif case == "no AutoAttack accuracy":
        df.loc[3, "aa_acc_pct"] = math.nan
    elif case == "a negative time":
        df.loc[3, "train_seconds"] = -1.0
    elif case == "a model in two rows":
        df = pd.concat([df, df.iloc[[3]].assign(run_dir="elsewhere/seed0")], ignore_index=True)
    elif case == "a pruned run without its epoch":
        df.loc[df["strategy"] != "full", "prune_epoch"] = pd.NA
    elif case == "a negative seed":
        df.loc[3, "seed"] = -1
    elif case == "AutoAttack on other test points":
        df.loc[3, "n_examples"] = 10000
    elif case == "an empty collapsed flag":
        df["collapsed"] = df["collapsed"].astype(object)
        df.loc[3, "collapsed"] = None
    return df


TABLE_EDITS = {
    "text in a number column": "column 'aa_acc_pct' holds '70 %' on line 5, expected a number",
    "a fraction for a percent": "aa_acc_pct outside [0, 100]",
    "keep above 1": "keep outside (0, 1]",
    "full data with a pruned keep": "strategy 'full' and keep 1.0 disagree",
    "no AutoAttack accuracy": "aa_acc_pct empty",
    "a negative time": "train_seconds not a time",
    "a model in two rows": "a model in two rows",
    "an empty collapsed flag": "column 'collapsed' is empty on line 5",
    "a pruned run without its epoch": "a pruned run without its prune_epoch",
    "a negative seed": "seed missing or negative",
    "AutoAttack on other test points": "rows mix n_examples values",  # each measured right, not comparable
}


@pytest.mark.parametrize("case", TABLE_EDITS)
def test_a_table_no_run_can_have_is_refused_in_one_line(case: str, tmp_path: Path) -> None:
    """Each figure, table and claim reads its tidy CSV (read_table): a value no model can have, or a model counted
    twice, stops it with the file and the problem named, before anything is drawn."""
    from test_bad_input import assert_refused, run_cli

    table = tmp_path / "table1.csv"
    make_runs(("mnist",), seeds=2, **{k: v for k, v in PAPER_GRIDS["table1"].items()}).pipe(
        _edited, case).to_csv(table, index=False)  # fmt: skip
    out = tmp_path / "table1.pdf"
    assert_refused(run_cli("render", "table1", "--table", table, "--out", out), TABLE_EDITS[case])
    assert not out.exists()
    assert_refused(run_cli("claims", "--table", f"table1={table}", "--out", tmp_path / "claims.csv"),
                   TABLE_EDITS[case])
    write_table(make_runs(("mnist",), seeds=2, **PAPER_GRIDS["table1"]), table)
    assert run_cli("render", "table1", "--table", table, "--out", out).code == 0  # the table as written: drawn


def test_collect_refuses_one_model_given_twice(tmp_path: Path) -> None:
    run = write_pair(tmp_path, "run", train_record(), metrics_record())
    with pytest.raises(ValueError, match="a model in two rows"):
        collect([run, run])


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
    df = grid_runs(PAPER_GRIDS, "fig5", seeds=3)
    fits = fig5_fits(df).set_index("dataset")
    assert list(fits.index) == ["mnist", "cifar10"] and set(fits["line"]) == {"random"}
    assert list(fits["n"]) == [3 * 5, 3 * 5]  # seeds x (random at keep 0.2-0.8 and full data)
    assert fits["slope"].to_numpy() == pytest.approx([2.0, 2.0], abs=0.05)  # make_runs: time = 0.5 + 2 keep
    assert fits["intercept"].to_numpy() == pytest.approx([0.5, 0.5], abs=0.05)


# ---------------------------------------------------------------------------------------------------------------------
# figures


def is_pdf(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes().startswith(b"%PDF")


def plotted(ax: Axes) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(x, mean, sd) of each line seaborn drew on `ax`, in hue order, read back from its error bars."""
    lines = []
    for container in ax.containers:
        assert isinstance(container, ErrorbarContainer)
        data, _, (bars, *_) = container.lines
        x, y = data.get_xydata().T
        segments = bars.get_segments()
        sd = np.array([(seg[1][1] - seg[0][1]) / 2 for seg in segments])
        lines.append((x, y, sd))
    return lines


def expected_lines(
    df: pd.DataFrame, dataset: str, metric: str, line_key: str, lines: list[Any], x: str
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Mean and sd (ddof=1) of the input rows per line and x, computed here without the report code; full-data
    rows belong to every line (keep 1.0)."""
    out = []
    for line in lines:
        rows = df[(df["dataset"] == dataset) & ((df[line_key] == line) | (df["strategy"] == "full"))]
        rows = rows[rows[x].notna()]
        stats = rows.groupby(x)[metric].agg(["mean", "std"])
        out.append((stats.index.to_numpy(dtype=float), stats["mean"].to_numpy(), stats["std"].to_numpy()))
    return out


def assert_same_points(ax: Axes, expected: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    drawn = plotted(ax)
    assert len(drawn) == len(expected)
    for (x, mean, sd), (ex, emean, esd) in zip(drawn, expected):
        spacing = np.diff(ex).min() if len(ex) > 1 else 1.0
        assert x == pytest.approx(ex, abs=0.25 * spacing)  # dodged a little, never onto the next point
        assert mean == pytest.approx(emean)
        assert sd == pytest.approx(esd, nan_ok=True)


def assert_every_run_drawn_once(ax: Axes, rows: pd.DataFrame, metric: str, x: str) -> None:
    """The panel's dots are the input rows, each once (a full-data run, which every line shares, too), each beside
    its own x."""
    dots = np.concatenate([np.asarray(c.get_offsets()) for c in ax.collections if c.get_gid() == "runs"])
    rows = rows[rows[x].notna()]
    assert len(dots) == len(rows)
    order = np.lexsort((dots[:, 0], dots[:, 1]))
    expected = rows.sort_values([metric, x])
    assert dots[order, 1] == pytest.approx(expected[metric].to_numpy(float))
    spacing = np.diff(np.unique(rows[x].astype(float))).min() if rows[x].nunique() > 1 else 1.0
    assert dots[order, 0] == pytest.approx(expected[x].to_numpy(float), abs=0.25 * spacing)


def check_figure(name: str, fig: Figure, df: pd.DataFrame) -> None:
    """Every point of every panel of figure `name` is the mean ± sd of the input rows it stands for, and every row is
    one dot."""
    datasets = [d for d in ("mnist", "cifar10", *DEMO) if d in set(df["dataset"])]
    strategies = [s for s in PAPER_STRATEGIES if s in set(df["strategy"])]
    if name == "fig1":
        keeps = sorted(df.loc[df["strategy"] != "full", "keep"].unique())
        for ax, dataset in zip(fig.axes, datasets, strict=True):
            assert_same_points(ax, expected_lines(df, dataset, "aa_acc_pct", "keep", keeps, "prune_epoch"))
            pruned = df[(df["dataset"] == dataset) & (df["strategy"] != "full")]
            assert_every_run_drawn_once(ax, pruned, "aa_acc_pct", "prune_epoch")
        return
    metrics = {"fig3": ["clean_acc_pct", "aa_acc_pct"], "fig4": ["clean_acc_pct", "aa_acc_pct"],
               "fig5": ["time_minutes"]}.get(name, ["aa_acc_pct"])  # fmt: skip
    axes = iter(fig.axes)
    for metric in metrics:
        for dataset in datasets:
            ax = next(axes)
            assert_same_points(ax, expected_lines(df, dataset, metric, "strategy", strategies, "keep"))
            assert_every_run_drawn_once(ax, df[df["dataset"] == dataset], metric, "keep")
    assert next(axes, None) is None


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_writes_a_pdf_of_its_paper_grid(tmp_path: Path, name: str) -> None:
    out = tmp_path / "figures" / f"{name}.pdf"
    df = grid_runs(PAPER_GRIDS, name)
    fig = build(name, df)
    save_figure(fig, out)
    assert is_pdf(out)
    png = out.with_suffix(".png")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, png.name])  # no temporary left behind
    # 200 dpi: the PDF's page (in points) times 200 / 72, within what the tight bounding box differs by backend.
    page = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", out.read_bytes())
    assert Image.open(png).size == pytest.approx((float(page[1]) * 200 / 72, float(page[2]) * 200 / 72), rel=0.03)
    check_figure(name, fig, df)


def test_demo_grid_draws_every_artefact_from_its_table(tmp_path: Path) -> None:
    """The demo's reduced grids (fig1: keep 0.4 at e = 1, 3; fig2: keeps 0.4, 1.0; ...) through the CLI's entry
    points: nothing is filtered away, and every plotted point is the mean ± sd of its input rows."""
    for name in names(ModelGrid):
        df = grid_runs(DEMO_GRIDS, name)
        write_table(df, tmp_path / f"{name}.csv")
        pdf = tmp_path / "figures" / f"{name}.pdf"
        render(get(name), tmp_path / f"{name}.csv", pdf, schedule="rescale", precision="fp32")
        if name in FIGURES:
            check_figure(name, build(name, df), df)
        else:
            assert (tmp_path / "figures" / f"{name}.md").is_file()
        written = {path.name for path in pdf.parent.glob(f"{name}.*")}
        assert written == {f"{name}.{suffix}" for suffix in [*get(name).files, "provenance.json"]}
        assert is_pdf(pdf)


def test_fig1_lines_are_the_keeps_present_with_full_data_as_reference() -> None:
    df = make_runs(("digits-mnist",), seeds=2, strategies=("random",), keeps=(0.4, 0.6, 1.0), epochs=(1, 3))
    fig = build("fig1", df)
    (ax,) = fig.axes
    assert_same_points(ax, expected_lines(df, "digits-mnist", "aa_acc_pct", "keep", [0.4, 0.6], "prune_epoch"))
    full = df.loc[df["strategy"] == "full", "aa_acc_pct"]
    assert any(list(line.get_ydata()) == [full.mean()] * 2 for line in ax.lines)  # the full-data reference
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["keep 0.4 (p=0.6 pruned)", "keep 0.6 (p=0.4 pruned)", "full data, mean ± sd"]
    assert "1/2 coll." in [t.get_text() for t in ax.texts]  # the collapsed full-data run, of its 2 runs
    n_runs = int((df["dataset"] == "digits-mnist").sum())
    assert f"failure rate 1/{n_runs} runs collapsed" in fig.legends[0].get_title().get_text().replace("\n", " ")


def test_prune_epoch_none_plots_every_epoch_and_an_epoch_selects() -> None:
    df = make_runs(("mnist",), seeds=2, strategies=("random", "low+high"), keeps=(0.4, 1.0), epochs=(1, 3))
    labels = [t.get_text() for t in build("fig7", df).legends[0].get_texts()]
    assert labels == ["low+high loss, e = 1", "low+high loss, e = 3", "random, e = 1", "random, e = 3"]
    fig = build("fig7", select_rows(df, prune_epochs=[3]))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["low+high loss", "random"]
    at_three = df[df["prune_epoch"].isna() | (df["prune_epoch"] == 3)]
    assert_same_points(fig.axes[0], expected_lines(at_three, "mnist", "aa_acc_pct", "strategy",
                                                   ["low+high", "random"], "keep"))  # fmt: skip


def test_unequal_n_is_labelled_per_point() -> None:
    df = make_runs(("cifar10",), seeds=3, strategies=("random",), keeps=(0.4, 1.0), epochs=(1,), collapse_first=False)
    df = df.drop(df.index[(df["strategy"] == "random") & (df["seed"] == 0)])
    fig = build("fig2", df)
    assert {"n=2", "n=3"} <= {t.get_text() for t in fig.axes[0].texts}
    assert "n per point as labelled" in fig.legends[0].get_title().get_text().replace("\n", " ")


@pytest.mark.parametrize("name", ["fig3", "fig1", "fig5"])
def test_point_labels_never_overlap(name: str) -> None:
    """Points of several lines at one x with the same mean and unequal n: each label stays readable ("n=1" drawn over
    "n=5" reads "n=15", as a record's partial Figure 3 once showed)."""
    grid = {"fig3": dict(datasets=("mnist",), epochs=(3,)), "fig1": dict(strategies=("random",), keeps=(0.9, 0.7),
            epochs=(1, 3)), "fig5": dict(strategies=("random", "low+high"), epochs=(3,))}[name]  # fmt: skip
    df = make_runs(seeds=5, collapse_first=False, **grid)
    one_run = (df["keep"] == 0.7) if name == "fig1" else (df["strategy"] == "random")  # a line of one run per point
    df = df.drop(df.index[one_run & (df["seed"] > 0)])
    metric = {"fig5": "time_minutes"}.get(name, "aa_acc_pct")
    df[metric] = 50.0 + (0 if name == "fig1" else df["keep"])  # every line's points at one x share their mean
    fig = build(name, df)
    texts = [t for ax in fig.axes for t in ax.texts if t.get_text().startswith("n=")]
    assert {"n=1", "n=5"} <= {t.get_text() for t in texts}
    for ax in fig.axes:
        boxes = [t.get_window_extent() for t in ax.texts if t.get_text().startswith("n=")]
        overlapping = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
        assert not overlapping, f"{name}: {len(overlapping)} pairs of labels overlap"


def test_figures_refuse_an_empty_selection(tmp_path: Path) -> None:
    write_table(grid_runs(PAPER_GRIDS, "fig3"), tmp_path / "fig3.csv")
    with pytest.raises(ValueError, match="no rows"):
        render(get("fig3"), tmp_path / "fig3.csv", tmp_path / "x.pdf", prune_epoch=99)
    assert not (tmp_path / "x.pdf").exists()


# ---------------------------------------------------------------------------------------------------------------------
# tables


def test_table1_difference_is_ours_minus_paper() -> None:
    df = grid_runs(PAPER_GRIDS, "table1", seeds=3)
    values = table_values(df)
    assert list(dict.fromkeys(values["cell"])) == [cell_header(c) for c in TABLE1_CELLS]  # the paper's order
    for v in values.itertuples():
        cell = (v.strategy, v.keep)
        runs = df[(df["dataset"] == v.dataset) & (df["strategy"] == v.strategy) & (df["keep"] == v.keep)]
        paper_mean, _ = TABLE1[(v.dataset, cell, v.metric)]
        assert v.mean == pytest.approx(runs[v.metric].mean())
        assert v.diff == pytest.approx(runs[v.metric].mean() - paper_mean)



def test_ablation_covers_both_schedules_and_full_data_joins_each() -> None:
    df = make_runs(("digits-cifar",), seeds=2, strategies=("low+high", "random"), keeps=(0.4, 1.0), epochs=(3,),
                   schedules=("rescale", "fixed"))  # fmt: skip
    values = table_values(df, by=["schedule_after_pruning"])
    full = values[(values["cell"] == "full") & (values["metric"] == "aa_acc_pct")]
    assert sorted(full["schedule_after_pruning"]) == ["fixed", "rescale"] and set(full["n"]) == {2}


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
    write_table(collect(pairs), tmp_path / "runs.csv")
    render(get("table1"), tmp_path / "runs.csv", tmp_path / "tables" / "table1.pdf")
    render(get("fig5"), tmp_path / "runs.csv", tmp_path / "fig5.pdf")
    assert is_pdf(tmp_path / "tables" / "table1.pdf") and is_pdf(tmp_path / "fig5.pdf")
    # A CPU job does not count the jobs beside it: the table says so instead of "jobs per GPU: 1".
    assert "how many jobs shared the CPU is not recorded" in (tmp_path / "tables" / "table1.md").read_text()
    assert (tmp_path / "fig5.png").is_file() and (tmp_path / "tables" / "table1.png").is_file()
    with pytest.raises(ValueError, match="unknown artefact 'fig6'; known: fig1, fig2, table1"):
        get("fig6", ModelGrid)


def test_tables_report_statistics_with_and_without_collapsed_runs() -> None:
    """A synthetic frame with collapsed runs: 'ours' is over all runs, 'ours without collapsed' over the others."""
    df = grid_runs(PAPER_GRIDS, "table1", seeds=4)
    rng = np.random.default_rng(0)
    df["aa_acc_pct"] = rng.uniform(20, 80, len(df))
    df["collapsed"] = False
    mnist_random = df.index[(df["dataset"] == "mnist") & (df["strategy"] == "random") & (df["keep"] == 0.4)]
    df.loc[mnist_random[:2], ["collapsed", "aa_acc_pct"]] = [True, 0.0]  # 2 of 4 collapsed
    cifar_full = df.index[(df["dataset"] == "cifar10") & (df["strategy"] == "full")]
    df.loc[cifar_full[:1], ["collapsed", "aa_acc_pct"]] = [True, 1.0]  # 1 of 4 collapsed
    df.loc[df["collapsed"], "collapse_epoch"] = 3

    values = table_values(df).query("dataset == 'mnist' and metric == 'aa_acc_pct' and cell == 'random p=0.6'")
    ok = df.loc[mnist_random, :].query("not collapsed")["aa_acc_pct"]
    assert values["mean_ok"].iloc[0] == pytest.approx(ok.mean()) and values["n_ok"].iloc[0] == 2
    assert values["n_failed"].iloc[0] == 2 and values["n"].iloc[0] == 4


# ---------------------------------------------------------------------------------------------------------------------
# one look per strategy, and the paper's values on the figures

# Okabe & Ito (2008), "Color universal design", the eight colours as published: the oracle for "colour-blind safe".
OKABE_ITO = {"#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"}


def test_strategies_have_distinct_colour_blind_safe_colours_and_markers() -> None:
    from advprune.report.style import STRATEGY_COLORS, STRATEGY_MARKERS

    assert set(STRATEGY_COLORS) == set(STRATEGY_MARKERS) == {"high", "low", "low+high", "random", "mean-distance"}
    assert set(STRATEGY_COLORS.values()) <= OKABE_ITO and len(set(STRATEGY_COLORS.values())) == len(STRATEGY_COLORS)
    assert len(set(STRATEGY_MARKERS.values())) == len(STRATEGY_MARKERS)


@pytest.mark.parametrize("name", ["fig2", "fig3", "fig5", "fig7"])
def test_a_strategy_looks_the_same_in_every_figure(name: str) -> None:
    """Whichever strategies a figure holds, each one's legend entry and error bars carry its colour and marker."""
    from matplotlib.colors import to_hex

    from advprune.report.labels import STRATEGY_LABELS
    from advprune.report.style import STRATEGY_COLORS, STRATEGY_MARKERS

    fig = build(name, grid_runs(PAPER_GRIDS, name))
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    seen = set()
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            strategy = next((s for s, label in STRATEGY_LABELS.items() if label == text.get_text()), None)
            if strategy in STRATEGY_COLORS:
                assert to_hex(handle.get_color()) == STRATEGY_COLORS[strategy].lower(), (name, strategy)
                assert handle.get_marker() == STRATEGY_MARKERS[strategy], (name, strategy)
                seen.add(strategy)
    assert seen == set(PAPER_GRIDS[name].get("strategies", ("high", "low", "low+high", "random")))
    drawn = {to_hex(c.lines[0].get_color()) for ax in fig.axes for c in ax.containers}
    assert drawn == {STRATEGY_COLORS[s].lower() for s in seen}


def paper_marks(ax: Axes) -> set[tuple[float, float]]:
    return {(round(float(line.get_xdata()[0]), 6), round(float(line.get_ydata()[0]), 2))
            for line in ax.lines if line.get_gid() == "paper" and len(line.get_xdata())}  # fmt: skip


def test_the_papers_values_are_drawn_where_it_gives_numbers() -> None:
    """fig3: Table 1's MNIST cells (SPEC's values, typed here) at their keeps; fig2: CIFAR-10's full-data AutoAttack
    accuracy and the abstract's 8- and 14-point drops below it (keep 0.6 and 0.2); none where the paper has none."""
    fig3 = build("fig3", grid_runs(PAPER_GRIDS, "fig3"))
    clean, robust = fig3.axes[:2]
    assert paper_marks(clean) == {(0.4, 94.60), (0.8, 94.10), (0.4, 98.01), (0.8, 97.78), (1.0, 97.67)}
    assert paper_marks(robust) == {(0.4, 70.11), (0.8, 67.43), (0.4, 65.50), (0.8, 60.77), (1.0, 70.05)}
    fig2 = build("fig2", grid_runs(PAPER_GRIDS, "fig2"))
    mnist, cifar = fig2.axes[:2]
    assert paper_marks(mnist) == set()
    assert paper_marks(cifar) == {(1.0, 44.59), (0.6, 36.59), (0.2, 30.59)}
    assert any("paper" in t.get_text() for t in fig2.legends[0].get_texts())


def test_times_name_their_device_and_its_sharing():
    from advprune.report.labels import time_device_text

    assert time_device_text(["NVIDIA H100 80GB HBM3"], [4, 4]) == (
        "device: NVIDIA H100 80GB HBM3, jobs per GPU: 4 (the paper's: one)")
    assert "jobs per GPU" not in time_device_text(["cpu (x86_64)"], [1])
    assert "jobs per GPU: 1" in time_device_text(["cpu (x86_64)", "NVIDIA H100"], [1])  # a mix is not all CPU
