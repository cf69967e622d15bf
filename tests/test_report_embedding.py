"""advprune.report.embedding: subsampling, t-SNE, figure 8 and the class statistics of Table 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from advprune.report.embedding import (
    class_statistics,
    fig8_figure,
    subsample,
    table2,
    table2_block,
    tsne_embedding,
    unit_features,
)
from advprune.report.output import save_figure


def clusters(centres: np.ndarray, spread: float, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 'images' [N, 4, 4]: Gaussian clusters around `centres` (pixel values in [0, 1]), one per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(centres)), per_class)
    x = centres[y] + rng.normal(0.0, spread, (len(y), centres.shape[1]))
    return np.clip(np.round(255 * x), 0, 255).astype(np.uint8).reshape(-1, 4, 4), y


CENTRES = np.random.default_rng(42).uniform(0.3, 0.7, (3, 16))


def test_subsample_is_seeded_and_without_replacement() -> None:
    x, y = np.arange(100).reshape(100, 1), np.arange(100)
    a, ya = subsample(x, y, n=30, seed=1)
    assert len(set(ya)) == 30 and np.array_equal(a[:, 0], ya)  # pairs stay together, no repeats
    assert np.array_equal(ya, subsample(x, y, n=30, seed=1)[1])
    assert not np.array_equal(ya, subsample(x, y, n=30, seed=2)[1])
    assert len(subsample(x, y, n=500, seed=1)[0]) == 100


def test_tsne_is_deterministic_for_a_seed() -> None:
    x, _ = clusters(CENTRES, 0.05, per_class=20)
    first = tsne_embedding(x, seed=3)
    assert first.shape == (60, 2)
    np.testing.assert_array_equal(first, tsne_embedding(x, seed=3))


def test_unit_features_scale_and_validate() -> None:
    assert unit_features(np.full((2, 2, 2), 255, dtype=np.uint8)).max() == 1.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        unit_features(np.full((2, 3), 16.0))


def test_tighter_clusters_are_denser() -> None:
    loose = class_statistics(*clusters(CENTRES, 0.15, per_class=200))
    tight = class_statistics(*clusters(CENTRES, 0.05, per_class=200))
    assert tight["rho"] > 2 * loose["rho"]
    assert tight["delta"] == pytest.approx(loose["delta"], rel=0.15)  # same centres


def test_separated_centroids_give_larger_delta() -> None:
    near = class_statistics(*clusters(0.5 + 0.3 * (CENTRES - 0.5), 0.05, per_class=200))
    far = class_statistics(*clusters(CENTRES, 0.05, per_class=200))
    assert far["delta"] > 2 * near["delta"] and far["delta_min"] > 2 * near["delta_min"]
    # delta is the RMS pixel distance between nearest centroids, as the docstring defines it.
    distances = np.linalg.norm(CENTRES[:, None] - CENTRES[None], axis=2) / 4.0
    np.fill_diagonal(distances, np.inf)
    assert far["delta"] == pytest.approx(distances.min(axis=1).mean(), rel=0.05)


def test_the_cut_drops_the_farthest_percent_of_each_class() -> None:
    x, y = clusters(CENTRES, 0.05, per_class=200)
    x[0] = 255  # an outlier in class 0
    stats = class_statistics(x, y, cut=0.01)
    assert stats["n_points"] == 3 * (200 - 2)
    without_outlier = class_statistics(x[1:], y[1:], cut=0.0)
    assert stats["rho_per_class"][0] == pytest.approx(without_outlier["rho_per_class"][0], rel=0.05)


def test_table2_ranks_ours_beside_the_paper(tmp_path: Path) -> None:
    tight, loose = clusters(CENTRES, 0.05, 100), clusters(CENTRES, 0.15, 100)
    table = table2([("mnist", *tight), ("mnist pruned", *tight), ("cifar10", *loose)])
    assert list(table["variant"]) == ["MNIST", "MNIST, pruned", "CIFAR-10"]
    assert list(table["paper rho"]) == [1015.55, 222.34, 96.6625]
    assert list(table["rank paper rho"]) == [1, 2, 3] and list(table["rank paper delta"]) == [2, 1, 3]
    assert table.loc[2, "rank rho"] == 3  # the loose clusters are the least dense
    block = table2_block(table)
    assert "paper MNIST > MNIST, pruned > CIFAR-10 (same order)" in block.notes
    # The paper's layout: each variant's values above the paper's, recomputed from the numeric table.
    assert list(block.table.index) == [(v, s) for v in table["variant"] for s in ("ours", "paper")]
    assert block.table.loc[("MNIST, pruned", "paper"), "rho"] == "222.34"
    assert block.table.loc[("CIFAR-10", "ours"), "delta"] == f"{table.loc[2, 'delta']:.4f}"
    with pytest.raises(ValueError, match="dataset variant"):
        table2([("fashion", *tight)])

    out = tmp_path / "fig8.pdf"
    embedding = np.random.default_rng(0).normal(size=(len(tight[1]), 2))  # drawing needs no real t-SNE
    panels = [("digits-mnist", embedding, tight[1]), ("digits-mnist pruned", embedding[:50], tight[1][:50])]
    save_figure(fig8_figure(panels), out)
    assert out.read_bytes().startswith(b"%PDF") and out.stat().st_size > 1000
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
