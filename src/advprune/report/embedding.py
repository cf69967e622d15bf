"""Figure 8 (t-SNE over PCA of MNIST, pruned MNIST, CIFAR-10) and Table 2 (class-wise density and separation).

Dataset variants are named '<dataset>' or '<dataset> pruned' (see `labels.parse_variant`), which is how Table 2
finds the paper's value for each row. Images enter as flattened pixels scaled to [0, 1].
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from advprune import provenance
from advprune.datasets import load_canonical
from advprune.report.labels import PAPER_DATASET, display_name, parse_variant, variant_label
from advprune.report.output import Block, Built
from advprune.report.paper import TABLE2
from advprune.runtime import read_json

Variant = tuple[str, np.ndarray, np.ndarray]  # (name, x, y)


def unit_features(x: np.ndarray) -> np.ndarray:
    """[N, ...] images -> [N, D] float64 in [0, 1]: uint8 pixels are divided by 255, floats must already be in range."""
    flat = np.asarray(x).reshape(len(x), -1)
    if flat.dtype == np.uint8:
        return flat.astype(np.float64) / 255.0
    flat = flat.astype(np.float64)
    if flat.size and (flat.min() < 0.0 or flat.max() > 1.0):
        raise ValueError(f"expected uint8 pixels or floats in [0, 1], got values in [{flat.min()}, {flat.max()}]")
    return flat


def subsample(x: np.ndarray, y: np.ndarray, n: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` points drawn without replacement (seeded), in their original order; all points when there are fewer."""
    if len(x) <= n:
        return x, y
    index = np.sort(np.random.default_rng(seed).choice(len(x), size=n, replace=False))
    return x[index], y[index]


