"""The catastrophic-overfitting flag (SPEC, "Evaluation"), on real `digits-mnist` training in-process (CPU).

Observed (CPU, one thread, full data, 10 epochs, per-epoch PGD accuracy on the 256-point monitor batch), seeds 0-2:
  default (eps 0.12, alpha 0.15):  never flagged; PGD accuracy climbs 0.36/0.52/0.43 -> 0.79/0.75/0.76.
  eps 0.4, alpha 0.5 (the reference's alpha = 1.25 eps): flagged at epoch 10 on all three seeds, by the floor rule:
      PGD accuracy stays at 0.00-0.06 through training and ends at 0.000/0.012/0.000 (< 5%); train accuracy ~0.16.
A sudden >20-point drop (the other rule) could not be provoked on digits with this MLP: RS-FGSM with alpha up to
8x eps (alpha 1.0 at eps 0.12, 30 epochs), eps 0.2-0.3 with alpha 2-3x eps, larger Adam lr_max (0.02-1.0), SGD at
lr 2.0, and the conv net `digits_net` at eps 0.2 / alpha 0.5 either kept improving or never rose above ~0.3 (high
learning rates diverge to chance, ~10%, which is above the floor). The drop rule is covered by the unit tests below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from advprune import datasets, settings
from advprune.monitor import detect_collapse, pgd_accuracy
from advprune.identity import ModelKey
from advprune.training import Trainer

DATASET = "digits-mnist"
SEEDS = (0, 1, 2)
COLLAPSING = ("eps=0.4", "alpha=0.5")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("data")
    datasets.prepare(DATASET, root)
    path = datasets.canonical_path(root, DATASET)
    return {"arrays": datasets.load_canonical(path, datasets.get_dataset(DATASET)), "sha256": datasets.file_sha256(path)}


def _train(digits: dict[str, Any], out: Path, seed: int, overrides: tuple[str, ...]) -> dict[str, Any]:
    resolved = settings.resolve(DATASET, overrides=list(overrides))
    run = ModelKey.from_settings(DATASET, "random", 1.0, None, seed, resolved)
    trainer = Trainer(
        run, resolved, digits["arrays"].x_train, digits["arrays"].y_train, out_dir=out,
        device=torch.device("cpu"), dataset_sha256=digits["sha256"], show_progress=False,
    )
    return trainer.fit()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_collapsing_setting_is_flagged_and_default_is_not(digits, tmp_path: Path, seed: int) -> None:
    stable = _train(digits, tmp_path / "default", seed, ())
    collapsed = _train(digits, tmp_path / "collapsing", seed, COLLAPSING)
    stable_pgd = [record["pgd_acc"] for record in stable["history"]]
    collapsed_pgd = [record["pgd_acc"] for record in collapsed["history"]]
    print(f"\nseed {seed}: default {[round(a, 3) for a in stable_pgd]}\n"
          f"        collapsing {[round(a, 3) for a in collapsed_pgd]} -> epoch {collapsed['collapse_epoch']}")

    assert not stable["collapsed"] and stable["collapse_epoch"] is None
    assert stable_pgd[-1] > 0.5 and stable["final_pgd_acc"] == pytest.approx(stable_pgd[-1])

    assert collapsed["collapsed"] is True
    assert collapsed["collapse_epoch"] is not None and 1 <= collapsed["collapse_epoch"] <= len(collapsed_pgd)
    # The flag is what the recorded history says, under the settings' thresholds.
    monitor = settings.resolve(DATASET, overrides=list(COLLAPSING))["monitor"]
    assert detect_collapse(collapsed_pgd, drop=monitor["collapse_drop"], floor=monitor["collapse_floor"]) == \
        collapsed["collapse_epoch"]
    assert collapsed_pgd[-1] < monitor["collapse_floor"]
    assert collapsed_pgd[-1] < stable_pgd[-1] - 0.5


# -- detect_collapse edge cases (beyond tests/test_training.py's) -----------------------------------------------------
@pytest.mark.parametrize(
    ("accuracies", "drop", "floor", "expected"),
    [
        ([0.8, 0.55, 0.9, 0.95], 0.2, 0.05, 2),   # a drop is flagged even if the run recovers afterwards
        ([0.8, 0.7, 0.6, 0.5, 0.4], 0.2, 0.05, None),  # a slow decline of 10 points an epoch is no collapse
        ([0.3, 0.05], 0.2, 0.05, 2),               # a 25-point fall flags epoch 2 (before the floor is looked at)
        ([0.2, 0.1, 0.05], 0.2, 0.05, None),       # exactly at the floor is not below it
        ([0.2, 0.1, 0.049], 0.2, 0.05, 3),
        ([0.0], 0.2, 0.0, None),                   # floor 0 can never be undercut
        ([0.0, 0.0, 0.0], 0.2, 0.05, 3),           # never robust: the last epoch is reported
        ([0.9, 0.85], 0.04, 0.05, 2),              # a stricter drop threshold
        ([0.9, 0.1], 1.0, 0.05, None),             # drop 1.0 disables the drop rule; 0.1 is above the floor
        ((0.9, 0.6), 0.2, 0.05, 2),                # any sequence, not only lists
    ],
)
def test_detect_collapse_edge_cases(accuracies, drop: float, floor: float, expected: int | None) -> None:
    assert detect_collapse(accuracies, drop=drop, floor=floor) == expected


# -- the PGD check itself, as SPEC fixes it ---------------------------------------------------------------------------
def test_the_monitor_is_pgd_with_ten_steps_of_eps_over_four_and_one_restart() -> None:
    """SPEC: "PGD accuracy (10 steps, step eps/4, one restart)". Read off the inputs the model is shown: one random
    start in the eps-ball, ten steps that each move every pixel by eps/4 (less only where the ball's edge stops it),
    then the final prediction: 11 forward passes, 22 with a second restart."""
    monitor = settings.resolve("mnist")["monitor"]
    eps = 0.3
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    generator = torch.Generator().manual_seed(0)
    x = 0.4 + 0.2 * torch.rand(16, 1, 8, 8, generator=generator)  # x +- eps stays inside [0, 1]: no box clipping
    y = torch.arange(16) % 10
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach() - x))

    pgd_accuracy(model, x, y, eps=eps, settings=monitor, generator=generator)

    assert len(seen) == 10 + 1
    assert all(delta.abs().max() <= eps + 1e-6 for delta in seen)
    for before, after in zip(seen[:10], seen[1:]):
        step = (after - before).abs()
        assert step.max() <= eps / 4 + 1e-6
        free = before.abs() < eps - eps / 4 - 1e-6  # a full step from here cannot reach the ball's edge
        assert free.any() and torch.allclose(step[free], torch.full_like(step[free], eps / 4), atol=1e-6)
