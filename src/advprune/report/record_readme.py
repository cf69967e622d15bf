"""The tables of a record's README.md, written by `advprune publish` from the record's own files, so that no number in
them is typed by hand: each sits between a begin and an end marker, and publishing again rewrites what is between
them and nothing else (the prose around them stays the author's). tests/test_record.py regenerates them and compares.

- `seeds`: per artefact and cell, the seeds the record holds.
- `verdicts`: every claim of the record's datasets by rules v2 (claims.csv), with its interval, method, verdict, runs
  per group and the seeds per cell that 80% power would need, beside rules v1's interval and verdict (claims-v1.csv).
- `apgd`: the same claims on the accuracy after APGD-CE and APGD-T alone (claims-apgd.csv), a sensitivity check.
- `paired`: the difference claims with the runs paired by seed (claims-paired.csv) beside their unpaired v2 interval,
  a sensitivity chosen after the data.
- `cells`: Table 1's cells (cells.csv), ours beside the paper's with Welch's p, the APGD-only accuracy and the time,
  and per cell the failures under each definition of the rules (the monitor's flag; AutoAttack below the threshold).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from advprune.identity import FULL
from advprune.report.aggregate import read_table
from advprune.report.claim_rules import load_rules
from advprune.report.labels import seed_ranges, strategy_label
from advprune.runtime import atomic_path

BEGIN = "<!-- advprune publish: {name} (generated from the record's files; edit those, not this table) -->"
END = "<!-- /advprune publish -->"
NOT_MEASURED = "not measured"


def blocks(record: Path) -> dict[str, str]:
    """The generated tables of a record, by marker name: those its files allow."""
    out = {}
    if any((record / "artefacts").glob("*.csv")):
        out["seeds"] = seeds_table(record)
    if (record / "claims.csv").exists():
        out["verdicts"] = verdict_table(record)
    if (record / "claims-apgd.csv").exists():
        out["apgd"] = apgd_table(record)
    if (record / "claims-paired.csv").exists() and (record / "claims.csv").exists():
        out["paired"] = paired_table(record)
    if (record / "cells.csv").exists() and (record / "artefacts" / "table1.csv").exists():
        out["cells"] = cells_table(record)
    return out


def seeds_table(record: Path) -> str:
    """Per artefact of the record (artefacts/<name>.csv) and cell: how many models, and which seeds."""
    lines = ["| artefact | cell | models | seeds |", "|---|---|---|---|"]
    for path in sorted((record / "artefacts").glob("*.csv")):
        table = read_table(path)
        for (strategy, keep), runs in table.groupby(["strategy", "keep"], sort=False):
            seeds = sorted(int(seed) for seed in runs["seed"])
            cell = strategy_label(strategy) + ("" if strategy == FULL else f", keep {keep:g}")
            lines.append(f"| {path.stem} | {cell} | {len(seeds)} | {seed_ranges(seeds)} |")
    return "\n".join(lines)


def _seeds_text(seeds: float) -> str:
    if pd.isna(seeds):
        return ""
    return "more than 10000 at this effect" if math.isinf(seeds) else f"about {int(seeds)}"


def _interval_text(row) -> str:
    if pd.isna(row["ci_low"]):
        return "—"
    return f"[{row['ci_low']:.1f}, {row['ci_high']:.1f}], {row['interval']}"


def verdict_table(record: Path) -> str:
    v2 = pd.read_csv(record / "claims.csv")
    v1_path = record / "claims-v1.csv"
    v1 = pd.read_csv(v1_path).set_index("id") if v1_path.exists() else None
    # The claims of the datasets the record measured (a record of MNIST leaves CIFAR-10's out).
    measured = set(v2.loc[v2["verdict"] != NOT_MEASURED, "dataset"])
    combined = {c.id: c.measure["claims"] for c in load_rules("v2").claims if c.measure["kind"] == "all_of"}
    verdicts = v2.set_index("id")["verdict"]
    lines = ["| claim | reading | paper | ours | v2 interval | v2 verdict (runs per group) | seeds per cell for 80% power "
             "| v1 (percentile bootstrap) |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in v2[v2["dataset"].isin(measured)].to_dict("records"):
        note = row["note"] if isinstance(row["note"], str) else ""
        runs = ""
        if not pd.isna(row["n_a"]):  # the runs on each side, and why a verdict is inconclusive for too few
            runs = f" ({int(row['n_a'])} vs {int(row['n_b'])}{'; ' + note if note else ''})"
        elif row["id"] in combined:  # an all_of claim: how its parts, rows of this table, stand
            parts = verdicts[combined[row["id"]]].value_counts()
            runs = f" (its {parts.sum()} parts below: " + ", ".join(f"{n} {v}" for v, n in parts.items()) + ")"
        if v1 is None or row["id"] not in v1.index:
            old = "— (not in v1)"
        else:
            old = v1.loc[row["id"]]
            old = f"[{old['ci_low']:.1f}, {old['ci_high']:.1f}]: {old['verdict']}" if not pd.isna(old["ci_low"]) \
                else old["verdict"]  # fmt: skip
        ours = "—" if pd.isna(row["ours"]) else f"{row['ours']:+.2f}"
        paper = "" if pd.isna(row["paper"]) else f"{row['paper']:+.2f}"
        lines.append(f"| {row['claim']} | {row['reading']} | {paper} | {ours} | {_interval_text(row)} | "
                     f"{row['verdict']}{runs} | {_seeds_text(row['seeds_needed'])} | {old} |")  # fmt: skip
    return "\n".join(lines)


def apgd_table(record: Path) -> str:
    """The sensitivity check (claims-apgd.csv): rules v2's AutoAttack differences read on the APGD-only accuracy."""
    table = pd.read_csv(record / "claims-apgd.csv")
    table = table[table["verdict"] != NOT_MEASURED]
    lines = ["| claim, on the accuracy after APGD-CE + APGD-T | ours | interval | verdict |", "|---|---|---|---|"]
    for row in table.to_dict("records"):
        lines.append(f"| {row['claim']} ({row['reading']}) | {row['ours']:+.2f} | {_interval_text(row)} | "
                     f"{row['verdict']} |")
    return "\n".join(lines)


