"""The parameters of section 5.2's toy model (advprune.toy), with their limits and checks: the config's
`artefacts.toy`, and `advprune build toy`'s options, which are derived from the fields here (each field's help is
its metadata). Pure Python: the workflow's planner checks a config's toy with it at every start, without the numpy
and pandas that the simulation needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

TOY_STRATEGIES = ("high", "low", "low+high", "random")  # those with a closed-form expectation (advprune.toy)


# Size limits, checked before a simulation allocates anything: each data set is n x (d + 1) float64 numbers.
MAX_N, MAX_D, MAX_STEPS, MAX_SEEDS, MAX_CELLS = 10_000_000, 1_000_000, 1_000_000, 1000, 100_000_000


def _option(default: Any, help: str) -> Any:
    """A field of ToyParameters: its default, and its help as an option of `advprune build toy`."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class ToyParameters:
    """Everything a toy simulation depends on (the config's `artefacts.toy`)."""

    d: int = _option(100, "fragile features; eta = 3 / sqrt(d)")
    p_R: float = _option(0.5, "P(point from D_robust)")
    p_robust: float = _option(0.95, "P(x1 = y) in D_robust")
    p_fragile: float = _option(0.75, "P(x1 = y) in D_fragile")
    n: int = _option(5000, "training points per seed (and test points)")
    eps_over_eta: float = _option(2.0, "adversary's L-inf budget / eta (the paper: >= 2)")
    steps: int = _option(300, "full-batch gradient steps")
    # decayed linearly to 0: subgradient steps on ||w||_1 need the decay
    lr: float = _option(1.0, "initial step size (decays linearly to 0)")
    keep: tuple[float, ...] = _option((0.2, 0.4, 0.6, 0.8, 0.9, 1.0), "fractions kept")
    strategies: tuple[str, ...] = _option(TOY_STRATEGIES, " | ".join(TOY_STRATEGIES))
    seeds: tuple[int, ...] = _option((0, 1, 2, 3, 4), "the simulation's seeds, one simulation each (its data and "
                                     "random pruning), not a model's")

    @classmethod
    def from_config(cls, spec: dict) -> "ToyParameters":
        """From the workflow config's `artefacts.toy` (`seeds: n` means seeds 0..n-1)."""
        seeds = spec["seeds"]
        if isinstance(seeds, int) and seeds > MAX_SEEDS:  # before a tuple of them is made
            raise ValueError(f"artefacts.toy.seeds: {seeds} seeds, more than the limit of {MAX_SEEDS}")
        return cls(**{**spec, "keep": tuple(spec["keep"]), "strategies": tuple(spec["strategies"]),
                      "seeds": tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)})  # fmt: skip

    @property
    def eta(self) -> float:
        return 3.0 / math.sqrt(self.d)

    @property
    def eps(self) -> float:
        return self.eps_over_eta * self.eta

    @property
    def p_mislabelled_x1(self) -> float:
        """q = P(x1 != y): the points the paper's robust classifier gets wrong (squared loss 4 instead of 0)."""
        return self.p_R * (1 - self.p_robust) + (1 - self.p_R) * (1 - self.p_fragile)

    def check(self, where: str = "toy") -> None:
        """Raise ValueError naming the offending parameter (`where` prefixes its name, e.g. artefacts.toy)."""
        if self.d < 1 or self.n < 10 or self.steps < 1:
            raise ValueError(f"{where}: d >= 1, n >= 10 and steps >= 1 are needed, got {self.d}, {self.n}, "
                             f"{self.steps}")  # fmt: skip
        # Sizes that fit a workstation, checked before anything is allocated (10^11 points was a MemoryError).
        for name, value, limit in (("n", self.n, MAX_N), ("d", self.d, MAX_D), ("steps", self.steps, MAX_STEPS),
                                   ("seeds", len(self.seeds), MAX_SEEDS)):
            if value > limit:
                raise ValueError(f"{where}.{name}: {value} is more than the limit of {limit}")
        if self.n * (self.d + 1) > MAX_CELLS:
            raise ValueError(f"{where}.n: {self.n} points x {self.d + 1} features is more than the limit of "
                             f"{MAX_CELLS} numbers per data set (lower n or d)")
        if not 0 < self.p_R < 1:
            raise ValueError(f"{where}.p_R: must be in (0, 1) so that both sets occur, got {self.p_R}")
        if not 0.5 < self.p_fragile < self.p_robust <= 1:
            raise ValueError(
                f"{where}.p_fragile: the paper's model needs 0.5 < p_fragile < p_robust <= 1, "
                f"got p_fragile = {self.p_fragile}, p_robust = {self.p_robust}"
            )
        if self.eps_over_eta < 0 or self.lr <= 0:
            raise ValueError(f"{where}: eps_over_eta >= 0 and lr > 0 are needed, got {self.eps_over_eta}, {self.lr}")
        # At w = 0 the robust logistic loss decreases along x1 only if x1's correlation with the label, E[y x1] =
        # 1 - 2q, exceeds eps; otherwise w = 0 is the optimum and adversarial training learns nothing at all.
        if self.eps >= 1 - 2 * self.p_mislabelled_x1:
            raise ValueError(
                f"{where}.eps_over_eta: eps = {self.eps:.3g} must be below E[y x1] = 1 - 2 P(x1 != y) = "
                f"{1 - 2 * self.p_mislabelled_x1:.3g}, or adversarial training learns w = 0 "
                "(raise d, p_robust or p_fragile, or lower eps_over_eta)"
            )
        if not self.keep or any(not 0 < k <= 1 for k in self.keep):
            raise ValueError(f"{where}.keep: fractions in (0, 1] are needed, got {list(self.keep)}")
        unknown = [s for s in self.strategies if s not in TOY_STRATEGIES]
        if unknown or not self.strategies:
            raise ValueError(f"{where}.strategies: known are {', '.join(TOY_STRATEGIES)}, got {list(self.strategies)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"{where}.seeds: distinct non-negative seeds are needed, got {list(self.seeds)}")

    def as_dict(self) -> dict:
        return {**asdict(self), "keep": list(self.keep), "strategies": list(self.strategies),
                "seeds": list(self.seeds), "eta": self.eta, "eps": self.eps}  # fmt: skip


# artefacts.toy's keys, each an option of `advprune build toy`: the fields above, in their order.
TOY_OPTIONS = tuple(f.name for f in fields(ToyParameters))
