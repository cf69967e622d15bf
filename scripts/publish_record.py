"""Publish a finished run of the workflow as a reproduction record: small files a reader can check, under docs/results.

Usage: python scripts/publish_record.py RUN_DIR OUT_DIR --artefact table1 --role mnist=mnist [--command "..."]

RUN_DIR is the checkout the workflow ran in (it holds results/, figures/, benchmarks/ and the run's logs). OUT_DIR gets:
- models.csv: the per-model tidy rows the artefact was built from (provenance columns included), as the workflow wrote
  them (results/artefacts/<artefact>.csv);
- <artefact>.{csv,md,tex,pdf,png}: the artefact as the workflow drew it (figures/);
- claims.{csv,md}: `python -m advprune claims` over that table;
- cells.csv: per cell and metric, ours (all runs, and without collapsed runs) beside the paper's, recomputed from
  models.csv (tests/test_record.py checks the published files against each other);
- runs.csv: per model, its training and evaluation wall time (Snakemake's benchmark files) and its collapse epoch;
- README.md: what ran, on what, how long, the command that reruns it, the comparison and the verdicts.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from advprune.report.tables import table_values

METRICS = {"clean_acc_pct": "clean acc (%)", "aa_acc_pct": "AutoAttack acc (%)", "time_minutes": "time (min)"}


def cell_statistics(models: pd.DataFrame) -> pd.DataFrame:
    """Long form: one row per metric x cell, ours (all runs and without collapsed ones) and the paper's."""
    values = table_values(models)
    return values[["dataset", "metric", "cell", "strategy", "keep", "n", "n_failed", "mean", "sd", "n_ok", "mean_ok",
                   "sd_ok", "paper_mean", "paper_sd", "diff"]]  # fmt: skip


def _benchmark_seconds(run_dir: Path, rule: str, row: pd.Series, suffix: str) -> float:
    relative = Path(row["run_dir"]).relative_to("results/models")
    path = run_dir / "benchmarks" / rule / relative.parent / f"{relative.name}{suffix}.tsv"
    return float(pd.read_csv(path, sep="\t")["s"].iloc[-1]) if path.exists() else float("nan")