def paired_table(record: Path) -> str:
    """The seed-paired sensitivity (claims-paired.csv) beside each claim's unpaired v2 interval and verdict."""
    paired = pd.read_csv(record / "claims-paired.csv").dropna(subset=["ci_low"])
    unpaired = pd.read_csv(record / "claims.csv").set_index("id")
    lines = ["| claim | v2 (unpaired) | paired by seed: ours | interval | seeds | r of the sides | coverage, seeds "
             "resampled | the rule would read |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for row in paired.to_dict("records"):
        v2 = unpaired.loc[row["id"]]
        lines.append(
            f"| {row['claim']} ({row['reading']}) | [{v2['ci_low']:.1f}, {v2['ci_high']:.1f}]: {v2['verdict']} "
            f"| {row['ours']:+.2f} | [{row['ci_low']:.1f}, {row['ci_high']:.1f}], t {row['confidence']:.0%} "
            f"| {row['n_seeds']} | {_number(row['r_sides'])} | {row['coverage_resampled']:.1%} "
            f"| {row['rule_reading']} |"
        )
    return "\n".join(lines)


def _number(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.2f}"


def _p_text(p: float) -> str:
    return "" if pd.isna(p) else f"; p = {p:.2g}" if p >= 0.001 else f"; p = {p:.1g}"


def cells_table(record: Path) -> str:
    cells = pd.read_csv(record / "cells.csv")
    table1 = read_table(record / "artefacts" / "table1.csv")
    threshold = failure_threshold()
    order = list(dict.fromkeys(cells["cell"]))
    lines = ["| metric | " + " | ".join(order) + " |", "|---|" + "---|" * len(order)]

    def cell(metric: str, name: str) -> pd.Series:
        return cells[(cells["metric"] == metric) & (cells["cell"] == name)].iloc[0]

    for metric, label in (("clean_acc_pct", "clean accuracy (%)"), ("aa_acc_pct", "AutoAttack accuracy (%)")):
        values = []
        for name in order:
            c = cell(metric, name)
            paper = "" if pd.isna(c["paper_mean"]) else \
                f" [{c['paper_mean']:.2f} ± {c['paper_sd']:.2f}{_p_text(c['paper_welch_p'])}]"  # fmt: skip
            values.append(f"{c['mean']:.2f} ± {c['sd']:.2f} ({int(c['n'])}){paper}")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    for metric, label in (("aa_after_apgd_t_pct", "after APGD-CE + APGD-T only (%)"),
                          ("time_minutes", "time (min), training + scoring")):  # fmt: skip
        if (cells["metric"] == metric).any():
            lines.append(f"| {label} | " + " | ".join(
                f"{cell(metric, name)['mean']:.2f} ± {cell(metric, name)['sd']:.2f}" for name in order) + " |")
    counts = []
    for name in order:
        c = cell("aa_acc_pct", name)
        runs = table1[(table1["strategy"] == c["strategy"]) & (table1["keep"] == c["keep"])]
        counts.append(f"{int(runs['collapsed'].sum())} / {int((runs['aa_acc_pct'] < threshold).sum())} of {len(runs)}")
    lines.append(f"| collapsed (monitor) / AutoAttack < {threshold:g}% | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def failure_threshold() -> float:
    """The AutoAttack accuracy (percent) below which rules v2 call a run failed: the `below` of its claim on
    AutoAttack failures (claims.yaml)."""
    thresholds = {c.measure["below"] for c in load_rules("v2").claims
                  if c.measure.get("metric") == "aa_acc_pct" and "below" in c.measure}  # fmt: skip
    if len(thresholds) != 1:
        raise ValueError(f"rules v2 name {len(thresholds)} AutoAttack failure thresholds, expected one")
    return float(thresholds.pop())


def update(readme: Path, generated: dict[str, str]) -> list[str]:
    """Rewrite each generated table between its markers in `readme`; returns the names rewritten. A README without a
    table's markers is left without it; a begin marker without its end is refused (nothing is written)."""
    text = readme.read_text()
    done = []
    for name, table in generated.items():
        begin = BEGIN.format(name=name)
        if begin not in text:
            continue
        start = text.index(begin) + len(begin)
        end = text.find(END, start)
        if end < 0:
            raise ValueError(f"{readme}: the marker {begin!r} has no {END!r} after it; nothing was written")
        text = text[:start] + "\n" + table + "\n" + text[end:]
        done.append(name)
    if done:
        with atomic_path(readme) as tmp:
            tmp.write_text(text)
    return done


def published(readme: Path) -> dict[str, str]:
    """The generated tables as the README holds them, by marker name."""
    pattern = re.escape(BEGIN).replace(re.escape("{name}"), r"(?P<name>\w+)") + r"\n(?P<table>.*?)\n" + re.escape(END)
    return {m["name"]: m["table"] for m in re.finditer(pattern, readme.read_text(), flags=re.S)}
