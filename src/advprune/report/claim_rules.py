"""The claims' rules as data: which claims, their measures and tests, the interval each kind of measure uses and the
runs a verdict needs (claims.yaml, rules v2; claims-v1.yaml, the first rules). Reading them needs only YAML, so the
Snakefile can learn which artefacts the claims read without importing the statistics (advprune.report.claims)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping

import yaml

MEASURES = ("difference", "ratio", "linear_r2", "worst_gap", "all_of")
TESTS = {
    "greater": ("margin",), "less": ("margin",), "not_worse": ("margin",), "about": ("value", "tolerance"),
    "at_least": ("threshold",),
}  # fmt: skip
RULES_FILES = {"v1": "claims-v1.yaml", "v2": "claims.yaml"}
PERCENTILE = "percentile bootstrap"
INTERVAL_NAMES = ("welch", "newcombe", "percentile bootstrap")  # advprune.report.intervals computes each


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
    reading: str = "as stated"


@dataclass(frozen=True)
class Rules:
    """A rules file: its claims, the interval each kind of measure uses and the runs a verdict needs."""

    version: int
    claims: list[Claim]
    min_runs: int  # on each side of a comparison
    min_runs_per_cell: int  # in every cell a side pools
    intervals: Mapping[str, str]  # means, rates, other -> an interval's name
    confidence: Mapping[str, float]  # means, rates, other -> the interval's nominal level


# The first rules were a bare list of claims: a percentile bootstrap for everything, 5 runs per group.
V1_SETTINGS = {"version": 1, "min_runs": 5, "min_runs_per_cell": 1,
               "intervals": {"means": PERCENTILE, "rates": PERCENTILE, "other": PERCENTILE},
               "confidence": {"means": 0.95, "rates": 0.95, "other": 0.95}}  # fmt: skip


def load_rules(rules: str = "v2", *, text: str | None = None) -> Rules:
    """A packaged rules file by name (v1, v2), or `text` in either format, checked: a malformed claim fails here,
    naming it."""
    if text is None:
        if rules not in RULES_FILES:
            raise ValueError(f"unknown claims rules {rules!r}; known: {', '.join(RULES_FILES)}")
        text = resources.files("advprune").joinpath(RULES_FILES[rules]).read_text()
    loaded = yaml.safe_load(text)
    settings = dict(V1_SETTINGS) if isinstance(loaded, list) else {k: v for k, v in loaded.items() if k != "claims"}
    entries = loaded if isinstance(loaded, list) else loaded["claims"]
    claims = [_checked(Claim(**entry)) for entry in entries]
    ids = {claim.id for claim in claims}
    for claim in claims:
        missing = set(claim.measure.get("claims", ())) - ids
        if missing:
            raise ValueError(f"claim {claim.id}: all_of names unknown claims {sorted(missing)}")
    unknown = set(settings["intervals"].values()) - set(INTERVAL_NAMES)
    if unknown:
        raise ValueError(f"unknown interval(s) {sorted(unknown)}; known: {', '.join(INTERVAL_NAMES)}")
    if any(settings["confidence"][kind] != 0.95 for kind, name in settings["intervals"].items() if name == PERCENTILE):
        raise ValueError("the percentile bootstrap is computed at 95% only")
    return Rules(claims=claims, **settings)


def load_claims(text: str | None = None) -> list[Claim]:
    """The claims of the default rules (or of `text` in a rules file's format)."""
    return load_rules(text=text).claims


def _checked(claim: Claim) -> Claim:
    kind, test = claim.measure.get("kind"), claim.test.get("kind")
    if kind not in MEASURES:
        raise ValueError(f"claim {claim.id}: measure kind {kind!r} is not one of {', '.join(MEASURES)}")
    if test not in TESTS or any(key not in claim.test for key in TESTS[test]):
        raise ValueError(f"claim {claim.id}: test {dict(claim.test)} needs kind in {list(TESTS)} and its keys")
    return claim