def run_times(run_dir: Path, models: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, row in models.iterrows():
        n = int(row["n_examples"])
        rows.append({
            "run_dir": row["run_dir"], "strategy": row["strategy"], "keep": row["keep"], "seed": row["seed"],
            "train_wall_s": round(_benchmark_seconds(run_dir, "train_model", row, ""), 1),
            "train_plus_scoring_s": round(row["time_seconds"], 1),
            "eval_wall_s": round(_benchmark_seconds(run_dir, "evaluate_model", row, f"-n{n}"), 1),
            "autoattack_s": round(row["eval_seconds"], 1),
            "collapsed": bool(row["collapsed"]),
            "collapse_epoch": row["collapse_epoch"],
            "aa_acc_pct": row["aa_acc_pct"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def _fmt(mean: float, sd: float, n: int) -> str:
    return "—" if n == 0 else (f"{mean:.2f} ± {sd:.2f}" if n > 1 else f"{mean:.2f}")


def comparison_markdown(cells: pd.DataFrame) -> str:
    """Rows: metric; columns: cells; each entry ours ± sd, then [paper], then collapsed runs."""
    order = list(dict.fromkeys(cells["cell"]))
    lines = ["| metric | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]
    for metric, label in METRICS.items():
        entries = []
        for cell in order:
            c = cells[(cells["metric"] == metric) & (cells["cell"] == cell)].iloc[0]
            text = f"{_fmt(c['mean'], c['sd'], c['n'])} [{_fmt(c['paper_mean'], c['paper_sd'], 2)}]"
            if c["n_failed"]:
                text += f" ({c['n_failed']}/{c['n']} collapsed)"
            entries.append(text)
        lines.append(f"| {label} | " + " | ".join(entries) + " |")
    return "\n".join(lines)


def stability_markdown(cells: pd.DataFrame) -> str:
    lines = ["| cell | runs | collapsed | AutoAttack acc, all runs | without collapsed | paper |", "|---|---|---|---|---|---|"]
    for _, c in cells[cells["metric"] == "aa_acc_pct"].iterrows():
        lines.append(
            f"| {c['cell']} | {c['n']} | {c['n_failed']} | {_fmt(c['mean'], c['sd'], c['n'])} | "
            f"{_fmt(c['mean_ok'], c['sd_ok'], c['n_ok'])} | {_fmt(c['paper_mean'], c['paper_sd'], 2)} |"
        )
    return "\n".join(lines)


def min_sd_with_collapses(paper_mean: float, n: int, k: int, collapsed_value: float) -> float:
    """The smallest sample sd n runs with mean `paper_mean` can have if k of them sit at `collapsed_value`: the other
    n - k all equal (what is left of the mean), which is the least spread possible."""
    rest = (paper_mean * n - k * collapsed_value) / (n - k)
    values = [collapsed_value] * k + [rest] * (n - k)
    mean = sum(values) / n
    return (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5


def run_sittings(logs: list[Path]) -> list[dict[str, object]]:
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
                         "wall_s": (last - first).total_seconds()})
    return sittings


def draw_cells(models: pd.DataFrame, cells: pd.DataFrame, out: Path) -> None:
    """Per cell: every run as a dot, our mean ± sd, and the paper's mean ± sd beside it (clean and AutoAttack)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(dict.fromkeys(cells["cell"]))
    header = {(c.strategy, round(c.keep, 6)): c.cell for c in cells.drop_duplicates("cell").itertuples()}
    runs = models.assign(cell=[header[(s, round(k, 6))] for s, k in zip(models["strategy"], models["keep"])])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    for ax, (metric, label) in zip(axes, [("clean_acc_pct", "clean accuracy (%)"), ("aa_acc_pct", METRICS["aa_acc_pct"])]):
        for i, cell in enumerate(order):
            values = runs.loc[runs["cell"] == cell, metric]
            c = cells[(cells["metric"] == metric) & (cells["cell"] == cell)].iloc[0]
            ax.scatter([i - 0.12] * len(values), values, s=12, color="#0072B2", alpha=0.6, label="our runs" if i == 0 else None)
            ax.errorbar(i - 0.12, c["mean"], yerr=c["sd"], fmt="o", color="#0072B2", capsize=3,
                        label="ours: mean ± sd" if i == 0 else None)
            ax.errorbar(i + 0.12, c["paper_mean"], yerr=c["paper_sd"], fmt="s", color="#D55E00", capsize=3,
                        label="paper: mean ± sd (n = 30)" if i == 0 else None)
        ax.set_xticks(range(len(order)), order, rotation=20)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Table 1, MNIST: ours beside the paper's (loss = low+high, p = fraction pruned)", fontsize=9)
    fig.savefig(out.with_suffix(".pdf"))
    fig.savefig(out.with_suffix(".png"), dpi=200)
    plt.close(fig)


def code_record(tree: Path, commit: str, out: Path) -> None:
    """sha256 of every source file the run imported, and the commit whose tree holds exactly these files."""
    import hashlib

    files = {
        str(path.relative_to(tree)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted((tree / "src").rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in str(path)
    }
    (out / "code.json").write_text(json.dumps({"commit": commit, "files": files}, indent=1) + "\n")


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--artefact", default="table1")
    parser.add_argument("--role", action="append", default=[], metavar="ROLE=DATASET")
    parser.add_argument("--code-tree", type=Path, help="the source tree the run used, when it was not a git checkout")
    parser.add_argument("--code-commit", help="the commit whose src/ equals --code-tree's (checked by tests/test_record.py)")
    parser.add_argument("--log", action="append", type=Path, default=[], help="Snakemake console log(s) of the run")
    args = parser.parse_args(argv)
    run, out, name = args.run_dir, args.out_dir, args.artefact
    out.mkdir(parents=True, exist_ok=True)

    models = pd.read_csv(run / "results" / "artefacts" / f"{name}.csv")
    shutil.copyfile(run / "results" / "artefacts" / f"{name}.csv", out / "models.csv")
    for ext in ("csv", "md", "tex", "pdf", "png"):
        shutil.copyfile(run / "figures" / f"{name}.{ext}", out / f"{name}.{ext}")
    _run([sys.executable, "-m", "advprune", "claims", f"--table={name}={out / 'models.csv'}",
          *(f"--role={role}" for role in args.role), "--out", str(out / "claims.csv")])  # fmt: skip

    cells = cell_statistics(models)
    cells.to_csv(out / "cells.csv", index=False)
    draw_cells(models, cells, out / "cells")
    if args.code_tree:
        code_record(args.code_tree, args.code_commit, out)
    times = run_times(run, models)
    times.to_csv(out / "runs.csv", index=False)
    facts = {
        "models": len(models),
        "seeds_per_cell": sorted(models.groupby(["strategy", "keep"]).size().unique().tolist()),
        "n_examples": sorted(models["n_examples"].unique().tolist()),
        "device": sorted(models["device"].unique().tolist()),
        "cpu": platform.processor() or platform.machine(),
        "train_wall_s_median": float(times["train_wall_s"].median()),
        "eval_wall_s_median": float(times["eval_wall_s"].median()),
        "train_wall_s_range": [float(times["train_wall_s"].min()), float(times["train_wall_s"].max())],
        "eval_wall_s_range": [float(times["eval_wall_s"].min()), float(times["eval_wall_s"].max())],
        "collapsed_runs": int(models["collapsed"].sum()),
    }
    if args.log:
        facts["run_sittings"] = run_sittings(args.log)
        facts["run_wall_s"] = sum(sitting["wall_s"] for sitting in facts["run_sittings"])
    full = cells[(cells["metric"] == "aa_acc_pct") & (cells["strategy"] == "full")].iloc[0]
    # What a collapsed full-data run scores: ours where one collapsed (a collapse flagged in a pruned run can recover
    # after pruning changes the schedule, so those are not the question's), else 0% as in SPEC's H100 seeds.
    collapsed_aa = models.loc[models["collapsed"] & (models["strategy"] == "full"), "aa_acc_pct"]
    collapsed_value = float(collapsed_aa.mean()) if len(collapsed_aa) else 0.0
    facts["paper_full_aa_min_sd_if_one_of_30_collapsed"] = min_sd_with_collapses(
        float(full["paper_mean"]), 30, 1, collapsed_value
    )
    facts["collapsed_value_used"] = collapsed_value
    (out / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps(facts, indent=1))
    print(comparison_markdown(cells))
    print(stability_markdown(cells))


if __name__ == "__main__":
    main()
