"""The claims table: each quantitative claim of the paper, our measured effect with an interval over runs, and a
verdict by a rule fixed before the results were seen.

Two sets of rules ship (advprune.report.claim_rules reads them): v2 (claims.yaml, the default) and v1
(claims-v1.yaml, the first rules, kept verbatim so that their verdicts can be shown beside v2's). A rules file names
the claims and, for v2, the interval per kind of measure and its nominal level (advprune.report.intervals: Welch at
97% for differences of means, Newcombe at 95% for differences of rates, chosen by the coverage simulation of
advprune.report.coverage) and the minimum runs for a verdict. v1 used scipy's percentile bootstrap (runs of each
group resampled independently) for every measure and 5 runs per group. Collapsed runs count: a claim about the
method is about its failures too.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from advprune.identity import FULL, normalise_keep
from advprune.report import intervals
from advprune.report.aggregate import read_table
from advprune.report.claim_rules import (  # noqa: F401 (RULES_FILES, load_claims re-exported for the claims' users)
    RULES_FILES, Claim, Rules, load_claims, load_rules,
)
from advprune.report.output import Built
from advprune.report.selection import require_single_setting, select_rows
from advprune.report.stats import linear_fit

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED = "reproduced", "not reproduced", "inconclusive", "not measured"
INTERVALS = {"welch": intervals.welch, "newcombe": intervals.newcombe}  # the others: the percentile bootstrap
COLUMNS = [
    "id", "claim", "reading", "dataset", "ours", "ci_low", "ci_high", "n_runs", "n_a", "n_b", "paper", "verdict", "rule",
    "interval", "seeds_needed", "source", "note",
]  # fmt: skip
# n_a, n_b: the runs on each side of a difference or ratio (empty for other measures); note: why a claim is not
# measured or inconclusive for too few runs, in words (empty otherwise).

Groups = dict[str, np.ndarray]


def rule_text(test: Mapping[str, Any]) -> str:
    kind = test["kind"]
    if kind == "greater":
        return f"> 0 (not reproduced if CI < {test['margin']:g})"
    if kind == "less":
        return f"< 0 (not reproduced if CI > -{test['margin']:g})"
    if kind == "not_worse":
        return f"> -{test['margin']:g} (not reproduced if CI < -{test['margin']:g})"
    if kind == "about":
        return f"CI within {test['value']:g} ± {test['tolerance']:g}"
    return f"CI >= {test['threshold']:g}"


def verdict(test: Mapping[str, Any], low: float, high: float) -> str:
    """The rule of claims.yaml on the interval [low, high]."""
    kind = test["kind"]
    if kind == "greater":
        return REPRODUCED if low > 0 else NOT_REPRODUCED if high < test["margin"] else INCONCLUSIVE
    if kind == "less":
        return REPRODUCED if high < 0 else NOT_REPRODUCED if low > -test["margin"] else INCONCLUSIVE
    if kind == "not_worse":
        return REPRODUCED if low > -test["margin"] else NOT_REPRODUCED if high < -test["margin"] else INCONCLUSIVE
    if kind == "about":
        band_low, band_high = test["value"] - test["tolerance"], test["value"] + test["tolerance"]
        if band_low <= low and high <= band_high:
            return REPRODUCED
        return NOT_REPRODUCED if high < band_low or low > band_high else INCONCLUSIVE
    if kind == "at_least":
        return REPRODUCED if low >= test["threshold"] else NOT_REPRODUCED if high < test["threshold"] else INCONCLUSIVE
    raise ValueError(f"unknown test kind {kind!r}")


def bootstrap_interval(
    statistic: Callable[[Groups], float],
    groups: Groups,
    *,
    n_resamples: int,
    rng: np.random.Generator,
    method: str = "percentile",
) -> tuple[float, float]:
    """95% interval of `statistic` with each group's values resampled on their own (scipy.stats.bootstrap over
    independent samples). Percentile, as rules v1 were fixed with; "BCa" on request. Each group needs two values or
    more."""
    names = list(groups)
    result = stats.bootstrap(
        [groups[name] for name in names], lambda *samples: statistic(dict(zip(names, samples))),
        n_resamples=n_resamples, vectorized=False, paired=False, confidence_level=0.95, method=method, rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# -- measures: each turns the runs of one dataset into named groups of values and a statistic of those groups -----

def run_values(df: pd.DataFrame, metric: str, below: float | None = None) -> pd.Series:
    """Per run: the metric, or 100/0 for an event (the monitor's collapse; the metric below `below`)."""
    if metric == "collapse_pct":
        return 100.0 * df["collapsed"].astype(float)
    values = df[metric].astype(float)
    return 100.0 * (values < below).astype(float) if below is not None else values


def cells_of(cells: Mapping | list) -> list[Mapping]:
    """A side of a difference: one cell or a list of cells (pooled)."""
    return cells if isinstance(cells, list) else [cells]


def cell_rows(df: pd.DataFrame, cell: Mapping) -> pd.DataFrame:
    return df[(df["strategy"] == cell["strategy"]) & (df["keep"] == normalise_keep(cell["keep"]))]


def _per_cell(df: pd.DataFrame, cells: Mapping | list, measure: Mapping[str, Any]) -> list[np.ndarray]:
    parts = []
    for cell in cells_of(cells):
        rows = cell_rows(df, cell)
        parts.append(run_values(rows, measure["metric"], measure.get("below")).dropna().to_numpy())
    return parts


def _cell_values(df: pd.DataFrame, cells: Mapping | list, measure: Mapping[str, Any]) -> np.ndarray:
    parts = _per_cell(df, cells, measure)
    return np.concatenate(parts) if parts else np.empty(0)


def _cell_name(cells: Mapping | list) -> str:
    return " + ".join(FULL if c["strategy"] == FULL else f"{c['strategy']} keep {c['keep']:g}" for c in cells_of(cells))


def _two_cells(df: pd.DataFrame, measure: Mapping[str, Any]) -> tuple[Groups, str | None]:
    groups = {name: _cell_values(df, measure[name], measure) for name in ("a", "b")}
    missing = [_cell_name(measure[name]) for name in ("a", "b") if len(groups[name]) == 0]
    return groups, (f"no runs for {' and '.join(missing)}" if missing else None)


def _smallest_cell(df: pd.DataFrame, measure: Mapping[str, Any]) -> int:
    """The fewest runs in any one cell that a side of a difference pools."""
    return min(len(part) for name in ("a", "b") for part in _per_cell(df, measure[name], measure))


def _per_keep(df: pd.DataFrame, measure: Mapping[str, Any]) -> tuple[Groups, str | None]:
    rows = select_rows(df, strategies=[measure["strategy"]])
    groups = {
        f"{keep:g}": run_values(part, measure["metric"]).dropna().to_numpy()
        for keep, part in rows.groupby("keep", sort=True)
    }
    groups = {k: v for k, v in groups.items() if len(v)}
    return groups, None if len(groups) >= 3 else f"needs runs at 3 or more keep values, has {len(groups)}"


def _r2(groups: Groups) -> float:
    keeps = np.array([float(k) for k in groups])
    return linear_fit(keeps, np.array([v.mean() for v in groups.values()])).r2


def _per_strategy_and_keep(df: pd.DataFrame, measure: Mapping[str, Any]) -> tuple[Groups, str | None]:
    pruned = df[df["strategy"] != FULL]
    groups = {
        f"{strategy}@{keep:g}": run_values(part, measure["metric"]).dropna().to_numpy()
        for (strategy, keep), part in pruned.groupby(["strategy", "keep"], sort=True)
    }
    groups = {k: v for k, v in groups.items() if len(v)}
    target = measure["strategy"]
    compared = _compared_keeps(groups, target)
    if not compared:
        return groups, f"needs {target} and another strategy at a common keep < 1"
    return groups, None


def _compared_keeps(groups: Groups, target: str) -> list[str]:
    keeps = {name.split("@")[1] for name in groups if name.startswith(f"{target}@")}
    others = {name.split("@")[1] for name in groups if not name.startswith(f"{target}@")}
    return sorted(keeps & others)


def _worst_gap(target: str) -> Callable[[Groups], float]:
    def gap(groups: Groups) -> float:
        gaps = []
        for keep in _compared_keeps(groups, target):
            mine = f"{target}@{keep}"
            others = [v.mean() for name, v in groups.items() if name.endswith(f"@{keep}") and name != mine]
            gaps.append(groups[mine].mean() - min(others))
        return float(np.mean(gaps))

    return gap


def _measure(measure: Mapping[str, Any]) -> tuple[Callable, Callable[[Groups], float]]:
    """(groups from the runs, statistic of the groups) for a claims.yaml measure."""
    kind = measure["kind"]
    if kind == "difference":
        return _two_cells, lambda g: g["a"].mean() - g["b"].mean()
    if kind == "ratio":
        return _two_cells, lambda g: g["a"].mean() / g["b"].mean()
    if kind == "linear_r2":
        return _per_keep, _r2
    return _per_strategy_and_keep, _worst_gap(measure["strategy"])


def _is_rate(measure: Mapping[str, Any]) -> bool:
    return measure["metric"] == "collapse_pct" or "below" in measure


def measure_type(measure: Mapping[str, Any]) -> str:
    """means, rates or other: what the rules choose an interval for."""
    if measure["kind"] == "difference":
        return "rates" if _is_rate(measure) else "means"
    return "other"


def _interval_name(measure: Mapping[str, Any], rules: Rules) -> str:
    kind = measure_type(measure)
    return f"{rules.intervals[kind]} {rules.confidence[kind]:.0%}"


def _interval(
    claim: Claim, groups: Groups, statistic: Callable[[Groups], float], rules: Rules, *, n_resamples: int, seed: int
) -> tuple[float, float]:
    kind = measure_type(claim.measure)
    name = rules.intervals[kind]
    if name in INTERVALS:
        return INTERVALS[name](groups["a"], groups["b"], rules.confidence[kind])
    return bootstrap_interval(statistic, groups, n_resamples=n_resamples, rng=np.random.default_rng(seed))


def _spread(values: np.ndarray, rate: bool) -> float:
    """A group's sd for the power estimate: a rate's from (events + 1) / (runs + 2), so that a group without events
    still has some spread (Laplace's rule of succession); a mean's the sample sd."""
    if rate:
        p = ((values == 100.0).sum() + 1) / (len(values) + 2)
        return 100.0 * math.sqrt(p * (1 - p))
    return float(np.std(values, ddof=1))


def _boundary(test: Mapping[str, Any], effect: float) -> float | None:
    """The end of the rule the observed effect points to: the one an interval shrinking onto it would clear."""
    kind = test["kind"]
    if kind == "greater":
        return 0.0 if effect > 0 else test["margin"]
    if kind == "less":
        return 0.0 if effect < 0 else -test["margin"]
    if kind == "not_worse":
        return -test["margin"]
    return None  # about, at_least: not estimated


def seeds_needed(claim: Claim, groups: Groups, effect: float, rules: Rules) -> float | None:
    """Seeds per cell at which the observed effect, with the observed spreads, reaches a verdict with 80% power
    (inf: more than intervals.MAX_SEEDS; None: not estimated for this kind of measure or rule)."""
    boundary = _boundary(claim.test, effect) if claim.measure["kind"] == "difference" else None
    if boundary is None:
        return None
    rate = _is_rate(claim.measure)
    return intervals.seeds_for_power(
        abs(effect - boundary), _spread(groups["a"], rate), _spread(groups["b"], rate),
        cells_a=len(cells_of(claim.measure["a"])), cells_b=len(cells_of(claim.measure["b"])),
        confidence=rules.confidence[measure_type(claim.measure)],
    )


def evaluate(
    claim: Claim, runs: pd.DataFrame | None, dataset: str | None, *, rules: Rules | None = None,
    n_resamples: int = 2000, seed: int = 0,
) -> dict[str, Any]:
    """One row of the claims table. `runs` is the claim's artefact table for its dataset (None: not configured)."""
    rules = rules or load_rules()
    row = {
        "id": claim.id, "claim": claim.claim, "reading": claim.reading, "dataset": dataset, "ours": math.nan,
        "ci_low": math.nan, "ci_high": math.nan, "n_runs": 0, "n_a": math.nan, "n_b": math.nan,
        "paper": math.nan if claim.paper is None else float(claim.paper), "verdict": NOT_MEASURED,
        "rule": rule_text(claim.test), "interval": "", "seeds_needed": math.nan, "source": claim.source, "note": "",
    }  # fmt: skip
    if runs is None or dataset is None:
        row["note"] = f"this configuration does not build {claim.artefact} for {claim.role}"
        return row
    make_groups, statistic = _measure(claim.measure)
    runs = runs[runs["dataset"] == dataset]
    groups, missing = make_groups(runs, claim.measure)
    if missing:
        row["note"] = f"{claim.artefact}: {missing}"
        return row
    row["ours"] = float(statistic(groups))
    row["n_runs"] = int(sum(len(v) for v in groups.values()))
    if set(groups) == {"a", "b"}:
        row["n_a"], row["n_b"] = len(groups["a"]), len(groups["b"])
    row["interval"] = _interval_name(claim.measure, rules)
    if min(len(v) for v in groups.values()) >= 2:
        row["ci_low"], row["ci_high"] = _interval(claim, groups, statistic, rules, n_resamples=n_resamples, seed=seed)
    smallest_cell = _smallest_cell(runs, claim.measure) if claim.measure["kind"] == "difference" else math.inf
    # The reason names the rule that fails first: a side with too few runs (whether or not it pools), else a cell
    # that a side pools (a side of one cell with fewer than min_runs_per_cell fails min_runs already).
    if min(len(v) for v in groups.values()) < rules.min_runs:
        row["verdict"] = INCONCLUSIVE
        row["note"] = f"fewer than {rules.min_runs} runs in a {'group' if rules.version > 1 else 'cell'}"
        return row
    if smallest_cell < rules.min_runs_per_cell:
        row["verdict"] = INCONCLUSIVE
        row["note"] = f"fewer than {rules.min_runs_per_cell} runs in a pooled cell"
        return row
    row["verdict"] = verdict(claim.test, row["ci_low"], row["ci_high"])
    if rules.version > 1 and row["verdict"] == INCONCLUSIVE:
        needed = seeds_needed(claim, groups, row["ours"], rules)
        row["seeds_needed"] = math.nan if needed is None else needed
    return row


def all_of(claim: Claim, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of an all_of claim from its parts' rows: reproduced if all are, not reproduced if any is not, not
    measured if any is not measured; the seeds needed are the most any undecided part needs."""
    verdicts = [part["verdict"] for part in parts]
    if NOT_MEASURED in verdicts:
        verdict_ = NOT_MEASURED
    elif NOT_REPRODUCED in verdicts:
        verdict_ = NOT_REPRODUCED
    elif all(v == REPRODUCED for v in verdicts):
        verdict_ = REPRODUCED
    else:
        verdict_ = INCONCLUSIVE
    undecided = [part["seeds_needed"] for part in parts if part["verdict"] == INCONCLUSIVE]
    needed = math.nan if not undecided or any(math.isnan(n) for n in undecided) else max(undecided)  # inf wins
    return {
        "id": claim.id, "claim": claim.claim, "reading": claim.reading, "dataset": parts[0]["dataset"],
        "ours": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n_runs": max(p["n_runs"] for p in parts),
        "n_a": math.nan, "n_b": math.nan,
        "paper": math.nan if claim.paper is None else float(claim.paper), "verdict": verdict_,
        "rule": "all of " + ", ".join(claim.measure["claims"]), "interval": "", "seeds_needed": needed,
        "source": claim.source, "note": "; ".join(f"{p['id']}: {p['verdict']}" for p in parts),
    }  # fmt: skip


def claims_table(
    tables: Mapping[str, pd.DataFrame],
    roles: Mapping[str, str],
    *,
    rules: Rules | None = None,
    claims: list[Claim] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every claim against the artefact tables present (`tables`: artefact -> its run table, already restricted to
    the configured schedule and precision); `roles` maps the paper's datasets (mnist, cifar10) to the ones used."""
    rules = rules or load_rules()
    rows: dict[str, dict[str, Any]] = {}
    listed = claims if claims is not None else rules.claims
    for claim in sorted(listed, key=lambda c: c.measure["kind"] == "all_of"):  # the parts before their combination
        if claim.measure["kind"] == "all_of":
            rows[claim.id] = all_of(claim, [rows[part] for part in claim.measure["claims"]])
        else:
            rows[claim.id] = evaluate(claim, tables.get(claim.artefact), roles.get(claim.role), rules=rules,
                                      n_resamples=n_resamples, seed=seed)  # fmt: skip
    return pd.DataFrame([rows[claim.id] for claim in listed], columns=COLUMNS)


def _number(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _verdict_text(r: Any) -> str:
    text = f"**{r.verdict}**"
    if r.verdict in (NOT_MEASURED, INCONCLUSIVE) and r.note:
        text += f" ({r.note})"
    if r.verdict == INCONCLUSIVE and math.isinf(r.seeds_needed):
        text += f"; 80% power needs more than {intervals.MAX_SEEDS} seeds per cell at this effect"
    elif r.verdict == INCONCLUSIVE and not math.isnan(r.seeds_needed):
        text += f"; 80% power at about {int(r.seeds_needed)} seeds per cell"
    return text


def _runs_text(r: Any) -> str:
    return f"{r.n_runs}" if math.isnan(r.n_a) else f"{int(r.n_a)} vs {int(r.n_b)}"


def markdown(table: pd.DataFrame, caption: str) -> str:
    lines = [
        caption, "",
        "| claim | reading | dataset | ours | CI | interval | runs | paper | rule | verdict | source |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in table.fillna({"interval": "", "note": "", "reading": ""}).itertuples():
        interval = "—" if math.isnan(r.ci_low) else f"[{_number(r.ci_low)}, {_number(r.ci_high)}]"
        lines.append(
            f"| {r.claim} | {r.reading} | {r.dataset or '—'} | {_number(r.ours)} | {interval} "
            f"| {r.interval or '—'} | {_runs_text(r)} | {_number(r.paper)} | {r.rule} | {_verdict_text(r)} | {r.source} |"
        )
    counts = table["verdict"].value_counts()
    verdicts = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED)
    lines += ["", "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in verdicts)]
    return "\n".join(lines) + "\n"


def build_claims(
    tables: dict[str, Path], roles: dict[str, str], *, schedule: str = "rescale", precision: str = "fp32",
    n_resamples: int = 2000, seed: int = 0, rules: str = "v2",
) -> Built:
    """The registry's builder: the claims table (its CSV and Markdown) from the artefact tables this configuration
    builds, by the named rules (v2, the default, or v1)."""
    loaded = load_rules(rules)
    runs = {name: read_table(path) for name, path in tables.items()}
    selected = {name: select_rows(df, schedule=schedule, precision=precision) for name, df in runs.items()}
    for name, df in selected.items():  # as every figure and table: no test across method versions or test points
        require_single_setting(df, f"claims: {tables[name]}")
    table = claims_table(selected, roles, rules=loaded, n_resamples=n_resamples, seed=seed)
    caption = (
        f"Claims of the paper against this reproduction, by rules {rules} (advprune/{RULES_FILES[rules]}, fixed "
        "before the results they judge): our effect with an interval over runs "
        f"({', '.join(f'{kind}: {name} {loaded.confidence[kind]:.0%}' for kind, name in loaded.intervals.items())}; "
        f"bootstraps {n_resamples} "
        f"resamples, seed {seed}), the paper's value, and the verdict."
    )
    models = {row["run_dir"]: row for df in runs.values() for row in df.to_dict("records")}
    return Built(
        data=table, markdown=markdown(table, caption), inputs=list(tables.values()), models=list(models.values()),
        parameters={"roles": dict(roles), "schedule": schedule, "precision": precision, "n_resamples": n_resamples,
                    "seed": seed, "rules": rules},
    )
