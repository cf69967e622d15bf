"""Catastrophic-overfitting watch: PGD accuracy on a fixed training batch after every epoch (monitoring only)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from advprune.perturbations import pgd_correct


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
