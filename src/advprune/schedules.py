"""The per-step learning rate: piecewise linear 0 -> lr_max at `peak_fraction` of training -> 0.

Both reference schedules have this shape (MNIST: peak at 2/5, updated with fractional epochs; CIFAR-10: CyclicLR
with the peak at 1/2). What differs after pruning is what "training" is measured in (`schedule_after_pruning`):

- `rescale`: progress = fractional epochs, (epoch + (batch + 1) / batches_in_this_epoch) / epochs. Each epoch spans
  the same share of the schedule however many points it has, so the schedule always ends at 0 (what the MNIST
  reference does by construction).
- `fixed`: progress = (step + 1) / (epochs * full_data_batches_per_epoch), sized before training starts, as a script
  that computes its step count up front (the CIFAR-10 reference's CyclicLR) would do. After pruning fewer steps are
  taken, so training ends part-way through the schedule, at a high learning rate.
"""

from __future__ import annotations

POLICIES = ("rescale", "fixed")


def piecewise_linear(progress: float, *, lr_max: float, peak_fraction: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    if progress <= peak_fraction:
        return lr_max * progress / peak_fraction
    return lr_max * (1.0 - progress) / (1.0 - peak_fraction)


def progress(
    policy: str,
    *,
    epoch: int,
    batch: int,
    batches_in_epoch: int,
    step: int,
    epochs: int,
    full_batches_per_epoch: int,
) -> float:
    """Training progress in [0, 1] after the current step (0-based epoch, batch and global step)."""
    if policy == "rescale":
        return (epoch + (batch + 1) / batches_in_epoch) / epochs
    if policy == "fixed":
        return (step + 1) / (epochs * full_batches_per_epoch)
    raise ValueError(f"unknown schedule_after_pruning {policy!r}; choose one of {', '.join(POLICIES)}")
