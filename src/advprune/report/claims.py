"""The claims table: each quantitative claim of the paper (claims.yaml), our measured effect with a bootstrap 95%
interval over runs, and a verdict by the rule claims.yaml fixed before any result was seen.

The bootstrap (scipy.stats.bootstrap) resamples the runs of each cell independently (with replacement), recomputes the
measure, and takes the 2.5th and 97.5th percentiles. Collapsed runs count: a claim about the method is about its
failures too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from advprune import provenance
from advprune.identity import FULL
from advprune.report.aggregate import read_table
from advprune.report.selection import select_rows
from advprune.report.stats import linear_fit
from advprune.runtime import atomic_path

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED = "reproduced", "not reproduced", "inconclusive", "not measured"
MIN_RUNS = 5  # per cell, for a verdict: with fewer, a percentile bootstrap has too few distinct resamples
MEASURES = ("difference", "ratio", "linear_r2", "worst_gap")
TESTS = {"greater": ("margin",), "less": ("margin",), "about": ("value", "tolerance"), "at_least": ("threshold",)}
COLUMNS = [
    "id", "claim", "dataset", "ours", "ci_low", "ci_high", "n_runs", "paper", "verdict", "rule", "source", "note",
]  # fmt: skip

Groups = dict[str, np.ndarray]


@dataclass(frozen=True)
class Claim:
    id: str
    claim: str
    source: str
    artefact: str
    role: str
    measure: Mapping[str, Any]
    paper: float | None
    test: Mapping[str, Any]


def load_claims(text: str | None = None) -> list[Claim]:
    """The packaged claims.yaml (or `text` in its format), checked: a malformed claim fails here, naming it."""
    if text is None:
        text = resources.files("advprune").joinpath("claims.yaml").read_text()
    claims = []
    for entry in yaml.safe_load(text):
        claim = Claim(**entry)
        kind, test = claim.measure.get("kind"), claim.test.get("kind")
        if kind not in MEASURES:
            raise ValueError(f"claim {claim.id}: measure kind {kind!r} is not one of {', '.join(MEASURES)}")
        if test not in TESTS or any(key not in claim.test for key in TESTS[test]):
            raise ValueError(f"claim {claim.id}: test {dict(claim.test)} needs kind in {list(TESTS)} and its keys")
        claims.append(claim)
    return claims


def rule_text(test: Mapping[str, Any]) -> str:
    kind = test["kind"]
    if kind == "greater":
        return f"> 0 (not reproduced if CI < {test['margin']:g})"
    if kind == "less":
        return f"< 0 (not reproduced if CI > -{test['margin']:g})"
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
    independent samples). Percentile, as claims.yaml's rules were fixed with; "BCa" on request. Each group needs two
    values or more."""
    names = list(groups)
    result = stats.bootstrap(
        [groups[name] for name in names], lambda *samples: statistic(dict(zip(names, samples))),
        n_resamples=n_resamples, vectorized=False, paired=False, confidence_level=0.95, method=method, rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# -- measures: each turns the runs of one dataset into named groups of values and a statistic of those groups -----

def _metric(df: pd.DataFrame, metric: str) -> pd.Series:
    if metric == "collapse_pct":
        return 100.0 * df["collapsed"].astype(float)
    return df[metric].astype(float)


def _cell_values(df: pd.DataFrame, cells: Mapping | list, metric: str) -> np.ndarray:
    cells = cells if isinstance(cells, list) else [cells]
    parts = []
    for cell in cells:
        rows = df[(df["strategy"] == cell["strategy"]) & np.isclose(df["keep"], float(cell["keep"]))]
        parts.append(_metric(rows, metric).dropna().to_numpy())
    return np.concatenate(parts) if parts else np.empty(0)


def _cell_name(cells: Mapping | list) -> str:
    cells = cells if isinstance(cells, list) else [cells]
    return " + ".join(FULL if c["strategy"] == FULL else f"{c['strategy']} keep {c['keep']:g}" for c in cells)


def _two_cells(df: pd.DataFrame, measure: Mapping[str, Any]) -> tuple[Groups, str | None]:
    groups = {name: _cell_values(df, measure[name], measure["metric"]) for name in ("a", "b")}
    missing = [_cell_name(measure[name]) for name in ("a", "b") if len(groups[name]) == 0]
    return groups, (f"no runs for {' and '.join(missing)}" if missing else None)


def _per_keep(df: pd.DataFrame, measure: Mapping[str, Any]) -> tuple[Groups, str | None]:
    rows = select_rows(df, strategies=[measure["strategy"]])
    groups = {
        f"{keep:g}": _metric(part, measure["metric"]).dropna().to_numpy()
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
        f"{strategy}@{keep:g}": _metric(part, measure["metric"]).dropna().to_numpy()
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


def evaluate(
    claim: Claim, runs: pd.DataFrame | None, dataset: str | None, *, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """One row of the claims table. `runs` is the claim's artefact table for its dataset (None: not configured)."""
    row = {
        "id": claim.id, "claim": claim.claim, "dataset": dataset, "ours": math.nan, "ci_low": math.nan,
        "ci_high": math.nan, "n_runs": 0, "paper": math.nan if claim.paper is None else float(claim.paper),
        "verdict": NOT_MEASURED, "rule": rule_text(claim.test), "source": claim.source, "note": "",
    }  # fmt: skip
    if runs is None or dataset is None:
        row["note"] = f"this configuration does not build {claim.artefact} for {claim.role}"
        return row
    make_groups, statistic = _measure(claim.measure)
    groups, missing = make_groups(runs[runs["dataset"] == dataset], claim.measure)
    if missing:
        row["note"] = f"{claim.artefact}: {missing}"
        return row
    row["ours"] = float(statistic(groups))
    row["n_runs"] = int(sum(len(v) for v in groups.values()))
    counts = ", ".join(f"{name}: n={len(v)}" for name, v in groups.items())
    if min(len(v) for v in groups.values()) >= 2:
        rng = np.random.default_rng(seed)
        row["ci_low"], row["ci_high"] = bootstrap_interval(statistic, groups, n_resamples=n_resamples, rng=rng)
    if min(len(v) for v in groups.values()) < MIN_RUNS:
        row["verdict"], row["note"] = INCONCLUSIVE, f"fewer than {MIN_RUNS} runs in a cell ({counts})"
        return row
    row["verdict"] = verdict(claim.test, row["ci_low"], row["ci_high"])
    row["note"] = counts
    return row


def claims_table(
    tables: Mapping[str, pd.DataFrame],
    roles: Mapping[str, str],
    *,
    claims: list[Claim] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every claim against the artefact tables present (`tables`: artefact -> its run table, already restricted to
    the configured schedule and precision); `roles` maps the paper's datasets (mnist, cifar10) to the ones used."""
    rows = [
        evaluate(claim, tables.get(claim.artefact), roles.get(claim.role), n_resamples=n_resamples, seed=seed)
        for claim in (claims if claims is not None else load_claims())
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _number(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def markdown(table: pd.DataFrame, caption: str) -> str:
    lines = [
        caption, "",
        "| claim | dataset | ours | 95% CI | runs | paper | rule | verdict | source |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in table.itertuples():
        interval = "—" if math.isnan(r.ci_low) else f"[{_number(r.ci_low)}, {_number(r.ci_high)}]"
        explained = r.verdict in (NOT_MEASURED, INCONCLUSIVE) and r.note
        verdict_text = f"**{r.verdict}**" + (f" ({r.note})" if explained else "")
        lines.append(
            f"| {r.claim} | {r.dataset or '—'} | {_number(r.ours)} | {interval} | {r.n_runs} | {_number(r.paper)} "
            f"| {r.rule} | {verdict_text} | {r.source} |"
        )
    counts = table["verdict"].value_counts()
    verdicts = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_MEASURED)
    lines += ["", "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in verdicts)]
    return "\n".join(lines) + "\n"


def run_claims(
    tables: dict[str, Path], roles: dict[str, str], out_csv: Path, *, schedule: str = "rescale",
    precision: str = "fp32", n_resamples: int = 2000, seed: int = 0,
) -> None:
    """The registry's builder (`advprune claims`): the claims table (claims.csv and claims.md beside it) from the
    artefact tables this configuration builds."""
    runs = {name: read_table(path) for name, path in tables.items()}
    selected = {name: select_rows(df, schedule=schedule, precision=precision) for name, df in runs.items()}
    table = claims_table(selected, roles, n_resamples=n_resamples, seed=seed)
    caption = (
        "Claims of the paper against this reproduction: our effect with a bootstrap 95% interval over runs "
        f"({n_resamples} resamples, seed {seed}), the paper's value, and the verdict by the rule fixed in "
        "advprune/claims.yaml before any result was seen."
    )
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_csv.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(table, caption))
    models = {row["run_dir"]: row for df in runs.values() for row in df.to_dict("records")}
    provenance.write_artefact_record(
        out_csv, "claims", outputs=[out_csv, out_csv.with_suffix(".md")], inputs=list(tables.values()),
        models=list(models.values()), parameters={"roles": dict(roles), "schedule": schedule, "precision": precision,
                                                  "n_resamples": n_resamples, "seed": seed},
    )
