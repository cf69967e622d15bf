"""Watching a training run after every epoch: catastrophic overfitting (PGD accuracy on a fixed training batch,
monitoring only) and divergence (a loss or weights no longer finite, which stops the run)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from advprune.perturbations import pgd_correct
from advprune.runtime import RunFailure


class TrainingDiverged(RunFailure):
    """The loss or the weights stopped being finite: the run stops, and no model comes of it."""


def pgd_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    settings: dict,
    generator: torch.Generator,
) -> torch.Tensor:
    """Fraction of the batch that survives PGD (eval mode), as a 0-d tensor: no host synchronisation here."""
    was_training = model.training
    model.eval()
    correct = pgd_correct(
        model,
        x,
        y,
        eps=eps,
        step_size=eps * settings["pgd_step_fraction"],
        steps=settings["pgd_steps"],
        restarts=settings["pgd_restarts"],
        generator=generator,
    )
    model.train(was_training)
    return correct.float().mean()


def detect_collapse(pgd_accuracies: Sequence[float], *, drop: float, floor: float) -> int | None:
    """The 1-based epoch at which a run collapsed, or None.

    Collapsed: PGD accuracy falls by more than `drop` between two consecutive epochs (the first such epoch is
    reported), or the run ends below `floor` (the last epoch is reported).
    """
    for epoch in range(1, len(pgd_accuracies)):
        if pgd_accuracies[epoch - 1] - pgd_accuracies[epoch] > drop:
            return epoch + 1
    if pgd_accuracies and pgd_accuracies[-1] < floor:
        return len(pgd_accuracies)
    return None


def check_finite(losses: torch.Tensor, model: nn.Module, *, epoch: int, steps_done: int) -> None:
    """Stop a run whose loss or weights are no longer finite after `epoch` (0-based; `losses` holds its steps,
    `steps_done` counts the run's steps so far): NaN trains on silently and ends as a "finished" model. Called before
    the epoch is checkpointed, so resume.pt keeps the last finite epoch."""
    bad = torch.nonzero(~torch.isfinite(losses))
    first_step = steps_done - len(losses) + 1  # this epoch's first step, counted from 1 over the run
    if len(bad):
        i = int(bad[0, 0])
        raise TrainingDiverged(
            f"training diverged: the loss is not finite ({losses[i].item()}) at epoch {epoch + 1}, step {i + 1} of "
            f"{len(losses)} (step {first_step + i} of the run); the run is stopped, no model is written "
            "(check lr_max, weight_decay, eps, alpha and normalization)"
        )
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise TrainingDiverged(
            f"training diverged: the weights are not finite after epoch {epoch + 1}, step {len(losses)} "
            f"(step {first_step + len(losses) - 1} of the run); the run is stopped, no model is written "
            "(check lr_max, weight_decay, eps, alpha and normalization)"
        )