def tsne_embedding(x: np.ndarray, seed: int) -> np.ndarray:
    """[N, 2]: PCA to 50 components (fewer if the data has fewer features or points), then 2-D t-SNE, both seeded."""
    features = unit_features(x)
    components = min(50, *features.shape)
    reduced = PCA(n_components=components, random_state=seed).fit_transform(features)
    # t-SNE needs perplexity < N; scikit-learn's default of 30 is kept wherever the data allows it.
    perplexity = min(30.0, (len(reduced) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def fig8_figure(panels: list[tuple[str, np.ndarray, np.ndarray]], title: str | None = None) -> Figure:
    """One scatter panel per (variant name, 2-D embedding [N, 2], labels [N]), coloured by class."""
    classes = sorted({int(c) for _, _, y in panels for c in np.unique(y)})
    palette = (
        matplotlib.colormaps["tab10"].colors
        if len(classes) <= 10
        else matplotlib.colormaps["turbo"].resampled(len(classes))(range(len(classes)))
    )
    colors = dict(zip(classes, palette))
    fig = Figure(figsize=(4.0 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, embedding, y) in zip(axes, panels):
        for c in classes:
            points = embedding[np.asarray(y) == c]
            # Rasterised points keep the PDF small with thousands of markers.
            ax.scatter(points[:, 0], points[:, 1], s=2, color=colors[c], label=str(c), rasterized=True, linewidths=0)
        ax.set(title=f"{variant_label(name)} (n={len(embedding)})", xticks=[], yticks=[])
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", title="class", markerscale=4)
    fig.suptitle(title or "t-SNE (2 components) over PCA (50 components), coloured by class", fontsize=9)
    return fig


def class_statistics(x: np.ndarray, y: np.ndarray, cut: float = 0.01) -> dict[str, Any]:
    """Class-wise density rho and centroid separation delta: our reading of the paper's appendix A.1.

    The appendix's formulas are garbled (its "density" sums points, it does not measure any spread), so this is an
    interpretation, chosen to follow its words:

    - Features: flattened pixels scaled to [0, 1]. Every distance is a Euclidean distance divided by sqrt(D)
      (D = number of features), i.e. a root-mean-square difference per pixel, so 784-pixel MNIST and 3072-value
      CIFAR-10 are on one scale.
    - Cut: "we cut off the 1% data at the tails when building each D_m, ... points that are far away from the
      centroid": per class, the floor(cut * |D_m|) points farthest from the class centroid are dropped, and the
      centroid c_m is recomputed from the rest.
    - Density rho_m = 1 / (mean distance of D_m's points to c_m), and rho = mean over classes. The inverse mean
      distance is used rather than points per unit volume because a ball's volume in 784-3072 dimensions is r^D,
      which under- or overflows and is dominated by D; it also does not grow with the number of points, so a
      subsample, the full set and a pruned set are compared by how tight their classes are, not by their size.
      (The paper's pruned MNIST density falls to 22% of the full set's with 60% of the points kept, so size may
      be part of its number; ours deliberately excludes it.)
    - Separation: "the distance between a centroid and its nearest neighbour, ... averaged across all centroids":
      delta = mean over classes m of min_{m' != m} |c_m - c_m'|. `delta_min`, the single smallest distance
      between two centroids, is returned beside it.

    Returns rho, delta, delta_min, the per-class rho values, n_points (after the cut) and n_classes.
    """
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"class statistics need at least two classes, got {len(classes)}")
    scale = math.sqrt(int(np.prod(np.shape(x)[1:])))
    centroids, rho_per_class, n_points = [], [], 0
    for c in classes:
        features = unit_features(x[y == c])  # one class at a time: CIFAR-10 as float64 would need 1.2 GB at once
        distance = np.linalg.norm(features - features.mean(axis=0), axis=1) / scale
        kept = features[np.argsort(distance, kind="stable")[: len(features) - int(cut * len(features))]]
        centroid = kept.mean(axis=0)
        rho_per_class.append(1.0 / float(np.mean(np.linalg.norm(kept - centroid, axis=1) / scale)))
        centroids.append(centroid)
        n_points += len(kept)
    centroids_arr = np.stack(centroids)
    pairwise = np.linalg.norm(centroids_arr[:, None, :] - centroids_arr[None, :, :], axis=2) / scale
    np.fill_diagonal(pairwise, np.inf)
    nearest = pairwise.min(axis=1)
    return {
        "rho": float(np.mean(rho_per_class)),
        "delta": float(nearest.mean()),
        "delta_min": float(nearest.min()),
        "rho_per_class": dict(zip(classes.tolist(), rho_per_class)),
        "n_points": n_points,
        "n_classes": len(classes),
    }


def _paper_name(dataset: str, pruned: bool) -> str:
    return ("pruned " if pruned else "") + display_name(dataset)


def table2(rows: list[Variant], cut: float = 0.01) -> pd.DataFrame:
    """Ours (see `class_statistics`) beside the paper's Table 2, with ranks (1 = largest) to compare orderings."""
    records = []
    for name, x, y in rows:
        dataset, pruned = parse_variant(name)
        key = (PAPER_DATASET[dataset], pruned)
        paper_rho, paper_delta = TABLE2.get(key, (math.nan, math.nan))
        stats = class_statistics(x, y, cut)
        records.append({
            "variant": variant_label(name), "paper counterpart": _paper_name(*key) if key in TABLE2 else "",
            "n": stats["n_points"], "rho": round(stats["rho"], 4), "paper rho": paper_rho,
            "delta": round(stats["delta"], 4), "paper delta": paper_delta, "delta_min": round(stats["delta_min"], 4),
        })  # fmt: skip
    table = pd.DataFrame(records)
    for column in ("rho", "paper rho", "delta", "paper delta"):
        table[f"rank {column}"] = table[column].rank(ascending=False, method="min").astype("Int64")
    return table


def ordering(table: pd.DataFrame, column: str) -> str:
    """'A > B > C' by `column`, largest first, over the rows that have a value."""
    ranked = table.dropna(subset=[column]).sort_values(column, ascending=False, kind="stable")
    return " > ".join(ranked["variant"])


def table2_layout(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 with ours above its values: rows variant x (ours, paper); rho, delta and (ours only)
    delta_min and the points counted."""
    rows = {}
    for _, r in table.iterrows():
        rows[(r["variant"], "ours")] = {"rho": f"{r['rho']:.2f}", "delta": f"{r['delta']:.4f}",
                                        "delta_min": f"{r['delta_min']:.4f}", "n": str(r["n"])}  # fmt: skip
        has_paper = not math.isnan(r["paper rho"])
        rows[(r["variant"], "paper")] = {
            "rho": f"{r['paper rho']:.2f}" if has_paper else "—",
            "delta": f"{r['paper delta']:.4f}" if has_paper else "—", "delta_min": "—", "n": "—",
        }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["dataset", ""])


def table2_block(table: pd.DataFrame, cut: float = 0.01) -> Block:
    agree = {c: ordering(table, c) == ordering(table, f"paper {c}") for c in ("rho", "delta")}
    notes = (
        f"rho = 1 / mean RMS pixel distance to the class centroid; delta = mean RMS pixel distance from each class "
        f"centroid to the nearest other one (delta_min: the smallest); pixels in [0, 1], the {cut:.0%} of each class "
        f"farthest from its centroid cut. Our reading of the paper's garbled appendix A.1: compare orderings, not "
        f"digits. rho: ours {ordering(table, 'rho')}, paper {ordering(table, 'paper rho')} "
        f"({'same' if agree['rho'] else 'different'} order); delta: ours {ordering(table, 'delta')}, paper "
        f"{ordering(table, 'paper delta')} ({'same' if agree['delta'] else 'different'} order)."
    )
    title = "Table 2: class-wise density rho and centroid separation delta, ours above the paper's."
    return Block(table2_layout(table), title, notes, "paper")


# -- the registry's builders (advprune.artefacts): `advprune build fig8|table2` --------------------------------------

# (variant name, canonical .npz, pruning.npz or None): a panel of fig8, a row of table2.
VariantFiles = tuple[str, Path, "Path | None"]


def load_variant(canonical_npz: Path, pruning_npz: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A training set, or with a run's `pruning.npz` the part of it that run kept."""
    data = load_canonical(canonical_npz)
    if pruning_npz is None:
        return data.x_train, data.y_train
    kept = read_kept(pruning_npz)
    if kept.size and (kept.min() < 0 or kept.max() >= len(data.y_train)):
        raise ValueError(f"{pruning_npz}: kept indices exceed the {len(data.y_train)} points of {canonical_npz}")
    return data.x_train[kept], data.y_train[kept]


def read_kept(pruning_npz: Path) -> np.ndarray:
    """The `kept` indices of a run's pruning.npz: a 1-D integer array, or a one-line ValueError naming the file (a
    truncated or foreign file was a traceback from numpy or zipfile)."""
    try:
        with np.load(pruning_npz, allow_pickle=False) as pruning:
            if not hasattr(pruning, "files") or "kept" not in pruning.files:
                raise ValueError("no array 'kept'")
            kept = pruning["kept"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{pruning_npz}: not a pruning.npz written by `advprune train` "
                         f"({' '.join(str(error).split())[:120]})") from None
    if kept.ndim != 1 or not np.issubdtype(kept.dtype, np.integer):
        raise ValueError(f"{pruning_npz}: kept is a {kept.dtype} array of shape {kept.shape}, expected 1-D indices")
    return kept


def _trained_model(run_dir: Path) -> dict:
    """An embedding's model, in the fields an artefact's provenance lists (from its train.json)."""
    record = read_json(run_dir / "train.json")
    return {
        "run_dir": str(run_dir), "method_version": record.get("method_version"), "device": record.get("device"),
        "jobs_on_device": record.get("jobs_on_device"), **provenance.model_fields(record),
    }


def _built(variants: list[VariantFiles], parameters: dict, **what: Any) -> Built:
    """What to save, with the variants' files as inputs and the pruned models (from their train.json) as models."""
    inputs = [path for _, canonical, pruning in variants for path in (canonical, pruning) if path is not None]
    models = [_trained_model(pruning.parent) for _, _, pruning in variants if pruning is not None]
    named = {variant: f"{data}:{pruning}" if pruning else str(data) for variant, data, pruning in variants}
    return Built(**what, inputs=inputs, models=models, parameters={**parameters, "variants": named})


def build_fig8(variants: list[VariantFiles], *, n_points: int = 5000, seed: int = 0) -> Built:
    """Figure 8: per variant a seeded subsample of `n_points`, PCA + t-SNE, scatter."""
    panels = []
    for name, canonical, pruning in variants:
        x, y = subsample(*load_variant(canonical, pruning), n=n_points, seed=seed)
        panels.append((name, tsne_embedding(x, seed), y))
    return _built(variants, {"n_points": n_points, "seed": seed}, figure=fig8_figure(panels))


def build_table2(variants: list[VariantFiles], *, cut: float = 0.01) -> Built:
    """Table 2 over the whole (kept) training sets: its statistics do not depend on the number of points."""
    table = table2([(name, *load_variant(canonical, pruning)) for name, canonical, pruning in variants], cut=cut)
    return _built(variants, {"cut": cut}, blocks=[table2_block(table, cut)], data=table)
