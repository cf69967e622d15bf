"""`advprune publish`: a finished (or partly finished) run of the workflow as a reproduction record, small files a
reader can check, under docs/results/<name>.

A record grows by model identity. Its `models.csv` holds one tidy row per model (advprune.report.aggregate's
columns); publishing again appends the rows of models finished since, and never changes a row already there: a model
already in the record is never trained again (the run's targets leave it out), and a model found again with other
numbers is refused. So a run may span sittings on different machines: each sitting publishes what it finished.
A publication that would drop anything is refused before it writes: one that leaves out an artefact the record holds,
or whose configuration's grid leaves out a model an artefact published (a forgotten `--set seeds_max=30`).

What `publish` writes into the record folder, all from `models.csv` and the run's own files:
- `models.csv` (append-only) and `runs.csv` (per model: wall times from Snakemake's benchmark files, the collapse
  epoch, when training finished, and per epoch the monitor's PGD accuracy and the weights' sha256);
- `artefacts/<name>.csv`: the rows of each published artefact's grid (from the configuration, so no grid is written
  here), and the artefact drawn from them (`<name>.pdf/.png`, tables also `.csv/.md/.tex`);
- `claims.csv/.md` by rules v2, `claims-v1.csv/.md` by rules v1, and `claims-apgd.csv/.md`: the same v2 claims on the
  accuracy after APGD-CE and APGD-T only (the paper names "the strongest Auto-PGD based attacker"; a sensitivity,
  not a verdict on the paper);
- `claims-paired.csv`: v2's difference claims with the runs paired by seed (advprune.report.paired), a sensitivity
  chosen after the data, not a verdict;
- `cells.csv` and `cells.pdf/.png`: per cell of the tables, ours (all runs, and without collapsed runs) beside the
  paper's, with the APGD-only accuracy;
- `facts.json`: counts, times and the run's sittings (from its Snakemake console logs, appended).
- the tables of the record's README.md, between their markers (advprune.report.record_readme); its prose is the
  author's, written from these files. tests/test_record.py recomputes all of them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from advprune.artefacts import get
from advprune.identity import EVALUATION_FILE, MODEL_ROOT, normalise_keep
from advprune.report import claims as claims_module
from advprune.report import record_readme
from advprune.report.aggregate import collect, read_table, write_table
from advprune.kinds import ModelGrid
from advprune.report.labels import display_name
from advprune.report.output import save_artefact
from advprune.report.paired import paired_table
from advprune.report.render import render
from advprune.report.paper import TABLE1_N as PAPER_RUNS
from advprune.report.tables import table_values
from advprune.runtime import atomic_path

# A row's identity and the numbers that must never change once published.
IDENTITY = "run_dir"
FIXED_NUMBERS = ["clean_acc_pct", "aa_acc_pct", "time_seconds", "n_kept"]
APGD_ONLY = "aa_after_apgd_t_pct"  # accuracy after APGD-CE and APGD-T: AutoAttack's Auto-PGD part
RUNS_COLUMNS = [
    "run_dir", "strategy", "keep", "seed", "train_wall_s", "train_plus_scoring_s", "eval_wall_s", "autoattack_s",
    "collapsed", "collapse_epoch", "aa_acc_pct", "trained_utc", "pgd_acc_by_epoch", "weights_sha256_by_epoch",
]  # fmt: skip


def finished_models(run: Path, n_examples: int) -> list[Path]:
    """Model directories under the run's results/models with both train.json and the evaluation at n_examples."""
    root = run / MODEL_ROOT
    return sorted(
        path.parent for path in root.glob("*/*/*/seed*/train.json")
        if (path.parent / EVALUATION_FILE.format(n=n_examples)).is_file()
    )


