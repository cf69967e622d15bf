"""The toy model of the paper's section 5.2: robust and fragile features, adversarial training of a linear classifier,
and loss-based pruning scored by that classifier.

Data (paper, eqs. 1-2): y uniform in {-1, +1}; a point comes from D_robust with probability p_R, else from D_fragile;
in D_L its robust feature x1 is +y with probability p_L and -y otherwise (0.5 < p_fragile < p_robust), and its d
fragile features are i.i.d. N(eta * y, 1) with eta = 3 / sqrt(d) in both sets.

The paper's argument: adversarial training (eps >= 2 eta) yields w ~ [1, 0, ..., 0]; under that w the squared loss
|w^T x - y|^2 is high exactly where x1 != y, which happens more often in D_fragile, so high-loss pruning keeps a larger
share of D_robust and low-loss pruning a smaller one. Here the classifier is trained, not assumed, and the fragile-set
share of the kept points is measured against that argument's expectation (`expected_fragile_share`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from advprune.pruning import kept_indices

CLASSIFIERS = ("robust", "standard")  # adversarially trained at eps, and its eps = 0 twin
TOY_STRATEGIES = ("high", "low", "low+high", "random")  # those with a closed-form expectation below


# Size limits, checked before a simulation allocates anything: each data set is n x (d + 1) float64 numbers.
MAX_N, MAX_D, MAX_STEPS, MAX_SEEDS, MAX_CELLS = 10_000_000, 1_000_000, 1_000_000, 1000, 100_000_000


@dataclass(frozen=True)
class ToyParameters:
    """Everything a toy simulation depends on (the config's `artefacts.toy`)."""

    d: int = 100  # number of fragile features
    p_R: float = 0.5  # probability that a point comes from D_robust
    p_robust: float = 0.95  # P(x1 = y) in D_robust
    p_fragile: float = 0.75  # P(x1 = y) in D_fragile
    n: int = 5000  # training points per seed (the test set has as many)
    eps_over_eta: float = 2.0  # the adversary's L-inf budget in units of eta (the paper: >= 2)
    steps: int = 300  # full-batch gradient steps
    lr: float = 1.0  # initial step size, decayed linearly to 0 (subgradient steps on ||w||_1 need the decay)
    keep: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
    strategies: tuple[str, ...] = TOY_STRATEGIES
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)

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


@dataclass(frozen=True)
class ToyData:
    x: np.ndarray  # [n, d + 1]: x1, then the fragile features
    y: np.ndarray  # [n] in {-1.0, +1.0}
    from_fragile_set: np.ndarray  # [n] bool: drawn from D_fragile


def draw(params: ToyParameters, n: int, rng: np.random.Generator) -> ToyData:
    y = rng.choice([-1.0, 1.0], size=n)
    from_fragile_set = rng.random(n) >= params.p_R
    p_x1_correct = np.where(from_fragile_set, params.p_fragile, params.p_robust)
    x1 = np.where(rng.random(n) < p_x1_correct, y, -y)
    fragile = rng.normal(params.eta * y[:, None], 1.0, size=(n, params.d))
    return ToyData(np.column_stack([x1, fragile]), y, from_fragile_set)


def robust_margin(w: np.ndarray, data: ToyData, eps: float) -> np.ndarray:
    """y w^T (x + delta) at the worst L-inf perturbation |delta| <= eps, which is exact for a linear model:
    delta = -eps * y * sign(w), so the margin drops by eps * ||w||_1."""
    return data.y * (data.x @ w) - eps * np.abs(w).sum()


def train_linear(data: ToyData, eps: float, steps: int, lr: float) -> np.ndarray:
    """w minimising the mean logistic loss of the robust margin (eps = 0: standard training), by full-batch
    (sub)gradient descent from w = 0; no bias, as in the paper's f(x) = sign(w^T x)."""
    w = np.zeros(data.x.shape[1])
    signed_x = data.y[:, None] * data.x
    for step in range(steps):
        margin = signed_x @ w - eps * np.abs(w).sum()
        weight = 0.5 * (1.0 - np.tanh(margin / 2))  # sigmoid(-margin) = -d loss / d margin, without overflow
        gradient = -(weight @ signed_x) / len(data.y) + eps * weight.mean() * np.sign(w)
        w -= lr * (1 - step / steps) * gradient
    return w


