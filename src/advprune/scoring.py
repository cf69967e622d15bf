"""Score every training point: the loss at its RS-FGSM perturbation under the current model (Algorithm 1, line 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from advprune.perturbations import rs_fgsm_delta


def score_points(
    model: nn.Module,
    images_u8: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    clip_random_start: bool,
    batch_size: int,
    generator: torch.Generator,
    autocast: "torch.autocast",
) -> torch.Tensor:
    """Per-point loss, float32 on the CPU. Eval mode (no batch-norm updates) and no augmentation, per docs/method.md."""
    was_training = model.training
    model.eval()
    scores = []
    for start in range(0, len(labels), batch_size):
        x = images_u8[start : start + batch_size].float() / 255
        y = labels[start : start + batch_size]
        with autocast:
            delta = rs_fgsm_delta(
                model, x, y, eps=eps, alpha=alpha, clip_random_start=clip_random_start, generator=generator
            )
            with torch.no_grad():
                scores.append(F.cross_entropy(model(x + delta), y, reduction="none").float())
    model.train(was_training)
    return torch.cat(scores).cpu()