def merge(published: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """The record's rows, then the rows of models it does not have yet. A model already published must come back
    with the same numbers: otherwise it was retrained or re-evaluated, and the record refuses it."""
    both = published.merge(found, on=IDENTITY, suffixes=("", "_found"))
    for column in FIXED_NUMBERS:
        changed = both[~np.isclose(both[column].astype(float), both[f"{column}_found"].astype(float), equal_nan=True)]
        if len(changed):
            raise ValueError(
                f"{changed[IDENTITY].iloc[0]}: {column} is {changed[f'{column}_found'].iloc[0]} in the run but "
                f"{changed[column].iloc[0]} in the record; a published model is never retrained or re-evaluated "
                "(leave it out of the run's targets)"
            )
    new = found[~found[IDENTITY].isin(published[IDENTITY])]
    return pd.concat([published, new], ignore_index=True) if len(published) else new.reset_index(drop=True)


def _benchmark_seconds(run: Path, rule: str, run_dir: str, suffix: str) -> float:
    relative = Path(run_dir).relative_to(MODEL_ROOT)
    path = run / "benchmarks" / rule / relative.parent / f"{relative.name}{suffix}.tsv"
    return float(pd.read_csv(path, sep="\t")["s"].iloc[-1]) if path.exists() else float("nan")


def run_row(run: Path, row: Mapping[str, Any]) -> dict[str, Any]:
    """runs.csv's row of one model of this run (its train.json and Snakemake's benchmark files)."""
    train = json.loads((run / row["run_dir"] / "train.json").read_text())
    history = train["history"]
    return {
        "run_dir": row["run_dir"], "strategy": row["strategy"], "keep": row["keep"], "seed": row["seed"],
        "train_wall_s": round(_benchmark_seconds(run, "train_model", row["run_dir"], ""), 1),
        "train_plus_scoring_s": round(row["time_seconds"], 1),
        "eval_wall_s": round(_benchmark_seconds(run, "evaluate_model", row["run_dir"], f"-n{row['n_examples']}"), 1),
        "autoattack_s": round(row["eval_seconds"], 1), "collapsed": bool(row["collapsed"]),
        "collapse_epoch": row["collapse_epoch"], "aa_acc_pct": row["aa_acc_pct"],
        "trained_utc": (train.get("provenance") or {}).get("created_utc"),
        "pgd_acc_by_epoch": " ".join(f"{r['pgd_acc']:.6f}" for r in history),
        "weights_sha256_by_epoch": " ".join(r.get("weights_sha256", "") for r in history).strip(),
    }  # fmt: skip


def run_sittings(logs: Iterable[Path]) -> list[dict[str, Any]]:
    """Per Snakemake console log (one sitting of the run), its first and last job timestamps and the seconds between
    them. A run stopped and resumed later spans several logs; the gaps between them are not run time."""
    sittings = []
    for log in logs:
        stamps = []
        for line in log.read_text().splitlines():
            match = re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line.strip())
            if match:
                stamps.append(datetime.strptime(match[1], "%a %b %d %H:%M:%S %Y"))
        if not stamps:
            raise ValueError(f"{log}: no job timestamps; is it a Snakemake console log?")
        first, last = min(stamps), max(stamps)
        sittings.append({"log": log.name, "first_job": first.isoformat(), "last_job": last.isoformat(),
                         "wall_s": (last - first).total_seconds()})  # fmt: skip
    return sittings