def accuracy(w: np.ndarray, data: ToyData, eps: float = 0.0) -> float:
    """Clean accuracy (eps = 0) or exact robust accuracy under an L-inf adversary of budget eps."""
    return float(np.mean(robust_margin(w, data, eps) > 0))


def x1_weight_share(w: np.ndarray) -> float:
    """|w1| / ||w||_1: the share of the weight (in the norm the adversary exploits) on the robust feature."""
    return float(abs(w[0]) / np.abs(w).sum())


def squared_loss(w: np.ndarray, data: ToyData) -> np.ndarray:
    """The paper's pruning score |w^T x - y|^2 at w / ||w||_1: the scale of its w = [1, 0, ..., 0], which also maps
    a purely fragile classifier onto its w = [0, 1/d, ..., 1/d] (a logistic fit's own scale is arbitrary)."""
    return (data.x @ (w / np.abs(w).sum()) - data.y) ** 2


def expected_fragile_share(params: ToyParameters, strategy: str, keep: float) -> float:
    """The paper's argument in numbers: the fragile-set share of the points kept, in expectation over the population,
    when pruning by the squared loss of w = [1, 0, ..., 0]: loss 4 where x1 != y (mass q), 0 elsewhere, ties at random.
    """
    q = params.p_mislabelled_x1
    fragile = 1 - params.p_R
    share_high = fragile * (1 - params.p_fragile) / q  # fragile share among x1 != y (the high-loss block)
    share_low = fragile * params.p_fragile / (1 - q)  # ... and among x1 = y (the low-loss block)
    dropped = 1 - keep
    if strategy == "random":
        return fragile
    from_low = {"high": 0.0, "low": dropped, "low+high": dropped / 2}[strategy]
    from_high = dropped - from_low
    # Drops beyond a block's mass spill into the other block.
    kept_high = max(0.0, q - from_high - max(0.0, from_low - (1 - q)))
    kept_low = max(0.0, (1 - q) - from_low - max(0.0, from_high - q))
    return (kept_high * share_high + kept_low * share_low) / (kept_high + kept_low)


def simulate_seed(params: ToyParameters, seed: int) -> list[dict]:
    """One seed: draw training and test sets, train both classifiers, prune by each one's squared loss."""
    train_rng, test_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    train, test = draw(params, params.n, train_rng), draw(params, params.n, test_rng)
    rows = []
    for classifier, eps in zip(CLASSIFIERS, (params.eps, 0.0)):
        w = train_linear(train, eps, params.steps, params.lr)
        facts = {
            "seed": seed, "classifier": classifier, "train_eps": eps,
            "clean_acc": accuracy(w, test), "robust_acc": accuracy(w, test, params.eps),
            "x1_weight_share": x1_weight_share(w),
        }  # fmt: skip
        loss = squared_loss(w, train)
        for strategy in params.strategies:
            for keep in params.keep:
                kept = kept_indices(loss, keep, strategy, seed)
                rows.append({
                    **facts, "strategy": strategy, "keep": keep, "n_kept": len(kept),
                    "fragile_share_before": float(train.from_fragile_set.mean()),
                    "fragile_share": float(train.from_fragile_set[kept].mean()),
                    "expected_fragile_share": (
                        expected_fragile_share(params, strategy, keep) if classifier == "robust" else math.nan
                    ),
                })  # fmt: skip
    return rows


def simulate(params: ToyParameters) -> pd.DataFrame:
    """The tidy per-seed table: one row per seed x classifier x strategy x keep."""
    params.check()
    # Matrix-vector products of this size gain nothing from threads, and with torch's OpenMP pool beside OpenBLAS's
    # on a busy machine threads made the simulation several times slower.
    with threadpool_limits(1):
        rows = [row for seed in params.seeds for row in simulate_seed(params, seed)]
    return pd.DataFrame(rows)
