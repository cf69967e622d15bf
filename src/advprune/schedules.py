"""The per-step learning rate (and SGD momentum): piecewise linear 0 -> lr_max at `peak_fraction` of training -> 0.

Both reference schedules have this shape; they differ in where on it an update sits (`lr_at`):

- MNIST (`train_mnist.py`): `lr = np.interp(epoch + (i + 1) / len(loader), [0, 2/5 E, E], [0, lr_max, 0])` is set
  before update i, so an update uses the progress *after* it (`step_end`).
- CIFAR-10 (`train_fgsm.py`): `CyclicLR(base_lr=0, max_lr=0.2, step_size_up=N/2, step_size_down=N/2)` with N =
  epochs * batches, stepped after each update, so update k uses lr(k / N), the progress *before* it (`step_start`).
  CyclicLR's defaults also cycle SGD momentum opposite to the learning rate: 0.9 at the ends, 0.8 at the peak
  (`momentum` and `momentum_at_peak` in the settings).

What differs after pruning is what "training" is measured in (`schedule_after_pruning`):

- `rescale`: progress in fractional epochs, each epoch spanning the same share of the schedule however many points it
  has, so the schedule always ends at 0 (what the MNIST reference does by construction).
- `fixed`: progress in global steps over epochs * full_data_batches_per_epoch, sized before training starts, as the
  CIFAR-10 reference's CyclicLR is. After pruning fewer steps are taken, so training ends part-way through the
  schedule, at a high learning rate.
"""

from __future__ import annotations

SCHEDULES = ("rescale", "fixed")  # schedule_after_pruning: the one list of its values
LR_AT = ("step_end", "step_start")


def schedule_scale(progress: float, *, peak_fraction: float) -> float:
    """Height of the triangle at `progress`, in [0, 1] (CyclicLR's `scale_factor`)."""
    progress = min(max(progress, 0.0), 1.0)
    if progress <= peak_fraction:
        return progress / peak_fraction
    return (1.0 - progress) / (1.0 - peak_fraction)


def piecewise_linear(progress: float, *, lr_max: float, peak_fraction: float) -> float:
    return lr_max * schedule_scale(progress, peak_fraction=peak_fraction)


def cycled_momentum(scale: float, *, at_ends: float, at_peak: float | None) -> float:
    """SGD momentum as CyclicLR cycles it: `at_ends` where the learning rate is 0, `at_peak` at its peak; constant
    `at_ends` when `at_peak` is None."""
    if at_peak is None:
        return at_ends
    return at_ends - (at_ends - at_peak) * scale


def progress(
    policy: str,
    *,
    lr_at: str,
    epoch: int,
    batch: int,
    batches_in_epoch: int,
    step: int,
    epochs: int,
    full_batches_per_epoch: int,
) -> float:
    """Training progress in [0, 1] at which the current update takes its learning rate (0-based epoch, batch of the
    epoch, and global step counting the updates already taken)."""
    if lr_at not in LR_AT:
        raise ValueError(f"unknown lr_at {lr_at!r}; choose one of {', '.join(LR_AT)}")
    after = 1 if lr_at == "step_end" else 0
    if policy == "rescale":
        return (epoch + (batch + after) / batches_in_epoch) / epochs
    if policy == "fixed":
        return (step + after) / (epochs * full_batches_per_epoch)
    raise ValueError(f"unknown schedule_after_pruning {policy!r}; choose one of {', '.join(SCHEDULES)}")
