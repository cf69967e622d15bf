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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from advprune.pruning import kept_indices
from advprune.toy_parameters import ToyParameters

CLASSIFIERS = ("robust", "standard")  # adversarially trained at eps, and its eps = 0 twin


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
