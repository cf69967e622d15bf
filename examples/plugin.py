"""An example plugin: one pruning strategy and one dataset, added without editing advprune.

Use it by listing the file in the workflow config (`plugins: [examples/plugin.py]`), then name the strategy in an
artefact's `strategies` and the dataset in `datasets` (tests/test_extensions.py runs exactly that on the demo).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from advprune import datasets, pruning, settings


def drop_middle(scores: np.ndarray, n_drop: int, rng: np.random.Generator) -> np.ndarray:
    """Drop the points whose loss is nearest the median: keep both tails (the opposite of `mean-distance`)."""
    return np.argsort(np.abs(scores - np.median(scores)), kind="stable")[:n_drop]


pruning.register_strategy("middle", drop_middle, needs_scores=True)


def prepare_noisy_digits(root: Path, source: Path | None) -> Path:
    """scikit-learn's digits with 10% of the training labels changed at random (seeded): a label-noise stand-in."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    n_train = 1400
    rng = np.random.default_rng(0)
    noisy = labels[:n_train].copy()
    flipped = rng.choice(n_train, size=n_train // 10, replace=False)
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 10, size=len(flipped))) % 10
    arrays = datasets.DatasetArrays(images[:n_train], noisy, images[n_train:], labels[n_train:])
    return datasets.write_canonical(root, "digits-noisy", arrays)


datasets.register_dataset(
    datasets.DatasetInfo("digits-noisy", 10, (8, 8, 1), prepare_noisy_digits, "digits, 10% of training labels flipped")
)
# MNIST's recipe, as digits-mnist has it; any key of a defaults.yaml section may be given here.
settings.register_dataset("digits-noisy", {}, based_on="digits-mnist")