def cell_statistics(rows: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per metric x cell of Table 1's layout, ours (all runs and without collapsed ones) and the
    paper's; the APGD-only accuracy as one more metric (the paper has no such row)."""
    values = table_values(rows)
    apgd = table_values(rows.assign(aa_acc_pct=rows[APGD_ONLY]))
    apgd = apgd[apgd["metric"] == "aa_acc_pct"].assign(metric=APGD_ONLY, paper_mean=np.nan, paper_sd=np.nan,
                                                        diff=np.nan)  # fmt: skip
    columns = ["dataset", "metric", "cell", "strategy", "keep", "n", "n_failed", "mean", "sd", "n_ok", "mean_ok",
               "sd_ok", "paper_mean", "paper_sd", "diff", "paper_welch_p"]  # fmt: skip
    cells = pd.concat([values, apgd], ignore_index=True)
    return cells.assign(paper_welch_p=[_welch_p_against_paper(c) for c in cells.to_dict("records")])[columns]


def _welch_p_against_paper(cell: Mapping[str, Any]) -> float:
    """Two-sided p of Welch's test of our runs' mean against the paper's (its mean and sd over its 30 runs), from
    the summary statistics (scipy.stats.ttest_ind_from_stats); NaN where the paper has no such cell."""
    from scipy import stats

    if np.isnan(cell["paper_mean"]) or cell["n"] < 2:
        return float("nan")
    result = stats.ttest_ind_from_stats(cell["mean"], cell["sd"], cell["n"], cell["paper_mean"], cell["paper_sd"],
                                        PAPER_RUNS, equal_var=False)  # fmt: skip
    return float(result.pvalue)


def draw_cells(rows: pd.DataFrame, cells: pd.DataFrame, out: Path, title: str) -> None:
    """Per cell: every run as a dot, our mean ± sd, and the paper's mean ± sd beside it (clean and AutoAttack)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from advprune.report.labels import METRIC_LABELS

    order = list(dict.fromkeys(cells["cell"]))
    header = {(c.strategy, c.keep): c.cell for c in cells.drop_duplicates("cell").itertuples()}
    runs = rows.assign(cell=[header[(s, k)] for s, k in zip(rows["strategy"], rows["keep"])])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for ax, metric in zip(axes, ["clean_acc_pct", "aa_acc_pct"]):
        for i, cell in enumerate(order):
            values = runs.loc[runs["cell"] == cell, metric]
            c = cells[(cells["metric"] == metric) & (cells["cell"] == cell)].iloc[0]
            ax.scatter([i - 0.12] * len(values), values, s=10, color="#0072B2", alpha=0.5,
                       label="our runs" if i == 0 else None)  # fmt: skip
            ax.errorbar(i - 0.12, c["mean"], yerr=c["sd"], fmt="o", color="#0072B2", capsize=3,
                        label="ours: mean ± sd" if i == 0 else None)  # fmt: skip
            ax.errorbar(i + 0.12, c["paper_mean"], yerr=c["paper_sd"], fmt="s", color="#D55E00", capsize=3,
                        label="paper: mean ± sd (n = 30)" if i == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(order)), [f"{cell}\nn = {(runs['cell'] == cell).sum()}" for cell in order],
                      rotation=0, fontsize=7)  # fmt: skip
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.grid(axis="y", alpha=0.3)
    # Below the panels, not inside: collapsed runs sit at 0%, where any corner of the axes would hide them.
    fig.legend(*axes[1].get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncols=3)
    fig.suptitle(title, fontsize=9)
    fig.savefig(out.with_suffix(".pdf"))
    fig.savefig(out.with_suffix(".png"), dpi=200)
    plt.close(fig)


def min_sd_with_collapses(paper_mean: float, n: int, k: int, collapsed_value: float) -> float:
    """The smallest sample sd n runs with mean `paper_mean` can have if k of them sit at `collapsed_value`: the other
    n - k all equal (what is left of the mean), which is the least spread possible."""
    rest = (paper_mean * n - k * collapsed_value) / (n - k)
    values = np.array([collapsed_value] * k + [rest] * (n - k))
    return float(values.std(ddof=1))


def _collapse_facts(table1: pd.DataFrame, cells: pd.DataFrame) -> dict[str, float]:
    """Could the paper's full-data sd hold a collapsed run? The least sd of 30 runs with its mean if one scored what
    our collapsed full-data runs score (a collapse flagged in a pruned run can recover after pruning changes the
    schedule, so those are not the question's; without any, 0% as in the H100 seeds of docs/method.md)."""
    full = cells[(cells["metric"] == "aa_acc_pct") & (cells["strategy"] == "full")].iloc[0]
    collapsed = table1.loc[table1["collapsed"] & (table1["strategy"] == "full"), "aa_acc_pct"]
    value = float(collapsed.mean()) if len(collapsed) else 0.0
    return {"paper_full_aa_min_sd_if_one_of_30_collapsed": min_sd_with_collapses(float(full["paper_mean"]), 30, 1,
                                                                                 value),
            "collapsed_value_used": value}  # fmt: skip


def _apgd_rules() -> claims_module.Rules:
    """Rules v2 with every AutoAttack-accuracy difference of means read on the APGD-only accuracy instead."""
    rules = claims_module.load_rules("v2")
    swapped = [
        claims_module.Claim(**{**c.__dict__, "id": f"{c.id}-apgd", "reading": f"{c.reading}; APGD-CE + APGD-T only",
                               "measure": {**c.measure, "metric": APGD_ONLY}})  # fmt: skip
        for c in rules.claims
        if c.measure["kind"] == "difference" and c.measure.get("metric") == "aa_acc_pct" and "below" not in c.measure
    ]
    return claims_module.Rules(**{**rules.__dict__, "claims": swapped})


def _write_claims(frames: dict[str, pd.DataFrame], roles: dict[str, str], out: Path, rules: claims_module.Rules,
                  caption: str) -> None:  # fmt: skip
    table = claims_module.claims_table(frames, roles, rules=rules)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(claims_module.markdown(table, caption))


def _check_nothing_is_dropped(record: Path, grid_rows: Mapping[str, pd.DataFrame]) -> None:
    """A publication redraws every artefact, claim and table of the record from the artefacts it names and their
    grids in the configuration given: refused, before anything is written, when it would leave out an artefact the
    record holds (its claims would turn "not measured") or drop a model an artefact published (a configuration other
    than the run's, e.g. without its seeds_max, would silently shrink the record's verdicts to fewer seeds)."""
    held = sorted(path.stem for path in (record / "artefacts").glob("*.csv"))
    left_out = [name for name in held if name not in grid_rows]
    if left_out:
        raise ValueError(
            f"{record} holds {', '.join(left_out)} too, and its claims are computed from every artefact it holds: "
            f"name each (--artefact {' --artefact '.join(left_out)})"
        )
    for name, rows in grid_rows.items():
        path = record / "artefacts" / f"{name}.csv"
        before = set(read_table(path)[IDENTITY]) if path.exists() else set()
        dropped = before - set(rows[IDENTITY])
        if dropped:
            raise ValueError(
                f"{name}: this configuration's grid leaves out {len(dropped)} of the {len(before)} models "
                f"{path} holds (e.g. {sorted(dropped)[0]}); publish with the run's own configuration "
                "(its --configfile files and --set overrides, such as seeds_max)"
            )


def publish(
    run: Path, record: Path, config: dict[str, Any], artefacts: list[str], roles: dict[str, str],
    logs: Iterable[Path] = (),
) -> tuple[dict[str, Any], int]:
    """Add the run's finished models to the record and rewrite every derived file; returns facts.json's content and
    how many of the record's models are new."""
    unknown = [name for name in artefacts if name not in config["artefacts"]]
    if unknown:
        raise ValueError(f"--artefact {unknown[0]!r} is not an artefact of this configuration")
    # Refuses a name that is not a model-grid artefact, naming the known ones.
    grids = {name: get(name, ModelGrid) for name in artefacts}
    if not run.is_dir():
        raise ValueError(f"{run}: no such run directory (the checkout the workflow ran in)")
    logs = list(logs)
    for log in logs:
        if not Path(log).is_file():
            raise ValueError(f"--log {log}: no such file")
    n_examples = int(config["n_examples"])
    models_csv, runs_csv = record / "models.csv", record / "runs.csv"
    published = read_table(models_csv) if models_csv.exists() else None
    dirs = finished_models(run, n_examples)
    found = collect([(d / "train.json", d / EVALUATION_FILE.format(n=n_examples)) for d in dirs])
    # Each row's own directory, relative to the run: collect sorts its rows by model (low before low+high, seed 2
    # before seed 10), not in the directories' order.
    found["run_dir"] = [str(Path(d).relative_to(run)) for d in found["run_dir"]]
    models = merge(published, found) if published is not None else found
    if models["n_examples"].nunique() > 1:
        raise ValueError(f"the record mixes AutoAttack sample sizes {sorted(models['n_examples'].unique())}")
    grid_rows = {name: models[models[IDENTITY].isin({key.directory for key in artefact.models(config)})]
                 for name, artefact in grids.items()}  # fmt: skip
    _check_nothing_is_dropped(record, grid_rows)
    record.mkdir(parents=True, exist_ok=True)
    if published is None:
        write_table(models, models_csv)
    else:  # appended as text: the published rows keep their bytes (a CSV round trip may reformat a float)
        header = models_csv.read_text().splitlines()[0].split(",")
        if header != list(models.columns):
            raise ValueError(f"{models_csv}: its columns are not the tidy table's; republish it from its runs")
        with atomic_path(models_csv) as tmp:
            tmp.write_text(models_csv.read_text() + models.iloc[len(published):].to_csv(index=False, header=False))

    runs = pd.read_csv(runs_csv) if runs_csv.exists() else pd.DataFrame(columns=RUNS_COLUMNS)
    runs = runs.reindex(columns=RUNS_COLUMNS)
    new = [run_row(run, row) for row in models[~models[IDENTITY].isin(runs[IDENTITY])].to_dict("records")]
    runs = pd.DataFrame(runs.to_dict("records") + new, columns=RUNS_COLUMNS)
    with atomic_path(runs_csv) as tmp:
        runs.to_csv(tmp, index=False)

    (record / "artefacts").mkdir(exist_ok=True)
    tables = {}
    for name, artefact in grids.items():
        tables[name] = record / "artefacts" / f"{name}.csv"
        write_table(grid_rows[name], tables[name])
        render(artefact, tables[name], record / f"{name}.pdf", schedule=config["schedule_after_pruning"],
               precision=config["precision"])  # fmt: skip

    for rules, out in (("v2", "claims.csv"), ("v1", "claims-v1.csv")):
        save_artefact(get("claims"), claims_module.build_claims(tables, roles, rules=rules), record / out)
    frames = {name: read_table(path) for name, path in tables.items()}  # as written, read once for the rest
    _write_claims(frames, roles, record / "claims-apgd.csv", _apgd_rules(),
                  "Sensitivity: the v2 claims on AutoAttack accuracy, read on the accuracy after APGD-CE and APGD-T "
                  "only (the paper may have reported Auto-PGD alone). Not a verdict on the paper.")
    with atomic_path(record / "claims-paired.csv") as tmp:
        paired_table(frames, roles, claims_module.load_rules("v2")).to_csv(tmp, index=False)
    if "table1" in frames:
        table1 = frames["table1"]
        cells = cell_statistics(table1)
        cells.to_csv(record / "cells.csv", index=False)
        dataset = ", ".join(display_name(d) for d in sorted(table1["dataset"].unique()))
        draw_cells(table1, cells, record / "cells",
                   f"Table 1, {dataset}: ours beside the paper's (loss = low+high, p = fraction pruned)")

    facts_path = record / "facts.json"
    old = json.loads(facts_path.read_text()) if facts_path.exists() else {}
    sittings = {s["log"]: s for s in old.get("run_sittings", [])}
    sittings.update({s["log"]: s for s in run_sittings(logs)})
    facts = {
        "models": len(models),
        "models_per_artefact": {name: int(len(frame)) for name, frame in frames.items()},
        "seeds_per_cell": {name: sorted(frame.groupby(["strategy", "keep"]).size().unique().tolist())
                           for name, frame in frames.items()},  # fmt: skip
        "n_examples": sorted(models["n_examples"].unique().tolist()),
        "device": sorted(models["device"].unique().tolist()),
        "train_wall_s_median": float(runs["train_wall_s"].median()),
        "eval_wall_s_median": float(runs["eval_wall_s"].median()),
        "collapsed_runs": int(models["collapsed"].sum()),
        "run_sittings": sorted(sittings.values(), key=lambda s: s["first_job"]),
    }
    facts["run_wall_s"] = sum(s["wall_s"] for s in facts["run_sittings"])
    if "table1" in frames:
        facts.update(_collapse_facts(frames["table1"], cells))
    with atomic_path(facts_path) as tmp:
        tmp.write_text(json.dumps(facts, indent=1) + "\n")
    if (record / "README.md").exists():
        record_readme.update(record / "README.md", record_readme.blocks(record))
    return facts, len(models) - (0 if published is None else len(published))


def missing_targets(
    record: Path, config: dict[str, Any], artefacts: list[str], only: Iterable[tuple[str, float]] = (),
    new_record: bool = False,
) -> list[str]:
    """The evaluation files (Snakemake targets) of the artefacts' models that the record does not hold yet, seed by
    seed (so that an interrupted run leaves every cell with about as many seeds), each model once; `only` keeps the
    cells (strategy, keep) named. A folder without models.csv is taken for a record only with `new_record`: a
    mistyped path would otherwise list every model of the grids, the published ones included, to be trained again."""
    models_csv = record / "models.csv"
    if record.exists() and not record.is_dir():
        raise ValueError(f"{record}: not a folder (a record is a folder holding models.csv)")
    if not models_csv.exists() and not new_record:
        raise ValueError(f"{record} holds no models.csv: check the path, or pass --new-record to start a record there")
    published = set(read_table(models_csv)[IDENTITY]) if models_csv.exists() else set()
    cells = {(strategy, normalise_keep(keep)) for strategy, keep in only}
    keys = {key for name in artefacts for key in get(name).models(config)}
    grid_cells = {(key.strategy, key.keep) for key in keys}
    unknown = cells - grid_cells
    if unknown:
        strategy, keep = sorted(unknown)[0]
        grid = ", ".join(f"{s}={k:g}" for s, k in sorted(grid_cells))
        raise ValueError(f"--only {strategy}={keep:g}: no such cell in the grids of {', '.join(artefacts)} ({grid})")
    wanted = [key for key in keys if not cells or (key.strategy, key.keep) in cells]
    missing = [key for key in wanted if key.directory not in published]
    return [key.evaluation_file(int(config["n_examples"])) for key in sorted(missing, key=lambda k: (k.seed, k))]
